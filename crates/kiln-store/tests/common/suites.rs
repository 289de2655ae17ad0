//! A project "p" on a store, builds of it with `tests:` jobs claimed by agents, and shards that
//! list and run their batches: the steps the store's test-queue and quarantine cases share.
#![allow(dead_code)] // each test binary uses some of them

use kiln_core::junit::{Outcome, TestCase};
use kiln_core::state::JobStatus;
use kiln_store::{hash_token, AgentAttempt, AgentSpec, EnrolWith, NewBuild, NewJob, Store, TestClaim, TestGroup};
use std::collections::{BTreeMap, HashMap};

pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite:{}", dir.path().join("q.db").display())
}

pub async fn sqlite(dir: &tempfile::TempDir) -> Store {
    Store::open(&sqlite_url(dir)).await.unwrap()
}

/// Project "p", made the first time.
pub async fn project(s: &Store) -> i64 {
    match s.project_by_name("p").await {
        Ok(p) => p.id,
        Err(_) => s.create_project("p", "/repo", "main", ".kiln.yml", kiln_wire::api::Visibility::Public, &Default::default()).await.unwrap().id,
    }
}

/// A build of `project_id`'s main branch started by hand.
pub fn manual_build(project_id: i64, with_secrets: bool) -> NewBuild {
    NewBuild {
        project_id,
        branch: "main".into(),
        requested_commit: None,
        trigger: "manual".into(),
        triggered_by: "test".into(),
        upstream_build: None,
        before_commit: None,
        changed_paths: None,
        with_secrets,
    }
}

/// A build of project "p" on main with a job per key, each claimed by its own agent (named as
/// the job): the build and each job's attempt.
pub async fn start_build(s: &Store, keys: &[&str]) -> (i64, Vec<(i64, i64)>) {
    let b = s.create_build(&manual_build(project(s).await, false)).await.unwrap();
    let jobs: Vec<NewJob> =
        keys.iter().map(|k| NewJob { key: k.to_string(), name: k.to_string(), spec: "{}".into(), requires: BTreeMap::new(), needs: vec![], max_attempts: 1 }).collect();
    s.materialize_build(b.id, "c0ffee", "m", "a", true, &jobs).await.unwrap();
    let mut held = Vec::new();
    for k in keys {
        let labels = BTreeMap::new();
        let token = hash_token(&format!("token-of-{k}"));
        let spec = AgentSpec { name: k, labels: &labels, concurrency: 1, heartbeat_secs: 10 };
        let agent = match s.agent_by_token(&token).await.unwrap() {
            Some(a) => a,
            None => s.enrol_agent(EnrolWith::ServerSecret, &spec, &token).await.unwrap().unwrap(),
        };
        let c = s.claim(&agent, 60_000).await.unwrap().expect("the job is claimed");
        held.push((c.job.id, c.job.attempt));
    }
    (b.id, held)
}

/// Run a shard's batches until its verdict, its tests coming out as `tries` says, try by try
/// (a test without more entries passes); then finish its job. Returns (failed, quarantined).
pub async fn run_shard(s: &Store, by: AgentAttempt<'_>, g: &TestGroup, tries: &[(&str, &[Outcome])]) -> (Vec<String>, Vec<String>) {
    let mut tried: HashMap<String, usize> = HashMap::new();
    let (failed, quarantined) = loop {
        match s.claim_tests(by, g).await.unwrap() {
            TestClaim::Batch { id, tests, .. } => {
                let cases: Vec<TestCase> = tests
                    .iter()
                    .map(|t| {
                        let n = tried.entry(t.clone()).or_default();
                        let outcome = tries.iter().find(|x| x.0 == t).and_then(|x| x.1.get(*n).copied()).unwrap_or(Outcome::Passed);
                        *n += 1;
                        TestCase { suite: "s".into(), classname: String::new(), name: t.clone(), file: None, duration_ms: 5, outcome, message: None }
                    })
                    .collect();
                s.store_test_report(by, Some(id), &g.key, &format!("batch-{id}.xml"), &cases).await.unwrap();
                s.finish_test_batch(by, id, Some(0)).await.unwrap();
            }
            TestClaim::Done { failed, quarantined, .. } => break (failed, quarantined),
            other => panic!("unexpected claim answer {other:?}"),
        }
    };
    let status = if failed.is_empty() { JobStatus::Passed } else { JobStatus::Failed };
    s.finish_job(by, 0, status, Some(0), None).await.unwrap();
    (failed, quarantined)
}

/// Have a shard list `ids` (it is the first to claim its group).
pub async fn list(s: &Store, by: AgentAttempt<'_>, g: &TestGroup, ids: &[&str]) {
    assert_eq!(s.claim_tests(by, g).await.unwrap(), TestClaim::List);
    s.upload_test_list(by, g, Ok(ids.iter().map(|i| i.to_string()).collect()), false, &[]).await.unwrap();
}
