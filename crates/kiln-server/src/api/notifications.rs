//! A project's notification deliveries and how they went (signed-in users only:
//! targets name people and services).

use crate::app::access;
use crate::auth::Viewer;
use crate::convert;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use kiln_wire::notify::Delivery;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/projects/{name}/notifications?limit=50&offset=0`, newest first.
pub async fn list(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Query(q): Query<ListQuery>) -> AppResult<Json<Vec<Delivery>>> {
    // Deliveries show targets and errors: the people who set them up (maintainers) read them.
    let p = access::project(&st, &viewer, &name, access::Need::Role(kiln_wire::api::Role::Maintainer)).await?.project;
    let rows = st.store.project_notifications(p.id, q.limit.unwrap_or(50).clamp(1, 500), q.offset.unwrap_or(0).max(0)).await?;
    Ok(Json(rows.iter().map(convert::delivery).collect()))
}
