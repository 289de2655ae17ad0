//! The test queue of a sharded job: one per build and job group (the job key without its
//! shard suffix). The first shard to claim runs the list command and uploads the ids; then
//! every shard claims batches (tests that failed last time or sit in files the commit changed
//! first, then longest-known first with a file's tests together: `kiln_core::shards::queue_order`;
//! sized by `kiln_core::batchplan`) until the queue is empty. Batches belong to one (job,
//! attempt): a batch of an attempt that lost its job goes back to the queue, and its partial
//! results are dropped.
//!
//! With an earlier build's list, the queue is seeded from it while the first shard lists
//! (`seed_test_queue`), and the other shards claim batches from the seed at once; the list then
//! adds what the seed lacked and drops what it no longer names.
//!
//! ```text
//!  group: listing ──upload ids──► ready ──► items pending ─claim─► claimed ─done─► done
//!           │  └─ seeded: items pending ──────────▲                    │  (retry: a new item)
//!           └─ list failed ─► failed            └──── stale attempt ─┘
//!  a seeded item the list does not name: pending → deleted; claimed or done → dropped
//! ```

use crate::hold::{held_by, AgentAttempt};
use crate::{now_ms, BuildRow, Result, Store, StoreError};
use kiln_core::junit::Outcome;
use kiln_core::batchplan::{median, plan, plan_static, Claim, InFlight};
use kiln_core::testrun::{item_outcome, no_result_message, resolve_try, static_assignment};
use sqlx::{Any, Row, Transaction};
use std::collections::{HashMap, HashSet};

/// Which queue a shard works, and its rules.
#[derive(Debug, Clone)]
pub struct TestGroup {
    pub key: String,
    pub shards: u32,
    pub shard_index: u32,
    pub retries: u32,
}

/// The answer to a shard's claim.
#[derive(Debug, Clone, PartialEq)]
pub enum TestClaim {
    /// Run the list command (or expand the files glob) and upload the ids.
    List,
    /// Another shard is listing: ask again shortly.
    Wait,
    /// Listing failed: the shard ends errored with this reason.
    Error(String),
    /// A batch, and why it has its size (for the job log).
    Batch { id: i64, tests: Vec<String>, plan: String },
    /// Nothing left for this shard; the tests it ran last that failed (those quarantined
    /// apart: they do not fail the job), and the flaky ones.
    Done { failed: Vec<String>, flaky: Vec<String>, quarantined: Vec<String> },
}

/// A branch's history, as a test queue uses it.
struct QueueHistory {
    /// Each test's duration (ms).
    tests: HashMap<String, u64>,
    /// The tests whose last run failed.
    failed: HashSet<String>,
    /// The group's fixed cost per batch.
    fixed_ms: Option<u64>,
}

/// What a finished batch came to.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchSummary {
    pub passed: u32,
    pub failed: u32,
    pub retried: u32,
    /// No result, in a batch claimed from a seed before the list came: queued again.
    pub requeued: u32,
    /// No batch of its group runs any more: shards waiting for the last ones may end.
    pub none_running: bool,
}

