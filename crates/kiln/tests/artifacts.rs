//! Artifacts end to end: kept by the agent after the steps (per `when`, a failed job's
//! too by default), listed and downloaded byte for byte (`kiln artifacts`), fetched by a
//! downstream job through `needs` + `KILN_ARTIFACTS_IN`; the limits (413), a `../` name, a
//! broken-off upload that leaves nothing and a retry that completes it, and a private
//! project's artifact that strangers cannot see.

mod common;
use common::*;
use serde_json::Value;
use std::io::Write;

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap().to_string()
}

#[test]
fn artifacts_are_kept_listed_downloaded_and_passed_downstream() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let pipeline = r#"jobs:
  up:
    artifacts: ["out/*.bin", "report.txt"]
    steps:
      - mkdir -p out && head -c 300000 /dev/urandom > out/blob.bin && ln -s /etc/passwd out/link.bin && echo made > report.txt
      - echo "UP-SUM $(sha256sum out/blob.bin | cut -c1-64)"
  down:
    needs: [up]
    steps:
      - echo "DOWN-SUM $(sha256sum "$KILN_ARTIFACTS_IN/up/out/blob.bin" | cut -c1-64)"
      - cat "$KILN_ARTIFACTS_IN/up/report.txt"
  broken:
    artifacts: {paths: [fail.log], when: on_failure}
    steps: ["echo why-it-failed > fail.log; exit 3"]
  unkept:
    artifacts: {paths: [fail.log], when: on_success}
    steps: ["echo x > fail.log; exit 3"]
"#;
    let repo = k.repo("art", pipeline);
    k.add_project("art", &repo, &[]);
    let id = k.trigger("art");
    let b = k.wait_build(id, 120);
    assert_eq!(Kiln::job(&b, "down")["status"], "passed", "{}", k.logs(id));
    let logs = k.logs(id);
    let up = logs.lines().find_map(|l| l.strip_prefix("UP-SUM ")).expect("upstream sum");
    let down = logs.lines().find_map(|l| l.strip_prefix("DOWN-SUM ")).expect("downstream sum");
    assert_eq!(up, down, "the downstream job read the upstream artifact byte for byte");

    let list = k.json(&["artifacts", &id.to_string()]);
    let names: Vec<(String, String)> = list.as_array().unwrap().iter().map(|a| (a["job"].as_str().unwrap().into(), a["name"].as_str().unwrap().into())).collect();
    assert_eq!(
        names,
        vec![("broken".into(), "fail.log".into()), ("up".into(), "out/blob.bin".into()), ("up".into(), "report.txt".into())],
        "a failing job keeps its `on_failure` files, not its `on_success` ones; symlinks are not followed"
    );
    let dir = k.path("dl");
    let out = k.kiln(&["artifacts", &id.to_string(), "--download", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256_of(&dir.join("up/out/blob.bin")), up);
    assert_eq!(std::fs::read_to_string(dir.join("broken/fail.log")).unwrap(), "why-it-failed\n");
    // The build page lists them.
    let page = http("GET", &format!("{}/builds/{id}", k.url), &[("Authorization", &format!("Bearer {ADMIN}"))], b"").1;
    assert!(page.contains("out/blob.bin") && page.contains(&format!("/api/v1/builds/{id}/artifacts/")), "the build page lists the artifacts");
}

