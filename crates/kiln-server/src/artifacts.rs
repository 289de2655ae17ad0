//! Artifacts: files a job keeps (`artifacts:` in the pipeline). The agent PUTs
//! each file after the steps; the body is streamed to a staging file under
//! `FILES/artifacts/.partial/`, counted against the per-file and per-job limits
//! (413 past them), hashed, and renamed into `FILES/artifacts/<job>/<name>` only
//! when complete, so a broken-off upload leaves nothing visible and a retry
//! simply sends it again. Names pass `kiln_core::paths::safe_relative`. People
//! list and download a build's artifacts through its visibility; a job's
//! `needs` fetch theirs (agent routes) into `KILN_ARTIFACTS_IN`.

use crate::app::access::visible_build;
use crate::routes::Routes;
use crate::auth::{AgentAuth, Viewer};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use kiln_store::{AgentAttempt, ArtifactRow};
use kiln_wire::agent::{InputsAt, UploadAt};
use kiln_wire::api::Artifact;
use sha2::Digest;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

pub fn routes() -> Routes {
    Routes::new()
        .with("PUT", "/api/v1/agent/jobs/{id}/artifacts", axum::routing::put(upload).layer(DefaultBodyLimit::disable()))
        .get("/api/v1/agent/jobs/{id}/inputs", inputs)
        .get("/api/v1/agent/artifacts/{build}/{job}/{*name}", agent_download)
        .get("/api/v1/builds/{id}/artifacts", list)
        .get("/api/v1/builds/{id}/artifacts/{job}/{*name}", download)
}

fn root(st: &AppState) -> PathBuf {
    st.cfg.files_dir().join(crate::datafiles::ARTIFACTS)
}

/// Where a job's artifacts live (retention removes the folder).
pub fn job_dir(st: &AppState, job_id: i64) -> PathBuf {
    root(st).join(job_id.to_string())
}

/// A name as stored: relative, normalised, `/`-separated; None if it leaves its folder.
fn normalise(name: &str) -> Option<String> {
    let p = kiln_core::paths::safe_relative(name)?;
    Some(p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/"))
}

async fn upload(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<UploadAt>, body: Body) -> AppResult<Json<Artifact>> {
    let name = normalise(&at.name).ok_or_else(|| AppError::BadRequest(format!("artifact name {:?} leaves its folder (absolute, or with ..): name files inside the working copy", at.name)))?;
    let by = AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name };
    // Only the agent holding the running attempt may send (403 for another, 409 when stale),
    // checked before the body is read and again, in the store, when the file is recorded.
    st.store.check_held(by).await?;
    let job = st.store.job(job_id).await?;
    let file_cap = st.cfg.artifact_file_limit;
    let job_cap = st.cfg.artifact_job_limit;
    let held = st.store.artifact_bytes_of_job(job_id, &name).await?;
    let too_big = |n: u64| -> Option<AppError> {
        if file_cap > 0 && n > file_cap {
            return Some(AppError::TooLarge(format!("artifact {name} passes the {file_cap} byte limit per file (raise it with kiln server --artifact-file-limit)")));
        }
        if job_cap > 0 && held + n > job_cap {
            return Some(AppError::TooLarge(format!("job {job_id}'s artifacts pass the {job_cap} byte limit per job (raise it with kiln server --artifact-job-limit)")));
        }
        None
    };
    let staging = root(&st).join(crate::datafiles::PARTIAL);
    tokio::fs::create_dir_all(&staging).await.map_err(|e| AppError::Internal(format!("failed to make {}: {e}", staging.display())))?;
    let tmp = staging.join(uuid::Uuid::new_v4().simple().to_string());
    let written = receive(body, &tmp, &too_big).await;
    let (size, sha) = match written {
        Ok(x) => x,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let dest = job_dir(&st, job_id).join(&name);
    let placed = async {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&tmp, &dest).await
    }
    .await;
    if let Err(e) = placed {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(AppError::Internal(format!("failed to keep artifact {name}: {e}")));
    }
    st.store.record_artifact(by, &name, size, &sha).await?;
    let row = st.store.artifacts_of_build(job.build_id).await?.into_iter().find(|a| a.job_id == job_id && a.name == name);
    let row = row.ok_or_else(|| AppError::Internal(format!("artifact {name} was not recorded")))?;
    Ok(Json(to_wire(&row)))
}

/// Stream `body` into `tmp`, refusing it once `too_big` says so; returns (size, SHA-256).
async fn receive(body: Body, tmp: &std::path::Path, too_big: &impl Fn(u64) -> Option<AppError>) -> AppResult<(u64, String)> {
    let io = |e: std::io::Error| AppError::Internal(format!("failed to write {}: {e}", tmp.display()));
    let mut f = tokio::fs::File::create(tmp).await.map_err(io)?;
    let mut hash = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|e| AppError::BadRequest(format!("the upload broke off: {e}")))?;
        size += chunk.len() as u64;
        if let Some(e) = too_big(size) {
            return Err(e);
        }
        hash.update(&chunk);
        f.write_all(&chunk).await.map_err(io)?;
    }
    f.sync_all().await.map_err(io)?;
    Ok((size, hex::encode(hash.finalize())))
}

