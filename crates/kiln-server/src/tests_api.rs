//! The agent protocol's test calls for sharded jobs: claim (list / wait / a batch / done),
//! upload the listed ids, upload a JUnit report (also after plain steps), and finish a batch.
//! Every call names its attempt and comes from the agent holding it: a stale attempt gets 409
//! (its batches go back), another agent's job 403. Before a list is taken, finished builds are
//! judged for quarantine (`app::quarantine::catch_up`): the build's verdict lets quarantined
//! tests fail.
//!
//! ```text
//!  shard ─ claim ─► list? ── run list ─► POST list ──┐
//!          │  ◄───────────────────────────────────────┘
//!          └─► batch ─► run `run {tests}` ─► POST report (each JUnit file) ─► POST done ─► claim …
//! ```

use crate::events::EventKind;
use crate::auth::AgentAuth;
use crate::error::{AppError, AppResult};
use crate::routes::Routes;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::Json;
use kiln_store::{AgentAttempt, TestClaim, TestGroup};
use kiln_wire::agent::{Ack, BatchDone, BatchDoneAck, ClaimTestsRequest, JobAssignment, ReportAck, ReportAt, TestBatch, TestListUpload};
use std::time::Duration;

/// The largest JUnit report one upload may carry; larger gets 413.
pub const JUNIT_LIMIT: usize = kiln_wire::agent::JUNIT_LIMIT;
/// How long a claim waits, on the server, for another shard to finish listing or a batch.
const LIST_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting claim looks again when nothing changes here (a change through another server).
const LIST_LOOK: Duration = Duration::from_millis(50);

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/agent/jobs/{id}/tests/claim", claim)
        .post("/api/v1/agent/jobs/{id}/tests/list", list)
        .with("POST", "/api/v1/agent/jobs/{id}/tests/report", axum::routing::post(report).layer(DefaultBodyLimit::max(JUNIT_LIMIT)))
        .post("/api/v1/agent/jobs/{id}/tests/done", done)
}

/// The job's spec and its test queue.
async fn job_group(st: &AppState, job_id: i64) -> AppResult<(JobAssignment, TestGroup)> {
    let job = st.store.job(job_id).await?;
    let spec: JobAssignment = serde_json::from_str(&job.spec).map_err(|e| AppError::Internal(format!("job {job_id} spec: {e}")))?;
    let group = TestGroup {
        key: kiln_core::testrun::group_key(&job.key, spec.shard_count),
        shards: spec.shard_count.max(1),
        shard_index: spec.shard_index.max(1),
        retries: spec.tests.as_ref().map_or(0, |t| t.retries),
    };
    Ok((spec, group))
}

async fn claim(State(st): State<AppState>, AgentAuth(a): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<ClaimTestsRequest>) -> AppResult<Json<TestBatch>> {
    let by = AgentAttempt { job_id, attempt: req.attempt, agent: &a.name };
    st.store.check_held(by).await?;
    let (spec, group) = job_group(&st, job_id).await?;
    if spec.tests.is_none() {
        return Err(AppError::BadRequest(format!("job {job_id} has no `tests:` block")));
    }
    let deadline = tokio::time::Instant::now() + LIST_WAIT;
    loop {
        // Listening before the look, so a change made between the two is not missed.
        let changed = st.test_queues.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let c = st.store.claim_tests(by, &group).await?;
        if c == TestClaim::Wait && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(LIST_LOOK) => {}
            }
            continue;
        }
        if c == TestClaim::List && spec.tests.as_ref().is_some_and(|t| t.split_files.is_none()) {
            seed(&st, job_id, req.attempt, &a.name, &group);
        }
        return Ok(Json(match c {
            TestClaim::List => TestBatch { list: true, ..Default::default() },
            TestClaim::Wait => TestBatch { wait: true, ..Default::default() },
            TestClaim::Error(e) => TestBatch { error: Some(e), ..Default::default() },
            TestClaim::Batch { id, tests, plan } => TestBatch { batch_id: Some(id), tests, plan: Some(plan), ..Default::default() },
            TestClaim::Done { failed, flaky, quarantined } => TestBatch { done: true, failed, flaky, quarantined, ..Default::default() },
        }));
    }
}

