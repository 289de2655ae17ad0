//! Quarantine's rows where they live: a finished build's runs recorded once (clean, flaky,
//! failed), changes recorded with their evidence and refused when nothing changes, and a build
//! that lists its tests while one is quarantined lets that test fail without failing its job.
//! Run on SQLite always and on PostgreSQL when one is reachable (`KILN_TEST_POSTGRES` as an
//! admin URL; under CI a missing PostgreSQL fails the test).

use kiln_core::junit::{Outcome, TestCase};
use kiln_core::quarantine::{Cause, Change, Run, RunOutcome};
use kiln_core::state::JobStatus;
use kiln_store::{hash_token, AgentAttempt, AgentSpec, EnrolWith, NewBuild, NewJob, Store, TestClaim, TestGroup};
use std::collections::{BTreeMap, HashMap};

const ADMIN_URL: &str = "postgres://kiln:kiln@127.0.0.1:5432/postgres";

async fn sqlite(dir: &tempfile::TempDir) -> Store {
    Store::open(&format!("sqlite:{}", dir.path().join("q.db").display())).await.unwrap()
}

/// A fresh PostgreSQL database, or None outside CI when no server answers.
async fn postgres() -> Option<Store> {
    let admin = std::env::var("KILN_TEST_POSTGRES").unwrap_or_else(|_| ADMIN_URL.to_string());
    let name = format!("kiln_qt_{}", uuid::Uuid::new_v4().simple());
    let made = std::process::Command::new("psql").args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")]).output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        let why = match &made {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL is needed under CI ({why}): run ci/setup-postgres.sh");
        eprintln!("no PostgreSQL at {admin} ({why}): the quarantine cases ran on SQLite only");
        return None;
    }
    Some(Store::open(&format!("{}/{name}", admin.rsplit_once('/').unwrap().0)).await.unwrap())
}

/// One build of project "p" with one `tests:` job (retries: 1) whose tests come out as `tries`
/// says, try by try (a test without more entries passes). Returns the build, the job and the
/// shard's verdict (failed, quarantined).
async fn run_build(s: &Store, tries: &[(&str, &[Outcome])]) -> (i64, i64, Vec<String>, Vec<String>) {
    let p = match s.project_by_name("p").await {
        Ok(p) => p,
        Err(_) => s.create_project("p", "/repo", "main", ".kiln.yml", kiln_wire::api::Visibility::Public, &Default::default()).await.unwrap(),
    };
    let nb = NewBuild {
        project_id: p.id,
        branch: "main".into(),
        requested_commit: None,
        trigger: "manual".into(),
        triggered_by: "test".into(),
        upstream_build: None,
        before_commit: None,
        changed_paths: None,
        with_secrets: false,
    };
    let b = s.create_build(&nb).await.unwrap();
    let job = NewJob { key: "suite".into(), name: "suite".into(), spec: "{}".into(), requires: BTreeMap::new(), needs: vec![], max_attempts: 1 };
    s.materialize_build(b.id, "c0ffee", "m", "a", &[job]).await.unwrap();
    let labels = BTreeMap::new();
    let token = hash_token("token-of-a");
    let spec = AgentSpec { name: "a", labels: &labels, concurrency: 1, heartbeat_secs: 10 };
    let agent = match s.agent_by_token(&token).await.unwrap() {
        Some(a) => a,
        None => s.enrol_agent(EnrolWith::ServerSecret, &spec, &token).await.unwrap().unwrap(),
    };
    let c = s.claim(&agent, 60_000).await.unwrap().expect("the job is claimed");
    let by = AgentAttempt { job_id: c.job.id, attempt: c.job.attempt, agent: "a" };
    let g = TestGroup { key: "suite".into(), shards: 1, shard_index: 1, retries: 1 };
    assert_eq!(s.claim_tests(by, &g).await.unwrap(), TestClaim::List);
    let ids: Vec<String> = tries.iter().map(|t| t.0.to_string()).collect();
    s.upload_test_list(by, &g, Ok(ids), false, &[]).await.unwrap();
    let mut tried: HashMap<String, usize> = HashMap::new();
    let (failed, quarantined) = loop {
        match s.claim_tests(by, &g).await.unwrap() {
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
                s.store_test_report(by, Some(id), "suite", &format!("batch-{id}.xml"), &cases).await.unwrap();
                s.finish_test_batch(by, id, Some(0)).await.unwrap();
            }
            TestClaim::Done { failed, quarantined, .. } => break (failed, quarantined),
            other => panic!("unexpected claim answer {other:?}"),
        }
    };
    let status = if failed.is_empty() { JobStatus::Passed } else { JobStatus::Failed };
    s.finish_job(by, 0, status, Some(0), None).await.unwrap();
    (b.id, c.job.id, failed, quarantined)
}

const PASS: &[Outcome] = &[Outcome::Passed];
const FLAKY: &[Outcome] = &[Outcome::Failed, Outcome::Passed];
const FAIL: &[Outcome] = &[Outcome::Failed, Outcome::Failed];

