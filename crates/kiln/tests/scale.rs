//! Several servers on one PostgreSQL database (ci/setup-postgres.sh): events cross servers,
//! agents fail over between servers, and a server killed with -9 mid-run loses nothing.

mod common;

use common::events::{event_lines, wait_event};
use common::pg::{fresh_database, Reaped};
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn on(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("KILN_SERVER", url).env("KILN_TOKEN", ADMIN).output().unwrap()
}

/// Queue a build through the API of the server at `url`.
fn trigger_on(url: &str, project: &str) -> i64 {
    let auth = format!("Bearer {ADMIN}");
    let (status, body) = http("POST", &format!("{url}/api/v1/projects/{project}/builds"), &[("Authorization", &auth), ("Content-Type", "application/json")], b"{}");
    assert!((200..300).contains(&status), "trigger through {url}: {status} {body}");
    serde_json::from_str::<Value>(&body).unwrap()["id"].as_i64().unwrap()
}

#[test]
fn an_event_stream_on_server_b_sees_a_build_queued_through_a() {
    let pg_db = fresh_database();
    let db = pg_db.url.clone();
    let k = Kiln::start_with(&["--database", &db]);
    let (b, b_url) = spawn_server(&k.path("data-b"), "127.0.0.1:0", &["--database".into(), db.clone()]);
    let _b = Reaped(b);
    let repo = k.repo("ev", "jobs:\n  j:\n    steps: [\"true\"]\n");
    k.add_project("ev", &repo, &[]);
    let events = event_lines(&b_url, ADMIN);
    std::thread::sleep(Duration::from_millis(500));
    let id = k.trigger("ev");
    wait_event(&events, "build", &format!("\"build_id\":{id}"), 20);
}

