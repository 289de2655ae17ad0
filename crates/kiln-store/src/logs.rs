//! Job logs, kept per attempt and appended by byte offset, so a retried upload
//! neither loses nor duplicates a line and two attempts never mix. The bytes
//! live in files (`logfiles.rs`); the database keeps each attempt's length.

use crate::{AgentAttempt, LogFiles, LogFrames, Result, Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt: i64,
    pub agent: String,
    pub status: kiln_core::state::JobStatus,
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

/// Hold an attempt's row while its log grows, so appends to one attempt take turns (PostgreSQL: a
/// row lock; on SQLite the write lock every writer takes already does).
pub(crate) async fn lock_attempt(tx: &mut sqlx::Transaction<'_, sqlx::Any>, backend: crate::Backend, job_id: i64, attempt: i64) -> Result<()> {
    if backend == crate::Backend::Postgres {
        sqlx::query("UPDATE attempts SET log_len = log_len WHERE job_id = $1 AND attempt = $2").bind(job_id).bind(attempt).execute(&mut **tx).await?;
    }
    Ok(())
}

/// What an append does, given what the attempt holds ([`Store::plan_append`]).
pub(crate) enum AppendPlan {
    /// Every byte is held already: the log is this long.
    Held(u64),
    /// Write from `base` (what is held); the log is then `end` long.
    Write { base: u64, end: u64 },
}

/// A log chunk as an agent sends it.
pub(crate) enum LogChunk<'a> {
    Raw(&'a [u8]),
    /// Checked zstd frames.
    Frames(LogFrames),
}

impl LogChunk<'_> {
    /// Raw bytes it carries.
    pub(crate) fn len(&self) -> u64 {
        match self {
            LogChunk::Raw(d) => d.len() as u64,
            LogChunk::Frames(f) => f.raw_len(),
        }
    }
}

/// What [`Store::move_old_logs`] did: attempts moved into the files, and attempts kept back
/// in their rows (each named in a warning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OldLogs {
    pub moved: u64,
    pub kept: u64,
}

/// A slice of a log read back.
#[derive(Debug, Clone)]
pub struct LogRead {
    pub data: Vec<u8>,
    pub next_offset: u64,
    /// Bytes of the attempt's log accepted so far.
    pub len: u64,
}

