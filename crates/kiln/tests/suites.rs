//! Real suites on kiln end to end: batches sized to what starting the runner costs (the plan in
//! the job log, the fixed cost kept in the history for the next build), and a shard killed with
//! its attempts spent leaving no test unrun.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// A runner that pays `startup` seconds before its tests, each test appending `BATCH ID` to
/// `ran` and writing a JUnit case: test `slow` sleeps 30 s the first time (writing `marker`
/// first); a test named in the file `fail` (when there is one) fails.
fn runner(repo: &Path, startup: &str, ran: &Path, marker: &Path) {
    runner_taking(repo, startup, "0.01", false, ran, marker)
}

/// [`runner`] whose tests each claim `secs` in their JUnit, and sleep it when `sleeps`.
fn runner_taking(repo: &Path, startup: &str, secs: &str, sleeps: bool, ran: &Path, marker: &Path) {
    let fail = marker.with_extension("fail");
    let nap = if sleeps { format!("sleep {secs}") } else { ":".to_string() };
    std::fs::write(
        repo.join("run.sh"),
        format!(
            r#"sleep {startup}
for t in "$@"; do
  echo "$KILN_TEST_BATCH $t" >> {ran}
  if [ "$t" = slow ] && [ ! -e {m} ]; then echo "$KILN_AGENT_NAME" > {m}; sleep 30; fi
  {nap}
  if [ -e {fail} ] && grep -qx "$t" {fail}; then body='<failure message="broken"/>'; else body=''; fi
  echo "<testsuite><testcase classname=\"n\" name=\"$t\" time=\"{secs}\">$body</testcase></testsuite>" > "$KILN_JUNIT_DIR/$t.xml"
done
"#,
            ran = ran.display(),
            m = marker.display(),
            fail = fail.display()
        ),
    )
    .unwrap();
    commit_all(repo, "run.sh");
}

/// These suites record which tests ran in a file outside the job, which a sandboxed step
/// cannot write: they run unsandboxed (the sandbox has its own tests, tests/isolation.rs).
const UNSANDBOXED: &[&str] = &["--isolation", "none"];

fn tests_of(k: &Kiln, id: i64) -> Vec<Value> {
    k.json(&["show", &id.to_string(), "--tests"])["tests"].as_array().unwrap().clone()
}

/// How many times each test ran.
fn ran_counts(ran: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in std::fs::read_to_string(ran).unwrap_or_default().lines() {
        *m.entry(l.split_once(' ').map_or(l, |x| x.1).to_string()).or_insert(0) += 1;
    }
    m
}

/// The tests of each batch, by batch id.
fn batches(ran: &Path) -> std::collections::BTreeMap<i64, Vec<String>> {
    let mut m = std::collections::BTreeMap::new();
    for l in std::fs::read_to_string(ran).unwrap_or_default().lines() {
        let (b, t) = l.split_once(' ').unwrap();
        m.entry(b.parse().unwrap()).or_insert_with(Vec::new).push(t.to_string());
    }
    m
}

/// The `plan:` lines of a build's logs.
fn plans(k: &Kiln, id: i64) -> Vec<String> {
    k.logs(id).lines().filter(|l| l.contains(": plan: ")).map(str::to_string).collect()
}

