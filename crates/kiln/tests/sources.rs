//! Change sources end to end: poller, webhooks, post-receive hook, schedules,
//! filters, downstream builds, and matrix routing.

mod common;
use common::*;
use kiln_server::signature::sign;
use std::time::Duration;

const SIMPLE: &str = "jobs:\n  j:\n    steps: [echo built]\n";

#[test]
fn poller_builds_a_new_commit_once_and_not_again_after_restart() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("p", SIMPLE);
    k.add_project("p", &repo, &["--poll", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(builds(&k, "p").is_empty(), "commits present before polling started must not build");
    std::fs::write(repo.join("f"), "1").unwrap();
    let sha = commit_all(&repo, "poll me");
    k.wait_for("the poller to build the new commit", 15, || builds(&k, "p").iter().any(|b| b["commit"] == sha.as_str()));
    let b = &builds(&k, "p")[0];
    assert_eq!(b["trigger"], "poll");
    assert_eq!(k.wait_build(b["id"].as_i64().unwrap(), 30)["status"], "passed");
    // Several commits between two polls build only the newest.
    k.kiln(&["project", "set", "p", "--poll", "3s"]);
    std::thread::sleep(Duration::from_millis(1200));
    for i in 0..3 {
        std::fs::write(repo.join("f"), format!("x{i}")).unwrap();
        commit_all(&repo, &format!("c{i}"));
    }
    let newest = commit_all(&{
        std::fs::write(repo.join("g"), "y").unwrap();
        repo.clone()
    }, "newest");
    k.wait_for("a build of the newest commit", 15, || builds(&k, "p").iter().any(|b| b["commit"] == newest.as_str()));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(builds(&k, "p").len(), 2, "one build for the burst of commits");
    // A restart builds nothing old.
    k.restart_server();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(builds(&k, "p").len(), 2, "no commit is built again after a restart");
}

#[test]
fn poller_can_build_each_commit() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("p", SIMPLE);
    k.add_project("p", &repo, &["--poll", "2s", "--poll-each-commit"]);
    let mut shas = Vec::new();
    for i in 0..3 {
        std::fs::write(repo.join("f"), format!("{i}")).unwrap();
        shas.push(commit_all(&repo, &format!("c{i}")));
    }
    // A build is listed once recorded, and has its commit once expanded: wait for both.
    k.wait_for("three expanded builds", 20, || {
        let b = builds(&k, "p");
        b.len() == 3 && b.iter().all(|b| b["commit"].as_str().is_some_and(|c| !c.is_empty()))
    });
    let mut got: Vec<String> = builds(&k, "p").iter().map(|b| b["commit"].as_str().unwrap().to_string()).collect();
    got.reverse();
    assert_eq!(got, shas, "each commit built once, oldest first");
}

fn github_body(branch: &str, after: &str, paths: &[&str]) -> String {
    serde_json::json!({
        "ref": format!("refs/heads/{branch}"), "before": "0000000000000000000000000000000000000000", "after": after,
        "created": false, "deleted": false, "forced": false,
        "commits": [{"id": after, "message": "m", "added": paths, "removed": [], "modified": []}],
        "head_commit": {"id": after, "message": "m"}, "repository": {"full_name": "o/r"},
        "pusher": {"name": "octocat"}, "sender": {"login": "octocat"}
    })
    .to_string()
}

