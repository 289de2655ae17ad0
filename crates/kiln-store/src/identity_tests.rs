//! The store refuses every agent write about a job the agent does not hold in its current
//! attempt, and keeps agent names and enrolment limits — table-driven, on SQLite and, when
//! `KILN_TEST_POSTGRES` names a server (see ci/setup-postgres.sh), on PostgreSQL too.

use crate::*;
use std::collections::BTreeMap;

/// Drops the test's PostgreSQL database, its connections closed, when the test ends.
struct DropDatabase(Option<(String, String)>);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.0 {
            let _ = std::process::Command::new("psql").args([admin.as_str(), "-qc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")]).output();
        }
    }
}

/// A fresh SQLite store, and a fresh PostgreSQL database when one is configured (dropped with
/// the guard).
async fn stores(dir: &std::path::Path) -> (Vec<Store>, DropDatabase) {
    let mut out = vec![Store::open(&format!("sqlite:{}", dir.join("t.db").display())).await.unwrap()];
    let mut made = DropDatabase(None);
    if let Ok(admin) = std::env::var("KILN_TEST_POSTGRES") {
        sqlx::any::install_default_drivers();
        let name = format!("kiln_test_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::AnyPool::connect(&admin).await.expect("KILN_TEST_POSTGRES is reachable");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
        // Its log files go to the test's folder, not a `logs` folder where the test runs.
        out.push(Store::open(&format!("{}/{name}", admin.rsplit_once('/').unwrap().0)).await.unwrap().with_log_dir(dir.join("pg-logs")));
        pool.close().await;
        made = DropDatabase(Some((admin, name)));
    }
    (out, made)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn enrol(s: &Store, with: EnrolWith<'_>, name: &str, l: &BTreeMap<String, String>) -> Result<Option<AgentRow>> {
    s.enrol_agent(with, &AgentSpec { name, labels: l, concurrency: 1, heartbeat_secs: 10 }, &hash_token(&format!("token-of-{name}"))).await
}

/// A project `name` with one build of one ready job; the job's id.
async fn one_job(s: &Store, name: &str) -> i64 {
    let p = s.create_project(name, "/repo", "main", ".kiln.yml", kiln_wire::api::Visibility::Private, &Default::default()).await.unwrap();
    let nb = NewBuild {
        project_id: p.id,
        branch: "main".into(),
        requested_commit: None,
        trigger: "manual".into(),
        triggered_by: "t".into(),
        upstream_build: None,
        before_commit: None,
        changed_paths: None,
        with_secrets: false,
    };
    let b = s.create_build(&nb).await.unwrap();
    let job = NewJob { key: "j".into(), name: "j".into(), spec: "{}".into(), requires: BTreeMap::new(), needs: Vec::new(), max_attempts: 3 };
    s.materialize_build(b.id, "c0ffee", "m", "a", true, &[job]).await.unwrap();
    s.jobs_of_build(b.id).await.unwrap()[0].id
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Log,
    Finish,
    Release,
    ClaimTests,
    ListTests,
    Report,
    BatchDone,
    Artifact,
    Check,
}

const WRITES: [Write; 9] = [Write::Log, Write::Finish, Write::Release, Write::ClaimTests, Write::ListTests, Write::Report, Write::BatchDone, Write::Artifact, Write::Check];

async fn write(s: &Store, w: Write, job: i64, attempt: i64, agent: &str) -> Result<()> {
    let g = TestGroup { key: "j".into(), shards: 1, shard_index: 1, retries: 0 };
    let case = kiln_core::junit::TestCase {
        suite: "s".into(),
        classname: "c".into(),
        name: "forged".into(),
        file: None,
        duration_ms: 1,
        outcome: kiln_core::junit::Outcome::Passed,
        message: None,
    };
    let by = AgentAttempt { job_id: job, attempt, agent };
    match w {
        Write::Log => s.append_log(by, 0, b"forged\n").await.map(|_| ()),
        Write::Finish => s.finish_job(by, 0, kiln_core::state::JobStatus::Passed, Some(0), None).await.map(|_| ()),
        Write::Release => s.release_job(by).await.map(|_| ()),
        Write::ClaimTests => s.claim_tests(by, &g).await.map(|_| ()),
        Write::ListTests => s.upload_test_list(by, &g, Ok(vec!["t".into()]), false, &[]).await,
        Write::Report => s.store_test_report(by, None, "j", "r.xml", &[case]).await.map(|_| ()),
        Write::BatchDone => s.finish_test_batch(by, 1, Some(0)).await.map(|_| ()),
        Write::Artifact => s.record_artifact(by, "out.txt", 7, "00").await,
        Write::Check => s.check_held(by).await,
    }
}

#[tokio::test]
async fn only_the_holding_agent_writes_its_current_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _db) = stores(dir.path()).await;
    for s in stores {
        let job = one_job(&s, "p").await;
        let a1 = enrol(&s, EnrolWith::ServerSecret, "a1", &labels(&[])).await.unwrap().unwrap();
        enrol(&s, EnrolWith::ServerSecret, "a2", &labels(&[])).await.unwrap().unwrap();
        let c = s.claim(&a1, 60_000).await.unwrap().expect("a1 claims the job");
        assert_eq!((c.job.id, c.job.attempt), (job, 1));
        for w in WRITES {
            let e = write(&s, w, job, 1, "a2").await.expect_err("another agent's write");
            assert!(matches!(e, StoreError::NotHolder { .. }), "{w:?} by a2: {e:?}");
            let e = write(&s, w, job, 2, "a1").await.expect_err("a write for an attempt not begun");
            assert!(matches!(e, StoreError::Stale { .. }), "{w:?} at attempt 2: {e:?}");
            let e = write(&s, w, job, 1, "nobody").await.expect_err("an unknown agent's write");
            assert!(matches!(e, StoreError::NotHolder { .. }), "{w:?} by nobody: {e:?}");
        }
        let j = s.job(job).await.unwrap();
        assert_eq!((j.status.as_str(), j.attempt, j.agent_name.as_deref()), ("running", 1, Some("a1")), "nothing changed");
        assert_eq!(s.read_log(job, 1, 0, 1 << 20).await.unwrap().data, b"");
        assert!(s.build_test_results(j.build_id).await.unwrap().is_empty());
        assert!(s.artifacts_of_build(j.build_id).await.unwrap().is_empty());
        // The holder's own writes go through, and a finished job refuses the other agent's repeat.
        let (a1, a2) = (AgentAttempt { job_id: job, attempt: 1, agent: "a1" }, AgentAttempt { job_id: job, attempt: 1, agent: "a2" });
        let failed = kiln_core::state::JobStatus::Failed;
        assert_eq!(s.append_log(a1, 0, b"real\n").await.unwrap(), AppendOutcome::Stored(5));
        let e = s.finish_job(a1, 9, failed, Some(1), None).await.expect_err("log incomplete");
        assert!(e.to_string().contains("log incomplete"), "{e}");
        s.finish_job(a1, 5, failed, Some(1), None).await.unwrap();
        assert!(s.finish_job(a1, 5, failed, Some(1), None).await.unwrap().repeated);
        let e = s.finish_job(a2, 5, failed, Some(1), None).await.expect_err("a2 repeating a1's finish");
        assert!(matches!(e, StoreError::NotHolder { .. }), "{e:?}");
        assert!(matches!(s.append_log(a2, 0, b"real\n").await, Err(StoreError::NotHolder { .. })), "not even a duplicate answer");
        assert_eq!(s.job(job).await.unwrap().status, kiln_core::state::JobStatus::Failed);
    }
}

