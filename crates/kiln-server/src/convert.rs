//! Store rows to the API's wire objects.

use kiln_store::{AgentRow, AttemptRow, BuildRow, JobRow, ProjectRow, Store};
use kiln_wire::api;
use std::collections::BTreeMap;

use crate::redact::{shown_target, without_credentials};
use crate::wireform::{test_summary, ts};

/// A project as the API shows it: no secret values, no credentials in the
/// repository URL, outgoing webhook URLs cut to their host (their path is often
/// a token), and recipients only for signed-in callers; with the caller's role.
pub fn project(p: &ProjectRow, signed_in: bool, role: Option<api::Role>) -> api::Project {
    let mut settings = p.settings.clone();
    for s in [&mut settings.webhook_secret, &mut settings.notify_webhook_secret] {
        if s.is_some() {
            *s = Some("***".into());
        }
    }
    if let Some(urls) = settings.notify_webhook.as_mut() {
        urls.iter_mut().for_each(|u| *u = shown_target("webhook", u));
    }
    if !signed_in {
        settings.notify_email = None;
    }
    if let Some(s) = settings.secrets.as_mut() {
        s.values_mut().for_each(|v| *v = "***".into());
    }
    api::Project {
        id: p.id,
        name: p.name.clone(),
        repo: without_credentials(&p.repo),
        branch: p.branch.clone(),
        pipeline: p.pipeline.clone(),
        public: p.public(),
        visibility: p.visibility,
        role,
        settings,
        created_at: ts(p.created_at),
        last_build: None,
    }
}

pub fn attempt(a: &AttemptRow) -> api::Attempt {
    api::Attempt {
        attempt: a.attempt,
        agent: a.agent.clone(),
        status: a.status.as_str().to_string(),
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
        status: j.status.as_str().to_string(),
        needs: j.needs.clone(),
        requires: j.requires.clone(),
        steps: serde_json::from_str::<kiln_wire::agent::JobAssignment>(&j.spec).map(|a| a.steps).unwrap_or_default(),
        attempt: j.attempt,
        agent: j.agent_name.clone().or_else(|| attempts.last().map(|a| a.agent.clone())),
        exit_code: j.exit_code,
        reason: j.reason.clone(),
        waiting_for,
        waiting: None,
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
        status: b.status.as_str().to_string(),
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
        jobs_total: jobs.len() as u64,
        jobs,
        waiting: crate::app::waiting::build(b).as_ref().map(crate::app::waiting::to_api),
        tests: None,
        retry_of: None,
        first_failure_ms: None,
    }
}

/// Which of a build's jobs to show: the API and the console page them, so a build
/// of many jobs is never one huge answer (`?jobs_offset=&jobs_limit=`).
#[derive(Debug, Clone, Copy)]
pub struct JobPage {
    pub offset: usize,
    pub limit: usize,
}

impl JobPage {
    /// Jobs per page when the caller does not say.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The most jobs one answer holds.
    pub const MAX_LIMIT: usize = 500;

    /// The page a caller asked for, with the limit clamped to 1..=`MAX_LIMIT`.
    pub fn asked(offset: Option<i64>, limit: Option<i64>) -> JobPage {
        JobPage {
            offset: offset.unwrap_or(0).max(0) as usize,
            limit: limit.unwrap_or(Self::DEFAULT_LIMIT as i64).clamp(1, Self::MAX_LIMIT as i64) as usize,
        }
    }
}

impl Default for JobPage {
    fn default() -> Self {
        JobPage { offset: 0, limit: Self::DEFAULT_LIMIT }
    }
}

/// A build with a page of its jobs, their attempts, and for ready queued jobs the labels no online agent offers.
pub async fn full_build(store: &Store, b: &BuildRow, page: JobPage) -> kiln_store::Result<api::Build> {
    full_build_with(store, b, &online_agents(store).await?, page).await
}

pub async fn online_agents(store: &Store) -> kiln_store::Result<Vec<AgentRow>> {
    let now = kiln_store::now_ms();
    Ok(store.list_agents().await?.into_iter().filter(|a| a.online(now)).collect())
}

/// As `full_build`, with the online agents already read (for lists).
pub async fn full_build_with(store: &Store, b: &BuildRow, agents: &[AgentRow], page: JobPage) -> kiln_store::Result<api::Build> {
    let (jobs, total) = build_jobs(store, b, agents, page).await?;
    let mut out = build(b, jobs);
    out.jobs_total = total as u64;
    out.tests = store.build_test_counts(b.id).await?.map(test_summary);
    out.first_failure_ms = store.first_failure_ms(b.id).await?;
    if let Some(t) = out.tests.as_mut() {
        t.first_failure_ms = out.first_failure_ms;
    }
    out.retry_of = store.retry_of(b.id).await?;
    Ok(out)
}

