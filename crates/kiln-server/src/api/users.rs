//! People over the API: who am I, users (admins make them), personal API tokens.

use crate::auth::Viewer;
use crate::convert::ts;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::users;
use axum::extract::{Path, State};
use axum::Json;
use kiln_wire::users::{Me, PasswordChange, TokenCreate, TokenCreated, TokenInfo, User, UserCreate, UserCreated};

pub fn user(u: &kiln_store::UserRow) -> User {
    User { name: u.name.clone(), admin: u.admin, created_at: ts(u.created_at) }
}

pub fn token_info(t: &kiln_store::TokenInfo) -> TokenInfo {
    TokenInfo { id: t.id, user: t.user.clone(), admin: t.admin, label: t.label.clone(), created_at: ts(t.created_at) }
}

pub async fn me(viewer: Viewer) -> Json<Me> {
    Json(Me { signed_in: viewer.signed_in(), name: viewer.name(), admin: matches!(viewer, Viewer::User { admin: true, .. }) })
}

pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<User>>> {
    viewer.require_admin()?;
    Ok(Json(st.store.list_users().await?.iter().map(user).collect()))
}

pub async fn create(State(st): State<AppState>, viewer: Viewer, Json(req): Json<UserCreate>) -> AppResult<Json<UserCreated>> {
    viewer.require_admin()?;
    let (u, password) = users::create_user(&st.store, &req.name, req.password.as_deref(), req.admin).await?;
    tracing::info!("{} added user {}{}", viewer.name(), u.name, if u.admin { " (admin)" } else { "" });
    Ok(Json(UserCreated { user: user(&u), password }))
}

pub async fn set_password(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<PasswordChange>) -> AppResult<Json<User>> {
    let me = viewer.require_user()?;
    if me != name {
        viewer.require_admin()?;
    }
    users::validate_password(&req.password)?;
    st.store.set_password(&name, &users::hash_password(&req.password).await?).await?;
    let u = st.store.user(&name).await?.ok_or_else(|| AppError::NotFound(format!("user {name:?} not found")))?;
    Ok(Json(user(&u)))
}

pub async fn tokens(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<TokenInfo>>> {
    let me = viewer.require_user()?;
    Ok(Json(st.store.tokens_of(&me).await?.iter().map(token_info).collect()))
}

pub async fn create_token(State(st): State<AppState>, viewer: Viewer, Json(req): Json<TokenCreate>) -> AppResult<Json<TokenCreated>> {
    let me = viewer.require_user()?;
    Ok(Json(make_token(&st, &viewer, &me, req.label.as_deref()).await?))
}

/// A new personal token for the viewer (an admin's tokens are admin tokens).
pub async fn make_token(st: &AppState, viewer: &Viewer, me: &str, label: Option<&str>) -> AppResult<TokenCreated> {
    let label = label.map(str::trim).filter(|l| !l.is_empty()).unwrap_or("personal token");
    if label.len() > 100 {
        return Err(AppError::BadRequest("a token label may have at most 100 bytes".into()));
    }
    let admin = matches!(viewer, Viewer::User { admin: true, .. });
    let (token, id) = st.store.create_token(me, admin, label).await?;
    let info = st.store.tokens_of(me).await?.into_iter().find(|t| t.id == id).ok_or_else(|| AppError::Internal("new token vanished".into()))?;
    Ok(TokenCreated { info: token_info(&info), token })
}

pub async fn revoke_token(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<serde_json::Value>> {
    let me = viewer.require_user()?;
    st.store.revoke_token(&me, id).await?;
    Ok(Json(serde_json::json!({ "revoked": id })))
}
