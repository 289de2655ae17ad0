//! A test queue seeded from an earlier build's list where it lives: while the first shard
//! lists, another claims from the seed; the list then drops the seed's tests it no longer names
//! (their results with them, failed or not) and queues the ones the seed lacked. Run on SQLite
//! always and on PostgreSQL when one is reachable (under ci/test, or with CI set, a missing
//! PostgreSQL fails the test).

use kiln_core::junit::{Outcome, TestCase};
use kiln_store::{AgentAttempt, Store, TestClaim, TestGroup};

mod common;
use common::suites::{list, run_shard, sqlite, start_build};

const FAIL: &[Outcome] = &[Outcome::Failed];

async fn seeded_from_the_last_list(s: Store) {
    // Build 1 lists a, b, c; b fails.
    let (b1, held) = start_build(&s, &["suite"]).await;
    let one = AgentAttempt { job_id: held[0].0, attempt: held[0].1, agent: "suite" };
    let g1 = TestGroup { key: "suite".into(), shards: 1, shard_index: 1, retries: 0 };
    list(&s, one, &g1, &["a", "b", "c"]).await;
    assert_eq!(run_shard(&s, one, &g1, &[("b", FAIL)]).await.0, vec!["b".to_string()]);

    // Build 2, two shards: the first lists; the queue is seeded from build 1 (b, which failed,
    // first); the second shard claims from the seed before the list comes.
    let (_, held) = start_build(&s, &["suite-1", "suite-2"]).await;
    let early = AgentAttempt { job_id: held[0].0, attempt: held[0].1, agent: "suite-1" }; // claims from the seed
    let lists = AgentAttempt { job_id: held[1].0, attempt: held[1].1, agent: "suite-2" };
    let g = |i| TestGroup { key: "suite".into(), shards: 2, shard_index: i, retries: 0 };
    assert_eq!(s.claim_tests(lists, &g(2)).await.unwrap(), TestClaim::List, "the first to claim lists");
    assert_eq!(s.claim_tests(early, &g(1)).await.unwrap(), TestClaim::Wait, "no seed yet: wait");
    assert_eq!(s.seed_test_queue(lists, &g(2)).await.unwrap(), Some(b1));
    let TestClaim::Batch { id, tests, .. } = s.claim_tests(early, &g(1)).await.unwrap() else { panic!("a batch from the seed") };
    assert_eq!(tests.first().map(String::as_str), Some("b"), "the last failure first: {tests:?}");
    // It runs its batch (b fails again) before the list comes.
    let cases: Vec<TestCase> = tests
        .iter()
        .map(|t| TestCase { suite: "s".into(), classname: String::new(), name: t.clone(), file: None, duration_ms: 5, outcome: if t == "b" { Outcome::Failed } else { Outcome::Passed }, message: None })
        .collect();
    s.store_test_report(early, Some(id), "suite", "r.xml", &cases).await.unwrap();
    s.finish_test_batch(early, id, Some(1)).await.unwrap();
    // A second seed (a new early after a crash) changes nothing.
    assert_eq!(s.seed_test_queue(lists, &g(2)).await.unwrap(), None);

    // The list: b has left the suite, d joined it.
    s.upload_test_list(lists, &g(2), Ok(vec!["a".into(), "c".into(), "d".into()]), false, &[]).await.unwrap();
    let (failed_1, _) = run_shard(&s, early, &g(1), &[]).await;
    let (failed_2, _) = run_shard(&s, lists, &g(2), &[]).await;
    assert!(failed_1.is_empty() && failed_2.is_empty(), "b's failure is not this build's: {failed_1:?} {failed_2:?}");
    let build = s.job(early.job_id).await.unwrap().build_id;
    let mut ran: Vec<String> = s.build_test_results(build).await.unwrap().into_iter().map(|r| r.key).collect();
    ran.sort();
    assert_eq!(ran, vec!["a", "c", "d"], "every listed test once, and only those");
}

#[tokio::test]
async fn seeded_queue_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    seeded_from_the_last_list(sqlite(&dir).await).await;
}

#[tokio::test]
async fn seeded_queue_on_postgresql() {
    let Some((store, _, _db)) = common::postgres("kiln_tq_", "seeded queue cases").await else { return };
    seeded_from_the_last_list(store).await;
}

/// A finished batch says whether any batch of its group still runs: the server wakes the shards
/// waiting for the last ones only then.
async fn the_last_batch_to_finish_says_none_runs(s: Store) {
    let (_, held) = start_build(&s, &["t-1", "t-2"]).await;
    let one = AgentAttempt { job_id: held[0].0, attempt: held[0].1, agent: "t-1" };
    let two = AgentAttempt { job_id: held[1].0, attempt: held[1].1, agent: "t-2" };
    let g = |i| TestGroup { key: "t".into(), shards: 2, shard_index: i, retries: 0 };
    let ids: Vec<String> = (0..40).map(|i| format!("test_{i:02}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    list(&s, one, &g(1), &ids).await;
    // Nothing known: one batch per shard, half the tests each.
    let TestClaim::Batch { id: first, .. } = s.claim_tests(one, &g(1)).await.unwrap() else { panic!("a batch for shard 1") };
    let TestClaim::Batch { id: second, .. } = s.claim_tests(two, &g(2)).await.unwrap() else { panic!("a batch for shard 2") };
    assert!(!s.finish_test_batch(one, first, Some(0)).await.unwrap().none_running, "shard 2's batch still runs");
    assert!(s.finish_test_batch(two, second, Some(0)).await.unwrap().none_running, "the last batch is over");
}

#[tokio::test]
async fn last_batch_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    the_last_batch_to_finish_says_none_runs(sqlite(&dir).await).await;
}

#[tokio::test]
async fn last_batch_on_postgresql() {
    let Some((store, _, _db)) = common::postgres("kiln_tq_", "last batch cases").await else { return };
    the_last_batch_to_finish_says_none_runs(store).await;
}
