//! Downstream builds: when a project's build passes on its default branch,
//! every project whose pipeline says `on.after: [that project]` builds.

use super::meta;
use crate::state::AppState;
use crate::trigger::{start_build, Origin};

/// Start the builds that wait for `build_id` (which just passed).
pub async fn on_passed(st: &AppState, build_id: i64) {
    let Ok(b) = st.store.build(build_id).await else { return };
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
    for p in projects {
        if !meta::get(st, p.id).await.after.contains(&upstream.name) {
            continue;
        }
        if chain.contains(&p.name) {
            tracing::error!("not building {} after {}: it would close a trigger loop ({})", p.name, upstream.name, chain.join(" <- "));
            continue;
        }
        let origin = Origin { upstream: Some(b.id), ..Origin::new("upstream", format!("{}#{}", upstream.name, b.id)) };
        match start_build(st, &p, None, None, origin).await {
            Ok(nb) => tracing::info!("build {} of {} started after build {} of {}", nb.id, p.name, b.id, upstream.name),
            Err(e) => tracing::error!("failed to start {} after {}: {e}", p.name, upstream.name),
        }
    }
}
