//! The user-facing JSON API under `/api/v1/` (documented in docs/api.md).

mod agents;
pub(crate) mod builds;
mod downloads;
mod events;
mod notifications;
pub(crate) mod projects;
mod replay;
mod retry;
pub(crate) mod users;
mod tests;

use crate::state::AppState;
use axum::routing::{delete, get, post};
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(projects::list).post(projects::create))
        .route("/api/v1/projects/{name}", get(projects::show).patch(projects::update))
        .route("/api/v1/projects/{name}/builds", get(builds::list).post(builds::trigger))
        .route("/api/v1/projects/{name}/notifications", get(notifications::list))
        .route("/api/v1/builds/{id}", get(builds::show))
        .route("/api/v1/builds/{id}/cancel", post(builds::cancel))
        .route("/api/v1/builds/{id}/retry", post(retry::retry))
        .route("/api/v1/builds/{id}/batches", get(replay::batches))
        .route("/api/v1/jobs/{id}/log", get(builds::log))
        .route("/api/v1/builds/{id}/tests", get(tests::of_build))
        .route("/api/v1/projects/{name}/tests", get(tests::of_project))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/agents/{name}/drain", post(agents::drain))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/me", get(users::me))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/{name}/password", post(users::set_password))
        .route("/api/v1/tokens", get(users::tokens).post(users::create_token))
        .route("/api/v1/tokens/{id}", delete(users::revoke_token))
        .route("/api/v1/jobs/{id}/raw", get(downloads::raw_log))
        .route("/api/v1/builds/{id}/package", get(downloads::package))
}
