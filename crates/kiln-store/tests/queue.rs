//! The queue where it lives: claim, fencing, settle, lease expiry, cancel and requeue, each a
//! row of a table of cases run on SQLite always and on PostgreSQL when one is reachable
//! (ci/setup-postgres.sh, or `KILN_TEST_POSTGRES` as an admin URL; under ci/test, or with CI
//! set, a missing PostgreSQL fails the test). Property tests check the claim order with label
//! matching.

use kiln_core::state::{BuildStatus, JobStatus};
use kiln_store::{hash_token, AgentAttempt, AgentRow, AgentSpec, BuildRow, EnrolWith, FinishOutcome, LeaseExpiry, NewBuild, NewJob, Store, StoreError};
use kiln_wire::api::ProjectSettings;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

mod common;
const LEASE: i64 = 60_000;

async fn sqlite(dir: &tempfile::TempDir) -> Store {
    Store::open(&format!("sqlite:{}", dir.path().join("q.db").display())).await.unwrap()
}

fn labels(s: &str) -> BTreeMap<String, String> {
    s.split(',').filter(|p| !p.is_empty()).map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap()).collect()
}

fn job(key: &str, requires: &str, needs: &[&str], max_attempts: i64) -> NewJob {
    NewJob {
        key: key.into(),
        name: key.into(),
        spec: "{}".into(),
        requires: labels(requires),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        max_attempts,
    }
}

/// A new build of project `project` (made once, with `settings`), not expanded yet.
async fn recorded(s: &Store, project: &str, settings: &ProjectSettings, with_secrets: bool) -> BuildRow {
    let p = match s.project_by_name(project).await {
        Ok(p) => p,
        Err(_) => s.create_project(project, "/repo", "main", ".kiln.yml", kiln_wire::api::Visibility::Public, settings).await.unwrap(),
    };
    s.create_build(&common::suites::manual_build(p.id, with_secrets)).await.unwrap()
}

/// A build of project `p` (made once) expanded into `jobs`; the jobs' ids by key.
async fn build(s: &Store, jobs: &[NewJob]) -> (i64, BTreeMap<String, i64>) {
    let b = recorded(s, "p", &Default::default(), false).await;
    s.materialize_build(b.id, "c0ffee", "m", "a", true, jobs).await.unwrap();
    let ids = s.jobs_of_build(b.id).await.unwrap().into_iter().map(|j| (j.key, j.id)).collect();
    (b.id, ids)
}

/// Agent `name` registered with labels `l` (its labels replaced when it exists).
async fn agent(s: &Store, name: &str, l: &str) -> AgentRow {
    let l = labels(l);
    let spec = AgentSpec { name, labels: &l, concurrency: 1, heartbeat_secs: 10 };
    let token = hash_token(&format!("token-of-{name}"));
    match s.agent_by_token(&token).await.unwrap() {
        // Re-registering would hand its running jobs back: only when its labels change.
        Some(a) if a.labels == l => a,
        Some(_) => s.reregister_agent(&token, &spec).await.unwrap().unwrap(),
        None => s.enrol_agent(EnrolWith::ServerSecret, &spec, &token).await.unwrap().expect("a new agent enrols"),
    }
}

async fn claim(s: &Store, name: &str, l: &str) -> Option<(i64, i64)> {
    let a = agent(s, name, l).await;
    s.claim(&a, LEASE).await.unwrap().map(|c| (c.job.id, c.job.attempt))
}

/// The agent that ran attempt `attempt` of job `j`.
async fn runner(s: &Store, j: i64, attempt: i64) -> String {
    s.attempts(j).await.unwrap().into_iter().find(|a| a.attempt == attempt).map(|a| a.agent).unwrap_or_else(|| "nobody".into())
}

/// Finish attempt `attempt` of job `j` as the agent that ran it.
async fn finish(s: &Store, j: i64, attempt: i64, status: JobStatus, exit: Option<i64>) -> kiln_store::Result<FinishOutcome> {
    let agent = runner(s, j, attempt).await;
    s.finish_job(AgentAttempt { job_id: j, attempt, agent: &agent }, 0, status, exit, None).await
}