/// `when: always` is the default: a failed job's artifacts are kept whether `artifacts:` is a
/// list of globs or a map without `when`.
#[test]
fn a_failed_jobs_artifacts_are_kept_by_default() {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let pipeline = r#"jobs:
  listed:
    artifacts: [why.log]
    steps: ["echo listed-failed > why.log; exit 3"]
  mapped:
    artifacts: {paths: [why.log]}
    steps: ["echo mapped-failed > why.log; exit 4"]
"#;
    let repo = k.repo("fails", pipeline);
    k.add_project("fails", &repo, &[]);
    let id = k.trigger("fails");
    let b = k.wait_build(id, 120);
    assert_eq!(b["status"], "failed", "{b}");
    for key in ["listed", "mapped"] {
        assert_eq!(Kiln::job(&b, key)["status"], "failed", "{}", k.logs(id));
    }
    let list = k.json(&["artifacts", &id.to_string()]);
    let names: Vec<(String, String, u64)> = list.as_array().unwrap().iter().map(|a| (a["job"].as_str().unwrap().into(), a["name"].as_str().unwrap().into(), a["size"].as_u64().unwrap())).collect();
    assert_eq!(names, vec![("listed".into(), "why.log".into(), 14), ("mapped".into(), "why.log".into(), 14)], "{list}");
    let dir = k.path("dl");
    let out = k.kiln(&["artifacts", &id.to_string(), "--download", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("listed/why.log")).unwrap(), "listed-failed\n");
    assert_eq!(std::fs::read_to_string(dir.join("mapped/why.log")).unwrap(), "mapped-failed\n");
}

