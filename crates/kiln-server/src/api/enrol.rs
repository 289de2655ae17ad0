//! Enrolment secrets and agent revocation (admins only): decode, call `app::enrolment`, encode.

use crate::auth::Viewer;
use crate::app;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_store::EnrolmentRow;
use kiln_wire::enrol::{Enrolment, EnrolmentCreate, EnrolmentCreated};

fn wire(e: &EnrolmentRow) -> Enrolment {
    Enrolment {
        id: e.id,
        labels: e.labels.clone(),
        projects: e.projects.clone(),
        uses_left: e.uses_left,
        used: e.used,
        created_by: e.created_by.clone(),
        created_at: crate::wireform::ts(e.created_at),
        revoked: e.revoked_at.is_some(),
    }
}

/// `POST /api/v1/enrolments`: a new enrolment secret, shown once.
pub async fn create(State(st): State<AppState>, viewer: Viewer, Json(req): Json<EnrolmentCreate>) -> AppResult<Json<EnrolmentCreated>> {
    let (e, secret) = app::enrolment::create(&st, &viewer, &req).await?;
    Ok(Json(EnrolmentCreated { enrolment: wire(&e), secret }))
}

/// `GET /api/v1/enrolments`.
pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<Enrolment>>> {
    Ok(Json(app::enrolment::list(&st, &viewer).await?.iter().map(wire).collect()))
}

/// `DELETE /api/v1/enrolments/{id}`: no agent enrols with it any more.
pub async fn revoke(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<serde_json::Value>> {
    app::enrolment::revoke(&st, &viewer, id).await?;
    Ok(Json(serde_json::json!({ "revoked": id })))
}

/// `POST /api/v1/agents/{name}/revoke`: the agent's token stops working and its jobs run again elsewhere.
pub async fn revoke_agent(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<serde_json::Value>> {
    let requeued = app::enrolment::revoke_agent(&st, &viewer, &name).await?;
    Ok(Json(serde_json::json!({ "revoked": name, "requeued": requeued })))
}