/// Hand attempt `attempt` of job `j` back, as the agent that ran it.
async fn release(s: &Store, j: i64, attempt: i64) -> kiln_store::Result<Option<LeaseExpiry>> {
    let agent = runner(s, j, attempt).await;
    s.release_job(AgentAttempt { job_id: j, attempt, agent: &agent }).await
}

async fn claim_order(s: Store) {
    let (_, ids) = build(&s, &[job("any", "", &[], 1), job("py312", "python=3.12", &[], 1), job("glob", "python=3.*", &[], 1), job("later", "", &["any"], 1)]).await;
    // Labels must match: a 3.11 agent skips the 3.12 job but takes the glob.
    assert_eq!(claim(&s, "a", "python=3.11").await, Some((ids["any"], 1)));
    assert_eq!(claim(&s, "a", "python=3.11").await, Some((ids["glob"], 1)));
    // `later` needs `any`, which is running: not claimable yet.
    assert_eq!(claim(&s, "a", "python=3.11").await, None);
    assert_eq!(claim(&s, "b", "python=3.12").await, Some((ids["py312"], 1)));
    assert_eq!(claim(&s, "b", "python=3.12").await, None, "a claimed job is never claimed twice");
    let out = finish(&s, ids["any"], 1, JobStatus::Passed, Some(0)).await.unwrap();
    assert!(out.readied);
    assert_eq!(claim(&s, "c", "").await, Some((ids["later"], 1)));
}

async fn fencing(s: Store) {
    let (_, ids) = build(&s, &[job("j", "", &[], 3)]).await;
    let j = ids["j"];
    assert_eq!(claim(&s, "a", "").await, Some((j, 1)));
    // Attempt 1 is handed back; attempt 2 goes to b.
    assert!(release(&s, j, 1).await.unwrap().unwrap().requeued);
    assert_eq!(claim(&s, "b", "").await, Some((j, 2)));
    // The old attempt can neither finish nor renew: it is told to stop.
    assert!(matches!(finish(&s, j, 1, JobStatus::Passed, Some(0)).await, Err(StoreError::Stale { .. })));
    assert_eq!(s.renew_leases("a", &[(j, 1)], LEASE).await.unwrap(), vec![(j, 1)]);
    assert!(s.renew_leases("b", &[(j, 2)], LEASE).await.unwrap().is_empty());
    assert!(s.check_held(AgentAttempt { job_id: j, attempt: 2, agent: "b" }).await.is_ok() && s.check_held(AgentAttempt { job_id: j, attempt: 1, agent: "a" }).await.is_err());
    // The current attempt finishes once; a retried finish is recognised, a different one refused.
    let first = finish(&s, j, 2, JobStatus::Passed, Some(0)).await.unwrap();
    assert!(!first.repeated && first.build_finished && first.build_status == BuildStatus::Passed);
    assert!(finish(&s, j, 2, JobStatus::Passed, Some(0)).await.unwrap().repeated);
    assert!(matches!(finish(&s, j, 2, JobStatus::Failed, Some(1)).await, Err(StoreError::Stale { .. })));
}

async fn settle(s: Store) {
    let (b, ids) = build(&s, &[job("build", "", &[], 1), job("test", "", &["build"], 1), job("deploy", "", &["test"], 1), job("lint", "", &[], 1)]).await;
    assert_eq!(claim(&s, "a", "").await, Some((ids["build"], 1)));
    assert_eq!(claim(&s, "a", "").await, Some((ids["lint"], 1)));
    // build fails: test and deploy are skipped, the build fails once lint ends.
    let out = finish(&s, ids["build"], 1, JobStatus::Failed, Some(1)).await.unwrap();
    assert!(!out.readied && !out.build_finished && out.build_status == BuildStatus::Running);
    let jobs = s.jobs_of_build(b).await.unwrap();
    let status = |k: &str| jobs.iter().find(|j| j.key == k).unwrap().status.clone();
    assert_eq!((status("test"), status("deploy")), (JobStatus::Skipped, JobStatus::Skipped));
    let out = finish(&s, ids["lint"], 1, JobStatus::Passed, Some(0)).await.unwrap();
    assert!(out.build_finished && out.build_status == BuildStatus::Failed);
    assert_eq!(s.build(b).await.unwrap().status, BuildStatus::Failed);
}

