//! `GET /metrics` (the token check of a server not on loopback) and the middleware that times
//! every request; the metrics themselves are `crate::metrics`.

use crate::auth::constant_time_eq;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// `GET /metrics`.
pub async fn scrape(State(st): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    if !crate::metrics::is_loopback(&st.cfg.listen) {
        let Some(want) = &st.cfg.metrics_token else {
            return Err(AppError::Forbidden(format!(
                "the server listens on {} (not loopback): set a metrics token (--metrics-token, metrics_token in kiln.toml) and scrape with it as a bearer token",
                st.cfg.listen
            )));
        };
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), want.as_bytes()) {
            return Err(AppError::Unauthorized("/metrics needs the metrics token as a bearer token".into()));
        }
    }
    let body = st.metrics.render(&st.store).await?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response())
}

/// Middleware: time every request, labelled by its route pattern.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    st.metrics.observe_request(&method, &route, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}
