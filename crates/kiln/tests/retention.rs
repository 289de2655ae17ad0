//! Retention: `kiln gc --dry-run` shows exactly what the policy removes and removes
//! nothing; `kiln gc` removes exactly that (rows, log files, artifacts) and never a
//! branch's newest passing build; artifacts may go before their build; the
//! background pass applies the server-wide policy by itself and logs what it freed.

mod common;
use common::*;
use serde_json::Value;

const PIPELINE: &str = "jobs:\n  j:\n    artifacts: [out.txt]\n    steps: [\"echo kept > out.txt; echo log-of-$KILN_BUILD_ID; test -f ok\"]\n";

/// A build of the project's current commit on `branch`, waited for.
fn build(k: &Kiln, project: &str, branch: &str) -> i64 {
    let out = k.kiln(&["trigger", project, "--branch", branch, "--json"]);
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"].as_i64().unwrap();
    k.wait_build(id, 60);
    id
}

fn exists(k: &Kiln, id: i64) -> bool {
    k.kiln(&["show", &id.to_string()]).status.success()
}

fn job_id(k: &Kiln, id: i64) -> i64 {
    Kiln::job(&k.build(id), "j")["id"].as_i64().unwrap()
}

#[test]
fn gc_removes_exactly_what_the_policy_says_and_never_the_last_passing_build() {
    let mut k = Kiln::start_with(&["--gc-every", "0"]);
    k.agent("a1", &[]);
    let repo = k.repo("r", PIPELINE);
    git(&repo, &["branch", "dev"]);
    k.add_project("r", &repo, &[]);
    std::fs::write(repo.join("ok"), "").unwrap();
    commit_all(&repo, "passing");
    let pass = build(&k, "r", "main");
    std::fs::remove_file(repo.join("ok")).unwrap();
    commit_all(&repo, "failing");
    let fails: Vec<i64> = (0..3).map(|_| build(&k, "r", "main")).collect();
    let dev = build(&k, "r", "dev");
    assert_eq!(k.build(pass)["status"], "passed");
    assert_eq!(k.build(fails[0])["status"], "failed");
    let logs_dir = |id: i64| k.path("data/logs").join(job_id(&k, id).to_string());
    let old_fail_logs = logs_dir(fails[0]);
    assert!(old_fail_logs.exists());

    // No policy: nothing goes.
    let r = k.json(&["gc", "--dry-run"]);
    assert_eq!(r["removed"], serde_json::json!([]));

    // Keep the newest 2 builds per branch: main's oldest failure goes; its older passing build stays.
    assert!(k.kiln(&["project", "set", "r", "--keep-builds", "2"]).status.success());
    let r = k.json(&["gc", "--dry-run"]);
    let ids: Vec<i64> = r["removed"].as_array().unwrap().iter().map(|i| i["build_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![fails[0]], "{r}");
    assert_eq!(r["removed"][0]["what"], "build");
    assert!(r["bytes"].as_u64().unwrap() > 0);
    assert!(exists(&k, fails[0]) && old_fail_logs.exists(), "a dry run removes nothing");
    let text = String::from_utf8_lossy(&k.kiln(&["gc", "--dry-run"]).stdout).into_owned();
    assert!(text.contains(&format!("would remove build {} of r", fails[0])), "{text}");

    let r = k.json(&["gc"]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 1, "{r}");
    assert!(!exists(&k, fails[0]), "the removed build is gone");
    assert!(!old_fail_logs.exists(), "and its log files");
    for id in [pass, fails[1], fails[2], dev] {
        assert!(exists(&k, id), "build {id} is kept");
    }
    assert!(k.logs(pass).contains(&format!("log-of-{pass}")), "the last passing build keeps its log");
    assert_eq!(k.json(&["artifacts", &pass.to_string()]).as_array().unwrap().len(), 1);

    // Artifacts may be kept shorter than builds: 0 days removes every build's artifacts, not the builds.
    assert!(k.kiln(&["project", "set", "r", "--artifact-days", "0"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = k.json(&["gc"]);
    assert!(r["removed"].as_array().unwrap().iter().all(|i| i["what"] == "artifacts"), "{r}");
    assert_eq!(k.json(&["artifacts", &pass.to_string()]), serde_json::json!([]));
    assert!(!k.path("data/artifacts").join(job_id(&k, pass).to_string()).exists(), "the artifact files are gone");
    assert!(exists(&k, pass) && k.logs(pass).contains(&format!("log-of-{pass}")), "the build and its log stay");
    // A second pass finds nothing more.
    assert_eq!(k.json(&["gc"])["removed"], serde_json::json!([]));
    // Only admins collect.
    let (st, _) = http("POST", &format!("{}/api/v1/gc", k.url), &[("Content-Type", "application/json")], b"{\"dry_run\": true}");
    assert_eq!(st, 401);
}

#[test]
fn the_background_pass_applies_the_server_wide_policy() {
    let mut k = Kiln::start_with(&["--gc-every", "1", "--keep-builds", "1"]);
    k.agent("a1", &[]);
    let repo = k.repo("r", PIPELINE);
    k.add_project("r", &repo, &[]);
    let first = build(&k, "r", "main");
    let second = build(&k, "r", "main");
    k.wait_for("the background pass to remove the older build", 10, || !exists(&k, first));
    assert!(exists(&k, second));
    assert!(k.server_log().contains(&format!("retention: build {first} of r")), "the pass logs what it freed");
}
