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
    jobs_offset: Option<i64>,
    jobs_limit: Option<i64>,
}

/// The page of a build's jobs an answer holds (`convert::JobPage`).
#[derive(Deserialize, Default)]
pub struct JobsQuery {
    jobs_offset: Option<i64>,
    jobs_limit: Option<i64>,
}

impl JobsQuery {
    pub fn page(&self) -> convert::JobPage {
        convert::JobPage::asked(self.jobs_offset, self.jobs_limit)
    }
}

pub async fn list(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Query(q): Query<ListQuery>) -> AppResult<Json<BuildList>> {
    let p = access::visible(&st, &viewer, &name).await?;
    let f = BuildFilter { branch: q.branch, status: q.status, trigger: q.trigger };
    let (rows, total) = st.store.list_builds(p.id, &f, q.limit.unwrap_or(50).clamp(1, 500), q.offset.unwrap_or(0).max(0)).await?;
    let agents = convert::online_agents(&st.store).await?;
    // Up to 500 builds an answer: fewer jobs each than a single build's page.
    let page = convert::JobPage::asked(q.jobs_offset, Some(q.jobs_limit.unwrap_or(20).min(100)));
    let mut builds = Vec::new();
    for b in &rows {
        builds.push(convert::full_build_with(&st.store, b, &agents, page).await?);
    }
    Ok(Json(BuildList { builds, total }))
}

pub async fn trigger(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<TriggerRequest>) -> AppResult<Json<Build>> {
    let b = app::builds::trigger(&st, &viewer, &name, &req).await?;
    Ok(Json(convert::build(&b, Vec::new())))
}

pub async fn show(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>, Query(q): Query<JobsQuery>) -> AppResult<Json<Build>> {
    let b = app::builds::show(&st, &viewer, id).await?;
    Ok(Json(convert::full_build(&st.store, &b, q.page()).await?))
}

#[derive(Deserialize, Default)]
pub struct CancelRequest {
    job: Option<String>,
}

pub async fn cancel(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>, body: Option<Json<CancelRequest>>) -> AppResult<Json<Build>> {
    let job = body.and_then(|Json(r)| r.job);
    let b = app::builds::cancel(&st, &viewer, id, job.as_deref()).await?;
    Ok(Json(convert::full_build(&st.store, &b, convert::JobPage::default()).await?))
}

pub async fn rebuild(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<Build>> {
    let b = app::builds::rebuild(&st, &viewer, id).await?;
    Ok(Json(convert::build(&b, Vec::new())))
}

/// `GET /api/v1/jobs/{id}/log`: see `logread.rs`.
pub async fn log(State(st): State<AppState>, viewer: Viewer, Path(job_id): Path<i64>, Query(q): Query<super::logread::SliceQuery>) -> AppResult<Json<LogSlice>> {
    Ok(Json(super::logread::slice(&st, &viewer, job_id, q).await?))
}
