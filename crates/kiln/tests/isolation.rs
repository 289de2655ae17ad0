//! A hostile build touches only its own job (issue 10): steps cannot find the agent's secret,
//! cannot change another project's cached checkout, cannot read the server's data folder
//! under `kiln up`; secrets are masked in test results, the status file and notifications,
//! also base64- and URL-encoded; `network: false` cuts a job off; the sandbox's steps still
//! die on timeout and cancel; `--isolation none` warns. Needs bubblewrap
//! (`ci/setup-sandbox.sh`).

mod common;
mod notify_support;

use common::*;
use notify_support::{free_port, Recorder};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Start an agent whose secret comes from `how`: `argv` (`--token`), `env`
/// (`KILN_AGENT_TOKEN`) or `file` (`--token-file`, mode 0600).
fn agent_given(k: &mut Kiln, name: &str, how: &str, extra: &[&str]) {
    let log = std::fs::File::create(k.path(&format!("agent-{name}.log"))).unwrap();
    let mut c = Command::new(BIN);
    c.args(["agent", "--server", &k.url, "--name", name, "--label", &format!("way={how}"), "--work-dir"]).arg(k.path(&format!("work-{name}")));
    match how {
        "argv" => {
            c.args(["--token", AGENT_TOKEN]);
        }
        "env" => {
            c.env("KILN_AGENT_TOKEN", AGENT_TOKEN);
        }
        _ => {
            use std::os::unix::fs::PermissionsExt;
            let f = k.path("agent-token");
            std::fs::write(&f, format!("{AGENT_TOKEN}\n")).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
            c.arg("--token-file").arg(f);
        }
    }
    let child = c.args(extra).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    k.agents.push((name.to_string(), child));
}

/// A build's whole log, once it is final.
fn run_build(k: &Kiln, project: &str) -> (serde_json::Value, String) {
    let id = k.trigger(project);
    let b = k.wait_build(id, 90);
    (b, k.logs(id))
}

