//! Bounded views of a build's test results, for pages and notifications: counts over every
//! final try, and only the few rows a reader sees (failures with their messages, flaky tests,
//! the slowest). The message column is read only for the failures shown, so a build with
//! thousands of tests (and long tracebacks) stays cheap to show.

use crate::testresults::{case_try, TestResultRow};
use crate::{Result, Store, StoreError};
use kiln_core::junit::Outcome;
use kiln_core::testrun::{final_tries, Counts, Try};
use sqlx::Row;

/// How many rows of each list a view keeps.
#[derive(Debug, Clone, Copy)]
pub struct TestViewLimits {
    pub failures: usize,
    pub flaky: usize,
    pub slowest: usize,
}

/// What a reader sees of a build's tests. Rows carry `is_final` set; only `failures` carry
/// their messages.
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

/// Which rows (indexes into `rows`) each list takes, and the counts.
pub(crate) fn pick(rows: &[TestResultRow], limits: TestViewLimits) -> (Counts, Vec<usize>, Vec<usize>, Vec<usize>) {
    let tries: Vec<Try> = rows.iter().map(case_try).collect();
    let mut finals = final_tries(&tries);
    finals.sort_by_key(|f| f.0);
    let mut counts = Counts::default();
    let (mut failures, mut flaky) = (Vec::new(), Vec::new());
    for &(i, is_flaky) in &finals {
        counts.add(rows[i].outcome, is_flaky);
        if matches!(rows[i].outcome, Outcome::Failed | Outcome::Errored) && failures.len() < limits.failures {
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

impl Store {
    /// Every stored try of a build's cases without their messages (the bulk of the bytes),
    /// with their row ids, in upload order (`flaky` and `is_final` not yet worked out).
    pub(crate) async fn lean_test_rows(&self, build_id: i64) -> Result<(Vec<i64>, Vec<TestResultRow>)> {
        let rows = sqlx::query(
            "SELECT r.id, j.job_key, r.group_key, r.test_key, r.suite, r.classname, r.name, r.file, r.duration_ms, r.outcome, r.try_number \
             FROM test_results r JOIN jobs j ON j.id = r.job_id WHERE r.build_id = $1 ORDER BY r.id",
        )
        .bind(build_id)
        .fetch_all(self.pool())
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            ids.push(r.try_get::<i64, _>("id")?);
            let outcome: String = r.try_get("outcome")?;
            out.push(TestResultRow {
                job_key: r.try_get("job_key")?,
                group: r.try_get("group_key")?,
                key: r.try_get("test_key")?,
                suite: r.try_get("suite")?,
                classname: r.try_get("classname")?,
                name: r.try_get("name")?,
                file: r.try_get("file")?,
                duration_ms: r.try_get::<i64, _>("duration_ms")?.max(0) as u64,
                outcome: Outcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt(format!("test outcome {outcome:?}")))?,
                message: None,
                try_number: r.try_get::<i64, _>("try_number")?.max(0) as u32,
                flaky: false,
                is_final: false,
            });
        }
        Ok((ids, out))
    }

    /// A build's tests as a reader sees them, or `None` when it has no results yet.
    pub async fn build_test_overview(&self, build_id: i64, limits: TestViewLimits) -> Result<Option<TestOverview>> {
        let (ids, mut out) = self.lean_test_rows(build_id).await?;
        if out.is_empty() {
            return Ok(None);
        }
        let (counts, failures, flaky, slowest) = pick(&out, limits);
        for &i in failures.iter().chain(&flaky).chain(&slowest) {
            out[i].is_final = true;
        }
        for &i in &flaky {
            out[i].flaky = true;
        }
        let mut failed: Vec<TestResultRow> = failures.iter().map(|&i| out[i].clone()).collect();
        // Messages only for the failures shown: one query, their ids bound.
        if !failed.is_empty() {
            let marks: Vec<String> = (0..failures.len()).map(|n| format!("${}", n + 1)).collect();
            let sql = format!("SELECT id, message FROM test_results WHERE id IN ({})", marks.join(", "));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in &failures {
                q = q.bind(ids[i]);
            }
            let mut msgs = std::collections::HashMap::new();
            for r in q.fetch_all(self.pool()).await? {
                msgs.insert(r.try_get::<i64, _>("id")?, r.try_get::<Option<String>, _>("message")?);
            }
            for (row, &i) in failed.iter_mut().zip(&failures) {
                row.message = msgs.remove(&ids[i]).flatten();
            }
        }
        Ok(Some(TestOverview {
            counts,
            failures: failed,
            flaky: flaky.iter().map(|&i| out[i].clone()).collect(),
            slowest: slowest.iter().map(|&i| out[i].clone()).collect(),
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
}
