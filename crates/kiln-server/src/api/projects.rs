//! Projects: list, create, show, update.

use crate::auth::Viewer;
use crate::convert;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_store::ProjectRow;
use kiln_wire::api::{Project, ProjectCreate, ProjectSettings, ProjectUpdate};

/// A project the viewer may see, or 404 (a private project is not revealed to strangers).
pub async fn visible(st: &AppState, viewer: &Viewer, name: &str) -> AppResult<ProjectRow> {
    let p = st.store.project_by_name(name).await.map_err(|_| AppError::NotFound(format!("project {name:?} not found")))?;
    if !p.public && !viewer.signed_in() {
        return Err(AppError::NotFound(format!("project {name:?} not found")));
    }
    Ok(p)
}

pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<Project>>> {
    let mut out = Vec::new();
    for p in st.store.list_projects().await? {
        if p.public || viewer.signed_in() {
            let mut wp = convert::project(&p, viewer.signed_in());
            if let Some(b) = st.store.latest_build(p.id).await? {
                wp.last_build = Some(Box::new(convert::build(&b, Vec::new())));
            }
            out.push(wp);
        }
    }
    Ok(Json(out))
}

pub async fn show(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<Project>> {
    let p = visible(&st, &viewer, &name).await?;
    Ok(Json(convert::project(&p, viewer.signed_in())))
}

pub fn validate_name(name: &str) -> AppResult<()> {
    let ok = !name.is_empty() && name.len() <= 100 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!("invalid project name {name:?}: use letters, digits, '-', '_' and '.'")))
    }
}

/// Check settings that can be wrong (durations, cron expressions).
pub fn validate_settings(s: &ProjectSettings) -> AppResult<()> {
    if let Some(p) = &s.poll {
        kiln_core::duration::parse_duration(p).map_err(|e| AppError::BadRequest(format!("invalid --poll {p:?}: {e}")))?;
    }
    for c in s.schedule.iter().flatten() {
        kiln_core::cron::validate_cron(c).map_err(|e| AppError::BadRequest(format!("invalid schedule {c:?}: {e}")))?;
    }
    crate::notify::validate_settings(s).map_err(AppError::BadRequest)?;
    s.secrets.iter().flatten().try_for_each(|(k, v)| kiln_core::mask::check_secret(k, v)).map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(())
}

pub async fn create(State(st): State<AppState>, viewer: Viewer, Json(req): Json<ProjectCreate>) -> AppResult<Json<Project>> {
    viewer.require_user()?;
    validate_name(&req.name)?;
    if req.repo.trim().is_empty() {
        return Err(AppError::BadRequest("a project needs a repository: --repo URL-or-path".into()));
    }
    validate_settings(&req.settings)?;
    let p = st
        .store
        .create_project(
            &req.name,
            &req.repo,
            req.branch.as_deref().unwrap_or("main"),
            req.pipeline.as_deref().unwrap_or(".kiln.yml"),
            req.public.unwrap_or(false),
            &req.settings,
        )
        .await?;
    project_changed(&st, &p).await;
    Ok(Json(convert::project(&p, viewer.signed_in())))
}

/// Merge set fields of `new` into `old`.
pub fn merge_settings(old: &mut ProjectSettings, new: ProjectSettings) {
    macro_rules! take {
        ($($f:ident),*) => { $( if new.$f.is_some() { old.$f = new.$f; } )* };
    }
    take!(poll, poll_each_commit, webhook_secret, cancel_superseded, notify_email, notify_on, notify_webhook, schedule);
    if let Some(cs) = new.commit_status {
        old.commit_status.get_or_insert_with(Default::default).merge(cs);
    }
    if let Some(s) = new.secrets {
        old.secrets.get_or_insert_with(Default::default).extend(s);
    }
}

pub async fn update(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<ProjectUpdate>) -> AppResult<Json<Project>> {
    viewer.require_user()?;
    let mut p = visible(&st, &viewer, &name).await?;
    validate_settings(&req.settings)?;
    if let Some(r) = req.repo {
        p.repo = r;
    }
    if let Some(b) = req.branch {
        p.branch = b;
    }
    if let Some(x) = req.pipeline {
        p.pipeline = x;
    }
    if let Some(x) = req.public {
        p.public = x;
    }
    merge_settings(&mut p.settings, req.settings);
    st.store.update_project(&p).await?;
    project_changed(&st, &p).await;
    Ok(Json(convert::project(&p, viewer.signed_in())))
}

/// After a project is added or changed: start polling from the current heads
/// (so a commit made right after `project add` builds), and read its triggers.
async fn project_changed(st: &AppState, p: &ProjectRow) {
    if p.settings.poll.is_some() {
        if let Err(e) = crate::sources::poller::ensure_baseline(st, p).await {
            tracing::warn!("project {}: cannot read the repository yet ({e}); the poller will retry", p.name);
        }
    }
    let (st, p) = (st.clone(), p.clone());
    tokio::spawn(async move { crate::sources::meta::refresh(&st, &p).await });
}
