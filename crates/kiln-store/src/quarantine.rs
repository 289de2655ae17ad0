//! Quarantine's rows: each test's recent runs per project (the evidence), which finished
//! builds have been judged, the tests quarantined now, every change with the runs that caused
//! it, and per build the tests that were quarantined when its test list was uploaded (what its
//! verdict and its results use). The rules are `kiln_core::quarantine`; the server's
//! `app::quarantine` applies them.
//!
//! ```text
//!  build finished ─► record_test_runs (once) ─► test_runs ─► rules ─► change_quarantine
//!                                                                       │ quarantined_tests
//!  list uploaded ─► build_quarantine (snapshot) ─► verdict: quarantined failures pass
//! ```

use crate::rows::to_json;
use crate::{now_ms, Result, Store, StoreError};
use kiln_core::junit::Outcome;
use kiln_core::quarantine::{Cause, Change, Run, RunOutcome, MAX_WINDOW};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// A test quarantined now.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedRow {
    pub test_key: String,
    /// The change that quarantined it.
    pub change_id: i64,
    /// Its runs in builds after this one count towards its release.
    pub after_build: i64,
}

/// One change of a test's quarantine, with the runs that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineChangeRow {
    pub id: i64,
    pub test_key: String,
    pub change: Change,
    pub cause: Cause,
    /// The maintainer, for a change by hand.
    pub by: Option<String>,
    pub reason: String,
    pub builds: Vec<i64>,
    pub jobs: Vec<i64>,
    pub created_at: i64,
}

fn run_of(r: &sqlx::any::AnyRow) -> Result<Run> {
    let o: String = r.try_get("outcome")?;
    Ok(Run {
        build_id: r.try_get("build_id")?,
        job_id: r.try_get("job_id")?,
        outcome: RunOutcome::parse(&o).ok_or_else(|| StoreError::Corrupt(format!("test run outcome {o:?}")))?,
    })
}

