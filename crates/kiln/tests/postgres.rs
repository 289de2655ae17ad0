//! The store on a real PostgreSQL server (started by ci/setup-postgres.sh): the
//! same builds as on SQLite, a restart mid-build, and two servers sharing one
//! database — a build queued on one is taken at once by agents of the other
//! (LISTEN/NOTIFY), and both pollers build a new commit once.

mod common;
use common::pg::{fresh_database, Reaped};
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn builds_run_on_postgresql_and_survive_a_server_restart() {
    let pg_db = fresh_database();
    let db = pg_db.url.clone();
    let mut k = Kiln::start_with(&["--database", &db]);
    k.agent("a1", &[]);
    k.agent("a2", &["--label", "python=3.12"]);
    let repo = k.repo(
        "pg",
        "jobs:\n  build:\n    steps:\n      - for i in $(seq 1 30); do echo \"line-$i\"; sleep 0.05; done\n  test:\n    needs: [build]\n    requires: { python: \"3.12\" }\n    steps: [\"echo on-$KILN_AGENT_NAME\", \"exit 4\"]\n  after:\n    needs: [test]\n    steps: [echo never]\n",
    );
    k.add_project("pg", &repo, &[]);
    let id = k.trigger("pg");
    k.wait_for("the build to start", 10, || Kiln::job(&k.build(id), "build")["status"] == "running");
    k.kill_server();
    k.restart_server();
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "failed");
    assert_eq!(Kiln::job(&b, "build")["status"], "passed");
    assert_eq!((Kiln::job(&b, "test")["status"].as_str(), Kiln::job(&b, "test")["exit_code"].as_i64()), (Some("failed"), Some(4)));
    assert_eq!(Kiln::job(&b, "test")["agent"], "a2");
    assert_eq!(Kiln::job(&b, "after")["status"], "skipped");
    let logs = k.logs(id);
    let lines: Vec<&str> = logs.lines().filter(|l| l.starts_with("line-")).collect();
    assert_eq!(lines, (1..=30).map(|i| format!("line-{i}")).collect::<Vec<_>>());
    assert!(logs.contains("on-a2"));
}

