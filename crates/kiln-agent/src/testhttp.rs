//! The agent's test queue: the server's, over the agent protocol. Calls that cannot reach the
//! server are retried with backoff until they go through, the job is cancelled, or the server
//! says this attempt is stale.

use crate::client::{backoff, CallError, Client};
use crate::queue::{QueueError, TestQueue};
use kiln_wire::agent::{BatchDone, BatchDoneAck, TestBatch, TestListUpload};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

pub struct HttpQueue {
    client: Client,
    job_id: i64,
    attempt: i64,
    cancel: CancellationToken,
    /// The server refused a call as coming from a stale attempt.
    pub stale: AtomicBool,
}

impl HttpQueue {
    pub fn new(client: Client, job_id: i64, attempt: i64, cancel: CancellationToken) -> HttpQueue {
        HttpQueue { client, job_id, attempt, cancel, stale: AtomicBool::new(false) }
    }

    async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut failures = 0u32;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(CallError::Stale(e)) => {
                    self.stale.store(true, Ordering::SeqCst);
                    return Err(QueueError::Stale(e));
                }
                Err(CallError::Refused(e) | CallError::Unauthorized(e)) => return Err(QueueError::Refused(refusal(&e))),
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!("job {}: {what} failed ({e}); retrying", self.job_id);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => {}
                        _ = self.cancel.cancelled() => return Err(QueueError::Cancelled),
                    }
                }
            }
        }
    }
}

/// The server's words without the status line ("400 Bad Request: malformed …" → "malformed …").
fn refusal(msg: &str) -> String {
    if msg.starts_with("413") {
        return format!("the server refused a JUnit report as too large ({msg})");
    }
    match msg.split_once(": ") {
        Some((status, rest)) if status.starts_with(|c: char| c.is_ascii_digit()) => rest.to_string(),
        _ => msg.to_string(),
    }
}

impl TestQueue for HttpQueue {
    fn claim(&self) -> impl Future<Output = Result<TestBatch, QueueError>> + Send {
        self.retry("claiming tests", move || self.client.claim_tests(self.job_id, self.attempt))
    }

    async fn upload_list(&self, ids: Result<Vec<String>, String>, static_split: bool, changed_files: Vec<String>) -> Result<(), QueueError> {
        let (ids, error) = match ids {
            Ok(ids) => (ids, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let req = TestListUpload { attempt: self.attempt, ids, error, static_split, changed_files };
        self.retry("uploading the test list", || self.client.upload_test_list(self.job_id, &req)).await.map(|_| ())
    }

    async fn report(&self, batch: Option<i64>, path: &str, xml: Vec<u8>) -> Result<u32, QueueError> {
        let ack = self.retry("uploading a JUnit report", || self.client.upload_report(self.job_id, self.attempt, batch, path, xml.clone())).await?;
        Ok(ack.cases)
    }

    async fn batch_done(&self, batch: i64, exit_code: Option<i32>) -> Result<BatchDoneAck, QueueError> {
        let req = BatchDone { attempt: self.attempt, batch_id: batch, exit_code };
        self.retry("finishing a test batch", || self.client.finish_batch(self.job_id, &req)).await
    }
}