#[test]
fn batches_pay_for_the_runners_start_up_and_the_history_keeps_its_cost() {
    let mut k = Kiln::start();
    let ran = k.path("ran.txt");
    let repo = k.repo("startup", "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: seq 1 40\n      run: sh run.sh {tests}\n");
    // Tests of 30 ms (1.2 s in all), well above one start-up: with history the planner splits
    // them (all that is pending less than a start-up would go in one batch).
    runner_taking(&repo, "0.4", "0.03", true, &ran, &k.path("unused"));
    k.add_project("startup", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);

    // No history: one batch per shard (40 / 2 = 20), so each pays the start-up once, not per
    // 8-test crumb; it measures the fixed cost. (A shard that starts late plans with what the
    // others measured.)
    let first = k.trigger("startup");
    assert_eq!(k.wait_build(first, 90)["status"], "passed");
    let p = plans(&k, first);
    assert!(p.iter().any(|l| l.contains("plan: 20 of 40 pending tests, no timing known: an even split, one batch for each of the 2 shards not yet running (of 2); this batch measures the fixed cost")), "{p:#?}");
    assert!(p.len() <= 3, "a batch per shard, not dozens: {p:#?}");
    // Once a batch finished, the rest is planned with the measured fixed cost: the runner's
    // 0.4 s sleep (its tests' 30 ms each are their own time; a claim made after some
    // results but before a batch ended assumes one).
    for l in p.iter().filter(|l| l.contains("ms fixed cost") && !l.contains("assumed")) {
        let ms: u64 = l.split(" + ").nth(1).unwrap().split(" ms").next().unwrap().parse().unwrap();
        assert!(ms >= 300, "the runner sleeps 0.4 s before its tests: {l}");
    }
    assert_eq!(ran_counts(&ran).len(), 40);

    // With history: the first batch already plans with the fixed cost the last build measured,
    // and with the tests' durations (one batch per shard: 0.4 s start-up ≫ 40 × 10 ms).
    let second = k.trigger("startup");
    assert_eq!(k.wait_build(second, 90)["status"], "passed");
    let p = plans(&k, second);
    assert!(p.iter().all(|l| l.contains("ms fixed cost") && !l.contains("assumed") && !l.contains("no timing known")), "{p:#?}");
    assert_eq!(p.len(), 2, "one batch per shard: {p:#?}");
    assert_eq!(tests_of(&k, second).len(), 40);

    // A branch with no history of its own plans with the default branch's: its tests'
    // durations and the fixed cost.
    git(&repo, &["branch", "feature"]);
    let branch = k.json(&["trigger", "startup", "--branch", "feature"])["id"].as_i64().unwrap();
    let b = k.wait_build(branch, 90);
    assert_eq!((b["status"].as_str(), b["branch"].as_str()), (Some("passed"), Some("feature")), "{b:#}");
    let p = plans(&k, branch);
    assert!(!p.is_empty() && p.iter().all(|l| l.contains("ms fixed cost") && !l.contains("assumed") && !l.contains("no timing known")), "{p:#?}");
}

