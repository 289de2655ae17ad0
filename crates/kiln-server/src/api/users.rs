//! People over the API: who am I, users (admins manage them), API tokens.
//! Decode, call `app::users`, encode.

use crate::app;
use crate::auth::{Viewer, WithCredential};
use crate::wireform::ts;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use kiln_wire::users::{Me, PasswordChange, TokenCreate, TokenCreated, TokenInfo, User, UserCreate, UserCreated, UserUpdate};
use serde::Deserialize;

pub fn user(u: &kiln_store::UserRow) -> User {
    User { name: u.name.clone(), admin: u.admin, disabled: u.disabled, created_at: ts(u.created_at) }
}

pub fn token_info(t: &kiln_store::TokenInfo) -> TokenInfo {
    TokenInfo { id: t.id, user: t.user.clone(), admin: t.admin, label: t.label.clone(), created_at: ts(t.created_at) }
}

pub async fn me(viewer: Viewer) -> Json<Me> {
    Json(Me { signed_in: viewer.signed_in(), name: viewer.name(), admin: matches!(viewer, Viewer::User { admin: true, .. }) })
}

pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<User>>> {
    Ok(Json(app::users::list(&st, &viewer).await?.iter().map(user).collect()))
}

pub async fn create(State(st): State<AppState>, viewer: Viewer, Json(req): Json<UserCreate>) -> AppResult<Json<UserCreated>> {
    let (u, password) = app::users::create(&st, &viewer, &req.name, req.password.as_deref(), req.admin).await?;
    Ok(Json(UserCreated { user: user(&u), password }))
}

pub async fn update(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<UserUpdate>) -> AppResult<Json<User>> {
    Ok(Json(user(&app::users::update(&st, &viewer, &name, &req).await?)))
}

pub async fn remove(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<serde_json::Value>> {
    app::users::remove(&st, &viewer, &name).await?;
    Ok(Json(serde_json::json!({ "removed": name })))
}

pub async fn set_password(State(st): State<AppState>, WithCredential(viewer, cred): WithCredential, Path(name): Path<String>, Json(req): Json<PasswordChange>) -> AppResult<Json<User>> {
    let u = app::users::set_password(&st, &viewer, &cred, &name, &req.password, req.current.as_deref()).await?;
    Ok(Json(user(&u)))
}

#[derive(Deserialize, Default)]
pub struct TokensQuery {
    /// Admins: this user's tokens.
    user: Option<String>,
    /// Admins: everyone's tokens.
    #[serde(default)]
    all: bool,
}

pub async fn tokens(State(st): State<AppState>, viewer: Viewer, Query(q): Query<TokensQuery>) -> AppResult<Json<Vec<TokenInfo>>> {
    Ok(Json(app::users::tokens(&st, &viewer, q.user.as_deref(), q.all).await?.iter().map(token_info).collect()))
}

pub async fn create_token(State(st): State<AppState>, viewer: Viewer, Json(req): Json<TokenCreate>) -> AppResult<Json<TokenCreated>> {
    let (token, info) = app::users::create_token(&st, &viewer, req.user.as_deref(), req.label.as_deref()).await?;
    Ok(Json(TokenCreated { info: token_info(&info), token }))
}

pub async fn revoke_token(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<serde_json::Value>> {
    app::users::revoke_token(&st, &viewer, id).await?;
    Ok(Json(serde_json::json!({ "revoked": id })))
}

