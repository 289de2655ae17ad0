//! Downloads people make: a job's whole log as plain text, an uploaded run's package.
//! Both follow the build's visibility (a private project's are 404 to strangers).

use crate::app::access;
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct RawQuery {
    attempt: Option<i64>,
    /// `?download=1` asks the browser to save the file instead of showing it.
    download: Option<u8>,
}

pub async fn raw_log(State(st): State<AppState>, viewer: Viewer, Path(job_id): Path<i64>, Query(q): Query<RawQuery>) -> AppResult<impl IntoResponse> {
    let (job, _) = access::job(&st, &viewer, job_id, access::Need::See).await?;
    let attempt = q.attempt.unwrap_or(job.attempt);
    let data = crate::streams::log(st.store.clone(), job_id, attempt);
    let safe_key: String = job.key.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let disposition = format!(
        "{}; filename=\"build-{}-{safe_key}-{attempt}.log\"",
        if q.download.unwrap_or(0) != 0 { "attachment" } else { "inline" },
        job.build_id
    );
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition), (header::CACHE_CONTROL, "no-cache".into())],
        data,
    ))
}

pub async fn package(State(st): State<AppState>, viewer: Viewer, Path(build_id): Path<i64>) -> AppResult<impl IntoResponse> {
    access::visible_build(&st, &viewer, build_id).await?;
    let up = st.store.upload(build_id).await?.ok_or_else(|| AppError::NotFound(format!("build {build_id} is not an uploaded run")))?;
    let bytes = crate::uploads::read_package(&st, &up.package).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"run-{build_id}.tar.gz\"")),
        ],
        bytes,
    ))
}
