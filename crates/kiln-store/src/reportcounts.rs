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