#[test]
fn a_step_finds_the_agent_secret_nowhere() {
    let mut k = Kiln::start();
    for how in ["argv", "env", "file"] {
        agent_given(&mut k, how, how, &[]);
    }
    let token_file = k.path("agent-token");
    // The pattern is assembled at run time, so the step's own command line does not hold it.
    let pipeline = format!(
        r#"jobs:
  hunt:
    matrix: {{way: [argv, env, file]}}
    requires: {{way: "${{{{ matrix.way }}}}"}}
    steps:
      - |
        pat="{head}"; pat="${{pat}}{tail}"
        found=0; n=0
        env | grep -qF "$pat" && {{ echo "FOUND in env"; found=1; }}
        for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do
          [ -r "$f" ] && n=$((n+1))
          tr "\0" "\n" < "$f" 2>/dev/null | grep -qF "$pat" && {{ echo "FOUND in $f"; found=1; }}
        done
        d=$(dirname "$PWD")
        while [ "$(dirname "$(dirname "$d")")" != / ] && [ "$d" != / ]; do
          grep -rqsF "$pat" "$d" 2>/dev/null && {{ echo "FOUND under $d"; found=1; }}
          d=$(dirname "$d")
        done
        cat "{file}" 2>/dev/null | grep -qF "$pat" && {{ echo "FOUND in the token file"; found=1; }}
        tr "\0" " " < /proc/$$/cmdline | grep -q bash && echo "own cmdline readable"
        echo "hunt-done way=$MATRIX_WAY found=$found proc-files=$n"
"#,
        head = &AGENT_TOKEN[..5],
        tail = &AGENT_TOKEN[5..],
        file = token_file.display()
    );
    let repo = k.repo("hunt", &pipeline);
    k.add_project("hunt", &repo, &[]);
    let (b, log) = run_build(&k, "hunt");
    assert_eq!(b["status"], "passed", "{log}");
    assert!(!log.contains("FOUND"), "a step found the agent's secret:\n{log}");
    for way in ["argv", "env", "file"] {
        assert!(log.contains(&format!("hunt-done way={way} found=0")), "the hunt did not run on the {way} agent:\n{log}");
    }
    assert_eq!(log.matches("own cmdline readable").count(), 3, "{log}");
    assert!(k.agent_log("argv").contains("--token on the command line is visible"), "{}", k.agent_log("argv"));
    assert!(!k.agent_log("env").contains("--token on the command line"));

    // A token file others may read is refused, with what to do.
    let loose = k.path("loose-token");
    std::fs::write(&loose, AGENT_TOKEN).unwrap();
    let out = Command::new(BIN).args(["agent", "--server", &k.url, "--token-file"]).arg(&loose).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn one_project_cannot_change_another_projects_checkout() {
    poison_attempt(&[]);
    // Without the sandbox a step can write the cached checkouts: the agent sees the change
    // before the next copy and makes the checkout again.
    poison_attempt(&["--isolation", "none"]);
}

fn poison_attempt(agent_args: &[&str]) {
    let mut k = Kiln::start();
    k.agent("a", agent_args);
    let work = k.path("work-a");
    let target = k.repo(
        "target",
        "jobs:\n  t:\n    steps:\n      - test -e poison.txt && echo POISONED || echo clean-checkout\n      - '[ -z \"$(ls -A $KILN_JUNIT_DIR)\" ] && echo clean-layout || echo LAYOUT-POISONED'\n",
    );
    let commit = String::from_utf8(Command::new("git").arg("-C").arg(&target).args(["rev-parse", "HEAD"]).output().unwrap().stdout).unwrap();
    let evil = k.repo(
        "evil",
        &format!(
            "jobs:\n  e:\n    steps:\n      - |\n        for d in {w}/pristine/{c} {w}/layout/junit {w}/mirrors/*.git {w}/reuse/* {w}/reuse/*/src ../../../*/* ../../../*/*/* ../../*/*; do\n          [ -d \"$d\" ] && echo x > \"$d/poison.txt\" 2>/dev/null && echo \"wrote $d\"\n        done\n        echo evil-done\n",
            w = work.display(),
            c = commit.trim()
        ),
    );
    k.add_project("target", &target, &[]);
    k.add_project("evil", &evil, &[]);
    // Twice: the second reuses the first's folder, reset from the agent's empty job layout.
    for _ in 0..2 {
        let (_, first) = run_build(&k, "target");
        assert!(first.contains("clean-checkout") && first.contains("clean-layout"), "{first}");
    }
    assert!(work.join("pristine").join(commit.trim()).exists(), "the agent keeps a pristine checkout");
    assert!(work.join("layout").join("junit").exists(), "the agent keeps the job layout");
    let (_, evil_log) = run_build(&k, "evil");
    assert!(evil_log.contains("evil-done"), "{evil_log}");
    // Only a step without a sandbox reaches the cached checkout and the layout (and then it does).
    for cache in [format!("pristine/{}", commit.trim()), "layout/junit".to_string()] {
        let hit = evil_log.contains(&format!("wrote {}/{cache}", work.display()));
        assert_eq!(hit, !agent_args.is_empty(), "{cache}: {evil_log}");
    }
    let (_, again) = run_build(&k, "target");
    assert!(again.contains("clean-checkout") && again.contains("clean-layout") && !again.contains("POISONED"), "the evil build changed the target's checkout:\n{evil_log}\n{again}");
    assert!(!work.join("pristine").join(commit.trim()).join("poison.txt").exists(), "{evil_log}");
}

/// The shard that lists a `tests:` job's suite asks which files the commit changed (their tests
/// go first). A step runs before it and may rewrite the checkout's `.git`: git run there by the
/// agent, outside the sandbox, would obey it (`core.fsmonitor` is a command git runs).
#[test]
fn a_step_cannot_make_the_agent_run_a_command_through_the_checkouts_git_config() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let escaped = k.path("escaped");
    let pipeline = format!(
        "jobs:\n  t:\n    steps:\n      - git config core.fsmonitor 'touch {e}; true' && echo planted\n    tests:\n      shards: 1\n      list: printf 'a.txt::one\\nb.txt::two\\n'\n      run: echo batch {{tests}}\n",
        e = escaped.display()
    );
    let repo = k.repo("p", &pipeline);
    std::fs::write(repo.join("a.txt"), "a\n").unwrap();
    commit_all(&repo, "a");
    std::fs::write(repo.join("b.txt"), "b\n").unwrap();
    commit_all(&repo, "b");
    k.add_project("p", &repo, &[]);
    let (_, log) = run_build(&k, "p");
    assert!(log.contains("planted") && log.contains("listed 2 tests"), "{log}");
    assert!(!escaped.exists(), "the agent ran the step's core.fsmonitor command outside the sandbox:\n{log}");
    // The files the commit changed are still known: b.txt's test goes first.
    assert!(log.contains("batch b.txt::two a.txt::one"), "{log}");
}

