//! Who is asking: an API token (a person or script), an agent token, or nobody.

use crate::error::AppError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use kiln_store::{hash_token, AgentRow};

/// The caller of a user-facing route.
#[derive(Debug, Clone)]
pub enum Viewer {
    Anonymous,
    User { name: String, admin: bool },
}

impl Viewer {
    pub fn signed_in(&self) -> bool {
        matches!(self, Viewer::User { .. })
    }
    pub fn name(&self) -> String {
        match self {
            Viewer::Anonymous => "anonymous".into(),
            Viewer::User { name, .. } => name.clone(),
        }
    }
    /// Mutations need a signed-in caller.
    pub fn require_user(&self) -> Result<String, AppError> {
        match self {
            Viewer::User { name, .. } => Ok(name.clone()),
            Viewer::Anonymous => Err(AppError::Unauthorized("sign in first: pass an API token (KILN_TOKEN or --token)".into())),
        }
    }
    pub fn require_admin(&self) -> Result<(), AppError> {
        match self {
            Viewer::User { admin: true, .. } => Ok(()),
            Viewer::User { .. } => Err(AppError::Forbidden("only an admin may do this".into())),
            Viewer::Anonymous => Err(AppError::Unauthorized("sign in as an admin first".into())),
        }
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, AppError> {
        let Some(token) = bearer(parts) else { return Ok(Viewer::Anonymous) };
        match st.store.token(token).await? {
            Some(t) => Ok(Viewer::User { name: t.user, admin: t.admin }),
            None => Err(AppError::Unauthorized("this API token is not known to the server; check KILN_TOKEN".into())),
        }
    }
}

/// A registered agent, from its per-agent token.
pub struct AgentAuth(pub AgentRow);

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or_else(|| AppError::Unauthorized("agent token missing".into()))?;
        match st.store.agent_by_token(&hash_token(token)).await? {
            Some(a) => Ok(AgentAuth(a)),
            None => Err(AppError::Unauthorized("agent token not recognised: register again".into())),
        }
    }
}

/// Compare two secrets in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
