//! Who is asking: an API token (a person or script), a sign-in session cookie
//! (the console), an agent token, or nobody. A session counts for a request that
//! changes something only with its CSRF token: the `X-CSRF-Token` header for the
//! API, the `_csrf` form field for the console's forms (see `Page::check_csrf`).

use crate::error::AppError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Method;
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
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The session cookie: HttpOnly, SameSite=Lax, Secure when served over https.
pub const SESSION_COOKIE: &str = "kiln_session";
/// Before sign-in, the login form's CSRF token (double-submit cookie).
pub const LOGIN_CSRF_COOKIE: &str = "kiln_csrf";

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    None,
    /// An API token in `Authorization: Bearer` (not sent by browsers on their own: no CSRF risk).
    Token,
    /// A session cookie, with the CSRF token its forms must carry.
    Session { token: String, csrf: String },
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the client reached us over https (directly configured, or through a proxy that says so).
pub fn is_https(parts: &Parts, st: &AppState) -> bool {
    st.cfg.tls_cert.is_some()
        || st.cfg.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
        || parts.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
}

/// A `Set-Cookie` value for kiln's cookies (`max_age` 0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{}", if secure { "; Secure" } else { "" })
}

/// A session ends after `session_idle_secs` without a request
/// (`config::DEFAULT_SESSION_IDLE_SECS` unless set), and this long after sign-in, however busy.
pub const SESSION_MAX_MS: i64 = 14 * 86_400_000;

/// Who the caller is, from a bearer token or a session cookie. A wrong token is an error;
/// an unknown or expired cookie counts as nobody.
pub async fn identify(parts: &Parts, st: &AppState) -> Result<(Viewer, Credential), AppError> {
    if let Some(token) = bearer(parts) {
        return match st.store.token(token).await? {
            Some(t) => Ok((Viewer::User { name: t.user, admin: t.admin }, Credential::Token)),
            None => Err(AppError::Unauthorized("this API token is not known to the server; check KILN_TOKEN".into())),
        };
    }
    if let Some(c) = cookie(parts, SESSION_COOKIE) {
        if let Some(s) = st.store.session(&c).await? {
            st.store.touch_session(&c, st.cfg.session_idle_ms(), SESSION_MAX_MS).await?;
            return Ok((Viewer::User { name: s.user, admin: s.admin }, Credential::Session { token: c, csrf: s.csrf }));
        }
    }
    Ok((Viewer::Anonymous, Credential::None))
}

fn safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Who the caller of an API route is; a session cookie counts for a change only with its CSRF header.
async fn api_caller(parts: &Parts, st: &AppState) -> Result<(Viewer, Credential), AppError> {
    let (viewer, cred) = identify(parts, st).await?;
    if let Credential::Session { csrf, .. } = &cred {
        if !safe_method(&parts.method) {
            let given = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !constant_time_eq(given.as_bytes(), csrf.as_bytes()) {
                return Err(AppError::Forbidden(
                    "missing or wrong CSRF token: send the X-CSRF-Token header of your session, or use an API token".into(),
                ));
            }
        }
    }
    Ok((viewer, cred))
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, AppError> {
        Ok(api_caller(parts, st).await?.0)
    }
}

/// The caller of an API route with how they proved it (a password change keeps the session that made it).
pub struct WithCredential(pub Viewer, pub Credential);

impl FromRequestParts<AppState> for WithCredential {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, AppError> {
        let (viewer, cred) = api_caller(parts, st).await?;
        Ok(WithCredential(viewer, cred))
    }
}

/// The caller of a console page: who, how, and what its forms need.
#[derive(Debug, Clone)]
pub struct Page {
    pub viewer: Viewer,
    pub cred: Credential,
    /// Mark cookies Secure (served over https).
    pub secure: bool,
    /// The login form's double-submit CSRF cookie, if the browser has one.
    pub login_csrf: Option<String>,
    /// The path and query asked for (to come back to after signing in).
    pub uri: String,
}

impl Page {
    /// The CSRF token to put in this viewer's forms (empty when not signed in by cookie).
    pub fn csrf(&self) -> &str {
        match &self.cred {
            Credential::Session { csrf, .. } => csrf,
            _ => "",
        }
    }

    /// A form posted with a session cookie must carry that session's CSRF token.
    pub fn check_csrf(&self, given: &str) -> Result<(), AppError> {
        match &self.cred {
            Credential::Session { csrf, .. } if !constant_time_eq(given.as_bytes(), csrf.as_bytes()) => {
                Err(AppError::Forbidden("this form is stale or forged (CSRF token mismatch): reload the page and try again".into()))
            }
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Page {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, AppError> {
        let (viewer, cred) = identify(parts, st).await?;
        let uri = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        Ok(Page { viewer, cred, secure: is_https(parts, st), login_csrf: cookie(parts, LOGIN_CSRF_COOKIE), uri })
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
