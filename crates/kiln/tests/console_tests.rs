//! Test results on the console's build page: a sharded pytest suite's failures (with their
//! messages, escaped), flaky tests, slowest tests and counts; a JUnit job of 1,200 tests kept to
//! capped lists; and a private build's tests invisible to anonymous visitors. Needs python3
//! with pytest (ci/setup-shards.sh installs it).

mod common;
// The suite here uses the tester's pytest and a marker file outside the job, which a sandboxed
// step cannot reach: its agents run unsandboxed (the sandbox has its own tests, isolation.rs).
use common::http::get;
use common::*;
use std::process::Command;

fn need_pytest() {
    let ok = Command::new("python3").args(["-c", "import pytest"]).status().is_ok_and(|s| s.success());
    assert!(ok, "python3 with pytest is missing: run ci/setup-shards.sh");
}

/// The `<section id="tests" …>` opening tag of a build page.
fn tests_tag(page: &str) -> &str {
    let at = page.find("<section id=\"tests\"").expect("the build page has no tests section");
    &page[at..at + page[at..].find('>').unwrap() + 1]
}

#[test]
fn a_sharded_pytest_build_shows_failures_flaky_slowest_and_counts_on_its_page() {
    need_pytest();
    let mut k = Kiln::start();
    k.agent("a1", &["--isolation", "none"]);
    k.agent("a2", &["--isolation", "none"]);
    let marker = k.path("first-run-happened");
    let repo = k.repo(
        "py",
        "jobs:\n  suite:\n    tests:\n      shards: 2\n      retries: 1\n      list: \"python3 -m pytest --collect-only -q | grep ::\"\n      \
         run: python3 -m pytest -q -p no:cacheprovider --junitxml=$KILN_JUNIT_DIR/report.xml {tests}\n",
    );
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(
        repo.join("tests/test_a.py"),
        "import pytest, time\n@pytest.mark.parametrize('n', range(6))\ndef test_num(n):\n    time.sleep(0.01 * n)\n    \
         assert n != 3, 'three <b>is</b> unlucky & odd'\n\ndef test_skip():\n    pytest.skip('not here')\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("tests/test_flaky.py"),
        format!("import os\ndef test_sometimes():\n    m = {:?}\n    first = not os.path.exists(m)\n    open(m, 'a').close()\n    assert not first, 'fails the first time only'\n", marker.to_str().unwrap()),
    )
    .unwrap();
    commit_all(&repo, "suite");
    k.add_project("py", &repo, &["--public"]);
    let id = k.trigger("py");
    let b = k.wait_build(id, 120);
    assert_eq!(b["status"], "failed", "{b:#}");

    // Anonymous visitors see a public build's tests, on the page and in its live part.
    let page = get(&k.url, &format!("/builds/{id}"), &[]);
    assert_eq!(page.status, 200);
    let page = page.text();
    assert!(!tests_tag(&page).contains("hidden"), "the section shows: {}", tests_tag(&page));
    for want in [
        "<b>6</b> passed",
        "<b>1</b> failed",
        "<b>0</b> errored",
        "<b>1</b> skipped",
        "<b>1</b> flaky",
        "· 8 tests",
        "tests/test_a.py::test_num[3]",
        "tests/test_flaky.py::test_sometimes",
        "Slowest",
    ] {
        assert!(page.contains(want), "the build page lacks {want:?}:\n{}", section_of(&page));
    }
    assert!(unescape(&page).contains("AssertionError: three <b>is</b> unlucky & odd\nassert 3 != 3"), "{}", section_of(&page));
    assert!(!page.contains("three <b>is</b>"), "a test's message must be escaped");
    // Failures come before the flaky and slowest lists.
    let (fail, flaky, slow) = (page.find("test_num[3]").unwrap(), page.find("<h3 class=\"tests-h\">Flaky").unwrap(), page.find("Slowest").unwrap());
    assert!(fail < flaky && flaky < slow);
    // The slowest is test_num[5] (0.05 s) and the list is the 8 final tries.
    let slowest = &page[slow..];
    assert_eq!(slowest.matches("<td class=\"num mono\">").count(), 8);
    assert!(slowest.find("test_num[5]").unwrap() < slowest.find("test_num[0]").unwrap(), "{slowest}");

    let part = get(&k.url, &format!("/builds/{id}/tests"), &[]);
    assert_eq!(part.status, 200);
    assert_eq!(part.header("cache-control"), Some("no-store"));
    let part = part.text();
    assert!(part.contains("tests/test_a.py::test_num[3]") && part.contains("<b>1</b> flaky"), "{part}");
    assert!(!part.contains("<html"), "the live part is a fragment");
}

