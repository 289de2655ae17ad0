//! Bounded views of a build's test results, for pages and notifications: counts over every
//! final try, and only the few rows a reader sees (failures with their messages, flaky tests,
//! the slowest). A build of thousands of tests costs a handful of small queries, not a read
//! of every row: counts are SQL aggregates, lists are `ORDER BY … LIMIT`, and only the tests
//! tried more than once (retries; usually none) are read whole and judged by
//! `kiln_core::testrun`'s rules (which try is final, which test was flaky).

use crate::testresults::{case_try, TestResultRow};
use crate::{Result, Store, StoreError};
use kiln_core::junit::Outcome;
use kiln_core::testrun::{final_tries, Counts, Try};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashSet;

/// How many rows of each list a view keeps.
#[derive(Debug, Clone, Copy)]
pub struct TestViewLimits {
    pub failures: usize,
    pub flaky: usize,
    pub slowest: usize,
}

/// What a reader sees of a build's tests. Rows are final tries (`is_final`); `failures`
/// carry their messages.
#[derive(Debug, Clone, Default)]
pub struct TestOverview {
    pub counts: Counts,
    /// Final failed or errored tries, in upload order, at most `limits.failures`.
    pub failures: Vec<TestResultRow>,
    /// Final tries that passed after a failure, in upload order, at most `limits.flaky`.
    pub flaky: Vec<TestResultRow>,
    /// Final tries, slowest first, at most `limits.slowest`.
    pub slowest: Vec<TestResultRow>,
}

/// Which rows (indexes into `rows`) each list takes, and the counts, by the final tries.
pub(crate) fn pick(rows: &[TestResultRow], limits: TestViewLimits) -> (Counts, Vec<usize>, Vec<usize>, Vec<usize>) {
    let tries: Vec<Try> = rows.iter().map(case_try).collect();
    let mut finals = final_tries(&tries);
    finals.sort_by_key(|f| f.0);
    let mut counts = Counts::default();
    let (mut failures, mut flaky) = (Vec::new(), Vec::new());
    for &(i, is_flaky) in &finals {
        counts.add(rows[i].outcome, is_flaky);
        if is_bad(rows[i].outcome) && failures.len() < limits.failures {
            failures.push(i);
        }
        if is_flaky && flaky.len() < limits.flaky {
            flaky.push(i);
        }
    }
    let mut slowest: Vec<usize> = finals.iter().map(|f| f.0).collect();
    slowest.sort_by(|&a, &b| rows[b].duration_ms.cmp(&rows[a].duration_ms).then(a.cmp(&b)));
    slowest.truncate(limits.slowest);
    (counts, failures, flaky, slowest)
}

fn is_bad(o: Outcome) -> bool {
    matches!(o, Outcome::Failed | Outcome::Errored)
}

const COLS: &str = "r.id, j.job_key, r.group_key, r.test_key, r.suite, r.classname, r.name, r.file, r.duration_ms, r.outcome, r.try_number, r.message";
/// The rows of the tests of build `$1` tried more than once.
const RETRIED: &str = "(r.group_key, r.test_key) IN (SELECT group_key, test_key FROM test_results WHERE build_id = $1 AND try_number > 0)";

fn outcome_of(s: &str) -> Result<Outcome> {
    Outcome::parse(s).ok_or_else(|| StoreError::Corrupt(format!("test outcome {s:?}")))
}

/// (row id, row) of one `SELECT {COLS}` row; `is_final` and `flaky` are the caller's to set.
fn decode(r: &AnyRow) -> Result<(i64, TestResultRow)> {
    let row = TestResultRow {
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
        flaky: false,
        is_final: false,
    };
    Ok((r.try_get("id")?, row))
}

/// A build's counts and its retried tests' rows (with their ids), as both views need them.
struct Tally {
    counts: Counts,
    /// Every row of the tests tried more than once, in upload order.
    retried: Vec<(i64, TestResultRow)>,
    retried_keys: HashSet<(String, String)>,
}

