//! Job logs, kept per attempt as chunks keyed by byte offset, so a retried
//! upload neither loses nor duplicates a line and two attempts never mix.

use crate::{AgentAttempt, Result, Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt: i64,
    pub agent: String,
    pub status: String,
    pub reason: Option<String>,
    pub log_len: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// What the store did with a log chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored; the attempt's log is now this long.
    Stored(u64),
    /// Already held (a retried upload); the attempt's log is this long.
    Duplicate(u64),
}

impl AppendOutcome {
    /// Bytes of the attempt's log the server holds now.
    pub fn held(self) -> u64 {
        match self {
            AppendOutcome::Stored(n) | AppendOutcome::Duplicate(n) => n,
        }
    }
}

/// A slice of a log read back.
#[derive(Debug, Clone)]
pub struct LogRead {
    pub data: Vec<u8>,
    pub next_offset: u64,
}

pub(crate) async fn attempts_of(store: &Store, job_id: i64) -> Result<Vec<AttemptRow>> {
    let rows = sqlx::query(
        "SELECT attempt, agent_name, status, reason, log_len, started_at, finished_at FROM attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(job_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AttemptRow {
                attempt: r.try_get("attempt")?,
                agent: r.try_get("agent_name")?,
                status: r.try_get("status")?,
                reason: r.try_get("reason")?,
                log_len: r.try_get("log_len")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
            })
        })
        .collect()
}

impl Store {
    /// Append `data`, which starts at byte `offset` of the attempt's log.
    /// Bytes the server already holds are skipped; a chunk that would leave a
    /// gap is refused with the length the server holds. Only the agent that ran
    /// the attempt learns its length, and only while it holds the job may it add bytes.
    pub async fn append_log(&self, by: AgentAttempt<'_>, offset: u64, data: &[u8]) -> Result<AppendOutcome> {
        let AgentAttempt { job_id, attempt, agent } = by;
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        let len: Option<i64> = sqlx::query_scalar("SELECT log_len FROM attempts WHERE job_id = $1 AND attempt = $2 AND agent_name = $3")
            .bind(job_id)
            .bind(attempt)
            .bind(agent)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(len) = len else {
            crate::queue::held_by(&mut tx, by).await?;
            return Err(StoreError::Stale { job_id, attempt });
        };
        let len = len as u64;
        let end = offset + data.len() as u64;
        if end <= len {
            return Ok(AppendOutcome::Duplicate(len));
        }
        if offset > len {
            return Err(StoreError::Gap { expected: len, got: offset });
        }
        crate::queue::held_by(&mut tx, by).await?;
        let fresh = &data[(len - offset) as usize..];
        sqlx::query("INSERT INTO log_chunks (job_id, attempt, pos, data) VALUES ($1, $2, $3, $4)")
            .bind(job_id)
            .bind(attempt)
            .bind(len as i64)
            .bind(fresh.to_vec())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE attempts SET log_len = $1 WHERE job_id = $2 AND attempt = $3")
            .bind(end as i64)
            .bind(job_id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AppendOutcome::Stored(end))
    }

    /// Read an attempt's log from `offset`, at most about `max` bytes.
    pub async fn read_log(&self, job_id: i64, attempt: i64, offset: u64, max: usize) -> Result<LogRead> {
        // The chunk holding `offset` starts at or before it.
        let start: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(pos) FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND pos <= $3",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(offset as i64)
        .fetch_one(self.pool())
        .await?;
        // Only the chunks that begin before `offset + max`: a read costs what it returns.
        let rows = sqlx::query("SELECT pos, data FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND pos >= $3 AND pos < $4 ORDER BY pos")
            .bind(job_id)
            .bind(attempt)
            .bind(start.unwrap_or(0))
            .bind(offset.saturating_add(max.max(1) as u64).min(i64::MAX as u64) as i64)
            .fetch_all(self.pool())
            .await?;
        let mut data = Vec::new();
        let mut next = offset;
        for r in rows {
            let pos = r.try_get::<i64, _>("pos")? as u64;
            let chunk: Vec<u8> = r.try_get("data")?;
            let end = pos + chunk.len() as u64;
            if end <= next || pos > next {
                continue;
            }
            data.extend_from_slice(&chunk[(next - pos) as usize..]);
            next = end;
            if data.len() >= max {
                break;
            }
        }
        Ok(LogRead { data, next_offset: next })
    }
}