/// What a step finds of an earlier job in its folder, then what it leaves behind: changed and
/// new files (ignored ones too), a git hook and config, files in its temp, home and artifact
/// folders.
const LEAVE_AND_LOOK: &str = r#"jobs:
  j:
    steps:
      - |
        echo "leftovers: [$(find /tmp -mindepth 1 -maxdepth 1 -name 'left-*' | tr '\n' ' ')$(find "$HOME" "$KILN_ARTIFACTS_DIR" "$KILN_JUNIT_DIR" -mindepth 1 | tr '\n' ' ')$(ls -A | grep -v -x -e .git -e .kiln.yml -e .gitignore | tr '\n' ' ')]"
        echo "git: [$(git status --porcelain --ignored | tr '\n' ' ')$(ls .git/hooks 2>/dev/null)$(git config --get core.fsmonitor)]"
        echo "kiln.yml: $(sha256sum .kiln.yml | cut -c1-12)"
        echo junk > junk.txt; mkdir -p target/debug; echo o > target/debug/out.o; echo changed >> .kiln.yml
        mkdir -p .git/hooks; printf '#!/bin/sh\ntouch /tmp/hooked\n' > .git/hooks/post-checkout; chmod +x .git/hooks/post-checkout
        git config core.fsmonitor 'touch /tmp/fsmonitor'
        echo t > /tmp/left-t; echo h > "$HOME/h"; echo a > "$KILN_ARTIFACTS_DIR/a"; echo j > "$KILN_JUNIT_DIR/j.txt"
        mkdir -p closed/inner; chmod 000 closed/inner closed
"#;

/// Three builds of a pipeline that looks at its folder, then leaves things behind: each saw a
/// fresh folder and the same checkout, and the folder was kept between them (not made again).
fn each_build_starts_in_a_fresh_kept_folder(k: &Kiln, pipeline: &str) {
    let repo = k.repo("r", pipeline);
    std::fs::write(repo.join(".gitignore"), "target/\njunk.txt\n").unwrap();
    commit_all(&repo, "ignore");
    k.add_project("r", &repo, &[]);
    let logs: Vec<String> = (0..3).map(|_| run_build(k, "r").1).collect();
    let sum = |log: &str| log.lines().find(|l| l.contains("kiln.yml: ")).map(|l| l.to_string());
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains("leftovers: []"), "build {i} saw files of an earlier job:\n{log}");
        assert!(log.contains("git: []"), "build {i} saw git changes of an earlier job:\n{log}");
        assert_eq!(sum(log), sum(&logs[0]), "build {i}'s checkout differs:\n{log}");
    }
    let work = k.path("work-a");
    assert_eq!(std::fs::read_dir(work.join("reuse")).map(|d| d.count()).unwrap_or(0), 2, "one kept folder and its temp folder");
}

#[test]
fn a_reused_job_folder_shows_nothing_of_the_previous_job() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    each_build_starts_in_a_fresh_kept_folder(&k, LEAVE_AND_LOOK);
    // No hook ran outside the sandbox.
    assert!(!std::path::Path::new("/tmp/hooked").exists() && !std::path::Path::new("/tmp/fsmonitor").exists());
}

/// Without a sandbox too, a git job's folder is kept for the next job of its repository and
/// made exactly like a fresh checkout first: what a job changed, added or planted in `.git` is
/// gone for the next.
#[test]
fn without_a_sandbox_a_reused_job_folder_shows_nothing_of_the_previous_job() {
    let mut k = Kiln::start();
    k.agent("a", &["--isolation", "none"]);
    let look = r#"jobs:
  j:
    steps:
      - |
        echo "leftovers: [$(ls -A | grep -v -x -e .git -e .kiln.yml -e .gitignore | tr '\n' ' ')]"
        echo "git: [$(git status --porcelain --ignored | tr '\n' ' ')$(ls .git/hooks 2>/dev/null)$(git config --get core.fsmonitor)]"
        echo "kiln.yml: $(sha256sum .kiln.yml | cut -c1-12)"
        echo junk > junk.txt; mkdir -p target/debug; echo o > target/debug/out.o; echo changed >> .kiln.yml
        mkdir -p .git/hooks; printf '#!/bin/sh\nexit 0\n' > .git/hooks/post-checkout; chmod +x .git/hooks/post-checkout
        git config core.fsmonitor true
        mkdir -p closed/inner; chmod 000 closed/inner closed
"#;
    each_build_starts_in_a_fresh_kept_folder(&k, look);
}

