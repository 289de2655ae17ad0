//! Uploaded test runs (the TestRunner seed): a signed-in user uploads files or
//! an archive, picks a project's pipeline (or uploads one), and the run becomes
//! a build with trigger `upload` under their name. Agents fetch the package
//! (`JobAssignment::package`) and unpack it instead of checking out git.
//!
//! ```text
//!  multipart ─► receive (staging, limits, safe unpack) ─► pack DATA/packages/ID.tar.gz
//!            ─► build (trigger upload) + uploads row ─► materialize: pipeline from the
//!               upload, the package, or the project's repository ─► jobs with `package`
//! ```
//!
//! This module keeps the packages (receiving, packing, recording, reading); the routes are
//! `api::runs` (users upload) and `agent_api` (agents fetch), the use case `app::runs`, and
//! `materialize` turns an upload into jobs.

pub mod extract;
mod receive;

pub use receive::{check_length, receive, Staged};

use crate::error::{AppError, AppResult};
use crate::state::AppState;
use kiln_store::{BuildRow, NewBuild, ProjectRow, UploadRow};

/// The URL path agents fetch a build's package from.
pub fn package_url(build_id: i64) -> String {
    format!("/api/v1/agent/packages/{build_id}")
}

pub(crate) fn package_path(st: &AppState, name: &str) -> AppResult<std::path::PathBuf> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(AppError::Internal(format!("bad package name {name:?}")));
    }
    Ok(st.cfg.data.join(crate::datafiles::PACKAGES).join(name))
}

/// A package as a response body, streamed from disk.
pub async fn read_package(st: &AppState, name: &str) -> AppResult<axum::body::Body> {
    let path = package_path(st, name)?;
    crate::streams::file(&path).await.map_err(|e| AppError::NotFound(format!("package {name} is gone from {}: {e}", path.display())))
}

/// The pipeline an upload brings: the `pipeline` part, or a file at the project's pipeline
/// path inside the upload (used as is). None: the run uses the project's own pipeline.
pub async fn own_pipeline(project: &ProjectRow, staged: &Staged) -> Option<String> {
    if staged.pipeline.is_some() {
        return staged.pipeline.clone();
    }
    let rel = kiln_core::paths::safe_relative(&project.pipeline)?;
    tokio::fs::read_to_string(staged.files_dir.join(rel)).await.ok()
}

/// A received upload packed into `DATA/packages/`, ready to run.
pub struct Packed {
    pub package: String,
    pub pipeline: Option<String>,
    pub files: i64,
    pub size: i64,
}

/// Pack what was received (the caller has decided it may run).
pub async fn pack(st: &AppState, staged: Staged, pipeline: Option<String>) -> AppResult<Packed> {
    let files_dir = staged.files_dir.clone();
    let files = tokio::task::spawn_blocking(move || extract::walk(&files_dir)).await.map_err(|e| AppError::Internal(e.to_string()))?;
    let files = files.map_err(|e| AppError::Internal(format!("failed to list the upload: {e}")))?;
    if files.is_empty() {
        return Err(AppError::BadRequest("the upload holds no file: add test files or an archive".into()));
    }
    let name = format!("{}.tar.gz", uuid::Uuid::new_v4().simple());
    let out = package_path(st, &name)?;
    let (src, dst) = (staged.files_dir.clone(), out.clone());
    tokio::task::spawn_blocking(move || extract::pack(&src, &dst))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::Internal(format!("failed to pack the upload into {}: {e}", out.display())))?;
    let size = tokio::fs::metadata(&out).await.map(|m| m.len() as i64).unwrap_or(0);
    drop(staged);
    Ok(Packed { package: name, pipeline, files: files.len() as i64, size })
}

/// Record the run as a build (trigger `upload`) under `who`; the caller emits and expands it.
pub async fn record(st: &AppState, project: &ProjectRow, who: &str, packed: &Packed, with_secrets: bool) -> AppResult<BuildRow> {
    let nb = NewBuild {
        project_id: project.id,
        branch: project.branch.clone(),
        requested_commit: None,
        trigger: TRIGGER.into(),
        triggered_by: who.to_string(),
        upstream_build: None,
        before_commit: None,
        changed_paths: None,
        with_secrets,
    };
    let b = st.store.create_upload_build(&nb, &packed.package, packed.pipeline.as_deref(), packed.files, packed.size).await?;
    tracing::info!(
        "{who} uploaded a test run of {} ({} files, {} bytes) as build {}{}",
        project.name,
        packed.files,
        packed.size,
        b.id,
        if with_secrets { ", with the project's secrets" } else { "" }
    );
    Ok(b)
}

/// The trigger of an uploaded run's build.
const TRIGGER: &str = "upload";

/// Whether a build is an uploaded run.
pub fn is_upload(build: &BuildRow) -> bool {
    build.trigger == TRIGGER
}

/// The upload behind a build, if it is an uploaded run.
pub async fn of_build(st: &AppState, build: &BuildRow) -> Option<UploadRow> {
    if !is_upload(build) {
        return None;
    }
    st.store.upload(build.id).await.ok().flatten()
}

pub fn human_bytes(n: i64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
