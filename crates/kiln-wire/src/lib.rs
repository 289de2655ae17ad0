//! The JSON that crosses the wire: the agent protocol and the REST API's objects.
//!
//! These are the only serialisable types in kiln. The server encodes them, the
//! agent and the CLI decode them, and `docs/api.md` documents them. Domain types
//! (in `kiln-core`) convert to and from these at the edge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the agent protocol; the server refuses agents that speak another.
pub const PROTOCOL_VERSION: u32 = 1;

pub mod notify;
pub mod users;

pub mod agent {
    //! The agent protocol: register, claim (a long poll), logs, heartbeat, finish.
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct RegisterRequest {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub concurrency: u32,
        pub protocol: u32,
        /// Heartbeat interval the agent asks for, in seconds (the server may shorten it).
        #[serde(default)]
        pub heartbeat_secs: Option<u64>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct RegisterResponse {
        pub agent_id: i64,
        /// The per-agent token for every later call.
        pub token: String,
        pub heartbeat_secs: u64,
        pub lease_secs: u64,
    }

    /// One claimable unit of work, as handed to an agent by a claim.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct JobAssignment {
        pub job_id: i64,
        pub attempt: i64,
        pub build_id: i64,
        pub project: String,
        pub repo: String,
        pub branch: String,
        pub commit: String,
        pub key: String,
        pub name: String,
        pub steps: Vec<String>,
        pub env: BTreeMap<String, String>,
        pub timeout_secs: Option<u64>,
        pub shard_index: u32,
        pub shard_count: u32,
        /// Values that must never appear in a stored log.
        #[serde(default)]
        pub secrets: Vec<String>,
        /// Per-job output limit in bytes; past it the log is truncated with a marker.
        pub log_limit: u64,
        /// Present for a job with a `tests:` block.
        #[serde(default)]
        pub tests: Option<TestsAssignment>,
        /// For an uploaded test run: the URL path (on the server, fetched with the
        /// agent's token) of a .tar.gz to unpack instead of checking out `repo`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub package: Option<String>,
    }

    /// The `tests:` block of a sharded job, as the agent needs it.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TestsAssignment {
        pub list: Option<String>,
        pub run: String,
        pub split_files: Option<String>,
        pub reports: Vec<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    pub struct RunningJob {
        pub job_id: i64,
        pub attempt: i64,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct HeartbeatRequest {
        /// Free-form status the agent and its steps report (testbot's `client_info`).
        #[serde(default)]
        pub status: serde_json::Value,
        pub jobs: Vec<RunningJob>,
        #[serde(default)]
        pub draining: bool,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct HeartbeatResponse {
        /// Jobs the agent must stop: cancelled, or taken back from it (stale attempt).
        pub stop: Vec<RunningJob>,
        /// The server asks the agent to drain: take no new job, finish, exit.
        pub drain: bool,
    }

    /// Answer to a log upload: how many bytes of this attempt's log the server holds.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LogAck {
        pub len: u64,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FinishRequest {
        pub attempt: i64,
        /// `passed`, `failed`, `errored` or `cancelled`.
        pub status: String,
        pub exit_code: Option<i32>,
        pub reason: Option<String>,
        /// Total bytes of log this attempt produced; the server checks it holds them all.
        pub log_len: u64,
    }

    /// A claim; a retry of the same claim (after a lost answer) reuses its id and gets the same job.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct ClaimRequest {
        #[serde(default)]
        pub claim_id: Option<String>,
    }

    /// The control long poll: the attempts the agent runs; the answer says what to stop.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct WaitRequest {
        pub jobs: Vec<RunningJob>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ClaimTestsRequest {
        pub attempt: i64,
    }

    /// A batch of test ids for a shard, or `done` when the queue is empty.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TestBatch {
        pub batch_id: Option<i64>,
        pub tests: Vec<String>,
        pub done: bool,
    }
}

