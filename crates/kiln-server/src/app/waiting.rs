//! "Why is it waiting?": gathers the facts (the fleet now, a job's needs) and asks
//! `kiln_core::waiting::why`, the one place the reason is decided. The API, `kiln show` and the
//! console's build and queue pages all show what this returns.

use super::Sight;
use kiln_core::state::JobStatus;
use kiln_core::waiting::{why, AgentFacts, JobFacts, Waiting};
use kiln_store::{BuildRow, JobRow, Store};
use kiln_wire::api::{self, WaitReason};

/// Every agent the server knows, with whether it is online and the jobs it runs: named when
/// `sight` sees their project, only counted otherwise.
pub async fn fleet(store: &Store, sight: &Sight) -> kiln_store::Result<Vec<AgentFacts>> {
    let now = kiln_store::now_ms();
    let mut running = store.running_by_agent().await?;
    Ok(store
        .list_agents()
        .await?
        .into_iter()
        .map(|a| {
            let jobs = running.remove(&a.name).unwrap_or_default();
            let shown: Vec<i64> = jobs.iter().filter(|(_, p)| sight.sees(p)).map(|(id, _)| *id).collect();
            AgentFacts {
                online: a.online(now),
                hidden: jobs.len() - shown.len(),
                running: shown,
                name: a.name,
                labels: a.labels,
                draining: a.draining,
                concurrency: a.concurrency,
            }
        })
        .collect())
}

/// Why a queued job has not started (None for a job that is not queued). `siblings` are the
/// jobs of its build (for its needs).
pub fn job(j: &JobRow, siblings: &[JobRow], fleet: &[AgentFacts]) -> Option<Waiting> {
    if j.status != JobStatus::Queued {
        return None;
    }
    let pending_needs = siblings
        .iter()
        .filter(|s| s.id != j.id && (j.needs.contains(&s.key) || j.needs.contains(&s.name)) && s.status != JobStatus::Passed)
        .map(|s| (s.key.clone(), s.status))
        .collect();
    Some(why(&JobFacts { requires: j.requires.clone(), ready: j.ready, pending_needs }, fleet))
}

/// Why a queued build has no jobs yet (None once it is expanded).
pub fn build(b: &BuildRow) -> Option<Waiting> {
    (!b.materialized && b.status == kiln_core::state::BuildStatus::Queued).then_some(Waiting::NotExpanded)
}

/// The reason as the API spells it.
pub fn to_api(w: &Waiting) -> api::Waiting {
    let reason = match w {
        Waiting::NotExpanded => WaitReason::NotExpanded,
        Waiting::Needs(_) => WaitReason::Needs,
        Waiting::NoAgent { .. } => WaitReason::NoAgent,
        Waiting::Draining(_) => WaitReason::Draining,
        Waiting::Busy(_) => WaitReason::Busy,
        Waiting::NextClaim(_) => WaitReason::NextClaim,
    };
    api::Waiting { reason, message: w.to_string(), agents: w.agents() }
}
