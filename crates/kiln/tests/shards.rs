//! Test distribution end to end: real pytest and cargo-nextest suites in temp git repositories,
//! sharded over real agents (or `kiln run`), JUnit results, retries and flaky tests, a killed
//! shard's batch running again, and bad input. Needs python3 with pytest and cargo-nextest
//! (ci/setup-shards.sh installs them).

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn need_pytest() {
    let ok = Command::new("python3").args(["-c", "import pytest"]).status().is_ok_and(|s| s.success());
    assert!(ok, "python3 with pytest is missing: run ci/setup-shards.sh");
}

/// A pytest suite: 3 files × (6 parametrized + 1 class test + 1 skipped) with one failure, and
/// ids with quotes, spaces and shell metacharacters. Every test appends its node id to `ran`.
fn pytest_suite(dir: &Path, ran: &Path) {
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("conftest.py"),
        format!(
            "import pytest\n@pytest.fixture(autouse=True)\ndef _record(request):\n    with open({:?}, 'a') as f:\n        f.write(request.node.nodeid + '\\n')\n",
            ran.to_str().unwrap()
        ),
    )
    .unwrap();
    for m in ["a", "b", "c"] {
        std::fs::write(
            dir.join(format!("tests/test_{m}.py")),
            format!(
                "import pytest, time\n@pytest.mark.parametrize('n', range(6))\ndef test_num(n):\n    time.sleep(0.02)\n    assert not (n == 3 and '{m}' == 'b'), 'three is unlucky in b'\n\ndef test_skip():\n    pytest.skip('not here')\n\nclass TestK:\n    def test_y(self):\n        pass\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("tests/test_names.py"),
        "import pytest\n@pytest.mark.parametrize('s', [\"it's\", 'two words', '$(touch pwned)', 'semi;colon|pipe', 'back`tick`'])\ndef test_odd(s):\n    assert s\n",
    )
    .unwrap();
}

/// (passed, failed, skipped) of one pytest run of the whole suite in one process.
fn pytest_counts(dir: &Path) -> (u64, u64, u64) {
    let out = Command::new("python3").args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("").to_string();
    let get = |word: &str| {
        last.split(", ").filter_map(|p| p.split_whitespace().collect::<Vec<_>>().get(..2).map(|v| v.to_vec())).find(|v| v[1].starts_with(word)).map_or(0, |v| v[0].parse().unwrap())
    };
    (get("passed"), get("failed"), get("skipped"))
}

/// These suites count their test runs in a file outside the job and use the tester's own
/// pytest and cargo (under /root when run as root), which a sandboxed step cannot reach: the
/// sandbox has its own tests (tests/isolation.rs).
const UNSANDBOXED: &[&str] = &["--isolation", "none"];
const PYTEST_RUN: &str = "python3 -m pytest -q -p no:cacheprovider --junitxml=$KILN_JUNIT_DIR/report.xml {tests}";

fn tests_of(k: &Kiln, id: i64) -> Value {
    k.json(&["show", &id.to_string(), "--tests"])
}

fn counts(v: &Value) -> (u64, u64, u64, u64) {
    let s = &v["summary"];
    (s["passed"].as_u64().unwrap(), s["failed"].as_u64().unwrap(), s["skipped"].as_u64().unwrap(), s["flaky"].as_u64().unwrap())
}

fn ran_counts(ran: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in std::fs::read_to_string(ran).unwrap_or_default().lines() {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}

fn build_id(k: &Kiln, project: &str) -> i64 {
    k.json(&["builds", project])[0]["id"].as_i64().unwrap()
}

#[test]
fn pytest_suite_sharded_over_three_agents_runs_every_test_once() {
    need_pytest();
    let mut k = Kiln::start();
    for a in ["a1", "a2", "a3"] {
        k.agent(a, UNSANDBOXED);
    }
    let ran = k.path("ran.txt");
    let repo = k.repo("py", &format!("jobs:\n  suite:\n    tests:\n      shards: 3\n      list: \"python3 -m pytest --collect-only -q | grep ::\"\n      run: {PYTEST_RUN}\n"));
    pytest_suite(&repo, &ran);
    commit_all(&repo, "suite");
    let expected = pytest_counts(&repo);
    assert_eq!(expected, (25, 1, 3), "the reference pytest run");
    let collected = ran_counts(&ran).len();
    std::fs::remove_file(&ran).unwrap();
    k.add_project("py", &repo, &[]);

    let out = k.kiln(&["trigger", "py", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "a failing test fails the build: {}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tests: 25 passed, 1 failed, 3 skipped"), "status line: {stdout}");
    let id = build_id(&k, "py");
    let b = k.build(id);
    let agents: std::collections::HashSet<&str> = b["jobs"].as_array().unwrap().iter().map(|j| j["agent"].as_str().unwrap()).collect();
    assert_eq!(agents.len(), 3, "three shards on three agents: {b:#}");
    assert_eq!(b["tests"]["total"], 29);

    // Every test ran exactly once, and the merged counts are one pytest run's.
    let runs = ran_counts(&ran);
    assert_eq!(runs.len(), collected);
    assert!(runs.values().all(|&n| n == 1), "a test ran twice: {runs:?}");
    assert!(!repo.join("pwned").exists());
    let t = tests_of(&k, id);
    assert_eq!(counts(&t), (expected.0, expected.1, expected.2, 0));
    let tests = t["tests"].as_array().unwrap();
    assert_eq!(tests[0]["outcome"], "failed", "failures first");
    assert_eq!(tests[0]["key"], "tests/test_b.py::test_num[3]");
    assert!(tests[0]["message"].as_str().unwrap().contains("three is unlucky"));
    let keys: std::collections::HashSet<&str> = tests.iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), tests.len(), "one result per test");
    for odd in ["test_odd[it's]", "test_odd[two words]", "test_odd[$(touch pwned)]", "test_odd[semi;colon|pipe]", "test_odd[back`tick`]"] {
        assert!(keys.contains(format!("tests/test_names.py::{odd}").as_str()), "{odd} missing from {keys:?}");
    }
    let text = String::from_utf8_lossy(&k.kiln(&["show", &id.to_string(), "--tests"]).stdout).into_owned();
    let fail_at = text.find("FAILED tests/test_b.py::test_num[3]").expect("failure listed");
    assert!(fail_at < text.find("slowest:").unwrap() && text.contains("three is unlucky"), "{text}");
    assert!(text.contains("tests/test_names.py::test_odd[$(touch pwned)]"), "{text}");

    // The second build orders by history; `kiln tests` shows it.
    assert_eq!(k.kiln(&["trigger", "py", "--wait"]).status.code(), Some(1));
    let slow = k.json(&["tests", "py", "--slowest", "--limit", "3"]);
    assert_eq!(slow["tests"].as_array().unwrap().len(), 3);
    assert_eq!(slow["tests"][0]["runs"], 2);
}

