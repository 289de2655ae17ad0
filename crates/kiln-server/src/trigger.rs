//! Starting builds: every change source (manual, poll, webhook, hook, schedule,
//! upstream, upload) ends here.

use crate::materialize::materialize;
use crate::state::AppState;
use kiln_store::{BuildRow, NewBuild, ProjectRow};
use std::time::Instant;

/// Where a build comes from.
pub struct Origin {
    pub trigger: &'static str,
    pub by: String,
    pub upstream: Option<i64>,
}

/// Record a build and expand it in the background. Returns it queued.
pub async fn start_build(
    st: &AppState,
    project: &ProjectRow,
    branch: Option<&str>,
    commit: Option<&str>,
    origin: Origin,
) -> kiln_store::Result<BuildRow> {
    let asked_at = Instant::now();
    let b = st
        .store
        .create_build(&NewBuild {
            project_id: project.id,
            branch: branch.unwrap_or(&project.branch).to_string(),
            requested_commit: commit.map(str::to_string),
            trigger: origin.trigger.to_string(),
            triggered_by: origin.by,
            upstream_build: origin.upstream,
        })
        .await?;
    st.emit("build", b.id, None, &project.name, "queued");
    let st2 = st.clone();
    let b2 = b.clone();
    tokio::spawn(async move { materialize(&st2, b2, asked_at).await });
    Ok(b)
}

/// After a restart: expand builds that were recorded but never expanded.
pub async fn resume_unmaterialized(st: &AppState) {
    match st.store.unmaterialized_builds().await {
        Ok(builds) => {
            for b in builds {
                materialize(st, b, Instant::now()).await;
            }
        }
        Err(e) => tracing::error!("failed to list builds to resume: {e}"),
    }
}