#[test]
fn webhooks_check_signatures_and_build_pushes() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("w", SIMPLE);
    k.add_project("w", &repo, &["--webhook-secret", "s3cret"]);
    let sha = commit_all(&{ std::fs::write(repo.join("x"), "1").unwrap(); repo.clone() }, "push");
    let url = format!("{}/hooks/github/w", k.url);
    let body = github_body("main", &sha, &["x"]);
    let ev = ("X-GitHub-Event", "push");
    // Bad, missing, and wrong-secret signatures: 401 (as for a missing project) and nothing created.
    for sig in ["sha256=0000", "", &format!("sha256={}", sign("wrong", body.as_bytes()))] {
        let mut h = vec![ev, ("Content-Type", "application/json")];
        if !sig.is_empty() {
            h.push(("X-Hub-Signature-256", sig));
        }
        assert_eq!(http("POST", &url, &h, body.as_bytes()).0, 401, "signature {sig:?}");
    }
    assert!(builds(&k, "w").is_empty());
    assert!(k.server_log().contains("bad or missing signature"), "refusals are logged");
    // Ping: 200, nothing built. Deletion: nothing built.
    let ping = br#"{"zen":"hi","hook_id":1}"#;
    assert_eq!(http("POST", &url, &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &format!("sha256={}", sign("s3cret", ping)))], ping).0, 200);
    let del = serde_json::json!({"ref": "refs/heads/old", "before": sha, "after": "0000000000000000000000000000000000000000", "deleted": true, "commits": []}).to_string();
    assert_eq!(http("POST", &url, &[ev, ("X-Hub-Signature-256", &format!("sha256={}", sign("s3cret", del.as_bytes())))], del.as_bytes()).0, 200);
    assert!(builds(&k, "w").is_empty());
    // A good signature builds the pushed commit.
    let (st, resp) = http("POST", &url, &[ev, ("X-Hub-Signature-256", &format!("sha256={}", sign("s3cret", body.as_bytes())))], body.as_bytes());
    assert_eq!(st, 202, "{resp}");
    let bs = builds(&k, "w");
    assert_eq!(bs.len(), 1);
    let b = k.wait_build(bs[0]["id"].as_i64().unwrap(), 30);
    assert_eq!((b["status"].as_str(), b["commit"].as_str(), b["trigger"].as_str()), (Some("passed"), Some(sha.as_str()), Some("webhook")));
    assert_eq!(b["triggered_by"], "github:octocat");
    // Gitea: hex signature header; GitLab: token header; generic: signed {branch, commit}.
    let gitea = github_body("main", &sha, &[]);
    assert_eq!(http("POST", &format!("{}/hooks/gitea/w", k.url), &[("X-Gitea-Event", "push"), ("X-Gitea-Signature", "bad")], gitea.as_bytes()).0, 401);
    assert_eq!(http("POST", &format!("{}/hooks/gitea/w", k.url), &[("X-Gitea-Event", "push"), ("X-Gitea-Signature", &sign("s3cret", gitea.as_bytes()))], gitea.as_bytes()).0, 202);
    let gl = serde_json::json!({"object_kind": "push", "ref": "refs/heads/main", "before": sha, "after": sha, "checkout_sha": sha, "user_username": "lab", "commits": []}).to_string();
    assert_eq!(http("POST", &format!("{}/hooks/gitlab/w", k.url), &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")], gl.as_bytes()).0, 401);
    assert_eq!(http("POST", &format!("{}/hooks/gitlab/w", k.url), &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "s3cret")], gl.as_bytes()).0, 202);
    let gen = format!(r#"{{"branch":"main","commit":"{sha}"}}"#);
    assert_eq!(http("POST", &format!("{}/hooks/generic/w", k.url), &[("X-Kiln-Signature-256", "sha256=00")], gen.as_bytes()).0, 401);
    assert_eq!(http("POST", &format!("{}/hooks/generic/w", k.url), &[("X-Kiln-Signature-256", &format!("sha256={}", sign("s3cret", gen.as_bytes())))], gen.as_bytes()).0, 202);
    k.wait_for("four webhook builds", 10, || builds(&k, "w").len() == 4);
    let triggers: Vec<String> = builds(&k, "w").iter().map(|b| b["triggered_by"].as_str().unwrap().to_string()).collect();
    assert!(triggers.iter().any(|t| t.starts_with("gitea:")) && triggers.iter().any(|t| t == "gitlab:lab") && triggers.iter().any(|t| t.starts_with("generic:")), "{triggers:?}");
    // Oversized bodies: 413, nothing created.
    let big = vec![b'x'; 3 << 20];
    assert_eq!(http("POST", &url, &[ev, ("X-Hub-Signature-256", "sha256=00")], &big).0, 413);
    assert_eq!(builds(&k, "w").len(), 4);
}

