//! Quarantine of flaky tests end to end, on a real server and agent: a test flaky enough is
//! quarantined automatically with the runs that caused it; its failure then does not fail the
//! build (the results show it failed and quarantined); after N clean runs in a row it is
//! released and fails builds again. Quarantining by hand needs the maintainer role.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A runner whose tests do what the file `modes/TEST` says: `pass`, `fail`, or `flaky` (fails
/// the first time, while `modes/TEST.once` is missing, then passes).
fn runner(repo: &Path, modes: &Path) {
    std::fs::create_dir_all(modes).unwrap();
    std::fs::write(
        repo.join("run.sh"),
        format!(
            r#"for t in "$@"; do
  mode=$(cat {m}/$t 2>/dev/null || echo pass)
  body=''
  if [ "$mode" = fail ]; then body='<failure message="broken"/>'; fi
  if [ "$mode" = flaky ] && [ ! -e {m}/$t.once ]; then touch {m}/$t.once; body='<failure message="wobbled"/>'; fi
  echo "<testsuite><testcase classname=\"n\" name=\"$t\" time=\"0.01\">$body</testcase></testsuite>" > "$KILN_JUNIT_DIR/$t.xml"
done
"#,
            m = modes.display()
        ),
    )
    .unwrap();
    commit_all(repo, "run.sh");
}

fn mode(modes: &Path, test: &str, m: &str) {
    std::fs::write(modes.join(test), m).unwrap();
    let _ = std::fs::remove_file(modes.join(format!("{test}.once")));
}

fn flakiest(k: &Kiln) -> Value {
    k.json(&["tests", "q", "--flakiest"])
}