async fn lease_expiry(s: Store) {
    let (b, ids) = build(&s, &[job("twice", "", &[], 2), job("once", "", &[], 1)]).await;
    for _ in 0..2 {
        assert!(s.claim(&agent(&s, "gone", "").await, 1).await.unwrap().is_some());
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut expired = s.expire_leases().await.unwrap();
    expired.sort_by_key(|e| e.job_id);
    assert_eq!(expired.iter().map(|e| (e.job_id, e.attempt, e.requeued)).collect::<Vec<_>>(), vec![(ids["twice"], 1, true), (ids["once"], 1, false)]);
    assert!(s.expire_leases().await.unwrap().is_empty(), "a lease expires once");
    let once = s.job(ids["once"]).await.unwrap();
    assert_eq!(once.status, JobStatus::Errored);
    assert!(once.reason.unwrap().contains("gave up after 1 attempts"));
    // The requeued one runs again as attempt 2 and can still pass; the build ends errored.
    assert_eq!(claim(&s, "b", "").await, Some((ids["twice"], 2)));
    let out = finish(&s, ids["twice"], 2, JobStatus::Passed, Some(0)).await.unwrap();
    assert!(out.build_finished && out.build_status == BuildStatus::Errored, "{out:?}");
    assert_eq!(s.build(b).await.unwrap().status, BuildStatus::Errored);
}

async fn cancel(s: Store) {
    let (b, ids) = build(&s, &[job("run", "", &[], 3), job("wait", "gpu=yes", &[], 1)]).await;
    assert_eq!(claim(&s, "a", "").await, Some((ids["run"], 1)));
    // Queued jobs end at once; running ones are flagged for their agent.
    assert_eq!(s.cancel(b, None).await.unwrap(), vec![ids["run"]]);
    assert_eq!(s.job(ids["wait"]).await.unwrap().status, JobStatus::Cancelled);
    assert_eq!(s.cancelled_jobs_of_agent("a").await.unwrap(), vec![(ids["run"], 1)]);
    assert_eq!(claim(&s, "g", "gpu=yes").await, None);
    // A cancelled job's lost lease does not requeue it, whatever attempts are left.
    let back = release(&s, ids["run"], 1).await.unwrap().unwrap();
    assert!(!back.requeued);
    assert_eq!(s.job(ids["run"]).await.unwrap().status, JobStatus::Cancelled);
    assert_eq!(s.build(b).await.unwrap().status, BuildStatus::Cancelled);
}

async fn requeue(s: Store) {
    let (_, ids) = build(&s, &[job("a1", "", &[], 2), job("a2", "", &[], 2)]).await;
    assert!(claim(&s, "crashy", "").await.is_some());
    assert!(claim(&s, "crashy", "").await.is_some());
    // The agent restarted: what it held is queued again at once, with the next attempt.
    let back = s.requeue_agent_jobs("crashy", "its agent restarted").await.unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|e| e.requeued && e.agent == "crashy"));
    assert_eq!(claim(&s, "b", "").await, Some((ids["a1"], 2)));
    assert_eq!(claim(&s, "b", "").await, Some((ids["a2"], 2)));
    let attempts = s.attempts(ids["a1"]).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(), ["errored", "running"]);
    assert!(attempts[0].reason.as_deref().unwrap().contains("its agent restarted on agent crashy"));
}

async fn stale_token(s: Store) {
    let (_, ids) = build(&s, &[job("a1", "", &[], 2)]).await;
    // The agent's row as its long-polling claim read it, with the token it called with.
    let old = agent(&s, "again", "").await;
    // Meanwhile it is revoked and a new agent enrols under its name with a new token.
    s.revoke_agent("again").await.unwrap();
    let spec = AgentSpec { name: "again", labels: &labels(""), concurrency: 1, heartbeat_secs: 10 };
    let new = s.enrol_agent(EnrolWith::ServerSecret, &spec, &hash_token("a new token")).await.unwrap().expect("enrolled again");
    assert_eq!(new.id, old.id, "the same row, with a new token");
    // The old claim is refused and takes nothing; the new agent gets the job.
    assert!(matches!(s.claim(&old, LEASE).await, Err(StoreError::Refused(_))));
    assert_eq!(s.claim(&new, LEASE).await.unwrap().map(|c| (c.job.id, c.job.attempt)), Some((ids["a1"], 1)));
    // A plain revoke refuses it too.
    build(&s, &[job("b1", "", &[], 2)]).await;
    s.revoke_agent("again").await.unwrap();
    assert!(matches!(s.claim(&new, LEASE).await, Err(StoreError::Refused(_))));
}

