//! Who may do what, end to end against the real binary: each attack of the security review
//! (K-03, K-04, K-05, K-12, K-23) tried as an ordinary user, project roles, secrets only for
//! builds the maintainers vouch for, the user lifecycle, and the console's Cancel and Drain
//! doing what the API's do.

mod common;
mod notify_support;

use common::*;
use http::send;
use notify_support::Recorder;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Call the API as `token`; answers (status, JSON body or Null).
fn api(k: &Kiln, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let r = send(&k.url, method, path, &[("Authorization", &auth), ("Content-Type", "application/json")], body.as_bytes(), false);
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn user_with_token(k: &Kiln, name: &str) -> String {
    ok(k.kiln(&["user", "add", name]));
    k.json(&["token", "create", "--user", name])["token"].as_str().unwrap().to_string()
}

/// Run a client command as `token`.
fn kiln_as(k: &Kiln, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).env("KILN_SERVER", &k.url).env("KILN_TOKEN", token).output().unwrap()
}

const KEY_LENGTH: &str = "jobs:\n  deploy:\n    steps:\n      - echo \"key-length=${#DEPLOY_KEY}\"\n";

#[test]
fn strangers_and_developers_cannot_redirect_a_project_or_its_secrets() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let listener = Recorder::start(|_, _| 201);
    let repo = k.repo("prod", KEY_LENGTH);
    k.add_project("prod", &repo, &["--private", "--secret", "DEPLOY_KEY=s3cr3t-deploy-key-XYZ"]);
    let bob = user_with_token(&k, "bob");
    let dave = user_with_token(&k, "dave");
    ok(k.kiln(&["project", "grant", "prod", "dave", "developer"]));

    // K-05: a user with no role sees nothing and changes nothing (404, the name is not confirmed).
    for (m, p, b) in [
        ("GET", "/api/v1/projects/prod", ""),
        ("PATCH", "/api/v1/projects/prod", r#"{"public":true}"#),
        ("PATCH", "/api/v1/projects/prod", r#"{"repo":"/tmp/bobs-code","settings":{"webhook_secret":"bobs","secrets":{"DEPLOY_KEY":"bobs"}}}"#),
        ("POST", "/api/v1/projects/prod/builds", "{}"),
    ] {
        assert_eq!(api(&k, &bob, m, p, b).0, 404, "{m} {p} as a stranger");
    }
    assert_eq!(send(&k.url, "GET", "/api/v1/projects/prod", &[], b"", false).status, 404, "still private to anonymous visitors");

    // K-03: a developer cannot point commit status at their own listener, nor name a secret as its token.
    let exfil = format!(r#"{{"settings":{{"commit_status":{{"forge":"github","repo":"x/y","url":"{}","token_secret":"DEPLOY_KEY"}}}}}}"#, listener.url("/exfil"));
    let (status, body) = api(&k, &dave, "PATCH", "/api/v1/projects/prod", &exfil);
    assert_eq!(status, 403);
    assert!(body["error"].as_str().unwrap().contains("maintainer role"), "the refusal names the role: {body}");
    assert_eq!(api(&k, &dave, "PATCH", "/api/v1/projects/prod", r#"{"public":true}"#).0, 403);
    assert_eq!(api(&k, &dave, "PATCH", "/api/v1/projects/prod", r#"{"settings":{"notify_webhook":["http://127.0.0.1:9/x"]}}"#).0, 403);
    // Even a maintainer (here the admin) may not send commit status to a host off the admins' list.
    let out = k.kiln(&["project", "set", "prod", "--commit-status", "github", "--forge-url", &listener.url(""), "--forge-repo", "x/y", "--forge-token-secret", "DEPLOY_KEY"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--forge-host"), "the error says how to allow a host: {}", String::from_utf8_lossy(&out.stderr));

    // The developer triggers and cancels; the build sees the secret (a build of the project's own repository).
    let (status, b) = api(&k, &dave, "POST", "/api/v1/projects/prod/builds", "{}");
    assert_eq!(status, 200);
    let b = k.wait_build(b["id"].as_i64().unwrap(), 60);
    assert_eq!(b["status"], "passed");
    assert!(k.logs(b["id"].as_i64().unwrap()).contains("key-length=21"));
    let (status, b2) = api(&k, &dave, "POST", "/api/v1/projects/prod/builds", "{}");
    assert_eq!(status, 200);
    assert_eq!(api(&k, &dave, "POST", &format!("/api/v1/builds/{}/cancel", b2["id"]), "{}").0, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(listener.requests().is_empty(), "nothing was sent to the listener: {:?}", listener.requests().len());

    // Secret values are write-only, and can be deleted by a maintainer.
    let (_, p) = api(&k, &dave, "GET", "/api/v1/projects/prod", "");
    assert_eq!(p["settings"]["secrets"]["DEPLOY_KEY"], "***");
    assert_eq!(p["role"], "developer");
    ok(k.kiln(&["project", "set", "prod", "--unset-secret", "DEPLOY_KEY"]));
    let p = k.json(&["project", "show", "prod"]);
    assert!(p["settings"]["secrets"].get("DEPLOY_KEY").is_none(), "{p}");
    let out = k.kiln(&["project", "set", "prod", "--unset-secret", "DEPLOY_KEY"]);
    assert_eq!(out.status.code(), Some(2), "deleting a missing secret is an error");
}

#[test]
fn uploads_get_no_secrets_and_own_pipelines_need_a_maintainer() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("prod", KEY_LENGTH);
    k.add_project("prod", &repo, &["--private", "--secret", "DEPLOY_KEY=s3cr3t-deploy-key-XYZ"]);
    let bob = user_with_token(&k, "bob");
    let dave = user_with_token(&k, "dave");
    let mia = user_with_token(&k, "mia");
    ok(k.kiln(&["project", "grant", "prod", "dave", "developer"]));
    ok(k.kiln(&["project", "grant", "prod", "mia", "maintainer"]));
    let own = k.path("own.yml");
    std::fs::write(&own, "jobs:\n  x:\n    steps:\n      - 'echo \"b64=$(printf %s \"$DEPLOY_KEY\" | base64)\" len=${#DEPLOY_KEY}'\n").unwrap();
    let file = k.path("test_x.sh");
    std::fs::write(&file, "echo hi\n").unwrap();
    let (own, file) = (own.to_str().unwrap(), file.to_str().unwrap());

    // K-04: a stranger cannot upload to the project at all; a developer cannot bring a pipeline.
    let out = kiln_as(&k, &bob, &["submit", "prod", file, "--pipeline", own]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kiln_as(&k, &dave, &["submit", "prod", file, "--pipeline", own]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maintainer role"), "{}", String::from_utf8_lossy(&out.stderr));

    // A developer's upload on the project's pipeline runs, without the secrets.
    let out = kiln_as(&k, &dave, &["submit", "prod", file, "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = builds(&k, "prod")[0]["id"].as_i64().unwrap();
    k.wait_build(id, 60);
    assert!(k.logs(id).contains("key-length=0"), "an upload got the secret: {}", k.logs(id));

    // A maintainer's upload with a pipeline of its own: no secrets until the project opts in.
    let run = |who: &str| {
        let out = kiln_as(&k, who, &["submit", "prod", file, "--pipeline", own, "--wait"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let id = builds(&k, "prod")[0]["id"].as_i64().unwrap();
        k.wait_build(id, 60);
        k.logs(id)
    };
    assert!(run(&mia).contains("len=0"));
    ok(kiln_as(&k, &mia, &["project", "set", "prod", "--upload-secrets", "true"]));
    let log = run(&mia);
    assert!(log.contains("len=21"), "an opted-in maintainer's upload gets the secrets: {log}");
    assert!(!log.contains("czNjcjN0"), "…and their base64 is masked: {log}");
}

#[test]
fn roles_are_granted_listed_and_revoked_and_visibility_has_three_levels() {
    let k = Kiln::start();
    let repo = k.repo("p", KEY_LENGTH);
    let vic = user_with_token(&k, "vic");
    let mia = user_with_token(&k, "mia");
    // The creator of a project becomes its maintainer.
    let out = kiln_as(&k, &mia, &["project", "add", "mine", "--repo", repo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let members = k.json(&["project", "members", "mine"]);
    assert_eq!(members, serde_json::json!([{ "user": "mia", "role": "maintainer" }]));
    assert_eq!(k.json(&["project", "show", "mine"])["visibility"], "private", "private is the default");
    // A private project: members only; internal: any signed-in user; public: anyone.
    assert_eq!(api(&k, &vic, "GET", "/api/v1/projects/mine", "").0, 404);
    ok(kiln_as(&k, &mia, &["project", "set", "mine", "--internal"]));
    assert_eq!(api(&k, &vic, "GET", "/api/v1/projects/mine", "").0, 200);
    assert_eq!(send(&k.url, "GET", "/api/v1/projects/mine", &[], b"", false).status, 404);
    ok(kiln_as(&k, &mia, &["project", "set", "mine", "--public"]));
    assert_eq!(send(&k.url, "GET", "/badge/mine.svg", &[], b"", false).status, 200);
    ok(kiln_as(&k, &mia, &["project", "set", "mine", "--private"]));
    // Grant, list, revoke; a viewer sees but cannot trigger, and is told which role is needed.
    ok(kiln_as(&k, &mia, &["project", "grant", "mine", "vic", "viewer"]));
    assert_eq!(api(&k, &vic, "GET", "/api/v1/projects/mine", "").0, 200);
    let (status, body) = api(&k, &vic, "POST", "/api/v1/projects/mine/builds", "{}");
    assert_eq!(status, 403);
    assert!(body["error"].as_str().unwrap().contains("developer role on project mine"), "{body}");
    let out = kiln_as(&k, &vic, &["project", "grant", "mine", "vic", "maintainer"]);
    assert_eq!(out.status.code(), Some(2), "a viewer cannot raise their own role");
    let listed = ok(kiln_as(&k, &vic, &["project", "members", "mine"]));
    assert!(listed.contains("vic") && listed.contains("viewer") && listed.contains("mia"), "{listed}");
    ok(kiln_as(&k, &mia, &["project", "revoke", "mine", "vic"]));
    assert_eq!(api(&k, &vic, "GET", "/api/v1/projects/mine", "").0, 404);
    let out = k.kiln(&["project", "grant", "mine", "nobody", "viewer"]);
    assert_eq!(out.status.code(), Some(2), "granting a role to an unknown user fails");
    let out = k.kiln(&["project", "grant", "mine", "vic", "owner"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("viewer, developer or maintainer"));
}

#[test]
fn users_can_be_disabled_demoted_removed_and_their_tokens_revoked() {
    let k = Kiln::start();
    let bob = user_with_token(&k, "bob");
    let carl = user_with_token(&k, "carl");
    let me = |t: &str| api(&k, t, "GET", "/api/v1/me", "");
    assert_eq!(me(&bob).1["name"], "bob");
    // Disable ends tokens and sessions at once.
    k.add_user_with_password("sam", "sam-password-1");
    let (cookie, _) = http::sign_in(&k.url, "sam", "sam-password-1");
    let signed_in = || serde_json::from_slice::<Value>(&send(&k.url, "GET", "/api/v1/me", &[("Cookie", &cookie)], b"", false).body).unwrap()["signed_in"].clone();
    assert_eq!(signed_in(), true);
    ok(k.kiln(&["user", "disable", "sam"]));
    assert_eq!(signed_in(), false, "a disabled user's session ends");
    ok(k.kiln(&["user", "disable", "bob"]));
    assert_eq!(me(&bob).0, 401, "a disabled user's token stops working");
    assert!(ok(k.kiln(&["user", "list"])).contains("disabled"));
    ok(k.kiln(&["user", "enable", "bob"]));
    assert_eq!(me(&bob).0, 401, "enabling does not bring old tokens back");
    // An admin issues a token for a user, lists and revokes anyone's.
    let t = k.json(&["token", "create", "--user", "carl", "--label", "deploy script"]);
    assert_eq!(t["info"]["user"], "carl");
    let carl2 = t["token"].as_str().unwrap().to_string();
    let all = k.json(&["token", "list", "--all"]);
    assert!(all.as_array().unwrap().iter().any(|t| t["label"] == "deploy script"), "{all}");
    let id = t["info"]["id"].as_i64().unwrap().to_string();
    assert_eq!(kiln_as(&k, &carl, &["token", "create", "--user", "bob"]).status.code(), Some(2), "only admins issue tokens for others");
    ok(k.kiln(&["token", "revoke", &id]));
    assert_eq!(me(&carl2).0, 401);
    assert_eq!(me(&carl).0, 200);
    // Promote and demote take effect at once, on tokens made before.
    ok(k.kiln(&["user", "set", "carl", "--admin"]));
    assert_eq!(api(&k, &carl, "GET", "/api/v1/users", "").0, 200);
    ok(k.kiln(&["user", "set", "carl", "--no-admin"]));
    assert_eq!(api(&k, &carl, "GET", "/api/v1/users", "").0, 403);
    // K-12: an admin's password reset ends the user's tokens.
    let mut child = std::process::Command::new(BIN)
        .args(["user", "passwd", "carl"])
        .env("KILN_SERVER", &k.url)
        .env("KILN_TOKEN", ADMIN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"carl-new-password\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(me(&carl).0, 401, "a reset password ends the user's API tokens");
    // Remove: gone with their roles.
    ok(k.kiln(&["user", "remove", "carl"]));
    assert!(!ok(k.kiln(&["user", "list"])).contains("carl"));
    let out = k.kiln(&["user", "disable", "admin"]);
    assert_eq!(out.status.code(), Some(2), "an admin cannot lock themself out");
}

#[test]
fn a_replaced_admin_token_stops_working() {
    let mut k = Kiln::start();
    let users = |url: &str, t: &str| send(url, "GET", "/api/v1/users", &[("Authorization", &format!("Bearer {t}"))], b"", false).status;
    assert_eq!(users(&k.url, ADMIN), 200);
    k.kill_server();
    // The same data folder, started with another --admin-token.
    let data = k.path("data");
    let mut server = std::process::Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args(["--agent-token", AGENT_TOKEN, "--admin-token", "a-brand-new-admin-token"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("kiln server listening on ").expect("the server listens").to_string();
    assert_eq!(users(&url, "a-brand-new-admin-token"), 200);
    assert_eq!(users(&url, ADMIN), 401, "the token of the earlier --admin-token no longer works");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn the_consoles_cancel_stops_a_running_job_at_once_and_its_drain_makes_no_claim_loop() {
    // Heartbeats every 30 s: only the control poll can stop the job within the test's bound.
    let mut k = Kiln::start_with(&["--lease", "90", "--heartbeat", "30"]);
    k.agent("a1", &[]);
    let repo = k.repo("slow", "jobs:\n  s:\n    steps:\n      - echo started; sleep 60\n");
    k.add_project("slow", &repo, &[]);
    let id = k.trigger("slow");
    k.wait_for("the step to start", 30, || k.logs(id).contains("started"));
    let admin = format!("Bearer {ADMIN}");
    let form = [("Authorization", admin.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let t0 = Instant::now();
    let r = send(&k.url, "POST", &format!("/builds/{id}/cancel"), &form, b"", false);
    assert_eq!(r.status, 303);
    k.wait_for("the job to stop", 10, || k.agent_log("a1").contains("cancelled"));
    assert!(t0.elapsed() < Duration::from_secs(10), "stopped by the control poll, not the 30 s heartbeat");
    assert_eq!(k.wait_build(id, 10)["status"], "cancelled");

    // Drain from the console: the agent hears at once and stops claiming (it exits when idle).
    let log = k.path("agent-d1.log");
    let child = std::process::Command::new(BIN)
        .args(["agent", "--server", &k.url, "--token", AGENT_TOKEN, "--name", "d1", "--work-dir"])
        .arg(k.path("work-d1"))
        .env("KILN_LOG", "info,kiln_agent=debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let claims = || std::fs::read_to_string(&log).unwrap_or_default().matches("claiming work").count();
    k.wait_for("the agent to claim", 30, || claims() > 0);
    let r = send(&k.url, "POST", "/agents/d1/drain", &form, b"", false);
    assert_eq!(r.status, 303);
    let before = claims();
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exited.is_some_and(|s| s.success()), "a drained idle agent exits 0 at once: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(claims() <= before + 2, "no claim loop after the drain: {} claims after it", claims() - before);
}

#[test]
fn a_secret_can_be_given_on_stdin_and_stays_off_the_command_line() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("app", "jobs:\n  j:\n    steps: [\"test \\\"$TOKEN\\\" = from-stdin-9f2 && echo token:$TOKEN\"]\n");
    k.add_project("app", &repo, &[]);
    let set = |args: &[&str], stdin: &str| {
        let mut c = std::process::Command::new(BIN)
            .args(["project", "set", "app"])
            .args(args)
            .env("KILN_SERVER", &k.url)
            .env("KILN_TOKEN", ADMIN)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        drop(c.stdin.take());
        c.wait_with_output().unwrap()
    };
    let out = set(&["--secret", "TOKEN"], "from-stdin-9f2\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = k.trigger("app");
    assert_eq!(k.wait_build(id, 60)["status"], "passed", "the step did not get the value piped in: {}", k.logs(id));
    assert!(k.logs(id).contains("token:***") && !k.logs(id).contains("from-stdin-9f2"), "{}", k.logs(id));
    // Nothing on stdin, or two names that would both read it, are refused and change nothing.
    let out = set(&["--secret", "OTHER"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin was empty"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = set(&["--secret", "A", "--secret", "B"], "x\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("would both read stdin"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = set(&["--secret", "TOKEN", "--secret", "TOKEN=other"], "x\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret TOKEN is given twice"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(k.wait_build(k.trigger("app"), 60)["status"], "passed", "the secret was changed by a refused command");
}

/// Run `kiln ARGS` (with the API token `token`) on a terminal, a pseudo-terminal made by
/// util-linux `script`, in bash. Each of `typing` is (text to wait for, bytes to type): the
/// bytes are typed once the text has been shown after the previous one. Returns (exit code,
/// everything the terminal showed). Fails the test if it has not ended after a minute.
fn on_a_terminal(k: &Kiln, token: &str, args: &str, typing: &[(&str, &str)]) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    let mut c = std::process::Command::new("script")
        .args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .env("SHELL", "/bin/bash")
        .env("KILN_SERVER", &k.url)
        .env("KILN_TOKEN", token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux script (apt-get install bsdutils)");
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let mut out = c.stdout.take().unwrap();
    let s2 = shown.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            s2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&shown.lock().unwrap()).to_string();
    let mut stdin = c.stdin.take().unwrap();
    let mut seen = 0;
    for (after, typed) in typing {
        let t0 = Instant::now();
        loop {
            let now = text();
            if let Some(i) = now[seen.min(now.len())..].find(after) {
                seen += i + after.len();
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "kiln {args} never showed {after:?}: {now:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        stdin.write_all(typed.as_bytes()).unwrap();
    }
    let t0 = Instant::now();
    let code = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break st.code();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = c.kill();
            panic!("kiln {args} still runs after a minute: {:?}", text());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    reader.join().unwrap();
    (code, text())
}

/// Typed at a terminal, a secret's value (all its lines, up to Ctrl-D) and passwords are read
/// with the typing not shown; a new password is asked for twice; what was typed ahead and not
/// read is thrown away, not left for the shell.
#[test]
fn secrets_and_passwords_typed_at_a_terminal_are_not_shown() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("app", "jobs:\n  j:\n    steps:\n      - test \"$TOKEN\" = \"$(printf 'typed-4be1\\nsecond-line-7')\"\n");
    k.add_project("app", &repo, &[]);
    // A pasted key spans lines: all of them are kept, up to Ctrl-D.
    let (code, shown) = on_a_terminal(&k, ADMIN, "project set app --secret TOKEN", &[("(not shown", "typed-4be1\nsecond-line-7\n\u{4}")]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(!shown.contains("typed-4be1") && !shown.contains("second-line-7"), "the terminal showed the secret as it was typed: {shown:?}");
    let id = k.trigger("app");
    assert_eq!(k.wait_build(id, 60)["status"], "passed", "the step did not get the typed value: {}", k.logs(id));
    // A new user's password, typed twice; a line typed ahead after it is thrown away, so the
    // shell that runs next reads nothing.
    let args = "user add carol --password-stdin; read -t 2 left; echo \"left:[$left]\"";
    let (code, shown) = on_a_terminal(&k, ADMIN, args, &[("password:", "carol-typed-pw-1\n"), ("password again:", "carol-typed-pw-1\nrm -rf typed-ahead\n")]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(!shown.contains("carol-typed-pw-1") && !shown.contains("typed-ahead"), "{shown:?}");
    assert!(shown.contains("left:[]"), "input typed ahead was left for the shell: {shown:?}");
    let carol = http::sign_in(&k.url, "carol", "carol-typed-pw-1");
    // Two different passwords change nothing.
    let (code, shown) = on_a_terminal(&k, ADMIN, "user passwd carol", &[("password:", "carol-typed-pw-2\n"), ("again:", "carol-typed-pw-X\n")]);
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("differ; nothing changed"), "{shown:?}");
    http::sign_in(&k.url, "carol", "carol-typed-pw-1");
    // Carol changes her own: the current password, then the new one twice.
    let t = http::send(&k.url, "POST", "/api/v1/tokens", &[("Cookie", &carol.0), ("X-CSRF-Token", &carol.1), ("Content-Type", "application/json")], br#"{"label":"cli"}"#, false);
    assert_eq!(t.status, 200, "{}", t.text());
    let token = serde_json::from_slice::<Value>(&t.body).unwrap()["token"].as_str().unwrap().to_string();
    let typing = [("current password:", "carol-typed-pw-1\n"), ("new password:", "carol-typed-pw-3\n"), ("new password again:", "carol-typed-pw-3\n")];
    let (code, shown) = on_a_terminal(&k, &token, "user passwd carol", &typing);
    assert_eq!(code, Some(0), "{shown}");
    assert!(!shown.contains("carol-typed-pw"), "{shown:?}");
    http::sign_in(&k.url, "carol", "carol-typed-pw-3");
}

/// Ctrl-C at the prompt of a value not shown ends the command and gives the terminal its echo back.
#[test]
fn ctrl_c_at_a_hidden_prompt_gives_the_terminal_back() {
    let k = Kiln::start();
    let repo = k.repo("app", "jobs:\n  j:\n    steps: [\"true\"]\n");
    k.add_project("app", &repo, &[]);
    // After kiln, the same terminal says how kiln ended and whether it echoes.
    let (_, shown) = on_a_terminal(&k, ADMIN, "project set app --secret TOKEN; echo kiln-ended-$?; stty -a", &[("(not shown", "half-typed\u{3}")]);
    assert!(shown.contains("kiln-ended-130"), "kiln did not end by itself with 130 after Ctrl-C (killed by the signal, it leaves the terminal silent and takes the shell with it): {shown:?}");
    let echo: Vec<&str> = shown.split_whitespace().filter(|w| w.trim_start_matches('-') == "echo").collect();
    assert_eq!(echo, ["echo"], "the terminal's echo after Ctrl-C: {shown:?}");
    assert!(!shown.contains("half-typed"), "{shown:?}");
    assert!(!k.json(&["project", "show", "app"]).to_string().contains("TOKEN"), "a stopped command set the secret");
}
