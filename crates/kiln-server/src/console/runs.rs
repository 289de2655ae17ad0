//! Uploaded test runs (the TestRunner seed): the list with their status
//! (created, running, passed, failed…) and the upload form.

use super::views::{build_view, run_status, BuildView};
use super::{render, require_user, see_other, Layout, PageResult};
use crate::auth::Page;
use crate::error::AppError;
use crate::state::AppState;
use crate::uploads;
use askama::Template;
use axum::extract::{Multipart, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

pub struct RunView {
    pub b: BuildView,
    pub label: String,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsTpl {
    l: Layout,
    live: String,
}

#[derive(Template)]
#[template(path = "runs_live.html")]
struct RunsLive {
    runs: Vec<RunView>,
    signed_in: bool,
}

#[derive(Deserialize, Default)]
pub struct RunsQuery {
    partial: Option<u8>,
}

pub async fn list(State(st): State<AppState>, page: Page, Query(q): Query<RunsQuery>) -> PageResult<Response> {
    let mut runs = Vec::new();
    let sight = crate::app::Sight::of(&st, &page.viewer).await?;
    for b in st.store.recent_uploads(200).await? {
        if !sight.sees(&b.project) {
            continue;
        }
        runs.push(RunView { label: run_status(b.status.as_str()).to_string(), b: build_view(&b) });
        if runs.len() == 100 {
            break;
        }
    }
    let live = RunsLive { runs, signed_in: page.viewer.signed_in() };
    if q.partial.unwrap_or(0) != 0 {
        return render(&live);
    }
    let live = live.render().map_err(|e| AppError::Internal(e.to_string()))?;
    render(&RunsTpl { l: Layout::of(&page, "runs"), live })
}

#[derive(Template)]
#[template(path = "run_new.html")]
struct NewRunTpl {
    l: Layout,
    projects: Vec<(String, String)>,
    selected: String,
    limit: String,
    error: String,
}

#[derive(Deserialize, Default)]
pub struct FormQuery {
    project: Option<String>,
}

async fn form_page(st: &AppState, page: &Page, selected: &str, error: String) -> PageResult<Response> {
    let projects = crate::app::runs::targets(st, &page.viewer).await?.into_iter().map(|p| (p.name, p.pipeline)).collect();
    render(&NewRunTpl {
        l: Layout::of(page, "runs"),
        projects,
        selected: selected.to_string(),
        limit: uploads::human_bytes(st.cfg.upload_limit as i64),
        error,
    })
}

pub async fn form(State(st): State<AppState>, page: Page, Query(q): Query<FormQuery>) -> PageResult<Response> {
    require_user(&page)?;
    form_page(&st, &page, q.project.as_deref().unwrap_or(""), String::new()).await
}

/// The upload form's POST: `_csrf` first, then `project`, files, archive, pipeline.
pub async fn create(State(st): State<AppState>, page: Page, headers: HeaderMap, mp: Multipart) -> PageResult<Response> {
    require_user(&page)?;
    uploads::check_length(&st, &headers)?;
    let staged = uploads::receive(&st, mp, Some(&page)).await?;
    let project = staged.fields.get("project").cloned().unwrap_or_default();
    let res = match crate::app::runs::create(&st, &page.viewer, &project, staged).await {
        Err(AppError::NotFound(_)) => Err(AppError::BadRequest(format!("pick a project for the run (no project {project:?})"))),
        other => other,
    };
    match res {
        Ok(b) => Ok(see_other(&format!("/builds/{}", b.id))),
        Err(e @ AppError::BadRequest(_)) => {
            let mut r = form_page(&st, &page, &project, e.to_string()).await?;
            *r.status_mut() = e.status();
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}
