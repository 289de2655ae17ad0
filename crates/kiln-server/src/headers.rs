//! Browser security headers on every response (one layer for the whole router):
//! a Content-Security-Policy that allows only the console's own script, styles
//! and images (no inline script anywhere), no framing, no MIME sniffing, and no
//! referrer beyond this site. A handler that sets one of these keeps its own.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;

/// The console's policy: everything from this origin only; no plugins, no `<base>`.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
];

/// Add the headers to a response (`axum::middleware::map_response`).
pub async fn add(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in HEADERS {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    r
}
