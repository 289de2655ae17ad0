//! The branch heads the poller has seen, per project, kept in the database: a project's
//! baseline is recorded when polling starts for it (adding or changing it, or at start-up), so
//! that only later moves build.

use crate::git;
use crate::state::AppState;
use kiln_store::ProjectRow;
use std::time::{Duration, Instant};

/// How long adding or changing a project waits for its first fetch before it answers.
const BASELINE_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn head_key(project_id: i64, branch: &str) -> String {
    format!("poll:{project_id}:head:{branch}")
}

pub(crate) fn baseline_key(project_id: i64) -> String {
    format!("poll:{project_id}:baseline")
}

/// Record the current heads without building (when polling starts for a project).
pub async fn baseline(st: &AppState, p: &ProjectRow) -> Result<(), String> {
    let mirror = st.mirrors.refresh(p.id, &p.repo, Instant::now()).await?;
    for (branch, sha) in git::branch_heads(&mirror).await? {
        st.store.kv_set(&head_key(p.id, &branch), &sha).await.map_err(|e| e.to_string())?;
    }
    st.store.kv_set(&baseline_key(p.id), "1").await.map_err(|e| e.to_string())
}

/// Record the heads unless polling already has a baseline for this project.
pub async fn ensure_baseline(st: &AppState, p: &ProjectRow) -> Result<(), String> {
    if st.store.kv_get(&baseline_key(p.id)).await.map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    baseline(st, p).await
}

/// `ensure_baseline` in the background, waiting for it at most `BASELINE_WAIT`
/// (a request that changed the project should not hang on a slow repository).
pub async fn baseline_soon(st: &AppState, p: &ProjectRow) {
    let (st2, p2) = (st.clone(), p.clone());
    let task = tokio::spawn(async move { ensure_baseline(&st2, &p2).await });
    match tokio::time::timeout(BASELINE_WAIT, task).await {
        Ok(Ok(Err(e))) => tracing::warn!("project {}: cannot read the repository yet ({e}); the poller will retry", p.name),
        Ok(_) => {}
        Err(_) => tracing::info!("project {}: the repository is slow to answer; its first fetch goes on in the background", p.name),
    }
}
