//! The agent's HTTP client for the agent protocol, with retries, backoff and jitter.

use kiln_wire::agent::*;
use rand::Rng;
use reqwest::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why a call failed, as the agent must tell apart.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server refused the write: this attempt is no longer current (fencing).
    #[error("stale attempt: {0}")]
    Stale(String),
    /// The log chunk left a gap; resend from `expected`.
    #[error("log gap: server holds {0} bytes")]
    Gap(u64),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Any other answer that retrying will not fix.
    #[error("{0}")]
    Refused(String),
    /// The server could not be reached (or answered 5xx): retry later.
    #[error("server unreachable: {0}")]
    Unreachable(String),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    servers: std::sync::Arc<Servers>,
    token: String,
}

/// The servers an agent may talk to (they share one database): it uses one at a time, the
/// first that answers, and moves to the next when a call cannot reach the one it uses.
struct Servers {
    bases: Vec<String>,
    current: AtomicUsize,
}

impl Servers {
    fn parse(list: &str) -> Servers {
        let bases: Vec<String> = list.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
        Servers { bases, current: AtomicUsize::new(0) }
    }

    /// Which server a URL goes to.
    fn index_of(&self, url: &str) -> Option<usize> {
        self.bases.iter().position(|b| url.starts_with(b.as_str()))
    }

    fn at(&self, i: usize) -> &str {
        self.bases.get(i % self.bases.len().max(1)).map(String::as_str).unwrap_or("")
    }

    /// A call through server `i` could not reach it: move on (once, however many calls failed).
    fn failed(&self, i: usize) {
        if self.bases.len() > 1 && self.current.compare_exchange(i, (i + 1) % self.bases.len(), Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            tracing::warn!("server {} does not answer: moving to {}", self.at(i), self.at(i + 1));
        }
    }
}

/// Exponential backoff with full jitter, capped.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 5000u64;
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(cap);
    Duration::from_millis(rand::rng().random_range(base / 2..=base))
}