/// Three jobs at once on one agent, each writing its name in its folder and temp folder.
const AT_ONCE: &str = r#"jobs:
  j0:
    steps: ['echo j0 > mine; echo j0 > /tmp/mine; sleep 2; echo "seen-j0: $(cat mine /tmp/mine | tr "\n" " ")files $(ls -A | wc -l)"']
  j1:
    steps: ['echo j1 > mine; echo j1 > /tmp/mine; sleep 2; echo "seen-j1: $(cat mine /tmp/mine | tr "\n" " ")files $(ls -A | wc -l)"']
  j2:
    steps: ['echo j2 > mine; echo j2 > /tmp/mine; sleep 2; echo "seen-j2: $(cat mine /tmp/mine | tr "\n" " ")files $(ls -A | wc -l)"']
"#;

#[test]
fn jobs_running_at_once_on_one_agent_never_share_a_folder() {
    let mut k = Kiln::start();
    k.agent("a", &["--concurrency", "3"]);
    let repo = k.repo("c", AT_ONCE);
    k.add_project("c", &repo, &[]);
    for round in 0..2 {
        let (b, log) = run_build(&k, "c");
        assert_eq!(b["status"], "passed", "{log}");
        for i in 0..3 {
            // The checkout (.git, .kiln.yml) and its own file, nothing of the others.
            assert!(log.contains(&format!("seen-j{i}: j{i} j{i} files 3")), "round {round}: j{i} saw another job's files:\n{log}");
        }
    }
    assert_eq!(std::fs::read_dir(k.path("work-a").join("reuse")).map(|d| d.count()).unwrap_or(0), 6, "three kept folders and their temp folders");
}

