//! Artifacts: one row per file a job kept (name, size, SHA-256, the attempt that
//! sent it). The bytes live in files (`FILES/artifacts/<job>/<name>`, written by
//! the server's `artifacts.rs`); a row is added only once its file is complete.

use crate::{now_ms, AgentAttempt, Result, Store};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct ArtifactRow {
    pub id: i64,
    pub build_id: i64,
    pub job_id: i64,
    pub job_key: String,
    pub attempt: i64,
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
}

const COLS: &str = "a.id, a.build_id, a.job_id, j.job_key, a.attempt, a.name, a.size, a.sha256, a.created_at";

fn row(r: &sqlx::any::AnyRow) -> Result<ArtifactRow> {
    Ok(ArtifactRow {
        id: r.try_get("id")?,
        build_id: r.try_get("build_id")?,
        job_id: r.try_get("job_id")?,
        job_key: r.try_get("job_key")?,
        attempt: r.try_get("attempt")?,
        name: r.try_get("name")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Record a complete artifact from the job's current, running attempt, sent by
    /// the agent holding it (fenced like log chunks: `StoreError::NotHolder` for
    /// another agent, `Stale` for an old attempt); a file of the same name is replaced.
    pub async fn record_artifact(&self, by: AgentAttempt<'_>, name: &str, size: u64, sha256: &str) -> Result<()> {
        let AgentAttempt { job_id, attempt, .. } = by;
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        // Only the agent holding the job's current, running attempt records its files.
        let build_id = crate::hold::held_by(&mut tx, by).await?;
        sqlx::query("DELETE FROM artifacts WHERE job_id = $1 AND name = $2").bind(job_id).bind(name).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO artifacts (build_id, job_id, attempt, name, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(build_id)
            .bind(job_id)
            .bind(attempt)
            .bind(name)
            .bind(size as i64)
            .bind(sha256)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A build's artifacts, by job then name.
    pub async fn artifacts_of_build(&self, build_id: i64) -> Result<Vec<ArtifactRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM artifacts a JOIN jobs j ON j.id = a.job_id WHERE a.build_id = $1 ORDER BY j.job_key, a.name")))
            .bind(build_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(row).collect()
    }

    /// Bytes of artifacts a job holds (other than `except`, a name about to be replaced).
    pub async fn artifact_bytes_of_job(&self, job_id: i64, except: &str) -> Result<u64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM artifacts WHERE job_id = $1 AND name <> $2")
            .bind(job_id)
            .bind(except)
            .fetch_one(self.pool())
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Forget a job's artifacts (retention removes the files).
    pub async fn delete_artifacts_of_job(&self, job_id: i64) -> Result<u64> {
        let _w = self.write_turn().await;
        let n = sqlx::query("DELETE FROM artifacts WHERE job_id = $1").bind(job_id).execute(self.pool()).await?;
        Ok(n.rows_affected())
    }
}
