//! Benchmark (not a test): with 10,000 builds in one project, how long the
//! console's pages take to render server-side. Starts a real server on a free
//! loopback port with a temp SQLite database, inserts the builds directly, then
//! times each page over HTTP (median and 95th percentile of 50 requests). The
//! newest build also gets a sharded job's 10,000 test results (1,000 failing with
//! tracebacks, 100 flaky), for the build page and its test results.
//!
//! Run: `cargo bench -p kiln-server --bench console` (release build).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const BUILDS: i64 = 10_000;
const RUNS: usize = 50;

fn get(addr: &str, path: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let status = String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0);
    (status, buf.len())
}

async fn seed(db: &std::path::Path, project_id: i64) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display())).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    let t0 = kiln_store::now_ms() - BUILDS * 60_000;
    let statuses = ["passed", "passed", "passed", "failed", "passed", "errored", "passed", "cancelled"];
    let triggers = ["push", "push", "manual", "schedule", "upload", "webhook"];
    for i in 0..BUILDS {
        let created = t0 + i * 60_000;
        let branch = if i % 5 == 0 { format!("feature-{}", i % 40) } else { "main".to_string() };
        sqlx::query(
            "INSERT INTO builds (project_id, status, branch, commit_sha, message, author, trigger_kind, triggered_by, materialized, created_at, started_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11)",
        )
        .bind(project_id)
        .bind(statuses[(i % 8) as usize])
        .bind(branch)
        .bind(format!("{:040x}", i * 7919 + 12345))
        .bind(format!("Change number {i}: make the widget faster\n\nA longer body that the list does not show."))
        .bind("Dev Eloper <dev@example.com>")
        .bind(triggers[(i % 6) as usize])
        .bind("dev")
        .bind(created)
        .bind(created + 1_000)
        .bind(created + 1_000 + (i % 97) * 1_000)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// 10,000 test results of 4 shards of one job of build `build_id`: every 10th fails with a
/// ~2 KB traceback, every 100th failed once and passed on its retry (flaky).
async fn seed_tests(db: &std::path::Path, build_id: i64) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display())).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    let now = kiln_store::now_ms();
    let mut jobs = Vec::new();
    for shard in 1..=4 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (build_id, job_key, name, status, spec, requires, needs, max_attempts, created_at, started_at, finished_at) \
             VALUES ($1, $2, 'suite', 'failed', '{}', '{}', '[]', 1, $3, $3, $3) RETURNING id",
        )
        .bind(build_id)
        .bind(format!("suite [{shard}/4]"))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        jobs.push(id);
    }
    let trace = format!("Traceback (most recent call last):\n{}AssertionError: boom", "  File \"tests/test_x.py\", line 12, in test\n    assert compute() == expected\n".repeat(25));
    let insert = |job: i64, key: String, name: String, ms: i64, outcome: &'static str, msg: Option<String>, try_number: i64| {
        sqlx::query(
            "INSERT INTO test_results (build_id, job_id, attempt, report, group_key, test_key, suite, classname, name, duration_ms, outcome, message, try_number, created_at) \
             VALUES ($1, $2, 1, 'report.xml', 'suite', $3, 'pytest', 'tests.test_x', $4, $5, $6, $7, $8, $9)",
        )
        .bind(build_id)
        .bind(job)
        .bind(key)
        .bind(name)
        .bind(ms)
        .bind(outcome)
        .bind(msg)
        .bind(try_number)
        .bind(now)
    };
    for i in 0..10_000i64 {
        let (key, name, job) = (format!("tests/test_x.py::test_{i}"), format!("test_{i}"), jobs[(i % 4) as usize]);
        let ms = (i * 7919) % 3000;
        if i % 100 == 50 {
            insert(job, key.clone(), name.clone(), ms, "failed", Some(trace.clone()), 0).execute(&mut *tx).await.unwrap();
            insert(job, key, name, ms, "passed", None, 1).execute(&mut *tx).await.unwrap();
        } else if i % 10 == 3 {
            insert(job, key, name, ms, "failed", Some(trace.clone()), 0).execute(&mut *tx).await.unwrap();
        } else {
            insert(job, key, name, ms, "passed", None, 0).execute(&mut *tx).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
}

fn time(addr: &str, path: &str) -> (Duration, Duration, usize) {
    let (status, _) = get(addr, path); // warm up
    assert_eq!(status, 200, "GET {path}");
    let mut d: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut size = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let (s, n) = get(addr, path);
        d.push(t.elapsed());
        assert_eq!(s, 200);
        size = n;
    }
    d.sort();
    (d[RUNS / 2], d[RUNS * 95 / 100], size)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = kiln_server::config::ServerConfig {
        listen: "127.0.0.1:0".into(),
        data: dir.path().to_path_buf(),
        agent_token: Some("bench".into()),
        admin_token: Some("bench-admin".into()),
        admin_password: Some("bench-password".into()),
        ..Default::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let srv = rt.block_on(kiln_server::start(cfg, stop.clone())).unwrap();
    let p = rt
        .block_on(srv.state.store.create_project("bench", "/nonexistent/repo", "main", ".kiln.yml", kiln_wire::api::Visibility::Public, &Default::default()))
        .unwrap();
    let t = Instant::now();
    rt.block_on(seed(&dir.path().join("kiln.db"), p.id));
    println!("inserted {BUILDS} builds in {:.1}s", t.elapsed().as_secs_f64());
    rt.block_on(seed_tests(&dir.path().join("kiln.db"), BUILDS));
    let (b, tests) = (format!("/builds/{BUILDS}"), format!("/builds/{BUILDS}/tests"));
    let frag = format!("/builds/{BUILDS}?partial=1");
    let addr = srv.url.trim_start_matches("http://").to_string();
    let pages = [
        ("projects (home)", "/"),
        ("builds, page 1", "/projects/bench"),
        ("builds, page 100 (offset 4950)", "/projects/bench?page=100"),
        ("builds, last page", "/projects/bench?page=200"),
        ("builds, status=failed", "/projects/bench?status=failed"),
        ("builds, branch=feature-5", "/projects/bench?branch=feature-5"),
        ("builds, trigger=upload, page 10", "/projects/bench?trigger=upload&page=10"),
        ("builds, live fragment", "/projects/bench?partial=1"),
        ("test runs", "/runs"),
        ("a build with 10,000 tests", b.as_str()),
        ("  its test results (live fragment)", tests.as_str()),
        ("  its jobs (live fragment)", frag.as_str()),
        ("API builds list (50)", "/api/v1/projects/bench/builds"),
    ];
    println!("{:<36} {:>10} {:>10} {:>9}", "page", "median", "p95", "bytes");
    let mut worst = Duration::ZERO;
    for (name, path) in pages {
        let (med, p95, size) = time(&addr, path);
        if !path.starts_with("/api") {
            worst = worst.max(p95);
        }
        println!("{name:<36} {:>8.2}ms {:>8.2}ms {size:>9}", med.as_secs_f64() * 1e3, p95.as_secs_f64() * 1e3);
    }
    println!("slowest console page (p95) with {BUILDS} builds: {:.2} ms (target: 20 ms)", worst.as_secs_f64() * 1e3);
    stop.cancel();
}