/// The whole log of attempt `attempt` of job `j`, as text.
async fn log_of(s: &Store, j: i64, attempt: i64) -> String {
    String::from_utf8(s.read_log(j, attempt, 0, 1 << 20).await.unwrap().data).unwrap()
}

async fn finish_with_log(s: Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = s.with_log_dir(dir.path());
    let (_, ids) = build(&s, &[job("j", "", &[], 2), job("k", "", &[], 1)]).await;
    let (j, k) = (ids["j"], ids["k"]);
    assert_eq!(claim(&s, "a", "").await, Some((j, 1)));
    let a1 = AgentAttempt { job_id: j, attempt: 1, agent: "a" };
    s.append_log(a1, 0, b"hello ").await.unwrap();
    // A rest that overlaps what the server holds (a retried upload landed meanwhile): the held
    // bytes are skipped, the others stored, and the job finishes in the same call.
    let out = s.finish_job_with_log(a1, Some((3, b"lo world\n")), 12, JobStatus::Passed, Some(0), None).await.unwrap();
    assert!(!out.repeated && out.build_status == BuildStatus::Running, "k is still queued");
    assert_eq!(log_of(&s, j, 1).await, "hello world\n");
    assert_eq!(s.log_len(j, 1).await.unwrap(), 12);
    // A rest past what the server holds leaves a gap: refused, and nothing is recorded.
    assert_eq!(claim(&s, "b", "").await, Some((k, 1)));
    let b1 = AgentAttempt { job_id: k, attempt: 1, agent: "b" };
    let gap = s.finish_job_with_log(b1, Some((4, b"tail")), 8, JobStatus::Passed, Some(0), None).await;
    assert!(matches!(gap, Err(StoreError::Gap { expected: 0, got: 4 })), "{gap:?}");
    assert!(s.check_held(b1).await.is_ok(), "still running, still b's");
    assert_eq!(s.log_len(k, 1).await.unwrap(), 0);
    // Another agent cannot write the log of b's attempt through a finish.
    let other = s.finish_job_with_log(AgentAttempt { agent: "a", ..b1 }, Some((0, b"forged")), 6, JobStatus::Passed, Some(0), None).await;
    assert!(other.is_err() && s.log_len(k, 1).await.unwrap() == 0, "{other:?}");
    // A finish claiming more log than it and the server hold is refused.
    assert!(matches!(s.finish_job_with_log(b1, Some((0, b"half")), 8, JobStatus::Passed, Some(0), None).await, Err(StoreError::Conflict(_))));
    let done = s.finish_job_with_log(b1, Some((0, b"halfdone")), 8, JobStatus::Passed, Some(0), None).await.unwrap();
    assert!(done.build_finished && done.build_status == BuildStatus::Passed);
    assert_eq!(log_of(&s, k, 1).await, "halfdone");
    // A retried finish (its answer was lost) is recognised and writes nothing more.
    assert!(s.finish_job_with_log(b1, Some((0, b"XXXXXXXX")), 8, JobStatus::Passed, Some(0), None).await.unwrap().repeated);
    assert_eq!(log_of(&s, k, 1).await, "halfdone");
}

type Case = fn(Store) -> Pin<Box<dyn Future<Output = ()>>>;