fn to_wire(a: &ArtifactRow) -> Artifact {
    Artifact {
        id: a.id,
        job_id: a.job_id,
        job: a.job_key.clone(),
        attempt: a.attempt,
        name: a.name.clone(),
        size: a.size.max(0) as u64,
        sha256: a.sha256.clone(),
        created_at: crate::wireform::ts(a.created_at),
        url: format!("/api/v1/builds/{}/artifacts/{}/{}", a.build_id, a.job_id, a.name),
    }
}

/// An artifact as the build page lists it.
pub struct ArtifactLink {
    pub job: String,
    pub name: String,
    pub size: String,
    pub url: String,
}

/// A build's artifacts for its page (the caller has checked visibility).
pub async fn links(st: &AppState, build_id: i64) -> AppResult<Vec<ArtifactLink>> {
    Ok(st
        .store
        .artifacts_of_build(build_id)
        .await?
        .iter()
        .map(|a| ArtifactLink { job: a.job_key.clone(), name: a.name.clone(), size: crate::uploads::human_bytes(a.size), url: to_wire(a).url })
        .collect())
}

/// `GET /api/v1/builds/{id}/artifacts`: the build's artifacts, by job and name.
async fn list(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<Vec<Artifact>>> {
    visible_build(&st, &viewer, id).await?;
    Ok(Json(st.store.artifacts_of_build(id).await?.iter().map(to_wire).collect()))
}

/// One artifact's bytes, streamed.
async fn serve(st: &AppState, build_id: i64, job_id: i64, name: &str) -> AppResult<Response> {
    let not_found = || AppError::NotFound(format!("build {build_id} has no artifact {name:?} from job {job_id}"));
    let name = normalise(name).ok_or_else(not_found)?;
    let rows = st.store.artifacts_of_build(build_id).await?;
    let a = rows.into_iter().find(|a| a.job_id == job_id && a.name == name).ok_or_else(not_found)?;
    let f = tokio::fs::File::open(job_dir(st, job_id).join(&name)).await.map_err(|_| not_found())?;
    let stream = futures::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let file_name: String = name.rsplit('/').next().unwrap_or("artifact").chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, a.size.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
            (header::HeaderName::from_static("x-content-sha256"), a.sha256.clone()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /api/v1/builds/{id}/artifacts/{job}/{name}`: follows the build's visibility (404 to strangers of a private project).
async fn download(State(st): State<AppState>, viewer: Viewer, Path((id, job, name)): Path<(i64, i64, String)>) -> AppResult<Response> {
    visible_build(&st, &viewer, id).await?;
    serve(&st, id, job, &name).await
}

/// An agent's download: only artifacts of its own build's jobs.
async fn agent_download(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path((build, job, name)): Path<(i64, i64, String)>) -> AppResult<Response> {
    let jobs = st.store.jobs_of_build(build).await?;
    if !jobs.iter().any(|j| j.status == kiln_core::state::JobStatus::Running && j.agent_name.as_deref() == Some(agent.name.as_str())) {
        return Err(AppError::NotFound(format!("build {build} has no artifact {name:?} from job {job}")));
    }
    serve(&st, build, job, &name).await
}

/// `GET /api/v1/agent/jobs/{id}/inputs`: the artifacts of the jobs this one needs (same build).
async fn inputs(State(st): State<AppState>, AgentAuth(agent): AgentAuth, Path(job_id): Path<i64>, Query(at): Query<InputsAt>) -> AppResult<Json<Vec<Artifact>>> {
    st.store.check_held(AgentAttempt { job_id, attempt: at.attempt, agent: &agent.name }).await?;
    let job = st.store.job(job_id).await?;
    let all = st.store.artifacts_of_build(job.build_id).await?;
    let wanted = all.iter().filter(|a| job.needs.contains(&a.job_key));
    Ok(Json(
        wanted
            .map(|a| {
                let mut w = to_wire(a);
                w.url = format!("/api/v1/agent/artifacts/{}/{}/{}", a.build_id, a.job_id, a.name);
                w
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn names_are_normalised_and_kept_inside() {
        assert_eq!(normalise("./out/./a.bin").as_deref(), Some("out/a.bin"));
        assert_eq!(normalise("out\\win.txt").as_deref(), Some("out/win.txt"));
        for bad in ["../x", "a/../../x", "/etc/passwd", "", ".", "c:/x"] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
    }
}