#[test]
fn a_server_killed_mid_run_loses_nothing_and_agents_move_on() {
    let pg_db = fresh_database();
    let db = pg_db.url.clone();
    let lease = 5;
    let dir = tempfile::tempdir().unwrap();
    // Each server keeps its own files folder here (postgres.rs shares one, as docs/storage.md
    // advises): a log begun through A and continued through B is asked of the agent again.
    let args: Vec<String> = ["--database", &db, "--lease", "5", "--heartbeat", "1"].iter().map(|s| s.to_string()).collect();
    let (a, a_url) = spawn_server(&dir.path().join("a"), "127.0.0.1:0", &args);
    let mut a = Some(Reaped(a));
    let _ = &mut a;
    let (b, b_url) = spawn_server(&dir.path().join("b"), "127.0.0.1:0", &args);
    let _b = Reaped(b);
    // Even agents name the servers with `--server` twice, odd ones with one comma list.
    let both = format!("{a_url},{b_url}");
    let mut agents = Vec::new();
    for i in 0..4 {
        let log = std::fs::File::create(dir.path().join(format!("agent{i}.log"))).unwrap();
        let servers: Vec<&str> = if i % 2 == 0 { vec!["--server", &a_url, "--server", &b_url] } else { vec!["--server", &both] };
        let child = Command::new(BIN)
            .arg("agent")
            .args(&servers)
            .args(["--token", AGENT_TOKEN, "--name", &format!("g{i}"), "--work-dir"])
            .arg(dir.path().join(format!("work{i}")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        agents.push(Reaped(child));
    }
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".kiln.yml"), "jobs:\n  one:\n    steps: [\"echo one-$KILN_BUILD_ID\"]\n").unwrap();
    commit_all(&repo, "pipeline");
    let out = on(&a_url, &["project", "add", "f", "--repo", repo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ids: Vec<i64> = (0..50).map(|i| trigger_on(if i % 2 == 0 { &a_url } else { &b_url }, "f")).collect();
    // Mid-run: A dies without a word, holding claims, leases and builds not yet expanded.
    drop(a.take());
    let killed_at = Instant::now();
    ids.extend((0..50).map(|_| trigger_on(&b_url, "f")));
    eprintln!("all builds queued {:.1} s after the kill", killed_at.elapsed().as_secs_f64());
    let deadline = killed_at + Duration::from_secs(lease + 10);
    let builds = loop {
        let out = on(&b_url, &["builds", "f", "--json", "--limit", "200"]);
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let done = list.iter().filter(|b| ["passed", "failed", "errored", "cancelled"].contains(&b["status"].as_str().unwrap_or(""))).count();
        if done == ids.len() || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("builds ended {:.1} s after the kill", killed_at.elapsed().as_secs_f64());
    let passed = builds.iter().filter(|b| b["status"] == "passed").count();
    let stuck: Vec<String> = builds
        .iter()
        .filter(|b| b["status"] != "passed")
        .map(|b| {
            let out = on(&b_url, &["show", &b["id"].to_string()]);
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    assert_eq!(
        (builds.len(), passed),
        (100, 100),
        "{:.1} s after the kill (limit lease + 10 s): {passed} of {} builds passed; not passed:\n{}\nagent logs:\n{}",
        killed_at.elapsed().as_secs_f64(),
        builds.len(),
        stuck.join("\n"),
        (0..4).map(|i| format!("-- g{i}\n{}", std::fs::read_to_string(dir.path().join(format!("agent{i}.log"))).unwrap_or_default())).collect::<String>()
    );
    // Each build's job passed exactly once, and its log holds its own line once.
    for id in &ids {
        let out = on(&b_url, &["show", &id.to_string(), "--json"]);
        let b: Value = serde_json::from_slice(&out.stdout).unwrap();
        let attempts = Kiln::job(&b, "one")["attempts"].as_array().unwrap().clone();
        let passed = attempts.iter().filter(|a| a["status"] == "passed").count();
        assert_eq!(passed, 1, "build {id}: {attempts:#?}");
    }
    let moved = |i: usize| std::fs::read_to_string(dir.path().join(format!("agent{i}.log"))).unwrap_or_default().contains(&format!("moving to {b_url}"));
    assert!(moved(0) || moved(2), "no agent given --server twice said it moved to server B");
    assert!(moved(1) || moved(3), "no agent given a comma list said it moved to server B");
}

/// A step that fails unless the project's secret `DEPLOY` reached it, then prints it (masked).
const OPENS_SECRET: &str = "test \"$DEPLOY\" = s3cret-value && echo \"secret opened: $DEPLOY\"";

/// A `tests:` runner writing a passing JUnit case for each test it is given.
const JUNIT_RUNNER: &str = r#"for t in "$@"; do
  echo "<testsuite><testcase classname=\"c\" name=\"$t\" time=\"0.01\"/></testsuite>" > "$KILN_JUNIT_DIR/$t.xml"
done
"#;

/// How many test results build `id` has on the server at `url`.
fn tests_of(url: &str, id: i64) -> usize {
    let out = on(url, &["show", &id.to_string(), "--tests", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("show --tests on {url}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["tests"].as_array().map_or(0, Vec::len)
}

fn copy(from: &str, to: &str, more: &[&str]) -> std::process::Output {
    Command::new(BIN).args(["db", "copy", "--from", from, "--to", to, "--json"]).args(more).output().unwrap()
}

#[test]
fn db_copy_moves_a_whole_kiln_to_postgresql_and_back() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    // A job that proves it opened the project's secret (the log shows it masked) and keeps an
    // artifact, and a `tests:` job whose three JUnit results are rows to copy.
    let repo = k.repo(
        "c",
        &format!("jobs:\n  j:\n    steps: [\"echo copied-$KILN_BUILD_ID\", {OPENS_SECRET:?}, \"echo artifact-$KILN_BUILD_ID > out.txt\"]\n    artifacts: [out.txt]\n  suite:\n    tests:\n      shards: 1\n      list: seq 1 3\n      run: sh run.sh {{tests}}\n"),
    );
    std::fs::write(repo.join("run.sh"), JUNIT_RUNNER).unwrap();
    commit_all(&repo, "run.sh");
    k.add_project("c", &repo, &["--secret", "DEPLOY=s3cret-value"]);
    let id = k.trigger("c");
    assert_eq!(k.wait_build(id, 60)["status"], "passed", "{}", k.logs(id));
    assert_eq!(tests_of(&k.url, id), 3);
    for args in [&["user", "add", "bob"][..], &["project", "grant", "c", "bob", "developer"]] {
        let out = k.kiln(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    k.kill_server();
    let sqlite = format!("sqlite:{}", k.path("data/kiln.db").display());
    let data_pg = k.path("data-pg").display().to_string();
    // The old servers kept log bytes and artifacts in a files folder of their own (--files).
    std::fs::create_dir_all(k.path("files-old")).unwrap();
    for tree in ["logs", "artifacts"] {
        std::fs::rename(k.path("data").join(tree), k.path("files-old").join(tree)).unwrap();
    }
    let files_old = k.path("files-old").display().to_string();
    // Refused before anything is written: without that files folder named (the database has
    // logs and artifacts the data folder lacks), and into a data folder holding another key.
    let unused_db = fresh_database();
    let refused = copy(&sqlite, &unused_db.url, &["--data-to", &data_pg]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--files-from"), "{}", String::from_utf8_lossy(&refused.stderr));
    std::fs::create_dir_all(k.path("data-other")).unwrap();
    std::fs::write(k.path("data-other/secret-key"), "not the source's key").unwrap();
    let refused = copy(&sqlite, &unused_db.url, &["--data-to", &k.path("data-other").display().to_string(), "--files-from", &files_old]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another secret-key"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(!k.path("data-pg").exists(), "a refused copy made its target");
    // The rows and the files: log bytes and the artifact from the old files folder, the key
    // from the data folder (the SQLite file's, by default), all into the new data folder
    // (the new servers' files folder too, by default), counted on both sides.
    let pg_db = fresh_database();
    let pg = pg_db.url.clone();
    let out = copy(&sqlite, &pg, &["--data-to", &data_pg, "--files-from", &files_old]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copied: Value = serde_json::from_slice(&out.stdout).unwrap();
    let there: Vec<Value> = copied["tables"].as_array().unwrap().clone();
    let count = |list: &[Value], t: &str| list.iter().find(|c| c["table"] == t).map(|c| c["target"].as_i64().unwrap()).unwrap_or(-1);
    for t in ["projects", "builds", "jobs", "attempts", "users", "api_tokens", "project_members"] {
        assert!(count(&there, t) >= 1, "table {t} copied nothing: {there:#?}");
    }
    assert_eq!(count(&there, "test_results"), 3, "the suite's three results: {there:#?}");
    let files = |what: &str| copied["files"].as_array().unwrap().iter().find(|c| c["files"] == what).cloned().unwrap_or_else(|| panic!("no {what} in {copied:#}"));
    assert!(files("logs/")["target"].as_i64().unwrap() >= 2, "{copied:#}");
    assert_eq!(files("logs/")["target_bytes"], files("logs/")["source_bytes"]);
    assert_eq!((files("artifacts/")["source"].as_i64(), files("artifacts/")["target"].as_i64()), (Some(1), Some(1)), "{copied:#}");
    assert_eq!(files("secret-key")["target"], 1);
    assert_eq!(std::fs::read(k.path("data-pg/secret-key")).unwrap(), std::fs::read(k.path("data/secret-key")).unwrap());
    // A second copy into the same database is refused (it is not empty), and so is one into
    // a new database but the same folders, before a row is written there.
    let again = copy(&sqlite, &pg, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&again.stderr));
    let same_folders = copy(&sqlite, &unused_db.url, &["--data-to", &data_pg, "--data-from", &k.path("data").display().to_string(), "--files-from", &files_old]);
    assert_eq!(same_folders.status.code(), Some(2));
    let why = String::from_utf8_lossy(&same_folders.stderr);
    assert!(why.contains("is not empty") && why.contains("data-pg"), "{why}");
    // Rows only: the refused copies wrote none. The note says what to do with the files, and
    // a server started as it says (the old files folder, the key copied by hand) has the log.
    let into_unused = copy(&sqlite, &unused_db.url, &[]);
    assert!(into_unused.status.success(), "the refused copies wrote rows: {}", String::from_utf8_lossy(&into_unused.stderr));
    let note = String::from_utf8_lossy(&into_unused.stderr);
    for part in ["--files", "logs/ and artifacts/", &format!("{}/secret-key", k.path("data").display()), "--data-to"] {
        assert!(note.contains(part), "the copy's note lacks {part:?}: {note}");
    }
    std::fs::create_dir_all(k.path("data-rows")).unwrap();
    std::fs::copy(k.path("data/secret-key"), k.path("data-rows/secret-key")).unwrap();
    let (rows_srv, rows_url) = spawn_server(&k.path("data-rows"), "127.0.0.1:0", &["--database".into(), unused_db.url.clone(), "--files".into(), files_old.clone()]);
    let rows_srv = Reaped(rows_srv);
    let logs = String::from_utf8_lossy(&on(&rows_url, &["logs", &id.to_string()]).stdout).into_owned();
    assert!(logs.contains(&format!("copied-{id}")), "{logs}");
    drop(rows_srv);
    // And back to a new SQLite file with the files, from the PostgreSQL copy's folders into a
    // data folder and a files folder of their own: the same counts.
    let back_path = k.path("back.db");
    let back = format!("sqlite:{}", back_path.display());
    let files_back = k.path("files-back").display().to_string();
    let out = copy(&pg, &back, &["--data-to", &k.path("data-back").display().to_string(), "--files-to", &files_back, "--data-from", &data_pg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back_copied: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back_copied["tables"].as_array().unwrap(), &there);
    assert_eq!(back_copied["files"], copied["files"], "the files counted on the way back");
    // A server on it has the build, its log, the project's secret and members.
    let (srv, url) = spawn_server(&k.path("data-back"), "127.0.0.1:0", &["--database".into(), back.clone(), "--files".into(), files_back.clone()]);
    let _srv = Reaped(srv);
    let b: Value = serde_json::from_slice(&on(&url, &["show", &id.to_string(), "--json"]).stdout).unwrap();
    assert_eq!(b["status"], "passed");
    let logs = String::from_utf8_lossy(&on(&url, &["logs", &id.to_string()]).stdout).into_owned();
    assert!(logs.contains(&format!("copied-{id}")), "{logs}");
    let members = String::from_utf8_lossy(&on(&url, &["project", "members", "c"]).stdout).into_owned();
    assert!(members.contains("bob") && members.contains("developer"), "{members}");
    assert_eq!(tests_of(&url, id), 3, "the copied build's test results");
    // The secret still opens there: a new build's step reads it, and its log shows it masked.
    let agent_log = std::fs::File::create(k.path("agent-back.log")).unwrap();
    let _agent = Reaped(
        Command::new(BIN)
            .args(["agent", "--server", &url, "--token", AGENT_TOKEN, "--name", "back", "--work-dir"])
            .arg(k.path("work-back"))
            .stdout(Stdio::null())
            .stderr(agent_log)
            .spawn()
            .unwrap(),
    );
    let on_copy = trigger_on(&url, "c");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let b: Value = serde_json::from_slice(&on(&url, &["show", &on_copy.to_string(), "--json"]).stdout).unwrap_or_default();
        if ["passed", "failed", "errored", "cancelled"].contains(&b["status"].as_str().unwrap_or("")) || Instant::now() > deadline {
            break b["status"].clone();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let logs = String::from_utf8_lossy(&on(&url, &["logs", &on_copy.to_string()]).stdout).into_owned();
    assert_eq!(status, "passed", "build {on_copy} on the copy:\n{logs}");
    assert!(logs.contains("secret opened: ***") && !logs.contains("s3cret-value"), "{logs}");
    // A server on the PostgreSQL copy with the copied folders (none of the old ones) serves
    // the old build's log and its artifact.
    let (pg_srv, pg_url) = spawn_server(&k.path("data-pg"), "127.0.0.1:0", &["--database".into(), pg]);
    let _pg_srv = Reaped(pg_srv);
    let logs = String::from_utf8_lossy(&on(&pg_url, &["logs", &id.to_string()]).stdout).into_owned();
    assert!(logs.contains(&format!("copied-{id}")) && logs.contains("secret opened: ***"), "{logs}");
    let got = k.path("got");
    let out = on(&pg_url, &["artifacts", &id.to_string(), "--download", &got.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(got.join("j/out.txt")).unwrap().trim(), format!("artifact-{id}"));
    // New rows get new ids past the copied ones (PostgreSQL's sequences moved).
    let next = trigger_on(&pg_url, "c");
    assert!(next > id, "a new build on the copy got id {next}, not past {id}");
}

/// Which of the two servers' logs contains `needle` (by index).
fn logs_with(logs: &[std::path::PathBuf], needle: &str) -> Vec<usize> {
    (0..logs.len()).filter(|i| std::fs::read_to_string(&logs[*i]).unwrap_or_default().contains(needle)).collect()
}

#[test]
fn retention_is_a_duty_one_server_holds_and_another_takes_over() {
    let pg_db = fresh_database();
    let db = pg_db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["--database", &db, "--lease", "3", "--gc-every", "1", "--keep-builds", "1"].iter().map(|s| s.to_string()).collect();
    let (a, a_url) = spawn_server(&dir.path().join("a"), "127.0.0.1:0", &args);
    let (b, b_url) = spawn_server(&dir.path().join("b"), "127.0.0.1:0", &args);
    let mut servers = vec![Some(Reaped(a)), Some(Reaped(b))];
    let urls = [a_url.clone(), b_url.clone()];
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let agent_log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let _agent = Reaped(
        Command::new(BIN)
            .args(["agent", "--server", &a_url, "--server", &b_url, "--token", AGENT_TOKEN, "--name", "r1", "--work-dir"])
            .arg(dir.path().join("work"))
            .stdout(Stdio::null())
            .stderr(agent_log)
            .spawn()
            .unwrap(),
    );
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".kiln.yml"), "jobs:\n  one:\n    steps: [\"true\"]\n").unwrap();
    commit_all(&repo, "pipeline");
    let out = on(&a_url, &["project", "add", "r", "--repo", repo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exists = |url: &str, id: i64| on(url, &["show", &id.to_string()]).status.success();
    let passed = |url: &str, id: i64| {
        let out = on(url, &["show", &id.to_string(), "--json"]);
        serde_json::from_slice::<Value>(&out.stdout).map(|b| b["status"] == "passed").unwrap_or(false)
    };
    let wait = |what: &str, secs: u64, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Two builds: the background pass removes the older one, on one server only.
    let first = trigger_on(&a_url, "r");
    wait("the first build to pass", 60, &|| passed(&a_url, first));
    let second = trigger_on(&a_url, "r");
    wait("the second build to pass", 60, &|| passed(&a_url, second));
    wait("the pass to remove the older build", 20, &|| !exists(&b_url, first));
    let holders = logs_with(&logs, "now holds the retention duty");
    assert_eq!(holders.len(), 1, "exactly one server holds the retention duty: {holders:?}");
    let holder = holders[0];
    assert_eq!(logs_with(&logs, &format!("retention: build {first} of r")), vec![holder], "only the duty's holder runs the pass");
    // The holder dies: the other server takes the duty over and removes the next older build.
    drop(servers[holder].take());
    let other = 1 - holder;
    let third = trigger_on(&urls[other], "r");
    wait("the third build to pass", 60, &|| passed(&urls[other], third));
    wait("the survivor to take the duty and remove the second build", 3 + 15, &|| !exists(&urls[other], second));
    assert!(exists(&urls[other], third));
    assert_eq!(logs_with(&logs, "now holds the retention duty").len(), 2, "the survivor logged taking the duty over");
    assert!(logs_with(&logs, &format!("retention: build {second} of r")).contains(&other));
}
