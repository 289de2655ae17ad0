//! Builds as people act on them: trigger, cancel, rebuild, and reading what may be seen.

use crate::events::EventKind;
use super::access::{self, Need, Reached, Starter};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::app::trigger::{start_build, Origin};
use kiln_store::{BuildRow, JobRow, ProjectRow};
use kiln_wire::api::{Role, TriggerRequest};

/// A manual build of a project's branch or commit (developers).
pub async fn trigger(st: &AppState, viewer: &Viewer, project: &str, req: &TriggerRequest) -> AppResult<BuildRow> {
    let Reached { project, .. } = access::project(st, viewer, project, Need::Role(Role::Developer)).await?;
    let who = access::signed_in(viewer)?;
    if let Some(c) = &req.commit {
        if c.len() < 4 || !c.chars().all(|x| x.is_ascii_hexdigit()) {
            return Err(AppError::BadRequest(format!("{c:?} is not a commit id (hex, at least 4 digits)")));
        }
    }
    let branch = req.branch.as_deref().map(str::trim).filter(|b| !b.is_empty());
    Ok(start_build(st, &project, branch, req.commit.as_deref(), Origin::new("manual", who), Starter::Person).await?)
}

/// A build of the project's own repository started by a change source (a webhook or a
/// post-receive hook, whose caller proved itself with the project's secret or a developer's
/// token; the poller, cron and downstream triggers): it gets the project's secrets.
pub async fn from_source(st: &AppState, project: &ProjectRow, branch: Option<&str>, commit: Option<&str>, origin: Origin) -> AppResult<BuildRow> {
    Ok(start_build(st, project, branch, commit, origin, Starter::Source).await?)
}

/// Cancel a build, or one of its jobs named by key, name or id (developers). Running jobs stop
/// at once: the agents' control polls are woken.
pub async fn cancel(st: &AppState, viewer: &Viewer, id: i64, job: Option<&str>) -> AppResult<BuildRow> {
    let (b, _) = access::build(st, viewer, id, Need::Role(Role::Developer)).await?;
    let job_id = match job {
        None => None,
        Some(j) => {
            let jobs = st.store.jobs_of_build(id).await?;
            let found = jobs.iter().find(|x| x.key == j || x.name == j || x.id.to_string() == j);
            Some(found.ok_or_else(|| AppError::NotFound(format!("build {id} has no job {j:?}")))?.id)
        }
    };
    cancel_now(st, b.id, job_id).await?;
    Ok(st.store.build(b.id).await?)
}

/// Cancel without asking who: for the server's own decisions (a superseded build).
pub(crate) async fn cancel_now(st: &AppState, build_id: i64, job_id: Option<i64>) -> AppResult<()> {
    st.store.cancel(build_id, job_id).await?;
    st.wake_control();
    let b = st.store.build(build_id).await?;
    st.emit(EventKind::Build, b.id, None, &b.project, b.status.as_str());
    Ok(())
}

/// Start the same build again: the same commit, or the same uploaded package (developers;
/// an upload with a pipeline of its own needs what uploading it needed).
pub async fn rebuild(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<BuildRow> {
    let (b, reached) = access::build(st, viewer, id, Need::Role(Role::Developer)).await?;
    let who = access::signed_in(viewer)?;
    if let Some(up) = crate::uploads::of_build(st, &b).await {
        return super::runs::rerun(st, viewer, &reached, &up).await;
    }
    let commit = Some(b.commit.as_str()).filter(|c| !c.is_empty());
    Ok(start_build(st, &reached.project, Some(&b.branch), commit, Origin::new("manual", who), Starter::Person).await?)
}

/// A new build of the same commit that reruns only what failed: the failed plain jobs and the
/// failed tests of `tests:` jobs (developers), linked to the original.
pub async fn retry_failed(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<BuildRow> {
    let (orig, _) = access::build(st, viewer, id, Need::Role(Role::Developer)).await?;
    let who = access::signed_in(viewer)?;
    let b = st.store.retry_failed(orig.id, &who).await?;
    st.wake_agents();
    st.emit(EventKind::Build, b.id, None, &b.project, b.status.as_str());
    Ok(b)
}

/// A build the caller may see.
pub async fn show(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<BuildRow> {
    Ok(access::build(st, viewer, id, Need::See).await?.0)
}

/// A job (and its build) the caller may see.
pub async fn job(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<(JobRow, BuildRow)> {
    access::job(st, viewer, id, Need::See).await
}