pub(crate) async fn attempts_of(store: &Store, job_id: i64) -> Result<Vec<AttemptRow>> {
    let rows = sqlx::query(
        "SELECT attempt, agent_name, status, reason, log_len, started_at, finished_at FROM attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(job_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(attempt_row).collect()
}

fn attempt_row(r: &sqlx::any::AnyRow) -> Result<AttemptRow> {
    Ok(AttemptRow {
        attempt: r.try_get("attempt")?,
        agent: r.try_get("agent_name")?,
        status: crate::rows::job_status(r, "status")?,
        reason: r.try_get("reason")?,
        log_len: r.try_get("log_len")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// Every attempt of every job of a build, by job id, in one query (a build page
/// would otherwise ask once per job).
pub(crate) async fn attempts_of_build(store: &Store, build_id: i64) -> Result<std::collections::HashMap<i64, Vec<AttemptRow>>> {
    let rows = sqlx::query(
        "SELECT a.job_id, a.attempt, a.agent_name, a.status, a.reason, a.log_len, a.started_at, a.finished_at \
         FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.build_id = $1 ORDER BY a.job_id, a.attempt",
    )
    .bind(build_id)
    .fetch_all(store.pool())
    .await?;
    let mut out: std::collections::HashMap<i64, Vec<AttemptRow>> = std::collections::HashMap::new();
    for r in &rows {
        out.entry(r.try_get("job_id")?).or_default().push(attempt_row(r)?);
    }
    Ok(out)
}

impl Store {
    /// The one way log bytes enter the store. Append `data`, which starts at
    /// byte `offset` of the attempt's log: bytes the server already holds are
    /// skipped; a chunk that would leave a gap is refused with the length the
    /// server holds. Only the agent that ran the attempt learns its length, and
    /// only while it holds the job may it add bytes.
    /// The bytes go to the log files (`logfiles.rs`); the attempt's row keeps
    /// the accepted length, updated last, inside the transaction that holds the
    /// row (so appends to one attempt take turns, across servers too).
    pub async fn append_log(&self, by: AgentAttempt<'_>, offset: u64, data: &[u8]) -> Result<AppendOutcome> {
        self.append_chunk(by, offset, LogChunk::Raw(data)).await
    }

    /// [`Store::append_log`] for zstd frames the agent compressed (checked: `logframes.rs`):
    /// same offsets, fencing and skipping; frames that start where the files end are kept as
    /// they came (`LogFiles::append_frames`).
    pub async fn append_log_frames(&self, by: AgentAttempt<'_>, offset: u64, frames: LogFrames) -> Result<AppendOutcome> {
        self.append_chunk(by, offset, LogChunk::Frames(frames)).await
    }

    async fn append_chunk(&self, by: AgentAttempt<'_>, offset: u64, chunk: LogChunk<'_>) -> Result<AppendOutcome> {
        let AgentAttempt { job_id, attempt, agent } = by;
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        lock_attempt(&mut tx, self.backend(), job_id, attempt).await?;
        // The attempt's length and whether the agent holds it (`queue::held_by`), in one read.
        let row = sqlx::query(
            "SELECT a.log_len, CAST(CASE WHEN j.status = 'running' AND j.attempt = a.attempt AND j.agent_name = a.agent_name THEN 1 ELSE 0 END AS BIGINT) AS held \
             FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE a.job_id = $1 AND a.attempt = $2 AND a.agent_name = $3",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(agent)
        .fetch_optional(&mut *tx)
        .await?;
        // Not held: `held_by` says why (another agent's, or stale).
        let refused = |tx| async move {
            crate::hold::held_by(tx, by).await?;
            Err(StoreError::Stale { job_id, attempt })
        };
        let Some(row) = row else { return refused(&mut tx).await };
        let (len, held): (i64, i64) = (row.try_get("log_len")?, row.try_get("held")?);
        let end = match self.plan_append(job_id, attempt, len as u64, offset, chunk.len())? {
            AppendPlan::Held(n) => return Ok(AppendOutcome::Duplicate(n)),
            AppendPlan::Write { .. } if held == 0 => return refused(&mut tx).await,
            AppendPlan::Write { base, end } => {
                self.write_chunk(job_id, attempt, offset, base, chunk).await?;
                end
            }
        };
        sqlx::query("UPDATE attempts SET log_len = $1 WHERE job_id = $2 AND attempt = $3")
            .bind(end as i64)
            .bind(job_id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AppendOutcome::Stored(end))
    }

    /// Where a chunk of `chunk_len` bytes at `offset` goes in an attempt whose row says `len`
    /// bytes are held: nowhere (all held already), or written from `base`; a gap is refused.
    pub(crate) fn plan_append(&self, job_id: i64, attempt: i64, len: u64, offset: u64, chunk_len: u64) -> Result<AppendPlan> {
        // What this server's files hold. Less than the database says when another server wrote
        // the rest into a files folder of its own (servers on one database should share one:
        // docs/storage.md): the agent, which keeps its log until the job ends, is asked for
        // those bytes again, so nothing is lost either way.
        let have = self.logs.len(job_id, attempt).map_err(|e| StoreError::Corrupt(format!("failed to read the log of job {job_id}: {e}")))?;
        if have < len {
            tracing::warn!("job {job_id} attempt {attempt}: this server's log files hold {have} of {len} bytes (is the files folder shared by every server?): asking the agent again");
        }
        let base = len.min(have);
        let end = offset + chunk_len;
        if end <= base {
            return Ok(AppendPlan::Held(len));
        }
        if offset > base {
            return Err(StoreError::Gap { expected: base, got: offset });
        }
        Ok(AppendPlan::Write { base, end: end.max(len) })
    }

    /// Write the bytes of `chunk` (at `offset`) from `base` on into the log files.
    pub(crate) async fn write_chunk(&self, job_id: i64, attempt: i64, offset: u64, base: u64, chunk: LogChunk<'_>) -> Result<()> {
        let files = self.logs.clone();
        let skip = (base - offset) as usize;
        let write: Box<dyn FnOnce() -> std::io::Result<()> + Send> = match chunk {
            // Frames starting before `base` are decompressed one at a time and their held bytes skipped.
            LogChunk::Frames(frames) => Box::new(move || files.append_frames(job_id, attempt, offset, &frames)),
            LogChunk::Raw(data) => {
                let fresh = data[skip..].to_vec();
                Box::new(move || files.append(job_id, attempt, base, &fresh))
            }
        };
        tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| StoreError::Corrupt(format!("log writer failed: {e}")))?
            .map_err(|e| StoreError::Corrupt(format!("failed to write the log of job {job_id}: {e}")))
    }

    /// Logs kept before logs moved to files (rows of `log_chunks`, byte offset `pos`) move into
    /// the files, so an upgraded server shows old builds' logs. Attempt by attempt, each in a write
    /// transaction that holds the attempt's row (as appends do): the rows are deleted only once
    /// the files hold their bytes, and a move cut short starts over where the files stop (bytes
    /// they already hold are skipped), so running it again is harmless. An attempt that cannot
    /// be moved keeps its rows and is named in a warning; the others move all the same.
    pub async fn move_old_logs(&self) -> Result<OldLogs> {
        let attempts: Vec<(i64, i64)> = sqlx::query_as("SELECT DISTINCT job_id, attempt FROM log_chunks ORDER BY job_id, attempt").fetch_all(self.pool()).await?;
        let mut out = OldLogs::default();
        for (job_id, attempt) in attempts {
            match self.move_old_log(job_id, attempt).await {
                Ok(()) => out.moved += 1,
                Err(e) => {
                    let build: Option<i64> = sqlx::query_scalar("SELECT build_id FROM jobs WHERE id = $1").bind(job_id).fetch_optional(self.pool()).await.ok().flatten();
                    let build = build.map_or("an unknown build".to_string(), |b| format!("build {b}"));
                    tracing::warn!(
                        "the old log of {build} job {job_id} attempt {attempt} was not moved into the log files in {} ({e}); its rows stay in the log_chunks table, \
                         unreadable until moved: fix the cause (the log folder's permissions, free space) and restart the server to move it",
                        self.logs.root().display()
                    );
                    out.kept += 1;
                }
            }
        }
        Ok(out)
    }

    /// [`Store::move_old_logs`] for one attempt.
    async fn move_old_log(&self, job_id: i64, attempt: i64) -> Result<()> {
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        lock_attempt(&mut tx, self.backend(), job_id, attempt).await?;
        let mut after = -1i64;
        loop {
            // A few rows at a time: memory stays bounded whatever the log's size.
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT pos, data FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND pos > $3 ORDER BY pos LIMIT 16")
                .bind(job_id)
                .bind(attempt)
                .bind(after)
                .fetch_all(&mut *tx)
                .await?;
            let Some(last) = rows.last().map(|r| r.0) else { break };
            after = last;
            let files = self.logs.clone();
            tokio::task::spawn_blocking(move || rows.iter().try_for_each(|(pos, data)| files.append(job_id, attempt, *pos as u64, data)))
                .await
                .map_err(|e| StoreError::Corrupt(format!("log writer failed: {e}")))?
                .map_err(|e| StoreError::Corrupt(format!("failed to write its files: {e}")))?;
        }
        // On disk before the rows, the only other copy of these bytes, go.
        let files = self.logs.clone();
        tokio::task::spawn_blocking(move || files.sync(job_id, attempt))
            .await
            .map_err(|e| StoreError::Corrupt(format!("log writer failed: {e}")))?
            .map_err(|e| StoreError::Corrupt(format!("failed to flush its files: {e}")))?;
        sqlx::query("DELETE FROM log_chunks WHERE job_id = $1 AND attempt = $2").bind(job_id).bind(attempt).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Bytes of an attempt's log the store has accepted (0 for an unknown attempt).
    pub async fn log_len(&self, job_id: i64, attempt: i64) -> Result<u64> {
        let len: Option<i64> = sqlx::query_scalar("SELECT log_len FROM attempts WHERE job_id = $1 AND attempt = $2")
            .bind(job_id)
            .bind(attempt)
            .fetch_optional(self.pool())
            .await?;
        Ok(len.unwrap_or(0).max(0) as u64)
    }

    /// The log files (for streamed reads and searches; see `logfiles.rs`).
    pub fn log_files(&self) -> &LogFiles {
        &self.logs
    }

    /// Read an attempt's log from `offset`, at most `max` bytes.
    pub async fn read_log(&self, job_id: i64, attempt: i64, offset: u64, max: usize) -> Result<LogRead> {
        let end = self.log_len(job_id, attempt).await?;
        let files = self.logs.clone();
        let data = tokio::task::spawn_blocking(move || files.read(job_id, attempt, offset, max, end))
            .await
            .map_err(|e| StoreError::Corrupt(format!("log reader failed: {e}")))?
            .map_err(|e| StoreError::Corrupt(format!("failed to read the log of job {job_id}: {e}")))?;
        let next_offset = offset.max(offset + data.len() as u64);
        Ok(LogRead { data, next_offset, len: end })
    }
}
