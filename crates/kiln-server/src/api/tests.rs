//! Test results and history: a build's tests (failures first), a project's slowest and
//! flakiest tests on a branch with its quarantine; quarantining and releasing a test by hand
//! (`app::quarantine`).

use crate::app::{self, access};
use crate::auth::Viewer;
use crate::convert;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use kiln_core::quarantine::Change;
use kiln_wire::api::{BuildTests, QuarantineChange, QuarantineRequest, TestStats, TestStatsList};
use serde::Deserialize;

pub async fn of_build(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<BuildTests>> {
    access::visible_build(&st, &viewer, id).await?;
    let rows = st.store.build_test_results(id).await?;
    let quarantined = st.store.build_quarantined(id).await?.into_iter().collect();
    Ok(Json(convert::build_tests(id, &rows, &quarantined)))
}

#[derive(Deserialize, Default)]
pub struct StatsQuery {
    branch: Option<String>,
    /// `slowest` (default) or `flakiest`.
    sort: Option<String>,
    limit: Option<usize>,
}

pub async fn of_project(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Query(q): Query<StatsQuery>) -> AppResult<Json<TestStatsList>> {
    let (p, quarantine) = app::quarantine::show(&st, &viewer, &name).await?;
    let branch = q.branch.unwrap_or_else(|| p.branch.clone());
    let held: std::collections::HashSet<&str> = quarantine.quarantined.iter().map(String::as_str).collect();
    let mut tests: Vec<TestStats> = st.store.test_stats(p.id, &branch).await?.iter().map(|s| convert::test_stats(s, held.contains(s.key.as_str()))).collect();
    match q.sort.as_deref().unwrap_or("slowest") {
        "slowest" => tests.sort_by(|a, b| b.avg_ms.cmp(&a.avg_ms).then_with(|| a.key.cmp(&b.key))),
        "flakiest" => {
            tests.retain(|t| t.flaky > 0 || t.failures > 0 || t.quarantined);
            tests.sort_by(|a, b| {
                b.flaky_rate
                    .total_cmp(&a.flaky_rate)
                    .then_with(|| b.flaky.cmp(&a.flaky))
                    .then_with(|| b.failures.cmp(&a.failures))
                    .then_with(|| a.key.cmp(&b.key))
            })
        }
        other => return Err(AppError::BadRequest(format!("unknown sort {other:?}: use slowest or flakiest"))),
    }
    tests.truncate(q.limit.unwrap_or(20).clamp(1, 10_000));
    Ok(Json(TestStatsList { project: p.name, branch, tests, quarantine }))
}

/// POST /api/v1/projects/{name}/quarantine (maintainers).
pub async fn quarantine(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(r): Json<QuarantineRequest>) -> AppResult<Json<QuarantineChange>> {
    Ok(Json(app::quarantine::mark(&st, &viewer, &name, &r.test, Change::Quarantined, r.reason.as_deref()).await?))
}

/// POST /api/v1/projects/{name}/quarantine/release (maintainers).
pub async fn release(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(r): Json<QuarantineRequest>) -> AppResult<Json<QuarantineChange>> {
    Ok(Json(app::quarantine::mark(&st, &viewer, &name, &r.test, Change::Released, r.reason.as_deref()).await?))
}