/// Register a fake agent and claim the one queued job: (agent token, job id, attempt).
fn claim_as_fake_agent(k: &Kiln) -> (String, i64, i64) {
    let reg = serde_json::json!({"name": "fake", "labels": {}, "concurrency": 1, "protocol": kiln_wire::PROTOCOL_VERSION});
    let r = http::send(&k.url, "POST", "/api/v1/agent/register", &[("Authorization", &format!("Bearer {AGENT_TOKEN}")), ("Content-Type", "application/json")], reg.to_string().as_bytes(), false);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = serde_json::from_slice::<Value>(&r.body).unwrap()["token"].as_str().unwrap().to_string();
    for _ in 0..20 {
        let r = http::send(&k.url, "POST", "/api/v1/agent/claim", &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")], b"{}", false);
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if let Some(j) = v.get("job_id").and_then(Value::as_i64) {
            return (token, j, v["attempt"].as_i64().unwrap());
        }
    }
    panic!("no job to claim");
}

#[test]
fn uploads_are_limited_named_safely_atomic_and_private() {
    let k = Kiln::start_with(&["--artifact-file-limit", "100000", "--artifact-job-limit", "150000"]);
    let repo = k.repo("sec", "jobs:\n  j:\n    artifacts: [out.bin]\n    steps: [sleep 60]\n");
    k.add_project("sec", &repo, &["--private"]);
    let id = k.trigger("sec");
    let (token, job, attempt) = claim_as_fake_agent(&k);
    let auth = format!("Bearer {token}");
    let put = |name: &str, body: &[u8]| http::send(&k.url, "PUT", &format!("/api/v1/agent/jobs/{job}/artifacts?attempt={attempt}&name={name}"), &[("Authorization", &auth)], body, false);
    let files = k.path("data/artifacts");

    // A name that leaves its folder.
    let r = put("..%2Fevil.txt", b"evil");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("leaves its folder"), "{}", r.text());
    assert!(!k.path("data/evil.txt").exists() && !files.join("evil.txt").exists());

    // Past the per-file limit: 413 naming the cap and the flag.
    let r = put("big.bin", &vec![7u8; 120_000]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("100000 byte limit per file") && r.text().contains("--artifact-file-limit"), "{}", r.text());

    // A broken-off upload: half the body, then the connection closes.
    let host = k.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(s, "PUT /api/v1/agent/jobs/{job}/artifacts?attempt={attempt}&name=out/data.bin HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nContent-Length: 90000\r\n\r\n").unwrap();
    s.write_all(&[1u8; 40_000]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(s);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let list = |k: &Kiln| -> Value { serde_json::from_str(&http("GET", &format!("{}/api/v1/builds/{id}/artifacts", k.url), &[("Authorization", &format!("Bearer {ADMIN}"))], b"").1).unwrap() };
    assert_eq!(list(&k), serde_json::json!([]), "nothing half-written is listed");
    assert!(!files.join(job.to_string()).join("out/data.bin").exists(), "nothing half-written is in place");
    let partial: Vec<_> = std::fs::read_dir(files.join(".partial")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(partial.is_empty(), "the staging file was removed: {partial:?}");
    // The retry completes it.
    let r = put("out/./data.bin", &[1u8; 90_000]);
    assert_eq!(r.status, 200, "{}", r.text());
    let l = list(&k);
    assert_eq!(l[0]["name"], "out/data.bin");
    assert_eq!(l[0]["size"], 90_000);
    // Past the per-job limit.
    let r = put("more.bin", &[2u8; 70_000]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("150000 byte limit per job") && r.text().contains("--artifact-job-limit"), "{}", r.text());

    // The owner downloads it; a stranger does not even learn it exists.
    let url = l[0]["url"].as_str().unwrap().to_string();
    let (st, body) = http("GET", &format!("{}{url}", k.url), &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert_eq!((st, body.len()), (200, 90_000));
    assert_eq!(http("GET", &format!("{}{url}", k.url), &[], b"").0, 404);
    assert_eq!(http("GET", &format!("{}/api/v1/builds/{id}/artifacts", k.url), &[], b"").0, 404);
    // Nor its log, by any route.
    for p in ["log", "log?tail=100", "log/search?q=x", "log/events", "raw"] {
        assert_eq!(http("GET", &format!("{}/api/v1/jobs/{job}/{p}", k.url), &[], b"").0, 404, "{p}");
    }
    // Another attempt's upload is refused (fencing).
    let r = http::send(&k.url, "PUT", &format!("/api/v1/agent/jobs/{job}/artifacts?attempt={}&name=x.bin", attempt + 1), &[("Authorization", &auth)], b"x", false);
    assert_eq!(r.status, 409, "{}", r.text());
}

/// `kiln run` passes artifacts downstream as a server build does: a job that `needs` one with
/// `artifacts:` finds its files in `$KILN_ARTIFACTS_IN/<job>/<name>` (and only those files, only
/// when `when` kept them); a job that needs nothing finds the folder empty.
#[test]
fn kiln_run_passes_artifacts_to_jobs_that_need_them() {
    let k = Kiln::start();
    let pipeline = r#"jobs:
  up:
    artifacts: ["out/*.bin"]
    steps:
      - mkdir -p out && head -c 200000 /dev/urandom > out/blob.bin && echo other > out/skip.txt
      - sha256sum out/blob.bin | cut -c1-64 > up.sum
  down:
    needs: [up]
    steps:
      - test "$(sha256sum "$KILN_ARTIFACTS_IN/up/out/blob.bin" | cut -c1-64)" = "$(cat up.sum)"
      - test ! -e "$KILN_ARTIFACTS_IN/up/out/skip.txt"
      - echo DOWN-READ-IT
  lone:
    steps:
      - test -z "$(ls -A "$KILN_ARTIFACTS_IN")"
  broken:
    artifacts: {paths: [fail.log], when: on_success}
    steps: ["echo x > fail.log; exit 3"]
  after:
    needs: [broken]
    steps: ["true"]
"#;
    let repo = k.repo("localart", pipeline);
    let work = k.path("run-work");
    let out = std::process::Command::new(BIN).args(["run", "--isolation", "none", "-j", "2", "--work-dir"]).arg(&work).arg(&repo).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = |key: &str| text.lines().find(|l| l.split_whitespace().any(|w| w == key)).unwrap_or("").to_string();
    assert_eq!(out.status.code(), Some(1), "only `broken` fails: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(status("down").contains("passed"), "the downstream job read the upstream artifact byte for byte: {text}");
    assert!(status("lone").contains("passed"), "a job that needs nothing has an empty KILN_ARTIFACTS_IN: {text}");
    let logs: String = std::fs::read_dir(&work).unwrap().flatten().filter_map(|e| std::fs::read_to_string(e.path().join("log")).ok()).collect();
    assert!(logs.contains("kiln: fetched artifact up/out/blob.bin (200000 bytes) into $KILN_ARTIFACTS_IN"), "{logs}");
    assert!(logs.contains("DOWN-READ-IT"), "{logs}");
    assert!(!logs.contains("kept artifact fail.log"), "an on_success artifact of a failed job is not kept: {logs}");
}
