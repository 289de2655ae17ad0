//! The web console's pages (server-rendered HTML).

use crate::auth::Viewer;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::State;
use axum::response::Html;

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

pub async fn home(State(st): State<AppState>, viewer: Viewer) -> AppResult<Html<String>> {
    let mut rows = String::new();
    for p in st.store.list_projects().await? {
        if !(p.public || viewer.signed_in()) {
            continue;
        }
        let last = st.store.latest_build(p.id).await?;
        let (status, id) = last.map(|b| (b.status, b.id.to_string())).unwrap_or(("none".into(), "-".into()));
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"{s}\">{s}</td><td>{}</td><td><img src=\"/badge/{}.svg\" alt=\"\"></td></tr>",
            esc(&p.name),
            esc(&id),
            esc(&p.name),
            s = esc(&status)
        ));
    }
    Ok(Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kiln</title></head><body><h1>kiln</h1>\
         <table><tr><th>project</th><th>status</th><th>build</th><th>badge</th></tr>{rows}</table></body></html>"
    )))
}