/// A page of a build's jobs with their attempts, and how many jobs the build has
/// (without the build's test counts, which read every result). Reads the build's
/// job rows once and all their attempts in one query.
pub async fn build_jobs(store: &Store, b: &BuildRow, agents: &[AgentRow], page: JobPage) -> kiln_store::Result<(Vec<api::Job>, usize)> {
    let rows = store.jobs_of_build(b.id).await?;
    let shown: Vec<&JobRow> = rows.iter().skip(page.offset).take(page.limit).collect();
    let fleet = if shown.iter().any(|j| j.status == kiln_core::state::JobStatus::Queued) { crate::app::waiting::fleet(store, &crate::app::Sight::only(&b.project)).await? } else { Vec::new() };
    let mut attempts = if shown.is_empty() { Default::default() } else { store.attempts_of_build(b.id).await? };
    let mut jobs = Vec::with_capacity(shown.len());
    for j in shown {
        let tries = attempts.remove(&j.id).unwrap_or_default().iter().map(attempt).collect();
        let waiting = if j.status == kiln_core::state::JobStatus::Queued && j.ready { waiting_for(&j.requires, agents) } else { Vec::new() };
        let mut out = job(j, tries, waiting);
        out.waiting = crate::app::waiting::job(j, &rows, &fleet).as_ref().map(crate::app::waiting::to_api);
        jobs.push(out);
    }
    Ok((jobs, rows.len()))
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

/// An agent's reported status without the entries of jobs the viewer may not see.
pub fn status_for(status: &serde_json::Value, hidden: &[i64]) -> serde_json::Value {
    let mut s = status.clone();
    if let Some(jobs) = s.get_mut("jobs").and_then(|j| j.as_object_mut()) {
        jobs.retain(|k, _| k.parse::<i64>().map_or(true, |id| !hidden.contains(&id)));
    }
    s
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
        target: shown_target(&n.kind, &n.target),
        event: n.event.clone(),
        build_status: n.build_status.as_str().to_string(),
        status: n.status.as_str().to_string(),
        attempts: n.attempts,
        last_error: n.last_error.clone(),
        created_at: ts(n.created_at),
        next_attempt_at: (n.status == kiln_core::state::DeliveryStatus::Pending).then(|| ts(n.next_at)),
        sent_at: n.sent_at.map(ts),
    }
}

/// A build's test results: failures first (with messages), then flaky, then slowest first.
/// `quarantined`: (group, test) quarantined when the build listed its tests.
pub fn build_tests(build_id: i64, rows: &[kiln_store::TestResultRow], quarantined: &std::collections::HashSet<(String, String)>) -> api::BuildTests {
    let mut counts = kiln_core::testrun::Counts::default();
    let mut tests: Vec<api::TestResult> = Vec::with_capacity(rows.len());
    for r in rows {
        if r.is_final {
            counts.add(r.outcome, r.flaky);
        }
        tests.push(api::TestResult {
            job: r.job_key.clone(),
            group: r.group.clone(),
            key: r.key.clone(),
            suite: r.suite.clone(),
            classname: r.classname.clone(),
            name: r.name.clone(),
            file: r.file.clone(),
            duration_ms: r.duration_ms,
            outcome: r.outcome.as_str().to_string(),
            message: r.message.clone(),
            try_number: r.try_number,
            flaky: r.flaky,
            is_final: r.is_final,
            quarantined: quarantined.contains(&(r.group.clone(), r.key.clone())),
        });
    }
    let rank = |t: &api::TestResult| match (t.is_final, t.outcome.as_str(), t.flaky) {
        (true, "failed" | "errored", _) => 0,
        (true, _, true) => 1,
        (true, _, _) => 2,
        _ => 3,
    };
    tests.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| b.duration_ms.cmp(&a.duration_ms)));
    api::BuildTests { build_id, summary: test_summary(counts), tests }
}

pub fn test_stats(s: &kiln_store::TestStatsRow, quarantined: bool) -> api::TestStats {
    api::TestStats {
        key: s.key.clone(),
        runs: s.runs,
        failures: s.failures,
        flaky: s.flaky,
        flaky_rate: if s.runs == 0 { 0.0 } else { s.flaky as f64 / s.runs as f64 },
        avg_ms: s.avg_ms,
        last_ms: s.last_ms,
        last_outcome: s.last_outcome.clone(),
        recent_ms: s.recent.clone(),
        quarantined,
    }
}
