//! Replayed webhooks: each forge names its deliveries in a header; a delivery id
//! seen in the last day is answered "duplicate delivery" and builds nothing.
//! The generic hook's header is `X-Kiln-Delivery` (any unique string).

use axum::http::HeaderMap;

/// How long a delivery id is remembered.
pub const REMEMBER_MS: i64 = 24 * 3600 * 1000;

/// The delivery id header of each forge.
pub fn header(forge: &str) -> &'static str {
    match forge {
        "github" => "x-github-delivery",
        "gitea" => "x-gitea-delivery",
        "gitlab" => "x-gitlab-event-uuid",
        _ => "x-kiln-delivery",
    }
}

/// Whether this (authentic) delivery was already seen. Deliveries without an id are never duplicates.
pub async fn seen_before(store: &kiln_store::Store, forge: &str, project_id: i64, h: &HeaderMap) -> Result<bool, kiln_store::StoreError> {
    let id = h.get(header(forge)).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if id.is_empty() {
        return Ok(false);
    }
    Ok(!store.remember_delivery(&format!("{forge}:{project_id}:{id}"), REMEMBER_MS).await?)
}