#[test]
fn without_history_a_shard_that_starts_late_takes_half_a_share() {
    let mut k = Kiln::start();
    let ran = k.path("ran.txt");
    let repo = k.repo("late", "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: seq 1 40\n      run: sh run.sh {tests}\n");
    // A long start-up (6 s): the second agent must claim while the first batch still runs, also
    // on a loaded machine.
    runner(&repo, "6", &ran, &k.path("unused"));
    k.add_project("late", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    let id = k.trigger("late");
    // The first shard takes its share (40 / 2) while the second has no agent yet.
    k.wait_for("the first shard's batch", 60, || plans(&k, id).iter().any(|l| l.contains("plan: 20 of 40 pending tests, no timing known")));
    std::thread::sleep(std::time::Duration::from_millis(700));
    k.agent("a2", UNSANDBOXED);
    assert_eq!(k.wait_build(id, 90)["status"], "passed");
    let p = plans(&k, id);
    // Starting late (the first batch began over 0.5 s before), the second shard takes half its
    // share; the first shard to finish takes the rest, planned with what it measured.
    assert!(p.iter().any(|l| l.contains("plan: 10 of 20 pending tests, no timing known") && l.contains("half a share as this shard starts late")), "{p:#?}");
    assert!(p.iter().any(|l| l.contains("plan: 10 of 10 pending tests, about")), "{p:#?}");
    assert_eq!(ran_counts(&ran).len(), 40);
}

#[test]
fn a_shard_killed_with_its_attempts_spent_leaves_no_test_unrun() {
    let mut k = Kiln::start_with(&["--lease", "3"]);
    let ran = k.path("ran.txt");
    let marker = k.path("slow-started");
    // `retries: 0`: a shard whose agent dies is not run again; its tests go to the other shard.
    let repo = k.repo(
        "leftover",
        "jobs:\n  suite:\n    retries: 0\n    tests:\n      shards: 2\n      list: \"echo slow; seq 1 11\"\n      run: sh run.sh {tests}\n",
    );
    runner(&repo, "0", &ran, &marker);
    k.add_project("leftover", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);
    let id = k.trigger("leftover");
    k.wait_for("the slow test to start", 60, || std::fs::read_to_string(&marker).is_ok_and(|s| !s.trim().is_empty()));
    let victim = std::fs::read_to_string(&marker).unwrap().trim().to_string();
    let (_, child) = k.agents.iter_mut().find(|(n, _)| *n == victim).expect("the agent that runs the slow test");
    child.kill().unwrap(); // SIGKILL: the lease must expire
    child.wait().unwrap();
    let b = k.wait_build(id, 90);
    let jobs = b["jobs"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["status"] == "errored" && j["reason"].as_str().unwrap_or("").contains("gave up after 1 attempts")), "{b:#}");
    assert!(jobs.iter().any(|j| j["status"] == "passed"), "the other shard ran the leftovers: {b:#}");
    let runs = ran_counts(&ran);
    assert_eq!(runs.get("slow"), Some(&2), "the killed batch ran again on the other shard: {runs:?}");
    let t = tests_of(&k, id);
    let finals: Vec<&Value> = t.iter().filter(|x| x["is_final"] == true).collect();
    assert_eq!(finals.len(), 12, "{t:#?}");
    assert!(finals.iter().all(|x| x["outcome"] == "passed"), "{t:#?}");

    // A single shard killed with its attempts spent: no shard is left, so its tests are
    // reported not run, with the reason.
    std::fs::remove_file(&marker).unwrap();
    let repo = k.repo("alone", "jobs:\n  suite:\n    retries: 0\n    tests:\n      shards: 1\n      list: \"echo slow; seq 1 3\"\n      run: sh run.sh {tests}\n");
    runner(&repo, "0", &ran, &marker);
    k.add_project("alone", &repo, &[]);
    let survivor = if victim == "a1" { "a2" } else { "a1" };
    let id = k.trigger("alone");
    k.wait_for("the slow test to start", 60, || std::fs::read_to_string(&marker).is_ok_and(|s| !s.trim().is_empty()));
    let (_, child) = k.agents.iter_mut().find(|(n, _)| *n == survivor).expect("the other agent");
    child.kill().unwrap();
    child.wait().unwrap();
    let b = k.wait_build(id, 90);
    assert_eq!(b["status"], "errored", "{b:#}");
    let t = tests_of(&k, id);
    let finals: Vec<&Value> = t.iter().filter(|x| x["is_final"] == true).collect();
    assert_eq!(finals.len(), 4, "every listed test is reported: {t:#?}");
    for x in finals {
        assert_eq!(x["outcome"], "errored", "{x:#}");
        let m = x["message"].as_str().unwrap();
        assert!(m.starts_with("not run: every shard of this job ended before it ran") && m.contains("lease expired"), "{m}");
    }
}

#[test]
fn a_files_tests_are_queued_together_so_a_batch_loads_few_files() {
    let mut k = Kiln::start();
    let ran = k.path("ran.txt");
    // The list interleaves two files' tests; the queue gives each file's tests together, in
    // the order of each file's first test.
    let list = "for i in $(seq 1 12); do echo b.py::t$i; echo a.py::t$i; done";
    let repo = k.repo("files", &format!("jobs:\n  suite:\n    tests:\n      shards: 2\n      list: \"{list}\"\n      run: sh run.sh {{tests}}\n"));
    runner(&repo, "0", &ran, &k.path("unused"));
    k.add_project("files", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);
    let id = k.trigger("files");
    assert_eq!(k.wait_build(id, 90)["status"], "passed");
    // Batches are handed out in queue order, so their ids put the queue back together.
    let queued: Vec<String> = batches(&ran).into_values().flatten().collect();
    let expected: Vec<String> = ["b.py", "a.py"].iter().flat_map(|f| (1..=12).map(move |i| format!("{f}::t{i}"))).collect();
    assert_eq!(queued, expected);
}

