//! A project's tests page: its flakiest tests on the default branch, the tests quarantined
//! now, and every recent quarantine change with the builds that caused it; maintainers
//! quarantine or release a test from it (`app::quarantine`).

use super::{render, require_user, see_other, urlencode, Layout, PageResult};
use crate::app;
use crate::auth::Page;
use crate::error::AppError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use kiln_core::quarantine::Change;
use kiln_wire::api::{QuarantineChange, Role};
use serde::Deserialize;

/// The flakiest tests shown.
const SHOWN: usize = 50;

pub struct TestRow {
    pub key: String,
    pub runs: u64,
    pub failures: u64,
    pub flaky: u64,
    pub rate: String,
    pub quarantined: bool,
}

#[derive(Template)]
#[template(path = "project_tests.html")]
struct TestsTpl {
    l: Layout,
    name: String,
    branch: String,
    can_manage: bool,
    tests: Vec<TestRow>,
    quarantined: Vec<String>,
    changes: Vec<QuarantineChange>,
}

pub async fn page(State(st): State<AppState>, page: Page, Path(name): Path<String>) -> PageResult<Response> {
    let app::Reached { project: p, role } = app::projects::show(&st, &page.viewer, &name).await?;
    let q = app::quarantine::of_project(&st, &p).await?;
    let mut stats: Vec<_> = st.store.test_stats(p.id, &p.branch).await?.into_iter().filter(|s| s.flaky > 0 || s.failures > 0 || q.quarantined.contains(&s.key)).collect();
    let rate = |s: &kiln_store::TestStatsRow| if s.runs == 0 { 0.0 } else { s.flaky as f64 / s.runs as f64 };
    stats.sort_by(|a, b| rate(b).total_cmp(&rate(a)).then_with(|| b.failures.cmp(&a.failures)).then_with(|| a.key.cmp(&b.key)));
    let tests = stats
        .iter()
        .take(SHOWN)
        .map(|s| TestRow {
            key: s.key.clone(),
            runs: s.runs,
            failures: s.failures,
            flaky: s.flaky,
            rate: format!("{:.0} %", rate(s) * 100.0),
            quarantined: q.quarantined.contains(&s.key),
        })
        .collect();
    render(&TestsTpl {
        l: Layout::of(&page, "projects"),
        name: p.name.clone(),
        branch: p.branch.clone(),
        can_manage: role == Some(Role::Maintainer),
        tests,
        quarantined: q.quarantined,
        changes: q.changes,
    })
}

#[derive(Deserialize)]
pub struct QuarantineForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    test: String,
    /// quarantine or release
    action: String,
    #[serde(default)]
    reason: String,
}

/// The tests page's form: quarantine or release a test (maintainers).
pub async fn change(State(st): State<AppState>, page: Page, Path(name): Path<String>, Form(f): Form<QuarantineForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    let change = match f.action.as_str() {
        "quarantine" => Change::Quarantined,
        "release" => Change::Released,
        other => return Err(AppError::BadRequest(format!("unknown action {other:?}: use quarantine or release")).into()),
    };
    app::quarantine::mark(&st, &page.viewer, &name, &f.test, change, Some(&f.reason)).await?;
    Ok(see_other(&format!("/projects/{}/tests", urlencode(&name))))
}
