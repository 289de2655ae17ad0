//! The agent protocol (HTTP/JSON, versioned): register, claim as a long poll,
//! heartbeat (renews leases, carries status, returns jobs to stop), log chunks
//! by byte offset, finish. Every job write names its attempt (fencing) and is
//! accepted only from the agent holding it (checked in the store).

use crate::auth::AgentAuth;
use crate::events::{Event, EventKind};
use crate::error::{AppError, AppResult};
use crate::routes::Routes;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use kiln_core::state::JobStatus;
use kiln_store::AgentAttempt;
use kiln_wire::agent::*;
use kiln_wire::enrol::RotateResponse;
use serde::Deserialize;
use std::time::Duration;

/// How long a claim waits for work before answering "nothing yet".
const CLAIM_WAIT: Duration = Duration::from_secs(25);

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/agent/register", register)
        .post("/api/v1/agent/rotate", rotate)
        .post("/api/v1/agent/claim", claim)
        .post("/api/v1/agent/heartbeat", heartbeat)
        .post("/api/v1/agent/wait", wait)
        .with("POST", "/api/v1/agent/jobs/{id}/log", axum::routing::post(log).layer(axum::extract::DefaultBodyLimit::max(LOG_CHUNK_MAX)))
        .post("/api/v1/agent/jobs/{id}/finish", finish)
        .post("/api/v1/agent/jobs/{id}/release", release)
}

async fn register(State(st): State<AppState>, headers: HeaderMap, Json(req): Json<RegisterRequest>) -> AppResult<Json<RegisterResponse>> {
    Ok(Json(crate::app::enrolment::register(&st, bearer_of(&headers), &req).await?))
}

/// The bearer token of a request ("" when there is none).
fn bearer_of(headers: &HeaderMap) -> &str {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("").trim()
}

/// The calling agent gets a new token; the one it called with is refused from now on.
async fn rotate(State(st): State<AppState>, headers: HeaderMap, AgentAuth(agent): AgentAuth) -> AppResult<Json<RotateResponse>> {
    Ok(Json(RotateResponse { token: crate::app::enrolment::rotate(&st, &agent, bearer_of(&headers)).await? }))
}

