//! The web console: server-rendered pages (askama templates compiled into the
//! binary, autoescaped), a little JavaScript and CSS embedded too, and live
//! updates through server-sent events (`/api/v1/events`): a page marks the
//! parts that change with `data-live-src`, and the script re-fetches them (the
//! same handler with `?partial=1`) when an event for them arrives.
//!
//! ```text
//!  /                projects: status per branch, badge, duration chart   home.rs
//!  /projects/NAME   builds, newest first, filters, pages                 home.rs
//!  /projects/NAME/tests  flakiest tests, quarantine and its changes     testspage.rs
//!  /builds/ID       jobs as a DAG, live log, rebuild/cancel              build.rs
//!                   test results: counts, failures, flaky, slowest       results.rs
//!  /agents /queue   the fleet and what waits for it                      fleet.rs
//!  /runs            uploaded test runs, and the upload form              runs.rs
//!  /login /account  sign-in, tokens, password, users (admins)            account.rs
//! ```
//! Every page follows the same visibility as the API: a private project, its
//! builds and logs are 404 to anyone not signed in. Every form carries the
//! session's CSRF token (`Page::check_csrf`).

mod account;
mod assets;
mod build;
mod fleet;
mod home;
mod results;
mod retry;
mod runs;
mod testspage;
pub mod views;

use crate::auth::{Page, Viewer};
use crate::error::AppError;
use crate::routes::Routes;
use askama::Template;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect, Response};

pub fn routes() -> Routes {
    Routes::new()
        .get("/", home::home)
        .get("/projects/new", home::new_project_form).post("/projects/new", home::new_project)
        .get("/projects/{name}", home::project)
        .get("/projects/{name}/tests", testspage::page)
        .post("/projects/{name}/quarantine", testspage::change)
        .post("/projects/{name}/trigger", home::trigger)
        .post("/projects/{name}/members", home::grant)
        .post("/projects/{name}/members/{user}/revoke", home::revoke)
        .get("/builds/{id}", build::page)
        .get("/builds/{id}/tests", results::partial)
        .post("/builds/{id}/rebuild", build::rebuild)
        .post("/builds/{id}/cancel", build::cancel)
        .post("/builds/{id}/retry-failed", retry::retry_failed)
        .get("/agents", fleet::agents)
        .post("/agents/{name}/drain", fleet::drain)
        .get("/queue", fleet::queue)
        .get("/runs", runs::list)
        .with("GET", "/runs/new", axum::routing::get(runs::form).layer(DefaultBodyLimit::disable()))
        .with("POST", "/runs/new", axum::routing::post(runs::create).layer(DefaultBodyLimit::disable()))
        .get("/login", account::login_form).post("/login", account::login)
        .post("/logout", account::logout)
        .get("/account", account::page)
        .post("/account/tokens", account::create_token)
        .post("/account/tokens/{id}/revoke", account::revoke_token)
        .post("/account/password", account::change_password)
        .post("/account/users", account::add_user)
        .get("/assets/{file}", assets::asset)
}

/// What the frame of every page needs: who is signed in, the CSRF token for its forms, the active tab.
pub struct Layout {
    pub user: String,
    pub admin: bool,
    pub csrf: String,
    pub nav: &'static str,
    /// Cache-busting version of the assets.
    pub v: &'static str,
}

impl Layout {
    pub fn of(page: &Page, nav: &'static str) -> Layout {
        let (user, admin) = match &page.viewer {
            Viewer::User { name, admin } => (name.clone(), *admin),
            Viewer::Anonymous => (String::new(), false),
        };
        Layout { user, admin, csrf: page.csrf().to_string(), nav, v: assets::version() }
    }
}

/// A page that could not be shown: an error page with the right status, or a redirect (to sign in).
pub enum PageError {
    App(AppError),
    SignIn(String),
}

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        PageError::App(e)
    }
}

impl From<kiln_store::StoreError> for PageError {
    fn from(e: kiln_store::StoreError) -> Self {
        PageError::App(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTpl {
    l: Layout,
    status: u16,
    reason: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn(next) => Redirect::to(&format!("/login?next={}", urlencode(&next))).into_response(),
            PageError::App(e) => {
                let status = e.status();
                if status.is_server_error() {
                    tracing::error!("{e}");
                }
                let t = ErrorTpl {
                    l: Layout { user: String::new(), admin: false, csrf: String::new(), nav: "", v: assets::version() },
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("error").to_string(),
                    message: e.to_string(),
                };
                let body = t.render().unwrap_or_else(|_| e.to_string());
                (status, Html(body)).into_response()
            }
        }
    }
}

pub type PageResult<T> = Result<T, PageError>;

/// Render a template into a response that is never cached (pages are live).
pub fn render<T: Template>(t: &T) -> PageResult<Response> {
    let body = t.render().map_err(|e| AppError::Internal(format!("failed to render a page: {e}")))?;
    let mut r = Html(body).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The signed-in user's name, or a redirect to the sign-in page.
pub fn require_user(page: &Page) -> PageResult<String> {
    match &page.viewer {
        Viewer::User { name, .. } => Ok(name.clone()),
        Viewer::Anonymous => Err(PageError::SignIn(page.uri.clone())),
    }
}

pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Percent-encode for a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A `next` target that stays on this site: a path starting with one `/`, with
/// no backslash, whitespace or control character (browsers drop tabs and
/// newlines, so `/\t/evil.example` would become `//evil.example`).
pub fn local_target(next: &str) -> &str {
    let clean = !next.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control());
    if clean && next.starts_with('/') && !next.starts_with("//") {
        next
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_same_site_paths_are_next_targets() {
        for ok in ["/", "/builds/3?x=1", "/projects/a%2Fb"] {
            assert_eq!(super::local_target(ok), ok);
        }
        for bad in ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil.example", "/ /x", "https://evil.example", "evil", "/\u{0}x", ""] {
            assert_eq!(super::local_target(bad), "/", "{bad:?}");
        }
    }
}