async fn runs_and_changes(s: Store) {
    let (b1, j1, failed, _) = run_build(&s, &[("t_flaky", FLAKY), ("t_ok", PASS), ("t_bad", FAIL)]).await;
    assert_eq!(failed, vec!["t_bad".to_string()]);
    let p = s.project_by_name("p").await.unwrap().id;
    assert_eq!(s.unjudged_builds(p).await.unwrap(), vec![b1]);
    let mut keys = s.record_test_runs(b1).await.unwrap().expect("recorded the first time");
    keys.sort();
    assert_eq!(keys, vec!["t_bad", "t_flaky", "t_ok"]);
    assert_eq!(s.record_test_runs(b1).await.unwrap(), None, "a build's runs are recorded once");
    assert!(s.unjudged_builds(p).await.unwrap().is_empty());
    let run = |k: &str| {
        let s = s.clone();
        let k = k.to_string();
        async move { s.test_runs(p, &k, None).await.unwrap() }
    };
    assert_eq!(run("t_flaky").await, vec![Run { build_id: b1, job_id: j1, outcome: RunOutcome::Flaky }]);
    assert_eq!(run("t_ok").await[0].outcome, RunOutcome::Clean);
    assert_eq!(run("t_bad").await[0].outcome, RunOutcome::Failed);

    // Quarantine with evidence; again is refused (nothing recorded).
    let evidence = run("t_flaky").await;
    let id = s.change_quarantine(p, "t_flaky", Change::Quarantined, Cause::Auto, None, "flaky in 1 of its last 1 runs", &evidence).await.unwrap();
    assert!(id.is_some());
    assert_eq!(s.change_quarantine(p, "t_flaky", Change::Quarantined, Cause::Manual, Some("mia"), "again", &[]).await.unwrap(), None);
    assert_eq!(s.change_quarantine(p, "t_ok", Change::Released, Cause::Manual, Some("mia"), "not held", &[]).await.unwrap(), None);
    let held = s.quarantined_tests(p).await.unwrap();
    assert_eq!(held.iter().map(|q| q.test_key.as_str()).collect::<Vec<_>>(), vec!["t_flaky"]);
    assert_eq!(Some(held[0].change_id), id);
    let ch = s.quarantine_changes(p, 10).await.unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!((ch[0].change, ch[0].cause, ch[0].by.as_deref()), (Change::Quarantined, Cause::Auto, None));
    assert_eq!((ch[0].builds.clone(), ch[0].jobs.clone()), (vec![b1], vec![j1]));

    // The next build lists while t_flaky is quarantined: its failure does not fail the job,
    // t_bad's still does; the build remembers what was quarantined for it.
    let (b2, _, failed, quarantined) = run_build(&s, &[("t_flaky", FAIL), ("t_bad", FAIL)]).await;
    assert_eq!(failed, vec!["t_bad".to_string()]);
    assert_eq!(quarantined, vec!["t_flaky".to_string()]);
    assert_eq!(s.build_quarantined(b2).await.unwrap(), vec![("suite".to_string(), "t_flaky".to_string())]);
    let (_, _, failed, quarantined) = run_build(&s, &[("t_flaky", FAIL)]).await;
    assert!(failed.is_empty(), "only a quarantined test failed: the job passes");
    assert_eq!(quarantined, vec!["t_flaky".to_string()]);
    for b in s.unjudged_builds(p).await.unwrap() {
        s.record_test_runs(b).await.unwrap();
    }
    // Runs newest first; those since the quarantine leave out its last run before.
    assert_eq!(held[0].after_build, b1);
    let after: Vec<RunOutcome> = s.test_runs(p, "t_flaky", Some(held[0].after_build)).await.unwrap().iter().map(|r| r.outcome).collect();
    assert_eq!(after, vec![RunOutcome::Failed, RunOutcome::Failed]);
    assert_eq!(run("t_flaky").await.len(), 3);

    // Released by hand, by whom, recorded newest first.
    assert!(s.change_quarantine(p, "t_flaky", Change::Released, Cause::Manual, Some("mia"), "fixed", &[]).await.unwrap().is_some());
    assert!(s.quarantined_tests(p).await.unwrap().is_empty());
    let ch = s.quarantine_changes(p, 10).await.unwrap();
    assert_eq!((ch[0].change, ch[0].cause, ch[0].by.as_deref(), ch[0].reason.as_str()), (Change::Released, Cause::Manual, Some("mia"), "fixed"));
    let (_, _, failed, _) = run_build(&s, &[("t_flaky", FAIL)]).await;
    assert_eq!(failed, vec!["t_flaky".to_string()], "released: its failure fails the job again");
}

#[tokio::test]
async fn quarantine_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    runs_and_changes(sqlite(&dir).await).await;
}

#[tokio::test]
async fn quarantine_on_postgresql() {
    let Some(store) = postgres().await else { return };
    runs_and_changes(store).await;
}