#[test]
fn kiln_up_steps_cannot_read_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("updata");
    let repo = dir.path().join("peek");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let pipeline = format!(
        "jobs:\n  peek:\n    steps:\n      - |\n        for f in {d}/admin-token {d}/kiln.db; do head -c 16 \"$f\" >/dev/null 2>&1 && echo \"READ $f\"; done\n        d=$PWD; while [ \"$d\" != / ]; do for f in \"$d\"/*/admin-token \"$d\"/admin-token; do [ -r \"$f\" ] && echo \"READ $f\"; done; d=$(dirname \"$d\"); done\n        echo peek-done\n",
        d = data.display()
    );
    std::fs::write(repo.join(".kiln.yml"), pipeline).unwrap();
    commit_all(&repo, "init");
    let port = free_port();
    let mut up = Command::new(BIN)
        .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--agents", "1", "--no-current", "--data"])
        .arg(&data)
        .arg("--repo")
        .arg(&repo)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let cli = |args: &[&str]| {
        let token = std::fs::read_to_string(data.join("admin-token")).unwrap_or_default();
        Command::new(BIN).args(args).env("KILN_SERVER", &url).env("KILN_TOKEN", token.trim()).output().unwrap()
    };
    let log = loop {
        let out = cli(&["builds", "peek", "--json"]);
        let builds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(b) = builds.as_array().and_then(|a| a.first()) {
            if matches!(b["status"].as_str(), Some("passed" | "failed" | "errored")) {
                break String::from_utf8_lossy(&cli(&["logs", &b["id"].to_string()]).stdout).into_owned();
            }
        }
        assert!(Instant::now() < deadline, "no finished build under kiln up: {}", std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = up.kill();
    let _ = up.wait();
    assert!(log.contains("peek-done"), "{log}");
    assert!(!log.contains("READ"), "a step read the data folder:\n{log}");
    assert!(!data.join("agent-1").exists(), "agent work folders stay out of the data folder");
    assert!(dir.path().join("updata-agents").join("agent-1").is_dir());
}

#[test]
fn secrets_are_masked_in_test_results_status_and_notifications() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let secret = "hush 9f/3c+2a7e41";
    let hook = Recorder::start(|_, _| 200);
    let repo = k.repo(
        "leak",
        r#"jobs:
  l:
    steps:
      - |
        b64=$(printf %s "$LEAKY" | base64 -w0)
        url=$(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["LEAKY"], safe=""))')
        printf '{"note": "deploying with %s", "b64": "%s", "url": "%s"}' "$LEAKY" "$b64" "$url" > "$KILN_STATUS_FILE"
        sleep 3
      - |
        b64=$(printf %s "$LEAKY" | base64 -w0)
        printf '<testsuite name="s"><testcase classname="c" name="t %s"><failure message="got %s">%s %s</failure><system-out>%s</system-out></testcase></testsuite>' "$LEAKY" "$LEAKY" "$b64" "$LEAKY" "$LEAKY" > "$KILN_JUNIT_DIR/r.xml"
        echo "log: $LEAKY $b64"
        printf 'split: %s' "${LEAKY:0:7}"; sleep 0.5; printf '%s :end\n' "${LEAKY:7}"
        exit 1
"#,
    );
    k.add_project("leak", &repo, &["--public", "--notify-webhook", &hook.url("/hook")]);
    let short = k.kiln(&["project", "set", "leak", "--secret", "SHORT=abc12"]);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 6"), "{}", String::from_utf8_lossy(&short.stderr));
    let set = k.kiln(&["project", "set", "leak", "--secret", &format!("LEAKY={secret}")]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let id = k.trigger("leak");
    let mut agents = String::new();
    k.wait_for("the status file on /api/v1/agents", 30, || {
        agents = http("GET", &format!("{}/api/v1/agents", k.url), &[], b"").1;
        agents.contains("deploying with")
    });
    agents.push_str(&http("GET", &format!("{}/agents", k.url), &[], b"").1);
    let b = k.wait_build(id, 60);
    assert_eq!(b["status"], "failed");
    let tests = http("GET", &format!("{}/api/v1/builds/{id}/tests", k.url), &[], b"").1 + &http("GET", &format!("{}/builds/{id}/tests", k.url), &[], b"").1;
    let notified: Vec<String> = hook.wait_for("the failure notification", 30, 1, |r| String::from_utf8_lossy(&r.body).contains("build.finished")).iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    let log = k.logs(id);
    use base64::Engine;
    let forms = [
        secret.to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        "hush%209f%2F3c%2B2a7e41".to_string(),
        serde_json::to_string(secret).unwrap().trim_matches('"').to_string(),
    ];
    for (what, text) in [("agents", &agents), ("tests", &tests), ("notification", &notified.join("\n")), ("log", &log)] {
        for f in &forms {
            assert!(!text.contains(f.as_str()), "{what} shows the secret as {f:?}:\n{text}");
        }
    }
    assert!(log.contains("split: *** :end"), "a secret the step wrote in two parts, read apart, is masked whole: {log}");
    assert!(agents.contains("deploying with ***"), "{agents}");
    assert!(tests.contains("got ***"), "{tests}");
    assert!(notified.join("\n").contains("got ***"), "{notified:?}");
}

#[test]
fn network_false_cuts_a_job_off() {
    let mut k = Kiln::start();
    k.agent("a", &["--concurrency", "2"]);
    let port = k.url.rsplit(':').next().unwrap().to_string();
    let probe = format!("if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo \"$KILN_JOB_NAME: CONNECTED\"; else echo \"$KILN_JOB_NAME: NO-NETWORK\"; fi");
    let repo = k.repo("net", &format!("jobs:\n  cut:\n    network: false\n    steps: ['{probe}']\n  open:\n    steps: ['{probe}']\n"));
    k.add_project("net", &repo, &[]);
    let (b, log) = run_build(&k, "net");
    assert_eq!(b["status"], "passed", "{log}");
    assert!(log.contains("cut: NO-NETWORK"), "{log}");
    assert!(log.contains("open: CONNECTED"), "{log}");
}

