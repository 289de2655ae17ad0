//! Starting builds: every change source (manual, poll, webhook, hook, schedule,
//! upstream, upload) ends here.

use crate::events::EventKind;
use crate::materialize::{materialize, Lease};
use crate::state::AppState;
use kiln_store::{BuildRow, NewBuild, ProjectRow};
use std::time::Instant;

/// Where a build comes from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// manual, poll, webhook, hook, schedule, upstream, upload
    pub trigger: &'static str,
    /// Who or what sent it.
    pub by: String,
    pub upstream: Option<i64>,
    /// For a push: where the branch was before, and the paths it changed (if the source said).
    pub before: Option<String>,
    pub changed_paths: Option<Vec<String>>,
}

impl Origin {
    pub fn new(trigger: &'static str, by: impl Into<String>) -> Origin {
        Origin { trigger, by: by.into(), ..Default::default() }
    }
}

/// Record a build and expand it in the background. Returns it queued.
pub async fn start_build(
    st: &AppState,
    project: &ProjectRow,
    branch: Option<&str>,
    commit: Option<&str>,
    origin: Origin,
    starter: crate::app::access::Starter,
) -> kiln_store::Result<BuildRow> {
    let asked_at = Instant::now();
    // Recorded with its expansion lease held: this server expands it next (another takes it
    // over if this one dies first).
    let (b, recorded) = st
        .store
        .create_build_to_expand(&NewBuild {
            project_id: project.id,
            branch: branch.unwrap_or(&project.branch).to_string(),
            requested_commit: commit.map(str::to_string),
            trigger: origin.trigger.to_string(),
            triggered_by: origin.by,
            upstream_build: origin.upstream,
            before_commit: origin.before.filter(|b| !b.is_empty() && !b.bytes().all(|c| c == b'0')),
            changed_paths: origin.changed_paths,
            with_secrets: crate::app::access::build_gets_secrets(project, starter),
        }, st.cfg.lease_ms(), &crate::pipeline_meta::key(project.id))
        .await?;
    st.emit(EventKind::Build, b.id, None, &project.name, "queued");
    if project.settings.cancel_superseded == Some(true) {
        cancel_superseded(st, &b).await;
    }
    let st2 = st.clone();
    let (b2, p2) = (b.clone(), project.clone());
    tokio::spawn(async move { materialize(&st2, b2, Some(p2), Lease::Held { recorded }, asked_at).await });
    Ok(b)
}

/// After a restart: expand builds that were recorded but never expanded.
pub async fn resume_unmaterialized(st: &AppState) {
    match st.store.unmaterialized_builds().await {
        Ok(builds) => {
            for b in builds {
                materialize(st, b, None, Lease::Take, Instant::now()).await;
            }
        }
        Err(e) => tracing::error!("failed to list builds to resume: {e}"),
    }
}

/// A newer build on a branch cancels the older unfinished builds of that branch.
async fn cancel_superseded(st: &AppState, newer: &BuildRow) {
    let Ok(older) = st.store.unfinished_builds(newer.project_id, &newer.branch).await else { return };
    for b in older.into_iter().filter(|b| b.id < newer.id) {
        tracing::info!("build {} of {} superseded by build {}: cancelling it", b.id, b.project, newer.id);
        if let Err(e) = crate::app::builds::cancel_now(st, b.id, None).await {
            tracing::warn!("failed to cancel superseded build {}: {e}", b.id);
        }
    }
}
