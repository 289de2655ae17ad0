//! The store's errors: what callers must tell apart (not found, conflict, stale attempt).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open the database {0}")]
    Open(String),
    #[error("failed to migrate the database: {0}")]
    Migrate(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A write from an attempt that is no longer the job's current one (fencing).
    #[error("attempt {attempt} of job {job_id} is no longer current")]
    Stale { job_id: i64, attempt: i64 },
    /// A write from an agent about a job attempt that another agent holds.
    #[error("agent {agent:?} does not hold job {job_id}")]
    NotHolder { job_id: i64, agent: String },
    /// Refused for who is asking (an enrolment's limits).
    #[error("{0}")]
    Refused(String),
    /// A log chunk that starts past what the server holds; the agent resends from `expected`.
    #[error("log chunk at offset {got} leaves a gap: the server holds {expected} bytes")]
    Gap { expected: u64, got: u64 },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Sealed project secrets and no key (or the wrong one) to open them.
    #[error("{0}")]
    SecretKey(String),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}