/// A job of a build ended: for each test group none of whose shards is queued or running any
/// more, the tests no one ran (pending, or in a batch of an attempt that ended) are recorded
/// `errored` — "not run", with the reason the last shard ended — so that the build ends with
/// every listed test run or reported.
pub(crate) async fn report_unrun(tx: &mut Transaction<'_, Any>, build_id: i64) -> Result<()> {
    let groups: Vec<String> = sqlx::query_scalar("SELECT group_key FROM test_groups WHERE build_id = $1 AND state = 'ready'")
        .bind(build_id)
        .fetch_all(&mut **tx)
        .await?;
    if groups.is_empty() {
        return Ok(());
    }
    let jobs = sqlx::query("SELECT job_key, status, reason FROM jobs WHERE build_id = $1 ORDER BY finished_at")
        .bind(build_id)
        .fetch_all(&mut **tx)
        .await?;
    for g in groups {
        let mut alive = false;
        let mut last_reason = None;
        for j in &jobs {
            let key: String = j.try_get("job_key")?;
            if key != g && kiln_core::testrun::group_key(&key, 2) != g {
                continue;
            }
            alive |= !crate::rows::job_status(j, "status")?.is_final();
            last_reason = j.try_get::<Option<String>, _>("reason")?.or(last_reason);
        }
        if alive {
            continue;
        }
        return_stale_batches(tx, build_id, &g).await?;
        let unrun = sqlx::query("SELECT id, test_key, try_number FROM test_items WHERE build_id = $1 AND group_key = $2 AND state = 'pending' ORDER BY seq, id")
            .bind(build_id)
            .bind(&g)
            .fetch_all(&mut **tx)
            .await?;
        let why = not_run_message(last_reason.as_deref());
        for it in unrun {
            let (item_id, key, try_number): (i64, String, i64) = (it.try_get("id")?, it.try_get("test_key")?, it.try_get("try_number")?);
            sqlx::query("UPDATE test_items SET state = 'done', outcome = 'errored' WHERE id = $1").bind(item_id).execute(&mut **tx).await?;
            // Results belong to a job: the shard job that lists first stands for the group.
            sqlx::query(
                "INSERT INTO test_results (build_id, job_id, attempt, batch_id, item_id, report, group_key, test_key, suite, classname, name, \
                 duration_ms, outcome, message, try_number, created_at) SELECT $1, lister_job, COALESCE(lister_attempt, 0), NULL, $2, '', $3, $4, '', '', $4, 0, 'errored', $5, $6, $7 \
                 FROM test_groups WHERE build_id = $1 AND group_key = $3",
            )
            .bind(build_id)
            .bind(item_id)
            .bind(&g)
            .bind(&key)
            .bind(&why)
            .bind(try_number)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// The message of a test no shard was left to run.
fn not_run_message(last_reason: Option<&str>) -> String {
    match last_reason {
        Some(r) => format!("not run: every shard of this job ended before it ran (the last: {r})"),
        None => "not run: every shard of this job ended before it ran".to_string(),
    }
}

/// Put a batch's unfinished tests back in the queue and drop its partial results.
async fn return_batch(tx: &mut Transaction<'_, Any>, batch_id: i64) -> Result<()> {
    // Any shard may take them now: the one they were assigned to (`split: files`) may be gone.
    sqlx::query("UPDATE test_items SET state = 'pending', batch_id = NULL, shard = NULL WHERE batch_id = $1 AND state = 'claimed'")
        .bind(batch_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM test_results WHERE batch_id = $1").bind(batch_id).execute(&mut **tx).await?;
    sqlx::query("UPDATE test_batches SET state = 'returned', finished_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(batch_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An attempt lost its job (lease expired, agent restarted, handed back): its running
/// batches go back to the queue, and results it uploaded outside batches are dropped.
pub(crate) async fn return_attempt_batches(tx: &mut Transaction<'_, Any>, job_id: i64, attempt: i64) -> Result<()> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM test_batches WHERE job_id = $1 AND attempt = $2 AND state = 'running'")
        .bind(job_id)
        .bind(attempt)
        .fetch_all(&mut **tx)
        .await?;
    for id in ids {
        return_batch(tx, id).await?;
    }
    sqlx::query("DELETE FROM test_results WHERE job_id = $1 AND attempt = $2 AND batch_id IS NULL")
        .bind(job_id)
        .bind(attempt)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Return the running batches of a group whose attempt is no longer its job's running one.
async fn return_stale_batches(tx: &mut Transaction<'_, Any>, build_id: i64, group: &str) -> Result<()> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT b.id FROM test_batches b JOIN jobs j ON j.id = b.job_id \
         WHERE b.build_id = $1 AND b.group_key = $2 AND b.state = 'running' AND (j.status <> 'running' OR j.attempt <> b.attempt)",
    )
    .bind(build_id)
    .bind(group)
    .fetch_all(&mut **tx)
    .await?;
    for id in ids {
        return_batch(tx, id).await?;
    }
    Ok(())
}

/// The fixed cost of a group's last 20 finished batches: claim to done, less the tests' own
/// times.
pub(crate) async fn fixed_costs(tx: &mut Transaction<'_, Any>, build_id: i64, group: &str) -> Result<Vec<u64>> {
    let mut fixed = Vec::new();
    for r in sqlx::query(
        "SELECT b.finished_at - b.claimed_at AS took, (SELECT CAST(COALESCE(SUM(r.duration_ms), 0) AS BIGINT) FROM test_results r WHERE r.batch_id = b.id) AS ran \
         FROM test_batches b WHERE b.build_id = $1 AND b.group_key = $2 AND b.state = 'done' ORDER BY b.id DESC LIMIT 20",
    )
    .bind(build_id)
    .bind(group)
    .fetch_all(&mut **tx)
    .await?
    {
        let (took, ran): (i64, i64) = (r.try_get("took")?, r.try_get("ran")?);
        fixed.push((took - ran).max(0) as u64);
    }
    Ok(fixed)
}

/// What the planner knows about a group's run so far: the other shards' running batches, the
/// fixed cost per batch measured (claim to done, less the tests' own time; the median of the
/// last 20) and the median time of the tests run.
async fn plan_context(tx: &mut Transaction<'_, Any>, build_id: i64, group: &str) -> Result<(Vec<InFlight>, Option<u64>, Option<u64>)> {
    let now = now_ms();
    let mut in_flight = Vec::new();
    for r in sqlx::query(
        "SELECT b.claimed_at, CAST(COALESCE(SUM(i.estimate_ms), 0) AS BIGINT) AS known, \
         CAST(SUM(CASE WHEN i.estimate_ms IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unknown FROM test_batches b JOIN test_items i ON i.batch_id = b.id \
         WHERE b.build_id = $1 AND b.group_key = $2 AND b.state = 'running' GROUP BY b.id, b.claimed_at",
    )
    .bind(build_id)
    .bind(group)
    .fetch_all(&mut **tx)
    .await?
    {
        let (claimed, known, unknown): (i64, i64, i64) = (r.try_get("claimed_at")?, r.try_get("known")?, r.try_get("unknown")?);
        in_flight.push(InFlight { elapsed_ms: (now - claimed).max(0) as u64, known_ms: known.max(0) as u64, unknown: unknown.max(0) as usize });
    }
    let fixed = fixed_costs(tx, build_id, group).await?;
    let ran: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(duration_ms) AS BIGINT) FROM test_results WHERE build_id = $1 AND group_key = $2 AND item_id IS NOT NULL GROUP BY item_id",
    )
    .bind(build_id)
    .bind(group)
    .fetch_all(&mut **tx)
    .await?;
    let ran: Vec<u64> = ran.into_iter().map(|ms| ms.max(0) as u64).collect();
    Ok((in_flight, median(&fixed), median(&ran)))
}

/// Queue `keys` as pending first tries: each with its place in the queue and, under
/// `split: files`, the shard it belongs to.
async fn insert_pending<'k>(tx: &mut Transaction<'_, Any>, build_id: i64, group: &str, keys: impl Iterator<Item = (usize, &'k String, Option<u32>)>, history: &HashMap<String, u64>) -> Result<()> {
    for (seq, key, shard) in keys {
        sqlx::query(
            "INSERT INTO test_items (build_id, group_key, test_key, seq, estimate_ms, try_number, shard, state) VALUES ($1, $2, $3, $4, $5, 0, $6, 'pending')",
        )
        .bind(build_id)
        .bind(group)
        .bind(key)
        .bind(seq as i64)
        .bind(history.get(key).map(|&ms| ms as i64))
        .bind(shard.map(i64::from))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The list of a seeded queue came: the seed's tests it does not name leave the queue (run
/// already: `dropped`, their results with them), those it names that the seed lacks join it,
/// and what is still pending takes the list's order.
async fn reconcile_seed(tx: &mut Transaction<'_, Any>, build_id: i64, group: &str, order: &[String], history: &HashMap<String, u64>) -> Result<()> {
    let listed: HashSet<&str> = order.iter().map(String::as_str).collect();
    let mut seeded = HashSet::new();
    for r in sqlx::query("SELECT id, test_key, state FROM test_items WHERE build_id = $1 AND group_key = $2").bind(build_id).bind(group).fetch_all(&mut **tx).await? {
        let (id, key, state): (i64, String, String) = (r.try_get("id")?, r.try_get("test_key")?, r.try_get("state")?);
        if listed.contains(key.as_str()) {
            seeded.insert(key);
        } else if state == "pending" {
            sqlx::query("DELETE FROM test_items WHERE id = $1").bind(id).execute(&mut **tx).await?;
        } else {
            sqlx::query("UPDATE test_items SET state = 'dropped' WHERE id = $1").bind(id).execute(&mut **tx).await?;
            sqlx::query("DELETE FROM test_results WHERE item_id = $1").bind(id).execute(&mut **tx).await?;
        }
    }
    for (seq, key) in order.iter().enumerate().filter(|(_, k)| seeded.contains(*k)) {
        sqlx::query("UPDATE test_items SET seq = $1 WHERE build_id = $2 AND group_key = $3 AND test_key = $4 AND state = 'pending'")
            .bind(seq as i64)
            .bind(build_id)
            .bind(group)
            .bind(key)
            .execute(&mut **tx)
            .await?;
    }
    insert_pending(tx, build_id, group, order.iter().enumerate().filter(|(_, k)| !seeded.contains(*k)).map(|(seq, k)| (seq, k, None)), history).await
}

fn outcome_of(s: &str) -> Result<Outcome> {
    Outcome::parse(s).ok_or_else(|| StoreError::Corrupt(format!("test outcome {s:?}")))
}

impl Store {
    /// A shard asks for work: list, wait, a batch, or done (with its verdict).
    pub async fn claim_tests(&self, by: AgentAttempt<'_>, g: &TestGroup) -> Result<TestClaim> {
        let AgentAttempt { job_id, attempt, .. } = by;
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let build_id = held_by(&mut tx, by).await?;
        // Serialise claims of one group (a row lock on PostgreSQL; SQLite has one writer).
        let bumped = sqlx::query("UPDATE test_groups SET version = version + 1 WHERE build_id = $1 AND group_key = $2 RETURNING state, lister_job, lister_attempt, error, static_split, history_fixed_ms, seeded_from")
            .bind(build_id)
            .bind(&g.key)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(group) = bumped else {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO test_groups (build_id, group_key, state, lister_job, lister_attempt, shards, retries, created_at) \
                 VALUES ($1, $2, 'listing', $3, $4, $5, $6, $7) ON CONFLICT (build_id, group_key) DO NOTHING RETURNING build_id",
            )
            .bind(build_id)
            .bind(&g.key)
            .bind(job_id)
            .bind(attempt)
            .bind(i64::from(g.shards))
            .bind(i64::from(g.retries))
            .bind(now_ms())
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            // Another shard's claim made the group first (PostgreSQL): it lists.
            return Ok(if inserted.is_some() { TestClaim::List } else { TestClaim::Wait });
        };
        let state: String = group.try_get("state")?;
        // A queue seeded from an earlier build's list hands out batches while the list runs.
        let seeded = group.try_get::<Option<i64>, _>("seeded_from")?.is_some();
        let listing = state == "listing";
        match state.as_str() {
            "listing" => {
                let (lj, la): (Option<i64>, Option<i64>) = (group.try_get("lister_job")?, group.try_get("lister_attempt")?);
                if (lj, la) == (Some(job_id), Some(attempt)) {
                    tx.commit().await?;
                    return Ok(TestClaim::List);
                }
                let lister_alive = match (lj, la) {
                    (Some(j), Some(a)) => sqlx::query("SELECT 1 AS x FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running'")
                        .bind(j)
                        .bind(a)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some(),
                    _ => false,
                };
                if lister_alive && !seeded {
                    tx.commit().await?;
                    return Ok(TestClaim::Wait);
                }
                if !lister_alive {
                    // The shard that was listing lost its job: this one lists instead.
                    sqlx::query("UPDATE test_groups SET lister_job = $1, lister_attempt = $2 WHERE build_id = $3 AND group_key = $4")
                        .bind(job_id)
                        .bind(attempt)
                        .bind(build_id)
                        .bind(&g.key)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(TestClaim::List);
                }
            }
            "failed" => {
                let e: Option<String> = group.try_get("error")?;
                tx.commit().await?;
                return Ok(TestClaim::Error(e.unwrap_or_else(|| "listing the tests failed".into())));
            }
            _ => {}
        }
        let static_split = group.try_get::<i64, _>("static_split")? != 0;
        return_stale_batches(&mut tx, build_id, &g.key).await?;
        let rows = sqlx::query(
            "SELECT id, test_key, estimate_ms FROM test_items WHERE build_id = $1 AND group_key = $2 AND state = 'pending' \
             AND (shard IS NULL OR shard = $3) ORDER BY seq, id",
        )
        .bind(build_id)
        .bind(&g.key)
        .bind(i64::from(g.shard_index))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            // The seed is all claimed, and the list may yet add tests: wait for it.
            if listing {
                tx.commit().await?;
                return Ok(TestClaim::Wait);
            }
            // Another shard's running batch may yet come back (its agent died): wait for it.
            let others: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM test_batches WHERE build_id = $1 AND group_key = $2 AND state = 'running' AND NOT (job_id = $3 AND attempt = $4)",
            )
            .bind(build_id)
            .bind(&g.key)
            .bind(job_id)
            .bind(attempt)
            .fetch_one(&mut *tx)
            .await?;
            if others > 0 {
                tx.commit().await?;
                return Ok(TestClaim::Wait);
            }
            let claim = self.verdict(&mut tx, job_id, attempt, &g.key).await?;
            tx.commit().await?;
            return Ok(claim);
        }
        let mut pending = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let est: Option<i64> = r.try_get("estimate_ms")?;
            pending.push((r.try_get::<String, _>("test_key")?, est.map(|e| e.max(0) as u64)));
            ids.push(r.try_get::<i64, _>("id")?);
        }
        let p = if static_split {
            plan_static(pending.len())
        } else {
            let (in_flight, measured, run_median) = plan_context(&mut tx, build_id, &g.key).await?;
            let history_fixed: Option<i64> = group.try_get("history_fixed_ms")?;
            let fixed_ms = measured.or(history_fixed.map(|f| f.max(0) as u64));
            plan(&Claim { pending: &pending, shards: g.shards, in_flight: &in_flight, fixed_ms, run_median_ms: run_median })
        };
        let n = p.len.clamp(1, pending.len());
        let batch_id: i64 = sqlx::query_scalar(
            "INSERT INTO test_batches (build_id, group_key, job_id, attempt, state, claimed_at) VALUES ($1, $2, $3, $4, 'running', $5) RETURNING id",
        )
        .bind(build_id)
        .bind(&g.key)
        .bind(job_id)
        .bind(attempt)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        for id in &ids[..n] {
            sqlx::query("UPDATE test_items SET state = 'claimed', batch_id = $1 WHERE id = $2 AND state = 'pending'")
                .bind(batch_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let tests = pending.into_iter().take(n).map(|(k, _)| k).collect();
        Ok(TestClaim::Batch { id: batch_id, tests, plan: p.explain(g.shards) })
    }

    /// What a group's queue is ordered and sized with: the branch's history (the finished
    /// builds recorded in it first).
    async fn queue_history(&self, build: &BuildRow, group: &str) -> Result<QueueHistory> {
        self.record_finished_history(build.project_id).await?;
        Ok(QueueHistory {
            tests: self.history_estimates(build.project_id, &build.branch).await?,
            failed: self.last_failed_tests(build.project_id, &build.branch).await?,
            fixed_ms: self.history_fixed_ms(build.project_id, &build.branch, group).await?,
        })
    }

    /// While the first shard lists, seed the group's queue from the list of the last build of
    /// this branch (else the default branch) that listed this group, ordered as a list would be
    /// (`queue_order`; the files the commit changed come with the list, which puts their tests
    /// still pending first): the other shards start on it at once, and the list, when it comes,
    /// adds the tests it names that the seed lacks and drops those it no longer names. A retry
    /// build (its list is cut down to what failed) is not seeded, nor seeds another. Returns
    /// the build the seed came from, `None` when there was none or the list came first.
    pub async fn seed_test_queue(&self, by: AgentAttempt<'_>, g: &TestGroup) -> Result<Option<i64>> {
        self.check_held(by).await?;
        let job = self.job(by.job_id).await?;
        let build = self.build(job.build_id).await?;
        if self.retry_of(build.id).await?.is_some() {
            return Ok(None);
        }
        let from: Option<i64> = sqlx::query_scalar(
            "SELECT g.build_id FROM test_groups g JOIN builds b ON b.id = g.build_id JOIN projects p ON p.id = b.project_id \
             WHERE b.project_id = $1 AND g.group_key = $2 AND g.state = 'ready' AND g.static_split = 0 AND g.build_id <> $3 \
             AND (b.branch = $4 OR b.branch = p.branch) AND NOT EXISTS (SELECT 1 FROM build_retries r WHERE r.build_id = b.id) \
             ORDER BY CASE WHEN b.branch = $4 THEN 0 ELSE 1 END, g.build_id DESC LIMIT 1",
        )
        .bind(build.project_id)
        .bind(&g.key)
        .bind(build.id)
        .bind(&build.branch)
        .fetch_optional(self.pool())
        .await?;
        let Some(from) = from else { return Ok(None) };
        let ids: Vec<String> = sqlx::query_scalar("SELECT test_key FROM test_items WHERE build_id = $1 AND group_key = $2 AND try_number = 0 AND state <> 'dropped' ORDER BY seq, id")
            .bind(from)
            .bind(&g.key)
            .fetch_all(self.pool())
            .await?;
        if ids.is_empty() {
            return Ok(None);
        }
        let QueueHistory { tests: history, failed, fixed_ms: history_fixed } = self.queue_history(&build, &g.key).await?;
        let (order, _) = kiln_core::shards::queue_order(&ids, &history, &failed, &[]);
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let build_id = held_by(&mut tx, by).await?;
        let claimed = sqlx::query(
            "UPDATE test_groups SET seeded_from = $1, history_fixed_ms = $4 WHERE build_id = $2 AND group_key = $3 AND state = 'listing' AND seeded_from IS NULL",
        )
            .bind(from)
            .bind(build_id)
            .bind(&g.key)
            .bind(history_fixed.map(|f| f as i64))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed != 1 {
            tx.commit().await?;
            return Ok(None);
        }
        insert_pending(&mut tx, build_id, &g.key, order.iter().enumerate().map(|(seq, k)| (seq, k, None)), &history).await?;
        tx.commit().await?;
        Ok(Some(from))
    }

    /// The tests this attempt ran whose final try failed, and the flaky ones; a failed test
    /// quarantined when this group listed its tests fails without failing the job.
    async fn verdict(&self, tx: &mut Transaction<'_, Any>, job_id: i64, attempt: i64, group: &str) -> Result<TestClaim> {
        let failed: Vec<String> = sqlx::query_scalar(
            "SELECT i.test_key FROM test_items i JOIN test_batches b ON b.id = i.batch_id WHERE b.job_id = $1 AND b.attempt = $2 \
             AND i.state = 'done' AND i.superseded = 0 AND i.outcome IN ('failed', 'errored') ORDER BY i.id",
        )
        .bind(job_id)
        .bind(attempt)
        .fetch_all(&mut **tx)
        .await?;
        let flaky: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT r.test_key FROM test_results r JOIN test_batches b ON b.id = r.batch_id \
             WHERE b.job_id = $1 AND b.attempt = $2 AND r.flaky = 1 ORDER BY r.test_key",
        )
        .bind(job_id)
        .bind(attempt)
        .fetch_all(&mut **tx)
        .await?;
        let held: HashSet<String> = sqlx::query_scalar(
            "SELECT q.test_key FROM build_quarantine q JOIN jobs j ON j.build_id = q.build_id WHERE j.id = $1 AND q.group_key = $2",
        )
        .bind(job_id)
        .bind(group)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
        let (quarantined, failed): (Vec<String>, Vec<String>) = failed.into_iter().partition(|k| held.contains(k));
        Ok(TestClaim::Done { failed, flaky, quarantined })
    }

    /// The listing shard uploads the ids (or why there are none). The first upload wins; the
    /// queue is ordered from the project's history on this branch (`queue_order`).
    pub async fn upload_test_list(&self, by: AgentAttempt<'_>, g: &TestGroup, ids: std::result::Result<Vec<String>, String>, static_split: bool, changed_files: &[String]) -> Result<()> {
        self.check_held(by).await?;
        let job_id = by.job_id;
        let job = self.job(job_id).await?;
        let build = self.build(job.build_id).await?;
        let QueueHistory { tests: history, failed, fixed_ms: history_fixed } = self.queue_history(&build, &g.key).await?;
        let only = self.retry_tests(build.id, &g.key).await?;
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let build_id = held_by(&mut tx, by).await?;
        let group = sqlx::query("SELECT state, seeded_from FROM test_groups WHERE build_id = $1 AND group_key = $2")
            .bind(build_id)
            .bind(&g.key)
            .fetch_optional(&mut *tx)
            .await?;
        let state: Option<String> = group.as_ref().map(|r| r.try_get("state")).transpose()?;
        let seeded = group.as_ref().map(|r| r.try_get::<Option<i64>, _>("seeded_from")).transpose()?.flatten().is_some();
        if state.as_deref() != Some("listing") {
            // Another shard's list won (or none was asked for): nothing to do.
            tx.commit().await?;
            return Ok(());
        }
        let ids = match ids {
            Err(e) => {
                sqlx::query("UPDATE test_groups SET state = 'failed', error = $1 WHERE build_id = $2 AND group_key = $3")
                    .bind(&e)
                    .bind(build_id)
                    .bind(&g.key)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(());
            }
            Ok(ids) => {
                let mut seen = HashSet::new();
                // A retry build runs only the tests that failed before.
                ids.into_iter().filter(|i| seen.insert(i.clone()) && only.as_ref().is_none_or(|o| o.contains(i))).collect::<Vec<_>>()
            }
        };
        let (order, shard_of): (Vec<String>, Vec<Option<u32>>) = if static_split {
            let owners = static_assignment(&ids, &history, g.shards);
            (ids.clone(), owners.into_iter().map(Some).collect())
        } else {
            let (ordered, _) = kiln_core::shards::queue_order(&ids, &history, &failed, changed_files);
            let n = ordered.len();
            (ordered, vec![None; n])
        };
        if seeded {
            reconcile_seed(&mut tx, build_id, &g.key, &order, &history).await?;
        } else {
            insert_pending(&mut tx, build_id, &g.key, order.iter().zip(shard_of).enumerate().map(|(seq, (k, shard))| (seq, k, shard)), &history).await?;
        }
        crate::quarantine::snapshot(&mut tx, build_id, &g.key).await?;
        sqlx::query(
            "UPDATE test_groups SET state = 'ready', static_split = $1, list_ms = $4 - created_at, history_fixed_ms = $5 WHERE build_id = $2 AND group_key = $3",
        )
            .bind(static_split as i64)
            .bind(build_id)
            .bind(&g.key)
            .bind(now_ms())
            .bind(history_fixed.map(|f| f as i64))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A batch's run ended and its reports are in: every listed test gets its outcome (errored
    /// "no result reported" when no case named it); failures are queued again while retries
    /// last; a pass after a failure is marked flaky.
    pub async fn finish_test_batch(&self, by: AgentAttempt<'_>, batch_id: i64, exit_code: Option<i32>) -> Result<BatchSummary> {
        let AgentAttempt { job_id, attempt, .. } = by;
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let build_id = held_by(&mut tx, by).await?;
        let batch = sqlx::query("SELECT group_key, job_id, attempt, state, claimed_at FROM test_batches WHERE id = $1")
            .bind(batch_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("test batch {batch_id}")))?;
        if batch.try_get::<i64, _>("job_id")? != job_id || batch.try_get::<i64, _>("attempt")? != attempt {
            return Err(StoreError::Stale { job_id, attempt });
        }
        let state: String = batch.try_get("state")?;
        if state == "returned" {
            return Err(StoreError::Stale { job_id, attempt });
        }
        let group: String = batch.try_get("group_key")?;
        let g = sqlx::query("SELECT retries, state, seeded_from, created_at, list_ms FROM test_groups WHERE build_id = $1 AND group_key = $2")
            .bind(build_id)
            .bind(&group)
            .fetch_one(&mut *tx)
            .await?;
        let retries: i64 = g.try_get("retries")?;
        // Claimed from a seed before the list came: a test without a result may have been
        // refused with a neighbour that left the suite (pytest runs nothing when one id is
        // unknown), so it goes back to the queue rather than erring.
        let claimed_at: i64 = batch.try_get("claimed_at")?;
        let listed_at = g.try_get::<Option<i64>, _>("list_ms")?.map(|ms| g.try_get::<i64, _>("created_at").map(|c| c + ms)).transpose()?;
        let before_list = g.try_get::<Option<i64>, _>("seeded_from")?.is_some() && listed_at.is_none_or(|at| claimed_at < at);
        let items = sqlx::query("SELECT id, test_key, try_number, estimate_ms FROM test_items WHERE batch_id = $1 AND state = 'claimed' ORDER BY seq, id")
            .bind(batch_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut outcomes: HashMap<i64, (Vec<Outcome>, u64)> = HashMap::new();
        for r in sqlx::query("SELECT item_id, outcome, duration_ms FROM test_results WHERE batch_id = $1 AND item_id IS NOT NULL")
            .bind(batch_id)
            .fetch_all(&mut *tx)
            .await?
        {
            let e = outcomes.entry(r.try_get("item_id")?).or_default();
            e.0.push(outcome_of(&r.try_get::<String, _>("outcome")?)?);
            e.1 += r.try_get::<i64, _>("duration_ms")?.max(0) as u64;
        }
        let now = now_ms();
        let mut sum = BatchSummary::default();
        let mut next_seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM test_items WHERE build_id = $1 AND group_key = $2")
            .bind(build_id)
            .bind(&group)
            .fetch_one(&mut *tx)
            .await?;
        for it in &items {
            let item_id: i64 = it.try_get("id")?;
            let key: String = it.try_get("test_key")?;
            let try_number: i64 = it.try_get("try_number")?;
            let (got, ms) = outcomes.remove(&item_id).unwrap_or_default();
            if got.is_empty() && before_list {
                sqlx::query("UPDATE test_items SET state = 'pending', batch_id = NULL WHERE id = $1").bind(item_id).execute(&mut *tx).await?;
                sum.requeued += 1;
                continue;
            }
            let outcome = match item_outcome(got) {
                Some(o) => o,
                None => {
                    sqlx::query(
                        "INSERT INTO test_results (build_id, job_id, attempt, batch_id, item_id, report, group_key, test_key, suite, classname, name, \
                         duration_ms, outcome, message, try_number, created_at) VALUES ($1, $2, $3, $4, $5, '', $6, $7, '', '', $7, 0, 'errored', $8, $9, $10)",
                    )
                    .bind(build_id)
                    .bind(job_id)
                    .bind(attempt)
                    .bind(batch_id)
                    .bind(item_id)
                    .bind(&group)
                    .bind(&key)
                    .bind(no_result_message(exit_code))
                    .bind(try_number)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    Outcome::Errored
                }
            };
            let failed_before: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM test_items WHERE build_id = $1 AND group_key = $2 AND test_key = $3 AND try_number < $4 AND outcome IN ('failed', 'errored')",
            )
            .bind(build_id)
            .bind(&group)
            .bind(&key)
            .bind(try_number)
            .fetch_one(&mut *tx)
            .await?;
            let r = resolve_try(outcome, try_number as u32, retries.max(0) as u32, failed_before > 0);
            sqlx::query("UPDATE test_items SET state = 'done', outcome = $1, superseded = $2 WHERE id = $3")
                .bind(outcome.as_str())
                .bind(r.retry as i64)
                .bind(item_id)
                .execute(&mut *tx)
                .await?;
            match outcome {
                Outcome::Failed | Outcome::Errored => sum.failed += 1,
                _ => sum.passed += 1,
            }
            if r.retry {
                sum.retried += 1;
                let estimate: Option<i64> = if ms > 0 { Some(ms as i64) } else { it.try_get("estimate_ms")? };
                sqlx::query(
                    "INSERT INTO test_items (build_id, group_key, test_key, seq, estimate_ms, try_number, shard, state) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, 'pending')",
                )
                .bind(build_id)
                .bind(&group)
                .bind(&key)
                .bind(next_seq)
                .bind(estimate)
                .bind(try_number + 1)
                .execute(&mut *tx)
                .await?;
                next_seq += 1;
            }
            if r.flaky {
                sqlx::query("UPDATE test_results SET flaky = 1 WHERE item_id = $1").bind(item_id).execute(&mut *tx).await?;
            }
        }
        sqlx::query("UPDATE test_batches SET state = 'done', exit_code = $1, finished_at = $2 WHERE id = $3")
            .bind(exit_code.map(i64::from))
            .bind(now)
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
        let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM test_batches WHERE build_id = $1 AND group_key = $2 AND state = 'running'")
            .bind(build_id)
            .bind(&group)
            .fetch_one(&mut *tx)
            .await?;
        sum.none_running = running == 0;
        tx.commit().await?;
        Ok(sum)
    }
}