/// Every case, by name.
const CASES: &[(&str, Case)] = &[
    ("claim takes the oldest ready job the labels match, once", |s| Box::pin(claim_order(s))),
    ("fencing: only the current attempt writes, and once", |s| Box::pin(fencing(s))),
    ("settle: a failure skips dependents and fails the build", |s| Box::pin(settle(s))),
    ("lease expiry requeues or errors by attempts left", |s| Box::pin(lease_expiry(s))),
    ("cancel ends queued jobs and flags running ones", |s| Box::pin(cancel(s))),
    ("requeue: a restarted agent's jobs run again", |s| Box::pin(requeue(s))),
    ("a claim whose agent lost its token takes nothing", |s| Box::pin(stale_token(s))),
    ("a finish carries the end of the log, fenced like an upload", |s| Box::pin(finish_with_log(s))),
    ("writes answer the rows and statuses they leave, and only the first one writes", |s| Box::pin(returned_rows(s))),
    ("a build cancelled before it got its jobs never gets them", |s| Box::pin(cancel_unexpanded(s))),
    ("a claim carries its project's secrets when its build gets them", |s| Box::pin(claim_secrets(s))),
    ("quiet builds are marked notified together, each only as it was read", |s| Box::pin(notified_together(s))),
    ("a finish tells whether some project's triggers name its project upstream", |s| Box::pin(named_upstream(s))),
    ("a build recorded to expand holds its lease from the start, and loses it when it runs out", |s| Box::pin(recorded_to_expand(s))),
    ("jobs of one build finishing at once end it, once", |s| Box::pin(finishing_at_once(s))),
    ("a big build's jobs are inserted in their order", |s| Box::pin(many_jobs_in_order(s))),
];

async fn returned_rows(s: Store) {
    let b = recorded(&s, "p", &Default::default(), false).await;
    // The row an insert returns is the row as read.
    assert_eq!(format!("{b:?}"), format!("{:?}", s.build(b.id).await.unwrap()));
    assert_eq!((b.project.as_str(), b.status.as_str(), b.materialized), ("p", "queued", false));
    // Taking the expansion reads a kv key in the same statement; a lease held refuses another.
    assert_eq!(s.take_expansion(b.id, LEASE, "meta:test").await.unwrap(), Some(None));
    assert_eq!(s.take_expansion(b.id, LEASE, "meta:test").await.unwrap(), None, "the lease is held");
    s.kv_set("meta:test", "v1").await.unwrap();
    let b2 = recorded(&s, "p", &Default::default(), false).await;
    assert_eq!(s.take_expansion(b2.id, LEASE, "meta:test").await.unwrap(), Some(Some("v1".into())), "the value as it is now");
    // Expanding answers the status; a second expansion (another server) writes nothing.
    assert_eq!(s.materialize_build(b.id, "c0ffee", "m", "a", true, &[job("j", "", &[], 1)]).await.unwrap(), Some(BuildStatus::Queued));
    assert_eq!(s.materialize_build(b.id, "c0ffee", "m", "a", true, &[job("k", "", &[], 1)]).await.unwrap(), None);
    assert_eq!(s.error_build(b.id, "c0ffee", "late").await.unwrap(), None);
    assert_eq!(s.jobs_of_build(b.id).await.unwrap().iter().map(|j| j.key.as_str()).collect::<Vec<_>>(), ["j"]);
    assert_eq!(s.build(b.id).await.unwrap().status, BuildStatus::Queued);
    assert_eq!(s.skip_build(b2.id, "c0ffee", "filtered").await.unwrap(), Some(BuildStatus::Skipped));
    assert_eq!(s.build(b2.id).await.unwrap().status, BuildStatus::Skipped);
}

async fn cancel_unexpanded(s: Store) {
    let b = recorded(&s, "p", &Default::default(), false).await;
    assert!(s.cancel(b.id, None).await.unwrap().is_empty());
    assert_eq!(s.build(b.id).await.unwrap().status, BuildStatus::Cancelled);
    assert_eq!(s.materialize_build(b.id, "c0ffee", "m", "a", true, &[job("j", "", &[], 1)]).await.unwrap(), None);
    assert!(s.jobs_of_build(b.id).await.unwrap().is_empty());
    assert_eq!(claim(&s, "a", "").await, None);
}

async fn claim_secrets(s: Store) {
    // Sealed at rest: the claim opens them.
    s.use_secret_key(kiln_store::SecretKey::generate());
    let settings = ProjectSettings { secrets: Some([("TOKEN".to_string(), "s3cret".to_string())].into()), ..Default::default() };
    for with_secrets in [true, false] {
        let b = recorded(&s, "sec", &settings, with_secrets).await;
        s.materialize_build(b.id, "c0ffee", "m", "a", true, &[job("j", "", &[], 1)]).await.unwrap();
        let c = s.claim(&agent(&s, "a", "").await, LEASE).await.unwrap().unwrap();
        assert_eq!(c.job.build_id, b.id);
        let want: Vec<(String, String)> = if with_secrets { vec![("TOKEN".into(), "s3cret".into())] } else { vec![] };
        assert_eq!((c.with_secrets, c.secrets), (with_secrets, want));
    }
}