#[tokio::test]
async fn a_name_online_under_another_token_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _db) = stores(dir.path()).await;
    for s in stores {
        let job = one_job(&s, "p").await;
        let a1 = enrol(&s, EnrolWith::ServerSecret, "a1", &labels(&[])).await.unwrap().unwrap();
        s.claim(&a1, 60_000).await.unwrap().unwrap();
        let spec = AgentSpec { name: "a1", labels: &labels(&[]), concurrency: 1, heartbeat_secs: 10 };
        let e = s.enrol_agent(EnrolWith::ServerSecret, &spec, &hash_token("thief")).await.expect_err("online name");
        assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
        assert!(s.agent_by_token(&hash_token("thief")).await.unwrap().is_none());
        assert!(s.agent_by_token(&hash_token("token-of-a1")).await.unwrap().is_some(), "the owner keeps its token");
        assert_eq!(s.job(job).await.unwrap().agent_name.as_deref(), Some("a1"));
        // Its own token re-registers (a restart); a revoked agent's name is free again.
        assert!(s.reregister_agent(&hash_token("token-of-a1"), &spec).await.unwrap().is_some());
        s.revoke_agent("a1").await.unwrap();
        assert!(s.agent_by_token(&hash_token("token-of-a1")).await.unwrap().is_none());
        assert_eq!(s.job(job).await.unwrap().status, kiln_core::state::JobStatus::Queued, "a revoked agent's job runs again");
        assert!(s.enrol_agent(EnrolWith::ServerSecret, &spec, &hash_token("new")).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn enrolment_limits_labels_projects_and_uses() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _db) = stores(dir.path()).await;
    for s in stores {
        let other = one_job(&s, "other").await;
        let (e, secret) = s.create_enrolment("admin", &labels(&[("pool", "ci-*")]), &["mine".to_string()], Some(2)).await.unwrap();
        let h = hash_token(&secret);
        let with2 = EnrolWith::Secret(&h);
        let e1 = enrol(&s, with2, "l1", &labels(&[("pool", "prod")])).await.expect_err("labels outside the limit");
        assert!(matches!(e1, StoreError::Refused(_)), "{e1:?}");
        let a = enrol(&s, with2, "l2", &labels(&[("pool", "ci-1"), ("os", "linux")])).await.unwrap().expect("within the limit");
        assert_eq!((a.enrolment_id, a.project_limit.clone()), (Some(e.id), vec!["mine".to_string()]));
        assert!(s.claim(&a, 60_000).await.unwrap().is_none(), "job {other} of another project is never claimed");
        let mine = one_job(&s, "mine").await;
        assert_eq!(s.claim(&a, 60_000).await.unwrap().map(|c| c.job.id), Some(mine));
        // The refused registration spent no use; two uses in all.
        assert!(enrol(&s, with2, "l3", &labels(&[("pool", "ci-2")])).await.unwrap().is_some());
        assert!(enrol(&s, with2, "l4", &labels(&[("pool", "ci-3")])).await.unwrap().is_none(), "used up");
        let (e2, secret2) = s.create_enrolment("admin", &labels(&[]), &[], None).await.unwrap();
        s.revoke_enrolment(e2.id).await.unwrap();
        assert!(enrol(&s, EnrolWith::Secret(&hash_token(&secret2)), "l6", &labels(&[])).await.unwrap().is_none(), "revoked");
        let listed = s.list_enrolments().await.unwrap();
        assert_eq!((listed[0].used, listed[0].uses_left, listed[1].revoked_at.is_some()), (2, Some(0), true));
        assert!(enrol(&s, EnrolWith::Secret(&hash_token("unknown")), "l5", &labels(&[])).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_status_the_enums_do_not_know_is_an_error_not_a_string_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _db) = stores(dir.path()).await;
    for s in stores {
        let job = one_job(&s, "p").await;
        let build = s.job(job).await.unwrap().build_id;
        assert_eq!(s.job(job).await.unwrap().status, kiln_core::state::JobStatus::Queued);
        assert_eq!(s.build(build).await.unwrap().status, kiln_core::state::BuildStatus::Queued);
        sqlx::query("UPDATE jobs SET status = 'exploded' WHERE id = $1").bind(job).execute(s.pool()).await.unwrap();
        sqlx::query("UPDATE builds SET status = 'melted' WHERE id = $1").bind(build).execute(s.pool()).await.unwrap();
        let e = s.job(job).await.unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("\"exploded\"")), "{e:?}");
        let e = s.build(build).await.unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("\"melted\"")), "{e:?}");
    }
}

