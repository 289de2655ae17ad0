//! The access matrix: every route of the real router (`kiln_server::route_table`, the same table
//! the router is built from) is called as each kind of caller, and each answer's status is
//! compared with `access_matrix.txt`. A route without a row, or a row without a route, fails.
//!
//! To see what the server answers now (after adding a route, say), run with
//! `KILN_ACCESS_MATRIX=print`: the test prints the table it got, to review and paste.

mod common;
use common::*;
use http::send;
use std::collections::BTreeMap;

/// The callers, in the order the matrix lists them and calls them (the most powerful last, so a
/// change one of them makes does not hide what a weaker one may do).
const CALLERS: [&str; 9] = ["anonymous", "revoked", "disabled", "agent", "stranger", "viewer", "developer", "maintainer", "admin"];

const MATRIX: &str = include_str!("access_matrix.txt");

struct World {
    k: Kiln,
    /// Caller → the Authorization header value (None: anonymous).
    auth: BTreeMap<&'static str, Option<String>>,
    build: i64,
    job: i64,
    run: i64,
    commit: String,
}

fn token_for(k: &Kiln, user: &str) -> String {
    let v = k.json(&["token", "create", "--user", user]);
    v["token"].as_str().unwrap_or_else(|| panic!("no token for {user}: {v}")).to_string()
}

