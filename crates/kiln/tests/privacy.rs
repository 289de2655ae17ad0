//! What strangers never see: credentials in repository URLs, the token-bearing
//! paths of outgoing webhooks, recipients, and private projects' jobs in agents'
//! reported status.

mod common;
use common::*;

#[test]
fn anonymous_callers_see_no_credentials_recipients_or_private_jobs() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let public = k.repo("pub", "jobs:\n  j:\n    steps: [echo hi]\n");
    k.add_project("pub", &public, &["--public", "--notify-webhook", "https://hooks.slack.test/services/T000/SECRET-PATH", "--notify-email", "team@example.test"]);
    let secret = k.repo("sec", "jobs:\n  hidden-job:\n    steps: [\"echo '{\\\"phase\\\": \\\"private-phase\\\"}' > $KILN_STATUS_FILE; sleep 3\"]\n");
    k.add_project("sec", &secret, &["--private"]);
    assert!(k.kiln(&["project", "set", "pub", "--repo", "https://bob:hunter2@git.example.test/org/app.git"]).status.success());
    let anon = http("GET", &format!("{}/api/v1/projects", k.url), &[], b"").1;
    assert!(anon.contains("https://git.example.test/org/app.git"), "{anon}");
    for leak in ["hunter2", "SECRET-PATH", "team@example.test", "\"sec\""] {
        assert!(!anon.contains(leak), "anonymous project list shows {leak}: {anon}");
    }
    // Signed in, the recipients are there; the webhook path and password never are.
    let me = k.json(&["project", "show", "pub"]);
    assert_eq!(me["settings"]["notify_email"][0], "team@example.test");
    assert!(!me.to_string().contains("SECRET-PATH") && !me.to_string().contains("hunter2"));
    // A private job's reported status and id stay hidden from strangers.
    let id = k.trigger("sec");
    k.wait_for("the private job to report its status", 10, || k.json(&["agents"]).to_string().contains("private-phase"));
    let agents = http("GET", &format!("{}/api/v1/agents", k.url), &[], b"").1;
    assert!(!agents.contains("private-phase") && !agents.contains("hidden-job"), "{agents}");
    let page = http("GET", &format!("{}/agents", k.url), &[], b"").1;
    assert!(!page.contains("private-phase") && !page.contains("hidden-job"), "the agents page shows a private job's status");
    k.wait_build(id, 30);
}
