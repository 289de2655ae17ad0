//! Builds: trigger, list, show, cancel, and reading job logs.

use crate::app::{self, access};
use crate::auth::Viewer;
use crate::convert;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use kiln_store::BuildFilter;
use kiln_wire::api::{Build, BuildList, LogSlice, TriggerRequest};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    branch: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Query(q): Query<ListQuery>) -> AppResult<Json<BuildList>> {
    let p = access::visible(&st, &viewer, &name).await?;
    let f = BuildFilter { branch: q.branch, status: q.status, trigger: q.trigger };
    let (rows, total) = st.store.list_builds(p.id, &f, q.limit.unwrap_or(50).clamp(1, 500), q.offset.unwrap_or(0).max(0)).await?;
    let agents = convert::online_agents(&st.store).await?;
    let mut builds = Vec::new();
    for b in &rows {
        builds.push(convert::full_build_with(&st.store, b, &agents).await?);
    }
    Ok(Json(BuildList { builds, total }))
}

pub async fn trigger(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<TriggerRequest>) -> AppResult<Json<Build>> {
    let b = app::builds::trigger(&st, &viewer, &name, &req).await?;
    Ok(Json(convert::build(&b, Vec::new())))
}

pub async fn show(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<Build>> {
    let b = app::builds::show(&st, &viewer, id).await?;
    Ok(Json(convert::full_build(&st.store, &b).await?))
}

#[derive(Deserialize, Default)]
pub struct CancelRequest {
    job: Option<String>,
}

pub async fn cancel(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>, body: Option<Json<CancelRequest>>) -> AppResult<Json<Build>> {
    let job = body.and_then(|Json(r)| r.job);
    let b = app::builds::cancel(&st, &viewer, id, job.as_deref()).await?;
    Ok(Json(convert::full_build(&st.store, &b).await?))
}

pub async fn rebuild(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<Build>> {
    let b = app::builds::rebuild(&st, &viewer, id).await?;
    Ok(Json(convert::build(&b, Vec::new())))
}

#[derive(Deserialize)]
pub struct LogQuery {
    attempt: Option<i64>,
    offset: Option<u64>,
    max: Option<usize>,
}

pub async fn log(State(st): State<AppState>, viewer: Viewer, Path(job_id): Path<i64>, Query(q): Query<LogQuery>) -> AppResult<Json<LogSlice>> {
    let (job, _) = app::builds::job(&st, &viewer, job_id).await?;
    let attempt = q.attempt.unwrap_or(job.attempt);
    let offset = q.offset.unwrap_or(0);
    let read = st.store.read_log(job_id, attempt, offset, q.max.unwrap_or(1 << 20).min(8 << 20)).await?;
    let final_ = kiln_core::state::JobStatus::parse(&job.status).is_some_and(|s| s.is_final());
    let done = attempt < job.attempt || final_ || (job.status == "queued" && job.attempt > 0);
    let keep = utf8_complete_prefix(&read.data);
    let next_offset = read.next_offset - (read.data.len() - keep) as u64;
    Ok(Json(LogSlice {
        job_id,
        attempt,
        offset,
        next_offset,
        done: done && next_offset == read.next_offset,
        text: String::from_utf8_lossy(&read.data[..keep]).into_owned(),
    }))
}

/// Length of `data` without a trailing, incomplete UTF-8 sequence (it comes with the next read).
fn utf8_complete_prefix(data: &[u8]) -> usize {
    match std::str::from_utf8(data) {
        Ok(_) => data.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => data.len(),
    }
}