#[test]
fn branch_and_path_filters_record_skipped_changes() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("f", "on:\n  push: { branches: [main], paths: [\"src/**\"] }\njobs:\n  j:\n    steps: [echo built]\n");
    k.add_project("f", &repo, &["--webhook-secret", "s"]);
    let send = |branch: &str, sha: &str, paths: &[&str]| {
        let body = github_body(branch, sha, paths);
        let sig = format!("sha256={}", sign("s", body.as_bytes()));
        assert_eq!(http("POST", &format!("{}/hooks/github/f", k.url), &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)], body.as_bytes()).0, 202);
    };
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/a.rs"), "1").unwrap();
    let in_src = commit_all(&repo, "src change");
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    let on_feature = commit_all(&{ std::fs::write(repo.join("src/b.rs"), "2").unwrap(); repo.clone() }, "feature change");
    git(&repo, &["checkout", "-q", "main"]);
    let docs_only = commit_all(&{ std::fs::write(repo.join("README"), "docs").unwrap(); repo.clone() }, "docs change");
    send("main", &in_src, &["src/a.rs"]);
    send("feature", &on_feature, &["src/b.rs"]);
    send("main", &docs_only, &["README"]);
    k.wait_for("three recorded changes", 10, || builds(&k, "f").len() == 3);
    let mut by_commit = std::collections::HashMap::new();
    for b in builds(&k, "f") {
        let b = k.wait_build(b["id"].as_i64().unwrap(), 30);
        by_commit.insert(b["commit"].as_str().unwrap().to_string(), b);
    }
    assert_eq!(by_commit[&in_src]["status"], "passed");
    let feature = &by_commit[&on_feature];
    assert_eq!(feature["status"], "skipped");
    assert!(feature["error"].as_str().unwrap().contains("does not match on.push.branches"), "{feature:#}");
    let docs = &by_commit[&docs_only];
    assert_eq!(docs["status"], "skipped");
    assert!(docs["error"].as_str().unwrap().contains("on.push.paths"), "{docs:#}");
    assert!(docs["jobs"].as_array().unwrap().is_empty());
    // Skipped changes ran nothing: the builds counter counts the one build that ran.
    let (code, metrics) = http("GET", &format!("{}/metrics", k.url), &[], b"");
    assert_eq!(code, 200, "{metrics}");
    let ended: Vec<&str> = metrics.lines().filter(|l| l.starts_with("kiln_builds_total{") && l.contains("project=\"f\"")).collect();
    assert!(ended.iter().any(|l| l.contains("status=\"passed\"") && l.ends_with(" 1")), "{ended:?}");
    assert!(!ended.iter().any(|l| l.contains("skipped")), "{ended:?}");
}

#[test]
fn post_receive_hook_notifies_through_a_real_push() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let work = k.repo("work", SIMPLE);
    let bare = k.path("origin.git");
    std::process::Command::new("git").args(["clone", "-q", "--bare"]).arg(&work).arg(&bare).status().unwrap();
    k.add_project("origin", &bare, &[]);
    let hook = bare.join("hooks/post-receive");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/post-receive"), &hook).unwrap();
    git(&bare, &["config", "kiln.server", &k.url]);
    git(&bare, &["config", "kiln.token", ADMIN]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    std::fs::write(work.join("n"), "1").unwrap();
    let sha = commit_all(&work, "pushed");
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&work)
        .args(["push", "-q", "origin", "main"])
        .env("KILN_BIN", BIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("build #"), "the hook reports the build: {}", String::from_utf8_lossy(&out.stderr));
    let bs = builds(&k, "origin");
    assert_eq!(bs.len(), 1);
    let b = k.wait_build(bs[0]["id"].as_i64().unwrap(), 30);
    assert_eq!((b["status"].as_str(), b["commit"].as_str(), b["trigger"].as_str()), (Some("passed"), Some(sha.as_str()), Some("hook")));
    // Deleting a branch starts nothing.
    git(&work, &["push", "-q", "origin", "main:tmp"]);
    let n = builds(&k, "origin").len();
    let out = std::process::Command::new("git").arg("-C").arg(&work).args(["push", "-q", "origin", ":tmp"]).env("KILN_BIN", BIN).output().unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(builds(&k, "origin").len(), n);
}

