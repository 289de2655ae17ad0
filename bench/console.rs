//! Benchmark (not a test): with 10,000 builds in one project, how long the
//! console's pages take to render server-side. Starts a real server on a free
//! loopback port with a temp SQLite database, inserts the builds directly, then
//! times each page over HTTP (median and 95th percentile of 50 requests).
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
        .block_on(srv.state.store.create_project("bench", "/nonexistent/repo", "main", ".kiln.yml", true, &Default::default()))
        .unwrap();
    let t = Instant::now();
    rt.block_on(seed(&dir.path().join("kiln.db"), p.id));
    println!("inserted {BUILDS} builds in {:.1}s", t.elapsed().as_secs_f64());
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
