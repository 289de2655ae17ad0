//! `POST /api/v1/builds/{id}/retry` `{"failed": true}`: a new build of the same commit that
//! reruns only what failed (`Store::retry_failed`), linked to the original.

use crate::app;
use crate::auth::Viewer;
use crate::convert;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_wire::api::Build;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct RetryRequest {
    /// Only what failed (the one mode there is; it must be asked for by name).
    #[serde(default)]
    failed: bool,
}

pub async fn retry(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>, body: Option<Json<RetryRequest>>) -> AppResult<Json<Build>> {
    if !body.is_some_and(|Json(r)| r.failed) {
        return Err(AppError::BadRequest("say what to retry: {\"failed\": true} reruns the failed jobs and tests".into()));
    }
    let b = app::builds::retry_failed(&st, &viewer, id).await?;
    Ok(Json(convert::full_build(&st.store, &b, convert::JobPage::default()).await?))
}