/// The hook with the project's webhook secret instead of an API token: the secret can start
/// this project's builds only, and a wrong one starts nothing (the push still goes through).
#[test]
fn post_receive_hook_signs_with_the_projects_webhook_secret() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let work = k.repo("work", SIMPLE);
    let bare = k.path("signed.git");
    std::process::Command::new("git").args(["clone", "-q", "--bare"]).arg(&work).arg(&bare).status().unwrap();
    k.add_project("signed", &bare, &["--webhook-secret", "hook-s3cret"]);
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/post-receive"), bare.join("hooks/post-receive")).unwrap();
    git(&bare, &["config", "kiln.server", &k.url]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let push = |what: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(["push", "-q", "origin"])
            .args(what)
            .env("KILN_BIN", BIN)
            // Nothing of the test's own environment stands in for the hook's configuration.
            .env_remove("KILN_TOKEN")
            .env_remove("KILN_SERVER")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A wrong secret: refused, nothing built, the push goes through.
    git(&bare, &["config", "kiln.webhookSecret", "not-the-secret"]);
    std::fs::write(work.join("n"), "0").unwrap();
    commit_all(&work, "refused");
    let said = push(&["main"]);
    assert!(said.contains("could not notify") && said.contains("check the project's --webhook-secret"), "{said}");
    assert!(builds(&k, "signed").is_empty());
    // The project's secret: built, by the hook, with no token anywhere.
    git(&bare, &["config", "kiln.webhookSecret", "hook-s3cret"]);
    std::fs::write(work.join("n"), "1").unwrap();
    let sha = commit_all(&work, "signed");
    let said = push(&["main"]);
    assert!(said.contains("build #"), "{said}");
    let bs = builds(&k, "signed");
    assert_eq!(bs.len(), 1, "{bs:?}");
    let b = k.wait_build(bs[0]["id"].as_i64().unwrap(), 30);
    assert_eq!((b["status"].as_str(), b["commit"].as_str(), b["trigger"].as_str()), (Some("passed"), Some(sha.as_str()), Some("webhook")));
    // From any script, the secret in a file.
    let file = k.path("hook-secret");
    std::fs::write(&file, "hook-s3cret\n").unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["notify", "signed", "--webhook-secret-file"])
        .arg(&file)
        .env("KILN_SERVER", &k.url)
        .env_remove("KILN_TOKEN")
        .env_remove("KILN_WEBHOOK_SECRET")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{} {sha} refs/heads/main\n", "0".repeat(40)).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("build #"), "{out:?}");
    assert_eq!(builds(&k, "signed").len(), 2);
    // A tag and a deletion build nothing.
    git(&work, &["tag", "v1"]);
    let said = push(&["v1"]);
    assert!(said.contains("refs/tags/v1 is not a branch"), "{said}");
    push(&["main:tmp"]);
    let n = builds(&k, "signed").len();
    let said = push(&[":tmp"]);
    assert!(said.contains("was deleted"), "{said}");
    assert_eq!(builds(&k, "signed").len(), n);
}

#[test]
fn schedule_builds_the_branch_head_at_the_minute() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("cron", "on:\n  schedule: \"* * * * *\"\njobs:\n  j:\n    steps: [echo tick]\n");
    k.add_project("cron", &repo, &[]);
    k.wait_for("a scheduled build", 75, || builds(&k, "cron").iter().any(|b| b["trigger"] == "schedule"));
    let b = builds(&k, "cron").into_iter().find(|b| b["trigger"] == "schedule").unwrap();
    assert_eq!(b["triggered_by"], "cron \"* * * * *\"");
    assert_eq!(k.wait_build(b["id"].as_i64().unwrap(), 30)["status"], "passed");
    assert_eq!(builds(&k, "cron").len(), 1, "one tick, one build");
}