impl Store {
    /// Counts over every final try, or `None` when the build has no results: the rows of tests
    /// tried once are all final (an SQL count by outcome); the retried ones go through the rules.
    async fn tally(&self, build_id: i64, limits: TestViewLimits) -> Result<Option<(Tally, (Vec<usize>, Vec<usize>, Vec<usize>))>> {
        let by_outcome = sqlx::query("SELECT outcome, COUNT(*) AS n FROM test_results WHERE build_id = $1 GROUP BY outcome")
            .bind(build_id)
            .fetch_all(self.pool())
            .await?;
        if by_outcome.is_empty() {
            return Ok(None);
        }
        let mut retried = Vec::new();
        for r in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM test_results r JOIN jobs j ON j.id = r.job_id WHERE r.build_id = $1 AND {RETRIED} ORDER BY r.id"
        )))
        .bind(build_id)
        .fetch_all(self.pool())
        .await?
        {
            retried.push(decode(&r)?);
        }
        let rows: Vec<TestResultRow> = retried.iter().map(|r| r.1.clone()).collect();
        let (mut counts, failures, flaky, slowest) = pick(&rows, limits);
        // Every other row is the one and final try of its test.
        for r in &by_outcome {
            let (o, n) = (outcome_of(&r.try_get::<String, _>("outcome")?)?, r.try_get::<i64, _>("n")?.max(0) as u64);
            let once = n.saturating_sub(rows.iter().filter(|x| x.outcome == o).count() as u64);
            counts.total += once;
            *match o {
                Outcome::Passed => &mut counts.passed,
                Outcome::Failed => &mut counts.failed,
                Outcome::Errored => &mut counts.errored,
                Outcome::Skipped => &mut counts.skipped,
            } += once;
        }
        let retried_keys = rows.iter().map(|r| (r.group.clone(), r.key.clone())).collect();
        Ok(Some((Tally { counts, retried, retried_keys }, (failures, flaky, slowest))))
    }

    /// A build's test counts by final try, or `None` when it has no results.
    pub async fn build_test_counts(&self, build_id: i64) -> Result<Option<Counts>> {
        let none = TestViewLimits { failures: 0, flaky: 0, slowest: 0 };
        Ok(self.tally(build_id, none).await?.map(|(t, _)| t.counts))
    }

    /// Up to `limit` final tries of tests tried once, by `order` (with `cond`), skipping the
    /// retried tests (the query asks for as many more as there are retried rows).
    async fn once_tried(&self, build_id: i64, t: &Tally, cond: &str, order: &str, limit: usize) -> Result<Vec<(i64, TestResultRow)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM test_results r JOIN jobs j ON j.id = r.job_id WHERE r.build_id = $1{cond} ORDER BY {order} LIMIT $2"
        )))
        .bind(build_id)
        .bind((limit + t.retried.len()) as i64)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let (id, mut row) = decode(r)?;
            if !t.retried_keys.contains(&(row.group.clone(), row.key.clone())) {
                row.is_final = true;
                out.push((id, row));
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// A build's tests as a reader sees them, or `None` when it has no results yet.
    pub async fn build_test_overview(&self, build_id: i64, limits: TestViewLimits) -> Result<Option<TestOverview>> {
        let Some((t, (failures, flaky, slowest))) = self.tally(build_id, limits).await? else {
            return Ok(None);
        };
        let flaky_set: HashSet<usize> = flaky.iter().copied().collect();
        let at = |i: &usize| -> (i64, TestResultRow) {
            let (id, mut row) = t.retried[*i].clone();
            row.is_final = true;
            row.flaky = flaky_set.contains(i);
            (id, row)
        };
        let mut fail: Vec<(i64, TestResultRow)> = failures.iter().map(at).collect();
        if limits.failures > 0 {
            fail.extend(self.once_tried(build_id, &t, " AND r.outcome IN ('failed', 'errored')", "r.id", limits.failures).await?);
        }
        fail.sort_by_key(|f| f.0);
        let mut slow: Vec<(i64, TestResultRow)> = slowest.iter().map(at).collect();
        if limits.slowest > 0 {
            slow.extend(self.once_tried(build_id, &t, "", "r.duration_ms DESC, r.id", limits.slowest).await?);
        }
        slow.sort_by(|a, b| b.1.duration_ms.cmp(&a.1.duration_ms).then(a.0.cmp(&b.0)));
        // Messages stay only on the failures (the other lists never show them).
        let rows = |v: Vec<(i64, TestResultRow)>, limit: usize, message: bool| -> Vec<TestResultRow> {
            v.into_iter()
                .take(limit)
                .map(|(_, mut r)| {
                    if !message {
                        r.message = None;
                    }
                    r
                })
                .collect()
        };
        Ok(Some(TestOverview {
            counts: t.counts,
            failures: rows(fail, limits.failures, true),
            flaky: rows(flaky.iter().map(at).collect(), limits.flaky, false),
            slowest: rows(slow, limits.slowest, false),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, try_number: u32, outcome: Outcome, ms: u64) -> TestResultRow {
        TestResultRow {
            job_key: "suite 1/2".into(),
            group: "suite".into(),
            key: key.into(),
            suite: "pytest".into(),
            classname: "t".into(),
            name: key.into(),
            file: None,
            duration_ms: ms,
            outcome,
            message: None,
            try_number,
            flaky: false,
            is_final: false,
        }
    }

    #[test]
    fn counts_every_final_try_and_lists_only_up_to_the_limits() {
        use Outcome::*;
        let mut rows = vec![
            row("a", 0, Failed, 5),
            row("a", 1, Passed, 7), // flaky
            row("b", 0, Failed, 30),
            row("b", 1, Failed, 40), // still failing: only the last try counts
            row("c", 0, Errored, 1),
            row("d", 0, Skipped, 0),
        ];
        for n in 0..100 {
            rows.push(row(&format!("p{n}"), 0, Passed, n));
        }
        let limits = TestViewLimits { failures: 1, flaky: 5, slowest: 3 };
        let (c, failures, flaky, slowest) = pick(&rows, limits);
        assert_eq!((c.total, c.passed, c.failed, c.errored, c.skipped, c.flaky), (104, 101, 1, 1, 1, 1));
        assert_eq!(failures, vec![3], "the first final failure only (b's last try)");
        assert_eq!(flaky, vec![1]);
        let keys: Vec<&str> = slowest.iter().map(|&i| rows[i].key.as_str()).collect();
        assert_eq!(keys, vec!["p99", "p98", "p97"]);
        let (_, failures, _, _) = pick(&rows, TestViewLimits { failures: 10, flaky: 0, slowest: 0 });
        assert_eq!(failures, vec![3, 4], "failed and errored, in upload order");
    }

    /// The SQL-and-LIMIT view agrees with the rules applied to every row: retries, listed files
    /// of several cases, "no result" markers, ties in duration.
    #[tokio::test]
    async fn the_bounded_view_agrees_with_the_rules_over_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite:{}", dir.path().join("t.db").display())).await.unwrap();
        let p = store.create_project("p", "/repo", "main", ".kiln.yml", kiln_wire::api::Visibility::Public, &Default::default()).await.unwrap();
        let nb = crate::NewBuild {
            project_id: p.id,
            branch: "main".into(),
            requested_commit: None,
            trigger: "manual".into(),
            triggered_by: "t".into(),
            upstream_build: None,
            before_commit: None,
            changed_paths: None,
            with_secrets: false,
        };
        let b = store.create_build(&nb).await.unwrap();
        let limits = TestViewLimits { failures: 7, flaky: 3, slowest: 5 };
        assert!(store.build_test_overview(b.id, limits).await.unwrap().is_none());
        assert!(store.build_test_counts(b.id).await.unwrap().is_none());
        let mut jobs = Vec::new();
        for k in ["suite [1/2]", "suite [2/2]"] {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO jobs (build_id, job_key, name, status, spec, requires, needs, max_attempts, created_at) VALUES ($1, $2, 'suite', 'running', '{}', '{}', '[]', 1, 0) RETURNING id",
            )
            .bind(b.id)
            .bind(k)
            .fetch_one(store.pool())
            .await
            .unwrap();
            jobs.push(id);
        }
        // A small linear congruential generator: the same rows every run.
        let mut seed: u64 = 42;
        let mut rnd = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let outcomes = ["passed", "passed", "passed", "failed", "errored", "skipped"];
        // (group, key, cases) per test; a third are files of three cases, a few are markers.
        let mut tests = Vec::new();
        for i in 0..240 {
            let group = if i % 2 == 0 { "suite" } else { "other" };
            let cases: Vec<(String, String)> = match i % 9 {
                0 | 3 | 6 => (0..3).map(|c| (format!("m{i}"), format!("t{c}"))).collect(),
                4 => vec![(String::new(), format!("k{i}"))],
                _ => vec![(format!("m{i}"), format!("k{i}"))],
            };
            tests.push((group, format!("k{i}"), cases));
        }
        for try_number in 0..3i64 {
            for (i, (group, key, cases)) in tests.iter().enumerate() {
                // Every test runs once; a fifth are retried once, a tenth twice.
                let runs = match i % 10 {
                    1 => 3,
                    5 | 8 => 2,
                    _ => 1,
                };
                if try_number >= runs {
                    continue;
                }
                for (cls, name) in cases {
                    let outcome = outcomes[rnd(6) as usize];
                    let ms = (rnd(40) * 25) as i64; // ties on purpose
                    sqlx::query(
                        "INSERT INTO test_results (build_id, job_id, attempt, report, group_key, test_key, suite, classname, name, duration_ms, outcome, message, try_number, created_at) \
                         VALUES ($1, $2, 1, 'r.xml', $3, $4, 's', $5, $6, $7, $8, $9, $10, 0)",
                    )
                    .bind(b.id)
                    .bind(jobs[i % 2])
                    .bind(*group)
                    .bind(key)
                    .bind(cls)
                    .bind(name)
                    .bind(ms)
                    .bind(outcome)
                    .bind(format!("{outcome}: {key} {name} try {try_number}"))
                    .bind(try_number)
                    .execute(store.pool())
                    .await
                    .unwrap();
                }
            }
        }

        let all = store.build_test_results(b.id).await.unwrap();
        let (counts, failures, flaky, slowest) = pick(&all, limits);
        assert!(counts.flaky > 0 && counts.failed > limits.failures as u64 && counts.total > 300, "{counts:?}");
        let view = store.build_test_overview(b.id, limits).await.unwrap().unwrap();
        assert_eq!(view.counts, counts);
        assert_eq!(store.build_test_counts(b.id).await.unwrap(), Some(counts));
        let ids = |v: &[TestResultRow]| v.iter().map(|r| (r.group.clone(), r.key.clone(), r.name.clone(), r.try_number)).collect::<Vec<_>>();
        let want = |idx: &[usize]| idx.iter().map(|&i| (all[i].group.clone(), all[i].key.clone(), all[i].name.clone(), all[i].try_number)).collect::<Vec<_>>();
        assert_eq!(ids(&view.failures), want(&failures));
        assert_eq!(ids(&view.flaky), want(&flaky));
        assert_eq!(ids(&view.slowest), want(&slowest));
        assert!(view.failures.iter().all(|r| r.message.as_deref().is_some_and(|m| m.contains(&r.key))), "failures carry their messages");
        assert!(view.flaky.iter().all(|r| r.flaky && r.is_final));
        assert!(view.slowest.iter().all(|r| r.is_final && r.message.is_none()));
    }
}
