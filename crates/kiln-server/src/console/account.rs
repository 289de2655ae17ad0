//! Signing in and out (session cookie in the database, CSRF token per session;
//! the login form itself uses a double-submit cookie), and the account page:
//! personal API tokens, password, and for admins the users.

use super::{local_target, render, require_user, see_other, Layout, PageResult};
use crate::auth::{constant_time_eq, set_cookie, Credential, Page, Viewer, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::error::AppError;
use crate::state::AppState;
use crate::throttle::{self, ClientIp};
use crate::users;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

/// How long the session cookie is kept (the server ends an idle session sooner, see `ServerConfig::session_idle_secs`).
const SESSION_DAYS: i64 = 14;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTpl {
    l: Layout,
    csrf: String,
    next: String,
    name: String,
    error: String,
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

fn add_cookie(r: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub async fn login_form(page: Page, Query(q): Query<NextQuery>) -> PageResult<Response> {
    let next = local_target(q.next.as_deref().unwrap_or("/")).to_string();
    if page.viewer.signed_in() {
        return Ok(see_other(&next));
    }
    login_page(&page, next, String::new(), String::new(), StatusCode::OK)
}

fn login_page(page: &Page, next: String, name: String, error: String, status: StatusCode) -> PageResult<Response> {
    let csrf = page.login_csrf.clone().unwrap_or_else(kiln_store::random_token);
    let mut r = render(&LoginTpl { l: Layout::of(page, "login"), csrf: csrf.clone(), next, name, error })?;
    *r.status_mut() = status;
    if page.login_csrf.is_none() {
        add_cookie(&mut r, set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, page.secure));
    }
    Ok(r)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(State(st): State<AppState>, ClientIp(ip): ClientIp, page: Page, Form(f): Form<LoginForm>) -> PageResult<Response> {
    let expected = page.login_csrf.clone().unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        return Err(AppError::Forbidden("the sign-in form is stale or forged (CSRF token mismatch): reload the page and try again".into()).into());
    }
    let next = local_target(&f.next).to_string();
    if let Err(wait) = st.throttle.begin(ip, f.name.trim()) {
        tracing::warn!("sign-in for user {:?} from {ip} refused: too many attempts", f.name.trim());
        let msg = format!("too many sign-in attempts: try again in {} s", throttle::retry_after_secs(wait));
        let mut r = login_page(&page, next, f.name.trim().to_string(), msg, StatusCode::TOO_MANY_REQUESTS)?;
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(throttle::retry_after_secs(wait)));
        return Ok(r);
    }
    let Some(user) = users::authenticate(&st.store, f.name.trim(), &f.password).await? else {
        tracing::warn!("failed sign-in for user {:?}", f.name.trim());
        return login_page(&page, next, f.name.trim().to_string(), "wrong user name or password".into(), StatusCode::UNAUTHORIZED);
    };
    st.throttle.success(ip, f.name.trim());
    let (token, _) = st.store.create_session(&user.name, st.cfg.session_idle_ms()).await?;
    let mut r = see_other(&next);
    add_cookie(&mut r, set_cookie(SESSION_COOKIE, &token, SESSION_DAYS * 86_400, page.secure));
    add_cookie(&mut r, set_cookie(LOGIN_CSRF_COOKIE, "", 0, page.secure));
    tracing::info!("user {} signed in", user.name);
    Ok(r)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

pub async fn logout(State(st): State<AppState>, page: Page, Form(f): Form<CsrfForm>) -> PageResult<Response> {
    page.check_csrf(&f.csrf)?;
    if let Credential::Session { token, .. } = &page.cred {
        st.store.delete_session(token).await?;
    }
    let mut r = see_other("/");
    add_cookie(&mut r, set_cookie(SESSION_COOKIE, "", 0, page.secure));
    Ok(r)
}

pub struct TokenRowView {
    pub id: i64,
    pub label: String,
    pub created_at: i64,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountTpl {
    l: Layout,
    tokens: Vec<TokenRowView>,
    users: Vec<(String, bool)>,
    /// A token just made: shown this once.
    new_token: String,
    notice: String,
    error: String,
}

async fn account_page(st: &AppState, page: &Page, new_token: String, notice: String, error: String) -> PageResult<Response> {
    let me = require_user(page)?;
    let tokens = st.store.tokens_of(Some(&me)).await?.into_iter().map(|t| TokenRowView { id: t.id, label: t.label, created_at: t.created_at }).collect();
    let users = if matches!(page.viewer, Viewer::User { admin: true, .. }) {
        st.store.list_users().await?.into_iter().map(|u| (u.name, u.admin)).collect()
    } else {
        Vec::new()
    };
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut r = render(&AccountTpl { l: Layout::of(page, "account"), tokens, users, new_token, notice, error })?;
    *r.status_mut() = status;
    Ok(r)
}

pub async fn page(State(st): State<AppState>, page: Page) -> PageResult<Response> {
    account_page(&st, &page, String::new(), String::new(), String::new()).await
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    label: String,
}

pub async fn create_token(State(st): State<AppState>, page: Page, Form(f): Form<TokenForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    let (token, info) = crate::app::users::create_token(&st, &page.viewer, None, Some(&f.label)).await?;
    account_page(&st, &page, token, format!("token “{}” created: copy it now, it is not shown again", info.label), String::new()).await
}

pub async fn revoke_token(State(st): State<AppState>, page: Page, Path(id): Path<i64>, Form(f): Form<CsrfForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    crate::app::users::revoke_token(&st, &page.viewer, id).await?;
    Ok(see_other("/account"))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
}

pub async fn change_password(State(st): State<AppState>, page: Page, Form(f): Form<PasswordForm>) -> PageResult<Response> {
    let me = require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    // Changing the password ends every other session; this browser's stays.
    match crate::app::users::set_password(&st, &page.viewer, &page.cred, &me, &f.password, Some(&f.current)).await {
        Ok(_) => Ok(see_other("/account")),
        Err(e @ (AppError::BadRequest(_) | AppError::Forbidden(_))) => account_page(&st, &page, String::new(), String::new(), e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

pub async fn add_user(State(st): State<AppState>, page: Page, Form(f): Form<UserForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    crate::app::access::admin(&page.viewer)?;
    let pw = Some(f.password.as_str()).filter(|p| !p.is_empty());
    match crate::app::users::create(&st, &page.viewer, f.name.trim(), pw, f.admin.is_some()).await {
        Ok((u, generated)) => {
            let notice = match generated {
                Some(p) => format!("user {} added with password {p} (shown only now)", u.name),
                None => format!("user {} added", u.name),
            };
            account_page(&st, &page, String::new(), notice, String::new()).await
        }
        Err(e) => account_page(&st, &page, String::new(), String::new(), e.to_string()).await,
    }
}
