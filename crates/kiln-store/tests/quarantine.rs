//! Quarantine's rows where they live: a finished build's runs recorded once (clean, flaky,
//! failed), changes recorded with their evidence and refused when nothing changes, and a build
//! that lists its tests while one is quarantined lets that test fail without failing its job.
//! Run on SQLite always and on PostgreSQL when one is reachable (`KILN_TEST_POSTGRES` as an
//! admin URL; under ci/test, or with CI set, a missing PostgreSQL fails the test).

use kiln_core::junit::Outcome;
use kiln_core::quarantine::{Cause, Change, Run, RunOutcome};
use kiln_store::{AgentAttempt, Store, TestGroup};

mod common;
use common::suites::{list, project, run_shard, sqlite, sqlite_url, start_build};

/// One build of project "p" with one `tests:` job (retries: 1) whose tests come out as `tries`
/// says, try by try (a test without more entries passes). Returns the build, the job and the
/// shard's verdict (failed, quarantined).
async fn run_build(s: &Store, tries: &[(&str, &[Outcome])]) -> (i64, i64, Vec<String>, Vec<String>) {
    let (b, held) = start_build(s, &["suite"]).await;
    let (job, attempt) = held[0];
    let by = AgentAttempt { job_id: job, attempt, agent: "suite" };
    let g = TestGroup { key: "suite".into(), shards: 1, shard_index: 1, retries: 1 };
    let ids: Vec<&str> = tries.iter().map(|t| t.0).collect();
    list(s, by, &g, &ids).await;
    let (failed, quarantined) = run_shard(s, by, &g, tries).await;
    (b, job, failed, quarantined)
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

/// Two `tests:` jobs of one build: group "a" lists before t_x is quarantined, group "b" after.
/// Each shard's verdict uses the quarantine its own group listed under.
async fn verdict_per_group(s: Store) {
    let p = project(&s).await;
    let (b, held) = start_build(&s, &["a", "b"]).await;
    let shard = |i: usize, key: &'static str| (AgentAttempt { job_id: held[i].0, attempt: held[i].1, agent: key }, TestGroup { key: key.into(), shards: 1, shard_index: 1, retries: 0 });
    let ((by_a, ga), (by_b, gb)) = (shard(0, "a"), shard(1, "b"));
    list(&s, by_a, &ga, &["t_x"]).await;
    assert!(s.change_quarantine(p, "t_x", Change::Quarantined, Cause::Manual, Some("mia"), "wobbles", &[]).await.unwrap().is_some());
    list(&s, by_b, &gb, &["t_x"]).await;
    assert_eq!(s.build_quarantined(b).await.unwrap(), vec![("b".to_string(), "t_x".to_string())]);
    assert_eq!(run_shard(&s, by_a, &ga, &[("t_x", FAIL)]).await, (vec!["t_x".to_string()], vec![]), "group a listed before the quarantine");
    assert_eq!(run_shard(&s, by_b, &gb, &[("t_x", FAIL)]).await, (vec![], vec!["t_x".to_string()]));
}

/// Deleting a build (retention) deletes its runs and that it was judged; the quarantine's
/// changes stay, naming the build.
async fn deleting_a_build_keeps_its_runs_as_evidence(s: Store, url: &str) {
    let (b1, _, _, _) = run_build(&s, &[("t_flaky", FLAKY)]).await;
    let (b2, _, _, _) = run_build(&s, &[("t_flaky", FLAKY)]).await;
    let p = project(&s).await;
    for b in [b1, b2] {
        s.record_test_runs(b).await.unwrap();
    }
    let evidence = s.test_runs(p, "t_flaky", None).await.unwrap();
    assert!(s.change_quarantine(p, "t_flaky", Change::Quarantined, Cause::Auto, None, "flaky", &evidence).await.unwrap().is_some());
    let before: Vec<i64> = s.test_runs(p, "t_flaky", None).await.unwrap().iter().map(|r| r.build_id).collect();
    assert_eq!(before.len(), 2);
    s.delete_build(b1).await.unwrap();
    // Retention keeping fewer builds than the window must not starve the quarantine's rules.
    assert_eq!(s.test_runs(p, "t_flaky", None).await.unwrap().iter().map(|r| r.build_id).collect::<Vec<_>>(), before);
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    let judged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quarantine_builds WHERE build_id = $1").bind(b1).fetch_one(&raw).await.unwrap();
    assert_eq!(judged, 0, "the build's judged mark is gone");
    assert_eq!(s.quarantine_changes(p, 10).await.unwrap()[0].builds, vec![b2, b1], "the change still names its evidence");
}

#[tokio::test]
async fn quarantine_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    runs_and_changes(sqlite(&dir).await).await;
    let dir = tempfile::tempdir().unwrap();
    verdict_per_group(sqlite(&dir).await).await;
    let dir = tempfile::tempdir().unwrap();
    deleting_a_build_keeps_its_runs_as_evidence(sqlite(&dir).await, &sqlite_url(&dir)).await;
}

#[tokio::test]
async fn quarantine_on_postgresql() {
    let pg = || common::postgres("kiln_qt_", "quarantine cases");
    let Some((store, _, _db)) = pg().await else { return };
    runs_and_changes(store).await;
    let Some((store, _, _db)) = pg().await else { return };
    verdict_per_group(store).await;
    let Some((store, url, _db)) = pg().await else { return };
    deleting_a_build_keeps_its_runs_as_evidence(store, &url).await;
}
