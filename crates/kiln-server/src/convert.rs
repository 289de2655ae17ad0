//! Store rows to the API's wire objects.

use kiln_store::{AgentRow, AttemptRow, BuildRow, JobRow, ProjectRow, Store};
use kiln_wire::api;
use std::collections::BTreeMap;

/// Epoch milliseconds as RFC 3339 UTC with milliseconds (sorts as text).
pub fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub fn project(p: &ProjectRow) -> api::Project {
    let mut settings = p.settings.clone();
    if settings.webhook_secret.is_some() {
        settings.webhook_secret = Some("***".into());
    }
    if let Some(s) = settings.secrets.as_mut() {
        s.values_mut().for_each(|v| *v = "***".into());
    }
    api::Project {
        id: p.id,
        name: p.name.clone(),
        repo: p.repo.clone(),
        branch: p.branch.clone(),
        pipeline: p.pipeline.clone(),
        public: p.public,
        settings,
        created_at: ts(p.created_at),
        last_build: None,
    }
}

pub fn attempt(a: &AttemptRow) -> api::Attempt {
    api::Attempt {
        attempt: a.attempt,
        agent: a.agent.clone(),
        status: a.status.clone(),
        reason: a.reason.clone(),
        log_len: a.log_len,
        started_at: ts(a.started_at),
        finished_at: a.finished_at.map(ts),
    }
}

pub fn job(j: &JobRow, attempts: Vec<api::Attempt>, waiting_for: Vec<String>) -> api::Job {
    api::Job {
        id: j.id,
        build_id: j.build_id,
        key: j.key.clone(),
        name: j.name.clone(),
        status: j.status.clone(),
        needs: j.needs.clone(),
        requires: j.requires.clone(),
        steps: serde_json::from_str::<kiln_wire::agent::JobAssignment>(&j.spec).map(|a| a.steps).unwrap_or_default(),
        attempt: j.attempt,
        agent: j.agent_name.clone().or_else(|| attempts.last().map(|a| a.agent.clone())),
        exit_code: j.exit_code,
        reason: j.reason.clone(),
        waiting_for,
        created_at: ts(j.created_at),
        started_at: j.started_at.map(ts),
        finished_at: j.finished_at.map(ts),
        attempts,
    }
}

pub fn build(b: &BuildRow, jobs: Vec<api::Job>) -> api::Build {
    api::Build {
        id: b.id,
        project: b.project.clone(),
        status: b.status.clone(),
        branch: b.branch.clone(),
        commit: b.commit.clone(),
        message: b.message.clone(),
        author: b.author.clone(),
        trigger: b.trigger.clone(),
        triggered_by: b.triggered_by.clone(),
        upstream_build: b.upstream_build,
        error: b.error.clone(),
        created_at: ts(b.created_at),
        started_at: b.started_at.map(ts),
        finished_at: b.finished_at.map(ts),
        duration_ms: match (b.started_at, b.finished_at) {
            (Some(s), Some(f)) => Some(f - s),
            _ => None,
        },
        jobs,
    }
}

/// A build with its jobs, their attempts, and for ready queued jobs the labels no online agent offers.
pub async fn full_build(store: &Store, b: &BuildRow) -> kiln_store::Result<api::Build> {
    full_build_with(store, b, &online_agents(store).await?).await
}

pub async fn online_agents(store: &Store) -> kiln_store::Result<Vec<AgentRow>> {
    let now = kiln_store::now_ms();
    Ok(store.list_agents().await?.into_iter().filter(|a| a.online(now)).collect())
}

/// As `full_build`, with the online agents already read (for lists).
pub async fn full_build_with(store: &Store, b: &BuildRow, agents: &[AgentRow]) -> kiln_store::Result<api::Build> {
    let mut jobs = Vec::new();
    for j in store.jobs_of_build(b.id).await? {
        let attempts = store.attempts(j.id).await?.iter().map(attempt).collect();
        let waiting = if j.status == "queued" && j.ready { waiting_for(&j.requires, agents) } else { Vec::new() };
        jobs.push(job(&j, attempts, waiting));
    }
    Ok(build(b, jobs))
}

/// The requirements no online agent meets (empty when some agent can take the job).
fn waiting_for(requires: &BTreeMap<String, String>, agents: &[AgentRow]) -> Vec<String> {
    if agents.iter().any(|a| kiln_core::labels::matches(requires, &a.labels)) {
        return Vec::new();
    }
    if requires.is_empty() {
        return vec!["any online agent".into()];
    }
    requires.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

pub fn agent(a: &AgentRow, jobs: Vec<i64>, now: i64) -> api::Agent {
    api::Agent {
        id: a.id,
        name: a.name.clone(),
        labels: a.labels.clone(),
        concurrency: a.concurrency,
        online: a.online(now),
        draining: a.draining,
        last_seen: a.last_seen.map(ts),
        status: a.status.clone(),
        jobs,
    }
}

/// A notification delivery, its target shown without secrets.
pub fn delivery(n: &kiln_store::NotificationRow) -> kiln_wire::notify::Delivery {
    kiln_wire::notify::Delivery {
        id: n.id,
        build_id: n.build_id,
        kind: n.kind.clone(),
        target: crate::notify::shown_target(&n.kind, &n.target),
        event: n.event.clone(),
        build_status: n.build_status.clone(),
        status: n.status.clone(),
        attempts: n.attempts,
        last_error: n.last_error.clone(),
        created_at: ts(n.created_at),
        next_attempt_at: (n.status == "pending").then(|| ts(n.next_at)),
        sent_at: n.sent_at.map(ts),
    }
}
