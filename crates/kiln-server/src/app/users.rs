//! People: users (admins make, disable, remove, promote them), passwords, and API tokens.
//! Disabling a user ends their sessions and tokens at once; an admin's power is read from the
//! user at every request, so a demotion takes effect at once too.

use super::access;
use crate::auth::{Credential, Viewer};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::users;
use kiln_store::{TokenInfo, UserRow};
use kiln_wire::users::UserUpdate;

/// The label of the token seeded by `kiln server --admin-token`.
pub const SEEDED_ADMIN_TOKEN: &str = "seeded by --admin-token";

pub async fn list(st: &AppState, viewer: &Viewer) -> AppResult<Vec<UserRow>> {
    access::admin(viewer)?;
    Ok(st.store.list_users().await?)
}

/// Add a user (admins); answers the password when one was generated.
pub async fn create(st: &AppState, viewer: &Viewer, name: &str, password: Option<&str>, admin: bool) -> AppResult<(UserRow, Option<String>)> {
    access::admin(viewer)?;
    let (u, password) = users::create_user(&st.store, name, password, admin).await?;
    tracing::info!("{} added user {}{}", viewer.name(), u.name, if u.admin { " (admin)" } else { "" });
    Ok((u, password))
}

async fn user(st: &AppState, name: &str) -> AppResult<UserRow> {
    st.store.user(name).await?.ok_or_else(|| AppError::NotFound(format!("user {name:?} not found")))
}

/// Disable, enable, promote or demote a user (admins). An admin cannot lock themself out.
pub async fn update(st: &AppState, viewer: &Viewer, name: &str, req: &UserUpdate) -> AppResult<UserRow> {
    access::admin(viewer)?;
    user(st, name).await?;
    if viewer.name() == name && (req.disabled == Some(true) || req.admin == Some(false)) {
        return Err(AppError::BadRequest("you cannot disable or demote yourself: ask another admin".into()));
    }
    if let Some(admin) = req.admin {
        st.store.set_admin(name, admin).await?;
        tracing::info!("{} made {name} {}", viewer.name(), if admin { "an admin" } else { "a plain user" });
    }
    if let Some(disabled) = req.disabled {
        st.store.set_disabled(name, disabled).await?;
        tracing::warn!("{} {} user {name}{}", viewer.name(), if disabled { "disabled" } else { "enabled" }, if disabled { ": their sessions and tokens ended" } else { "" });
    }
    user(st, name).await
}

/// Remove a user with their sessions, tokens and roles (admins).
pub async fn remove(st: &AppState, viewer: &Viewer, name: &str) -> AppResult<()> {
    access::admin(viewer)?;
    if viewer.name() == name {
        return Err(AppError::BadRequest("you cannot remove yourself: ask another admin".into()));
    }
    st.store.remove_user(name).await?;
    tracing::warn!("{} removed user {name}", viewer.name());
    Ok(())
}

/// Change a password. Your own needs the current one; an admin resetting someone else's needs
/// none, and ends that user's sessions and tokens (whoever knew the old password may hold them).
/// Your own change ends your other sessions and keeps the one you are using.
pub async fn set_password(st: &AppState, viewer: &Viewer, cred: &Credential, name: &str, password: &str, current: Option<&str>) -> AppResult<UserRow> {
    access::self_or_admin(viewer, name)?;
    let own = viewer.name() == name;
    let u = user(st, name).await?;
    users::validate_password(password)?;
    if own {
        let given = current.ok_or_else(|| AppError::BadRequest("give your current password too (--current, or the form's current password)".into()))?;
        if !users::verify_password(given, &u.password_hash).await {
            return Err(AppError::Forbidden("the current password is wrong".into()));
        }
    }
    let keep = match cred {
        Credential::Session { token, .. } if own => Some(token.as_str()),
        _ => None,
    };
    st.store.set_password(name, &users::hash_password(password).await?, keep).await?;
    if !own {
        let n = st.store.revoke_tokens_of(name).await?;
        tracing::warn!("{} reset {name}'s password: their sessions and {n} API token(s) ended", viewer.name());
    }
    user(st, name).await
}

/// Tokens: your own, or (admins) one user's with `Some(user)`, or everyone's with `all`.
pub async fn tokens(st: &AppState, viewer: &Viewer, user: Option<&str>, all: bool) -> AppResult<Vec<TokenInfo>> {
    let me = access::signed_in(viewer)?;
    if all {
        access::admin(viewer)?;
        return Ok(st.store.tokens_of(None).await?);
    }
    let whose = user.unwrap_or(&me);
    access::self_or_admin(viewer, whose)?;
    Ok(st.store.tokens_of(Some(whose)).await?)
}

/// A new API token: your own, or (admins) one for `user` (a service account or a script).
pub async fn create_token(st: &AppState, viewer: &Viewer, user: Option<&str>, label: Option<&str>) -> AppResult<(String, TokenInfo)> {
    let me = access::signed_in(viewer)?;
    let whose = user.unwrap_or(&me).to_string();
    access::self_or_admin(viewer, &whose)?;
    let owner = self::user(st, &whose).await?;
    if owner.disabled {
        return Err(AppError::BadRequest(format!("user {whose} is disabled: enable them first (kiln user enable {whose})")));
    }
    let label = label.map(str::trim).filter(|l| !l.is_empty()).unwrap_or(if whose == me { "personal token" } else { "issued by an admin" });
    if label.len() > 100 {
        return Err(AppError::BadRequest("a token label may have at most 100 bytes".into()));
    }
    let (token, id) = st.store.create_token(&whose, owner.admin, label).await?;
    if whose != me {
        tracing::info!("{me} issued token {id} for {whose}");
    }
    let info = st.store.tokens_of(Some(&whose)).await?.into_iter().find(|t| t.id == id).ok_or_else(|| AppError::Internal("new token vanished".into()))?;
    Ok((token, info))
}

/// Revoke a token: one of your own, or (admins) anyone's.
pub async fn revoke_token(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<()> {
    let me = access::signed_in(viewer)?;
    let whose = if access::admin(viewer).is_ok() { None } else { Some(me.as_str()) };
    st.store.revoke_token(whose, id).await?;
    tracing::info!("{me} revoked token {id}");
    Ok(())
}
