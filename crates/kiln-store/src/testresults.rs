//! Test results: every JUnit case a job uploads (with the listed test it answers for, its try
//! and whether it was flaky), a build's counts, and the timing history per project and branch
//! that orders the next build's queue.

use crate::rows::to_json;
use crate::hold::{held_by, AgentAttempt};
use crate::{now_ms, Result, Store, StoreError};
use kiln_core::junit::{Outcome, TestCase};
use kiln_core::testrun::{final_tries, item_outcome, match_cases, Try};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Durations kept per test in the history.
const RECENT: usize = 10;

/// One stored try of one test case.
#[derive(Debug, Clone)]
pub struct TestResultRow {
    pub job_key: String,
    pub group: String,
    pub key: String,
    pub suite: String,
    pub classname: String,
    pub name: String,
    pub file: Option<String>,
    pub duration_ms: u64,
    pub outcome: Outcome,
    pub message: Option<String>,
    pub try_number: u32,
    pub flaky: bool,
    pub is_final: bool,
}

/// One test's history on a branch.
#[derive(Debug, Clone)]
pub struct TestStatsRow {
    pub key: String,
    pub runs: u64,
    pub failures: u64,
    pub flaky: u64,
    pub avg_ms: u64,
    pub last_ms: u64,
    pub last_outcome: String,
    pub recent: Vec<u64>,
}

fn outcome_of(s: &str) -> Result<Outcome> {
    Outcome::parse(s).ok_or_else(|| StoreError::Corrupt(format!("test outcome {s:?}")))
}

