//! What a job attempt has reported so far (for the caps on JUnit reports and cases).

use crate::{Result, Store};

impl Store {
    /// (distinct reports other than `except`, test cases in them) stored for a job attempt.
    pub async fn report_counts(&self, job_id: i64, attempt: i64, except: &str) -> Result<(i64, i64)> {
        let row: (i64, i64) = sqlx::query_as("SELECT COUNT(DISTINCT report), COUNT(*) FROM test_results WHERE job_id = $1 AND attempt = $2 AND report <> $3")
            .bind(job_id)
            .bind(attempt)
            .bind(except)
            .fetch_one(self.pool())
            .await?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[tokio::test]
    async fn counts_other_reports_and_their_cases() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite:{}", dir.path().join("t.db").display())).await.unwrap();
        for (report, n) in [("a.xml", 3), ("b.xml", 2)] {
            for i in 0..n {
                sqlx::query(
                    "INSERT INTO test_results (build_id, job_id, attempt, report, group_key, test_key, suite, classname, name, duration_ms, outcome, created_at) \
                     VALUES (1, 7, 1, $1, 'g', $2, 's', 'c', $2, 1, 'passed', 0)",
                )
                .bind(report)
                .bind(format!("t{i}"))
                .execute(store.pool())
                .await
                .unwrap();
            }
        }
        assert_eq!(store.report_counts(7, 1, "new.xml").await.unwrap(), (2, 5));
        assert_eq!(store.report_counts(7, 1, "a.xml").await.unwrap(), (1, 2), "a report sent again replaces itself");
        assert_eq!(store.report_counts(7, 2, "a.xml").await.unwrap(), (0, 0));
    }
}
