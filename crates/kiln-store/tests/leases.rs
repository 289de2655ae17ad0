//! Background duties held under leases (`take_duty`, what `kiln-server`'s `services::duties`
//! renews): one holder at a time, each duty on its own, the holder renewing, and another
//! server taking a duty over once its lease runs out. Each case is a row of a table run on
//! SQLite always and on PostgreSQL when one is reachable (required under ci/test).

use kiln_store::Store;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod common;

/// Long enough never to run out during a case.
const LEASE: i64 = 60_000;

/// Who holds duty `name` now, and until when (epoch ms).
async fn holder(s: &Store, name: &str) -> Option<(String, i64)> {
    s.duties().await.unwrap().into_iter().find(|d| d.0 == name).map(|d| (d.1, d.2))
}

/// Let a lease of 1 ms run out.
async fn run_out() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn one_holder_at_a_time(s: Store) {
    assert!(s.take_duty("reaper", "a", LEASE).await.unwrap(), "a duty nobody holds is taken");
    assert!(!s.take_duty("reaper", "b", LEASE).await.unwrap(), "a live lease refuses another server");
    assert_eq!(holder(&s, "reaper").await.map(|h| h.0).as_deref(), Some("a"), "a refused take changes nothing");
    // Each duty has its own lease: b may hold another one meanwhile.
    assert!(s.take_duty("cron", "b", LEASE).await.unwrap());
    assert!(!s.take_duty("cron", "a", LEASE).await.unwrap());
    let all = s.duties().await.unwrap();
    assert_eq!(all.iter().map(|d| (d.0.as_str(), d.1.as_str())).collect::<Vec<_>>(), [("cron", "b"), ("reaper", "a")]);
}

async fn the_holder_renews(s: Store) {
    assert!(s.take_duty("notifier", "a", 1).await.unwrap());
    let short = holder(&s, "notifier").await.unwrap().1;
    // A renewal pushes the lease forward: its holder keeps it…
    assert!(s.take_duty("notifier", "a", LEASE).await.unwrap(), "the holder renews its own lease");
    let (who, until) = holder(&s, "notifier").await.unwrap();
    assert_eq!(who, "a");
    assert!(until >= short + LEASE - 1_000, "the renewal moved the lease to {until}, not a lease past {short}");
    // …so it is still held once the first, short lease would have run out.
    run_out().await;
    assert!(!s.take_duty("notifier", "b", LEASE).await.unwrap(), "a renewed lease is not taken over");
    assert!(s.take_duty("notifier", "a", LEASE).await.unwrap());
}

async fn taken_over_when_it_runs_out(s: Store) {
    assert!(s.take_duty("retention", "a", 1).await.unwrap());
    run_out().await;
    // The holder stopped renewing (it died): the next server to ask takes the duty over…
    assert!(s.take_duty("retention", "b", LEASE).await.unwrap(), "a lease that ran out passes to another server");
    assert_eq!(holder(&s, "retention").await.map(|h| h.0).as_deref(), Some("b"));
    // …and the old holder, back, does not get it back while b renews.
    assert!(!s.take_duty("retention", "a", LEASE).await.unwrap(), "the old holder cannot take back a live lease");
    assert!(s.take_duty("retention", "b", LEASE).await.unwrap());
    assert_eq!(holder(&s, "retention").await.map(|h| h.0).as_deref(), Some("b"));
}

type Case = fn(Store) -> Pin<Box<dyn Future<Output = ()>>>;

/// Every case, by name.
const CASES: &[(&str, Case)] = &[
    ("a duty has one holder at a time, each duty its own", |s| Box::pin(one_holder_at_a_time(s))),
    ("the holder renews its lease and keeps the duty", |s| Box::pin(the_holder_renews(s))),
    ("a lease that runs out passes the duty to another server", |s| Box::pin(taken_over_when_it_runs_out(s))),
];

#[tokio::test]
async fn duty_cases_on_sqlite() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        eprintln!("sqlite: {name}");
        case(common::suites::sqlite(&dir).await).await;
    }
}

#[tokio::test]
async fn duty_cases_on_postgresql() {
    for (name, case) in CASES {
        let Some((store, _, _db)) = common::postgres("kiln_q_", "duty cases").await else { return };
        eprintln!("postgresql: {name}");
        case(store).await;
    }
}

/// Run this test binary's `duty_cases_on_postgresql` alone against a PostgreSQL that does not
/// answer (nothing listens on port 1), with `env` set and `CI`/`KILN_REQUIRE_POSTGRES` unset
/// otherwise: whether it passed, and what it printed.
fn without_postgresql(env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "duty_cases_on_postgresql", "--nocapture", "--test-threads", "1"])
        .env_remove("CI")
        .env_remove(common::REQUIRE_POSTGRES)
        .env("KILN_TEST_POSTGRES", "postgres://kiln:kiln@127.0.0.1:1/postgres")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_missing_postgresql_fails_under_ci_test_and_is_noted_elsewhere() {
    // ci/test sets KILN_REQUIRE_POSTGRES: the PostgreSQL cases fail, naming the way out.
    let (passed, text) = without_postgresql(&[(common::REQUIRE_POSTGRES, "1")]);
    assert!(!passed, "a required PostgreSQL that does not answer must fail the run:\n{text}");
    assert!(text.contains("run ci/setup-postgres.sh"), "{text}");
    // A developer's plain `cargo test` runs them on SQLite only, and says so.
    let (passed, text) = without_postgresql(&[]);
    assert!(passed, "{text}");
    assert!(text.contains("ran on SQLite only"), "{text}");
}
