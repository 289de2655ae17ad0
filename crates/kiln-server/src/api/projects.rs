//! Projects: list, create, show, update, and members. Decode, call `app::projects`, encode.

use crate::app::{self, access};
use crate::auth::Viewer;
use crate::convert;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_wire::api::{Member, MemberGrant, Project, ProjectCreate, ProjectUpdate};

pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<Project>>> {
    let mut out = Vec::new();
    for p in app::projects::list(&st, &viewer).await? {
        let mut wp = convert::project(&p, viewer.signed_in(), None);
        if let Some(b) = st.store.latest_build(p.id).await? {
            wp.last_build = Some(Box::new(convert::build(&b, Vec::new())));
        }
        out.push(wp);
    }
    Ok(Json(out))
}

pub async fn show(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<Project>> {
    let r = app::projects::show(&st, &viewer, &name).await?;
    Ok(Json(convert::project(&r.project, viewer.signed_in(), r.role)))
}

pub async fn create(State(st): State<AppState>, viewer: Viewer, Json(req): Json<ProjectCreate>) -> AppResult<Json<Project>> {
    let p = app::projects::create(&st, &viewer, req).await?;
    let role = access::role_on(&st, &viewer, &p).await?;
    Ok(Json(convert::project(&p, true, role)))
}

pub async fn update(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<ProjectUpdate>) -> AppResult<Json<Project>> {
    let p = app::projects::update(&st, &viewer, &name, req).await?;
    let role = access::role_on(&st, &viewer, &p).await?;
    Ok(Json(convert::project(&p, true, role)))
}

pub async fn members(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<Vec<Member>>> {
    Ok(Json(app::projects::members(&st, &viewer, &name).await?))
}

pub async fn grant(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<MemberGrant>) -> AppResult<Json<Vec<Member>>> {
    Ok(Json(app::projects::grant(&st, &viewer, &name, &req.user, req.role).await?))
}

pub async fn revoke(State(st): State<AppState>, viewer: Viewer, Path((name, user)): Path<(String, String)>) -> AppResult<Json<Vec<Member>>> {
    Ok(Json(app::projects::revoke(&st, &viewer, &name, &user).await?))
}
