//! Test results and history: a build's tests (failures first), a project's slowest and
//! flakiest tests on a branch.

use crate::app::access;
use crate::auth::Viewer;
use crate::convert;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use kiln_wire::api::{BuildTests, TestStats, TestStatsList};
use serde::Deserialize;

pub async fn of_build(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> AppResult<Json<BuildTests>> {
    access::visible_build(&st, &viewer, id).await?;
    let rows = st.store.build_test_results(id).await?;
    Ok(Json(convert::build_tests(id, &rows)))
}

#[derive(Deserialize, Default)]
pub struct StatsQuery {
    branch: Option<String>,
    /// `slowest` (default) or `flakiest`.
    sort: Option<String>,
    limit: Option<usize>,
}

pub async fn of_project(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Query(q): Query<StatsQuery>) -> AppResult<Json<TestStatsList>> {
    let p = access::visible(&st, &viewer, &name).await?;
    let branch = q.branch.unwrap_or_else(|| p.branch.clone());
    let mut tests: Vec<TestStats> = st.store.test_stats(p.id, &branch).await?.iter().map(convert::test_stats).collect();
    match q.sort.as_deref().unwrap_or("slowest") {
        "slowest" => tests.sort_by(|a, b| b.avg_ms.cmp(&a.avg_ms).then_with(|| a.key.cmp(&b.key))),
        "flakiest" => {
            tests.retain(|t| t.flaky > 0 || t.failures > 0);
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
    Ok(Json(TestStatsList { project: p.name, branch, tests }))
}
