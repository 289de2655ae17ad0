//! The user-facing JSON API under `/api/v1/` (documented in docs/api.md).

mod agents;
pub(crate) mod builds;
mod downloads;
mod enrol;
mod events;
mod logread;
pub(crate) mod metrics;
mod notifications;
pub(crate) mod projects;
mod replay;
mod retry;
mod runs;
pub(crate) mod users;
mod tests;

use crate::routes::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/projects", projects::list).post("/api/v1/projects", projects::create)
        .get("/api/v1/projects/{name}", projects::show).patch("/api/v1/projects/{name}", projects::update)
        .get("/api/v1/projects/{name}/members", projects::members).post("/api/v1/projects/{name}/members", projects::grant)
        .delete("/api/v1/projects/{name}/members/{user}", projects::revoke)
        .get("/api/v1/projects/{name}/builds", builds::list).post("/api/v1/projects/{name}/builds", builds::trigger)
        .get("/api/v1/projects/{name}/notifications", notifications::list)
        .with("POST", "/api/v1/projects/{name}/runs", axum::routing::post(runs::create).layer(axum::extract::DefaultBodyLimit::disable()))
        .get("/api/v1/builds/{id}", builds::show)
        .post("/api/v1/builds/{id}/cancel", builds::cancel)
        .post("/api/v1/builds/{id}/rebuild", builds::rebuild)
        .post("/api/v1/builds/{id}/retry", retry::retry)
        .get("/api/v1/builds/{id}/batches", replay::batches)
        .get("/api/v1/jobs/{id}/log", builds::log)
        .get("/api/v1/jobs/{id}/log/search", logread::search)
        .get("/api/v1/jobs/{id}/log/events", logread::events)
        .get("/api/v1/jobs/{id}/log/live", logread::live)
        .get("/api/v1/builds/{id}/tests", tests::of_build)
        .get("/api/v1/projects/{name}/tests", tests::of_project)
        .post("/api/v1/projects/{name}/quarantine", tests::quarantine)
        .post("/api/v1/projects/{name}/quarantine/release", tests::release)
        .get("/api/v1/agents", agents::list)
        .post("/api/v1/agents/{name}/drain", agents::drain)
        .post("/api/v1/agents/{name}/revoke", enrol::revoke_agent)
        .get("/api/v1/enrolments", enrol::list)
        .post("/api/v1/enrolments", enrol::create)
        .delete("/api/v1/enrolments/{id}", enrol::revoke)
        .get("/api/v1/events", events::events)
        .get("/api/v1/me", users::me)
        .get("/api/v1/users", users::list).post("/api/v1/users", users::create)
        .patch("/api/v1/users/{name}", users::update).delete("/api/v1/users/{name}", users::remove)
        .post("/api/v1/users/{name}/password", users::set_password)
        .get("/api/v1/tokens", users::tokens).post("/api/v1/tokens", users::create_token)
        .delete("/api/v1/tokens/{id}", users::revoke_token)
        .get("/api/v1/jobs/{id}/raw", logread::raw)
        .get("/api/v1/builds/{id}/package", downloads::package)
}