fn quarantined(k: &Kiln) -> Vec<String> {
    flakiest(k)["quarantine"]["quarantined"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// The final result of `test` in build `id`.
fn result(k: &Kiln, id: i64, test: &str) -> Value {
    let t = k.json(&["show", &id.to_string(), "--tests"]);
    t["tests"].as_array().unwrap().iter().find(|x| x["key"] == test && x["is_final"] == true).cloned().unwrap_or_else(|| panic!("{test} in {t:#}"))
}

fn job_id(b: &Value) -> i64 {
    b["jobs"][0]["id"].as_i64().unwrap()
}

/// A server quarantining at 50 % flaky over 4 runs from the first run, releasing after 2 clean
/// ones (plus `extra` flags); project "q" whose `tests:` job (one retry) lists `list` and runs
/// the runner; one unsandboxed agent (the runner reads its modes from outside the job's folder).
/// Returns the server, the modes folder and the repository.
fn quarantining(extra: &[&str], list: &str) -> (Kiln, PathBuf, PathBuf) {
    let flags = [&["--quarantine-flaky-rate", "0.5", "--quarantine-window", "4", "--quarantine-min-runs", "1", "--quarantine-release-after", "2"][..], extra].concat();
    let mut k = Kiln::start_with(&flags);
    let modes = k.path("modes");
    let repo = k.repo("q", &format!("jobs:\n  suite:\n    tests:\n      retries: 1\n      list: \"{list}\"\n      run: sh run.sh {{tests}}\n"));
    runner(&repo, &modes);
    k.add_project("q", &repo, &[]);
    k.agent("a1", &["--isolation", "none"]);
    (k, modes, repo)
}

#[test]
fn a_flaky_test_is_quarantined_does_not_fail_builds_and_is_released_after_clean_runs() {
    let (k, modes, _) = quarantining(&[], "echo t_wobbly; echo t_solid");

    // Build 1: t_wobbly fails, then passes on its retry: flaky (the build passes), and flaky in
    // 1 of its 1 runs ≥ 50 %: quarantined, with this build's run as the evidence.
    mode(&modes, "t_wobbly", "flaky");
    let b1 = k.trigger("q");
    let build1 = k.wait_build(b1, 90);
    assert_eq!(build1["status"], "passed", "{build1:#}");
    assert_eq!(result(&k, b1, "t_wobbly")["flaky"], true);
    assert_eq!(quarantined(&k), vec!["t_wobbly"]);
    let f = flakiest(&k);
    let c = &f["quarantine"]["changes"][0];
    assert_eq!((c["test"].as_str(), c["change"].as_str(), c["cause"].as_str()), (Some("t_wobbly"), Some("quarantined"), Some("auto")), "{f:#}");
    assert_eq!(c["builds"], serde_json::json!([b1]));
    assert_eq!(c["jobs"], serde_json::json!([job_id(&build1)]));
    assert!(c["reason"].as_str().unwrap().contains("flaky in 1 of its last 1 runs"), "{c:#}");
    let row = f["tests"].as_array().unwrap().iter().find(|t| t["key"] == "t_wobbly").cloned().unwrap();
    assert_eq!(row["quarantined"], true, "{f:#}");
    // The text form names the change and its runs.
    let text = String::from_utf8_lossy(&k.kiln(&["tests", "q", "--flakiest"]).stdout).into_owned();
    assert!(text.contains("quarantined now: t_wobbly") && text.contains(&format!("runs: #{b1} (job {})", job_id(&build1))), "{text}");

    // Build 2: t_wobbly fails both tries; quarantined, it does not fail the build, and the
    // results show it failed and quarantined. A test not quarantined still fails builds
    // (build 5 below).
    mode(&modes, "t_wobbly", "fail");
    let b2 = k.trigger("q");
    let build2 = k.wait_build(b2, 90);
    assert_eq!(build2["status"], "passed", "only a quarantined test failed: {build2:#}");
    let r = result(&k, b2, "t_wobbly");
    assert_eq!((r["outcome"].as_str(), r["quarantined"].as_bool()), (Some("failed"), Some(true)), "{r:#}");
    assert_eq!(result(&k, b2, "t_solid")["quarantined"], false);
    assert!(k.logs(b2).contains("quarantined, failed without failing the job: t_wobbly"));
    let shown = String::from_utf8_lossy(&k.kiln(&["show", &b2.to_string(), "--tests"]).stdout).into_owned();
    assert!(shown.contains("FAILED QUARANTINED t_wobbly"), "{shown}");
    let (status, fragment) = http("GET", &format!("{}/builds/{b2}/tests", k.url), &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert_eq!(status, 200);
    assert!(fragment.contains("tag quarantined"), "the build page marks the quarantined failure: {fragment}");
    assert_eq!(quarantined(&k), vec!["t_wobbly"], "a failure is no clean run");

    // Builds 3 and 4: clean; after the second clean run in a row it is released, with those
    // two runs as the evidence.
    mode(&modes, "t_wobbly", "pass");
    let b3 = k.trigger("q");
    assert_eq!(k.wait_build(b3, 90)["status"], "passed");
    assert_eq!(quarantined(&k), vec!["t_wobbly"], "one clean run is not enough");
    let b4 = k.trigger("q");
    assert_eq!(k.wait_build(b4, 90)["status"], "passed");
    assert!(quarantined(&k).is_empty());
    let f = flakiest(&k);
    let c = &f["quarantine"]["changes"][0];
    assert_eq!((c["change"].as_str(), c["cause"].as_str(), c["reason"].as_str()), (Some("released"), Some("auto"), Some("2 clean runs in a row")), "{f:#}");
    assert_eq!(c["builds"], serde_json::json!([b4, b3]));

    // Build 5: released, its failure fails the build again.
    mode(&modes, "t_wobbly", "fail");
    let b5 = k.trigger("q");
    assert_eq!(k.wait_build(b5, 90)["status"], "failed");
    assert_eq!(result(&k, b5, "t_wobbly")["quarantined"], false);

    // The console's tests page shows the quarantine's changes and the builds behind them.
    let (status, page) = http("GET", &format!("{}/projects/q/tests", k.url), &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert_eq!(status, 200);
    assert!(page.contains("t_wobbly") && page.contains("released") && page.contains(&format!("/builds/{b1}")), "{page}");
}

#[test]
fn quarantine_settings_out_of_range_stop_the_server_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (args, word) in [
        (vec!["--quarantine-window", "0"], "window"),
        (vec!["--quarantine-flaky-rate", "1.5"], "flaky_rate"),
        (vec!["--quarantine-window", "4", "--quarantine-min-runs", "5"], "min_runs"),
        (vec!["--quarantine-release-after", "0"], "release_after"),
    ] {
        let toml = dir.path().join("kiln.toml");
        std::fs::write(&toml, format!("data = \"{}\"\n", dir.path().join("data").display())).unwrap();
        let mut a = vec!["server", "--config", toml.to_str().unwrap(), "--listen", "127.0.0.1:0"];
        a.extend(args);
        let out = std::process::Command::new(BIN).args(&a).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(word) && err.contains("[quarantine]"), "{word}: {err}");
    }
    // The same keys in kiln.toml's [quarantine] table.
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "[quarantine]\nflaky_rate = 0.5\nwindow = 3\nmin_runs = 4\nrelease_after = 2\n").unwrap();
    let out = std::process::Command::new(BIN).args(["server", "--config", toml.to_str().unwrap(), "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("min_runs 4 must be 1 to the window (3)"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn quarantining_by_hand_needs_the_maintainer_role() {
    let k = Kiln::start();
    let repo = k.repo("hand", "jobs:\n  a:\n    steps:\n      - true\n");
    k.add_project("hand", &repo, &["--private"]);
    let token = |name: &str, role: &str| {
        assert!(k.kiln(&["user", "add", name]).status.success());
        assert!(k.kiln(&["project", "grant", "hand", name, role]).status.success());
        k.json(&["token", "create", "--user", name])["token"].as_str().unwrap().to_string()
    };
    let vic = token("vic", "viewer");
    let mia = token("mia", "maintainer");
    let as_user = |t: &str, args: &[&str]| std::process::Command::new(BIN).args(args).env("KILN_SERVER", &k.url).env("KILN_TOKEN", t).output().unwrap();

    // A viewer gets 403 naming the role.
    let (status, body) = http(
        "POST",
        &format!("{}/api/v1/projects/hand/quarantine", k.url),
        &[("Authorization", &format!("Bearer {vic}")), ("Content-Type", "application/json")],
        br#"{"test":"t_slow"}"#,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("maintainer"), "{body}");
    let out = as_user(&vic, &["tests", "quarantine", "hand", "t_slow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maintainer"), "{}", String::from_utf8_lossy(&out.stderr));

    // A maintainer quarantines, recorded as by them with the reason; twice is a clear 409.
    let out = as_user(&mia, &["tests", "quarantine", "hand", "t_slow", "--reason", "times out on CI"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_user(&mia, &["tests", "quarantine", "hand", "t_slow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already quarantined"), "{}", String::from_utf8_lossy(&out.stderr));
    // Anyone who sees the project sees the quarantine.
    let f: Value = serde_json::from_slice(&as_user(&vic, &["tests", "hand", "--flakiest", "--json"]).stdout).unwrap();
    assert_eq!(f["quarantine"]["quarantined"], serde_json::json!(["t_slow"]));
    let c = &f["quarantine"]["changes"][0];
    assert_eq!((c["cause"].as_str(), c["by"].as_str(), c["reason"].as_str()), (Some("manual"), Some("mia"), Some("times out on CI")), "{f:#}");
    // The viewer cannot release it either; the maintainer can.
    assert_eq!(as_user(&vic, &["tests", "release", "hand", "t_slow"]).status.code(), Some(2));
    assert!(as_user(&mia, &["tests", "release", "hand", "t_slow"]).status.success());
    let f: Value = serde_json::from_slice(&as_user(&vic, &["tests", "hand", "--flakiest", "--json"]).stdout).unwrap();
    assert_eq!(f["quarantine"]["quarantined"], serde_json::json!([]));
    assert_eq!((f["quarantine"]["changes"][0]["change"].as_str(), f["quarantine"]["changes"][0]["by"].as_str()), (Some("released"), Some("mia")));
    let out = as_user(&mia, &["tests", "release", "hand", "t_slow"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not quarantined"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Trigger a build of `branch` (or of the default branch at `commit`) and wait for it.
fn build_on(k: &Kiln, branch: &str, commit: Option<&str>) -> (i64, Value) {
    let a = match commit {
        Some(c) => vec!["trigger", "q", "--commit", c],
        None => vec!["trigger", "q", "--branch", branch],
    };
    let id = k.json(&a)["id"].as_i64().unwrap();
    (id, k.wait_build(id, 90))
}

#[test]
fn only_builds_of_the_default_branch_quarantine_or_release_a_test() {
    let (k, modes, repo) = quarantining(&[], "echo t_wobbly; echo t_solid");
    // A developer's branch, at main's commit for now.
    git(&repo, &["branch", "topic"]);
    mode(&modes, "t_wobbly", "flaky");
    let flaky_in = |k: &Kiln, id: i64, b: &Value| {
        assert_eq!(b["status"], "passed", "{b:#}");
        assert_eq!(result(k, id, "t_wobbly")["flaky"], true, "build {id}");
        mode(&modes, "t_wobbly", "flaky");
    };

    // Flaky on the developer's branch, again and again (even at a commit main has): above the
    // rate with enough runs, but no build of it is evidence.
    for _ in 0..3 {
        let (id, b) = build_on(&k, "topic", None);
        flaky_in(&k, id, &b);
    }
    assert!(quarantined(&k).is_empty(), "a feature branch's flaky runs quarantined a test for every branch");
    // A build labelled main at a commit only the developer's branch has is not evidence either.
    git(&repo, &["checkout", "-q", "topic"]);
    std::fs::write(repo.join("topic.txt"), "mine").unwrap();
    let topic_only = commit_all(&repo, "topic");
    git(&repo, &["checkout", "-q", "main"]);
    let (id, b) = build_on(&k, "main", Some(&topic_only));
    assert_eq!((b["branch"].as_str(), b["commit"].as_str()), (Some("main"), Some(topic_only.as_str())), "{b:#}");
    flaky_in(&k, id, &b);
    assert!(quarantined(&k).is_empty(), "a commit off the default branch counted");
    // Nor is an uploaded run (on the project's default branch and its head's pipeline, with the
    // uploader's files).
    let out = std::process::Command::new(BIN).args(["submit", "q", "run.sh", "--wait"]).current_dir(&repo).env("KILN_SERVER", &k.url).env("KILN_TOKEN", ADMIN).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let up = builds(&k, "q")[0].clone();
    let main_head = String::from_utf8(std::process::Command::new("git").arg("-C").arg(&repo).args(["rev-parse", "main"]).output().unwrap().stdout).unwrap();
    assert_eq!((up["trigger"].as_str(), up["commit"].as_str()), (Some("upload"), Some(main_head.trim())), "{up:#}");
    flaky_in(&k, up["id"].as_i64().unwrap(), &up);
    assert!(quarantined(&k).is_empty(), "an uploaded run counted");

    // Nor is a build of main at an older commit of main (`--commit`): one where the test used
    // to wobble, or a clean one from before, could be built again and again.
    let old_main = main_head.trim().to_string();
    std::fs::write(repo.join("later.txt"), "later").unwrap();
    commit_all(&repo, "later on main");
    let (id, b) = build_on(&k, "main", Some(&old_main));
    assert_eq!((b["branch"].as_str(), b["commit"].as_str()), (Some("main"), Some(old_main.as_str())), "{b:#}");
    flaky_in(&k, id, &b);
    assert!(quarantined(&k).is_empty(), "an older commit of the default branch counted");

    // The same on the default branch: quarantined, with exactly that run as evidence.
    let (m1, b) = build_on(&k, "main", None);
    flaky_in(&k, m1, &b);
    assert_eq!(quarantined(&k), vec!["t_wobbly"]);
    let f = flakiest(&k);
    let c = &f["quarantine"]["changes"][0];
    assert_eq!(c["builds"], serde_json::json!([m1]), "{f:#}");
    assert!(c["reason"].as_str().unwrap().contains("flaky in 1 of its last 1 runs"), "{c:#}");

    // Clean runs on the developer's branch do not release it either.
    mode(&modes, "t_wobbly", "pass");
    for _ in 0..2 {
        assert_eq!(build_on(&k, "topic", None).1["status"], "passed");
    }
    assert_eq!(quarantined(&k), vec!["t_wobbly"], "a feature branch's clean runs released a test");
}

#[test]
fn another_agents_list_call_is_refused_before_any_build_is_judged() {
    let mut k = Kiln::start();
    let repo = k.repo("q", "jobs:\n  suite:\n    tests:\n      list: \"echo t_solid\"\n      run: sh run.sh {tests}\n");
    runner(&repo, &k.path("modes"));
    k.add_project("q", &repo, &[]);
    k.agent("a1", &["--isolation", "none"]);
    // A finished build with results, not judged yet (nothing has read the quarantine).
    let b1 = k.trigger("q");
    assert_eq!(k.wait_build(b1, 90)["status"], "passed");
    // The next build holds its agent in a plain job.
    std::fs::write(repo.join(".kiln.yml"), "jobs:\n  hold:\n    steps:\n      - sleep 30\n").unwrap();
    commit_all(&repo, "hold");
    let b2 = k.trigger("q");
    k.wait_for("the job to run", 60, || k.build(b2)["jobs"][0]["status"] == "running");
    let job = k.build(b2)["jobs"][0]["id"].as_i64().unwrap();

    // Another agent names that job in a list call: refused, and no build was judged for it.
    let reg = common::http::send(
        &k.url,
        "POST",
        "/api/v1/agent/register",
        &[("Authorization", &format!("Bearer {AGENT_TOKEN}")), ("Content-Type", "application/json")],
        serde_json::json!({"name": "rogue", "labels": {"none": "matches"}, "concurrency": 1, "protocol": kiln_wire::PROTOCOL_VERSION}).to_string().as_bytes(),
        false,
    );
    assert_eq!(reg.status, 200, "{}", reg.text());
    let rogue: Value = serde_json::from_slice(&reg.body).unwrap();
    let (status, body) = http(
        "POST",
        &format!("{}/api/v1/agent/jobs/{job}/tests/list", k.url),
        &[("Authorization", &format!("Bearer {}", rogue["token"].as_str().unwrap())), ("Content-Type", "application/json")],
        br#"{"attempt": 1, "ids": ["t_forged"]}"#,
    );
    assert_eq!(status, 403, "{body}");
    let judged = std::process::Command::new("sqlite3").arg(k.path("data").join("kiln.db")).arg("SELECT COUNT(*) FROM quarantine_builds").output().expect("sqlite3 is needed: run ci/setup-sqlite.sh");
    assert_eq!(String::from_utf8_lossy(&judged.stdout).trim(), "0", "a call from an agent that does not hold the job judged builds: {}", String::from_utf8_lossy(&judged.stderr));
    assert!(k.kiln(&["cancel", &b2.to_string()]).status.success());
}

#[test]
fn a_change_whose_build_retention_deleted_stays_readable_and_says_so() {
    let (k, modes, _) = quarantining(&["--gc-every", "0"], "echo t_wobbly");
    mode(&modes, "t_wobbly", "flaky");
    let b1 = k.trigger("q");
    let job1 = job_id(&k.wait_build(b1, 90));
    assert_eq!(quarantined(&k), vec!["t_wobbly"]);
    let b2 = k.trigger("q");
    assert_eq!(k.wait_build(b2, 90)["status"], "passed");
    // Retention keeps the newest build: the evidence's build goes.
    assert!(k.kiln(&["project", "set", "q", "--keep-builds", "1"]).status.success());
    let gc = k.json(&["gc"]);
    assert_eq!(gc["removed"][0]["build_id"], b1, "{gc:#}");

    let f = flakiest(&k);
    assert_eq!(quarantined(&k), vec!["t_wobbly"], "the quarantine outlives its evidence's build");
    let c = f["quarantine"]["changes"].as_array().unwrap().iter().find(|c| c["change"] == "quarantined").cloned().unwrap();
    assert_eq!((c["builds"].clone(), c["deleted"].clone()), (serde_json::json!([b1]), serde_json::json!([b1])), "{f:#}");
    let text = String::from_utf8_lossy(&k.kiln(&["tests", "q", "--flakiest"]).stdout).into_owned();
    assert!(text.contains(&format!("runs: #{b1} (job {job1}, deleted)")), "{text}");
    let (status, page) = http("GET", &format!("{}/projects/q/tests", k.url), &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert_eq!(status, 200);
    assert!(page.contains(&format!("#{b1} (deleted)")) && !page.contains(&format!("href=\"/builds/{b1}\"")), "{page}");
}
