//! The facts a notification carries (`BuildNotice`, also the webhook body), and
//! the one-line summary used for chat messages and subjects.

use crate::wireform::{test_summary, ts};
use kiln_store::{BuildRow, JobRow, Store, TestViewLimits};
use kiln_wire::api::TestSummary;
use kiln_wire::notify::{BuildNotice, FailedTest, NoticeBuild, NoticeJob};

/// How many failed tests a notification lists.
pub const MAX_FAILED_TESTS: usize = 10;
/// How much of a failure's message a notification carries.
pub const MESSAGE_LIMIT: usize = 4096;

/// A build's test counts (when it has results) and its first failed or errored tests (at most
/// ten, in the order they were reported) with their messages, from the final tries.
pub async fn tests_of_build(store: &Store, build_id: i64) -> kiln_store::Result<(Option<TestSummary>, Vec<FailedTest>)> {
    let limits = TestViewLimits { failures: MAX_FAILED_TESTS, flaky: 0, slowest: 0 };
    let Some(o) = store.build_test_overview(build_id, limits).await? else {
        return Ok((None, Vec::new()));
    };
    let failed = o
        .failures
        .iter()
        .map(|r| FailedTest {
            id: kiln_core::junit::shown_id(&r.key, &r.classname, &r.name, r.file.as_deref()),
            outcome: r.outcome.as_str().to_string(),
            job: r.job_key.clone(),
            suite: r.suite.clone(),
            classname: r.classname.clone(),
            name: r.name.clone(),
            message: clip(r.message.as_deref().unwrap_or(""), MESSAGE_LIMIT),
        })
        .collect();
    let mut summary = test_summary(o.counts);
    summary.first_failure_ms = store.first_failure_ms(build_id).await?;
    Ok((Some(summary), failed))
}

/// The notice as JSON (the outbox payload) with every string masked: a second line behind the
/// agent's masking, for a rogue or older agent that sent a secret in a test result.
pub fn masked_payload(n: &BuildNotice, secrets: &[String]) -> String {
    let mut v = serde_json::to_value(n).expect("plain data serialises");
    kiln_core::mask::mask_json(&mut v, secrets);
    v.to_string()
}

/// At most `max` bytes of `s` (cut at a character boundary, marked with `…`).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Links into the console.
pub fn build_url(base: &str, build_id: i64) -> String {
    format!("{}/builds/{build_id}", base.trim_end_matches('/'))
}

pub fn project_url(base: &str, project: &str) -> String {
    format!("{}/projects/{project}", base.trim_end_matches('/'))
}

/// The notice for `b` as it stands, or as it was when it started (`started`).
pub fn build_notice(
    base: &str,
    b: &BuildRow,
    jobs: &[JobRow],
    started: bool,
    reason: &str,
    previous: Option<String>,
    (tests, failed_tests): (Option<TestSummary>, Vec<FailedTest>),
    first_failure_ms: Option<u64>,
) -> BuildNotice {
    let status = if started { "running".to_string() } else { b.status.as_str().to_string() };
    let finished_at = if started { None } else { b.finished_at };
    let jobs = jobs
        .iter()
        .map(|j| NoticeJob {
            key: j.key.clone(),
            status: if started && j.status.is_final() { "running".into() } else { j.status.as_str().to_string() },
            exit_code: if started { None } else { j.exit_code },
            reason: if started { None } else { j.reason.clone() },
        })
        .collect();
    let build = NoticeBuild {
        id: b.id,
        url: build_url(base, b.id),
        status,
        previous_status: previous,
        branch: b.branch.clone(),
        commit: b.commit.clone(),
        message: b.message.clone(),
        author: b.author.clone(),
        trigger: b.trigger.clone(),
        triggered_by: b.triggered_by.clone(),
        error: if started { None } else { b.error.clone() },
        created_at: ts(b.created_at),
        started_at: b.started_at.map(ts),
        finished_at: finished_at.map(ts),
        duration_ms: match (b.started_at, finished_at) {
            (Some(s), Some(f)) => Some((f - s).max(0)),
            _ => None,
        },
        first_failure_ms: if started { None } else { first_failure_ms },
        jobs,
    };
    let mut n = BuildNotice {
        event: if started { "build.started" } else { "build.finished" }.into(),
        reason: reason.into(),
        project: b.project.clone(),
        project_url: project_url(base, &b.project),
        build,
        failed_tests: failed_tests.into_iter().take(MAX_FAILED_TESTS).collect(),
        tests,
        text: String::new(),
    };
    n.text = summary(&n);
    n
}

/// The short commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// How the status reads in a sentence.
pub fn status_words(n: &BuildNotice) -> String {
    match (n.build.status.as_str(), n.reason.as_str()) {
        ("passed", "fixed") => "was fixed".into(),
        ("running", _) => "started".into(),
        (s, _) => s.to_string(),
    }
}

