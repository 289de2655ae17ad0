//! `POST /api/v1/projects/{name}/runs`: upload a test run (multipart; see `uploads::receive`).

use crate::auth::Viewer;
use crate::convert;
use crate::error::AppResult;
use crate::state::AppState;
use crate::uploads::{check_length, receive};
use axum::extract::{Multipart, Path, State};
use axum::http::HeaderMap;
use axum::Json;

/// Answers the queued build.
pub(super) async fn create(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, headers: HeaderMap, mp: Multipart) -> AppResult<Json<kiln_wire::api::Build>> {
    crate::app::access::project(&st, &viewer, &name, crate::app::Need::Role(kiln_wire::api::Role::Developer)).await?;
    check_length(&st, &headers)?;
    let staged = receive(&st, mp, None).await?;
    let b = crate::app::runs::create(&st, &viewer, &name, staged).await?;
    Ok(Json(convert::build(&b, Vec::new())))
}
