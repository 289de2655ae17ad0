//! Notifications end to end: a real SMTP server receives the mail, a local HTTP
//! receiver checks webhook bodies, signatures and retries, a local forge records
//! commit statuses, and a server restart between a build's end and delivery
//! still delivers exactly once. Needs `ci/setup-notify.sh` (aiosmtpd).

mod common;
mod notify_support;

use common::*;
use notify_support::*;
use serde_json::Value;
use std::time::Duration;

const FAILING: &str = "jobs:\n  j:\n    steps: [\"echo about to fail\", \"false\"]\n";
/// Passes unless the repository holds a file named FAIL.
const SWITCH: &str = "jobs:\n  check:\n    steps: [\"test ! -f FAIL\"]\n";

fn deliveries(k: &Kiln, project: &str) -> Vec<Value> {
    k.json(&["project", "notifications", project]).as_array().unwrap().clone()
}

fn trigger_wait(k: &Kiln, project: &str) -> Value {
    let id = k.trigger(project);
    k.wait_build(id, 60)
}

#[test]
fn failure_mails_the_recipients_and_posts_a_signed_webhook_retried_after_a_500() {
    let smtp_dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(smtp_dir.path());
    let mut k = Kiln::start_with(&["--smtp-url", &smtp.url(), "--smtp-from", "CI <ci@example.test>"]);
    k.agent("a", &[]);
    // The receiver answers 500 to the first call, then 200.
    let hook = Recorder::start(|_, n| if n == 0 { 500 } else { 200 });
    let repo = k.repo("r", FAILING);
    k.add_project("r", &repo, &[]);
    let set = k.kiln(&[
        "project", "set", "r", "--notify-email", "team@example.test,lead@example.test", "--notify-on", "failure,fixed",
        "--notify-webhook", &hook.url("/hook"), "--notify-webhook-secret", "notifysecret",
    ]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let b = trigger_wait(&k, "r");
    assert_eq!(b["status"], "failed");
    let id = b["id"].as_i64().unwrap();

    let mail = smtp.wait_for(1, 30).remove(0);
    assert!(mail.contains("team@example.test") && mail.contains("lead@example.test"), "recipients missing:\n{mail}");
    assert!(mail.contains("From: CI <ci@example.test>"), "{mail}");
    assert!(mail.contains(&format!("Subject: [kiln] r #{id} failed on main")), "{mail}");
    for want in ["Project:  r", "Branch:   main", "Status:   failed", "Author:   tester", "Trigger:  manual by admin", "Failed:   first failure after ", "failed   j", &format!("/builds/{id}")] {
        assert!(mail.contains(want), "mail lacks {want:?}:\n{mail}");
    }
    assert!(mail.contains(&b["commit"].as_str().unwrap()[..10]), "{mail}");
    assert!(mail.contains("text/html"), "no HTML part:\n{mail}");

    let reqs = hook.wait_for("the webhook, retried after its 500", 30, 2, |_| true);
    assert_eq!(reqs.len(), 2, "{:#?}", summary(&reqs));
    assert_eq!((reqs[0].answered, reqs[1].answered), (500, 200));
    assert_eq!(reqs[0].body, reqs[1].body, "a retry must send the same body");
    assert_eq!(reqs[0].header("x-kiln-delivery"), reqs[1].header("x-kiln-delivery"));
    let r = &reqs[1];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook");
    let sig = r.header("x-kiln-signature-256").expect("no signature header");
    assert_eq!(sig, format!("sha256={}", hmac_hex("notifysecret", &r.body)));
    assert_eq!(r.header("x-kiln-event"), Some("build.finished"));
    let body = r.json();
    assert_eq!(body["event"], "build.finished");
    assert_eq!(body["reason"], "failure");
    assert_eq!(body["project"], "r");
    assert_eq!(body["build"]["id"], id);
    assert_eq!(body["build"]["status"], "failed");
    assert_eq!(body["build"]["commit"], b["commit"]);
    assert_eq!(body["build"]["jobs"][0]["key"], "j");
    assert_eq!(body["build"]["jobs"][0]["status"], "failed");
    assert!(body["build"]["url"].as_str().unwrap().ends_with(&format!("/builds/{id}")));
    assert!(body["failed_tests"].as_array().unwrap().is_empty());

    // The API shows both deliveries, the webhook with its two attempts.
    k.wait_for("both deliveries recorded as sent", 10, || deliveries(&k, "r").iter().all(|d| d["status"] == "sent"));
    let ds = deliveries(&k, "r");
    assert_eq!(ds.len(), 2, "{ds:#?}");
    let wh = ds.iter().find(|d| d["kind"] == "webhook").unwrap();
    assert_eq!(wh["attempts"], 2);
    assert_eq!(wh["build_status"], "failed");
    let em = ds.iter().find(|d| d["kind"] == "email").unwrap();
    assert_eq!(em["target"], "team@example.test,lead@example.test");
    assert_eq!(em["attempts"], 1);
    // Exactly one mail.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.messages().len(), 1);
}

/// A JUnit report as a test runner writes it: 2 passed, 1 skipped, 12 failing (the second an
/// error, the third with its text but no message attribute).
fn junit_report() -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuites><testsuite name=\"pytest\" tests=\"15\">\n");
    x.push_str("<testcase classname=\"tests.test_calc\" name=\"test_ok_1\" time=\"0.01\"/>\n<testcase classname=\"tests.test_calc\" name=\"test_ok_2\" time=\"0.02\"/>\n");
    x.push_str("<testcase classname=\"tests.test_calc\" name=\"test_skip\" time=\"0\"><skipped message=\"not here\"/></testcase>\n");
    for n in 1..=12 {
        let body = match n {
            2 => "<error message=\"RuntimeError: fixture db went away\"/>".to_string(),
            3 => "<failure>Traceback (most recent call last):\n  File \"tests/test_calc.py\", line 9\nValueError: bad input 03</failure>".to_string(),
            _ => format!("<failure message=\"AssertionError: expected 3 &lt; 2 &amp; {n:02}\">assert 3 &lt; 2</failure>"),
        };
        x.push_str(&format!("<testcase classname=\"tests.test_calc\" name=\"test_fail_{n:02}\" time=\"0.1\">{body}</testcase>\n"));
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}

