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

pub mod extract;
mod receive;

pub use receive::{check_length, receive, Staged};

use crate::auth::{AgentAuth, Viewer};
use crate::convert;
use crate::error::{AppError, AppResult};
use crate::git;
use crate::materialize::{new_job, Prepared};
use crate::routes::Routes;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use kiln_store::{BuildRow, NewBuild, ProjectRow, UploadRow};
use std::time::Instant;

pub fn routes() -> Routes {
    Routes::new()
        .with("POST", "/api/v1/projects/{name}/runs", axum::routing::post(api_create).layer(DefaultBodyLimit::disable()))
        .get("/api/v1/agent/packages/{build_id}", agent_package)
}

/// The URL path agents fetch a build's package from.
pub fn package_url(build_id: i64) -> String {
    format!("/api/v1/agent/packages/{build_id}")
}

pub(crate) fn package_path(st: &AppState, name: &str) -> AppResult<std::path::PathBuf> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(AppError::Internal(format!("bad package name {name:?}")));
    }
    Ok(st.cfg.data.join("packages").join(name))
}

/// A package as a response body, streamed from disk.
pub async fn read_package(st: &AppState, name: &str) -> AppResult<axum::body::Body> {
    let path = package_path(st, name)?;
    crate::streams::file(&path).await.map_err(|e| AppError::NotFound(format!("package {name} is gone from {}: {e}", path.display())))
}

/// `POST /api/v1/projects/{name}/runs` (multipart; see `receive`). Answers the queued build.
async fn api_create(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, headers: HeaderMap, mp: Multipart) -> AppResult<Json<kiln_wire::api::Build>> {
    crate::app::access::project(&st, &viewer, &name, crate::app::Need::Role(kiln_wire::api::Role::Developer)).await?;
    check_length(&st, &headers)?;
    let staged = receive(&st, mp, None).await?;
    let b = crate::app::runs::create(&st, &viewer, &name, staged).await?;
    Ok(Json(convert::build(&b, Vec::new())))
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

/// Materialize an uploaded run: the pipeline comes from the upload, else from
/// the project's repository (its branch head); every job gets the package.
pub(crate) async fn prepare(st: &AppState, project: &ProjectRow, build: &BuildRow, up: UploadRow, asked_at: Instant) -> Result<Prepared, (String, String)> {
    let file = &project.pipeline;
    let (commit, text) = match up.pipeline {
        Some(text) => (String::new(), text),
        None => {
            let mirror = st.mirrors.refresh(project.id, &project.repo, asked_at).await.map_err(|e| (String::new(), e))?;
            let commit = git::resolve(&mirror, &format!("refs/heads/{}", build.branch)).await.map_err(|e| (String::new(), e))?;
            let text = git::read_file(&mirror, &commit, file)
                .await
                .map_err(|e| (commit.clone(), format!("failed to read {file}: {e}")))?
                .ok_or_else(|| (commit.clone(), format!("{file}:1:1: the upload has no pipeline and {} has none on {}; upload one", project.name, build.branch)))?;
            (commit, text)
        }
    };
    let pipeline = kiln_core::pipeline::parse(file, &text).map_err(|diags| {
        let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        (commit.clone(), lines.join("\n"))
    })?;
    crate::caps::check_jobs(file, &pipeline, st.cfg.max_jobs_per_build).map_err(|e| (commit.clone(), e))?;
    let url = package_url(build.id);
    let jobs = kiln_core::expand::expand(&pipeline).into_iter().map(|pj| new_job(project, build, &commit, pj, Some(&url))).collect();
    let message = format!("uploaded test run: {} file{}, {}", up.files, if up.files == 1 { "" } else { "s" }, human_bytes(up.size));
    Ok(Prepared { commit, message, author: build.triggered_by.clone(), at_branch_head: false, jobs })
}

pub fn human_bytes(n: i64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `GET /api/v1/agent/packages/{build_id}`: the package, for an agent running a job of that build.
async fn agent_package(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(build_id): Path<i64>) -> AppResult<impl IntoResponse> {
    let holds = st.store.running_jobs_of_agent(&agent.name).await?.iter().any(|j| j.build_id == build_id);
    if !holds {
        return Err(AppError::Forbidden(format!("agent {} runs no job of build {build_id}", agent.name)));
    }
    let up = st.store.upload(build_id).await?.ok_or_else(|| AppError::NotFound(format!("build {build_id} has no package")))?;
    let bytes = read_package(&st, &up.package).await?;
    Ok(([(header::CONTENT_TYPE, "application/gzip")], bytes))
}