#[test]
fn downstream_project_builds_after_upstream_passes_and_loops_are_refused() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let a = k.repo("a", SIMPLE);
    let b = k.repo("b", "on:\n  after: [a]\njobs:\n  j:\n    steps: [echo downstream]\n");
    k.add_project("a", &a, &[]);
    k.add_project("b", &b, &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(k.kiln(&["trigger", "a", "--wait"]).status.code(), Some(0));
    let up = builds(&k, "a")[0]["id"].as_i64().unwrap();
    k.wait_for("a downstream build of b", 15, || !builds(&k, "b").is_empty());
    let down = k.wait_build(builds(&k, "b")[0]["id"].as_i64().unwrap(), 30);
    assert_eq!((down["status"].as_str(), down["trigger"].as_str()), (Some("passed"), Some("upstream")));
    assert_eq!(down["upstream_build"].as_i64(), Some(up));
    let show = String::from_utf8_lossy(&k.kiln(&["show", &down["id"].to_string()]).stdout).into_owned();
    assert!(show.contains(&format!("started by build #{up}")), "{show}");
    // Make a depend on b too: a loop. Building a errors with a clear message.
    std::fs::write(a.join(".kiln.yml"), "on:\n  after: [b]\njobs:\n  j:\n    steps: [echo x]\n").unwrap();
    commit_all(&a, "loop");
    assert_eq!(k.kiln(&["trigger", "a", "--wait"]).status.code(), Some(2));
    let err = k.build(builds(&k, "a")[0]["id"].as_i64().unwrap())["error"].as_str().unwrap().to_string();
    assert!(err.contains("trigger loop") && err.contains("a -> b -> a") || err.contains("b -> a -> b"), "{err}");
    // An unknown upstream errors the build too.
    std::fs::write(b.join(".kiln.yml"), "on:\n  after: [nope]\njobs:\n  j:\n    steps: [echo x]\n").unwrap();
    commit_all(&b, "unknown upstream");
    assert_eq!(k.kiln(&["trigger", "b", "--wait"]).status.code(), Some(2));
    let err = k.build(builds(&k, "b")[0]["id"].as_i64().unwrap())["error"].as_str().unwrap().to_string();
    assert!(err.contains("unknown project \"nope\""), "{err}");
}

/// A pipeline's triggers are what its newest build read: each build compares what it reads
/// with what is recorded (read as it takes its expansion) and writes only a change, so both a
/// gained and a dropped `on.after` take effect with the next build of the project.
#[test]
fn a_project_that_gains_or_drops_on_after_in_a_new_commit_builds_downstream_accordingly() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let up = k.repo("up", SIMPLE);
    let down = k.repo("down", SIMPLE);
    k.add_project("up", &up, &[]);
    k.add_project("down", &down, &[]);
    let upstream_builds = |k: &Kiln| builds(k, "down").iter().filter(|b| b["trigger"] == "upstream").count();
    let build_up = |k: &Kiln| assert_eq!(k.kiln(&["trigger", "up", "--wait"]).status.code(), Some(0));
    let build_down = |k: &Kiln| assert_eq!(k.kiln(&["trigger", "down", "--wait"]).status.code(), Some(0));
    // Gained: read by down's next build, then up's passing build starts one of down.
    std::fs::write(down.join(".kiln.yml"), "on:\n  after: [up]\njobs:\n  j:\n    steps: [echo downstream]\n").unwrap();
    commit_all(&down, "build after up");
    build_down(&k);
    build_up(&k);
    k.wait_for("a build of down after up", 15, || upstream_builds(&k) == 1);
    let first = builds(&k, "down").into_iter().find(|b| b["trigger"] == "upstream").unwrap();
    k.wait_build(first["id"].as_i64().unwrap(), 30);
    // Dropped: down's next build records it, and up's next pass starts nothing more.
    std::fs::write(down.join(".kiln.yml"), SIMPLE).unwrap();
    commit_all(&down, "no longer after up");
    build_down(&k);
    build_up(&k);
    // Gained again (the triggers recorded before): read anew, written again.
    std::fs::write(down.join(".kiln.yml"), "on:\n  after: [up]\njobs:\n  j:\n    steps: [echo again]\n").unwrap();
    commit_all(&down, "after up again");
    build_down(&k);
    build_up(&k);
    k.wait_for("a second build of down after up", 15, || upstream_builds(&k) == 2);
    let shown: Vec<String> = builds(&k, "down").iter().filter(|b| b["trigger"] == "upstream").map(|b| b["upstream_build"].to_string()).collect();
    let ups: Vec<String> = builds(&k, "up").iter().map(|b| b["id"].to_string()).collect();
    // Up built three times; down followed the first and the third only.
    assert_eq!(shown, [ups[0].clone(), ups[2].clone()], "down's upstream builds {shown:?}, up's builds {ups:?}");
}

