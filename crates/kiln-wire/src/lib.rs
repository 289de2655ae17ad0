//! The JSON that crosses the wire: the agent protocol and the REST API's objects.
//!
//! These are the only serialisable types in kiln. The server encodes them, the
//! agent and the CLI decode them, and `docs/api.md` documents them. Domain types
//! (in `kiln-core`) convert to and from these at the edge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the agent protocol; the server refuses agents that speak another.
pub const PROTOCOL_VERSION: u32 = 1;

pub mod enrol;
pub mod events;
pub mod notify;
pub mod users;

pub mod agent {
    //! The agent protocol: register, claim (a long poll), logs, heartbeat, finish.
    use super::*;

    /// The largest log chunk one upload may carry (agents send up to 4 MiB).
    pub const LOG_CHUNK_MAX: usize = 8 << 20;

    /// Raw bytes per zstd frame of a compressed log upload (`POST …/log/zstd`): the agent
    /// compresses whole frames starting at multiples of this offset, and the server keeps each
    /// frame as one segment of its log files, as it came.
    pub const LOG_FRAME: usize = 1 << 20;
    /// The most frames one compressed upload may carry.
    pub const LOG_FRAMES_MAX: usize = 8;

    /// The most a live tail carries (`PUT …/log/live`): the last lines of a log past its head,
    /// which the agent holds back until the job ends and sends a window of meanwhile.
    pub const LIVE_TAIL_MAX: usize = 64 << 10;

    /// The most log bytes a finish may carry (`FinishRequest::log_rest`): the end of a short
    /// job's log goes with its result rather than in an upload of its own.
    pub const FINISH_LOG_MAX: usize = 64 << 10;