fn ok(out: std::process::Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn world() -> World {
    let k = Kiln::start();
    // Jobs wait for a label no agent has, so the build stays open to cancel.
    let repo = k.repo("prod", "jobs:\n  j:\n    requires: { os: nowhere }\n    steps: [echo hi]\n");
    k.add_project("prod", &repo, &["--private", "--secret", "DEPLOY_KEY=deploy-key-1234"]);
    let commit = String::from_utf8(std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&repo).output().unwrap().stdout).unwrap().trim().to_string();
    for u in ["vic", "dave", "mia", "bob", "dis", "rev", "tgt", "pw"] {
        ok(k.kiln(&["user", "add", u]));
    }
    for (u, role) in [("vic", "viewer"), ("dave", "developer"), ("mia", "maintainer")] {
        ok(k.kiln(&["project", "grant", "prod", u, role]));
    }
    let mut auth = BTreeMap::new();
    auth.insert("anonymous", None);
    for (caller, user) in [("viewer", "vic"), ("developer", "dave"), ("maintainer", "mia"), ("stranger", "bob"), ("disabled", "dis"), ("revoked", "rev")] {
        auth.insert(caller, Some(format!("Bearer {}", token_for(&k, user))));
    }
    auth.insert("admin", Some(format!("Bearer {ADMIN}")));
    ok(k.kiln(&["user", "disable", "dis"]));
    let rev = k.json(&["token", "list", "--user", "rev"]);
    ok(k.kiln(&["token", "revoke", &rev[0]["id"].as_i64().unwrap().to_string()]));
    // An agent that holds nothing.
    let reg = send(&k.url, "POST", "/api/v1/agent/register", &[("Authorization", &format!("Bearer {AGENT_TOKEN}")), ("Content-Type", "application/json")],
        format!(r#"{{"name":"matrix-agent","labels":{{}},"concurrency":1,"protocol":{}}}"#, kiln_wire::PROTOCOL_VERSION).as_bytes(), false);
    assert_eq!(reg.status, 200, "{}", reg.text());
    let agent: serde_json::Value = serde_json::from_slice(&reg.body).unwrap();
    auth.insert("agent", Some(format!("Bearer {}", agent["token"].as_str().unwrap())));
    let build = k.trigger("prod");
    k.wait_for("the build's job", 30, || k.build(build)["jobs"].as_array().is_some_and(|j| !j.is_empty()));
    let job = k.build(build)["jobs"][0]["id"].as_i64().unwrap();
    let (ct, body) = http::multipart(&[("file", Some("t.sh"), b"echo run\n")]);
    let r = send(&k.url, "POST", "/api/v1/projects/prod/runs", &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", &ct)], &body, false);
    assert_eq!(r.status, 200, "{}", r.text());
    let run = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"].as_i64().unwrap();
    World { k, auth, build, job, run, commit }
}

/// Register an agent named `name` with the registration secret; answers its token.
fn register(w: &World, name: &str) -> String {
    let body = format!(r#"{{"name":"{name}","labels":{{}},"concurrency":1,"protocol":{}}}"#, kiln_wire::PROTOCOL_VERSION);
    let reg = send(&w.k.url, "POST", "/api/v1/agent/register", &[("Authorization", &format!("Bearer {AGENT_TOKEN}")), ("Content-Type", "application/json")], body.as_bytes(), false);
    assert_eq!(reg.status, 200, "{}", reg.text());
    serde_json::from_slice::<serde_json::Value>(&reg.body).unwrap()["token"].as_str().unwrap().to_string()
}

/// A token of user `tgt` made by the admin, for the routes that revoke one.
fn fresh_token_id(w: &World) -> String {
    token_for(&w.k, "tgt");
    let list = w.k.json(&["token", "list", "--user", "tgt"]);
    list[0]["id"].as_i64().unwrap().to_string()
}

/// The path with its parameters filled in for this call; some calls first make what they consume.
fn fill(w: &World, method: &str, path: &str, caller: &str, n: usize) -> String {
    let mut p = path.replace("{file}", if path.starts_with("/badge") { "prod.svg" } else { "console.css" });
    p = p.replace("{forge}", "generic").replace("{project}", "prod").replace("{build_id}", &w.run.to_string());
    if path == "/api/v1/enrolments/{id}" {
        let e = w.k.json(&["enrol", "create"]);
        p = p.replace("{id}", &e["enrolment"]["id"].as_i64().unwrap().to_string());
    }
    if path.starts_with("/api/v1/tokens/{id}") || path.starts_with("/account/tokens/{id}") {
        p = p.replace("{id}", &fresh_token_id(w));
    }
    if path.starts_with("/api/v1/jobs/") || path.starts_with("/api/v1/agent/jobs/") {
        p = p.replace("{id}", &w.job.to_string());
    }
    if path == "/api/v1/builds/{id}/package" {
        p = p.replace("{id}", &w.run.to_string());
    }
    p = p.replace("{id}", &w.build.to_string());
    if path.starts_with("/api/v1/users/{name}") {
        let user = if path.ends_with("/password") {
            "pw".to_string()
        } else if method == "DELETE" {
            let u = format!("gone-{n}-{caller}");
            ok(w.k.kiln(&["user", "add", &u]));
            u
        } else {
            "tgt".to_string()
        };
        p = p.replace("{name}", &user);
    }
    if path.contains("/members/{user}") {
        ok(w.k.kiln(&["project", "grant", "prod", "tgt", "viewer"]));
        p = p.replace("{user}", "tgt");
    }
    if path == "/api/v1/agents/{name}/revoke" {
        // Revoking takes the agent away: each call revokes an agent of its own.
        let name = format!("gone-agent-{n}-{caller}");
        register(w, &name);
        p = p.replace("{name}", &name);
    }
    // An agent's write names attempt 1 of a job it does not hold.
    if (path.ends_with("/log") || path.ends_with("/log/zstd") || path.ends_with("/log/live")) && path.starts_with("/api/v1/agent/") {
        p.push_str("?attempt=1&offset=0");
    }
    if path.ends_with("/tests/report") {
        p.push_str("?attempt=1&batch=1&path=report.xml");
    }
    // Artifacts: the agent's upload and inputs name attempt 1 of a job it does not hold;
    // downloads name the build's job and a file.
    if path == "/api/v1/agent/jobs/{id}/artifacts" {
        p.push_str("?attempt=1&name=out.txt");
    }
    if path == "/api/v1/agent/jobs/{id}/inputs" {
        p.push_str("?attempt=1");
    }
    p = p.replace("{build}", &w.build.to_string()).replace("{job}", &w.job.to_string()).replace("{*name}", "out.txt");
    if path == "/api/v1/jobs/{id}/log/search" {
        p.push_str("?q=hi");
    }
    p.replace("{name}", if path.starts_with("/api/v1/agents/") || path.starts_with("/agents/") { "matrix-agent" } else { "prod" })
}

/// The body (and its content type) each route is called with: one that would succeed for a
/// caller who may, so that the status says who may.
fn body(w: &World, method: &str, path: &str, caller: &str) -> (String, Vec<u8>) {
    let json = |s: String| ("application/json".to_string(), s.into_bytes());
    let form = |s: String| ("application/x-www-form-urlencoded".to_string(), s.into_bytes());
    match (method, path) {
        ("POST", "/api/v1/projects") => json(format!(r#"{{"name":"new-{caller}","repo":"{}"}}"#, w.k.path("prod").display())),
        ("PATCH", "/api/v1/projects/{name}") => json(r#"{"settings":{"poll":"1h"}}"#.into()),
        ("POST", "/api/v1/projects/{name}/members") => json(r#"{"user":"tgt","role":"viewer"}"#.into()),
        ("POST", "/api/v1/users") => json(format!(r#"{{"name":"made-by-{caller}"}}"#)),
        ("PATCH", "/api/v1/users/{name}") => json(r#"{"admin":false}"#.into()),
        ("POST", "/api/v1/users/{name}/password") => json(r#"{"password":"a-new-password-1"}"#.into()),
        ("POST", "/api/v1/tokens") => json(r#"{"label":"matrix"}"#.into()),
        ("POST", "/api/v1/projects/{name}/push") => json(format!(r#"{{"before":"","after":"{}","ref":"refs/heads/main"}}"#, w.commit)),
        ("POST", "/api/v1/projects/{name}/runs") | ("POST", "/runs/new") => {
            let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("project", None, b"prod"), ("file", Some("t.sh"), b"echo run\n")];
            if path.starts_with("/api") {
                parts.remove(0);
            }
            let (ct, b) = http::multipart(&parts);
            (ct, b)
        }
        ("POST", "/projects/new") => form(format!("name=page-{caller}&repo={}&visibility=private", w.k.path("prod").display())),
        ("POST", "/projects/{name}/members") => form("user=tgt&role=viewer".into()),
        ("POST", "/account/users") => form(format!("name=form-{caller}")),
        ("POST", "/account/password") => form("current=wrong-password&password=a-new-password-1".into()),
        ("POST", "/login") => form("name=admin&password=wrong".into()),
        ("POST", "/api/v1/agent/jobs/{id}/log") => ("application/octet-stream".into(), b"All tests passed (forged)\n".to_vec()),
        ("POST", "/api/v1/agent/jobs/{id}/log/zstd") => ("application/zstd".into(), zstd::bulk::compress(b"All tests passed (forged)\n", 1).unwrap()),
        ("POST", "/api/v1/agent/jobs/{id}/tests/report") => ("application/xml".into(), br#"<testsuite name="s"><testcase classname="c" name="t"/></testsuite>"#.to_vec()),
        ("POST", p) if p.starts_with("/api/v1/agent/") => json(format!(
            r#"{{"attempt":1,"status":"passed","exit_code":0,"reason":null,"log_len":0,"batch_id":1,"ids":["t"],"jobs":[{{"job_id":{},"attempt":1}}],"name":"x","labels":{{}},"concurrency":1,"protocol":{}}}"#,
            w.job,
            kiln_wire::PROTOCOL_VERSION
        )),
        ("POST", "/api/v1/builds/{id}/retry") => json(r#"{"failed":true}"#.into()),
        // Each caller quarantines a test of its own; releasing one quarantined for it first.
        ("POST", "/api/v1/projects/{name}/quarantine") => json(format!(r#"{{"test":"q-{caller}"}}"#)),
        ("POST", "/api/v1/projects/{name}/quarantine/release") => {
            ok(w.k.kiln(&["tests", "quarantine", "prod", &format!("r-{caller}")]));
            json(format!(r#"{{"test":"r-{caller}"}}"#))
        }
        ("POST", "/projects/{name}/quarantine") => form(format!("test=form-{caller}&action=quarantine")),
        // A dry run: the matrix must not remove anything.
        ("POST", "/api/v1/gc") => json(r#"{"dry_run":true}"#.into()),
        ("PUT", "/api/v1/agent/jobs/{id}/log/live") => ("application/octet-stream".into(), b"forged live tail\n".to_vec()),
        ("PUT", "/api/v1/agent/jobs/{id}/artifacts") => ("application/octet-stream".into(), b"forged artifact\n".to_vec()),
        ("POST", "/api/v1/enrolments") => json(r#"{"labels":{},"projects":[],"uses":1}"#.into()),
        ("POST", p) if p.starts_with("/api/") || p.starts_with("/hooks/") => json("{}".into()),
        _ => form(String::new()),
    }
}

#[test]
fn every_route_answers_every_caller_as_the_matrix_says() {
    let w = world();
    let mut routes: Vec<_> = kiln_server::route_table().into_iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    // Deletions last, so what they remove is still there for the other routes.
    routes.sort_by_key(|(m, _)| m == "DELETE");
    let mut got: Vec<(String, String, Vec<u16>)> = Vec::new();
    for (n, (method, path)) in routes.iter().enumerate() {
        let mut row = Vec::new();
        for caller in CALLERS {
            let target = fill(&w, method, path, caller, n);
            let (ct, b) = body(&w, method, path, caller);
            let mut headers: Vec<(&str, &str)> = vec![("Content-Type", &ct)];
            let mut auth = w.auth[caller].clone();
            if path == "/api/v1/agent/rotate" && caller == "agent" {
                // Rotating replaces the agent's token: rotate one of its own.
                auth = Some(format!("Bearer {}", register(&w, &format!("rotating-{n}"))));
            }
            if let Some(a) = &auth {
                headers.push(("Authorization", a));
            }
            let r = send(&w.k.url, method, &target, &headers, &b, path == "/api/v1/events");
            row.push(r.status);
        }
        got.push((method.clone(), path.clone(), row));
    }
    let printed: String = got
        .iter()
        .map(|(m, p, row)| format!("{:<7}{:<46}{}\n", m, p, row.iter().map(|s| format!("{s:>11}")).collect::<String>()))
        .collect();
    if std::env::var("KILN_ACCESS_MATRIX").as_deref() == Ok("print") {
        println!("{printed}");
    }
    let mut want: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
    for line in MATRIX.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 2 + CALLERS.len(), "access_matrix.txt: a row needs METHOD PATH and {} statuses: {line}", CALLERS.len());
        want.insert((f[0].into(), f[1].into()), f[2..].iter().map(|s| s.parse().unwrap()).collect());
    }
    let mut wrong = Vec::new();
    for (m, p, row) in &got {
        match want.remove(&(m.clone(), p.clone())) {
            None => wrong.push(format!("{m} {p}: a route with no row in access_matrix.txt (got {row:?})")),
            Some(expected) if expected != *row => {
                let diff: Vec<String> = CALLERS.iter().zip(expected.iter().zip(row)).filter(|(_, (e, g))| e != g).map(|(c, (e, g))| format!("{c} {e}→{g}")).collect();
                wrong.push(format!("{m} {p}: {}", diff.join(", ")));
            }
            Some(_) => {}
        }
    }
    for (m, p) in want.keys() {
        wrong.push(format!("{m} {p}: a row for a route the router does not have"));
    }
    assert!(wrong.is_empty(), "the access matrix differs:\n{}\n\nwhat the server answered (KILN_ACCESS_MATRIX=print):\n{printed}", wrong.join("\n"));
}