pub fn duration_text(n: &BuildNotice) -> Option<String> {
    n.build.duration_ms.map(|ms| kiln_core::duration::format_duration(std::time::Duration::from_millis(ms as u64)))
}

/// `app #12 failed on main (1a2b3c4d5e) by Ann in 1m 3s; did not pass: test, lint — URL`
pub fn summary(n: &BuildNotice) -> String {
    let b = &n.build;
    let mut s = format!("{} #{} {} on {}", n.project, b.id, status_words(n), b.branch);
    if !b.commit.is_empty() {
        s.push_str(&format!(" ({})", short(&b.commit)));
    }
    if let Some(a) = b.author.as_deref().filter(|a| !a.is_empty()) {
        s.push_str(&format!(" by {}", a.split(" <").next().unwrap_or(a)));
    }
    if let Some(d) = duration_text(n) {
        s.push_str(&format!(" in {d}"));
    }
    let bad: Vec<&str> = b.jobs.iter().filter(|j| matches!(j.status.as_str(), "failed" | "errored")).map(|j| j.key.as_str()).collect();
    if !bad.is_empty() {
        s.push_str(&format!("; did not pass: {}", bad.join(", ")));
    }
    if !n.failed_tests.is_empty() {
        let total = n.tests.as_ref().map_or(0, |t| t.failed + t.errored) as usize;
        let shown: Vec<&str> = n.failed_tests.iter().take(3).map(|t| if t.id.is_empty() { t.name.as_str() } else { t.id.as_str() }).collect();
        let more = total.max(n.failed_tests.len()) - shown.len();
        s.push_str(&format!("; failing tests: {}", shown.join(", ")));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
    }
    if !bad.is_empty() || !n.failed_tests.is_empty() {
        s.push_str(&kiln_core::testrun::first_failure_note(b.first_failure_ms));
    }
    s.push_str(&format!(" — {}", b.url));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é…", "never inside a character");
        assert_eq!(clip(&"x".repeat(5000), MESSAGE_LIMIT).len(), MESSAGE_LIMIT + "…".len());
    }

    #[test]
    fn the_summary_names_up_to_three_failing_tests() {
        let t = |n: u32| FailedTest {
            id: format!("tests/test_a.py::test_{n}"),
            outcome: "failed".into(),
            job: "unit".into(),
            suite: "pytest".into(),
            classname: "tests.test_a".into(),
            name: format!("test_{n}"),
            message: "boom".into(),
        };
        let b = BuildRow {
            id: 7,
            project_id: 1,
            project: "app".into(),
            status: kiln_core::state::BuildStatus::Failed,
            branch: "main".into(),
            commit: String::new(),
            requested_commit: None,
            message: None,
            author: None,
            trigger: "manual".into(),
            triggered_by: "ann".into(),
            upstream_build: None,
            before_commit: None,
            changed_paths: None,
            error: None,
            materialized: true,
            with_secrets: true,
            at_branch_head: true,
            created_at: 0,
            started_at: None,
            finished_at: None,
        };
        let summary = TestSummary { total: 50, passed: 38, failed: 12, errored: 0, skipped: 0, flaky: 0, first_failure_ms: Some(2300) };
        let n = build_notice("http://ci", &b, &[], false, "failure", None, (Some(summary), (1..=12).map(t).collect()), Some(2300));
        assert_eq!(n.failed_tests.len(), MAX_FAILED_TESTS);
        assert!(n.text.contains("; failing tests: tests/test_a.py::test_1, tests/test_a.py::test_2, tests/test_a.py::test_3 and 9 more; first failure after 2.3 s — "), "{}", n.text);
        let quiet = build_notice("http://ci", &b, &[], false, "failure", None, (None, Vec::new()), None);
        assert!(!quiet.text.contains("failing tests"), "{}", quiet.text);
        // A failed plain job (no tests) also says how soon it failed.
        let job = JobRow {
            id: 1,
            build_id: 1,
            key: "lint".into(),
            name: "lint".into(),
            status: kiln_core::state::JobStatus::Failed,
            ready: true,
            spec: "{}".into(),
            requires: Default::default(),
            needs: Vec::new(),
            attempt: 1,
            max_attempts: 1,
            agent_name: None,
            lease_until: None,
            cancel_requested: false,
            exit_code: Some(1),
            reason: None,
            created_at: 0,
            queued_at: None,
            started_at: None,
            finished_at: None,
        };
        let plain = build_notice("http://ci", &b, &[job], false, "failure", None, (None, Vec::new()), Some(1500));
        assert!(plain.text.contains("; did not pass: lint; first failure after 1.5 s — "), "{}", plain.text);
    }
}
