//! kiln's persistence: one `Store` type over SQLite (the embedded default) or
//! PostgreSQL, through the same portable SQL (`$1` placeholders, epoch-millisecond
//! timestamps, JSON as TEXT, booleans as 0/1).
//!
//! ```text
//!   projects ──< builds ──< jobs ──< attempts (log_len) ─ log files (logfiles.rs)
//!                                       ▲
//!   agents ── claim (UPDATE … WHERE status='queued') ─┘  lease_until renewed by heartbeats
//! ```
//!
//! Nothing lives only in memory: a restarted server reads builds, queued jobs and
//! leases back from here.

mod agents;
mod artifacts;
mod builds;
mod enrolments;
#[cfg(test)]
mod identity_tests;
mod deliveries;
mod error;
mod logfiles;
mod logframes;
mod idle;
mod copy;
mod gauges;
mod hold;
mod leases;
mod logs;
mod members;
mod migrate;
mod notify;
mod pages;
mod projects;
mod queue;
mod quarantine;
mod retention;
mod reportcounts;
mod retries;
mod rows;
mod sealed;
mod testqueue;
mod testresults;
mod testview;
mod tokens;
mod uploads;
mod users;

pub use agents::{AgentRow, AgentSpec, EnrolWith, Standing};
pub use artifacts::ArtifactRow;
pub use enrolments::EnrolmentRow;
pub use builds::{BuildFilter, BuildRow, NewBuild};
pub use copy::{CopiedTable, FilesNeeded};
pub use error::StoreError;
pub use logfiles::{dir_size, LogFiles, LogMatch, LogReader, SearchResult};
pub use logframes::{DeclaredFrames, LogFrames};
pub use logs::{AppendOutcome, AttemptRow, LogRead, OldLogs};
pub use notify::{DeliveryOutcome, NewNotification, NotificationRow, Unnotified};
pub use projects::ProjectRow;
pub use retention::DiskUse;
pub use sealed::{is_sealed, SecretKey};

/// The kv keys under which the server records each project's pipeline triggers: JSON that
/// names each upstream project in double quotes (`{"after":["a"],…}`). Finishing a job tells
/// whether any of them names the job's project ([`FinishOutcome::named_upstream`]).
pub const TRIGGERS_PREFIX: &str = "meta:";
pub use hold::AgentAttempt;
pub use queue::{Claimed, Demand, CLAIM_HORIZON, FinishOutcome, JobRow, LeaseExpiry, NewJob};
pub use quarantine::{QuarantineChangeRow, QuarantinedRow};
pub use testqueue::{BatchSummary, TestClaim, TestGroup};
pub use testresults::{TestResultRow, TestStatsRow};
pub use testview::{TestOverview, TestViewLimits};
pub use tokens::TokenRow;
pub use pages::{QueueCounts, QueuedJob, RunningJobView};
pub use uploads::UploadRow;
pub use users::{SessionRow, TokenInfo, UserRow};

use sqlx::any::{AnyPoolOptions, AnyConnectOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The one handle to kiln's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL it was opened with (PostgreSQL listeners open their own connection).
    url: String,
    /// SQLite allows one writer: writes queue here instead of failing with "database is locked".
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Where log bytes live (`logfiles.rs`).
    logs: LogFiles,
    /// The key that seals project secrets (set once at start; see `use_secret_key`).
    secret_key: Arc<std::sync::OnceLock<SecretKey>>,
}

/// Milliseconds since the Unix epoch: the store's only time format.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A random secret as hex (for tokens).
pub fn random_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// The first key past every key that starts with `prefix` (a non-empty ASCII prefix, its last
/// character's successor): `k >= prefix AND k < prefix_end(prefix)` reads them through the key's index.
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    let last = end.pop().expect("a prefix");
    end.push(char::from_u32(last as u32 + 1).expect("an ASCII prefix"));
    end
}

/// SHA-256 of a token, as stored: tokens themselves are never kept.
pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Open (creating if needed) the database at `url` — `sqlite:PATH` or
    /// `postgres://…` — and bring its schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(|e| StoreError::Open(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 3 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            // A SQLite connection is a file this process has open: no network that could have
            // dropped it, so it is not pinged (a round trip to its worker thread) at every
            // acquire. PostgreSQL's are, and a dead one is replaced before it is handed out.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                        // 1 MiB of page cache per connection (SQLite's default is 2 MiB): the OS caches the file too.
                        conn.execute("PRAGMA cache_size=-1024").await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                        // Deleted and overwritten content is zeroed, not left in free space.
                        conn.execute("PRAGMA secure_delete=ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        // Logs default to a folder beside a SQLite file; a server names its own (`with_log_dir`).
        let logs = LogFiles::new(match backend {
            Backend::Sqlite => std::path::Path::new(url.trim_start_matches("sqlite:").split('?').next().unwrap_or("")).parent().map_or_else(|| "logs".into(), |d| d.join("logs")),
            Backend::Postgres => std::path::PathBuf::from("logs"),
        });
        let store = Store { pool, backend, url: url.clone(), writer: Arc::new(tokio::sync::Mutex::new(())), logs, secret_key: Default::default() };
        migrate::run(&store).await?;
        Ok(store)
    }

    /// Keep log bytes under `dir` (several servers on one PostgreSQL database share it).
    pub fn with_log_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Store {
        self.logs = LogFiles::new(dir);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Take the write turn (SQLite has one writer; PostgreSQL needs no turn).
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.writer.lock().await),
            Backend::Postgres => None,
        }
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so it waits its turn instead of failing with
    /// "database is locked" when it would upgrade from reading to writing.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// A small key/value table for service state (poller positions, cron ticks).
    /// (Each project's recorded pipeline triggers are under [`TRIGGERS_PREFIX`].)
    pub async fn kv_get(&self, key: &str) -> Result<Option<String>> {
        let v: Option<(String,)> = sqlx::query_as("SELECT v FROM kv WHERE k = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.map(|(v,)| v))
    }

    /// Every key starting with `prefix` (non-empty, ASCII), with its value: a range of the key's index.
    pub async fn kv_prefixed(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT k, v FROM kv WHERE k >= $1 AND k < $2 ORDER BY k").bind(prefix).bind(prefix_end(prefix)).fetch_all(&self.pool).await?)
    }

    /// Compare and set: change `key` from `old` (None: absent) to `new`. True if
    /// this call made the change — of several servers, exactly one wins.
    pub async fn kv_cas(&self, key: &str, old: Option<&str>, new: &str) -> Result<bool> {
        let _w = self.write_turn().await;
        let n = match old {
            None => sqlx::query("INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING").bind(key).bind(new).execute(&self.pool).await?,
            Some(o) => sqlx::query("UPDATE kv SET v = $1 WHERE k = $2 AND v = $3").bind(new).bind(key).bind(o).execute(&self.pool).await?,
        };
        Ok(n.rows_affected() == 1)
    }

    /// PostgreSQL: tell every server sharing the database (`wake`: a job may be
    /// claimable; `control`: an agent may have something to stop). SQLite: nothing.
    pub async fn publish(&self, what: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify('kiln', $1)").bind(what).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// PostgreSQL: listen to what other servers publish. None on SQLite (one server).
    pub async fn subscribe(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
        l.listen("kiln").await?;
        Ok(Some(l))
    }

    pub async fn kv_set(&self, key: &str, value: &str) -> Result<()> {
        let _w = self.write_turn().await;
        sqlx::query("INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
