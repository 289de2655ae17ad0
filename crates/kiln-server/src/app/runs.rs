//! Uploaded test runs: files (and maybe a pipeline) sent by a person, run as a build of a
//! project. Running them on the project's pipeline needs the developer role; bringing a
//! pipeline of one's own needs the maintainer role. Uploads get no secrets, unless a
//! maintainer uploads to a project that opted in (`upload_secrets`).

use crate::events::EventKind;
use super::access::{self, Need, Reached, Starter};
use crate::auth::Viewer;
use crate::error::AppResult;
use crate::materialize::{materialize, Lease};
use crate::state::AppState;
use crate::uploads::{self, Packed, Staged};
use kiln_store::{BuildRow, UploadRow};
use kiln_wire::api::Role;
use std::time::Instant;

/// The projects the caller may upload runs to (developers and more).
pub async fn targets(st: &AppState, viewer: &Viewer) -> AppResult<Vec<kiln_store::ProjectRow>> {
    let mut out = Vec::new();
    for p in super::projects::list(st, viewer).await? {
        if access::role_on(st, viewer, &p).await?.is_some_and(|r| r >= Role::Developer) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Start an uploaded run of project `project`.
pub async fn create(st: &AppState, viewer: &Viewer, project: &str, staged: Staged) -> AppResult<BuildRow> {
    let who = access::signed_in(viewer)?;
    let reached = access::project(st, viewer, project, Need::Role(Role::Developer)).await?;
    let pipeline = uploads::own_pipeline(&reached.project, &staged).await;
    if pipeline.is_some() {
        access::decide(viewer, &reached.project.name, reached.project.visibility, reached.role, Need::Role(Role::Maintainer))
            .map_err(|e| crate::error::AppError::Forbidden(format!("an upload with a pipeline of its own: {e}")))?;
    }
    let packed = uploads::pack(st, staged, pipeline).await?;
    start(st, &who, &reached, &packed).await
}

/// Run an uploaded build's package again, under the caller (same rules as uploading it).
pub async fn rerun(st: &AppState, viewer: &Viewer, reached: &Reached, up: &UploadRow) -> AppResult<BuildRow> {
    let who = access::signed_in(viewer)?;
    let need = if up.pipeline.is_some() { Role::Maintainer } else { Role::Developer };
    access::decide(viewer, &reached.project.name, reached.project.visibility, reached.role, Need::Role(need))?;
    let packed = Packed { package: up.package.clone(), pipeline: up.pipeline.clone(), files: up.files, size: up.size };
    start(st, &who, reached, &packed).await
}

async fn start(st: &AppState, who: &str, reached: &Reached, packed: &Packed) -> AppResult<BuildRow> {
    let with_secrets = access::build_gets_secrets(&reached.project, Starter::Upload { role: reached.role });
    let b = uploads::record(st, &reached.project, who, packed, with_secrets).await?;
    st.emit(EventKind::Build, b.id, None, &reached.project.name, "queued");
    let (st2, b2, p2) = (st.clone(), b.clone(), reached.project.clone());
    tokio::spawn(async move { materialize(&st2, b2, Some(p2), Lease::Take, Instant::now()).await });
    Ok(b)
}
