//! `/badge/PROJECT.svg`: the latest build's status as an SVG badge for READMEs.

use crate::app::access::visible;
use crate::auth::Viewer;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;

pub async fn badge(State(st): State<AppState>, viewer: Viewer, Path(file): Path<String>) -> AppResult<impl IntoResponse> {
    let name = file.strip_suffix(".svg").unwrap_or(&file);
    let p = visible(&st, &viewer, name).await?;
    let status = st.store.latest_build(p.id).await?.map(|b| b.status.as_str()).unwrap_or("none");
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-cache")], svg("build", status)))
}

fn colour(status: &str) -> &'static str {
    match status {
        "passed" => "#2da44e",
        "failed" => "#cf222e",
        "errored" => "#bf8700",
        "running" | "queued" => "#0969da",
        _ => "#6e7781",
    }
}

/// A flat two-part badge; widths from a 7 px average glyph.
pub fn svg(label: &str, status: &str) -> String {
    let lw = 10 + 7 * label.len();
    let sw = 10 + 7 * status.len();
    let w = lw + sw;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {status}"><title>{label}: {status}</title><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{sw}" height="20" fill="{c}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{sx}" y="14">{status}</text></g></svg>"##,
        c = colour(status),
        lx = lw / 2,
        sx = lw + sw / 2
    )
}