/// Log the first failure of a run of failures, then every tenth.
pub fn worth_logging(failures: u32) -> bool {
    failures == 1 || failures.is_multiple_of(10)
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    pub fn new(base: &str, token: &str) -> Client {
        install_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client always builds");
        Client { http, servers: std::sync::Arc::new(Servers::parse(base)), token: token.to_string() }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client { http: self.http.clone(), servers: self.servers.clone(), token: token.to_string() }
    }

    /// The server in use now.
    pub fn base(&self) -> &str {
        self.servers.at(self.servers.current.load(Ordering::SeqCst))
    }

    /// Send a call; only a server that cannot be reached at all (no answer, not an error
    /// answer) makes the agent move on, and only from the server the call was sent to.
    async fn send<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, CallError> {
        Self::answer(self.execute(req).await?).await
    }

    /// Send a call with the agent's token and return the server's answer, whatever its status;
    /// a server that cannot be reached is marked failed (see `send`).
    async fn execute(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let (http, request) = req.bearer_auth(&self.token).build_split();
        let request = request.map_err(|e| CallError::Refused(format!("bad request: {e}")))?;
        let sent_to = self.servers.index_of(request.url().as_str());
        http.execute(request).await.map_err(|e| {
            if let Some(i) = sent_to {
                self.servers.failed(i);
            }
            CallError::Unreachable(e.to_string())
        })
    }

    /// What an answer means to the agent.
    async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, CallError> {
        let status = resp.status();
        if status.is_success() {
            return resp.json::<T>().await.map_err(|e| CallError::Unreachable(format!("bad answer: {e}")));
        }
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        Err(match status {
            StatusCode::UNAUTHORIZED => CallError::Unauthorized(msg),
            StatusCode::CONFLICT if msg.contains("leaves a gap") => {
                let held = msg.split("holds ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
                CallError::Gap(held)
            }
            StatusCode::CONFLICT | StatusCode::NOT_FOUND if !msg.contains("log incomplete") => CallError::Stale(msg),
            s if s.is_server_error() || s == StatusCode::CONFLICT => CallError::Unreachable(format!("{s}: {msg}")),
            s => CallError::Refused(format!("{s}: {msg}")),
        })
    }

    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, CallError> {
        self.send(self.http.post(format!("{}/api/v1/agent/register", self.base())).json(req)).await
    }

    /// A new token for this agent; the one this client carries stops working.
    pub async fn rotate(&self) -> Result<String, CallError> {
        let r: kiln_wire::enrol::RotateResponse = self.send(self.http.post(format!("{}/api/v1/agent/rotate", self.base()))).await?;
        Ok(r.token)
    }

    pub async fn claim(&self, claim_id: &str) -> Result<Option<JobAssignment>, CallError> {
        let req = ClaimRequest { claim_id: Some(claim_id.to_string()) };
        self.send(self.http.post(format!("{}/api/v1/agent/claim", self.base())).timeout(Duration::from_secs(40)).json(&req)).await
    }

    /// The control long poll: returns when a job must stop or the agent must drain (or after ~25 s).
    pub async fn wait(&self, req: &WaitRequest) -> Result<HeartbeatResponse, CallError> {
        self.send(self.http.post(format!("{}/api/v1/agent/wait", self.base())).timeout(Duration::from_secs(40)).json(req)).await
    }

    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, CallError> {
        self.send(self.http.post(format!("{}/api/v1/agent/heartbeat", self.base())).timeout(Duration::from_secs(10)).json(req)).await
    }

    pub async fn log(&self, job_id: i64, attempt: i64, offset: u64, data: Vec<u8>) -> Result<LogAck, CallError> {
        self.send(
            self.http
                .post(format!("{}/api/v1/agent/jobs/{job_id}/log", self.base()))
                .query(&LogAt { attempt, offset })
                .timeout(Duration::from_secs(30))
                .body(data),
        )
        .await
    }

    /// Send whole zstd frames of the log (`kiln_wire::agent::LOG_FRAME` raw bytes each) from
    /// raw byte `offset`. A server without the route (an older one) answers `Refused`.
    pub async fn log_frames(&self, job_id: i64, attempt: i64, offset: u64, frames: Vec<u8>) -> Result<LogAck, CallError> {
        let req = self
            .http
            .post(format!("{}/api/v1/agent/jobs/{job_id}/log/zstd", self.base()))
            .query(&LogAt { attempt, offset })
            .timeout(Duration::from_secs(30))
            .header(reqwest::header::CONTENT_TYPE, "application/zstd")
            .body(frames);
        let resp = self.execute(req).await?;
        // No such route: the server predates compressed uploads (its own 404s say why in JSON).
        if matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) && !resp.headers().get(reqwest::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json")) {
            return Err(CallError::Refused("the server does not take compressed log uploads".into()));
        }
        Self::answer(resp).await
    }

    /// Replace the live tail of a log past its head: its last lines (`text`, at most
    /// `kiln_wire::agent::LIVE_TAIL_MAX` bytes), `past_head` bytes printed past the head so far.
    pub async fn log_live(&self, job_id: i64, attempt: i64, past_head: u64, text: Vec<u8>) -> Result<Ack, CallError> {
        self.send(
            self.http
                .put(format!("{}/api/v1/agent/jobs/{job_id}/log/live", self.base()))
                .query(&LiveAt { attempt, past_head })
                .timeout(Duration::from_secs(10))
                .body(text),
        )
        .await
    }

    pub async fn finish(&self, job_id: i64, req: &FinishRequest) -> Result<FinishResponse, CallError> {
        self.send(self.http.post(format!("{}/api/v1/agent/jobs/{job_id}/finish", self.base())).json(req)).await
    }

    /// GET a file the server keeps, with the agent's token: the answer, once it is a success.
    async fn get_file(&self, path: &str, timeout: Duration) -> Result<reqwest::Response, CallError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base()))
            .timeout(timeout)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(if status.is_server_error() { CallError::Unreachable(format!("{status}: {body}")) } else { CallError::Refused(format!("{status}: {body}")) });
        }
        Ok(resp)
    }

    /// GET a file the server keeps for a job (an uploaded run's package), with the agent's token.
    pub async fn download(&self, path: &str) -> Result<Vec<u8>, CallError> {
        let resp = self.get_file(path, Duration::from_secs(600)).await?;
        resp.bytes().await.map(|b| b.to_vec()).map_err(|e| CallError::Unreachable(e.to_string()))
    }

    /// PUT one artifact, streamed from its file.
    pub async fn put_artifact(&self, job_id: i64, attempt: i64, name: &str, path: &std::path::Path) -> Result<kiln_wire::api::Artifact, CallError> {
        let f = tokio::fs::File::open(path).await.map_err(|e| CallError::Refused(format!("cannot read {}: {e}", path.display())))?;
        let stream = futures::stream::unfold(f, |mut f| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 256 << 10];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        self.send(
            self.http
                .put(format!("{}/api/v1/agent/jobs/{job_id}/artifacts", self.base()))
                .query(&UploadAt { attempt, name: name.to_string() })
                .timeout(Duration::from_secs(3600))
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await
    }

    /// The artifacts of the jobs this one needs.
    pub async fn inputs(&self, job_id: i64, attempt: i64) -> Result<Vec<kiln_wire::api::Artifact>, CallError> {
        self.send(self.http.get(format!("{}/api/v1/agent/jobs/{job_id}/inputs", self.base())).query(&InputsAt { attempt })).await
    }

    /// GET a file the server keeps into `dest`, streamed.
    pub async fn download_to(&self, path: &str, dest: &std::path::Path) -> Result<u64, CallError> {
        use tokio::io::AsyncWriteExt;
        let mut resp = self.get_file(path, Duration::from_secs(3600)).await?;
        let io = |e: std::io::Error| CallError::Refused(format!("cannot write {}: {e}", dest.display()));
        let mut f = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| CallError::Unreachable(e.to_string()))? {
            f.write_all(&chunk).await.map_err(io)?;
            n += chunk.len() as u64;
        }
        f.flush().await.map_err(io)?;
        Ok(n)
    }

    pub async fn release(&self, job_id: i64, attempt: i64) -> Result<ReleaseResponse, CallError> {
        self.send(self.http.post(format!("{}/api/v1/agent/jobs/{job_id}/release", self.base())).json(&ReleaseRequest { attempt })).await
    }

    pub async fn claim_tests(&self, job_id: i64, attempt: i64) -> Result<TestBatch, CallError> {
        self.send(
            self.http
                .post(format!("{}/api/v1/agent/jobs/{job_id}/tests/claim", self.base()))
                .timeout(Duration::from_secs(30))
                .json(&ClaimTestsRequest { attempt }),
        )
        .await
    }

    pub async fn upload_test_list(&self, job_id: i64, req: &TestListUpload) -> Result<Ack, CallError> {
        self.send(self.http.post(format!("{}/api/v1/agent/jobs/{job_id}/tests/list", self.base())).json(req)).await
    }

    /// Upload one JUnit report; `path` names it in messages and makes a repeat replace it.
    pub async fn upload_report(&self, job_id: i64, attempt: i64, batch: Option<i64>, path: &str, xml: Vec<u8>) -> Result<ReportAck, CallError> {
        let at = ReportAt { attempt, batch, path: path.to_string() };
        let url = format!("{}/api/v1/agent/jobs/{job_id}/tests/report", self.base());
        self.send(self.http.post(url).query(&at).timeout(Duration::from_secs(120)).body(xml)).await
    }

    pub async fn finish_batch(&self, job_id: i64, req: &BatchDone) -> Result<BatchDoneAck, CallError> {
        self.send(self.http.post(format!("{}/api/v1/agent/jobs/{job_id}/tests/done", self.base())).json(req)).await
    }
}