impl Store {
    /// A project's finished builds with test results whose runs are not yet recorded for
    /// quarantine, oldest first (at most 50 a call).
    pub async fn unjudged_builds(&self, project_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT b.id FROM builds b WHERE b.project_id = $1 AND b.finished_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM quarantine_builds q WHERE q.build_id = b.id) \
             AND EXISTS (SELECT 1 FROM test_results r WHERE r.build_id = b.id) ORDER BY b.id LIMIT 50",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Record a finished build's runs, once: per test, its final try (a test several jobs ran:
    /// the worst of them). Returns the tests recorded, or None when the build was recorded
    /// already (or has not finished).
    pub async fn record_test_runs(&self, build_id: i64) -> Result<Option<Vec<String>>> {
        let build = self.build(build_id).await?;
        if build.finished_at.is_none() {
            return Ok(None);
        }
        let rows = self.build_test_results(build_id).await?;
        let mut job_ids: HashMap<String, i64> = HashMap::new();
        for r in sqlx::query("SELECT id, job_key FROM jobs WHERE build_id = $1").bind(build_id).fetch_all(self.pool()).await? {
            job_ids.insert(r.try_get("job_key")?, r.try_get("id")?);
        }
        let rank = |o: RunOutcome| match o {
            RunOutcome::Clean => 0,
            RunOutcome::Flaky => 1,
            RunOutcome::Failed => 2,
        };
        let mut runs: Vec<(String, i64, RunOutcome)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for r in rows.iter().filter(|r| r.is_final) {
            let outcome = match (r.outcome, r.flaky) {
                (Outcome::Skipped, _) => continue,
                (Outcome::Failed | Outcome::Errored, _) => RunOutcome::Failed,
                (_, true) => RunOutcome::Flaky,
                _ => RunOutcome::Clean,
            };
            let job = job_ids.get(&r.job_key).copied().unwrap_or(0);
            match index.get(&r.key) {
                Some(&i) if rank(outcome) > rank(runs[i].2) => runs[i] = (r.key.clone(), job, outcome),
                Some(_) => {}
                None => {
                    index.insert(r.key.clone(), runs.len());
                    runs.push((r.key.clone(), job, outcome));
                }
            }
        }
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let first: Option<i64> = sqlx::query_scalar("INSERT INTO quarantine_builds (build_id) VALUES ($1) ON CONFLICT (build_id) DO NOTHING RETURNING build_id")
            .bind(build_id)
            .fetch_optional(&mut *tx)
            .await?;
        if first.is_none() {
            return Ok(None);
        }
        let now = now_ms();
        for (key, job, outcome) in &runs {
            sqlx::query(
                "INSERT INTO test_runs (project_id, test_key, build_id, job_id, outcome, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (project_id, test_key, build_id) DO NOTHING",
            )
            .bind(build.project_id)
            .bind(key)
            .bind(build_id)
            .bind(job)
            .bind(outcome.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // Only the most recent runs are evidence.
            sqlx::query(
                "DELETE FROM test_runs WHERE project_id = $1 AND test_key = $2 AND build_id NOT IN \
                 (SELECT build_id FROM test_runs WHERE project_id = $1 AND test_key = $2 ORDER BY build_id DESC LIMIT $3)",
            )
            .bind(build.project_id)
            .bind(key)
            .bind(MAX_WINDOW as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(runs.into_iter().map(|r| r.0).collect()))
    }

    /// Mark a finished build judged without recording its runs (it is no evidence: see the
    /// server's `app::quarantine`).
    pub async fn judge_without_runs(&self, build_id: i64) -> Result<()> {
        let _w = self.write_turn().await;
        sqlx::query("INSERT INTO quarantine_builds (build_id) VALUES ($1) ON CONFLICT (build_id) DO NOTHING").bind(build_id).execute(self.pool()).await?;
        Ok(())
    }

    /// A test's recent runs, newest first: all kept, or those of builds after `after_build`.
    pub async fn test_runs(&self, project_id: i64, key: &str, after_build: Option<i64>) -> Result<Vec<Run>> {
        let rows = sqlx::query(
            "SELECT build_id, job_id, outcome FROM test_runs WHERE project_id = $1 AND test_key = $2 AND build_id > $3 ORDER BY build_id DESC",
        )
        .bind(project_id)
        .bind(key)
        .bind(after_build.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_of).collect()
    }

    /// The tests of a project quarantined now, by key.
    pub async fn quarantined_tests(&self, project_id: i64) -> Result<Vec<QuarantinedRow>> {
        let rows = sqlx::query("SELECT test_key, change_id, after_build FROM quarantined_tests WHERE project_id = $1 ORDER BY test_key")
            .bind(project_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(QuarantinedRow { test_key: r.try_get("test_key")?, change_id: r.try_get("change_id")?, after_build: r.try_get("after_build")? }))
            .collect()
    }

    /// Quarantine or release a test, recording the change with its cause and evidence. Returns
    /// the change's id, or None when the test was already in that state (nothing recorded).
    #[allow(clippy::too_many_arguments)]
    pub async fn change_quarantine(&self, project_id: i64, key: &str, change: Change, cause: Cause, by: Option<&str>, reason: &str, evidence: &[Run]) -> Result<Option<i64>> {
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let now = now_ms();
        let is: Option<i64> = sqlx::query_scalar("SELECT change_id FROM quarantined_tests WHERE project_id = $1 AND test_key = $2")
            .bind(project_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if is.is_some() == (change == Change::Quarantined) {
            return Ok(None);
        }
        let builds: Vec<i64> = evidence.iter().map(|r| r.build_id).collect();
        let jobs: Vec<i64> = evidence.iter().map(|r| r.job_id).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO quarantine_changes (project_id, test_key, kind, cause, by_user, reason, builds, jobs, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(project_id)
        .bind(key)
        .bind(change.as_str())
        .bind(cause.as_str())
        .bind(by)
        .bind(reason)
        .bind(to_json(&builds))
        .bind(to_json(&jobs))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let done = match change {
            Change::Quarantined => sqlx::query(
                "INSERT INTO quarantined_tests (project_id, test_key, change_id, after_build) \
                 SELECT $1, $2, $3, COALESCE(MAX(build_id), 0) FROM test_runs WHERE project_id = $1 AND test_key = $2 \
                 ON CONFLICT (project_id, test_key) DO NOTHING",
            )
                .bind(project_id)
                .bind(key)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            Change::Released => sqlx::query("DELETE FROM quarantined_tests WHERE project_id = $1 AND test_key = $2")
                .bind(project_id)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
        };
        if done == 0 {
            // Another server changed it first: record nothing.
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    /// A project's most recent quarantine changes, newest first.
    pub async fn quarantine_changes(&self, project_id: i64, limit: usize) -> Result<Vec<QuarantineChangeRow>> {
        let rows = sqlx::query(
            "SELECT id, test_key, kind, cause, by_user, reason, builds, jobs, created_at FROM quarantine_changes WHERE project_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(project_id)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                let cause: String = r.try_get("cause")?;
                Ok(QuarantineChangeRow {
                    id: r.try_get("id")?,
                    test_key: r.try_get("test_key")?,
                    change: Change::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("quarantine change {kind:?}")))?,
                    cause: Cause::parse(&cause).ok_or_else(|| StoreError::Corrupt(format!("quarantine cause {cause:?}")))?,
                    by: r.try_get("by_user")?,
                    reason: r.try_get("reason")?,
                    builds: serde_json::from_str(&r.try_get::<String, _>("builds")?).unwrap_or_default(),
                    jobs: serde_json::from_str(&r.try_get::<String, _>("jobs")?).unwrap_or_default(),
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Which of these builds no longer exist (retention deleted them).
    pub async fn deleted_builds(&self, ids: &[i64]) -> Result<HashSet<i64>> {
        let mut gone: HashSet<i64> = ids.iter().copied().collect();
        let asked: Vec<i64> = gone.iter().copied().collect();
        for chunk in asked.chunks(100) {
            // Only placeholders are formatted in; the ids are bound.
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT id FROM builds WHERE id IN ({})", marks.join(", "))));
            for id in chunk {
                q = q.bind(*id);
            }
            for id in q.fetch_all(self.pool()).await? {
                gone.remove(&id);
            }
        }
        Ok(gone)
    }

    /// The tests of a build's test group quarantined when its list was uploaded.
    pub async fn build_quarantined(&self, build_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT group_key, test_key FROM build_quarantine WHERE build_id = $1 ORDER BY group_key, test_key")
            .bind(build_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("group_key")?, r.try_get("test_key")?))).collect()
    }
}

/// Keep, for a build's test group, the project's tests quarantined now (the list upload).
pub(crate) async fn snapshot(tx: &mut sqlx::Transaction<'_, sqlx::Any>, build_id: i64, group: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO build_quarantine (build_id, group_key, test_key) SELECT $1, $2, q.test_key FROM quarantined_tests q \
         JOIN builds b ON b.project_id = q.project_id WHERE b.id = $1 ON CONFLICT DO NOTHING",
    )
    .bind(build_id)
    .bind(group)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