    /// The largest JUnit report one upload may carry; the server answers 413 past it.
    pub const JUNIT_LIMIT: usize = 8 << 20;

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
        /// The job's `artifacts:`, uploaded after its steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub artifacts: Option<ArtifactsAssignment>,
        /// The job needs others: their artifacts are fetched into `KILN_ARTIFACTS_IN` first.
        #[serde(default)]
        pub has_needs: bool,
        /// False when the pipeline says `network: false`: the steps get no network.
        #[serde(default = "yes")]
        pub network: bool,
    }

    /// Which files a job keeps, and when.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ArtifactsAssignment {
        pub paths: Vec<String>,
        pub when: ArtifactsWhen,
    }

    /// When artifacts are uploaded, by how the steps ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ArtifactsWhen {
        Always,
        OnSuccess,
        OnFailure,
    }

    fn yes() -> bool {
        true
    }

    /// The `tests:` block of a sharded job, as the agent needs it.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TestsAssignment {
        pub list: Option<String>,
        pub run: String,
        pub split_files: Option<String>,
        pub reports: Vec<String>,
        /// How many times a failed test runs again (on any shard).
        #[serde(default)]
        pub retries: u32,
        /// Whether a flaky test (failed, then passed) fails the job.
        #[serde(default)]
        pub flaky_fails_build: bool,
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
        /// The log's bytes the server does not hold yet, when they are few (`FINISH_LOG_MAX`):
        /// stored before the result, in the same transaction.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log_rest: Option<LogRest>,
    }

    /// Bytes of a log from byte `offset`, in standard base64 (logs need not be UTF-8).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LogRest {
        pub offset: u64,
        pub base64: String,
    }

    /// What a finish answers: the build's status after it.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FinishResponse {
        pub build_status: String,
    }

    /// `POST …/jobs/{id}/release`: the agent hands this attempt back.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ReleaseRequest {
        pub attempt: i64,
    }

    /// What a release answers: whether the job was queued again (not when it was no longer
    /// the agent's).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ReleaseResponse {
        pub requeued: bool,
    }

    /// An answer with nothing more to say: `{}`.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Ack {}

    /// The query of a log upload (`…/log` and `…/log/zstd`): `?attempt=N&offset=B`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LogAt {
        pub attempt: i64,
        pub offset: u64,
    }

    /// The query of a live tail (`…/log/live`): `?attempt=N&past_head=B`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LiveAt {
        pub attempt: i64,
        /// Bytes the steps printed past the log's head so far.
        #[serde(default)]
        pub past_head: u64,
    }

    /// The query of a JUnit report upload (`…/tests/report`): `?attempt=N&path=P[&batch=B]`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ReportAt {
        pub attempt: i64,
        pub batch: Option<i64>,
        /// The report's path on the agent (for messages), unique per job attempt.
        pub path: String,
    }

    /// The query of an artifact upload (`…/artifacts`): `?attempt=N&name=PATH`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct UploadAt {
        pub attempt: i64,
        pub name: String,
    }

    /// The query of a job's inputs (`…/inputs`): `?attempt=N`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct InputsAt {
        pub attempt: i64,
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

    /// A batch of test ids for a shard, or `done` when the queue is empty. Before the queue
    /// exists, `list` asks this shard to run the list command (or expand the `split: files`
    /// glob) and upload the ids, and `wait` says another shard is doing it. `error` ends the
    /// shard: the list failed.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct TestBatch {
        pub batch_id: Option<i64>,
        pub tests: Vec<String>,
        pub done: bool,
        #[serde(default)]
        pub list: bool,
        #[serde(default)]
        pub wait: bool,
        #[serde(default)]
        pub error: Option<String>,
        /// With `done`: the tests this shard ran whose final try failed (its job fails).
        #[serde(default)]
        pub failed: Vec<String>,
        /// With `done`: the tests this shard ran that failed, then passed on a retry.
        #[serde(default)]
        pub flaky: Vec<String>,
        /// With `done`: the tests this shard ran whose final try failed but that are
        /// quarantined (they do not fail the job).
        #[serde(default)]
        pub quarantined: Vec<String>,
        /// With a batch: why it has this size (for the job log).
        #[serde(default)]
        pub plan: Option<String>,
    }

    /// The ids a shard's list command printed (or the files of `split: files`), or why there
    /// are none. The first upload for a build's job wins.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TestListUpload {
        pub attempt: i64,
        pub ids: Vec<String>,
        #[serde(default)]
        pub error: Option<String>,
        /// The ids are files to split statically (`split: files`).
        #[serde(default)]
        pub static_split: bool,
        /// The files the commit changed (their tests go first).
        #[serde(default)]
        pub changed_files: Vec<String>,
    }

    /// A batch's run command ended; its JUnit reports are uploaded.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BatchDone {
        pub attempt: i64,
        pub batch_id: i64,
        pub exit_code: Option<i32>,
    }

    /// What the server made of a finished batch.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct BatchDoneAck {
        pub passed: u32,
        /// Failed or errored (including "no result reported"), whether retried or not.
        pub failed: u32,
        /// Queued again for a retry.
        pub retried: u32,
        /// Tests without a result in a batch claimed from a seeded queue before the list came
        /// (the runner may have refused a test that left the suite, and run none): queued again,
        /// not counted as a try.
        #[serde(default)]
        pub requeued: u32,
    }

    /// Answer to one JUnit report upload.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct ReportAck {
        pub cases: u32,
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
        /// Signs outgoing webhooks (`X-Kiln-Signature-256`); separate from the one checking incoming hooks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub notify_webhook_secret: Option<String>,
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
        /// How long builds are kept (over the server-wide policy, limit by limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retention: Option<Retention>,
        /// Uploaded runs made by a maintainer get the project's secrets (off by default: uploads get none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub upload_secrets: Option<bool>,
    }

    /// A retention policy: keep the newest `keep_builds` finished builds per branch,
    /// younger than `keep_days`; artifacts younger than `artifact_days`.
    #[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct Retention {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keep_builds: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keep_days: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub artifact_days: Option<u32>,
    }

    /// What a retention pass removed (or, dry, would remove).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct GcReport {
        pub dry_run: bool,
        pub removed: Vec<GcItem>,
        /// Bytes on disk freed (or to be freed).
        pub bytes: u64,
    }

    #[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "snake_case")]
    pub enum GcWhat {
        /// The whole build: logs, artifacts, test results, its uploaded package.
        Build,
        /// Only its artifacts.
        Artifacts,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct GcItem {
        pub build_id: i64,
        pub project: String,
        pub what: GcWhat,
        pub reason: String,
        pub bytes: u64,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct GcRequest {
        #[serde(default)]
        pub dry_run: bool,
    }

    /// Who may see a project: anyone, any signed-in user, or its members (and admins) only.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
    #[serde(rename_all = "lowercase")]
    pub enum Visibility {
        Public,
        Internal,
        #[default]
        Private,
    }

    impl Visibility {
        pub fn as_str(self) -> &'static str {
            match self {
                Visibility::Public => "public",
                Visibility::Internal => "internal",
                Visibility::Private => "private",
            }
        }
        pub fn parse(s: &str) -> Option<Visibility> {
            [Visibility::Public, Visibility::Internal, Visibility::Private].into_iter().find(|v| v.as_str() == s)
        }
    }

    /// A member's role on a project; each includes the ones before it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Role {
        /// Sees the project (also when private).
        Viewer,
        /// Triggers, cancels, rebuilds, uploads test files to run on the project's pipeline.
        Developer,
        /// Settings, secrets, notifications, commit status, visibility, members, uploads with a pipeline of their own.
        Maintainer,
    }

    impl Role {
        pub const ALL: [Role; 3] = [Role::Viewer, Role::Developer, Role::Maintainer];
        pub fn as_str(self) -> &'static str {
            match self {
                Role::Viewer => "viewer",
                Role::Developer => "developer",
                Role::Maintainer => "maintainer",
            }
        }
        pub fn parse(s: &str) -> Option<Role> {
            Role::ALL.into_iter().find(|r| r.as_str() == s)
        }
    }

    /// A project member, as `kiln project members` lists them.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Member {
        pub user: String,
        pub role: Role,
    }

    /// `POST /api/v1/projects/{name}/members`: give USER a role (replacing the one they had).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct MemberGrant {
        pub user: String,
        pub role: Role,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Project {
        pub id: i64,
        pub name: String,
        pub repo: String,
        pub branch: String,
        pub pipeline: String,
        /// Visible to anonymous visitors (`visibility` is public).
        pub public: bool,
        #[serde(default)]
        pub visibility: Visibility,
        /// The caller's role on the project (None: not a member; admins count as maintainers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub role: Option<Role>,
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
        /// Replaces `public` when given.
        #[serde(default)]
        pub visibility: Option<Visibility>,
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
        /// Replaces `public` when given.
        #[serde(default)]
        pub visibility: Option<Visibility>,
        /// Secret names to delete.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub remove_secrets: Vec<String>,
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
        /// One page of the build's jobs (`?jobs_offset=&jobs_limit=`, 100 by default, at most 500).
        pub jobs: Vec<Job>,
        /// How many jobs the build has, on every page.
        #[serde(default)]
        pub jobs_total: u64,
        /// A queued build whose pipeline has not been read yet: why it has no jobs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub waiting: Option<Waiting>,
        /// Test counts, once any test result is in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tests: Option<TestSummary>,
        /// The build whose failures this one reruns (`kiln retry BUILD --failed`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_of: Option<i64>,
        /// How long after the build started its first failure came: a failed test (not a
        /// quarantined one) or a failed job, plain jobs included.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub first_failure_ms: Option<u64>,
    }

    /// Counts over a build's distinct tests by their final try; `passed` includes `flaky`.
    #[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
    pub struct TestSummary {
        pub total: u64,
        pub passed: u64,
        pub failed: u64,
        pub errored: u64,
        pub skipped: u64,
        pub flaky: u64,
        /// How long after the build started its first failure came (the build's own
        /// `first_failure_ms`, repeated here).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub first_failure_ms: Option<u64>,
    }

    /// One try of one test case in a build.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TestResult {
        /// The job (shard) that ran it, and the queue it came from (the job key without shard).
        pub job: String,
        pub group: String,
        /// The listed id it answers for (or the case's own id when nothing listed it).
        pub key: String,
        pub suite: String,
        pub classname: String,
        pub name: String,
        pub file: Option<String>,
        pub duration_ms: u64,
        /// passed, failed, errored, skipped
        pub outcome: String,
        pub message: Option<String>,
        /// 0 for the first run, 1 for the first retry…
        pub try_number: u32,
        /// This try passed after an earlier one failed.
        pub flaky: bool,
        /// Whether this is the test's final try (what the counts use).
        pub is_final: bool,
        /// The test was quarantined when the build listed its tests: a failure of it does
        /// not fail the job.
        #[serde(default)]
        pub quarantined: bool,
    }

    /// GET /api/v1/builds/{id}/batches: every test batch of a build's `tests:` jobs in the
    /// order they were claimed, each with its tests in the order they were given to `run`
    /// (what `kiln run --replay` runs again).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BuildBatches {
        pub build_id: i64,
        /// The build's project and branch (a replay's `KILN_PROJECT`, `KILN_BRANCH`).
        #[serde(default)]
        pub project: String,
        #[serde(default)]
        pub branch: String,
        pub commit: String,
        pub batches: Vec<BatchRecord>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct BatchRecord {
        /// The shard job's key (`suite [2/4]`).
        pub job: String,
        pub attempt: i64,
        pub batch: i64,
        /// running, done, or returned (its tests went back to the queue).
        pub state: String,
        pub tests: Vec<String>,
    }

    /// GET /api/v1/builds/{id}/tests
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BuildTests {
        pub build_id: i64,
        pub summary: TestSummary,
        /// Failures first, then flaky, then by duration, slowest first.
        pub tests: Vec<TestResult>,
    }

    /// One test's history on a project's branch.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TestStats {
        pub key: String,
        pub runs: u64,
        pub failures: u64,
        pub flaky: u64,
        /// flaky ÷ runs
        pub flaky_rate: f64,
        pub avg_ms: u64,
        pub last_ms: u64,
        pub last_outcome: String,
        /// Recent durations, oldest first.
        pub recent_ms: Vec<u64>,
        /// Quarantined now (its failures do not fail jobs).
        #[serde(default)]
        pub quarantined: bool,
    }

    /// GET /api/v1/projects/{name}/tests
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TestStatsList {
        pub project: String,
        pub branch: String,
        pub tests: Vec<TestStats>,
        /// The project's quarantine: the tests quarantined now and the latest changes.
        #[serde(default)]
        pub quarantine: Quarantine,
    }

    /// A project's quarantine: the tests quarantined now and the latest changes, newest first.
    #[derive(Debug, Clone, Serialize, Deserialize, Default)]
    pub struct Quarantine {
        pub quarantined: Vec<String>,
        pub changes: Vec<QuarantineChange>,
    }

    /// One change of a test's quarantine, with the runs that caused it.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct QuarantineChange {
        pub id: i64,
        pub test: String,
        /// quarantined or released
        pub change: String,
        /// auto (the rules) or manual
        pub cause: String,
        /// The maintainer, for a change by hand.
        pub by: Option<String>,
        pub reason: String,
        /// The builds and jobs whose runs caused it (newest first).
        pub builds: Vec<i64>,
        pub jobs: Vec<i64>,
        /// Those of `builds` that retention has deleted since (the change stays; their pages do not).
        #[serde(default)]
        pub deleted: Vec<i64>,
        pub at: String,
    }

    /// POST /api/v1/projects/{name}/quarantine and …/quarantine/release
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct QuarantineRequest {
        pub test: String,
        /// Why (recorded with the change).
        #[serde(default)]
        pub reason: Option<String>,
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
        /// For a queued job: why it has not started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub waiting: Option<Waiting>,
        pub created_at: String,
        pub started_at: Option<String>,
        pub finished_at: Option<String>,
        pub attempts: Vec<Attempt>,
    }

    /// Why a queued job (or a build not yet expanded) has not started.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Waiting {
        pub reason: WaitReason,
        /// The reason as a sentence, e.g. "2 matching agents are busy: a (job #7), b (job #9)".
        pub message: String,
        /// The agents it names (closest, draining, busy or with room).
        #[serde(default)]
        pub agents: Vec<String>,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum WaitReason {
        /// The build's pipeline has not been read yet.
        NotExpanded,
        /// Jobs it needs have not passed.
        Needs,
        /// No online agent has the labels it requires.
        NoAgent,
        /// Every matching agent is draining.
        Draining,
        /// Every matching agent is busy.
        Busy,
        /// A matching agent has room and takes it at its next claim.
        NextClaim,
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
        /// Bytes of this attempt's log the server holds now.
        #[serde(default)]
        pub len: u64,
        /// The 1-based number of the line `text` starts in.
        #[serde(default)]
        pub line: u64,
        /// For a slice asked by `tail`, `before` or `line`: the style (bold, colours) in effect
        /// where `text` starts, as one ANSI SGR sequence, as set in the MiB before it (""
        /// for none).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub style: String,
    }

    /// The live tail of a log past its head (`GET /api/v1/jobs/{id}/log/live`): past its head a
    /// log stops growing until the job ends, when its tail follows a marker; meanwhile the agent
    /// sends the last lines now and then, and they show here.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LiveTail {
        pub job_id: i64,
        pub attempt: i64,
        /// There is one: the attempt runs and its log passed its head.
        pub live: bool,
        /// Bytes the steps printed past the head so far.
        pub past_head: u64,
        /// The last lines (at most `agent::LIVE_TAIL_MAX` bytes), masked like the log.
        pub text: String,
    }

    /// A file a job kept (`GET /api/v1/builds/{id}/artifacts`).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Artifact {
        pub id: i64,
        pub job_id: i64,
        pub job: String,
        pub attempt: i64,
        /// The path relative to the job's working copy, normalised.
        pub name: String,
        pub size: u64,
        pub sha256: String,
        pub created_at: String,
        /// Where to download it (streamed).
        pub url: String,
    }

    /// `GET /api/v1/jobs/{id}/log/search`: every occurrence counted, the first matching lines kept.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LogSearch {
        pub job_id: i64,
        pub attempt: i64,
        pub query: String,
        /// Occurrences of `query` in the whole log.
        pub count: u64,
        /// Lines holding at least one occurrence.
        pub lines: u64,
        pub matches: Vec<LogSearchMatch>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct LogSearchMatch {
        pub line: u64,
        pub offset: u64,
        pub text: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BuildList {
        pub builds: Vec<Build>,
        pub total: i64,
    }
}
