//! The user-facing JSON API under `/api/v1/` (documented in docs/api.md).

mod agents;
mod builds;
pub(crate) mod projects;
mod tests;

use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(projects::list).post(projects::create))
        .route("/api/v1/projects/{name}", get(projects::show).patch(projects::update))
        .route("/api/v1/projects/{name}/builds", get(builds::list).post(builds::trigger))
        .route("/api/v1/builds/{id}", get(builds::show))
        .route("/api/v1/builds/{id}/cancel", post(builds::cancel))
        .route("/api/v1/jobs/{id}/log", get(builds::log))
        .route("/api/v1/builds/{id}/tests", get(tests::of_build))
        .route("/api/v1/projects/{name}/tests", get(tests::of_project))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/agents/{name}/drain", post(agents::drain))
}