impl Store {
    /// Store the cases of one JUnit report of a job's attempt (of a batch, or after plain
    /// steps). Uploading the same report again replaces it. Returns how many cases it held.
    pub async fn store_test_report(&self, by: AgentAttempt<'_>, batch_id: Option<i64>, group: &str, report: &str, cases: &[TestCase]) -> Result<u32> {
        let AgentAttempt { job_id, attempt, .. } = by;
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let build_id = held_by(&mut tx, by).await?;
        let mut items: Vec<(i64, String, i64, bool)> = Vec::new();
        let mut group = group.to_string();
        if let Some(b) = batch_id {
            let row = sqlx::query("SELECT group_key, job_id, attempt, state FROM test_batches WHERE id = $1")
                .bind(b)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("test batch {b}")))?;
            let owner = (row.try_get::<i64, _>("job_id")?, row.try_get::<i64, _>("attempt")?);
            if owner != (job_id, attempt) || row.try_get::<String, _>("state")? != "running" {
                return Err(StoreError::Stale { job_id, attempt });
            }
            group = row.try_get("group_key")?;
            for r in sqlx::query("SELECT id, test_key, try_number, state FROM test_items WHERE batch_id = $1 ORDER BY seq, id")
                .bind(b)
                .fetch_all(&mut *tx)
                .await?
            {
                let dropped = r.try_get::<String, _>("state")? == "dropped";
                items.push((r.try_get("id")?, r.try_get("test_key")?, r.try_get("try_number")?, dropped));
            }
        }
        sqlx::query("DELETE FROM test_results WHERE job_id = $1 AND attempt = $2 AND report = $3")
            .bind(job_id)
            .bind(attempt)
            .bind(report)
            .execute(&mut *tx)
            .await?;
        let listed: Vec<String> = items.iter().map(|i| i.1.clone()).collect();
        let matched = match_cases(&listed, cases);
        let now = now_ms();
        for (case, m) in cases.iter().zip(matched) {
            let (item_id, key, try_number) = match m {
                // A seeded test this build's list does not name: not part of its suite.
                Some(i) if items[i].3 => continue,
                Some(i) => (Some(items[i].0), items[i].1.clone(), items[i].2),
                None => (None, case.id(), 0),
            };
            sqlx::query(
                "INSERT INTO test_results (build_id, job_id, attempt, batch_id, item_id, report, group_key, test_key, suite, classname, name, file, \
                 duration_ms, outcome, message, try_number, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(build_id)
            .bind(job_id)
            .bind(attempt)
            .bind(batch_id)
            .bind(item_id)
            .bind(report)
            .bind(&group)
            .bind(&key)
            .bind(&case.suite)
            .bind(&case.classname)
            .bind(&case.name)
            .bind(&case.file)
            .bind(case.duration_ms as i64)
            .bind(case.outcome.as_str())
            .bind(&case.message)
            .bind(try_number)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(cases.len() as u32)
    }

    /// Every stored try of every case of a build, in upload order, with `is_final` set on the
    /// tries the counts use.
    pub async fn build_test_results(&self, build_id: i64) -> Result<Vec<TestResultRow>> {
        let rows = sqlx::query(
            "SELECT j.job_key, r.group_key, r.test_key, r.suite, r.classname, r.name, r.file, r.duration_ms, r.outcome, r.message, \
             r.try_number, r.flaky FROM test_results r JOIN jobs j ON j.id = r.job_id WHERE r.build_id = $1 ORDER BY r.id",
        )
        .bind(build_id)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(TestResultRow {
                job_key: r.try_get("job_key")?,
                group: r.try_get("group_key")?,
                key: r.try_get("test_key")?,
                suite: r.try_get("suite")?,
                classname: r.try_get("classname")?,
                name: r.try_get("name")?,
                file: r.try_get("file")?,
                duration_ms: r.try_get::<i64, _>("duration_ms")?.max(0) as u64,
                outcome: outcome_of(&r.try_get::<String, _>("outcome")?)?,
                message: r.try_get("message")?,
                try_number: r.try_get::<i64, _>("try_number")?.max(0) as u32,
                flaky: r.try_get::<i64, _>("flaky")? != 0,
                is_final: false,
            });
        }
        // Each case is a test (a listed file has several); its final try is what counts.
        let tries: Vec<Try> = out.iter().map(case_try).collect();
        for (i, flaky) in final_tries(&tries) {
            out[i].is_final = true;
            out[i].flaky = flaky;
        }
        Ok(out)
    }

    /// Add a finished build's tests to its project's history on its branch (once per build):
    /// per test, its final try's duration (a listed file: the sum of its cases) and outcome.
    pub async fn record_test_history(&self, build_id: i64) -> Result<()> {
        let build = self.build(build_id).await?;
        if build.finished_at.is_none() {
            return Ok(());
        }
        let rows = self.build_test_results(build_id).await?;
        // One observation per (group, key, try): cases of a listed file add up.
        let mut obs: Vec<(Try, u64)> = Vec::new();
        let mut index: HashMap<(String, String, u32), usize> = HashMap::new();
        for r in &rows {
            let k = (r.group.clone(), r.key.clone(), r.try_number);
            match index.get(&k) {
                Some(&i) => {
                    let o = item_outcome([obs[i].0.outcome, r.outcome]).unwrap_or(r.outcome);
                    obs[i].0.outcome = o;
                    obs[i].1 += r.duration_ms;
                }
                None => {
                    index.insert(k, obs.len());
                    obs.push((Try { group: r.group.clone(), key: r.key.clone(), case: String::new(), try_number: r.try_number, outcome: r.outcome }, r.duration_ms));
                }
            }
        }
        let tries: Vec<Try> = obs.iter().map(|o| o.0.clone()).collect();
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let first: Option<i64> = sqlx::query_scalar("INSERT INTO test_history_builds (build_id) VALUES ($1) ON CONFLICT (build_id) DO NOTHING RETURNING build_id")
            .bind(build_id)
            .fetch_optional(&mut *tx)
            .await?;
        if first.is_none() {
            return Ok(());
        }
        let now = now_ms();
        for (i, flaky) in final_tries(&tries) {
            let (t, ms) = &obs[i];
            let bad = matches!(t.outcome, Outcome::Failed | Outcome::Errored);
            let old = sqlx::query("SELECT runs, failures, flaky, recent FROM test_history WHERE project_id = $1 AND branch = $2 AND test_key = $3")
                .bind(build.project_id)
                .bind(&build.branch)
                .bind(&t.key)
                .fetch_optional(&mut *tx)
                .await?;
            let (runs, failures, flakes, mut recent) = match old {
                Some(r) => (
                    r.try_get::<i64, _>("runs")?,
                    r.try_get::<i64, _>("failures")?,
                    r.try_get::<i64, _>("flaky")?,
                    serde_json::from_str::<Vec<u64>>(&r.try_get::<String, _>("recent")?).unwrap_or_default(),
                ),
                None => (0, 0, 0, Vec::new()),
            };
            // A skipped test's time says nothing about how long it runs.
            if t.outcome != Outcome::Skipped || recent.is_empty() {
                recent.push(*ms);
            }
            if recent.len() > RECENT {
                recent.drain(..recent.len() - RECENT);
            }
            let avg = recent.iter().sum::<u64>() / recent.len().max(1) as u64;
            sqlx::query(
                "INSERT INTO test_history (project_id, branch, test_key, runs, failures, flaky, avg_ms, last_ms, last_outcome, recent, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (project_id, branch, test_key) DO UPDATE SET \
                 runs = excluded.runs, failures = excluded.failures, flaky = excluded.flaky, avg_ms = excluded.avg_ms, last_ms = excluded.last_ms, \
                 last_outcome = excluded.last_outcome, recent = excluded.recent, updated_at = excluded.updated_at",
            )
            .bind(build.project_id)
            .bind(&build.branch)
            .bind(&t.key)
            .bind(runs + 1)
            .bind(failures + bad as i64)
            .bind(flakes + flaky as i64)
            .bind(avg as i64)
            .bind(*ms as i64)
            .bind(if flaky { "flaky" } else { t.outcome.as_str() })
            .bind(to_json(&recent))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        record_group_history(&mut tx, build_id, build.project_id, &build.branch).await?;
        tx.commit().await?;
        Ok(())
    }

    /// How long after the build started its first failure came: a failed (or errored) test
    /// reported (not one quarantined for the build), or a job that ended failed or errored
    /// (a plain job without `tests:` too).
    pub async fn first_failure_ms(&self, build_id: i64) -> Result<Option<u64>> {
        let ms: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT MIN(f.at) - b.started_at FROM builds b JOIN ( \
               SELECT r.created_at AS at FROM test_results r WHERE r.build_id = $1 AND r.outcome IN ('failed', 'errored') \
                 AND NOT EXISTS (SELECT 1 FROM build_quarantine q WHERE q.build_id = r.build_id AND q.group_key = r.group_key AND q.test_key = r.test_key) \
               UNION ALL \
               SELECT j.finished_at AS at FROM jobs j WHERE j.build_id = $1 AND j.status IN ('failed', 'errored') AND j.finished_at IS NOT NULL \
             ) f ON 1 = 1 WHERE b.id = $1 AND b.started_at IS NOT NULL GROUP BY b.started_at",
        )
        .bind(build_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(ms.flatten().map(|m| m.max(0) as u64))
    }

    /// The tests whose last run on `branch` failed or errored.
    pub async fn last_failed_tests(&self, project_id: i64, branch: &str) -> Result<HashSet<String>> {
        let keys: Vec<String> = sqlx::query_scalar("SELECT test_key FROM test_history WHERE project_id = $1 AND branch = $2 AND last_outcome IN ('failed', 'errored')")
            .bind(project_id)
            .bind(branch)
            .fetch_all(self.pool())
            .await?;
        Ok(keys.into_iter().collect())
    }

    /// The fixed cost per batch a group's last build measured on `branch`, else on the
    /// project's default branch.
    pub async fn history_fixed_ms(&self, project_id: i64, branch: &str, group: &str) -> Result<Option<u64>> {
        let fixed: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT h.fixed_ms FROM test_group_history h JOIN projects p ON p.id = h.project_id \
             WHERE h.project_id = $1 AND h.group_key = $3 AND h.fixed_ms IS NOT NULL AND (h.branch = $2 OR h.branch = p.branch) \
             ORDER BY CASE WHEN h.branch = $2 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(project_id)
        .bind(branch)
        .bind(group)
        .fetch_optional(self.pool())
        .await?;
        Ok(fixed.flatten().map(|f| f.max(0) as u64))
    }

    /// Record the history of a project's finished builds not yet recorded (a server that
    /// stopped between a build's end and its history catches up here).
    pub async fn record_finished_history(&self, project_id: i64) -> Result<()> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT b.id FROM builds b WHERE b.project_id = $1 AND b.finished_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM test_history_builds h WHERE h.build_id = b.id) \
             AND EXISTS (SELECT 1 FROM test_results r WHERE r.build_id = b.id) ORDER BY b.id LIMIT 50",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?;
        for id in ids {
            self.record_test_history(id).await?;
        }
        Ok(())
    }

    /// Known durations (ms) per test key on `branch`, falling back to the project's default
    /// branch for tests the branch has never run.
    pub async fn history_estimates(&self, project_id: i64, branch: &str) -> Result<HashMap<String, u64>> {
        let default: Option<String> = sqlx::query_scalar("SELECT branch FROM projects WHERE id = $1").bind(project_id).fetch_optional(self.pool()).await?;
        let mut out = HashMap::new();
        let mut branches = vec![branch.to_string()];
        branches.extend(default.filter(|d| d != branch));
        for b in branches {
            for r in sqlx::query("SELECT test_key, avg_ms FROM test_history WHERE project_id = $1 AND branch = $2")
                .bind(project_id)
                .bind(&b)
                .fetch_all(self.pool())
                .await?
            {
                let ms: i64 = r.try_get("avg_ms")?;
                out.entry(r.try_get::<String, _>("test_key")?).or_insert(ms.max(0) as u64);
            }
        }
        Ok(out)
    }

    /// Every test's history on a project's branch.
    pub async fn test_stats(&self, project_id: i64, branch: &str) -> Result<Vec<TestStatsRow>> {
        self.record_finished_history(project_id).await?;
        let rows = sqlx::query(
            "SELECT test_key, runs, failures, flaky, avg_ms, last_ms, last_outcome, recent FROM test_history WHERE project_id = $1 AND branch = $2 ORDER BY test_key",
        )
        .bind(project_id)
        .bind(branch)
        .fetch_all(self.pool())
        .await?;
        let n = |r: &sqlx::any::AnyRow, c: &str| -> Result<u64> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
        rows.iter()
            .map(|r| {
                Ok(TestStatsRow {
                    key: r.try_get("test_key")?,
                    runs: n(r, "runs")?,
                    failures: n(r, "failures")?,
                    flaky: n(r, "flaky")?,
                    avg_ms: n(r, "avg_ms")?,
                    last_ms: n(r, "last_ms")?,
                    last_outcome: r.try_get("last_outcome")?,
                    recent: serde_json::from_str(&r.try_get::<String, _>("recent")?).unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// Keep what starting each test group's runner cost in a build (the median fixed cost of its
/// finished batches, its list step's time) as its history on the build's branch.
async fn record_group_history(tx: &mut sqlx::Transaction<'_, sqlx::Any>, build_id: i64, project_id: i64, branch: &str) -> Result<()> {
    let groups = sqlx::query("SELECT group_key, list_ms FROM test_groups WHERE build_id = $1 AND state = 'ready'")
        .bind(build_id)
        .fetch_all(&mut **tx)
        .await?;
    for g in groups {
        let key: String = g.try_get("group_key")?;
        let list_ms: Option<i64> = g.try_get("list_ms")?;
        let fixed = crate::testqueue::fixed_costs(tx, build_id, &key).await?;
        let Some(fixed) = kiln_core::batchplan::median(&fixed) else { continue };
        sqlx::query(
            "INSERT INTO test_group_history (project_id, branch, group_key, fixed_ms, list_ms, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (project_id, branch, group_key) DO UPDATE SET fixed_ms = excluded.fixed_ms, list_ms = excluded.list_ms, updated_at = excluded.updated_at",
        )
        .bind(project_id)
        .bind(branch)
        .bind(&key)
        .bind(fixed as i64)
        .bind(list_ms)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A stored case as a try of its listed test; the "no result reported" marker (no class, its
/// name the key) stands for every case of it.
pub(crate) fn case_try(r: &TestResultRow) -> Try {
    let case = if r.classname.is_empty() && r.name == r.key { String::new() } else { format!("{}::{}", r.classname, r.name) };
    Try { group: r.group.clone(), key: r.key.clone(), case, try_number: r.try_number, outcome: r.outcome }
}
