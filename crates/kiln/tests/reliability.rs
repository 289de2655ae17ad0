//! Never lose a build: a chaos suite with real processes — agents killed,
//! frozen and drained, the server killed mid-build, cancel, output floods.

mod common;
use common::*;
use std::time::{Duration, Instant};

const SLOW_LINES: &str = "jobs:\n  slow:\n    steps:\n      - for i in $(seq 1 40); do echo \"line-$i\"; sleep 0.1; done\n";

fn lines_of(logs: &str, attempt_header: Option<&str>) -> Vec<String> {
    let text = match attempt_header {
        Some(h) => logs.split("── ").find(|s| s.starts_with(h)).unwrap_or("").to_string(),
        None => logs.to_string(),
    };
    text.lines().filter(|l| l.starts_with("line-")).map(str::to_string).collect()
}

fn want_lines() -> Vec<String> {
    (1..=40).map(|i| format!("line-{i}")).collect()
}

#[test]
fn killed_agent_job_runs_again_elsewhere_and_show_lists_both_attempts() {
    let mut k = Kiln::start_with(&["--lease", "3"]);
    let a1 = k.agent("a1", &[]);
    let repo = k.repo("r", SLOW_LINES);
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    k.wait_for("the job to run on a1", 10, || Kiln::job(&k.build(id), "slow")["status"] == "running");
    std::thread::sleep(Duration::from_millis(800));
    k.agent("a2", &[]);
    signal(a1, "-9");
    let died = Instant::now();
    k.wait_for("attempt 2 to start", 15, || Kiln::job(&k.build(id), "slow")["attempt"] == 2);
    let rerun_after = died.elapsed();
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed");
    let j = Kiln::job(&b, "slow");
    let attempts = j["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!((attempts[0]["agent"].as_str(), attempts[0]["status"].as_str()), (Some("a1"), Some("errored")));
    assert_eq!((attempts[1]["agent"].as_str(), attempts[1]["status"].as_str()), (Some("a2"), Some("passed")));
    let show = String::from_utf8_lossy(&k.kiln(&["show", &id.to_string()]).stdout).into_owned();
    assert!(show.contains("attempt 1 on a1: errored") && show.contains("attempt 2 on a2: passed"), "{show}");
    // Logs are kept per attempt and never mix: attempt 2 has every line once.
    let logs = k.logs(id);
    assert_eq!(lines_of(&logs, Some("slow (attempt 2")), want_lines());
    eprintln!("agent death -> job running elsewhere: {rerun_after:?} (lease 3 s)");
}

#[test]
fn frozen_agent_late_writes_are_refused_and_the_result_counts_once() {
    let mut k = Kiln::start_with(&["--lease", "3"]);
    let a1 = k.agent("a1", &["--heartbeat", "1"]);
    let repo = k.repo("r", "jobs:\n  j:\n    steps:\n      - for i in $(seq 1 30); do echo \"line-$i\"; sleep 0.1; done\n");
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    k.wait_for("the job to run on a1", 10, || Kiln::job(&k.build(id), "j")["status"] == "running");
    std::thread::sleep(Duration::from_millis(500));
    signal(a1, "-STOP");
    k.agent("a2", &["--heartbeat", "1"]);
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed");
    assert_eq!(Kiln::job(&b, "j")["agent"], "a2");
    signal(a1, "-CONT");
    // The thawed agent learns its attempt is stale and drops it: nothing changes.
    k.wait_for("a1 to report the refusal", 15, || {
        let log = k.agent_log("a1");
        log.contains("took it back") || log.contains("refused") || log.contains("asked to stop")
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = k.build(id);
    let j = Kiln::job(&after, "j");
    assert_eq!(after["status"], "passed");
    assert_eq!(j["attempt"], 2, "the job ran again exactly once");
    let passed: Vec<_> = j["attempts"].as_array().unwrap().iter().filter(|a| a["status"] == "passed").collect();
    assert_eq!(passed.len(), 1, "the result is counted once: {j:#}");
    assert_eq!(lines_of(&k.logs(id), Some("j (attempt 2")).len(), 30);
}

#[test]
fn server_killed_mid_build_completes_with_every_log_line_once_in_order() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    k.agent("a2", &[]);
    let repo = k.repo(
        "r",
        "jobs:\n  one:\n    steps:\n      - for i in $(seq 1 40); do echo \"line-$i\"; sleep 0.1; done\n  two:\n    steps:\n      - for i in $(seq 1 40); do echo \"line-$i\"; sleep 0.1; done\n",
    );
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    k.wait_for("both jobs running", 10, || k.build(id)["jobs"].as_array().unwrap().iter().all(|j| j["status"] == "running"));
    std::thread::sleep(Duration::from_millis(1200));
    k.kill_server();
    std::thread::sleep(Duration::from_millis(1500));
    k.restart_server();
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "passed");
    let logs = k.logs(id);
    for job in ["one", "two"] {
        assert_eq!(Kiln::job(&b, job)["attempt"], 1, "the job was not run twice");
        assert_eq!(lines_of(&logs, Some(&format!("{job} (attempt 1"))), want_lines(), "{job}");
    }
}

#[test]
fn fifty_builds_with_random_agent_kills_all_pass_once() {
    let seed: u64 = std::env::var("KILN_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("chaos seed {seed} (rerun with KILN_CHAOS_SEED={seed})");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut k = Kiln::start_with(&["--lease", "2"]);
    let names: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
    let mut pids: Vec<u32> = names.iter().map(|n| k.agent(n, &["--heartbeat", "1"])).collect();
    let repo = k.repo("chaos", "jobs:\n  a:\n    retries: 5\n    steps: [\"sleep 0.$((5 + RANDOM % 5))\", echo a-done]\n  b:\n    needs: [a]\n    retries: 5\n    steps: [\"sleep 0.5\", echo b-done]\n");
    k.add_project("chaos", &repo, &[]);
    let ids: Vec<i64> = (0..50).map(|_| k.trigger("chaos")).collect();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        let done = ids.iter().filter(|id| matches!(k.build(**id)["status"].as_str(), Some("passed" | "failed" | "errored" | "cancelled"))).count();
        if done == ids.len() {
            break;
        }
        // Bounded chaos: at most 15 kills, each followed by a restart under the same name.
        if kills < 15 && next() % 2 == 0 {
            let i = (next() % 3) as usize;
            signal(pids[i], "-9");
            kills += 1;
            std::thread::sleep(Duration::from_millis(100 + next() % 400));
            pids[i] = k.agent(&names[i], &["--heartbeat", "1"]);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut total_attempts = 0;
    for id in &ids {
        let b = k.wait_build(*id, 60);
        assert_eq!(b["status"], "passed", "seed {seed}: build {id} ended {}: {b:#}", b["status"]);
        for j in b["jobs"].as_array().unwrap() {
            let atts = j["attempts"].as_array().unwrap();
            total_attempts += atts.len();
            assert_eq!(atts.iter().filter(|a| a["status"] == "passed").count(), 1, "seed {seed}: job counted once: {j:#}");
        }
    }
    assert_eq!(k.json(&["builds", "chaos", "--limit", "100"]).as_array().unwrap().len(), 50, "no build lost or duplicated");
    eprintln!("chaos: 50/50 builds passed with {kills} agent kills, {total_attempts} attempts for 100 jobs (seed {seed})");
}

#[test]
fn sigterm_drains_and_a_second_sigterm_hands_the_job_back_at_once() {
    let mut k = Kiln::start_with(&["--lease", "30"]);
    let a1 = k.agent("a1", &[]);
    let repo = k.repo("r", "jobs:\n  j:\n    steps: [\"sleep 1.5\", echo drained-ok]\n");
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    k.wait_for("the job to run", 10, || Kiln::job(&k.build(id), "j")["status"] == "running");
    signal(a1, "-TERM");
    assert_eq!(k.agent_exit("a1", 20), Some(0), "a drained agent exits 0");
    let b = k.build(id);
    assert_eq!(b["status"], "passed", "the current job was finished and reported");
    // Second SIGTERM: the job goes back to the queue at once (not after the 30 s lease).
    let a2 = k.agent("a2", &[]);
    let repo2 = k.repo("r2", "jobs:\n  j:\n    steps: [\"sleep 20\"]\n");
    k.add_project("r2", &repo2, &[]);
    let id2 = k.trigger("r2");
    k.wait_for("the job to run on a2", 10, || Kiln::job(&k.build(id2), "j")["status"] == "running");
    signal(a2, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    signal(a2, "-TERM");
    let t = Instant::now();
    k.wait_for("the job to be queued again", 8, || Kiln::job(&k.build(id2), "j")["status"] == "queued");
    assert!(k.agent_exit("a2", 10).is_some());
    assert!(t.elapsed() < Duration::from_secs(8));
    k.agent("a3", &[]);
    k.wait_for("the job to run on a3", 10, || Kiln::job(&k.build(id2), "j")["agent"] == "a3");
}

#[test]
fn server_drain_request_stops_the_agent_after_its_job() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("r", "jobs:\n  j:\n    steps: [\"sleep 1\", echo ok]\n");
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    k.wait_for("the job to run", 10, || Kiln::job(&k.build(id), "j")["status"] == "running");
    assert!(k.kiln(&["drain", "a1"]).status.success());
    assert_eq!(k.agent_exit("a1", 20), Some(0));
    assert_eq!(k.build(id)["status"], "passed");
}

#[test]
fn cancel_stops_running_steps_within_two_seconds_and_skips_the_rest() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let marker = k.path("survivor");
    let repo = k.repo(
        "r",
        &format!("jobs:\n  long:\n    steps: [\"trap '' TERM; (sleep 4; touch {}) & sleep 60\"]\n  later:\n    needs: [long]\n    steps: [echo never]\n", marker.display()),
    );
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    k.wait_for("the job to run", 10, || Kiln::job(&k.build(id), "long")["status"] == "running");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert!(k.kiln(&["cancel", &id.to_string()]).status.success());
    k.wait_for("the job to be cancelled", 5, || Kiln::job(&k.build(id), "long")["status"] == "cancelled");
    let took = t.elapsed();
    let b = k.build(id);
    assert_eq!(b["status"], "cancelled");
    assert!(matches!(Kiln::job(&b, "later")["status"].as_str(), Some("cancelled" | "skipped")));
    assert!(took < Duration::from_millis(2500), "cancel took {took:?}");
    std::thread::sleep(Duration::from_secs(4));
    assert!(!marker.exists(), "a process of the cancelled step survived");
}

#[test]
fn a_newer_commit_cancels_the_running_build_when_asked() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("r", "jobs:\n  j:\n    steps: [\"sleep 30\"]\n");
    k.add_project("r", &repo, &["--cancel-superseded", "true"]);
    let old = k.trigger("r");
    k.wait_for("the first build to run", 10, || k.build(old)["status"] == "running");
    let new = k.trigger("r");
    k.wait_for("the first build to be cancelled", 5, || k.build(old)["status"] == "cancelled");
    k.wait_for("the newer build to run", 10, || k.build(new)["status"] == "running");
}

#[test]
fn an_output_flood_keeps_its_head_and_tail_with_a_marker_between() {
    let mut k = Kiln::start_with(&["--log-limit", "200000"]);
    k.agent("a1", &[]);
    let repo = k.repo("r", "jobs:\n  flood:\n    steps: [\"echo FIRST-LINE; yes 0123456789abcdef | head -c 20000000; echo LAST-LINE\", echo after-flood]\n");
    k.add_project("r", &repo, &[]);
    assert_eq!(k.kiln(&["trigger", "r", "--wait"]).status.code(), Some(0));
    let id = k.json(&["builds", "r"])[0]["id"].as_i64().unwrap();
    let b = k.build(id);
    let len = Kiln::job(&b, "flood")["attempts"][0]["log_len"].as_i64().unwrap();
    assert!(len < 210_000, "log kept {len} bytes past a 200 000 byte limit");
    let logs = k.logs(id);
    assert!(logs.contains("FIRST-LINE"), "the head is gone");
    assert!(logs.contains("LAST-LINE") && logs.contains("after-flood"), "the tail is gone");
    let marker = logs.lines().find(|l| l.starts_with("[kiln: ") && l.contains("bytes dropped here")).expect("no marker between head and tail");
    let dropped: u64 = marker.trim_start_matches("[kiln: ").split(' ').next().unwrap().parse().unwrap();
    assert!(dropped > 19_700_000 && dropped < 20_000_000, "{marker}");
    assert!(marker.contains("200000 byte limit"), "{marker}");
    let (head, tail) = logs.split_once(marker).unwrap();
    assert!(head.contains("FIRST-LINE") && tail.contains("LAST-LINE"));
    // While the job ran, a reader following the log saw why it stopped growing.
    let note = head.lines().rev().find(|l| !l.is_empty()).unwrap_or("");
    assert!(note.starts_with("[kiln: the log passed 100000 bytes of its 200000 byte limit") && note.contains("last 100000 bytes are kept"), "{note:?}");
}

/// Past its head a log waits on the agent until the job ends, but its last lines are live
/// meanwhile (`GET /api/v1/jobs/{id}/log/live`); when the job ends they are in the log.
#[test]
fn past_its_head_a_logs_last_lines_are_live_until_the_job_ends() {
    let mut k = Kiln::start_with(&["--log-limit", "200000"]);
    k.agent("a1", &[]);
    let repo = k.repo("r", "jobs:\n  flood:\n    steps: [\"yes 0123456789abcdef | head -c 300000; for i in $(seq 1 60); do echo live-line-$i; sleep 0.2; done\"]\n");
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    let auth = format!("Bearer {ADMIN}");
    let job = || Kiln::job(&k.build(id), "flood")["id"].as_i64().unwrap_or(0);
    let mut seen = serde_json::Value::Null;
    k.wait_for("the live tail", 60, || {
        let (s, body) = http("GET", &format!("{}/api/v1/jobs/{}/log/live", k.url, job()), &[("Authorization", &auth)], b"");
        seen = serde_json::from_str(&body).unwrap_or_default();
        s == 200 && seen["text"].as_str().is_some_and(|t| t.contains("live-line-3\n"))
    });
    assert_eq!(seen["live"], true, "{seen}");
    assert!(seen["past_head"].as_u64().unwrap() > 100_000, "counts what was printed past the head: {seen}");
    let text = seen["text"].as_str().unwrap();
    let start: String = text.chars().take(40).collect();
    assert!(text.len() <= kiln_wire::agent::LIVE_TAIL_MAX && text.len() > 30_000, "its last {} bytes: {start:?}", text.len());
    assert!(text.starts_with("0123456789abcdef\n"), "from a line's start: {start:?}");
    assert_eq!(k.build(id)["status"], "running", "seen while the job ran");
    let kept = k.logs(id);
    assert!(!kept.contains("live-line-"), "the log itself gets them when the job ends");
    let b = k.wait_build(id, 90);
    assert_eq!(b["status"], "passed", "{b}");
    assert!(k.logs(id).contains("live-line-60\n"), "the tail is in the log");
    let (_, body) = http("GET", &format!("{}/api/v1/jobs/{}/log/live", k.url, job()), &[("Authorization", &auth)], b"");
    assert!(body.contains(r#""live":false"#), "no live tail once the job is over: {body}");
}

#[test]
fn steps_can_report_status_that_the_agent_pushes_at_once() {
    let mut k = Kiln::start();
    k.agent("a1", &["--heartbeat", "10"]);
    let repo = k.repo("r", "jobs:\n  j:\n    steps: [\"echo '{\\\"phase\\\": \\\"migrating\\\"}' > $KILN_STATUS_FILE; sleep 4\"]\n");
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    k.wait_for("the job to run", 10, || Kiln::job(&k.build(id), "j")["status"] == "running");
    k.wait_for("the step's status in `kiln agents`", 3, || {
        let agents = k.json(&["agents"]);
        agents[0]["status"]["jobs"].as_object().is_some_and(|m| m.values().any(|j| j["status"]["phase"] == "migrating"))
    });
}

#[test]
fn agents_shows_an_agent_offline_when_its_heartbeats_stop() {
    let mut k = Kiln::start_with(&["--lease", "3"]);
    let a = k.agent("a1", &["--heartbeat", "1"]);
    k.wait_for("a1 online", 10, || k.json(&["agents"]).as_array().is_some_and(|v| v.iter().any(|x| x["name"] == "a1" && x["online"] == true)));
    signal(a, "-9");
    k.wait_for("a1 offline", 15, || k.json(&["agents"])[0]["online"] == false);
    let text = String::from_utf8_lossy(&k.kiln(&["agents"]).stdout).into_owned();
    assert!(text.contains("offline"), "{text}");
}
