//! Hostile input and hostile hosts, against the real binary: floods, bombs,
//! credentials in URLs, dangerous git transports, tarpits, replays, redirects,
//! archive and log sizes. Each test is a finding of the security review.

mod common;
#[allow(dead_code)]
mod notify_support;

use common::*;
use http::{csrf_of, get, send};

const FORM: &str = "application/x-www-form-urlencoded";

/// A memory figure of a process from /proc (`VmHWM`: peak resident, `VmRSS`: now), in MiB.
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix(field)).unwrap().trim_start_matches(':').trim().trim_end_matches("kB").trim().parse().unwrap();
    kb / 1024
}

fn peak_rss_mib(pid: u32) -> u64 {
    memory_mib(pid, "VmHWM")
}

/// One wrong sign-in through the form: the response.
fn wrong_sign_in(base: &str, name: &str) -> http::Resp {
    let form = get(base, "/login", &[]);
    let pre = form.cookie("kiln_csrf").unwrap_or_default();
    let csrf = csrf_of(&form.text());
    send(base, "POST", "/login", &[("Content-Type", FORM), ("Cookie", &format!("kiln_csrf={pre}"))], format!("_csrf={csrf}&name={name}&password=wrong-password").as_bytes(), false)
}

#[test]
fn a_sign_in_flood_is_throttled_and_memory_stays_bounded() {
    let k = Kiln::start_with(&["--admin-password", "first-admin-pw"]);
    let url = k.url.clone();
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || (0..4).map(|_| wrong_sign_in(&url, if i % 2 == 0 { "admin" } else { "nobody" })).map(|r| (r.status, r.header("retry-after").map(str::to_string))).collect::<Vec<_>>())
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let throttled: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!throttled.is_empty(), "no 429 among {:?}", answers.iter().map(|a| a.0).collect::<Vec<_>>());
    assert!(throttled.iter().all(|(_, ra)| ra.as_deref().and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s > 0)), "429 without Retry-After: {throttled:?}");
    assert!(answers.iter().all(|(s, _)| matches!(s, 401 | 429)), "{answers:?}");
    let peak = peak_rss_mib(k.server_pid());
    eprintln!("server peak RSS under the sign-in flood: {peak} MiB");
    assert!(peak < 100, "server peak RSS {peak} MiB under a sign-in flood (limit 100)");
    // The user name was locked out, and that was logged.
    let log = k.server_log();
    assert!(log.contains("locked out of sign-in"), "{log}");
}

const BOMB: &str = "jobs:\n  j:\n    matrix:\n      a: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]\n      b: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]\n    tests: { shards: 64, list: \"true\", run: \"true {tests}\" }\n";

#[test]
fn a_job_bomb_errors_naming_the_cap_and_the_cap_can_be_set() {
    let k = Kiln::start();
    let repo = k.repo("bomb", BOMB);
    k.add_project("bomb", &repo, &[]);
    let b = k.wait_build(k.trigger("bomb"), 60);
    assert_eq!(b["status"], "errored", "{b:#}");
    let e = b["error"].as_str().unwrap_or_default();
    assert!(e.contains("16384 jobs") && e.contains("cap of 1000 jobs per build") && e.contains("--max-jobs-per-build"), "{e}");
    assert_eq!(b["jobs"].as_array().map_or(0, Vec::len), 0, "nothing was queued");

    let k = Kiln::start_with(&["--max-jobs-per-build", "11"]);
    let repo = k.repo("twelve", "jobs:\n  j:\n    matrix:\n      a: [1,2,3,4]\n      b: [1,2,3]\n    steps: [\"true\"]\n");
    k.add_project("twelve", &repo, &[]);
    let b = k.wait_build(k.trigger("twelve"), 60);
    assert_eq!(b["status"], "errored", "{b:#}");
    assert!(b["error"].as_str().unwrap_or_default().contains("12 jobs"), "{b:#}");
}

