//! The agent protocol (HTTP/JSON, versioned): register, claim as a long poll,
//! heartbeat (renews leases, carries status, returns jobs to stop), log chunks
//! by byte offset, finish. Every job write names its attempt (fencing) and is
//! accepted only from the agent holding it (checked in the store). Decode, call
//! `app::jobs` or `app::enrolment`, encode.

use crate::app::jobs;
use crate::auth::AgentAuth;
use crate::error::AppResult;
use crate::routes::Routes;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use kiln_store::AgentAttempt;
use kiln_wire::agent::*;
use kiln_wire::enrol::RotateResponse;
use serde::Deserialize;

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/agent/register", register)
        .post("/api/v1/agent/rotate", rotate)
        .post("/api/v1/agent/claim", claim)
        .post("/api/v1/agent/heartbeat", heartbeat)
        .post("/api/v1/agent/wait", wait)
        .with("POST", "/api/v1/agent/jobs/{id}/log", axum::routing::post(log).layer(axum::extract::DefaultBodyLimit::max(LOG_CHUNK_MAX)))
        .with("POST", "/api/v1/agent/jobs/{id}/log/zstd", axum::routing::post(log_zstd).layer(axum::extract::DefaultBodyLimit::max(LOG_CHUNK_MAX)))
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

#[derive(Deserialize)]
struct LogAt {
    attempt: i64,
    offset: u64,
}

async fn log(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<LogAt>, body: Bytes) -> AppResult<Json<LogAck>> {
    let len = jobs::append_log(&st, AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name }, at.offset, &body).await?;
    Ok(Json(LogAck { len }))
}

/// Whole zstd frames of the log from raw byte `offset`: each must decompress to at most
/// `LOG_FRAME` bytes, at most `LOG_FRAMES_MAX` of them. Stored as they came where they start a
/// segment of the log files (no second compression on the server).
async fn log_zstd(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<LogAt>, body: Bytes) -> AppResult<Json<LogAck>> {
    let frames = tokio::task::spawn_blocking(move || split_frames(&body))
        .await
        .map_err(|e| crate::error::AppError::Internal(e.to_string()))?
        .map_err(|e| crate::error::AppError::BadRequest(format!("log upload of job {job_id}: {e}")))?;
    let len = jobs::append_log_frames(&st, AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name }, at.offset, frames).await?;
    Ok(Json(LogAck { len }))
}

/// Split back-to-back zstd frames, each with what it decompresses to.
fn split_frames(mut body: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if out.len() == LOG_FRAMES_MAX {
            return Err(format!("more than {LOG_FRAMES_MAX} zstd frames in one upload"));
        }
        let n = zstd::zstd_safe::find_frame_compressed_size(body).map_err(|_| format!("frame {} is not a whole zstd frame", out.len() + 1))?;
        let frame = &body[..n];
        let raw = zstd::bulk::decompress(frame, LOG_FRAME).map_err(|e| format!("frame {} does not decompress to at most {LOG_FRAME} bytes: {e}", out.len() + 1))?;
        out.push((frame.to_vec(), raw));
        body = &body[n..];
    }
    if out.is_empty() {
        return Err("no zstd frames in the upload".into());
    }
    Ok(out)
}

async fn finish(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<FinishRequest>) -> AppResult<Json<serde_json::Value>> {
    let build_status = jobs::finish(&st, AgentAttempt { job_id, attempt: req.attempt, agent: &agent.name }, &req).await?;
    Ok(Json(serde_json::json!({ "build_status": build_status })))
}

#[derive(Deserialize)]
struct ReleaseRequest {
    attempt: i64,
}

/// An agent that aborts hands its job back: it runs again elsewhere at once.
async fn release(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Json(req): Json<ReleaseRequest>) -> AppResult<Json<serde_json::Value>> {
    let requeued = jobs::release(&st, AgentAttempt { job_id, attempt: req.attempt, agent: &agent.name }).await?;
    Ok(Json(serde_json::json!({ "requeued": requeued })))
}
