//! Retention: `kiln gc --dry-run` shows exactly what the policy removes and removes
//! nothing; `kiln gc` removes exactly that (rows, log files, artifacts) and never a
//! branch's newest passing build; artifacts may go before their build; the
//! background pass applies the server-wide policy by itself and logs what it freed; an
//! uploaded run's package goes with its build; the home page shows each project's disk use.

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

/// Run `sql` on the server's SQLite database with the sqlite3 tool; answers what it printed.
fn sqlite(k: &Kiln, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3").arg(k.path("data/kiln.db")).arg(sql).output().expect("sqlite3 is needed: run ci/setup-sqlite.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `kiln submit PROJECT FILE --wait` from `dir`: the new build's id.
fn submit(k: &Kiln, dir: &std::path::Path, project: &str, file: &str) -> i64 {
    let out = std::process::Command::new(BIN).args(["submit", project, file, "--wait", "--json"]).current_dir(dir).env("KILN_SERVER", &k.url).env("KILN_TOKEN", ADMIN).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    v["id"].as_i64().unwrap()
}

/// The disk use the home page shows for `project`.
fn disk_shown(k: &Kiln, project: &str) -> String {
    let page = http::get(&k.url, "/", &[("Authorization", &format!("Bearer {ADMIN}"))]).text();
    let card = page.split(&format!("<a href=\"/projects/{project}\">")).nth(1).unwrap_or_else(|| panic!("no card for {project}: {page}"));
    let div = card.split("<div class=\"disk muted\"").nth(1).expect("a disk figure on the card");
    div.split_once('>').unwrap().1.split_once("</div>").unwrap().0.to_string()
}

/// Bytes as the console shows them.
fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).len()
}

#[test]
fn an_uploaded_runs_package_goes_with_its_build_and_a_kept_runs_package_stays() {
    let mut k = Kiln::start_with(&["--gc-every", "0"]);
    k.agent("a1", &[]);
    let repo = k.repo("up", "jobs:\n  j:\n    steps: [sh run.sh]\n");
    k.add_project("up", &repo, &[]);
    let dir = k.path("work");
    std::fs::create_dir_all(&dir).unwrap();
    // Failing runs: none is the branch's last passing build, which retention always keeps.
    std::fs::write(dir.join("run.sh"), "echo uploaded-run; exit 1\n").unwrap();
    let runs: Vec<i64> = (0..3).map(|_| submit(&k, &dir, "up", "run.sh")).collect();
    let package = |id: i64| sqlite(&k, &format!("SELECT package FROM uploads WHERE build_id = {id}"));
    let packages: Vec<std::path::PathBuf> = runs.iter().map(|id| k.path("data/packages").join(package(*id))).collect();
    let sizes: Vec<u64> = packages.iter().map(|p| file_len(p)).collect();
    assert_eq!(k.build(runs[0])["status"], "failed");
    assert!(disk_shown(&k, "up").ends_with(&format!(" · packages {}", human(sizes.iter().sum()))), "{}", disk_shown(&k, "up"));

    assert!(k.kiln(&["project", "set", "up", "--keep-builds", "2"]).status.success());
    let r = k.json(&["gc"]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["removed"][0]["build_id"].as_i64(), Some(runs[0]), "{r}");
    assert!(r["removed"][0]["bytes"].as_u64().unwrap() >= sizes[0], "the freed bytes count the package: {r}");
    assert!(!packages[0].exists(), "the removed run's package file is gone");
    assert_eq!(sqlite(&k, &format!("SELECT COUNT(*) FROM uploads WHERE build_id = {}", runs[0])), "0", "and its row");
    for (id, p) in runs[1..].iter().zip(&packages[1..]) {
        assert!(p.exists(), "a kept run's package stays: {}", p.display());
        assert_eq!(sqlite(&k, &format!("SELECT COUNT(*) FROM uploads WHERE build_id = {id}")), "1");
    }
    assert_eq!(std::fs::read_dir(k.path("data/packages")).unwrap().count(), 2, "no other package left behind");
    assert!(disk_shown(&k, "up").ends_with(&format!(" · packages {}", human(sizes[1] + sizes[2]))), "{}", disk_shown(&k, "up"));
    // A kept run still runs from its package.
    let again = http::send(&k.url, "POST", &format!("/api/v1/builds/{}/rebuild", runs[2]), &[("Authorization", &format!("Bearer {ADMIN}"))], b"", false);
    assert_eq!(again.status, 200, "{}", again.text());
    let id = serde_json::from_slice::<Value>(&again.body).unwrap()["id"].as_i64().unwrap();
    k.wait_build(id, 60);
    assert!(k.logs(id).contains("uploaded-run"), "{}", k.logs(id));
}

#[test]
fn the_home_page_shows_each_projects_disk_use() {
    let mut k = Kiln::start_with(&["--gc-every", "0"]);
    k.agent("a1", &[]);
    // About 2 MB of log and a 300,000-byte artifact.
    let repo = k.repo("big", "jobs:\n  j:\n    artifacts: [a.bin]\n    steps: [\"head -c 300000 /dev/zero > a.bin; head -c 2000000 /dev/zero | tr '\\\\0' x | fold -w 99\"]\n");
    k.add_project("big", &repo, &[]);
    let id = build(&k, "big", "main");
    let b = k.build(id);
    assert_eq!(b["status"], "passed", "{b}");
    let log_len = Kiln::job(&b, "j")["attempts"][0]["log_len"].as_u64().unwrap();
    assert!((2_000_000..2_100_000).contains(&log_len), "{log_len} bytes of log");
    assert_eq!(file_len(&k.path("data/artifacts").join(job_id(&k, id).to_string()).join("a.bin")), 300_000);
    assert_eq!(disk_shown(&k, "big"), format!("logs {} · artifacts 293.0 KiB", human(log_len)));
    assert_eq!(human(log_len), if log_len < 2_044_723 { "1.9 MiB" } else { "2.0 MiB" });

    // Another project's figures are its own: an uploaded run's log and package, no artifacts.
    let repo = k.repo("runs", "jobs:\n  t:\n    steps: [cat data.txt]\n");
    k.add_project("runs", &repo, &[]);
    let dir = k.path("work");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), "uploaded-data\n".repeat(1000)).unwrap();
    let run = submit(&k, &dir, "runs", "data.txt");
    let rb = k.build(run);
    assert_eq!(rb["status"], "passed", "{rb}");
    let run_log = Kiln::job(&rb, "t")["attempts"][0]["log_len"].as_u64().unwrap();
    assert!(run_log > 14_000, "{run_log}");
    let pkg = file_len(&k.path("data/packages").join(sqlite(&k, &format!("SELECT package FROM uploads WHERE build_id = {run}"))));
    assert_eq!(disk_shown(&k, "runs"), format!("logs {} · artifacts 0 B · packages {}", human(run_log), human(pkg)));
    assert_eq!(disk_shown(&k, "big"), format!("logs {} · artifacts 293.0 KiB", human(log_len)), "unchanged by the other project");

    // A project without builds uses nothing; the figures follow what retention removes.
    let repo = k.repo("idle", "jobs:\n  j:\n    steps: [true]\n");
    k.add_project("idle", &repo, &[]);
    assert_eq!(disk_shown(&k, "idle"), "logs 0 B · artifacts 0 B");
    assert!(k.kiln(&["project", "set", "big", "--artifact-days", "0"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(k.json(&["gc"])["removed"].as_array().unwrap().len(), 1);
    assert_eq!(disk_shown(&k, "big"), format!("logs {} · artifacts 0 B", human(log_len)));
}
