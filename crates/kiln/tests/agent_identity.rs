//! Agents that cannot be impersonated, end to end against the real binary: every agent
//! write acts only on a job the calling agent holds; enrolment secrets (revocable, limited
//! to labels or projects); per-agent tokens saved, reused, rotated and revoked; project
//! secrets sealed at rest.

mod common;
use common::http::{multipart, send};
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// POST JSON to the server with a bearer token: (status, body).
fn post(k: &Kiln, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let r = send(&k.url, "POST", path, &[("Authorization", &auth), ("Content-Type", "application/json")], body.to_string().as_bytes(), false);
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

/// Register an agent by hand: (status, its token or the error).
fn register(k: &Kiln, secret: &str, name: &str, labels: Value) -> (u16, String) {
    let body = json!({ "name": name, "labels": labels, "concurrency": 1, "protocol": kiln_wire::PROTOCOL_VERSION });
    let (s, v) = post(k, "/api/v1/agent/register", secret, &body);
    let text = v.get("token").or_else(|| v.get("error")).and_then(Value::as_str).unwrap_or_default().to_string();
    (s, text)
}

/// A real agent process with its own enrolment secret and work folder.
fn spawn_agent(k: &Kiln, name: &str, secret: &str, work: &str, args: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(k.path(&format!("agent-{name}.log"))).unwrap();
    Command::new(BIN)
        .args(["agent", "--server", &k.url, "--name", name, "--work-dir"])
        .arg(k.path(work))
        .args(args)
        .env("KILN_AGENT_TOKEN", secret)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kiln agent")
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn enrol(k: &Kiln, args: &[&str]) -> (i64, String) {
    let mut a = vec!["enrol", "create"];
    a.extend_from_slice(args);
    let v = k.json(&a);
    (v["enrolment"]["id"].as_i64().unwrap(), v["secret"].as_str().unwrap().to_string())
}

#[test]
fn a_second_agent_cannot_write_the_log_result_tests_or_package_of_a_job_another_agent_holds() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("victim", "jobs:\n  j:\n    steps: [echo unused]\n");
    k.add_project("victim", &repo, &[]);
    // An uploaded run, so that the job also has a package to download.
    let pipeline = b"jobs:\n  slow:\n    steps:\n      - sleep 6\n      - echo \"1 test FAILED\"; exit 1\n";
    let (ct, body) = multipart(&[("file", Some("t.sh"), b"true\n"), ("pipeline", Some(".kiln.yml"), pipeline)]);
    let r = send(&k.url, "POST", "/api/v1/projects/victim/runs", &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", &ct)], &body, false);
    assert_eq!(r.status, 200, "{}", r.text());
    let build: i64 = serde_json::from_slice::<Value>(&r.body).unwrap()["id"].as_i64().unwrap();
    wait_until("the victim job to run on a1", 30, || k.build(build)["jobs"][0]["status"] == "running");
    let job = k.build(build)["jobs"][0]["id"].as_i64().unwrap();

    // A rogue agent registers with the (leaked) agent secret, under labels no job asks for.
    let (s, rogue) = register(&k, AGENT_TOKEN, "rogue", json!({ "nothing": "matches" }));
    assert_eq!(s, 200, "{rogue}");
    let auth = format!("Bearer {rogue}");
    let refused = |what: &str, status: u16, body: &str| assert!(status == 403 || status == 409, "rogue {what} got {status}: {body}");
    for offset in [0, 4, 1 << 20] {
        let r = send(&k.url, "POST", &format!("/api/v1/agent/jobs/{job}/log?attempt=1&offset={offset}"), &[("Authorization", &auth)], b"All tests passed (forged)\n", false);
        refused("log", r.status, &r.text());
    }
    let (s, v) = post(&k, &format!("/api/v1/agent/jobs/{job}/finish"), &rogue, &json!({"attempt": 1, "status": "passed", "exit_code": 0, "reason": null, "log_len": 0}));
    refused("finish", s, &v.to_string());
    let (s, v) = post(&k, &format!("/api/v1/agent/jobs/{job}/release"), &rogue, &json!({"attempt": 1}));
    refused("release", s, &v.to_string());
    let (s, v) = post(&k, &format!("/api/v1/agent/jobs/{job}/tests/claim"), &rogue, &json!({"attempt": 1}));
    refused("tests/claim", s, &v.to_string());
    let (s, v) = post(&k, &format!("/api/v1/agent/jobs/{job}/tests/list"), &rogue, &json!({"attempt": 1, "ids": ["t1"]}));
    refused("tests/list", s, &v.to_string());
    let junit = br#"<testsuite name="s"><testcase classname="forged" name="all_good"/></testsuite>"#;
    let r = send(&k.url, "POST", &format!("/api/v1/agent/jobs/{job}/tests/report?attempt=1&path=r.xml"), &[("Authorization", &auth)], junit, false);
    refused("tests/report", r.status, &r.text());
    let r = send(&k.url, "POST", &format!("/api/v1/agent/jobs/{job}/tests/report?attempt=1&path=bad.xml"), &[("Authorization", &auth)], b"<not junit", false);
    refused("tests/report (malformed: not even parsed)", r.status, &r.text());
    let (s, v) = post(&k, &format!("/api/v1/agent/jobs/{job}/tests/done"), &rogue, &json!({"attempt": 1, "batch_id": 1, "exit_code": 0}));
    refused("tests/done", s, &v.to_string());
    let r = send(&k.url, "GET", &format!("/api/v1/agent/packages/{build}"), &[("Authorization", &auth)], b"", false);
    assert_eq!(r.status, 403, "rogue package download: {}", r.text());
    // A heartbeat naming the job renews nothing for the rogue: it is told the job is not its own.
    let (s, v) = post(&k, "/api/v1/agent/heartbeat", &rogue, &json!({"jobs": [{"job_id": job, "attempt": 1}], "status": {}}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stop"], json!([{"job_id": job, "attempt": 1}]), "{v}");

    let b = k.wait_build(build, 60);
    assert_eq!(b["status"], "failed", "the job keeps its real result: {b}");
    let attempts = b["jobs"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the job was never taken back: {b}");
    assert_eq!(attempts[0]["agent"], "a1");
    let log = k.logs(build);
    assert!(log.contains("1 test FAILED") && !log.contains("forged"), "{log}");
    let tests = send(&k.url, "GET", &format!("/api/v1/builds/{build}/tests"), &[("Authorization", &format!("Bearer {ADMIN}"))], b"", false);
    assert_eq!(tests.status, 200, "{}", tests.text());
    assert!(!tests.text().contains("all_good"), "the forged report is not stored: {}", tests.text());
}

#[test]
fn registering_a_name_online_under_another_token_does_not_take_its_jobs() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("p", "jobs:\n  j:\n    steps:\n      - sleep 4\n      - echo real-end\n");
    k.add_project("p", &repo, &[]);
    let id = k.trigger("p");
    wait_until("the job to run", 30, || k.build(id)["jobs"][0]["status"] == "running");
    let (s, msg) = register(&k, AGENT_TOKEN, "a1", json!({}));
    assert_eq!(s, 409, "{msg}");
    assert!(msg.contains("online under another token"), "{msg}");
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed", "{b}");
    assert_eq!(b["jobs"][0]["attempts"].as_array().unwrap().len(), 1, "{b}");
}

#[test]
fn an_event_stream_hears_an_agent_register_and_be_revoked() {
    let k = Kiln::start();
    // The console's fleet page re-reads the agents on these events.
    let events = common::events::event_lines(&k.url, ADMIN);
    let (s, token) = register(&k, AGENT_TOKEN, "fresh", json!({}));
    assert_eq!(s, 200, "{token}");
    common::events::wait_event(&events, "agent", "\"status\":\"registered\"", 20);
    let (s, v) = post(&k, "/api/v1/agents/fresh/revoke", ADMIN, &json!({}));
    assert_eq!(s, 200, "{v}");
    common::events::wait_event(&events, "agent", "\"status\":\"revoked\"", 20);
}

#[test]
fn an_agent_saves_its_token_and_reuses_it_after_a_restart() {
    let k = Kiln::start();
    let work = k.path("work-a1");
    let a = spawn_agent(&k, "a1", AGENT_TOKEN, "work-a1", &[]);
    let file = work.join("agent-token");
    wait_until("the agent to save its token", 30, || file.exists());
    assert_eq!(mode(&file), 0o600);
    let saved = std::fs::read_to_string(&file).unwrap();
    stop(a);
    // Restarted at once (still "online") and with a wrong enrolment secret: the saved token is enough.
    let a = spawn_agent(&k, "a1", "not-the-secret", "work-a1", &[]);
    let repo = k.repo("p", "jobs:\n  j:\n    steps: [echo after-restart]\n");
    k.add_project("p", &repo, &[]);
    let id = k.trigger("p");
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed", "{b}\n{}", k.agent_log("a1"));
    assert_eq!(b["jobs"][0]["attempts"][0]["agent"], "a1");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), saved, "the same token, not a new one");
    stop(a);
}

#[test]
fn enrolment_secrets_are_limited_in_uses_revocable_and_listed_without_the_secret() {
    let k = Kiln::start();
    let (once_id, once) = enrol(&k, &["--uses", "1"]);
    let (s, t) = register(&k, &once, "e1", json!({}));
    assert_eq!(s, 200, "{t}");
    let (s, msg) = register(&k, &once, "e2", json!({}));
    assert_eq!(s, 401, "a used-up secret: {msg}");
    let (rev_id, rev) = enrol(&k, &[]);
    let out = k.kiln(&["enrol", "revoke", &rev_id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (s, msg) = register(&k, &rev, "e3", json!({}));
    assert_eq!(s, 401, "a revoked secret: {msg}");
    let list = k.json(&["enrol", "list"]);
    let text = list.to_string();
    assert!(!text.contains(&once) && !text.contains(&rev), "secrets are shown once only: {text}");
    let by_id = |id: i64| list.as_array().unwrap().iter().find(|e| e["id"] == id).cloned().unwrap();
    assert_eq!((by_id(once_id)["used"].as_i64(), by_id(once_id)["uses_left"].as_i64()), (Some(1), Some(0)));
    assert_eq!(by_id(rev_id)["revoked"], true);
    // The agent enrolled before keeps working with its own token.
    let (s, v) = post(&k, "/api/v1/agent/heartbeat", &t, &json!({"jobs": [], "status": {}}));
    assert_eq!(s, 200, "{v}");
    // Only admins manage enrolment: not strangers, not plain users.
    let r = send(&k.url, "GET", "/api/v1/enrolments", &[], b"", false);
    assert_eq!(r.status, 401, "{}", r.text());
    let mut add = Command::new(BIN)
        .args(["user", "add", "bob", "--password-stdin"])
        .env("KILN_SERVER", &k.url)
        .env("KILN_TOKEN", ADMIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"bob-password-1\n").unwrap();
    assert!(add.wait().unwrap().success());
    let (cookie, csrf) = common::http::sign_in(&k.url, "bob", "bob-password-1");
    let bob = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str()), ("Content-Type", "application/json")];
    for (method, path, body) in [("POST", "/api/v1/enrolments", "{}"), ("GET", "/api/v1/enrolments", ""), ("DELETE", "/api/v1/enrolments/1", ""), ("POST", "/api/v1/agents/e1/revoke", "{}")] {
        let r = send(&k.url, method, path, &bob, body.as_bytes(), false);
        assert_eq!(r.status, 403, "plain user {method} {path}: {}", r.text());
    }
    assert_eq!(post(&k, "/api/v1/agent/heartbeat", &t, &json!({"jobs": [], "status": {}})).0, 200, "e1 was not revoked");
}

#[test]
fn a_label_limited_enrolment_cannot_register_other_labels() {
    let k = Kiln::start();
    let (_, secret) = enrol(&k, &["--label", "pool=untrusted"]);
    let (s, msg) = register(&k, &secret, "x1", json!({ "pool": "trusted", "os": "linux" }));
    assert_eq!(s, 403, "{msg}");
    assert!(msg.contains("pool=untrusted"), "{msg}");
    let (s, msg) = register(&k, &secret, "x2", json!({ "os": "linux" }));
    assert_eq!(s, 403, "a missing limited label: {msg}");
    let (s, t) = register(&k, &secret, "x3", json!({ "pool": "untrusted", "os": "linux" }));
    assert_eq!(s, 200, "{t}");
    // Its own token cannot widen its labels on a later registration either.
    let (s, msg) = register(&k, &t, "x3", json!({ "pool": "trusted" }));
    assert_eq!(s, 403, "{msg}");
    // A real agent with the wrong labels exits non-zero saying why.
    let mut a = spawn_agent(&k, "x4", &secret, "work-x4", &["--label", "pool=trusted"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = a.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the agent kept running");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(k.agent_log("x4").contains("pool=untrusted"), "{}", k.agent_log("x4"));
}

#[test]
fn a_project_limited_agent_never_gets_another_projects_job() {
    let mut k = Kiln::start();
    let (_, secret) = enrol(&k, &["--project", "alpha"]);
    let limited = spawn_agent(&k, "limited", &secret, "work-limited", &[]);
    let ra = k.repo("alpha", "jobs:\n  j:\n    steps: [echo ran-alpha-on-$KILN_AGENT_NAME]\n");
    let rb = k.repo("beta", "jobs:\n  j:\n    steps: [echo ran-beta-on-$KILN_AGENT_NAME]\n");
    k.add_project("alpha", &ra, &[]);
    k.add_project("beta", &rb, &[]);
    let b_id = k.trigger("beta");
    let a_id = k.trigger("alpha");
    let a = k.wait_build(a_id, 60);
    assert_eq!(a["status"], "passed", "{a}");
    assert_eq!(a["jobs"][0]["attempts"][0]["agent"], "limited");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(k.build(b_id)["status"], "queued", "beta waits: its only agent may not take it");
    k.agent("open", &[]);
    let b = k.wait_build(b_id, 60);
    assert_eq!(b["status"], "passed", "{b}");
    assert_eq!(b["jobs"][0]["attempts"][0]["agent"], "open");
    stop(limited);
}

#[test]
fn a_rotated_token_works_and_the_old_one_is_refused_and_a_revoked_agent_is_out() {
    let k = Kiln::start();
    let file = k.path("work-r1").join("agent-token");
    let a = spawn_agent(&k, "r1", AGENT_TOKEN, "work-r1", &[]);
    wait_until("the agent to save its token", 30, || file.exists());
    let old = std::fs::read_to_string(&file).unwrap();
    stop(a);
    let a = spawn_agent(&k, "r1", AGENT_TOKEN, "work-r1", &["--rotate-token"]);
    wait_until("the rotated token", 30, || std::fs::read_to_string(&file).is_ok_and(|t| t != old && !t.is_empty()));
    let new = std::fs::read_to_string(&file).unwrap();
    assert_eq!(mode(&file), 0o600);
    let beat = |t: &str| post(&k, "/api/v1/agent/heartbeat", t, &json!({"jobs": [], "status": {}})).0;
    assert_eq!(beat(&old), 401, "the old token is refused");
    assert_eq!(beat(&new), 200, "the new token works");
    let repo = k.repo("p", "jobs:\n  j:\n    steps: [echo rotated]\n");
    k.add_project("p", &repo, &[]);
    let b = k.wait_build(k.trigger("p"), 60);
    assert_eq!(b["status"], "passed", "{b}");
    // An admin revokes the agent: its token stops working at once.
    let out = k.kiln(&["enrol", "revoke-agent", "r1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(beat(&new), 401, "a revoked agent's token is refused");
    // Its claim that was waiting for a job when it was revoked is handed none.
    let id = k.trigger("p");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let b = k.build(id);
    assert_eq!(b["jobs"][0]["status"], "queued", "the revoked agent took a job: {b:#}");
    assert_eq!(b["jobs"][0]["attempts"].as_array().map_or(0, Vec::len), 0, "{b:#}");
    stop(a);
}

/// Every byte of the SQLite database files, as one buffer.
fn database_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["kiln.db", "kiln.db-wal", "kiln.db-shm"] {
        if let Ok(b) = std::fs::read(data.join(f)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Start a server on `data` expecting it to refuse: its exit status and what it printed.
fn server_refuses(data: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--agent-token", AGENT_TOKEN, "--admin-token", ADMIN])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("the server started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = c.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn secrets_are_sealed_at_rest_and_the_data_folder_is_private() {
    const VALUE: &str = "hush-sealed-7f3a9c";
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    // The step checks the value reversed: the pipeline text (kept in the database) must not hold it.
    let repo = k.repo("p", "jobs:\n  j:\n    steps: ['test \"$(printf %s \"$DEPLOY\" | rev)\" = c9a3f7-delaes-hsuh && echo secret-arrived']\n");
    k.add_project("p", &repo, &[]);
    let out = k.kiln(&["project", "set", "p", "--secret", &format!("DEPLOY={VALUE}")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let b = k.wait_build(k.trigger("p"), 60);
    assert_eq!(b["status"], "passed", "the agent gets the opened secret: {b}");
    let data = k.path("data");
    assert!(!contains(&database_bytes(&data), VALUE), "the secret is in clear in the database files");
    assert_eq!(mode(&data), 0o700);
    for f in ["kiln.db", "secret-key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    if data.join("kiln.db-wal").exists() {
        assert_eq!(mode(&data.join("kiln.db-wal")), 0o600);
    }
    assert_eq!(mode(&k.path("work-a1").join("agent-token")), 0o600);

    // Without its key the server refuses to start, and says what is missing.
    k.kill_server();
    let key = std::fs::read_to_string(data.join("secret-key")).unwrap();
    std::fs::rename(data.join("secret-key"), k.path("kept-key")).unwrap();
    let (ok, err) = server_refuses(&data, &[], &[]);
    assert!(!ok);
    assert!(err.contains("encrypted project secrets") && err.contains("secret-key") && err.contains("KILN_SECRET_KEY"), "{err}");
    let (ok, err) = server_refuses(&data, &[], &[("KILN_SECRET_KEY", "00")]);
    assert!(!ok && err.contains("KILN_SECRET_KEY is not a valid key"), "{err}");
    // With the key from the environment it starts and the secret still arrives.
    let listen = k.url.trim_start_matches("http://").to_string();
    let mut c = Command::new(BIN)
        .args(["server", "--listen", &listen, "--data"])
        .arg(&data)
        .args(["--agent-token", AGENT_TOKEN, "--admin-token", ADMIN, "--allow-local-repos"])
        .env("KILN_SECRET_KEY", key.trim())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.contains("listening"), "the server did not start with KILN_SECRET_KEY: {line}");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    k.server = Some(c);
    let b = k.wait_build(k.trigger("p"), 60);
    assert_eq!(b["status"], "passed", "{b}");
    assert!(!data.join("secret-key").exists(), "a key given by the environment is not written down");
    // And from a file, given by flag or in kiln.toml.
    k.server_args = vec!["--secret-key-file".to_string(), k.path("kept-key").display().to_string()];
    k.restart_server();
    let b = k.wait_build(k.trigger("p"), 60);
    assert_eq!(b["status"], "passed", "{b}");
    let toml = k.path("kiln.toml");
    std::fs::write(&toml, format!("secret_key_file = {:?}\n", k.path("kept-key").display().to_string())).unwrap();
    k.server_args = vec!["--config".to_string(), toml.display().to_string()];
    k.restart_server();
    let b = k.wait_build(k.trigger("p"), 60);
    assert_eq!(b["status"], "passed", "{b}");
    assert!(!data.join("secret-key").exists());
}

#[test]
fn plaintext_secrets_from_an_older_database_are_sealed_on_upgrade() {
    const VALUE: &str = "hush-legacy-41d0e2";
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    // The step checks the value reversed: the pipeline text (kept in the database) must not hold it.
    let repo = k.repo("p", "jobs:\n  j:\n    steps: ['test \"$(printf %s \"$OLD\" | rev)\" = 2e0d14-ycagel-hsuh && echo legacy-arrived']\n");
    k.add_project("p", &repo, &[]);
    k.kill_server();
    // What an older kiln wrote: the value in clear in the settings.
    let db = k.path("data").join("kiln.db");
    let sql = format!("UPDATE projects SET settings = json_set(settings, '$.secrets', json_object('OLD', '{VALUE}')) WHERE name = 'p';");
    let out = Command::new("sqlite3").arg(&db).arg(&sql).output().expect("sqlite3 is needed: run ci/setup-sqlite.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(contains(&database_bytes(&k.path("data")), VALUE), "the test wrote the old form");
    k.restart_server();
    let b = k.wait_build(k.trigger("p"), 60);
    assert_eq!(b["status"], "passed", "the sealed secret still arrives: {b}");
    k.kill_server();
    assert!(!contains(&database_bytes(&k.path("data")), VALUE), "the plaintext is gone from the database files");
}

#[test]
fn a_key_made_as_the_docs_say_seals_secrets_and_a_missing_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    let (ok, err) = server_refuses(&dir.path().join("d0"), &["--secret-key-file", key.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("failed to read the secret key") && err.contains("od -An"), "{err}");
    let make = format!("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {}; chmod 600 {}", key.display(), key.display());
    assert!(Command::new("sh").args(["-c", &make]).status().unwrap().success());
    let mut k = Kiln::start_with(&["--secret-key-file", key.to_str().unwrap()]);
    k.agent("a1", &[]);
    let repo = k.repo("p", "jobs:\n  j:\n    steps: ['test -n \"$K\"']\n");
    k.add_project("p", &repo, &[]);
    assert!(k.kiln(&["project", "set", "p", "--secret", "K=made-with-od-key"]).status.success());
    assert_eq!(k.wait_build(k.trigger("p"), 60)["status"], "passed");
    assert!(!k.path("data").join("secret-key").exists(), "the given key file is used, none is made");
}