#[test]
fn with_an_earlier_list_shards_start_before_the_list_and_the_list_has_the_last_word() {
    let mut k = Kiln::start();
    let (ran, listed) = (k.path("ran.txt"), k.path("listed"));
    // The list prints `ids` after `delay` seconds and leaves a mark; each test run notes whether
    // the list was done, and `t3` fails. Like pytest, the runner runs nothing when it is given
    // a test the commit does not have.
    let repo = k.repo("seeded", "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: sh list.sh\n      run: sh run.sh {tests}\n");
    std::fs::write(repo.join("list.sh"), format!("sleep $(cat delay)\ntouch {m}\ncat ids\n", m = listed.display())).unwrap();
    std::fs::write(
        repo.join("run.sh"),
        format!(
            r#"for t in "$@"; do
  if [ -e {m} ]; then when=after; else when=before; fi
  echo "$KILN_TEST_BATCH $t $when" >> {ran}
done
for t in "$@"; do grep -qx "$t" ids || {{ echo "ERROR: not found: $t"; exit 4; }}; done
for t in "$@"; do
  if [ "$t" = t3 ]; then body='<failure message="broken"/>'; else body=''; fi
  echo "<testsuite><testcase classname=\"n\" name=\"$t\" time=\"0.01\">$body</testcase></testsuite>" > "$KILN_JUNIT_DIR/$t.xml"
done
"#,
            m = listed.display(),
            ran = ran.display()
        ),
    )
    .unwrap();
    let ids = |r: std::ops::RangeInclusive<u32>, but: u32| r.filter(|&i| i != but).map(|i| format!("t{i}\n")).collect::<String>();
    std::fs::write(repo.join("ids"), ids(1..=20, 0)).unwrap();
    std::fs::write(repo.join("delay"), "0").unwrap();
    commit_all(&repo, "twenty tests");
    k.add_project("seeded", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);
    let one = k.trigger("seeded");
    assert_eq!(k.wait_build(one, 90)["status"], "failed", "t3 fails");

    // The next commit drops t3, adds t21, and lists slowly: the shards start on the last
    // build's list (t3, which failed, first) while it lists.
    std::fs::write(repo.join("ids"), ids(1..=21, 3)).unwrap();
    std::fs::write(repo.join("delay"), "3").unwrap();
    commit_all(&repo, "t3 leaves, t21 comes, the list is slow");
    std::fs::remove_file(&ran).unwrap();
    std::fs::remove_file(&listed).unwrap();
    let two = k.trigger("seeded");
    let b = k.wait_build(two, 90);
    let runs = std::fs::read_to_string(&ran).unwrap();
    assert!(runs.lines().any(|l| l.ends_with(" t3 before")), "t3 was given out from the seed before the list came: {runs}");
    // The list has the last word: t3 is not part of this build, t21 is, and every listed test
    // has one result: those the runner refused to run beside t3 went back to the queue.
    assert_eq!(b["status"], "passed", "{b:#}\n{runs}");
    assert!(k.logs(two).contains("without a result queued again (claimed before the list came)"), "{}", k.logs(two));
    let mut keys: Vec<String> = tests_of(&k, two).iter().map(|t| t["key"].as_str().unwrap().to_string()).collect();
    keys.sort();
    let mut expected: Vec<String> = ids(1..=21, 3).lines().map(str::to_string).collect();
    expected.sort();
    assert_eq!(keys, expected, "{runs}");
    assert!(runs.lines().any(|l| l.ends_with(" t21 after")), "{runs}");
}

