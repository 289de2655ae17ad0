//! A big log end to end (BIGLOG_MB, default 200 MB): every byte kept head to tail, server
//! and agent memory bounded while it is written and read (their RSS sampled throughout), a
//! byte range, the tail (`Range: bytes=-N` and `kiln logs --tail`), a streamed download,
//! search counts, a line's offset, and the log stream resuming from `Last-Event-ID`.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn rss_mb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) / 1024
}

fn get(k: &Kiln, path: &str, headers: &[(&str, &str)]) -> http::Resp {
    let auth = format!("Bearer {ADMIN}");
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(headers);
    http::send(&k.url, "GET", path, &h, b"", false)
}

#[test]
fn a_200_mb_log_is_kept_whole_and_read_in_bounded_memory() {
    let mb: u64 = std::env::var("BIGLOG_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let lines = mb * 10486;
    let mut k = Kiln::start();
    let agent = k.agent("a1", &[]);
    let gen = format!("python3 -c 'import sys; w=sys.stdout.write; [w(\\\"L%08d \\\" % i + \\\"x\\\" * 90 + \\\"\\\\n\\\") for i in range({lines})]; w(\\\"LAST-LINE-OF-THE-LOG\\\\n\\\")'");
    let repo = k.repo("big", &format!("jobs:\n  big:\n    steps:\n      - \"{gen}\"\n"));
    k.add_project("big", &repo, &[]);
    let server = k.server_pid();
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new(Mutex::new((0u64, 0u64)));
    let sampler = {
        let (stop, peaks) = (stop.clone(), peaks.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let (s, a) = (rss_mb(server), rss_mb(agent));
                let mut p = peaks.lock().unwrap();
                *p = (p.0.max(s), p.1.max(a));
                drop(p);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let id = k.trigger("big");
    let b = k.wait_build(id, 900);
    assert_eq!(b["status"], "passed", "{b}");
    let job = Kiln::job(&b, "big");
    let job_id = job["id"].as_i64().unwrap();
    let len = job["attempts"][0]["log_len"].as_u64().unwrap();
    assert!(len >= mb * 1_000_000, "only {len} bytes kept of a {mb} MB log");

    // A byte range at the head, one in the middle, and the tail.
    let r = get(&k, &format!("/api/v1/jobs/{job_id}/raw"), &[("Range", "bytes=0-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes 0-199/{len}").as_str()));
    assert!(r.text().contains("\nL00000000 xxx"), "{}", r.text());
    let mid = len / 2;
    let r = get(&k, &format!("/api/v1/jobs/{job_id}/raw"), &[("Range", &format!("bytes={mid}-{}", mid + 999))]);
    assert_eq!((r.status, r.body.len()), (206, 1000));
    let r = get(&k, &format!("/api/v1/jobs/{job_id}/raw"), &[("Range", "bytes=-21")]);
    assert_eq!(r.text(), "LAST-LINE-OF-THE-LOG\n");
    assert_eq!(get(&k, &format!("/api/v1/jobs/{job_id}/raw"), &[("Range", &format!("bytes={len}-"))]).status, 416);

    // The tail through the API and the CLI.
    let t: serde_json::Value = serde_json::from_slice(&get(&k, &format!("/api/v1/jobs/{job_id}/log?tail=1000"), &[]).body).unwrap();
    assert!(t["text"].as_str().unwrap().ends_with("LAST-LINE-OF-THE-LOG\n"));
    assert_eq!(t["len"].as_u64(), Some(len));
    assert_eq!(t["done"], true);
    let first_line = t["line"].as_u64().unwrap();
    let shown = t["text"].as_str().unwrap().lines().count() as u64;
    assert_eq!(first_line + shown - 1, lines + 3, "the tail's line numbers count every line before it");
    let out = k.kiln(&["logs", &id.to_string(), "--tail", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(got.len(), 3, "{text}");
    assert!(got[0].starts_with(&format!("L{:08} ", lines - 2)) && got[2] == "LAST-LINE-OF-THE-LOG", "{text}");

    // Jump to a line, and the part before an offset (scrolling up).
    let l: serde_json::Value = serde_json::from_slice(&get(&k, &format!("/api/v1/jobs/{job_id}/log?line=1003&max=200"), &[]).body).unwrap();
    assert!(l["text"].as_str().unwrap().starts_with("L00001000 x"), "{l}");
    assert_eq!(l["line"], 1003);
    let before = l["offset"].as_u64().unwrap();
    let up: serde_json::Value = serde_json::from_slice(&get(&k, &format!("/api/v1/jobs/{job_id}/log?before={before}&max=1000"), &[]).body).unwrap();
    assert_eq!(up["next_offset"].as_u64(), Some(before));
    assert!(up["text"].as_str().unwrap().ends_with(&format!("L00000999 {}\n", "x".repeat(90))), "{up}");
    assert_eq!(up["line"].as_u64().unwrap() + up["text"].as_str().unwrap().lines().count() as u64, 1003);

    // Search: exact counts over the whole log.
    let s: serde_json::Value = serde_json::from_slice(&get(&k, &format!("/api/v1/jobs/{job_id}/log/search?q=L0000123&limit=3"), &[]).body).unwrap();
    assert_eq!((s["count"].as_u64(), s["lines"].as_u64()), (Some(10), Some(10)), "{s}");
    assert_eq!(s["matches"].as_array().unwrap().len(), 3);
    assert_eq!(s["matches"][0]["line"], 1233);
    let s: serde_json::Value = serde_json::from_slice(&get(&k, &format!("/api/v1/jobs/{job_id}/log/search?q=LAST-LINE"), &[]).body).unwrap();
    assert_eq!(s["count"], 1);
    let s: serde_json::Value = serde_json::from_slice(&get(&k, &format!("/api/v1/jobs/{job_id}/log/search?q=xxxxxxxxxx%0A"), &[]).body).unwrap();
    assert_eq!(s["count"].as_u64(), Some(lines), "one per generated line");

    // The whole log streamed: every byte, the head and the tail.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("curl -sf -H 'Authorization: Bearer {ADMIN}' {}/api/v1/jobs/{job_id}/raw | wc -c", k.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().ok(), Some(len), "the streamed download has every byte");

    // The log stream resumes from a byte offset.
    let from = len - 21;
    let r = http::send(&k.url, "GET", &format!("/api/v1/jobs/{job_id}/log/events"), &[("Authorization", &format!("Bearer {ADMIN}")), ("Last-Event-ID", &from.to_string())], b"", false);
    let body = r.text();
    assert!(body.contains(&format!("id: {len}")) && body.contains("LAST-LINE-OF-THE-LOG") && body.contains("event: end"), "{body}");
    assert!(!body.contains("L0000"), "resumed from the offset, not the start: {body}");

    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let (s, a) = *peaks.lock().unwrap();
    eprintln!("peak RSS: server {s} MB, agent {a} MB ({mb} MB log)");
    assert!(s > 0 && s <= 120, "server RSS peaked at {s} MB while storing and serving a {mb} MB log");
    assert!(a > 0 && a <= 120, "agent RSS peaked at {a} MB while spooling and sending a {mb} MB log");
    assert!(!k.agent_log("a1").contains("sending the log uncompressed"), "the server took the agent's zstd frames: {}", k.agent_log("a1"));
}

/// Logs an older kiln kept in the database (`log_chunks` rows) are readable after an upgrade:
/// the server moves them into the log files at start, once. A move cut short (the files
/// already hold the bytes, the rows are still there) finishes without storing a byte twice.
#[test]
fn logs_kept_in_the_database_by_an_older_kiln_are_readable_after_upgrade() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("old", "jobs:\n  a:\n    steps: [\"for i in $(seq 1 3000); do echo A-line-$i; done\"]\n  b:\n    steps: [\"for i in $(seq 1 2000); do echo B-line-$i; done\"]\n");
    k.add_project("old", &repo, &[]);
    let id = k.trigger("old");
    let b = k.wait_build(id, 120);
    assert_eq!(b["status"], "passed", "{b}");
    let job_log = |k: &Kiln, key: &str| -> String {
        let job = Kiln::job(&k.build(id), key)["id"].as_i64().unwrap();
        let r = get(k, &format!("/api/v1/jobs/{job}/raw?attempt=1"), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    };
    let (a, bb) = (job_log(&k, "a"), job_log(&k, "b"));
    assert!(a.contains("A-line-3000\n") && bb.contains("B-line-2000\n"));
    k.kill_server();
    let data = k.path("data");
    let db = data.join("kiln.db");
    // What the older kiln left: each log as rows of chunks by byte offset, and no files. Job b's
    // files stay, as if a move had written them and stopped before deleting the rows.
    let job_a = Kiln::job(&b, "a")["id"].as_i64().unwrap();
    as_old_rows(&db, &[(job_a, &a), (Kiln::job(&b, "b")["id"].as_i64().unwrap(), &bb)]);
    std::fs::remove_dir_all(data.join("logs").join(job_a.to_string())).unwrap();
    let sqlite = |sql: &str| sqlite(&db, sql);
    assert_eq!(sqlite("SELECT COUNT(*) FROM log_chunks"), "6");
    k.restart_server();
    k.wait_for("the server", 20, || http("GET", &format!("{}/login", k.url), &[], b"").0 == 200);
    assert_eq!(job_log(&k, "a"), a, "the old log reads back whole through the API");
    assert_eq!(job_log(&k, "b"), bb, "bytes the files held already are not stored twice");
    let out = k.kiln(&["logs", &id.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("A-line-1\n"), "kiln logs reads it too");
    k.kill_server();
    assert_eq!(sqlite("SELECT COUNT(*) FROM log_chunks"), "0", "the rows are gone once moved");
    // A second start finds nothing to move and changes nothing.
    k.restart_server();
    k.wait_for("the server", 20, || http("GET", &format!("{}/login", k.url), &[], b"").0 == 200);
    assert_eq!(job_log(&k, "a"), a);
}

/// Run `sql` on the SQLite database `db` with the sqlite3 tool; answers what it printed.
fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3").arg(db).arg(sql).output().expect("sqlite3 is needed: run ci/setup-sqlite.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Put jobs' logs (attempt 1) back as an older kiln kept them: rows of `log_chunks`, three a log.
fn as_old_rows(db: &std::path::Path, logs: &[(i64, &str)]) {
    let mut sql = String::from("BEGIN;");
    for (job, text) in logs {
        let bytes = text.as_bytes();
        let size = bytes.len() / 3 + 1;
        for (i, chunk) in bytes.chunks(size).enumerate() {
            let hex: String = chunk.iter().map(|c| format!("{c:02x}")).collect();
            sql.push_str(&format!("INSERT INTO log_chunks (job_id, attempt, pos, data) VALUES ({job}, 1, {}, X'{hex}');", i * size));
        }
    }
    sql.push_str("COMMIT;");
    sqlite(db, &sql);
}

/// An old log that cannot be moved into the files (here a file stands where its folder must
/// go) does not stop the server: it starts, says which build and job were kept back and what
/// to do, keeps their rows, and moves them at a later start once the cause is gone.
#[test]
fn an_old_log_that_cannot_be_moved_is_skipped_with_a_warning_and_kept() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("old", "jobs:\n  a:\n    steps: [\"for i in $(seq 1 300); do echo A-line-$i; done\"]\n  b:\n    steps: [\"for i in $(seq 1 200); do echo B-line-$i; done\"]\n");
    k.add_project("old", &repo, &[]);
    let id = k.trigger("old");
    let b = k.wait_build(id, 120);
    assert_eq!(b["status"], "passed", "{b}");
    let (job_a, job_b) = (Kiln::job(&b, "a")["id"].as_i64().unwrap(), Kiln::job(&b, "b")["id"].as_i64().unwrap());
    let raw = |k: &Kiln, job: i64| get(k, &format!("/api/v1/jobs/{job}/raw?attempt=1"), &[]);
    let (a, bb) = (raw(&k, job_a).text(), raw(&k, job_b).text());
    k.kill_server();
    let data = k.path("data");
    let db = data.join("kiln.db");
    as_old_rows(&db, &[(job_a, &a), (job_b, &bb)]);
    for job in [job_a, job_b] {
        std::fs::remove_dir_all(data.join("logs").join(job.to_string())).unwrap();
    }
    let blocker = data.join("logs").join(job_a.to_string());
    std::fs::write(&blocker, "not a folder").unwrap();
    k.restart_server();
    k.wait_for("the server", 20, || http("GET", &format!("{}/login", k.url), &[], b"").0 == 200);
    let warned = k.server_log();
    let line = warned.lines().find(|l| l.contains("old log") && l.contains(&format!("job {job_a}"))).unwrap_or_else(|| panic!("a warning names the job: {warned}"));
    assert!(line.contains(&format!("build {id}")) && line.contains("log_chunks") && line.contains("restart"), "names the build, where the rows stay and what to do: {line}");
    assert_eq!(raw(&k, job_b).text(), bb, "the other old log moved");
    assert_eq!(sqlite(&db, &format!("SELECT COUNT(*) FROM log_chunks WHERE job_id = {job_a}")), "3", "the rows of the log kept back stay");
    assert_eq!(sqlite(&db, &format!("SELECT COUNT(*) FROM log_chunks WHERE job_id = {job_b}")), "0");
    // Once the cause is gone, the next start moves it.
    k.kill_server();
    std::fs::remove_file(&blocker).unwrap();
    k.restart_server();
    k.wait_for("the server", 20, || http("GET", &format!("{}/login", k.url), &[], b"").0 == 200);
    assert_eq!(raw(&k, job_a).text(), a);
    assert_eq!(sqlite(&db, "SELECT COUNT(*) FROM log_chunks"), "0");
}

/// A part of a log read from its middle (a line, the tail, the part before an offset) comes
/// with the style set before it, so a colour set lines earlier still shows; `kiln logs --tail`
/// prints the last lines in it.
#[test]
fn a_part_read_from_the_middle_starts_in_the_colours_set_before_it() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    // Bold red for 3000 lines, then a reset and 10 plain lines; a second job ends in green, with
    // no reset.
    let repo = k.repo(
        "colours",
        "jobs:\n  red:\n    steps: [\"printf '\\\\033[1;31m'; seq -f 'red-%05g' 3000; printf '\\\\033[0m'; seq -f 'plain-%g' 10\"]\n  green:\n    steps: [\"printf '\\\\033[32m'; seq -f 'green-%g' 1000\"]\n",
    );
    k.add_project("colours", &repo, &[]);
    let id = k.trigger("colours");
    let b = k.wait_build(id, 120);
    assert_eq!(b["status"], "passed", "{b}");
    let job_id = Kiln::job(&b, "red")["id"].as_i64().unwrap();
    let slice = |q: &str| -> serde_json::Value { serde_json::from_slice(&get(&k, &format!("/api/v1/jobs/{job_id}/log?{q}"), &[]).body).unwrap() };
    let at = slice("line=1500&max=200");
    assert!(at["text"].as_str().unwrap().starts_with("red-0"), "{at}");
    assert_eq!(at["style"], "\x1b[1;31m", "a line inside the red part: {at}");
    let up = slice(&format!("before={}&max=500", at["offset"]));
    assert!(up["text"].as_str().unwrap().starts_with("red-0"), "{up}");
    assert_eq!(up["style"], "\x1b[1;31m", "the part above it: {up}");
    let tail = slice("tail=40");
    assert!(tail["text"].as_str().unwrap().contains("plain-10"), "{tail}");
    assert!(tail.get("style").is_none(), "after the reset: no style: {tail}");
    let on = slice(&format!("offset={}&max=200", at["offset"]));
    assert!(on.get("style").is_none(), "reading on from an offset carries its own style: {on}");

    let out = k.kiln(&["logs", &id.to_string(), "green", "--tail", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The log (10 kB) is longer than the first tail asked for: the green comes from the server.
    assert!(text.contains("\x1b[32mgreen-999\ngreen-1000\n\x1b[0m"), "the last lines in the green set before them, then plain: {text:?}");
}
