//! Downstream builds: when a project's build passes on its default branch,
//! every project whose pipeline says `on.after: [that project]` builds. A marker
//! per upstream build makes it happen once, and a catch-up pass at start-up
//! starts what a stopped server never started.

use crate::pipeline_meta as meta;
use crate::state::AppState;
use crate::app::trigger::{start_build, Origin};

/// How far back the catch-up looks for passed builds whose downstream builds never started.
const CATCH_UP_MS: i64 = 15 * 60 * 1000;

/// Start the builds that wait for `build_id` of project `project` (which just passed). Once
/// per build, whichever server or pass gets there first (compare-and-set on a marker).
pub async fn on_passed(st: &AppState, build_id: i64, project: &str) {
    // Most builds have nothing downstream: find that out before reading the build or writing
    // a marker.
    let downstream: Vec<i64> = meta::all(st).await.into_iter().filter(|(_, m)| m.after.iter().any(|a| a == project)).map(|(id, _)| id).collect();
    if downstream.is_empty() {
        return;
    }
    let Ok(b) = st.store.build(build_id).await else { return };
    if !st.store.kv_cas(&format!("down:{build_id}"), None, "started").await.unwrap_or(false) {
        return;
    }
    let Ok(upstream) = st.store.project_by_id(b.project_id).await else { return };
    if b.branch != upstream.branch {
        return;
    }
    // The projects already in this chain of builds: never start one of them again.
    let mut chain = vec![upstream.name.clone()];
    let mut up = b.upstream_build;
    while let Some(id) = up {
        match st.store.build(id).await {
            Ok(x) => {
                chain.push(x.project.clone());
                up = x.upstream_build;
            }
            Err(_) => break,
        }
    }
    let Ok(projects) = st.store.list_projects().await else { return };
    for p in projects.into_iter().filter(|p| downstream.contains(&p.id)) {
        if chain.contains(&p.name) {
            tracing::error!("not building {} after {}: it would close a trigger loop ({})", p.name, upstream.name, chain.join(" <- "));
            continue;
        }
        let origin = Origin { upstream: Some(b.id), ..Origin::new("upstream", format!("{}#{}", upstream.name, b.id)) };
        match start_build(st, &p, None, None, origin, crate::app::access::Starter::Source).await {
            Ok(nb) => tracing::info!("build {} of {} started after build {} of {}", nb.id, p.name, b.id, upstream.name),
            Err(e) => tracing::error!("failed to start {} after {}: {e}", p.name, upstream.name),
        }
    }
}

/// At start-up: start what a build that passed shortly before owes downstream
/// and never started (the server stopped between the build's end and its
/// downstream builds).
pub async fn catch_up(st: &AppState) {
    let Ok(projects) = st.store.list_projects().await else { return };
    let metas = meta::all(st).await;
    let upstreams: std::collections::HashSet<String> =
        projects.iter().filter_map(|p| metas.get(&p.id)).flat_map(|m| m.after.iter().cloned()).collect();
    if upstreams.is_empty() {
        return;
    }
    let since = kiln_store::now_ms() - CATCH_UP_MS;
    for (id, project) in st.store.passed_since(since).await.unwrap_or_default() {
        if upstreams.contains(&project) && st.store.kv_get(&format!("down:{id}")).await.ok().flatten().is_none() {
            on_passed(st, id, &project).await;
        }
    }
}
