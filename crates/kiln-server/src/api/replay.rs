//! `GET /api/v1/builds/{id}/batches`: a build's test batches in claim order with their tests
//! in run order, for `kiln run --replay BUILD[/JOB]`.

use crate::app::access::visible_build;
use crate::auth::Viewer;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_wire::api::{BatchRecord, BuildBatches};

pub async fn batches(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<BuildBatches>> {
    let b = visible_build(&st, &viewer, id).await?;
    let batches = st
        .store
        .build_batches(b.id)
        .await?
        .into_iter()
        .map(|(job, attempt, batch, state, tests)| BatchRecord { job, attempt, batch, state, tests })
        .collect();
    Ok(Json(BuildBatches { build_id: b.id, project: b.project, branch: b.branch, commit: b.commit, batches }))
}
