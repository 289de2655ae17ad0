//! Builds: trigger, list, show, cancel, and reading job logs.

use super::projects::visible;
use crate::auth::Viewer;
use crate::convert;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::trigger::{start_build, Origin};
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
    let p = visible(&st, &viewer, &name).await?;
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
    let who = viewer.require_user()?;
    let p = visible(&st, &viewer, &name).await?;
    if let Some(c) = &req.commit {
        if c.len() < 4 || !c.chars().all(|x| x.is_ascii_hexdigit()) {
            return Err(AppError::BadRequest(format!("{c:?} is not a commit id (hex, at least 4 digits)")));
        }
    }
    let b = start_build(&st, &p, req.branch.as_deref(), req.commit.as_deref(), Origin::new("manual", who)).await?;
    Ok(Json(convert::build(&b, Vec::new())))
}

/// A build the viewer may see.
pub(crate) async fn visible_build(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<kiln_store::BuildRow> {
    let b = st.store.build(id).await.map_err(|_| AppError::NotFound(format!("build {id} not found")))?;
    visible(st, viewer, &b.project).await.map_err(|_| AppError::NotFound(format!("build {id} not found")))?;
    Ok(b)
}

pub async fn show(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<Build>> {
    let b = visible_build(&st, &viewer, id).await?;
    Ok(Json(convert::full_build(&st.store, &b).await?))
}

#[derive(Deserialize, Default)]
pub struct CancelRequest {
    job: Option<String>,
}

pub async fn cancel(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>, body: Option<Json<CancelRequest>>) -> AppResult<Json<Build>> {
    viewer.require_user()?;
    let b = visible_build(&st, &viewer, id).await?;
    let job_id = match body.and_then(|Json(r)| r.job) {
        None => None,
        Some(j) => {
            let jobs = st.store.jobs_of_build(id).await?;
            let found = jobs.iter().find(|x| x.key == j || x.name == j || x.id.to_string() == j);
            Some(found.ok_or_else(|| AppError::NotFound(format!("build {id} has no job {j:?}")))?.id)
        }
    };
    st.store.cancel(id, job_id).await?;
    st.wake_control();
    let b = st.store.build(b.id).await?;
    st.emit("build", b.id, None, &b.project, &b.status);
    Ok(Json(convert::full_build(&st.store, &b).await?))
}

/// `GET /api/v1/jobs/{id}/log`: see `logread.rs`.
pub async fn log(State(st): State<AppState>, viewer: Viewer, Path(job_id): Path<i64>, Query(q): Query<super::logread::SliceQuery>) -> AppResult<Json<LogSlice>> {
    Ok(Json(super::logread::slice(&st, &viewer, job_id, q).await?))
}