#[test]
fn isolation_none_warns_at_start_and_on_the_agents_page() {
    let mut k = Kiln::start();
    agent_given(&mut k, "bare", "env", &["--isolation", "none"]);
    k.wait_for("the agent's warning", 20, || k.agent_log("bare").contains("without a sandbox"));
    let mut api = String::new();
    k.wait_for("the agent's status", 20, || {
        api = http("GET", &format!("{}/api/v1/agents", k.url), &[], b"").1;
        api.contains("\"isolation\":\"none\"")
    });
    let page = http("GET", &format!("{}/agents", k.url), &[], b"").1;
    assert!(page.contains("<div class=\"warn\">⚠ jobs run without a sandbox"), "{page}");
    // Steps still start from the allow-list, not the agent's environment.
    let repo = k.repo("p", "jobs:\n  j:\n    steps: ['env | grep -c ^KILN_AGENT_TOKEN= || echo no-agent-token']\n");
    k.add_project("p", &repo, &[]);
    let (b, log) = run_build(&k, "p");
    assert_eq!(b["status"], "passed", "{log}");
    assert!(log.contains("no-agent-token"), "{log}");
}

fn running(pattern: &str) -> bool {
    Command::new("pgrep").args(["-f", pattern]).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

#[test]
fn timeout_and_cancel_kill_everything_in_the_sandbox() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    // `setsid` takes a daemon out of the step's process group; the sandbox's PID namespace
    // still ends it with the step.
    let repo = k.repo("slow", "jobs:\n  t:\n    timeout: 2s\n    steps: ['setsid sleep 31.4159 & sleep 30']\n");
    k.add_project("slow", &repo, &[]);
    let (b, log) = run_build(&k, "slow");
    assert_eq!(b["status"], "failed", "{log}");
    assert!(log.contains("timed out"), "{log}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!running("sleep 31.4159"), "a daemon of a timed-out step survived");

    let repo = k.repo("cancel", "jobs:\n  c:\n    steps: ['setsid sleep 27.1828 & sleep 60']\n");
    k.add_project("cancel", &repo, &[]);
    let id = k.trigger("cancel");
    k.wait_for("the step to start", 30, || running("sleep 27.1828"));
    let out = k.kiln(&["cancel", &id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let b = k.wait_build(id, 30);
    assert_eq!(b["status"], "cancelled");
    k.wait_for("the cancelled step's daemon to die", 10, || !running("sleep 27.1828"));
}

#[test]
fn kiln_run_sandboxes_steps_but_leaves_the_repository_writable() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    // Outside /tmp (which is the job's own in the sandbox): the host, read-only.
    let outside = std::path::PathBuf::from(format!("/var/tmp/kiln-run-test-{}.txt", std::process::id()));
    std::fs::write(
        repo.join(".kiln.yml"),
        format!("jobs:\n  j:\n    steps:\n      - echo made > made.txt\n      - echo x > {} 2>/dev/null && echo WROTE-OUTSIDE || echo outside-read-only\n", outside.display()),
    )
    .unwrap();
    commit_all(&repo, "init");
    let out = Command::new(BIN).args(["run", "-j", "1", "--work-dir"]).arg(dir.path().join("w")).arg(&repo).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(repo.join("made.txt")).unwrap(), "made\n");
    assert!(!outside.exists());
    let log = std::fs::read_to_string(dir.path().join("w/job-1/log")).unwrap();
    assert!(log.contains("outside-read-only"), "{log}");
}

/// A step that leaves a folder chain deeper than the longest path the system takes (so a
/// path-by-path removal fails) and a file beside it, in its HOME.
const TOO_DEEP: &str = r#"jobs:
  deep:
    steps:
      - |
        echo "home holds: [$(ls -A "$HOME" | tr '\n' ' ')]"
        cd "$HOME"; i=0
        while [ $i -lt 300 ]; do mkdir aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa && cd aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa || break; i=$((i+1)); done
        echo planted > "$HOME/planted"; echo "depth $i"
"#;

#[test]
fn a_kept_folder_that_cannot_be_reset_is_not_reused() {
    let mut k = Kiln::start();
    k.agent("a", &[]);
    let repo = k.repo("deep", TOO_DEEP);
    k.add_project("deep", &repo, &[]);
    for round in 0..3 {
        let (b, log) = run_build(&k, "deep");
        assert_eq!(b["status"], "passed", "round {round}:\n{log}");
        assert!(log.contains("depth 300"), "round {round}: the chain was made:\n{log}");
        assert!(log.contains("home holds: []"), "round {round}: HOME held what an earlier job left:\n{log}");
    }
}