/// A JUnit report of `n` tests: every 15th fails (the first with markup in its message, the
/// second with a long traceback), every 60th is skipped, the rest pass.
fn big_report(n: usize) -> (String, usize, usize) {
    let mut x = String::from("<?xml version=\"1.0\"?>\n<testsuite name=\"unit\">\n");
    let (mut failed, mut skipped) = (0, 0);
    for i in 0..n {
        let time = format!("{}.{:03}", i / 1000, i % 1000);
        let body = if i % 15 == 7 {
            failed += 1;
            match failed {
                1 => "<failure message=\"&lt;script&gt;alert(1)&lt;/script&gt; is not a number\"/>".to_string(),
                2 => format!("<failure>Traceback (most recent call last):\n{}ValueError: deep 2</failure>", "  File \"x.py\", line 1, in f\n".repeat(30)),
                _ => format!("<failure message=\"assert {i} == 0\"/>"),
            }
        } else if i % 60 == 59 {
            skipped += 1;
            "<skipped/>".to_string()
        } else {
            String::new()
        };
        x.push_str(&format!("<testcase classname=\"pkg.mod{}\" name=\"test_{i:04}\" time=\"{time}\">{body}</testcase>\n", i % 7));
    }
    x.push_str("</testsuite>\n");
    (x, failed, skipped)
}

#[test]
fn a_junit_job_with_many_tests_keeps_its_lists_short_and_a_private_builds_tests_stay_hidden() {
    let mut k = Kiln::start();
    k.agent("a1", &["--isolation", "none"]);
    let repo = k.repo("big", "jobs:\n  unit:\n    steps: [\"cp report.xml \\\"$KILN_JUNIT_DIR/\\\"\", \"exit 1\"]\n");
    let (xml, failed, skipped) = big_report(1200);
    assert_eq!((failed, skipped), (80, 20));
    std::fs::write(repo.join("report.xml"), xml).unwrap();
    commit_all(&repo, "report");
    k.add_project("big", &repo, &[]);
    let plain = k.repo("plain", "jobs:\n  j:\n    steps: [true]\n");
    k.add_project("plain", &plain, &["--public"]);
    let id = k.trigger("big");
    let pid = k.trigger("plain");
    assert_eq!(k.wait_build(id, 60)["status"], "failed");
    k.wait_build(pid, 60);

    // Anonymous: the private build, its tests and its live part do not exist.
    for path in [format!("/builds/{id}"), format!("/builds/{id}/tests"), format!("/api/v1/builds/{id}/tests")] {
        let r = get(&k.url, &path, &[]);
        assert_eq!(r.status, 404, "anonymous GET {path}");
        assert!(!r.text().contains("test_0007"), "anonymous GET {path} shows a test");
    }

    // Signed in: counts over all 1,200, but 50 failures, 10 slowest.
    let admin = format!("Bearer {ADMIN}");
    let page = get(&k.url, &format!("/builds/{id}"), &[("Authorization", &admin)]);
    assert_eq!(page.status, 200);
    let page = page.text();
    for want in ["<b>1100</b> passed", "<b>80</b> failed", "<b>20</b> skipped", "· 1200 tests", "pkg.mod0::test_0007", "and 30 more not shown"] {
        assert!(page.contains(want), "the build page lacks {want:?}:\n{}", section_of(&page));
    }
    assert_eq!(page.matches("<li class=\"fail ").count(), 50);
    assert!(unescape(&page).contains("<script>alert(1)</script> is not a number") && !page.contains("<script>alert(1)"));
    // The long traceback folds under its first line; short messages show as they are.
    let fold = page.find("<details class=\"t-msg\"").expect("a long message is folded");
    assert!(page[fold..].starts_with("<details class=\"t-msg\" data-key=\"unit|pkg.mod1::test_0022\"><summary>Traceback (most recent call last):</summary>"), "{}", &page[fold..fold + 300]);
    assert_eq!(page.matches("<details class=\"t-msg\"").count(), 1);
    let slow = &page[page.find("Slowest").unwrap()..];
    assert_eq!(slow.matches("<td class=\"num mono\">").count(), 10);
    assert!(slow.contains("test_1199") && !slow.contains("test_1189"), "the ten slowest");
    assert!(page.len() < 120_000, "the page stays small: {} bytes", page.len());

    // A build without test results keeps the section hidden.
    let plain_page = get(&k.url, &format!("/builds/{pid}"), &[]).text();
    assert!(tests_tag(&plain_page).contains("hidden"), "{}", tests_tag(&plain_page));
    assert_eq!(get(&k.url, &format!("/builds/{pid}/tests"), &[]).text(), "");
}

/// The tests section of a page, for failure messages.
fn section_of(page: &str) -> &str {
    let at = page.find("<section id=\"tests\"").unwrap_or(0);
    let end = page[at..].find("</section>").map_or(page.len(), |e| at + e);
    &page[at..end]
}

/// HTML text back to what it says (the entities a template escapes with).
fn unescape(s: &str) -> String {
    let mut out = s.to_string();
    for (e, c) in [("&#60;", "<"), ("&lt;", "<"), ("&#62;", ">"), ("&gt;", ">"), ("&#34;", "\""), ("&quot;", "\""), ("&#39;", "'"), ("&#x27;", "'"), ("&#38;", "&"), ("&amp;", "&")] {
        out = out.replace(e, c);
    }
    out
}