/// Long poll: answer at once with a job, or wait until one may be ready.
async fn claim(State(st): State<AppState>, AgentAuth(agent): AgentAuth, body: Option<Json<ClaimRequest>>) -> AppResult<Json<Option<JobAssignment>>> {
    let claim_id = body.and_then(|Json(r)| r.claim_id);
    // A retried claim whose answer was lost gets the same job, not a second one.
    if let Some(id) = &claim_id {
        let prev = st.claims.lock().unwrap().get(&agent.name).filter(|(c, _)| c == id).map(|(_, a)| a.clone());
        if let Some(a) = prev {
            if st.store.check_held(AgentAttempt { job_id: a.job_id, attempt: a.attempt, agent: &agent.name }).await.is_ok() {
                return Ok(Json(Some(a)));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    let lease_ms = st.cfg.lease_secs.max(2) as i64 * 1000;
    loop {
        let woken = st.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if st.store.agent_seen(agent.id, None).await? {
            return Ok(Json(None));
        }
        if let Some(c) = st.store.claim(&agent, lease_ms).await? {
            let mut a: JobAssignment = serde_json::from_str(&c.job.spec).map_err(|e| AppError::Internal(format!("job {} spec: {e}", c.job.id)))?;
            a.job_id = c.job.id;
            a.attempt = c.job.attempt;
            a.log_limit = st.cfg.log_limit;
            for (k, v) in crate::app::builds::secrets_for(&st, a.build_id).await? {
                a.env.insert(k, v.clone());
                a.secrets.push(v);
            }
            st.emit_event(crate::metrics::job_started(&c.job, &a.project));
            if let Some(id) = claim_id {
                st.claims.lock().unwrap().insert(agent.name.clone(), (id, a.clone()));
            }
            return Ok(Json(Some(a)));
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(Json(None)),
        }
    }
}

async fn heartbeat(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Json(req): Json<HeartbeatRequest>) -> AppResult<Json<HeartbeatResponse>> {
    let drain = st.store.agent_seen(agent.id, Some(&req.status)).await?;
    let lease_ms = st.cfg.lease_secs.max(2) as i64 * 1000;
    let jobs: Vec<(i64, i64)> = req.jobs.iter().map(|j| (j.job_id, j.attempt)).collect();
    let stop = st.store.renew_leases(&agent.name, &jobs, lease_ms).await?;
    Ok(Json(HeartbeatResponse {
        stop: stop.into_iter().map(|(job_id, attempt)| RunningJob { job_id, attempt }).collect(),
        drain,
    }))
}

/// The control long poll: answers at once when one of this agent's jobs must
/// stop (cancelled, or taken back) or it must drain; otherwise after a while with nothing.
async fn wait(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Json(req): Json<WaitRequest>) -> AppResult<Json<HeartbeatResponse>> {
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
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
            return Ok(Json(HeartbeatResponse { stop: stop.into_iter().map(|(job_id, attempt)| RunningJob { job_id, attempt }).collect(), drain }));
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(Json(HeartbeatResponse::default())),
        }
    }
}

#[derive(Deserialize)]
struct LogAt {
    attempt: i64,
    offset: u64,
}

async fn log(
    State(st): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(job_id): Path<i64>,
    Query(at): Query<LogAt>,
    body: Bytes,
) -> AppResult<Json<LogAck>> {
    // The agent truncates past the limit; this only guards against an agent that does not.
    if st.cfg.log_limit > 0 && at.offset + body.len() as u64 > st.cfg.log_limit + (1 << 20) {
        return Err(AppError::TooLarge(format!("job {job_id} log passes the {} byte limit", st.cfg.log_limit)));
    }
    let out = st.store.append_log(AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name }, at.offset, &body).await?;
    if let kiln_store::AppendOutcome::Stored(held) = out {
        if let Ok(j) = st.store.job(job_id).await {
            let mut ev = Event::new(EventKind::Log, j.build_id, Some(job_id), "", "running");
            ev.bytes = Some(held.saturating_sub(at.offset));
            st.emit_event(ev);
        }
    }
    Ok(Json(LogAck { len: out.held() }))
}

async fn finish(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<FinishRequest>) -> AppResult<Json<serde_json::Value>> {
    let status = JobStatus::parse(&req.status)
        .filter(|s| s.is_final() && *s != JobStatus::Skipped)
        .ok_or_else(|| AppError::BadRequest(format!("{:?} is not a final job status", req.status)))?;
    let out = st.store.finish_job(AgentAttempt { job_id, attempt: req.attempt, agent: &agent.name }, req.log_len, status, req.exit_code.map(i64::from), req.reason.as_deref()).await?;
    if !out.repeated {
        if out.readied {
            st.wake_agents();
        }
        let b = st.store.build(out.build_id).await?;
        let mut ev = Event::new(EventKind::Job, out.build_id, Some(job_id), &b.project, status.as_str());
        ev.duration_ms = st.store.job(job_id).await.ok().and_then(|j| Some(j.finished_at? - j.started_at?));
        st.emit_event(ev);
        if out.build_finished {
            st.emit(EventKind::Build, out.build_id, None, &b.project, &out.build_status);
            if out.build_status == "passed" {
                let st = st.clone();
                tokio::spawn(async move { crate::sources::downstream::on_passed(&st, out.build_id).await });
            }
        }
    }
    Ok(Json(serde_json::json!({ "build_status": out.build_status })))
}

#[derive(Deserialize)]
struct ReleaseRequest {
    attempt: i64,
}

/// An agent that aborts hands its job back: it runs again elsewhere at once.
async fn release(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<ReleaseRequest>) -> AppResult<Json<serde_json::Value>> {
    let out = st.store.release_job(AgentAttempt { job_id, attempt: req.attempt, agent: &agent.name }).await?;
    st.wake_agents();
    st.wake_control();
    Ok(Json(serde_json::json!({ "requeued": out.is_some_and(|e| e.requeued) })))
}
