//! Downloads people make: an uploaded run's package (a job's raw log is in `logread.rs`).
//! Both follow the build's visibility (a private project's are 404 to strangers).

use crate::app::access;
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;

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