#[test]
fn failure_mail_and_webhook_list_the_first_ten_failed_tests_with_their_messages() {
    let smtp_dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(smtp_dir.path());
    let mut k = Kiln::start_with(&["--smtp-url", &smtp.url()]);
    k.agent("a", &[]);
    let hook = Recorder::start(|_, _| 200);
    let repo = k.repo("t", "jobs:\n  unit:\n    steps: [\"cp report.xml \\\"$KILN_JUNIT_DIR/report.xml\\\"\", \"echo 12 failed; exit 1\"]\n");
    std::fs::write(repo.join("report.xml"), junit_report()).unwrap();
    commit_all(&repo, "tests");
    k.add_project("t", &repo, &["--notify-email", "team@example.test", "--notify-webhook", &hook.url("/hook")]);
    let b = trigger_wait(&k, "t");
    assert_eq!(b["status"], "failed");
    let id = b["id"].as_i64().unwrap();

    let (text, html) = mail_parts(&smtp.wait_for(1, 30).remove(0));
    for want in [
        "Tests:    2 passed, 11 failed, 1 errored, 1 skipped",
        "Failed tests (first 10 of 12):",
        "FAILED tests.test_calc::test_fail_01 (job unit)\n    AssertionError: expected 3 < 2 & 01\n",
        "ERRORED tests.test_calc::test_fail_02 (job unit)\n    RuntimeError: fixture db went away\n",
        "FAILED tests.test_calc::test_fail_03 (job unit)\n    Traceback (most recent call last):\n      File \"tests/test_calc.py\", line 9\n    ValueError: bad input 03\n",
        "tests.test_calc::test_fail_10",
    ] {
        assert!(text.contains(want), "the mail's text lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("test_fail_11") && !text.contains("test_ok_1"), "only the first ten failures:\n{text}");
    assert!(html.contains("AssertionError: expected 3 &lt; 2 &amp; 01") && html.contains("test_fail_10"), "the HTML part, escaped:\n{html}");
    assert!(!html.contains("3 < 2"), "unescaped message in the HTML part:\n{html}");

    let reqs = hook.wait_for("the webhook", 30, 1, |_| true);
    let body = reqs[0].json();
    assert_eq!(body["build"]["id"], id);
    let failed = body["failed_tests"].as_array().unwrap();
    assert_eq!(failed.len(), 10, "{body:#}");
    assert_eq!(failed[0]["id"], "tests.test_calc::test_fail_01");
    assert_eq!((failed[0]["suite"].as_str(), failed[0]["classname"].as_str(), failed[0]["name"].as_str()), (Some("pytest"), Some("tests.test_calc"), Some("test_fail_01")));
    assert_eq!((failed[0]["outcome"].as_str(), failed[0]["job"].as_str()), (Some("failed"), Some("unit")));
    assert_eq!(failed[0]["message"], "AssertionError: expected 3 < 2 & 01");
    assert_eq!((failed[1]["outcome"].as_str(), failed[1]["message"].as_str()), (Some("errored"), Some("RuntimeError: fixture db went away")));
    assert!(failed[2]["message"].as_str().unwrap().contains("ValueError: bad input 03"));
    assert_eq!(failed[9]["name"], "test_fail_10");
    let t = &body["tests"];
    assert_eq!((t["total"].as_u64(), t["passed"].as_u64(), t["failed"].as_u64(), t["errored"].as_u64(), t["skipped"].as_u64()), (Some(15), Some(2), Some(11), Some(1), Some(1)));
    let summary = body["text"].as_str().unwrap();
    assert!(summary.contains("failing tests: tests.test_calc::test_fail_01, tests.test_calc::test_fail_02, tests.test_calc::test_fail_03 and 9 more"), "{summary}");
}

#[test]
fn notify_on_failure_fixed_always_and_chat_payload() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let hook = Recorder::start(|_, _| 200);
    let repo = k.repo("s", SWITCH);
    k.add_project("s", &repo, &["--notify-webhook", &format!("{},slack+{}", hook.url("/json"), hook.url("/chat"))]);
    let mut n = 0;
    let mut fail = |on: bool| {
        n += 1;
        std::fs::write(repo.join("round"), n.to_string()).unwrap();
        if on {
            std::fs::write(repo.join("FAIL"), "x").unwrap();
        } else {
            let _ = std::fs::remove_file(repo.join("FAIL"));
        }
        commit_all(&repo, "switch");
    };
    // Default notify-on (failure, fixed): pass, fail, fail, pass (fixed), pass.
    let mut ids = Vec::new();
    for f in [false, true, true, false, false] {
        fail(f);
        let b = trigger_wait(&k, "s");
        assert_eq!(b["status"], if f { "failed" } else { "passed" });
        ids.push(b["id"].as_i64().unwrap());
    }
    let reqs = hook.wait_for("three notices on /json", 30, 3, |r| r.path == "/json");
    // Deliveries for later builds arrive after earlier builds were queued: nothing else is coming.
    std::thread::sleep(Duration::from_millis(700));
    let json: Vec<Value> = hook.requests().iter().filter(|r| r.path == "/json").map(Req::json).collect();
    let got: Vec<(i64, String)> = json.iter().map(|b| (b["build"]["id"].as_i64().unwrap(), b["reason"].as_str().unwrap().to_string())).collect();
    assert_eq!(got, vec![(ids[1], "failure".into()), (ids[2], "failure".into()), (ids[3], "fixed".into())], "{:#?}", summary(&reqs));
    assert_eq!(json[2]["build"]["previous_status"], "failed");
    assert!(hook.requests().iter().all(|r| r.header("x-kiln-signature-256").is_none()), "no secret, no signature");

    // The chat target got the same three, as {"text": …}.
    let chat: Vec<Value> = hook.requests().iter().filter(|r| r.path == "/chat").map(Req::json).collect();
    assert_eq!(chat.len(), 3);
    let text = chat[2]["text"].as_str().unwrap();
    assert!(text.contains(&format!("s #{} was fixed on main", ids[3])), "{text}");
    assert!(text.contains(&format!("/builds/{}", ids[3])), "{text}");
    assert_eq!(chat[0].as_object().unwrap().len(), 1, "a chat payload has only text: {}", chat[0]);
    assert!(chat[0]["text"].as_str().unwrap().contains("failed"));

    // always: every finished build, passes included; started: the start too.
    let set = k.kiln(&["project", "set", "s", "--notify-on", "always,started"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let b = trigger_wait(&k, "s");
    let id = b["id"].as_i64().unwrap();
    let reqs = hook.wait_for("the start and the pass", 30, 2, |r| r.path == "/json" && r.json()["build"]["id"] == id);
    let mine: Vec<Value> = reqs.iter().filter(|r| r.path == "/json").map(Req::json).filter(|b| b["build"]["id"] == id).collect();
    assert_eq!(mine[0]["event"], "build.started");
    assert_eq!(mine[0]["build"]["status"], "running");
    assert_eq!(mine[1]["event"], "build.finished");
    assert_eq!((mine[1]["reason"].as_str(), mine[1]["build"]["status"].as_str()), (Some("always"), Some("passed")));

    // A bad value is refused with its name.
    let bad = k.kiln(&["project", "set", "s", "--notify-on", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("sometimes"));
}

#[test]
fn commit_status_goes_to_github_and_gitea_shapes_and_a_bad_token_fails_visibly() {
    // The test forge listens on loopback: the admin puts it on the list of forge hosts.
    let mut k = Kiln::start_with(&["--notify-attempts", "2", "--forge-host", "127.0.0.1"]);
    k.agent("a", &[]);
    // The forge: 401 for the repository with the wrong token, 201 otherwise.
    let forge = Recorder::start(|r, _| if r.header("authorization") == Some("token wrongtok") { 401 } else { 201 });
    let ok = k.repo("gh", SWITCH);
    k.add_project("gh", &ok, &[
        "--commit-status", "github", "--forge-url", &forge.url("/api/v3"), "--forge-repo", "acme/app", "--secret", "GITHUB_TOKEN=ghtoken",
    ]);
    let bad = k.repo("gt", FAILING);
    k.add_project("gt", &bad, &[
        "--commit-status", "gitea", "--forge-url", &forge.url("/api/v1"), "--forge-repo", "acme/lib", "--secret", "GITEA_TOKEN=gttoken",
        "--status-context", "ci/kiln",
    ]);
    let b1 = trigger_wait(&k, "gh");
    assert_eq!(b1["status"], "passed");
    let b2 = trigger_wait(&k, "gt");
    assert_eq!(b2["status"], "failed");
    let (sha1, sha2) = (b1["commit"].as_str().unwrap(), b2["commit"].as_str().unwrap());

    let reqs = forge.wait_for("pending and final statuses of both builds", 30, 4, |_| true);
    let gh: Vec<&Req> = reqs.iter().filter(|r| r.path == format!("/api/v3/repos/acme/app/statuses/{sha1}")).collect();
    let gt: Vec<&Req> = reqs.iter().filter(|r| r.path == format!("/api/v1/repos/acme/lib/statuses/{sha2}")).collect();
    assert_eq!((gh.len(), gt.len()), (2, 2), "{:#?}", summary(&reqs));
    let states = |rs: &[&Req]| rs.iter().map(|r| r.json()["state"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(states(&gh), ["pending", "success"]);
    assert_eq!(states(&gt), ["pending", "failure"]);
    assert_eq!(gh[0].header("authorization"), Some("Bearer ghtoken"));
    assert_eq!(gh[0].header("accept"), Some("application/vnd.github+json"));
    assert_eq!(gt[1].header("authorization"), Some("token gttoken"));
    let last = gh[1].json();
    assert_eq!(last["context"], "kiln/gh");
    assert!(last["target_url"].as_str().unwrap().ends_with(&format!("/builds/{}", b1["id"])), "{last}");
    assert!(last["description"].as_str().unwrap().starts_with(&format!("build #{} passed", b1["id"])), "{last}");
    assert_eq!(gt[1].json()["context"], "ci/kiln");

    // A wrong token: the forge refuses, kiln retries, then records the failure; the build is untouched.
    let set = k.kiln(&["project", "set", "gt", "--secret", "GITEA_TOKEN=wrongtok"]);
    assert!(set.status.success());
    let b3 = trigger_wait(&k, "gt");
    assert_eq!(b3["status"], "failed", "the build's status is its own");
    let last_of_b3 = || deliveries(&k, "gt").into_iter().find(|d| d["build_id"] == b3["id"] && d["build_status"] == "failed");
    k.wait_for("the refused status to be recorded as failed", 30, || last_of_b3().is_some_and(|d| d["status"] == "failed"));
    let d = last_of_b3().unwrap();
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["target"], "gitea:acme/lib");
    let err = d["last_error"].as_str().unwrap();
    assert!(err.contains("401") && err.contains("gave up after 2 attempts"), "{err}");
    let text = String::from_utf8_lossy(&k.kiln(&["project", "notifications", "gt"]).stdout).into_owned();
    assert!(text.contains("failed") && text.contains("401"), "{text}");
    assert_eq!(k.build(b3["id"].as_i64().unwrap())["status"], "failed");
}

#[test]
fn a_restart_between_the_end_of_a_build_and_delivery_delivers_exactly_once() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    // The receiver is down while the build ends.
    let port = free_port();
    let repo = k.repo("d", FAILING);
    k.add_project("d", &repo, &["--notify-webhook", &format!("http://127.0.0.1:{port}/hook"), "--notify-webhook-secret", "s3"]);
    let b = trigger_wait(&k, "d");
    assert_eq!(b["status"], "failed");
    k.wait_for("a failed attempt to be recorded", 20, || {
        deliveries(&k, "d").first().is_some_and(|d| d["status"] == "pending" && d["attempts"].as_i64() >= Some(1) && !d["last_error"].is_null())
    });
    let d = deliveries(&k, "d");
    assert!(d[0]["last_error"].as_str().unwrap().contains("unreachable"), "{d:#?}");
    k.kill_server();
    let hook = Recorder::start_on(port, |_, _| 200);
    k.restart_server();
    let reqs = hook.wait_for("the delivery after the restart", 30, 1, |_| true);
    k.wait_for("the delivery to be recorded as sent", 10, || deliveries(&k, "d")[0]["status"] == "sent");
    // Let another pass or two of the notifier run: nothing more is sent.
    std::thread::sleep(Duration::from_secs(2));
    let reqs2 = hook.requests();
    assert_eq!(reqs2.len(), 1, "{:#?}", summary(&reqs2));
    assert_eq!(reqs[0].json()["build"]["id"], b["id"]);
    assert_eq!(reqs[0].header("x-kiln-signature-256").unwrap(), format!("sha256={}", hmac_hex("s3", &reqs[0].body)));
    assert_eq!(deliveries(&k, "d").len(), 1);

    // Another restart: the build is not notified again.
    k.restart_server();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.requests().len(), 1);
}

#[test]
fn plain_smtp_is_refused_to_a_remote_host() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(["--smtp-url", "smtp://mail.example.com:25", "--smtp-tls", "none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain SMTP is allowed only to localhost"), "{err}");
    let out = std::process::Command::new(BIN).args(["server", "--data"]).arg(dir.path()).args(["--smtp-user", "u"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--smtp-url"));
}

#[test]
fn a_failing_plain_job_sets_the_time_to_first_failure_in_the_build_show_builds_and_notices() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let hook = Recorder::start(|_, _| 200);
    // No `tests:` and no JUnit: the failed job alone is the first failure.
    let repo = k.repo("plain", "jobs:\n  lint:\n    steps:\n      - sleep 0.3\n      - exit 3\n");
    k.add_project("plain", &repo, &["--notify-webhook", &format!("{},slack+{}", hook.url("/json"), hook.url("/chat"))]);
    let b = trigger_wait(&k, "plain");
    assert_eq!(b["status"], "failed", "{b:#}");
    assert!(b.get("tests").is_none(), "no test results: {b:#}");
    let ms = b["first_failure_ms"].as_u64().unwrap_or_else(|| panic!("the build records its first failure: {b:#}"));
    assert!(ms >= 300, "the job failed after its 0.3 s step: {ms}");
    let id = b["id"].as_i64().unwrap().to_string();
    let show = String::from_utf8_lossy(&k.kiln(&["show", &id]).stdout).to_string();
    assert!(show.contains("; first failure after "), "{show}");
    let list = String::from_utf8_lossy(&k.kiln(&["builds", "plain"]).stdout).to_string();
    assert!(list.contains("; first failure after "), "{list}");
    hook.wait_for("the notice and the chat message", 30, 2, |_| true);
    let json: Value = hook.requests().iter().find(|r| r.path == "/json").map(Req::json).unwrap();
    assert_eq!(json["build"]["first_failure_ms"].as_u64(), Some(ms), "{json:#}");
    assert!(json["text"].as_str().unwrap().contains("did not pass: lint; first failure after "), "{json:#}");
    let chat: Value = hook.requests().iter().find(|r| r.path == "/chat").map(Req::json).unwrap();
    assert!(chat["text"].as_str().unwrap().contains("; first failure after "), "{chat:#}");

    // A passing build has none.
    std::fs::write(repo.join(".kiln.yml"), "jobs:\n  lint:\n    steps:\n      - true\n").unwrap();
    commit_all(&repo, "fixed");
    let b = trigger_wait(&k, "plain");
    assert_eq!(b["status"], "passed");
    assert!(b.get("first_failure_ms").is_none(), "{b:#}");
}
