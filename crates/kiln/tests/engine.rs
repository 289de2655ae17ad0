//! The engine end to end: a real server, real agents, real git repositories.

mod common;
use common::*;

#[test]
fn passing_build_runs_needs_in_order_and_routes_by_label() {
    let mut k = Kiln::start();
    k.agent("plain", &[]);
    k.agent("py", &["--label", "python=3.12"]);
    let repo = k.repo(
        "ok",
        "jobs:\n  build:\n    steps:\n      - echo hello-from-kiln\n      - echo \"build-done $(date +%s%N)\"\n  test:\n    needs: [build]\n    requires: { python: \"3.12\" }\n    steps:\n      - echo \"ran-on-$KILN_AGENT_NAME ci=$CI project=$KILN_PROJECT branch=$KILN_BRANCH commit=$KILN_COMMIT shard=$KILN_SHARD_INDEX/$KILN_SHARD_COUNT\"\n",
    );
    k.add_project("ok", &repo, &[]);
    let out = k.kiln(&["trigger", "ok", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let id = k.json(&["builds", "ok"])[0]["id"].as_i64().unwrap();
    let b = k.build(id);
    assert_eq!(b["status"], "passed");
    let build = Kiln::job(&b, "build");
    let test = Kiln::job(&b, "test");
    assert_eq!(test["agent"], "py", "the job requiring python=3.12 must run on the labelled agent");
    assert!(test["started_at"].as_str().unwrap() >= build["finished_at"].as_str().unwrap(), "test started before build finished");
    let logs = k.logs(id);
    assert!(logs.contains("hello-from-kiln"));
    assert!(logs.contains(&format!("ran-on-py ci=true project=ok branch=main commit={}", b["commit"].as_str().unwrap())), "{logs}");
    assert!(logs.contains("shard=1/1"));
    for field in ["id", "project", "status", "branch", "commit", "trigger", "created_at", "started_at", "finished_at", "jobs"] {
        assert!(b.get(field).is_some(), "build JSON lacks {field}");
    }
}

#[test]
fn failing_step_fails_the_job_skips_later_steps_and_dependents() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("bad", "jobs:\n  build:\n    steps:\n      - echo before\n      - exit 3\n      - echo never-printed\n  after:\n    needs: [build]\n    steps: [echo never-either]\n  other:\n    steps: [echo independent-ran]\n");
    k.add_project("bad", &repo, &[]);
    let out = k.kiln(&["trigger", "bad", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    let id = k.json(&["builds", "bad"])[0]["id"].as_i64().unwrap();
    let b = k.build(id);
    assert_eq!(b["status"], "failed");
    let build = Kiln::job(&b, "build");
    assert_eq!(build["status"], "failed");
    assert_eq!(build["exit_code"], 3);
    assert_eq!(Kiln::job(&b, "after")["status"], "skipped");
    assert_eq!(Kiln::job(&b, "other")["status"], "passed");
    let logs = k.logs(id);
    assert!(logs.contains("before") && logs.contains("independent-ran"));
    assert!(!logs.contains("never-printed") && !logs.contains("never-either"));
}

#[test]
fn invalid_pipeline_errors_the_build_with_line_and_column() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("broken", "jobs:\n  build:\n    steps: [echo x]\n    needs: [nope]\n");
    k.add_project("broken", &repo, &[]);
    let out = k.kiln(&["trigger", "broken", "--wait"]);
    assert_eq!(out.status.code(), Some(2));
    let id = k.json(&["builds", "broken"])[0]["id"].as_i64().unwrap();
    let show = String::from_utf8_lossy(&k.kiln(&["show", &id.to_string()]).stdout).into_owned();
    assert!(show.contains("errored"), "{show}");
    assert!(show.contains(".kiln.yml:4:"), "no file:line:column in {show}");
    assert!(show.contains("nope"), "{show}");
    // Other builds go on.
    let good = k.repo("good", "jobs:\n  j:\n    steps: [echo fine]\n");
    k.add_project("good", &good, &[]);
    assert_eq!(k.kiln(&["trigger", "good", "--wait"]).status.code(), Some(0));
}

#[test]
fn missing_pipeline_file_errors_the_build() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("nofile", "jobs:\n  j:\n    steps: [echo x]\n");
    std::fs::remove_file(repo.join(".kiln.yml")).unwrap();
    std::fs::write(repo.join("README"), "x").unwrap();
    commit_all(&repo, "drop pipeline");
    k.add_project("nofile", &repo, &[]);
    assert_eq!(k.kiln(&["trigger", "nofile", "--wait"]).status.code(), Some(2));
    let id = k.json(&["builds", "nofile"])[0]["id"].as_i64().unwrap();
    let b = k.build(id);
    assert_eq!(b["status"], "errored");
    assert!(b["error"].as_str().unwrap().contains("no pipeline file .kiln.yml"), "{b:#}");
}

#[test]
fn step_past_its_timeout_is_killed_with_its_process_group() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let marker = k.path("grandchild-survived");
    let pipeline = format!(
        "jobs:\n  slow:\n    timeout: 1s\n    steps:\n      - (sleep 3; touch {}) & sleep 30\n",
        marker.display()
    );
    let repo = k.repo("slow", &pipeline);
    k.add_project("slow", &repo, &[]);
    let out = k.kiln(&["trigger", "slow", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    let id = k.json(&["builds", "slow"])[0]["id"].as_i64().unwrap();
    let b = k.build(id);
    let j = Kiln::job(&b, "slow");
    assert_eq!(j["status"], "failed");
    assert!(j["reason"].as_str().unwrap().contains("timed out after 1s"), "{j:#}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!marker.exists(), "a grandchild of the timed-out step kept running");
}

#[test]
fn job_waits_for_an_agent_with_the_required_labels() {
    let mut k = Kiln::start();
    k.agent("a", &["--label", "python=3.11"]);
    let repo = k.repo("lab", "jobs:\n  t:\n    requires: { python: \"3.12\" }\n    steps: [echo hi]\n");
    k.add_project("lab", &repo, &[]);
    let id = k.trigger("lab");
    k.wait_for("the job to be materialized", 10, || !k.build(id)["jobs"].as_array().unwrap().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let b = k.build(id);
    assert_eq!(Kiln::job(&b, "t")["status"], "queued");
    let show = String::from_utf8_lossy(&k.kiln(&["show", &id.to_string()]).stdout).into_owned();
    assert!(show.contains("no online agent has python=3.12; closest: a has"), "{show}");
    assert!(show.contains("python=3.11 but lacks python=3.12"), "{show}");
    k.agent("b", &["--label", "python=3.12"]);
    let b = k.wait_build(id, 30);
    assert_eq!(b["status"], "passed");
    assert_eq!(Kiln::job(&b, "t")["agent"], "b");
}

#[test]
fn logs_are_complete_and_in_order() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("many", "jobs:\n  j:\n    steps:\n      - for i in $(seq 1 20000); do echo \"line-$i\"; done\n      - for i in $(seq 1 5); do echo \"slow-$i\"; sleep 0.1; done\n");
    k.add_project("many", &repo, &[]);
    assert_eq!(k.kiln(&["trigger", "many", "--wait"]).status.code(), Some(0));
    let id = k.json(&["builds", "many"])[0]["id"].as_i64().unwrap();
    let logs = k.logs(id);
    let got: Vec<&str> = logs.lines().filter(|l| l.starts_with("line-") || l.starts_with("slow-")).collect();
    let want: Vec<String> = (1..=20000).map(|i| format!("line-{i}")).chain((1..=5).map(|i| format!("slow-{i}"))).collect();
    assert_eq!(got, want);
    // A reader that stops early (`| head`) is a normal end, not a crash.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("'{BIN}' logs {id} | head -1; exit ${{PIPESTATUS:-0}}"))
        .env("KILN_SERVER", &k.url)
        .env("KILN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn each_log_holds_only_its_own_job_and_no_spool_stays_on_the_agent() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("twice", "jobs:\n  j:\n    steps:\n      - for i in $(seq 1 3000); do echo \"run-$KILN_BUILD_ID-$i\"; done\n");
    k.add_project("twice", &repo, &[]);
    for _ in 0..2 {
        assert_eq!(k.kiln(&["trigger", "twice", "--wait"]).status.code(), Some(0));
    }
    for b in k.json(&["builds", "twice"]).as_array().unwrap() {
        let id = b["id"].as_i64().unwrap();
        let logs = k.logs(id);
        let runs: Vec<&str> = logs.lines().filter(|l| l.starts_with("run-")).collect();
        assert_eq!(runs.len(), 3000, "build {id}");
        assert!(runs.iter().all(|l| l.starts_with(&format!("run-{id}-"))), "build {id} holds another job's lines");
    }
    // A spool is the agent's copy of a log until the server has it: none outlives its job.
    let spool: Vec<_> = std::fs::read_dir(k.path("work-a/spool")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(spool.is_empty(), "{spool:?}");
}

#[test]
fn a_kept_job_folder_keeps_the_mount_point_its_sandbox_needs_under_tmp() {
    use std::os::unix::fs::MetadataExt;
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let work = std::path::absolute(k.path("work-a")).unwrap();
    let Ok(below) = work.strip_prefix("/tmp") else { panic!("this test needs its agent's work folder under /tmp, not {}", work.display()) };
    let stub = below.components().next().unwrap().as_os_str().to_owned();
    let repo = k.repo("kept", "jobs:\n  j:\n    steps:\n      - \"true\"\n");
    k.add_project("kept", &repo, &[]);
    let mut inodes = Vec::new();
    for _ in 0..3 {
        assert_eq!(k.kiln(&["trigger", "kept", "--wait"]).status.code(), Some(0));
        let kept: Vec<_> = std::fs::read_dir(work.join("reuse")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "tmp")).collect();
        assert_eq!(kept.len(), 1, "one kept folder, reused: {kept:?}");
        // The inode and its birth time: a folder made again may get the same inode number.
        let m = std::fs::metadata(kept[0].join(&stub)).unwrap();
        inodes.push((m.ino(), m.created().unwrap()));
    }
    assert!(inodes.windows(2).all(|w| w[0] == w[1]), "the mount point was made again: {inodes:?}");
}

#[test]
fn logs_follow_streams_while_the_step_runs() {
    let mut k = Kiln::start();
    // Unsandboxed, so the step can wait for a file the test makes once it has seen tick-1.
    k.agent("a", &["--isolation", "none"]);
    let seen = k.path("seen-tick-1");
    let step = format!("echo tick-1; n=0; while [ ! -e {s} ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; for i in 2 3 4 5 6; do echo \"tick-$i\"; done", s = seen.display());
    let repo = k.repo("live", &format!("jobs:\n  j:\n    steps:\n      - '{step}'\n"));
    k.add_project("live", &repo, &[]);
    let id = k.trigger("live");
    let mut follow = std::process::Command::new(BIN)
        .args(["logs", &id.to_string(), "--follow"])
        .env("KILN_SERVER", &k.url)
        .env("KILN_TOKEN", ADMIN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        text += &line;
        text.push('\n');
        if line.contains("tick-1") {
            break;
        }
    }
    // The first line is printed while the step still waits: streamed, not at the end.
    assert_eq!(k.build(id)["status"], "running", "tick-1 came only once the build was over:\n{text}");
    std::fs::write(&seen, "").unwrap();
    for line in lines {
        text += &line.unwrap();
        text.push('\n');
    }
    assert!(follow.wait().unwrap().success());
    for i in 1..=6 {
        assert!(text.contains(&format!("tick-{i}")), "{text}");
    }
    assert_eq!(k.build(id)["status"], "passed", "logs --follow returns once the build is over");
}

#[test]
fn wrong_agent_token_is_refused_and_the_agent_exits_non_zero() {
    let k = Kiln::start();
    let out = std::process::Command::new(BIN)
        .args(["agent", "--server", &k.url, "--token", "wrong", "--name", "x", "--work-dir"])
        .arg(k.path("w"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong agent registration token"), "{err}");
}

#[test]
fn unknown_project_or_build_exits_2_with_one_line() {
    let k = Kiln::start();
    for args in [vec!["trigger", "nope"], vec!["show", "999"], vec!["builds", "nope"], vec!["logs", "999"]] {
        let out = k.kiln(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("not found"), "{err}");
    }
}

#[test]
fn check_prints_each_error_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yml");
    std::fs::write(&f, "jobs:\n  a:\n    stepz: [x]\n  b:\n    steps: [y]\n    timeout: forever\n").unwrap();
    let out = std::process::Command::new(BIN).arg("check").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.yml:3:5:") && err.contains("stepz"), "{err}");
    assert!(err.contains("p.yml:6:"), "{err}");
    std::fs::write(&f, "jobs:\n  a:\n    steps: [x]\n").unwrap();
    let out = std::process::Command::new(BIN).arg("check").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_daemon_left_behind_by_a_step_does_not_hold_the_job_open() {
    let mut k = Kiln::start();
    // Unsandboxed: in the sandbox the daemon dies with its step's PID namespace
    // (tests/isolation.rs); without it, it outlives the step and must not hold the job.
    k.agent("a", &["--isolation", "none"]);
    // `setsid` leaves the step's process group but keeps the step's output open.
    let repo = k.repo("daemon", "jobs:\n  j:\n    steps: [\"setsid sleep 141.17 & sleep 0.5\", echo left-a-daemon]\n");
    k.add_project("daemon", &repo, &[]);
    let out = k.kiln(&["trigger", "daemon", "--wait"]);
    // The job ended while the daemon still runs (it did not wait for the daemon to exit).
    let alive = std::process::Command::new("pgrep").args(["-f", "sleep 141.17"]).output().unwrap().status.success();
    let _ = std::process::Command::new("pkill").args(["-f", "sleep 141.17"]).status();
    assert!(alive, "the job waited for the daemon to exit");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let id = k.json(&["builds", "daemon"])[0]["id"].as_i64().unwrap();
    assert!(k.logs(id).contains("left-a-daemon"));
}

#[test]
fn an_agent_with_concurrency_two_runs_two_jobs_at_once() {
    let mut k = Kiln::start();
    k.agent("wide", &["--concurrency", "2"]);
    let repo = k.repo("pair", "jobs:\n  a:\n    steps: [\"sleep 2\"]\n  b:\n    steps: [\"sleep 2\"]\n");
    k.add_project("pair", &repo, &[]);
    let id = k.trigger("pair");
    k.wait_for("both jobs running on the one agent", 10, || {
        let b = k.build(id);
        b["jobs"].as_array().is_some_and(|js| js.len() == 2 && js.iter().all(|j| j["status"] == "running" && j["agent"] == "wide"))
    });
    assert_eq!(k.wait_build(id, 30)["status"], "passed");
}