#[tokio::test]
async fn a_delivery_status_the_enum_does_not_know_is_an_error_not_a_string_passed_on() {
    use kiln_core::state::{BuildStatus, DeliveryStatus};
    let dir = tempfile::tempdir().unwrap();
    let (stores, _db) = stores(dir.path()).await;
    for s in stores {
        let job = one_job(&s, "p").await;
        let b = s.build(s.job(job).await.unwrap().build_id).await.unwrap();
        let n = crate::NewNotification { kind: "webhook".into(), target: "http://127.0.0.1:9/".into(), event: "build.started".into(), build_status: BuildStatus::Queued, payload: "{}".into() };
        assert!(s.enqueue_notifications(b.id, None, BuildStatus::Queued, &[n], None).await.unwrap());
        let rows = s.project_notifications(b.project_id, 10, 0).await.unwrap();
        assert_eq!(rows.iter().map(|r| (r.status, r.build_status)).collect::<Vec<_>>(), [(DeliveryStatus::Pending, BuildStatus::Queued)]);
        assert_eq!(s.unnotified_builds(10).await.unwrap().len(), 0, "its status is marked notified in the same write");
        sqlx::query("UPDATE notifications SET status = 'lost in the post'").execute(s.pool()).await.unwrap();
        let e = s.project_notifications(b.project_id, 10, 0).await.unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("\"lost in the post\"")), "{e:?}");
    }
}

#[tokio::test]
async fn the_bundled_sqlite_keeps_one_plan_per_statement_whatever_is_bound() {
    // Without SQLITE_ENABLE_QPSG (.cargo/config.toml), a statement with a bound LIMIT is parsed
    // and planned again at every run: the queue's claim query at every claim.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&format!("sqlite:{}", dir.path().join("k.db").display())).await.unwrap();
    let qpsg: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pragma_compile_options WHERE compile_options = 'ENABLE_QPSG'").fetch_one(s.pool()).await.unwrap();
    assert_eq!(qpsg, 1, "SQLite was built without SQLITE_ENABLE_QPSG: build kiln from its repository (.cargo/config.toml sets LIBSQLITE3_FLAGS)");
}

#[tokio::test]
async fn keys_with_a_prefix_are_exactly_those_that_start_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _db) = stores(dir.path()).await;
    for s in stores {
        // `;` follows `:`: the first key past the range, which must not be in it.
        for k in ["met", "meta", "meta:", "meta:1", "meta:22", "meta;", "meta;x", "metb", "n"] {
            s.kv_set(k, "v").await.unwrap();
        }
        let keys: Vec<String> = s.kv_prefixed("meta:").await.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["meta:", "meta:1", "meta:22"]);
    }
}
