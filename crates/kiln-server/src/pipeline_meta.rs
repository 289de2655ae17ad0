//! What the server remembers of each project's pipeline on its default branch:
//! its `on.after` upstreams and `on.schedule` crons, so that downstream builds
//! and schedules need no pipeline read at the moment they fire.

use crate::git;
use crate::state::AppState;
use kiln_core::pipeline::Pipeline;
use kiln_store::ProjectRow;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub after: Vec<String>,
    pub schedule: Vec<String>,
}

/// The kv keys of every project's triggers start with this.
const PREFIX: &str = kiln_store::TRIGGERS_PREFIX;

/// The kv key of a project's triggers.
pub(crate) fn key(project_id: i64) -> String {
    format!("{PREFIX}{project_id}")
}

/// Triggers as stored (none recorded: none).
fn parse(text: Option<&str>) -> Meta {
    text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
}

/// Every project's triggers, by project id, in one read.
pub async fn all(st: &AppState) -> HashMap<i64, Meta> {
    let rows = st.store.kv_prefixed(PREFIX).await.unwrap_or_default();
    rows.into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.parse().ok()?, serde_json::from_str(&v).unwrap_or_default())))
        .collect()
}

/// Remember the triggers of pipeline `p` as the project's (written only when they changed).
pub async fn record(st: &AppState, project_id: i64, p: &Pipeline) {
    let recorded = st.store.kv_get(&key(project_id)).await.ok().flatten();
    record_over(st, project_id, p, recorded.as_deref()).await
}

/// [`record`] when the caller has read what is recorded (`recorded`, the stored text) already:
/// a build's expansion reads it as it takes its lease, in the same statement.
pub async fn record_over(st: &AppState, project_id: i64, p: &Pipeline, recorded: Option<&str>) {
    let m = Meta { after: p.on.after.clone(), schedule: p.on.schedule.clone() };
    if parse(recorded) != m {
        let _ = st.store.kv_set(&key(project_id), &serde_json::to_string(&m).unwrap_or_default()).await;
    }
}

/// Read the pipeline at the default branch's head and remember its triggers.
pub async fn refresh(st: &AppState, project: &ProjectRow) {
    let Ok(mirror) = st.mirrors.refresh(project.id, &project.repo, Instant::now()).await else { return };
    let Ok(commit) = git::resolve(&mirror, &format!("refs/heads/{}", project.branch)).await else { return };
    if let Ok(Some(text)) = git::read_file(&mirror, &commit, &project.pipeline).await {
        if let Ok(p) = kiln_core::pipeline::parse(&project.pipeline, &text) {
            record(st, project.id, &p).await;
        }
    }
}

/// Check a project's `on.after` list: every upstream must exist, and the
/// chain of upstreams must never lead back to the project (a trigger loop).
pub async fn check_after(st: &AppState, project: &str, after: &[String]) -> Result<(), String> {
    let projects = st.store.list_projects().await.map_err(|e| e.to_string())?;
    let mut metas = all(st).await;
    let mut upstreams: HashMap<String, Vec<String>> = HashMap::new();
    for p in &projects {
        upstreams.insert(p.name.clone(), metas.remove(&p.id).unwrap_or_default().after);
    }
    upstreams.insert(project.to_string(), after.to_vec());
    for a in after {
        if !upstreams.contains_key(a) {
            return Err(format!("on.after names unknown project {a:?}: add it first, or fix the name"));
        }
    }
    // Walk upward from the project; reaching it again is a loop.
    let mut path = vec![project.to_string()];
    let mut seen = BTreeSet::new();
    fn walk(name: &str, target: &str, up: &HashMap<String, Vec<String>>, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for a in up.get(name).into_iter().flatten() {
            path.push(a.clone());
            if a == target || (seen.insert(a.clone()) && walk(a, target, up, path, seen)) {
                return true;
            }
            path.pop();
        }
        false
    }
    if walk(project, project, &upstreams, &mut path, &mut seen) {
        path.reverse();
        return Err(format!("trigger loop in on.after: {} (each builds after the next); remove one of these", path.join(" -> ")));
    }
    Ok(())
}