/// While this shard lists, the others start on the last list of this group (the store's
/// `seed_test_queue`); the shards waiting for the list are woken to claim from it.
fn seed(st: &AppState, job_id: i64, attempt: i64, agent: &str, group: &TestGroup) {
    let (st, agent, group) = (st.clone(), agent.to_string(), group.clone());
    tokio::spawn(async move {
        let by = AgentAttempt { job_id, attempt, agent: &agent };
        match st.store.seed_test_queue(by, &group).await {
            Ok(Some(from)) => {
                tracing::debug!("job {job_id}: test queue {} seeded from build {from}'s list", group.key);
                st.test_queues.notify_waiters();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("job {job_id}: seeding test queue {} from an earlier list: {e}", group.key),
        }
    });
}

async fn list(State(st): State<AppState>, AgentAuth(a): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<TestListUpload>) -> AppResult<Json<Ack>> {
    // Only the agent holding the job gets any work done for it (judging builds costs).
    let by = AgentAttempt { job_id, attempt: req.attempt, agent: &a.name };
    st.store.check_held(by).await?;
    let (_, group) = job_group(&st, job_id).await?;
    let ids = match req.error {
        Some(e) => Err(e),
        None if req.ids.is_empty() => Err("the list command printed no test ids".to_string()),
        None => Ok(req.ids),
    };
    // The quarantine this build's verdict uses is the one after every finished build is judged.
    if let Ok(j) = st.store.job(job_id).await {
        if let Ok(b) = st.store.build(j.build_id).await {
            if let Err(e) = crate::app::quarantine::catch_up(&st, b.project_id).await {
                tracing::warn!("judging finished builds for quarantine: {e}");
            }
        }
    }
    st.store.upload_test_list(by, &group, ids, req.static_split, &req.changed_files).await?;
    st.test_queues.notify_waiters();
    Ok(Json(Ack {}))
}

async fn report(State(st): State<AppState>, AgentAuth(a): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<ReportAt>, body: Bytes) -> AppResult<Json<ReportAck>> {
    // Only the agent holding the job has its report read at all.
    let by = AgentAttempt { job_id, attempt: at.attempt, agent: &a.name };
    st.store.check_held(by).await?;
    let (_, group) = job_group(&st, job_id).await?;
    let cases = kiln_core::junit::parse(&at.path, &body).map_err(|e| AppError::BadRequest(format!("malformed JUnit report {e}")))?;
    let caps = crate::caps::ReportCaps { reports: st.cfg.max_junit_reports_per_job, cases: st.cfg.max_test_cases_per_job };
    crate::caps::check_report(&st.store, caps, job_id, at.attempt, &at.path, cases.len()).await?;
    let cases = st.store.store_test_report(by, at.batch, &group.key, &at.path, &cases).await?;
    Ok(Json(ReportAck { cases }))
}

async fn done(State(st): State<AppState>, AgentAuth(a): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<BatchDone>) -> AppResult<Json<BatchDoneAck>> {
    let s = st.store.finish_test_batch(AgentAttempt { job_id, attempt: req.attempt, agent: &a.name }, req.batch_id, req.exit_code).await?;
    // Shards waiting on this queue learn at once that its last batch is over, or take the tests
    // this one sent back. Only then: each claim woken looks at its queue in a write.
    if s.none_running || s.retried > 0 || s.requeued > 0 {
        st.test_queues.notify_waiters();
    }
    if let Ok(j) = st.store.job(job_id).await {
        if let Ok(b) = st.store.build(j.build_id).await {
            st.emit(EventKind::Tests, b.id, Some(job_id), &b.project, "running");
        }
    }
    Ok(Json(BatchDoneAck { passed: s.passed, failed: s.failed, retried: s.retried, requeued: s.requeued }))
}
