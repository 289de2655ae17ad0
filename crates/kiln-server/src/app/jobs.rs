//! Jobs as agents act on them: claim (a long poll), heartbeat, the control poll, log chunks,
//! finish and release. The agent is the caller; that it holds the job it writes is checked
//! in the store (`AgentAttempt`), and this module is the only place these writes emit events
//! and wake other agents.

use crate::error::{AppError, AppResult};
use crate::events::{Event, EventKind};
use crate::state::AppState;
use kiln_core::state::JobStatus;
use kiln_store::{AgentAttempt, AgentRow};
use kiln_wire::agent::{FinishRequest, HeartbeatRequest, HeartbeatResponse, JobAssignment, LogRest, RunningJob, WaitRequest, FINISH_LOG_MAX};
use std::time::Duration;

/// How long a claim or a control poll waits before answering "nothing yet".
const POLL_WAIT: Duration = Duration::from_secs(25);

/// The oldest ready job the agent's labels (and enrolment) allow, with the secrets its build
/// may have; waits up to `POLL_WAIT` for one. A retried claim (same `claim_id`) whose answer
/// was lost gets the same job, not a second one.
pub async fn claim(st: &AppState, agent: &AgentRow, claim_id: Option<String>) -> AppResult<Option<JobAssignment>> {
    if let Some(id) = &claim_id {
        let prev = st.claims.lock().unwrap().get(&agent.name).filter(|(c, _)| c == id).map(|(_, a)| a.clone());
        if let Some(a) = prev {
            if st.store.check_held(AgentAttempt { job_id: a.job_id, attempt: a.attempt, agent: &agent.name }).await.is_ok() {
                return Ok(Some(a));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + POLL_WAIT;
    // Registered before asking the store, so a job readied meanwhile rings this claim.
    let waiting = st.waiters.wait(agent);
    // Draining, as read with the agent's token for this call; read again after each ring (a
    // drain rings the agent's claims). The claim itself records the agent as seen.
    let mut draining = agent.draining;
    loop {
        if draining {
            return Ok(None);
        }
        if let Some(c) = st.store.claim(agent, st.cfg.lease_ms()).await? {
            waiting.took_job();
            let mut a: JobAssignment = serde_json::from_str(&c.job.spec).map_err(|e| AppError::Internal(format!("job {} spec: {e}", c.job.id)))?;
            a.job_id = c.job.id;
            a.attempt = c.job.attempt;
            a.log_limit = st.cfg.log_limit;
            for (k, v) in c.secrets {
                a.env.insert(k, v.clone());
                a.secrets.push(v);
            }
            st.emit_event(crate::metrics::job_started(&c.job, &a.project));
            if let Some(id) = claim_id {
                st.claims.lock().unwrap().insert(agent.name.clone(), (id, a.clone()));
            }
            return Ok(Some(a));
        }
        tokio::select! {
            _ = waiting.rung() => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(None),
        }
        let standing = st.store.agent_standing(&agent.name).await?;
        if standing.revoked {
            return Err(AppError::Unauthorized(format!("agent {:?} was revoked while it waited for a job; enrol it again", agent.name)));
        }
        draining = standing.draining;
    }
}

/// Renew the leases of the agent's own jobs and keep its status; answers what to stop and
/// whether to drain.
pub async fn heartbeat(st: &AppState, agent: &AgentRow, req: &HeartbeatRequest) -> AppResult<HeartbeatResponse> {
    let drain = st.store.agent_seen(agent.id, Some(&req.status)).await?;
    let jobs: Vec<(i64, i64)> = req.jobs.iter().map(|j| (j.job_id, j.attempt)).collect();
    let stop = st.store.renew_leases(&agent.name, &jobs, st.cfg.lease_ms()).await?;
    Ok(HeartbeatResponse { stop: stop.into_iter().map(|(job_id, attempt)| RunningJob { job_id, attempt }).collect(), drain })
}

/// The control long poll: answers at once when one of the agent's jobs must stop (cancelled,
/// or taken back) or it must drain; otherwise after a while with nothing.
pub async fn control(st: &AppState, agent: &AgentRow, req: &WaitRequest) -> AppResult<HeartbeatResponse> {
    let deadline = tokio::time::Instant::now() + POLL_WAIT;
    let jobs: Vec<(i64, i64)> = req.jobs.iter().map(|j| (j.job_id, j.attempt)).collect();
    loop {
        let woken = st.control.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let mut stop = st.store.stale_attempts(&agent.name, &jobs).await?;
        for c in st.store.cancelled_jobs_of_agent(&agent.name).await? {
            if !stop.contains(&c) {
                stop.push(c);
            }
        }
        let drain = st.store.agent_by_name(&agent.name).await?.draining;
        if !stop.is_empty() || drain {
            return Ok(HeartbeatResponse { stop: stop.into_iter().map(|(job_id, attempt)| RunningJob { job_id, attempt }).collect(), drain });
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(HeartbeatResponse::default()),
        }
    }
}

/// Whether the agent may add to this attempt's log (it holds it): asked before an upload's
/// body is read, so an agent holding no job costs the server nothing. Answers the job's build
/// (the `build_id` the log writes below take, for their events).
pub async fn may_log(st: &AppState, by: AgentAttempt<'_>) -> AppResult<i64> {
    Ok(st.store.held_build(by).await?)
}

/// Store a chunk of the log at its byte offset; answers how many bytes the server holds.
pub async fn append_log(st: &AppState, by: AgentAttempt<'_>, build_id: i64, offset: u64, body: &[u8]) -> AppResult<u64> {
    check_log_limit(st, &by, offset, body.len() as u64)?;
    let out = st.store.append_log(by, offset, body).await?;
    Ok(logged(st, build_id, by.job_id, offset, out))
}

/// [`append_log`] for an upload of zstd frames: their sizes, as their headers declare them,
/// are checked against the caps and the log limit before any is decompressed; then each is
/// decoded as a stream, in bounded memory (`kiln_store::DeclaredFrames`).
pub async fn append_log_frames(st: &AppState, by: AgentAttempt<'_>, build_id: i64, offset: u64, body: Vec<u8>) -> AppResult<u64> {
    let job_id = by.job_id;
    let bad = move |e: String| AppError::BadRequest(format!("log upload of job {job_id}: {e}"));
    let declared = kiln_store::DeclaredFrames::split(body).map_err(bad)?;
    check_log_limit(st, &by, offset, declared.raw_len())?;
    let frames = tokio::task::spawn_blocking(move || declared.check()).await.map_err(|e| AppError::Internal(e.to_string()))?.map_err(bad)?;
    let out = st.store.append_log_frames(by, offset, frames).await?;
    Ok(logged(st, build_id, by.job_id, offset, out))
}

/// Replace the live tail of the agent's attempt (the last lines of a log past its head, which
/// the agent holds back until the job ends); the caller has checked the agent holds it
/// ([`may_log`]) and the size. Readers following the log hear of it.
pub async fn set_live_tail(st: &AppState, by: AgentAttempt<'_>, build_id: i64, past_head: u64, text: Vec<u8>) -> AppResult<()> {
    let (files, job_id, attempt) = (st.store.log_files().clone(), by.job_id, by.attempt);
    tokio::task::spawn_blocking(move || files.set_live(job_id, attempt, past_head, &text))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::Internal(format!("failed to keep the live tail of job {job_id}: {e}")))?;
    let mut ev = Event::new(EventKind::Log, build_id, Some(job_id), "", "running");
    ev.bytes = Some(0);
    st.emit_event(ev);
    Ok(())
}

/// The agent truncates past the limit; this only guards against an agent that does not.
fn check_log_limit(st: &AppState, by: &AgentAttempt<'_>, offset: u64, len: u64) -> AppResult<()> {
    if st.cfg.log_limit > 0 && offset + len > st.cfg.log_limit + (1 << 20) {
        return Err(AppError::TooLarge(format!("job {} log passes the {} byte limit (the server's --log-limit)", by.job_id, st.cfg.log_limit)));
    }
    Ok(())
}

/// After an append: tell the log's readers; answers the bytes the server holds.
fn logged(st: &AppState, build_id: i64, job_id: i64, offset: u64, out: kiln_store::AppendOutcome) -> u64 {
    if let kiln_store::AppendOutcome::Stored(held) = out {
        let mut ev = Event::new(EventKind::Log, build_id, Some(job_id), "", "running");
        ev.bytes = Some(held.saturating_sub(offset));
        st.emit_event(ev);
    }
    out.held()
}

/// Finish the agent's attempt (only once the server holds its whole log); settles the build,
/// wakes agents for jobs it readied, and starts downstream builds of a build that passed.
/// Answers the build's status.
pub async fn finish(st: &AppState, by: AgentAttempt<'_>, req: &FinishRequest) -> AppResult<kiln_core::state::BuildStatus> {
    let status = JobStatus::parse(&req.status)
        .filter(|s| s.is_final() && *s != JobStatus::Skipped)
        .ok_or_else(|| AppError::BadRequest(format!("{:?} is not a final job status", req.status)))?;
    let job_id = by.job_id;
    let rest = req.log_rest.as_ref().map(|r| log_rest(st, &by, r)).transpose()?;
    let out = st.store.finish_job_with_log(by, rest.as_ref().map(|(at, data)| (*at, data.as_slice())), req.log_len, status, req.exit_code.map(i64::from), req.reason.as_deref()).await?;
    if !out.repeated {
        if let Some((_, data)) = rest.as_ref().filter(|(_, d)| !d.is_empty()) {
            let mut ev = Event::new(EventKind::Log, out.build_id, Some(job_id), "", "running");
            ev.bytes = Some(data.len() as u64);
            st.emit_event(ev);
        }
        if out.readied {
            st.wake_agents();
        }
        let mut ev = Event::new(EventKind::Job, out.build_id, Some(job_id), &out.project, status.as_str());
        ev.duration_ms = out.duration_ms;
        st.emit_event(ev);
        if out.build_finished {
            st.emit(EventKind::Build, out.build_id, None, &out.project, out.build_status.as_str());
            // Only when some project may build after this one (see `FinishOutcome::named_upstream`).
            if out.build_status == kiln_core::state::BuildStatus::Passed && out.named_upstream {
                let st = st.clone();
                tokio::spawn(async move { crate::app::downstream::on_passed(&st, out.build_id, &out.project).await });
            }
        }
    }
    Ok(out.build_status)
}

/// The end of a log sent with a finish: decoded, and checked against `FINISH_LOG_MAX` and the
/// log limit like an upload.
fn log_rest(st: &AppState, by: &AgentAttempt<'_>, rest: &LogRest) -> AppResult<(u64, Vec<u8>)> {
    use base64::Engine;
    let job_id = by.job_id;
    let too_large = || AppError::TooLarge(format!("the finish of job {job_id} carries more than {FINISH_LOG_MAX} bytes of log (kiln_wire::agent::FINISH_LOG_MAX): upload the log first"));
    if rest.base64.len() > FINISH_LOG_MAX.div_ceil(3) * 4 {
        return Err(too_large());
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(&rest.base64)
        .map_err(|e| AppError::BadRequest(format!("the log sent with the finish of job {job_id} is not base64: {e}")))?;
    if data.len() > FINISH_LOG_MAX {
        return Err(too_large());
    }
    check_log_limit(st, by, rest.offset, data.len() as u64)?;
    Ok((rest.offset, data))
}

/// The agent hands its attempt back (it is aborting): the job runs again elsewhere at once.
/// Answers whether it was queued again.
pub async fn release(st: &AppState, by: AgentAttempt<'_>) -> AppResult<bool> {
    let out = st.store.release_job(by).await?;
    st.wake_agents();
    st.wake_control();
    Ok(out.is_some_and(|e| e.requeued))
}
