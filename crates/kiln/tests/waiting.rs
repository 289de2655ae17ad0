//! "Why is it waiting?" end to end: the API's `waiting` on queued jobs and `kiln show`, for
//! each reason the fleet can give (the reasons themselves: kiln_core::waiting's tests).

mod common;

use common::*;
use serde_json::Value;

fn waiting(k: &Kiln, id: i64, key: &str) -> Value {
    Kiln::job(&k.build(id), key)["waiting"].clone()
}

fn wait_reason(k: &Kiln, id: i64, key: &str, reason: &str) -> Value {
    k.wait_for(&format!("job {key} waiting with reason {reason}"), 20, || waiting(k, id, key)["reason"] == reason);
    waiting(k, id, key)
}

#[test]
fn every_reason_a_queued_job_gives() {
    let mut k = Kiln::start();
    k.agent("slow", &["--label", "pool=a"]);
    // `first` holds the only pool=a agent; `after` needs it; `more` waits for the busy agent.
    let repo = k.repo(
        "w",
        "jobs:\n  first:\n    requires: {pool: a}\n    steps: [\"sleep 30\"]\n  after:\n    needs: [first]\n    requires: {pool: a}\n    steps: [\"true\"]\n  more:\n    requires: {pool: a}\n    steps: [\"true\"]\n  gpu:\n    requires: {gpu: \"yes\"}\n    steps: [\"true\"]\n",
    );
    k.add_project("w", &repo, &["--public"]);
    let id = k.trigger("w");
    k.wait_for("first running", 30, || Kiln::job(&k.build(id), "first")["status"] == "running");
    let first_id = Kiln::job(&k.build(id), "first")["id"].as_i64().unwrap();

    let w = wait_reason(&k, id, "after", "needs");
    assert_eq!(w["message"], "waiting for first (running) to pass");

    let w = wait_reason(&k, id, "more", "busy");
    assert_eq!(w["message"], format!("1 matching agent is busy: slow (job #{first_id})"));
    assert_eq!(w["agents"], serde_json::json!(["slow"]));

    let w = wait_reason(&k, id, "gpu", "no_agent");
    let msg = w["message"].as_str().unwrap();
    assert!(msg.starts_with("no online agent has gpu=yes; closest: slow has "), "{msg}");
    assert!(msg.contains("pool=a") && msg.ends_with(" but lacks gpu=yes"), "{msg}");

    let show = String::from_utf8_lossy(&k.kiln(&["show", &id.to_string()]).stdout).into_owned();
    assert!(show.contains(&format!("1 matching agent is busy: slow (job #{first_id})")), "{show}");
    assert!(show.contains("waiting for first (running) to pass"), "{show}");

    // The console says the same on the queue page and the build page.
    let (status, queue) = http("GET", &format!("{}/queue", k.url), &[], b"");
    assert_eq!(status, 200);
    assert!(queue.contains(&format!("1 matching agent is busy: slow (job #{first_id})")), "{queue}");
    let (status, page) = http("GET", &format!("{}/builds/{id}", k.url), &[], b"");
    assert_eq!(status, 200);
    assert!(page.contains("waiting for first (running) to pass"), "{page}");

    // A second pool=a agent that drains: `more` still waits on the busy one, then on nobody.
    // Registered over the protocol, it claims nothing before it is drained (a real agent could
    // take `gpu` first).
    let body = format!(r#"{{"name":"drainer","labels":{{"pool":"a","gpu":"yes"}},"concurrency":1,"protocol":{}}}"#, kiln_wire::PROTOCOL_VERSION);
    let (status, answer) = http("POST", &format!("{}/api/v1/agent/register", k.url), &[("Authorization", &format!("Bearer {AGENT_TOKEN}")), ("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let out = k.kiln(&["drain", "drainer"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let w = wait_reason(&k, id, "gpu", "draining");
    assert_eq!(w["message"], "the agents that match are draining: drainer");
    // Running jobs have no reason.
    assert!(Kiln::job(&k.build(id), "first")["waiting"].is_null());
    let out = k.kiln(&["cancel", &id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
