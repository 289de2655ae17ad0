//! Enrolment secrets and agent revocation (admins only): create, list, revoke.

use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
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
        created_at: crate::convert::ts(e.created_at),
        revoked: e.revoked_at.is_some(),
    }
}

/// `POST /api/v1/enrolments`: a new enrolment secret, shown once.
pub async fn create(State(st): State<AppState>, viewer: Viewer, Json(req): Json<EnrolmentCreate>) -> AppResult<Json<EnrolmentCreated>> {
    viewer.require_admin()?;
    if req.uses.is_some_and(|n| n < 1) {
        return Err(AppError::BadRequest("--uses must be at least 1 (leave it out for no limit)".into()));
    }
    for k in req.labels.keys() {
        kiln_core::labels::parse_label(&format!("{k}=")).map_err(AppError::BadRequest)?;
    }
    if req.projects.iter().any(|p| p.trim().is_empty()) {
        return Err(AppError::BadRequest("an empty project name cannot limit an enrolment".into()));
    }
    let (e, secret) = st.store.create_enrolment(&viewer.name(), &req.labels, &req.projects, req.uses).await?;
    tracing::info!("{} created enrolment {}", viewer.name(), e.id);
    Ok(Json(EnrolmentCreated { enrolment: wire(&e), secret }))
}

/// `GET /api/v1/enrolments`.
pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<Enrolment>>> {
    viewer.require_admin()?;
    Ok(Json(st.store.list_enrolments().await?.iter().map(wire).collect()))
}

/// `DELETE /api/v1/enrolments/{id}`: no agent enrols with it any more.
pub async fn revoke(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<serde_json::Value>> {
    viewer.require_admin()?;
    st.store.revoke_enrolment(id).await?;
    tracing::info!("{} revoked enrolment {id}", viewer.name());
    Ok(Json(serde_json::json!({ "revoked": id })))
}

/// `POST /api/v1/agents/{name}/revoke`: the agent's token stops working and its jobs run again elsewhere.
pub async fn revoke_agent(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<serde_json::Value>> {
    viewer.require_admin()?;
    let taken = st.store.revoke_agent(&name).await?;
    st.wake_agents();
    st.wake_control();
    tracing::info!("{} revoked agent {name}", viewer.name());
    Ok(Json(serde_json::json!({ "revoked": name, "requeued": taken.len() })))
}