#[test]
fn two_servers_share_one_queue() {
    let pg_db = fresh_database();
    let db = pg_db.url.clone();
    // Logs live in files: the servers of one database share the files folder.
    let files = tempfile::tempdir().unwrap();
    let files = files.path().to_str().unwrap().to_string();
    let mut k = Kiln::start_with(&["--database", &db, "--files", &files]);
    let (b_child, b_url) = spawn_server(&k.path("data-b"), "127.0.0.1:0", &["--database".into(), db.clone(), "--files".into(), files.clone()]);
    let _b = Reaped(b_child);
    k.agent("a1", &[]);
    let repo = k.repo("shared", "jobs:\n  j:\n    steps: [echo shared]\n");
    k.add_project("shared", &repo, &["--poll", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    // Queue a build through server B: the agent, long-polling server A, takes it at once.
    let on_b = |args: &[&str]| {
        Command::new(BIN).args(args).env("KILN_SERVER", &b_url).env("KILN_TOKEN", ADMIN).output().unwrap()
    };
    let out = on_b(&["trigger", "shared", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"].as_i64().unwrap();
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed");
    let created = chrono::DateTime::parse_from_rfc3339(b["created_at"].as_str().unwrap()).unwrap();
    let started = chrono::DateTime::parse_from_rfc3339(Kiln::job(&b, "j")["started_at"].as_str().unwrap()).unwrap();
    // Without a wake-up across servers the agent would wait out its 25 s long poll.
    assert!((started - created).num_seconds() < 10, "the job waited {}s for a wake-up", (started - created).num_seconds());
    // The agent sent its log to server A; server B reads it from the shared folder.
    let logs = on_b(&["logs", &id.to_string()]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("\nshared\n"), "{}", String::from_utf8_lossy(&logs.stdout));
    // Both servers poll the repository: a new commit builds once.
    std::fs::write(repo.join("f"), "1").unwrap();
    let sha = commit_all(&repo, "polled by two servers");
    k.wait_for("a build of the new commit", 15, || builds(&k, "shared").iter().any(|b| b["commit"] == sha.as_str()));
    std::thread::sleep(Duration::from_secs(3));
    let n = builds(&k, "shared").iter().filter(|b| b["commit"] == sha.as_str()).count();
    assert_eq!(n, 1, "two servers polling one database built the commit {n} times");
}

#[test]
fn sharded_tests_and_their_results_on_postgresql() {
    let pg_db = fresh_database();
    let db = pg_db.url.clone();
    let mut k = Kiln::start_with(&["--database", &db]);
    k.agent("s1", &[]);
    k.agent("s2", &[]);
    let run = r#"for t in "$@"; do if [ "$t" = t3 ]; then r='<failure message="t3 broke">boom</failure>'; else r=''; fi; echo "<testcase classname=\"suite\" name=\"$t\" time=\"0.01\">$r</testcase>"; done > body; { echo '<testsuite name="suite">'; cat body; echo '</testsuite>'; } > "$KILN_JUNIT_DIR/r-$$.xml""#;
    let repo = k.repo("pgtests", "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: \"printf 't1\\\\nt2\\\\nt3\\\\nt4\\\\nt5\\\\nt6\\\\n'\"\n      run: sh run.sh {tests}\n");
    std::fs::write(repo.join("run.sh"), run).unwrap();
    commit_all(&repo, "runner");
    k.add_project("pgtests", &repo, &["--public"]);
    assert_eq!(k.kiln(&["trigger", "pgtests", "--wait"]).status.code(), Some(1));
    let id = builds(&k, "pgtests")[0]["id"].as_i64().unwrap();
    let out = String::from_utf8_lossy(&k.kiln(&["show", &id.to_string(), "--tests"]).stdout).into_owned();
    for t in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        assert!(out.contains(t), "{t} missing from {out}");
    }
    assert!(out.contains("t3 broke"), "{out}");
    let b = k.build(id);
    assert_eq!((b["tests"]["total"].as_i64(), b["tests"]["failed"].as_i64()), (Some(6), Some(1)), "{b:#}");
    assert!(b["first_failure_ms"].as_u64().is_some(), "the time to the first failure, on PostgreSQL: {b:#}");
    // The next build judges this one for quarantine on PostgreSQL (t3 failed: no flaky run).
    assert_eq!(k.kiln(&["trigger", "pgtests", "--wait"]).status.code(), Some(1));
    let f = k.json(&["tests", "pgtests", "--flakiest"]);
    assert_eq!(f["quarantine"]["quarantined"], serde_json::json!([]), "{f:#}");
    assert!(k.kiln(&["tests", "quarantine", "pgtests", "t3"]).status.success());
    assert_eq!(k.json(&["tests", "pgtests", "--flakiest"])["quarantine"]["quarantined"], serde_json::json!(["t3"]));
    // Quarantined, t3's failure no longer fails the build.
    assert_eq!(k.kiln(&["trigger", "pgtests", "--wait"]).status.code(), Some(0));
    let page = http("GET", &format!("{}/builds/{id}", k.url), &[], b"");
    assert_eq!(page.0, 200);
    assert!(page.1.contains("t3 broke") || page.1.contains("id=\"tests\""), "the build page renders on PostgreSQL");
}

/// Logs an older kiln kept in `log_chunks` rows on PostgreSQL move into the log files at start
/// and read back whole; the rows go.
#[test]
fn old_logs_in_the_database_are_readable_after_upgrade_on_postgresql() {
    let pg_db = fresh_database();
    let db = pg_db.url.clone();
    let mut k = Kiln::start_with(&["--database", &db]);
    k.agent("a1", &[]);
    let repo = k.repo("oldpg", "jobs:\n  a:\n    steps: [\"for i in $(seq 1 3000); do echo A-line-$i; done\"]\n");
    k.add_project("oldpg", &repo, &[]);
    let id = k.trigger("oldpg");
    let b = k.wait_build(id, 120);
    assert_eq!(b["status"], "passed", "{b}");
    let job = Kiln::job(&b, "a")["id"].as_i64().unwrap();
    let raw = |k: &Kiln| http("GET", &format!("{}/api/v1/jobs/{job}/raw?attempt=1", k.url), &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    let (status, log) = raw(&k);
    assert_eq!(status, 200);
    assert!(log.contains("A-line-3000\n"), "{log}");
    k.kill_server();
    // What an older kiln left: the log as rows by byte offset, no files.
    std::fs::remove_dir_all(k.path("data").join("logs").join(job.to_string())).unwrap();
    let bytes = log.as_bytes();
    let size = bytes.len() / 3 + 1;
    let mut sql = String::from("BEGIN;");
    for (i, chunk) in bytes.chunks(size).enumerate() {
        let hex: String = chunk.iter().map(|c| format!("{c:02x}")).collect();
        sql.push_str(&format!("INSERT INTO log_chunks (job_id, attempt, pos, data) VALUES ({job}, 1, {}, decode('{hex}', 'hex'));", i * size));
    }
    sql.push_str("COMMIT;");
    let psql = |sql: &str| {
        let out = Command::new("psql").args([db.as_str(), "-qtAc", sql]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    psql(&sql);
    assert_eq!(psql("SELECT COUNT(*) FROM log_chunks"), "3");
    k.restart_server();
    k.wait_for("the server", 20, || http("GET", &format!("{}/login", k.url), &[], b"").0 == 200);
    assert_eq!(raw(&k).1, log, "the old log reads back whole");
    assert_eq!(psql("SELECT COUNT(*) FROM log_chunks"), "0", "the rows are gone once moved");
}