#[test]
fn a_test_that_failed_in_the_previous_build_runs_in_the_first_batch() {
    let mut k = Kiln::start();
    let ran = k.path("ran.txt");
    let marker = k.path("unused");
    let repo = k.repo("first", "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: seq 1 40\n      run: sh run.sh {tests}\n");
    runner(&repo, "0", &ran, &marker);
    k.add_project("first", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    std::fs::write(marker.with_extension("fail"), "37\n").unwrap();
    let one = k.trigger("first");
    assert_eq!(k.wait_build(one, 90)["status"], "failed");
    let b = batches(&ran);
    assert!(!b.values().next().unwrap().contains(&"37".to_string()), "37 is listed late and ran late the first time: {b:?}");
    // The build, `kiln show` and `kiln builds` say how soon the first failure came.
    let build = k.build(one);
    assert!(build["tests"]["first_failure_ms"].as_u64().is_some(), "{build:#}");
    let show = String::from_utf8_lossy(&k.kiln(&["show", &one.to_string()]).stdout).to_string();
    assert!(show.contains("1 failed; first failure after "), "{show}");
    let list = String::from_utf8_lossy(&k.kiln(&["builds", "first"]).stdout).to_string();
    assert!(list.contains("first failure after "), "{list}");
    // So do the console's build page and the project's list of builds.
    for page in [format!("/builds/{one}"), "/projects/first".to_string()] {
        let (code, html) = http("GET", &format!("{}{page}", k.url), &[("authorization", &format!("Bearer {ADMIN}"))], b"");
        assert_eq!(code, 200, "{page}");
        assert!(html.contains(r#"first-failure">first failure after "#), "{page} does not say when the first failure came:\n{html}");
    }

    // The next build runs 37 in its very first batch, at its head.
    std::fs::remove_file(&ran).unwrap();
    let two = k.trigger("first");
    assert_eq!(k.wait_build(two, 90)["status"], "failed");
    let b = batches(&ran);
    assert_eq!(b.values().next().unwrap().first().map(String::as_str), Some("37"), "{b:?}");
}

#[test]
fn kiln_run_keeps_its_own_timing_history_and_imports_the_servers() {
    let mut k = Kiln::start();
    let ran = k.path("ran.txt");
    let marker = k.path("unused");
    k.agent("a1", UNSANDBOXED);
    let repo = k.repo("local", "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: seq 1 20\n      run: sh run.sh {tests}\n");
    runner(&repo, "0.3", &ran, &marker);
    let run = |extra: &[&str], work: &Path| {
        let out = k.kiln(&[&["run", "--isolation", "none", "-j", "2", "--work-dir", work.to_str().unwrap()][..], extra, &[repo.to_str().unwrap()]].concat());
        assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let mut logs = String::new();
        for e in std::fs::read_dir(work).unwrap() {
            logs += &std::fs::read_to_string(e.unwrap().path().join("log")).unwrap_or_default();
        }
        (String::from_utf8_lossy(&out.stderr).into_owned(), logs)
    };
    let history = repo.join(".git/kiln/timings.json");

    // --no-history: nothing read, nothing written.
    let (_, logs) = run(&["--no-history"], &k.path("w0"));
    assert!(logs.contains("no timing known"), "{logs}");
    assert!(!history.exists());

    // The first run has nothing to go by; it leaves the durations and the fixed cost behind.
    let (_, logs) = run(&[], &k.path("w1"));
    assert!(logs.contains("plan: 10 of 20 pending tests, no timing known"), "{logs}");
    let h: Value = serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    assert_eq!(h["tests"].as_object().unwrap().len(), 20, "{h:#}");
    assert!(h["fixed_ms"]["suite"].as_u64().unwrap() >= 150, "the runner sleeps 0.3 s first (less 10 × 10 ms of tests): {h:#}");

    // The next run plans with them from its first batch.
    let (_, logs) = run(&[], &k.path("w2"));
    let plans: Vec<&str> = logs.lines().filter(|l| l.contains(": plan: ")).collect();
    assert!(!plans.is_empty() && plans.iter().all(|l| l.contains("ms fixed cost") && !l.contains("assumed")), "{plans:#?}");

    // A server's history can be imported: a build of a repository with other tests.
    let other = k.repo("other", "jobs:\n  suite:\n    tests:\n      shards: 1\n      list: \"echo a; echo b\"\n      run: sh run.sh {tests}\n");
    runner(&other, "0", &ran, &marker);
    k.add_project("other", &other, &[]);
    let id = k.trigger("other");
    assert_eq!(k.wait_build(id, 60)["status"], "passed");
    let out = k.kiln(&["run", "--no-history", "--import-history", "other", "--branch", "nope", repo.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported the timing history of other on nope: 0 tests"), "{}", String::from_utf8_lossy(&out.stderr));
    let (err, _) = run(&["--import-history", "other", "--branch", "main"], &k.path("w3"));
    assert!(err.contains("imported the timing history of other on main: 2 tests"), "{err}");
    let h: Value = serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    assert!(h["tests"]["a"].is_u64() && h["tests"]["b"].is_u64(), "{h:#}");
}

#[test]
fn kiln_retry_failed_reruns_exactly_the_failed_tests_and_jobs() {
    let mut k = Kiln::start();
    let ran = k.path("ran.txt");
    let marker = k.path("unused");
    let lint_ran = k.path("lint-ran.txt");
    let repo = k.repo(
        "retry",
        &format!(
            "jobs:\n  lint:\n    steps: [\"echo lint >> {l}; exit 1\"]\n  docs:\n    steps: [\"echo docs >> {l}\"]\n  suite:\n    tests:\n      shards: 2\n      list: seq 1 12\n      run: sh run.sh {{tests}}\n",
            l = lint_ran.display()
        ),
    );
    runner(&repo, "0", &ran, &marker);
    std::fs::write(marker.with_extension("fail"), "4\n9\n").unwrap();
    k.add_project("retry", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    let one = k.trigger("retry");
    assert_eq!(k.wait_build(one, 90)["status"], "failed");
    assert_eq!(ran_counts(&ran).len(), 12);

    std::fs::remove_file(&ran).unwrap();
    let out = k.kiln(&["retry", &one.to_string(), "--failed", "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "the tests still fail: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let two = builds(&k, "retry")[0]["id"].as_i64().unwrap();
    assert_ne!(two, one);
    let b = k.build(two);
    assert_eq!(b["retry_of"], one, "{b:#}");
    assert_eq!(b["trigger"], "retry");
    assert_eq!(b["commit"], k.build(one)["commit"]);
    let mut keys: Vec<&str> = b["jobs"].as_array().unwrap().iter().map(|j| j["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["lint", "suite [1/2]", "suite [2/2]"], "the passed plain job does not run again: {b:#}");
    let mut again: Vec<String> = ran_counts(&ran).into_keys().collect();
    again.sort();
    assert_eq!(again, ["4", "9"], "exactly the failed tests ran");
    assert_eq!(std::fs::read_to_string(&lint_ran).unwrap().lines().filter(|l| *l == "lint").count(), 2);
    assert_eq!(std::fs::read_to_string(&lint_ran).unwrap().lines().filter(|l| *l == "docs").count(), 1);
    let show = String::from_utf8_lossy(&k.kiln(&["show", &two.to_string()]).stdout).into_owned();
    assert!(show.contains(&format!("reruns what failed in build #{one}")), "{show}");

    // The console's build page offers "Retry failed" on a failed build; the button starts one.
    k.add_user_with_password("ann", "ann-password-1");
    assert!(k.kiln(&["project", "grant", "retry", "ann", "developer"]).status.success());
    let (cookie, csrf) = http::sign_in(&k.url, "ann", "ann-password-1");
    let page = http::get(&k.url, &format!("/builds/{one}"), &[("Cookie", &cookie)]).text();
    assert!(page.contains(&format!("action=\"/builds/{one}/retry-failed\"")) && page.contains("Retry failed"), "{page}");
    let r = http::send(&k.url, "POST", &format!("/builds/{one}/retry-failed"), &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")], format!("_csrf={csrf}").as_bytes(), false);
    assert_eq!(r.status, 303, "{}", r.text());
    let three = builds(&k, "retry")[0]["id"].as_i64().unwrap();
    assert_eq!(r.header("location"), Some(format!("/builds/{three}").as_str()));
    assert_eq!(k.wait_build(three, 90)["retry_of"], one);

    // Once fixed, the retry passes; a build with nothing failed has nothing to retry.
    std::fs::remove_file(marker.with_extension("fail")).unwrap();
    std::fs::write(repo.join(".kiln.yml"), "jobs:\n  suite:\n    tests:\n      shards: 2\n      list: seq 1 3\n      run: sh run.sh {tests}\n").unwrap();
    commit_all(&repo, "fixed");
    let four = k.trigger("retry");
    assert_eq!(k.wait_build(four, 90)["status"], "passed");
    let out = k.kiln(&["retry", &four.to_string(), "--failed"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no failed job to retry"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = k.kiln(&["retry", &four.to_string()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn kiln_run_replay_runs_the_same_batches_in_the_same_order() {
    let mut k = Kiln::start();
    let ran = k.path("ran.txt");
    let marker = k.path("unused");
    let seen = k.path("env.txt");
    let repo = k.repo("replay", &format!("jobs:\n  suite:\n    tests:\n      shards: 2\n      retries: 1\n      list: seq 1 30\n      run: echo \"$KILN_BUILD_ID $KILN_PROJECT $KILN_BRANCH $KILN_COMMIT\" >> {} && sh run.sh {{tests}}\n", seen.display()));
    runner(&repo, "0", &ran, &marker);
    std::fs::write(marker.with_extension("fail"), "17\n").unwrap();
    k.add_project("replay", &repo, &[]);
    k.agent("a1", UNSANDBOXED);
    k.agent("a2", UNSANDBOXED);
    let id = k.trigger("replay");
    let build = k.wait_build(id, 90);
    assert_eq!(build["status"], "failed");
    let record: Value = serde_json::from_str(&http("GET", &format!("{}/api/v1/builds/{id}/batches", k.url), &[("authorization", &format!("Bearer {ADMIN}"))], b"").1).unwrap();
    let of = |job: &str| -> Vec<Vec<String>> {
        record["batches"].as_array().unwrap().iter().filter(|b| b["job"] == job).map(|b| b["tests"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()).collect()
    };
    let shard2 = of("suite [2/2]");
    assert!(!shard2.is_empty(), "{record:#}");

    // One shard, exactly: its batches in the same order (17 failing again, the retry included),
    // its steps told they are that build.
    std::fs::remove_file(&ran).unwrap();
    std::fs::remove_file(&seen).unwrap();
    let out = k.kiln(&["run", "--isolation", "none", "--replay", &format!("{id}/suite [2/2]"), repo.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(&format!("replaying build {id} at ")), "{err}");
    let local: Vec<Vec<String>> = batches(&ran).into_values().collect();
    assert_eq!(local, shard2, "{err}\n{}", String::from_utf8_lossy(&out.stdout));
    let want = format!("{id} replay main {}", build["commit"].as_str().unwrap());
    let envs = std::fs::read_to_string(&seen).unwrap();
    assert!(!envs.is_empty() && envs.lines().all(|l| l == want), "the replay's steps saw:\n{envs}\nnot {want}");

    // The whole build: every shard's batches, each shard in its order.
    std::fs::remove_file(&ran).unwrap();
    let out = k.kiln(&["run", "--isolation", "none", "--replay", &id.to_string(), repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "17 fails again: {}", String::from_utf8_lossy(&out.stdout));
    let mut local: Vec<Vec<String>> = batches(&ran).into_values().collect();
    let mut all = of("suite [1/2]");
    all.extend(of("suite [2/2]"));
    local.sort();
    all.sort();
    assert_eq!(local, all);

    // A build with no batches, or a commit this repository lacks, is a clear error.
    let out = k.kiln(&["run", "--isolation", "none", "--replay", &format!("{id}/nope"), repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no test batches of job \"nope\""), "{}", String::from_utf8_lossy(&out.stderr));
    let elsewhere = k.repo("elsewhere", "jobs: {}\n");
    let out = k.kiln(&["run", "--isolation", "none", "--replay", &id.to_string(), elsewhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fetch it first"), "{}", String::from_utf8_lossy(&out.stderr));
}