#[test]
fn split_files_mode_and_retries_with_a_flaky_test() {
    need_pytest();
    let mut k = Kiln::start();
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);
    let ran = k.path("ran.txt");
    let marker = k.path("first-run-happened");
    // Static split over files; one test fails only on its first run; retries: 1.
    let repo = k.repo(
        "flaky",
        &format!("jobs:\n  suite:\n    tests:\n      shards: 2\n      split: files\n      files: \"tests/test_*.py\"\n      retries: 1\n      run: {PYTEST_RUN}\n"),
    );
    pytest_suite(&repo, &ran);
    std::fs::write(
        repo.join("tests/test_flaky.py"),
        format!("import os\ndef test_sometimes():\n    m = {:?}\n    first = not os.path.exists(m)\n    open(m, 'a').close()\n    assert not first, 'fails the first time only'\n", marker.to_str().unwrap()),
    )
    .unwrap();
    // Without the unlucky test: only the flaky one fails, once.
    let b = std::fs::read_to_string(repo.join("tests/test_b.py")).unwrap().replace("n == 3 and", "n == 99 and");
    std::fs::write(repo.join("tests/test_b.py"), b).unwrap();
    commit_all(&repo, "flaky");
    k.add_project("flaky", &repo, &[]);
    let out = k.kiln(&["trigger", "flaky", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "a flaky test does not fail the build: {}", String::from_utf8_lossy(&out.stdout));
    let id = build_id(&k, "flaky");
    let t = tests_of(&k, id);
    assert_eq!(counts(&t), (27, 0, 3, 1));
    let flaky: Vec<&Value> = t["tests"].as_array().unwrap().iter().filter(|x| x["flaky"] == true).collect();
    assert_eq!(flaky.len(), 1);
    assert_eq!(flaky[0]["name"], "test_sometimes");
    assert_eq!(flaky[0]["try_number"], 1);
    // Each file went to one shard: every other test ran once; the flaky one twice.
    let runs = ran_counts(&ran);
    assert_eq!(runs.get("tests/test_flaky.py::test_sometimes"), Some(&2), "{runs:?}");
    assert!(runs.iter().filter(|(k, _)| !k.contains("flaky")).all(|(_, &n)| n == 1), "{runs:?}");
    let text = String::from_utf8_lossy(&k.kiln(&["show", &id.to_string(), "--tests"]).stdout).into_owned();
    assert!(text.contains("1 flaky") && text.contains("flaky (failed, then passed on a retry)"), "{text}");
    let flakiest = k.json(&["tests", "flaky", "--flakiest"]);
    assert_eq!(flakiest["tests"][0]["key"], "tests/test_flaky.py", "{flakiest:#}");
    assert_eq!(flakiest["tests"][0]["flaky"], 1);

    // With flaky_fails_build the same flake fails the build.
    std::fs::remove_file(&marker).unwrap();
    let pipeline = std::fs::read_to_string(repo.join(".kiln.yml")).unwrap().replace("retries: 1", "retries: 1\n      flaky_fails_build: true");
    std::fs::write(repo.join(".kiln.yml"), pipeline).unwrap();
    commit_all(&repo, "strict");
    let out = k.kiln(&["trigger", "flaky", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let b = k.build(build_id(&k, "flaky"));
    let reasons: Vec<&str> = b["jobs"].as_array().unwrap().iter().filter_map(|j| j["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("flaky") && r.contains("tests/test_flaky.py")), "{reasons:?}");
}

#[test]
fn a_killed_shards_batch_runs_again() {
    let mut k = Kiln::start_with(&["--lease", "3"]);
    let marker = k.path("slow-started");
    let ran = k.path("ran.txt");
    let repo = k.repo(
        "kill",
        &format!(
            "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: seq 1 6\n      run: sh run.sh {{tests}}\n"
        ),
    );
    // Test 1 is slow and says who runs it the first time; every test writes a JUnit case.
    std::fs::write(
        repo.join("run.sh"),
        format!(
            "for t in \"$@\"; do\n  echo \"$t\" >> {ran}\n  if [ \"$t\" = 1 ] && [ ! -e {m} ]; then echo \"$KILN_AGENT_NAME\" > {m}; sleep 30; fi\n  echo \"<testsuite><testcase classname=\\\"n\\\" name=\\\"$t\\\" time=\\\"0.1\\\"/></testsuite>\" > \"$KILN_JUNIT_DIR/$t.xml\"\ndone\n",
            ran = ran.display(),
            m = marker.display()
        ),
    )
    .unwrap();
    commit_all(&repo, "run.sh");
    k.add_project("kill", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);
    let id = k.trigger("kill");
    k.wait_for("the slow test to start", 60, || std::fs::read_to_string(&marker).is_ok_and(|s| !s.trim().is_empty()));
    let victim = std::fs::read_to_string(&marker).unwrap().trim().to_string();
    let (_, child) = k.agents.iter_mut().find(|(n, _)| *n == victim).expect("the agent that runs test 1");
    child.kill().unwrap(); // SIGKILL: no goodbye, the lease must expire
    child.wait().unwrap();
    k.agent("a3", UNSANDBOXED);
    let b = k.wait_build(id, 90);
    assert_eq!(b["status"], "passed", "{b:#}");
    let retried: Vec<&Value> = b["jobs"].as_array().unwrap().iter().filter(|j| j["attempt"].as_i64() > Some(1)).collect();
    assert_eq!(retried.len(), 1, "the killed shard ran again: {b:#}");
    let runs = ran_counts(&ran);
    assert!(runs.get("1").copied().unwrap_or(0) >= 2, "test 1 ran again after the kill: {runs:?}");
    let t = tests_of(&k, id);
    assert_eq!(counts(&t), (6, 0, 0, 0), "{t:#}");
    let finals = t["tests"].as_array().unwrap().iter().filter(|x| x["is_final"] == true).count();
    assert_eq!(finals, 6);
}

#[test]
fn bad_input_gives_clear_errors() {
    let mut k = Kiln::start();
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);
    let cases = [
        ("listfails", 2, "list: \"echo nope >&2; exit 3\"\n      run: echo {tests}", "the list command exited with code 3"),
        ("listempty", 2, "list: \"true\"\n      run: echo {tests}", "the list command printed no test ids"),
        ("badxml", 1, "list: \"echo one\"\n      run: sh bad.sh {tests}", "malformed JUnit report junit/batch-"),
    ];
    for (name, shards, tests, _) in &cases {
        let repo = k.repo(name, &format!("jobs:\n  t:\n    tests:\n      shards: {shards}\n      {tests}\n"));
        std::fs::write(repo.join("bad.sh"), "printf '<testsuite>\\n<testcase name=\"one\">\\n</testcas>' > \"$KILN_JUNIT_DIR/bad.xml\"\n").unwrap();
        commit_all(&repo, "bad.sh");
        k.add_project(name, &repo, &[]);
    }
    for (name, _, _, want) in &cases {
        let out = k.kiln(&["trigger", name, "--wait"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", String::from_utf8_lossy(&out.stdout));
        let b = k.build(build_id(&k, name));
        for j in b["jobs"].as_array().unwrap() {
            assert_eq!(j["status"], "errored", "{name}: {b:#}");
            let reason = j["reason"].as_str().unwrap_or("");
            assert!(reason.contains(want), "{name}: {reason:?} lacks {want:?}");
        }
    }
    let b = k.build(build_id(&k, "badxml"));
    let reason = b["jobs"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("/bad.xml:3:1: "), "the file, line and column: {reason}");

    // A report over the size limit gets 413.
    let reg = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "content-type: application/json", "-H"])
        .arg(format!("authorization: Bearer {AGENT_TOKEN}"))
        .arg("--data")
        .arg(format!("{{\"name\":\"probe\",\"labels\":{{}},\"concurrency\":1,\"protocol\":{}}}", kiln_wire::PROTOCOL_VERSION))
        .arg(format!("{}/api/v1/agent/register", k.url))
        .output()
        .unwrap();
    let token = serde_json::from_slice::<Value>(&reg.stdout).expect("registered")["token"].as_str().unwrap().to_string();
    let big = k.path("big.xml");
    std::fs::write(&big, vec![b'x'; kiln_wire::agent::JUNIT_LIMIT + 1]).unwrap();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H"])
        .arg(format!("authorization: Bearer {token}"))
        .arg("--data-binary")
        .arg(format!("@{}", big.display()))
        .arg(format!("{}/api/v1/agent/jobs/1/tests/report?attempt=1&path=big.xml", k.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
}

#[test]
fn plain_job_uploads_junit_from_cargo_nextest() {
    let ok = Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "cargo-nextest is missing: run ci/setup-shards.sh");
    let mut k = Kiln::start();
    k.agent("a1", UNSANDBOXED);
    let repo = k.repo(
        "rs",
        "jobs:\n  test:\n    timeout: 5m\n    steps:\n      - cargo nextest run --profile ci --no-fail-fast || true\n      - cp target/nextest/ci/junit.xml \"$KILN_JUNIT_DIR/\"\n",
    );
    std::fs::write(repo.join("Cargo.toml"), "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n").unwrap();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("src/lib.rs"),
        "#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() { assert_eq!(1 + 1, 2); }\n    #[test]\n    fn fails() { assert_eq!(1 + 1, 3, \"math is broken\"); }\n    #[test]\n    #[ignore]\n    fn slow() {}\n}\n",
    )
    .unwrap();
    std::fs::create_dir_all(repo.join(".config")).unwrap();
    std::fs::write(repo.join(".config/nextest.toml"), "[profile.ci.junit]\npath = \"junit.xml\"\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "target\n").unwrap();
    commit_all(&repo, "crate");
    k.add_project("rs", &repo, &[]);
    let out = k.kiln(&["trigger", "rs", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let id = build_id(&k, "rs");
    let t = tests_of(&k, id);
    // nextest leaves ignored tests out of its JUnit report.
    assert_eq!((t["summary"]["passed"].as_u64(), t["summary"]["failed"].as_u64()), (Some(1), Some(1)), "{t:#}");
    let failed = &t["tests"][0];
    assert_eq!(failed["name"], "tests::fails");
    assert!(failed["message"].as_str().unwrap().contains("math is broken") || failed["message"].as_str().unwrap().contains("panicked"), "{failed:#}");
}

#[test]
fn kiln_run_shards_a_pytest_suite_locally() {
    need_pytest();
    let k = Kiln::start();
    let ran = k.path("ran.txt");
    let repo = k.repo("local", &format!("jobs:\n  lint:\n    steps: [echo lint-ok]\n  suite:\n    needs: [lint]\n    tests:\n      shards: 1\n      list: \"python3 -m pytest --collect-only -q | grep ::\"\n      run: {PYTEST_RUN}\n"));
    pytest_suite(&repo, &ran);
    commit_all(&repo, "suite");
    let run = |repo: &Path| Command::new(BIN).args(["run", "--isolation", "none", "-j", "3"]).arg(repo).output().unwrap();
    let out = run(&repo);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("tests: 25 passed, 1 failed, 3 skipped"), "{text}");
    assert!(text.contains("FAILED tests/test_b.py::test_num[3]"), "{text}");
    for shard in ["suite [1/3]", "suite [2/3]", "suite [3/3]"] {
        assert!(text.contains(shard), "-j 3 makes three shards: {text}");
    }
    let runs = ran_counts(&ran);
    assert_eq!(runs.len(), 29);
    assert!(runs.values().all(|&n| n == 1), "{runs:?}");
    // Fixed: exit 0.
    let b = std::fs::read_to_string(repo.join("tests/test_b.py")).unwrap().replace("n == 3 and", "n == 99 and");
    std::fs::write(repo.join("tests/test_b.py"), b).unwrap();
    let out = run(&repo);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("tests: 26 passed, 3 skipped") && text.contains("PASSED"), "{text}");
    std::thread::sleep(Duration::from_millis(10));
}
