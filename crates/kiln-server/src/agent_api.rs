//! The agent protocol (HTTP/JSON, versioned): register, claim as a long poll,
//! heartbeat (renews leases, carries status, returns jobs to stop), log chunks
//! by byte offset and the live tail of a log past its head, finish, and an uploaded run's
//! package for a job of its build. Every job write names its attempt (fencing) and is
//! accepted only from the agent holding it (checked in the store). Decode, call
//! `app::jobs` or `app::enrolment`, encode.

use crate::app::jobs;
use crate::auth::AgentAuth;
use crate::error::{AppError, AppResult};
use crate::routes::Routes;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use kiln_store::AgentAttempt;
use kiln_wire::agent::*;
use kiln_wire::enrol::RotateResponse;

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/agent/register", register)
        .get("/api/v1/agent/packages/{build_id}", package)
        .post("/api/v1/agent/rotate", rotate)
        .post("/api/v1/agent/claim", claim)
        .post("/api/v1/agent/heartbeat", heartbeat)
        .post("/api/v1/agent/wait", wait)
        .with("POST", "/api/v1/agent/jobs/{id}/log", axum::routing::post(log).layer(axum::extract::DefaultBodyLimit::max(LOG_CHUNK_MAX)))
        .with("POST", "/api/v1/agent/jobs/{id}/log/zstd", axum::routing::post(log_zstd).layer(axum::extract::DefaultBodyLimit::max(LOG_CHUNK_MAX)))
        .with("PUT", "/api/v1/agent/jobs/{id}/log/live", axum::routing::put(log_live))
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
    Ok(Json(jobs::claim(&st, &agent, claim_id).await?))
}

async fn heartbeat(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Json(req): Json<HeartbeatRequest>) -> AppResult<Json<HeartbeatResponse>> {
    Ok(Json(jobs::heartbeat(&st, &agent, &req).await?))
}

async fn wait(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Json(req): Json<WaitRequest>) -> AppResult<Json<HeartbeatResponse>> {
    Ok(Json(jobs::control(&st, &agent, &req).await?))
}

/// A log upload's body, read only once the calling agent is known to hold the attempt, and
/// never past `cap` (413 naming it, `what` its name in kiln_wire); with the job's build.
async fn held_body(st: &AppState, by: AgentAttempt<'_>, headers: &HeaderMap, body: Body, (cap, what): (usize, &str)) -> AppResult<(i64, Vec<u8>)> {
    let build_id = jobs::may_log(st, by).await?;
    let too_large = || AppError::TooLarge(format!("a log upload of job {} carries at most {cap} bytes (kiln_wire::agent::{what})", by.job_id));
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    Ok((build_id, axum::body::to_bytes(body, cap).await.map_err(|_| too_large())?.into()))
}

const CHUNK_CAP: (usize, &str) = (LOG_CHUNK_MAX, "LOG_CHUNK_MAX");

async fn log(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<LogAt>, headers: HeaderMap, body: Body) -> AppResult<Json<LogAck>> {
    let by = AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name };
    let (build_id, body) = held_body(&st, by, &headers, body, CHUNK_CAP).await?;
    Ok(Json(LogAck { len: jobs::append_log(&st, by, build_id, at.offset, &body).await? }))
}

/// Whole zstd frames of the log from raw byte `offset` (`kiln_store::DeclaredFrames`): read
/// once the agent is known to hold the attempt, capped by the sizes the frames declare, and
/// decompressed only then, as a stream. Stored as they came where they start a segment of
/// the log files (no second compression on the server).
async fn log_zstd(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<LogAt>, headers: HeaderMap, body: Body) -> AppResult<Json<LogAck>> {
    let by = AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name };
    let (build_id, body) = held_body(&st, by, &headers, body, CHUNK_CAP).await?;
    Ok(Json(LogAck { len: jobs::append_log_frames(&st, by, build_id, at.offset, body).await? }))
}

/// The live tail of a log past its head (at most `LIVE_TAIL_MAX` bytes), replacing the last one.
async fn log_live(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<LiveAt>, headers: HeaderMap, body: Body) -> AppResult<Json<Ack>> {
    let by = AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name };
    let (build_id, body) = held_body(&st, by, &headers, body, (LIVE_TAIL_MAX, "LIVE_TAIL_MAX")).await?;
    jobs::set_live_tail(&st, by, build_id, at.past_head, body).await?;
    Ok(Json(Ack {}))
}

async fn finish(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<FinishRequest>) -> AppResult<Json<FinishResponse>> {
    let build_status = jobs::finish(&st, AgentAttempt { job_id, attempt: req.attempt, agent: &agent.name }, &req).await?;
    Ok(Json(FinishResponse { build_status: build_status.as_str().to_string() }))
}

/// An agent that aborts hands its job back: it runs again elsewhere at once.
async fn release(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<ReleaseRequest>) -> AppResult<Json<ReleaseResponse>> {
    let requeued = jobs::release(&st, AgentAttempt { job_id, attempt: req.attempt, agent: &agent.name }).await?;
    Ok(Json(ReleaseResponse { requeued }))
}

/// `GET /api/v1/agent/packages/{build_id}`: the package, for an agent running a job of that build.
async fn package(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(build_id): Path<i64>) -> AppResult<impl axum::response::IntoResponse> {
    let holds = st.store.running_jobs_of_agent(&agent.name).await?.iter().any(|j| j.build_id == build_id);
    if !holds {
        return Err(AppError::Forbidden(format!("agent {} runs no job of build {build_id}", agent.name)));
    }
    let up = st.store.upload(build_id).await?.ok_or_else(|| AppError::NotFound(format!("build {build_id} has no package")))?;
    let bytes = crate::uploads::read_package(&st, &up.package).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/gzip")], bytes))
}
