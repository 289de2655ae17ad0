//! The port a job's shard loop works through: where it claims batches and sends lists,
//! reports and results. `testhttp.rs` implements it over the agent protocol, `localqueue.rs`
//! in process for `kiln run`.

use kiln_wire::agent::{BatchDoneAck, TestBatch};
use std::future::Future;

/// Why a queue call failed, as the shard loop must tell apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// This attempt lost its job: stop, report nothing.
    #[error("this attempt is no longer current: {0}")]
    Stale(String),
    /// The report was refused (malformed JUnit, too large): the job ends errored with this.
    #[error("{0}")]
    Refused(String),
    /// Cancelled while waiting for the server.
    #[error("cancelled")]
    Cancelled,
}

/// Where a shard gets its work and puts its results: the server (agent) or a local queue.
pub trait TestQueue: Send + Sync {
    fn claim(&self) -> impl Future<Output = Result<TestBatch, QueueError>> + Send;
    /// Upload the listed ids (or the files of `split: files`), or why there are none, with the
    /// files the commit changed (their tests go first).
    fn upload_list(&self, ids: Result<Vec<String>, String>, static_split: bool, changed_files: Vec<String>) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// One JUnit report of a batch (or, `None`, of a plain job's steps).
    fn report(&self, batch: Option<i64>, path: &str, xml: Vec<u8>) -> impl Future<Output = Result<u32, QueueError>> + Send;
    fn batch_done(&self, batch: i64, exit_code: Option<i32>) -> impl Future<Output = Result<BatchDoneAck, QueueError>> + Send;
}