/// Copy an example folder into a fresh git repository.
fn example_repo(k: &Kiln, name: &str, example: &str) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(example);
    let dir = k.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    git(&dir, &["init", "-q", "-b", "main"]);
    commit_all(&dir, "example");
    dir
}

#[test]
fn django_matrix_example_routes_cells_and_builds_the_project_after_the_app() {
    let mut k = Kiln::start();
    k.agent("py311-dj42", &["--label", "python=3.11", "--label", "django=4.2"]);
    k.agent("py311-dj51", &["--label", "python=3.11", "--label", "django=5.1"]);
    k.agent("py312-dj51", &["--probe", "python=echo 3.12", "--label", "django=5.1"]);
    let app = example_repo(&k, "app", "django-matrix/app");
    let project = example_repo(&k, "project", "django-matrix/project");
    k.add_project("django-app", &app, &[]);
    k.add_project("django-project", &project, &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(k.kiln(&["trigger", "django-app", "--wait"]).status.code(), Some(0));
    let id = builds(&k, "django-app")[0]["id"].as_i64().unwrap();
    let b = k.build(id);
    let cells: Vec<(String, String)> = b["jobs"].as_array().unwrap().iter().map(|j| (j["key"].as_str().unwrap().into(), j["agent"].as_str().unwrap().into())).collect();
    assert_eq!(
        cells,
        vec![
            ("test (python=3.11, django=4.2)".to_string(), "py311-dj42".to_string()),
            ("test (python=3.11, django=5.1)".to_string(), "py311-dj51".to_string()),
            ("test (python=3.12, django=5.1)".to_string(), "py312-dj51".to_string()),
        ]
    );
    let logs = k.logs(id);
    assert!(logs.contains("app tests on py312-dj51 with python 3.12 and django 5.1"), "{logs}");
    k.wait_for("the project's build after the app", 15, || !builds(&k, "django-project").is_empty());
    let pb = k.wait_build(builds(&k, "django-project")[0]["id"].as_i64().unwrap(), 30);
    assert_eq!((pb["status"].as_str(), pb["trigger"].as_str(), pb["upstream_build"].as_i64()), (Some("passed"), Some("upstream"), Some(id)));
    assert_eq!(Kiln::job(&pb, "test")["agent"], "py312-dj51");
}

#[test]
fn projects_and_their_sources_come_from_kiln_toml_too() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".kiln.yml"), SIMPLE).unwrap();
    commit_all(&repo, "init");
    let toml = dir.path().join("kiln.toml");
    std::fs::write(
        &toml,
        format!(
            "lease_secs = 20\n\n[[project]]\nname = \"app\"\nrepo = \"{}\"\npublic = true\npoll = \"1s\"\nwebhook_secret = \"from-toml\"\nschedule = [\"0 3 * * *\"]\n",
            repo.display()
        ),
    )
    .unwrap();
    let mut k = Kiln::start_with(&["--config", toml.to_str().unwrap()]);
    k.agent("a", &[]);
    let p = k.json(&["project", "show", "app"]);
    assert_eq!((p["public"].as_bool(), p["settings"]["poll"].as_str(), p["settings"]["webhook_secret"].as_str()), (Some(true), Some("1s"), Some("***")));
    assert_eq!(p["settings"]["schedule"][0], "0 3 * * *");
    // The poller and the webhook secret from the file both work.
    std::fs::write(repo.join("f"), "1").unwrap();
    let sha = commit_all(&repo, "polled");
    k.wait_for("the poller to build the commit", 15, || builds(&k, "app").iter().any(|b| b["commit"] == sha.as_str()));
    let body = format!(r#"{{"branch":"main","commit":"{sha}"}}"#);
    let sig = format!("sha256={}", sign("from-toml", body.as_bytes()));
    assert_eq!(http("POST", &format!("{}/hooks/generic/app", k.url), &[("X-Kiln-Signature-256", &sig)], body.as_bytes()).0, 202);
    // An unknown key in the file is an error that names it.
    std::fs::write(&toml, "listen_on = \"x\"\n").unwrap();
    let out = std::process::Command::new(BIN).args(["server", "--config", toml.to_str().unwrap(), "--data"]).arg(dir.path().join("d2")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_on"), "{}", String::from_utf8_lossy(&out.stderr));
}
