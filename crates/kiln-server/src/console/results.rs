//! The test results on a build's page: counts, failed and errored tests first with their
//! messages, flaky tests, the ten slowest. Drawn into the page, and re-fetched alone
//! (`/builds/ID/tests`) by the script when test results arrive. Every list is capped and only
//! the failures shown have their messages read, so a build with thousands of tests stays a
//! small, fast page; the rest is a link away (the JSON, or `kiln show ID --tests`).

use super::views::duration;
use super::PageResult;
use crate::app::access::visible_build;
use crate::auth::Page;
use crate::error::AppError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use kiln_store::{TestResultRow, TestViewLimits};

/// How many rows each list shows.
pub const LIMITS: TestViewLimits = TestViewLimits { failures: 50, flaky: 20, slowest: 10 };
/// How much of one message the page carries.
const MESSAGE_LIMIT: usize = 8192;
/// A message longer than this (or of more lines) is folded under its first line.
const FOLD_CHARS: usize = 300;
const FOLD_LINES: usize = 4;

pub struct TestLine {
    pub id: String,
    pub job: String,
    pub outcome: String,
    pub duration: String,
    pub flaky: bool,
    /// Quarantined when the build listed its tests: its failure did not fail the job.
    pub quarantined: bool,
}

pub struct Failure {
    pub t: TestLine,
    /// The message's first non-empty line (the fold's summary).
    pub first: String,
    pub message: String,
    pub fold: bool,
}

#[derive(Template)]
#[template(path = "build_tests.html")]
pub struct TestsTpl {
    build: i64,
    total: u64,
    passed: u64,
    failed: u64,
    errored: u64,
    skipped: u64,
    flaky: u64,
    failures: Vec<Failure>,
    more_failures: u64,
    flaky_tests: Vec<TestLine>,
    more_flaky: u64,
    slowest: Vec<TestLine>,
    /// Whether the rows name their job (a build of more than one job).
    jobs: bool,
}

fn line(r: &TestResultRow) -> TestLine {
    TestLine {
        id: kiln_core::junit::shown_id(&r.key, &r.classname, &r.name, r.file.as_deref()),
        job: r.job_key.clone(),
        outcome: r.outcome.as_str().to_string(),
        duration: duration(r.duration_ms as i64),
        flaky: r.flaky,
        quarantined: false,
    }
}

fn failure(r: &TestResultRow, quarantined: &std::collections::HashSet<(String, String)>) -> Failure {
    let message = crate::notify::notice::clip(r.message.as_deref().unwrap_or("").trim_end(), MESSAGE_LIMIT);
    let first = message.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").chars().take(200).collect();
    let fold = message.chars().count() > FOLD_CHARS || message.lines().count() > FOLD_LINES;
    let mut t = line(r);
    t.quarantined = quarantined.contains(&(r.group.clone(), r.key.clone()));
    Failure { t, first, message, fold }
}

/// The section's HTML for build `id`, or "" when it has no test results yet.
pub async fn section(st: &AppState, id: i64) -> Result<String, AppError> {
    let Some(o) = st.store.build_test_overview(id, LIMITS).await? else {
        return Ok(String::new());
    };
    let c = o.counts;
    let quarantined = st.store.build_quarantined(id).await?.into_iter().collect();
    let jobs = {
        let mut keys: Vec<&str> = o.failures.iter().chain(&o.flaky).chain(&o.slowest).map(|r| r.job_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len() > 1
    };
    let t = TestsTpl {
        build: id,
        total: c.total,
        passed: c.passed,
        failed: c.failed,
        errored: c.errored,
        skipped: c.skipped,
        flaky: c.flaky,
        more_failures: (c.failed + c.errored).saturating_sub(o.failures.len() as u64),
        failures: o.failures.iter().map(|r| failure(r, &quarantined)).collect(),
        more_flaky: c.flaky.saturating_sub(o.flaky.len() as u64),
        flaky_tests: o.flaky.iter().map(line).collect(),
        slowest: o.slowest.iter().map(line).collect(),
        jobs,
    };
    t.render().map_err(|e| AppError::Internal(format!("failed to render the test results of build {id}: {e}")))
}

/// `GET /builds/ID/tests`: the section alone, for the script's live refresh (never cached).
pub async fn partial(State(st): State<AppState>, page: Page, Path(id): Path<i64>) -> PageResult<Response> {
    visible_build(&st, &page.viewer, id).await?;
    let mut r = Html(section(&st, id).await?).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