#[test]
fn a_builds_jobs_come_in_pages_in_the_api_the_console_and_whole_in_the_cli() {
    let k = Kiln::start();
    let cells: Vec<String> = (1..=25).map(|i| i.to_string()).collect();
    let pipeline = format!("jobs:\n  j:\n    matrix:\n      a: [{}]\n      b: [1,2,3,4,5,6,7,8,9,10]\n    steps: [\"true\"]\n", cells.join(","));
    let repo = k.repo("wide", &pipeline);
    k.add_project("wide", &repo, &["--public"]);
    let id = k.trigger("wide");
    // No agent: the 250 jobs stay queued once the pipeline is read.
    let api = |q: &str| -> serde_json::Value { serde_json::from_str(&get(&k.url, &format!("/api/v1/builds/{id}{q}"), &[]).text()).unwrap() };
    k.wait_for("the pipeline to be read", 60, || api("")["jobs_total"] == 250);
    let first = api("");
    assert_eq!(first["jobs"].as_array().unwrap().len(), 100, "100 jobs a page by default");
    let last = api("?jobs_offset=200&jobs_limit=100");
    let ids = |b: &serde_json::Value| b["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&last).len(), 50);
    assert!(ids(&first).iter().max() < ids(&last).iter().min(), "pages follow job order");
    assert_eq!(api("?jobs_limit=100000")["jobs"].as_array().unwrap().len(), 250, "a limit over 500 is clamped, not refused");
    assert_eq!(api("?jobs_limit=100000&jobs_offset=0")["jobs_total"], 250);
    // A list of builds pages each build's jobs the same way.
    let list: serde_json::Value = serde_json::from_str(&get(&k.url, "/api/v1/projects/wide/builds?jobs_limit=7", &[]).text()).unwrap();
    assert_eq!(list["builds"][0]["jobs"].as_array().unwrap().len(), 7);
    let list: serde_json::Value = serde_json::from_str(&get(&k.url, "/api/v1/projects/wide/builds", &[]).text()).unwrap();
    assert_eq!(list["builds"][0]["jobs"].as_array().unwrap().len(), 20, "20 jobs a build in a list by default");
    let list: serde_json::Value = serde_json::from_str(&get(&k.url, "/api/v1/projects/wide/builds?jobs_limit=1000", &[]).text()).unwrap();
    assert_eq!(list["builds"][0]["jobs"].as_array().unwrap().len(), 100, "at most 100 jobs a build in a list");
    assert_eq!(list["builds"][0]["jobs_total"], 250);
    // The CLI asks for every page.
    assert_eq!(k.build(id)["jobs"].as_array().unwrap().len(), 250);
    // The console shows one page with a link on, and the page that holds an asked job.
    let page = get(&k.url, &format!("/builds/{id}"), &[]).text();
    assert!(page.contains("Jobs 1–100 of 250") && page.contains(&format!("/builds/{id}?jobs_offset=100")), "{page}");
    assert_eq!(page.matches("class=\"job ").count(), 100);
    let late = ids(&last)[40];
    let page = get(&k.url, &format!("/builds/{id}?job={late}"), &[]).text();
    assert!(page.contains("Jobs 201–250 of 250") && page.contains(&format!("?jobs_offset=100\" rel=\"prev\"")), "{page}");
}

#[test]
fn junit_reports_and_test_cases_past_their_caps_error_the_job_naming_the_cap() {
    let mut k = Kiln::start_with(&["--max-junit-reports-per-job", "2", "--max-test-cases-per-job", "4"]);
    k.agent("a1", &[]);
    let case = |n: usize| (0..n).map(|i| format!("<testcase classname=\"c\" name=\"t{i}\"/>")).collect::<String>();
    let three_reports = format!(
        "jobs:\n  j:\n    steps:\n      - \"for i in 1 2 3; do echo '<testsuite>{}</testsuite>' > $KILN_JUNIT_DIR/r$i.xml; done\"\n",
        case(1).replace('"', "\\\"")
    );
    let five_cases = format!("jobs:\n  j:\n    steps:\n      - \"echo '<testsuite>{}</testsuite>' > $KILN_JUNIT_DIR/r.xml\"\n", case(5).replace('"', "\\\""));
    let four_cases = format!("jobs:\n  j:\n    steps:\n      - \"echo '<testsuite>{}</testsuite>' > $KILN_JUNIT_DIR/r.xml\"\n", case(4).replace('"', "\\\""));
    for (name, pipeline, want) in [
        ("reports", &three_reports, Some("at most 2 JUnit reports; merge them, or raise the cap with `kiln server --max-junit-reports-per-job N`")),
        ("cases", &five_cases, Some("5 more test cases would take the job past the cap of 4 test cases per job; shard the suite over more jobs, or raise the cap with `kiln server --max-test-cases-per-job N`")),
        ("fits", &four_cases, None),
    ] {
        let repo = k.repo(name, pipeline);
        k.add_project(name, &repo, &[]);
        let b = k.wait_build(k.trigger(name), 90);
        match want {
            Some(want) => {
                assert_eq!(b["status"], "errored", "{name}: {b:#}");
                let reason = b["jobs"][0]["reason"].as_str().unwrap_or_default();
                assert!(reason.contains(want), "{name}: {reason}");
            }
            None => {
                assert_eq!(b["status"], "passed", "{name}: {b:#}");
                assert_eq!(b["tests"]["total"], 4, "{name}: {b:#}");
            }
        }
    }
}

#[test]
fn a_pipeline_file_over_a_mebibyte_is_refused() {
    let k = Kiln::start();
    let big = format!("jobs:\n  j:\n    steps: [\"true\"]\n# {}\n", "x".repeat(1 << 20));
    let repo = k.repo("big", &big);
    k.add_project("big", &repo, &[]);
    let b = k.wait_build(k.trigger("big"), 60);
    assert_eq!(b["status"], "errored", "{b:#}");
    assert!(b["error"].as_str().unwrap_or_default().contains("more than the fixed cap of 1048576"), "{b:#}");
}

#[test]
fn credentials_in_a_repository_url_never_show() {
    let k = Kiln::start_with(&["--admin-password", "first-admin-pw"]);
    // Nothing listens on port 9: the clone fails, and its error is public.
    let repo = "https://kilnbot:Sup3rSecretPAT@127.0.0.1:9/org/oss.git";
    let out = k.kiln(&["project", "add", "oss", "--public", "--repo", repo]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let b = k.wait_build(k.trigger("oss"), 60);
    assert_eq!(b["status"], "errored", "{b:#}");
    assert!(b["error"].as_str().unwrap_or_default().contains("https://127.0.0.1:9/org/oss.git"), "{b:#}");
    let mut seen = String::new();
    for path in ["/api/v1/projects/oss", "/api/v1/projects/oss/builds", &format!("/api/v1/builds/{}", b["id"]), &format!("/builds/{}", b["id"]), "/projects/oss", "/"] {
        seen.push_str(&get(&k.url, path, &[]).text());
    }
    seen.push_str(&String::from_utf8_lossy(&k.kiln(&["show", &b["id"].to_string()]).stdout));
    seen.push_str(&k.server_log());
    assert!(!seen.contains("Sup3rSecretPAT") && !seen.contains("kilnbot"), "a repository credential shows:\n{seen}");
}

#[test]
fn ext_transport_is_refused_even_when_the_hosts_git_allows_it() {
    let k = Kiln::start_plain(&[], &[("GIT_CONFIG_COUNT", "1"), ("GIT_CONFIG_KEY_0", "protocol.allow"), ("GIT_CONFIG_VALUE_0", "always")]);
    let pwned = k.path("pwned");
    let out = k.kiln(&["project", "add", "extp", "--repo", &format!("ext::sh -c touch% {}", pwned.display())]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the ext:: transport is not allowed"), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!pwned.exists(), "an ext:: repository URL ran a command on the server");
}

#[test]
fn local_repositories_need_the_servers_permission() {
    let k = Kiln::start_plain(&[], &[]);
    let repo = k.repo("local", "jobs:\n  j:\n    steps: [\"true\"]\n");
    for r in [repo.display().to_string(), format!("file://{}", repo.display())] {
        let out = k.kiln(&["project", "add", "loc", "--repo", &r]);
        assert!(!out.status.success(), "{r} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-local-repos"), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_tarpit_repository_does_not_stop_another_projects_poll() {
    // Accepts connections and never answers.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tarpit.local_addr().unwrap().port();
    let held = std::thread::spawn(move || tarpit.incoming().take(64).map(|c| c.map(|c| Box::leak(Box::new(c)))).count());
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let t0 = std::time::Instant::now();
    let out = k.kiln(&["project", "add", "aaa-tarpit", "--repo", &format!("git://127.0.0.1:{port}/org/slow.git"), "--poll", "1s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(t0.elapsed() < std::time::Duration::from_secs(30), "adding a project waited {:?} on a silent repository", t0.elapsed());
    let repo = k.repo("pub", "on:\n  push: {}\njobs:\n  j:\n    steps: [\"true\"]\n");
    k.add_project("pub", &repo, &["--poll", "1s"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::write(repo.join("new.txt"), "x").unwrap();
    let sha = commit_all(&repo, "a new commit");
    k.wait_for("a poll build of pub while the tarpit hangs", 30, || builds(&k, "pub").iter().any(|b| b["commit"] == sha.as_str()));
    drop(held);
}

#[test]
fn private_notification_targets_are_refused_without_the_flag() {
    let mut k = Kiln::start_plain(&["--allow-local-repos"], &[]);
    k.agent("a1", &[]);
    let hook = notify_support::Recorder::start(|_, _| 200);
    let repo = k.repo("n", "jobs:\n  j:\n    steps: [\"false\"]\n");
    k.add_project("n", &repo, &["--notify-webhook", &format!("http://127.0.0.1:{}/hook", hook.port), "--notify-webhook", &format!("http://localhost:{}/hook", hook.port)]);
    assert_eq!(k.wait_build(k.trigger("n"), 60)["status"], "failed");
    let errors = || -> Vec<String> {
        k.json(&["project", "notifications", "n"]).as_array().unwrap().iter().filter_map(|d| d["last_error"].as_str().map(str::to_string)).collect()
    };
    k.wait_for("both deliveries to be refused", 30, || errors().len() == 2);
    for e in errors() {
        assert!(e.contains("--allow-private-targets"), "{e}");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(hook.reqs.lock().unwrap().is_empty(), "a private target was called");
}

#[test]
fn webhooks_give_one_answer_for_private_missing_and_unsigned_and_ignore_replays() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let repo = k.repo("w", "on:\n  push: {}\njobs:\n  j:\n    steps: [\"true\"]\n");
    k.add_project("hidden", &repo, &["--private", "--webhook-secret", "s3cret"]);
    k.add_project("nosecret", &repo, &["--public"]);
    let answers: Vec<(u16, String)> = ["hidden", "no-such-project", "nosecret"]
        .iter()
        .map(|p| http("POST", &format!("{}/hooks/generic/{p}", k.url), &[("X-Kiln-Signature-256", "sha256=00")], b"{}"))
        .map(|(s, body)| (s, body.replace("hidden", "P").replace("no-such-project", "P").replace("nosecret", "P")))
        .collect();
    assert_eq!(answers[0].0, 401, "{answers:?}");
    assert!(answers.iter().all(|a| a == &answers[0]), "different answers: {answers:?}");
    // A signed delivery builds once; the same delivery again is a replay.
    let body = br#"{"branch":"main"}"#;
    let sig = format!("sha256={}", notify_support::hmac_hex("s3cret", body));
    let url = format!("{}/hooks/generic/hidden", k.url);
    let h = [("X-Kiln-Signature-256", sig.as_str()), ("X-Kiln-Delivery", "d-1")];
    assert_eq!(http("POST", &url, &h, body).0, 202);
    let (st, text) = http("POST", &url, &h, body);
    assert_eq!(st, 200, "{text}");
    assert!(text.contains("duplicate delivery"), "{text}");
    // Remembered in the database: still a replay after a restart.
    k.restart_server();
    assert!(http("POST", &url, &h, body).1.contains("duplicate delivery"));
    let h2 = [("X-Kiln-Signature-256", sig.as_str()), ("X-Kiln-Delivery", "d-2")];
    assert_eq!(http("POST", &url, &h2, body).0, 202);
    assert_eq!(builds(&k, "hidden").len(), 2);
}

#[test]
fn pages_carry_security_headers_and_sign_in_stays_on_site() {
    let k = Kiln::start_with(&["--admin-password", "first-admin-pw"]);
    for path in ["/", "/login", "/api/v1/projects", "/assets/console.js", "/no-such-page"] {
        let r = get(&k.url, path, &[]);
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(r.header("referrer-policy").is_some(), "{path}");
    }
    // No page has an inline script or handler for the policy to block.
    let page = get(&k.url, "/login", &[]).text();
    assert!(!page.contains("<script>") && !page.contains(" onclick="), "{page}");
    // `/<TAB>/evil.example` is `//evil.example` to a browser: refused.
    for next in ["%2F%09%2Fevil.example%2Fphish", "%2F%2Fevil.example", "%2F%5Cevil.example", "https%3A%2F%2Fevil.example"] {
        let form = get(&k.url, &format!("/login?next={next}"), &[]);
        let pre = form.cookie("kiln_csrf").unwrap();
        let csrf = csrf_of(&form.text());
        let body = format!("_csrf={csrf}&name=admin&password=first-admin-pw&next={next}");
        let r = send(&k.url, "POST", "/login", &[("Content-Type", FORM), ("Cookie", &format!("kiln_csrf={pre}"))], body.as_bytes(), false);
        assert_eq!(r.status, 303, "{}", r.text());
        assert_eq!(r.header("location"), Some("/"), "next={next}");
    }
}

#[test]
fn reading_a_64_mb_log_keeps_the_server_small() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    // 64 MiB of log lines (the default log limit), then a marker.
    let repo = k.repo("loud", "jobs:\n  j:\n    steps: [\"yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 67000000; echo END-OF-LOG\"]\n");
    k.add_project("loud", &repo, &[]);
    let b = k.wait_build(k.trigger("loud"), 300);
    assert_eq!(b["status"], "passed", "{b:#}");
    let job = b["jobs"][0]["id"].as_i64().unwrap();
    // A fresh server process: only reading the log counts, not having written it.
    k.restart_server();
    let pid = k.server_pid();
    let before = memory_mib(pid, "VmRSS");
    let auth = format!("Bearer {ADMIN}");
    let r = get(&k.url, &format!("/api/v1/jobs/{job}/raw"), &[("Authorization", &auth)]);
    assert_eq!(r.status, 200);
    assert!(r.body.len() >= 67_000_000, "{} bytes", r.body.len());
    assert!(r.text().trim_end().ends_with("END-OF-LOG"));
    let peak = peak_rss_mib(pid);
    eprintln!("server RSS {before} MiB before reading a {} MB log, peak {peak} MiB while reading it", r.body.len() / 1_000_000);
    assert!(peak < 60, "the server reached {peak} MiB reading a 64 MB log (limit 60)");
}

#[test]
fn kiln_up_reads_the_repositories_it_is_given_and_no_other_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("given");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".kiln.yml"), "jobs:\n  j:\n    steps: [\"echo up-built\"]\n").unwrap();
    commit_all(&repo, "init");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = dir.path().join("data");
    let mut up = std::process::Command::new(BIN)
        .args(["up", "--no-current", "--agents", "1", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .arg("--repo")
        .arg(&repo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let passed = loop {
        let (_, body) = http("GET", &format!("{url}/api/v1/projects/given/builds"), &[], b"");
        if body.contains("\"passed\"") || std::time::Instant::now() > deadline {
            break body.contains("\"passed\"");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap_or_default();
    let other = dir.path().join("other");
    let (status, body) = http(
        "POST",
        &format!("{url}/api/v1/projects"),
        &[("Authorization", &format!("Bearer {}", token.trim())), ("Content-Type", "application/json")],
        format!(r#"{{"name":"other","repo":"{}"}}"#, other.display()).as_bytes(),
    );
    let _ = up.kill();
    let _ = up.wait();
    assert!(passed, "the given repository did not build");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("--allow-local-repos"), "{body}");
}

/// `git daemon` serving every repository under `base` on 127.0.0.1; stopped when dropped.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn serving(base: &std::path::Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // git-daemon itself, not `git daemon` (whose killing would leave the daemon running).
        let exec = std::process::Command::new("git").arg("--exec-path").output().unwrap();
        let daemon = std::path::Path::new(String::from_utf8_lossy(&exec.stdout).trim()).join("git-daemon");
        let child = std::process::Command::new(daemon)
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1", &format!("--port={port}"), &format!("--base-path={}", base.display())])
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git-daemon (part of git) runs");
        let d = GitDaemon { child, port };
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "git daemon did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        d
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_repository_on_a_private_address_needs_the_admins_word_for_its_host() {
    let k = Kiln::start_plain(&[], &[]);
    k.repo("served", "jobs:\n  j:\n    steps: [\"test -f .kiln.yml\"]\n");
    let daemon = GitDaemon::serving(k.dir.path());
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // An address written in the URL is refused when the project is added, naming both flags.
    let out = k.kiln(&["project", "add", "lit", "--repo", &format!("git://127.0.0.1:{}/served", daemon.port)]);
    assert!(!out.status.success(), "a loopback repository was accepted");
    assert!(stderr(&out).contains("--allow-private-host 127.0.0.1") && stderr(&out).contains("--allow-private-targets"), "{}", stderr(&out));
    // A URL that git would read as another host than the one checked is refused.
    let out = k.kiln(&["project", "add", "sly", "--repo", &format!("git://127.0.0.1:{}%2F@1.1.1.1/served", daemon.port)]);
    assert!(!out.status.success() && stderr(&out).contains("read differently"), "{}", stderr(&out));
    // A name is refused once it is resolved: the build says why, and nothing was fetched.
    let out = k.kiln(&["project", "add", "named", "--repo", &format!("git://localhost:{}/served", daemon.port)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = k.wait_build(k.trigger("named"), 60);
    assert_eq!(b["status"], "errored", "{b:#}");
    assert!(b["error"].as_str().unwrap_or_default().contains("--allow-private-host localhost"), "{b:#}");
    assert!(!k.path("data/repos").read_dir().map(|mut d| d.any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".git"))).unwrap_or(false), "a mirror was made");

    // The admin allows that one host: its builds run; another private host is still refused.
    let mut k2 = Kiln::start_plain(&["--allow-private-host", "localhost"], &[]);
    k2.agent("a1", &[]);
    let out = k2.kiln(&["project", "add", "named", "--repo", &format!("git://localhost:{}/served", daemon.port)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(k2.wait_build(k2.trigger("named"), 60)["status"], "passed");
    assert!(!k2.kiln(&["project", "add", "lit", "--repo", &format!("git://127.0.0.1:{}/served", daemon.port)]).status.success(), "another host was let through");
}