async fn notified_together(s: Store) {
    let (b1, one) = build(&s, &[job("j", "", &[], 1)]).await;
    let (b2, two) = build(&s, &[job("j", "", &[], 1)]).await;
    let (b3, _) = build(&s, &[job("j", "", &[], 1)]).await;
    assert_eq!(claim(&s, "a", "").await, Some((one["j"], 1)));
    assert_eq!(claim(&s, "a", "").await, Some((two["j"], 1)));
    finish(&s, two["j"], 1, JobStatus::Passed, Some(0)).await.unwrap();
    let read = s.unnotified_builds(100).await.unwrap();
    let seen = |u: &[kiln_store::Unnotified]| u.iter().map(|u| (u.build_id, u.status)).collect::<Vec<_>>();
    assert_eq!(seen(&read), [(b1, BuildStatus::Running), (b2, BuildStatus::Passed)], "queued builds are not notified");
    // b1 moves on between the read and the mark: it stays to be notified of its new status.
    finish(&s, one["j"], 1, JobStatus::Failed, Some(1)).await.unwrap();
    s.mark_notified(&read).await.unwrap();
    assert_eq!(seen(&s.unnotified_builds(100).await.unwrap()), [(b1, BuildStatus::Failed)]);
    assert_eq!(s.build(b3).await.unwrap().status, BuildStatus::Queued);
}

async fn recorded_to_expand(s: Store) {
    let b = recorded(&s, "p", &Default::default(), false).await;
    let nb = new_build_of(&b);
    s.kv_set("meta:x", "v").await.unwrap();
    let (held, read) = s.create_build_to_expand(&nb, LEASE, "meta:x").await.unwrap();
    assert_eq!(read.as_deref(), Some("v"));
    assert_eq!(format!("{held:?}"), format!("{:?}", s.build(held.id).await.unwrap()));
    assert_eq!(s.take_expansion(held.id, LEASE, "").await.unwrap(), None, "its recorder holds the lease");
    // Its recorder died: once the lease runs out, any server takes the build over.
    let (lost, _) = s.create_build_to_expand(&nb, 1, "meta:x").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let due: Vec<i64> = s.expansions_due(LEASE).await.unwrap().iter().map(|b| b.id).collect();
    assert!(due.contains(&lost.id) && !due.contains(&held.id), "due {due:?}");
    assert!(s.take_expansion(lost.id, LEASE, "").await.unwrap().is_some());
}

async fn finishing_at_once(s: Store) {
    for round in 0..8 {
        let (b, ids) = build(&s, &[job("x", "", &[], 1), job("y", "", &[], 1), job("z", "", &[], 1)]).await;
        for (agent, key) in [("a", "x"), ("b", "y"), ("c", "z")] {
            assert_eq!(claim(&s, agent, "").await, Some((ids[key], 1)));
        }
        let end = |key: &'static str, status| {
            let (s, j) = (s.clone(), ids[key]);
            async move { finish(&s, j, 1, status, Some(0)).await.unwrap() }
        };
        let failed = if round % 2 == 0 { JobStatus::Passed } else { JobStatus::Failed };
        let (x, y, z) = tokio::join!(end("x", JobStatus::Passed), end("y", JobStatus::Passed), end("z", failed));
        let want = if round % 2 == 0 { BuildStatus::Passed } else { BuildStatus::Failed };
        assert_eq!([x.build_finished, y.build_finished, z.build_finished].iter().filter(|f| **f).count(), 1, "round {round}: one finish ends the build");
        assert_eq!(s.build(b).await.unwrap().status, want, "round {round}");
    }
}

async fn many_jobs_in_order(s: Store) {
    // More than one insert statement's worth, the last needing the first.
    let mut jobs: Vec<NewJob> = (0..1001).map(|i| job(&format!("j{i}"), "", &[], 1)).collect();
    jobs[1000].needs = vec!["j0".into()];
    let (b, _) = build(&s, &jobs).await;
    let stored = s.jobs_of_build(b).await.unwrap();
    assert_eq!(stored.iter().map(|j| j.key.clone()).collect::<Vec<_>>(), (0..1001).map(|i| format!("j{i}")).collect::<Vec<_>>());
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(stored.iter().filter(|j| j.ready).count(), 1000, "only the job with needs waits");
    assert_eq!(stored[1000].needs, ["j0"]);
}