pub mod api {
    //! The REST API's objects under `/api/v1/`.
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ApiError {
        pub error: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct ProjectSettings {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub poll: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub poll_each_commit: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub webhook_secret: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cancel_superseded: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub notify_email: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub notify_on: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub notify_webhook: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub secrets: Option<BTreeMap<String, String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub schedule: Option<Vec<String>>,
        /// Commit status back to the forge (GitHub or Gitea).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub commit_status: Option<crate::notify::CommitStatusSettings>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Project {
        pub id: i64,
        pub name: String,
        pub repo: String,
        pub branch: String,
        pub pipeline: String,
        pub public: bool,
        /// Settings, with secret values replaced by "***".
        pub settings: ProjectSettings,
        pub created_at: String,
        #[serde(default)]
        pub last_build: Option<Box<Build>>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct ProjectCreate {
        pub name: String,
        pub repo: String,
        #[serde(default)]
        pub branch: Option<String>,
        #[serde(default)]
        pub pipeline: Option<String>,
        #[serde(default)]
        pub public: Option<bool>,
        #[serde(default)]
        pub settings: ProjectSettings,
    }

    /// A partial update: fields left out stay as they are.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct ProjectUpdate {
        #[serde(default)]
        pub repo: Option<String>,
        #[serde(default)]
        pub branch: Option<String>,
        #[serde(default)]
        pub pipeline: Option<String>,
        #[serde(default)]
        pub public: Option<bool>,
        #[serde(default)]
        pub settings: ProjectSettings,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct TriggerRequest {
        #[serde(default)]
        pub branch: Option<String>,
        #[serde(default)]
        pub commit: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Build {
        pub id: i64,
        pub project: String,
        /// queued, running, passed, failed, errored, cancelled
        pub status: String,
        pub branch: String,
        pub commit: String,
        pub message: Option<String>,
        pub author: Option<String>,
        /// manual, poll, webhook, hook, schedule, upstream, upload
        pub trigger: String,
        /// Who or what started it: a user, a forge, a project's build.
        pub triggered_by: String,
        pub upstream_build: Option<i64>,
        /// Why the build errored (for a bad pipeline: file:line:column: reason per line).
        pub error: Option<String>,
        pub created_at: String,
        pub started_at: Option<String>,
        pub finished_at: Option<String>,
        pub duration_ms: Option<i64>,
        pub jobs: Vec<Job>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Job {
        pub id: i64,
        pub build_id: i64,
        /// Unique in the build: "test (python=3.11)", "suite [2/4]".
        pub key: String,
        pub name: String,
        /// queued, running, passed, failed, errored, cancelled, skipped
        pub status: String,
        pub needs: Vec<String>,
        pub requires: BTreeMap<String, String>,
        /// The shell commands the job runs, in order.
        #[serde(default)]
        pub steps: Vec<String>,
        pub attempt: i64,
        pub agent: Option<String>,
        pub exit_code: Option<i64>,
        pub reason: Option<String>,
        /// For a queued job whose needs passed: the labels no online agent offers.
        pub waiting_for: Vec<String>,
        pub created_at: String,
        pub started_at: Option<String>,
        pub finished_at: Option<String>,
        pub attempts: Vec<Attempt>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Attempt {
        pub attempt: i64,
        pub agent: String,
        pub status: String,
        pub reason: Option<String>,
        pub log_len: i64,
        pub started_at: String,
        pub finished_at: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Agent {
        pub id: i64,
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub concurrency: i64,
        pub online: bool,
        pub draining: bool,
        pub last_seen: Option<String>,
        pub status: serde_json::Value,
        pub jobs: Vec<i64>,
    }

    /// A slice of one attempt's log, from byte `offset`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LogSlice {
        pub job_id: i64,
        pub attempt: i64,
        pub offset: u64,
        pub next_offset: u64,
        /// The job is over: no more bytes will come for this attempt.
        pub done: bool,
        pub text: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BuildList {
        pub builds: Vec<Build>,
        pub total: i64,
    }
}