/// A new build like `b`.
fn new_build_of(b: &BuildRow) -> NewBuild {
    NewBuild {
        project_id: b.project_id,
        branch: b.branch.clone(),
        requested_commit: b.requested_commit.clone(),
        trigger: b.trigger.clone(),
        triggered_by: b.triggered_by.clone(),
        upstream_build: b.upstream_build,
        before_commit: b.before_commit.clone(),
        changed_paths: b.changed_paths.clone(),
        with_secrets: b.with_secrets,
    }
}

async fn named_upstream(s: Store) {
    let prefix = kiln_store::TRIGGERS_PREFIX;
    // Keys outside the triggers' range, and triggers naming other projects, do not count.
    s.kv_set("down:1", r#"{"after":["p"]}"#).await.unwrap();
    s.kv_set(&format!("{prefix}41"), r#"{"after":["px","q"],"schedule":["0 * * * *"]}"#).await.unwrap();
    let mut named = Vec::new();
    for triggers in [None, Some(r#"{"after":["q","p"],"schedule":[]}"#)] {
        if let Some(t) = triggers {
            s.kv_set(&format!("{prefix}42"), t).await.unwrap();
        }
        let (_, ids) = build(&s, &[job("j", "", &[], 1)]).await;
        assert_eq!(claim(&s, "a", "").await, Some((ids["j"], 1)));
        let out = finish(&s, ids["j"], 1, JobStatus::Passed, Some(0)).await.unwrap();
        assert_eq!(out.build_status, BuildStatus::Passed);
        named.push(out.named_upstream);
    }
    assert_eq!(named, [false, true]);
}

#[tokio::test]
async fn queue_cases_on_sqlite() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        eprintln!("sqlite: {name}");
        case(sqlite(&dir).await).await;
    }
}

#[tokio::test]
async fn queue_cases_on_postgresql() {
    for (name, case) in CASES {
        let Some((store, _, _db)) = common::postgres("kiln_q_", "queue cases").await else { return };
        eprintln!("postgresql: {name}");
        case(store).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// However the jobs' requirements and the agents' labels fall, each claim takes the oldest
    /// unclaimed ready job whose requirements that agent's labels satisfy, and nothing else.
    #[test]
    fn claims_take_the_oldest_matching_job(
        reqs in proptest::collection::vec(proptest::collection::btree_map("[ab]", "[xy*]", 0..3), 1..24),
        agents in proptest::collection::vec(proptest::collection::btree_map("[ab]", "[xy]", 0..3), 1..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let s = sqlite(&dir).await;
            let jobs: Vec<NewJob> = reqs.iter().enumerate().map(|(i, r)| NewJob { requires: r.clone(), ..job(&format!("j{i}"), "", &[], 1) }).collect();
            let (_, ids) = build(&s, &jobs).await;
            let mut open: Vec<(i64, BTreeMap<String, String>)> = reqs.iter().enumerate().map(|(i, r)| (ids[&format!("j{i}")], r.clone())).collect();
            open.sort_by_key(|(id, _)| *id);
            // Agents take turns until none gets anything.
            loop {
                let mut any = false;
                for (n, l) in agents.iter().enumerate() {
                    let want = open.iter().position(|(_, r)| kiln_core::labels::matches(r, l));
                    let name = format!("agent{n}");
                    let token = hash_token(&format!("token-of-{name}"));
                    let spec = AgentSpec { name: &name, labels: l, concurrency: 1, heartbeat_secs: 10 };
                    let a = match s.agent_by_token(&token).await.unwrap() {
                        Some(a) => a,
                        None => s.enrol_agent(EnrolWith::ServerSecret, &spec, &token).await.unwrap().unwrap(),
                    };
                    let got = s.claim(&a, LEASE).await.unwrap().map(|c| c.job.id);
                    assert_eq!(got, want.map(|i| open[i].0), "agent {l:?}, open {open:?}");
                    if let Some(i) = want {
                        open.remove(i);
                        any = true;
                    }
                }
                if !any {
                    break;
                }
            }
        });
    }
}
