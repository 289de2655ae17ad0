//! Notifications on the wire: the JSON body of outgoing webhooks, the delivery
//! records the API lists, and a project's commit-status settings.
//! `docs/notifications.md` documents every field.

use serde::{Deserialize, Serialize};

/// Where a project reports commit status (`"commit_status"` in its settings).
/// Fields left out of an update stay as they are.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct CommitStatusSettings {
    /// `github`, `gitea`, or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<String>,
    /// The forge's API base: `https://api.github.com` (default for github),
    /// `https://ghe.example.com/api/v3`, `https://gitea.example.com/api/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `owner/name` on the forge (default: from the project's repository URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The project secret holding the token (default `GITHUB_TOKEN` or `GITEA_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// The status context shown next to the commit (default `kiln/PROJECT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl CommitStatusSettings {
    /// Take the fields `new` sets.
    pub fn merge(&mut self, new: CommitStatusSettings) {
        macro_rules! take {
            ($($f:ident),*) => { $( if new.$f.is_some() { self.$f = new.$f; } )* };
        }
        take!(forge, url, repo, token_secret, context);
    }
}

/// The body of an outgoing webhook: one build's state change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildNotice {
    /// `build.started` or `build.finished`.
    pub event: String,
    /// Why this was sent: `started`, `failure`, `fixed`, `success` or `always`.
    pub reason: String,
    pub project: String,
    /// The console page of the project.
    pub project_url: String,
    pub build: NoticeBuild,
    /// The first failed or errored tests (at most ten, in the order they were reported), with
    /// their messages.
    pub failed_tests: Vec<FailedTest>,
    /// The build's test counts when its jobs reported JUnit results (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<crate::api::TestSummary>,
    /// A one-line summary, the same as a chat message.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeBuild {
    pub id: i64,
    /// The console page of the build.
    pub url: String,
    /// running, passed, failed, errored, cancelled
    pub status: String,
    /// The status of the previous finished build on the same branch, if any.
    pub previous_status: Option<String>,
    pub branch: String,
    pub commit: String,
    pub message: Option<String>,
    pub author: Option<String>,
    pub trigger: String,
    pub triggered_by: String,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// How long after the build started its first failure came (a failed test or job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure_ms: Option<u64>,
    pub jobs: Vec<NoticeJob>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeJob {
    pub key: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedTest {
    /// The test's id as kiln lists it: `tests/test_a.py::test_x`, `module::Class::test_y`.
    #[serde(default)]
    pub id: String,
    /// `failed` or `errored`.
    #[serde(default)]
    pub outcome: String,
    /// The job (matrix cell, shard) that ran it.
    #[serde(default)]
    pub job: String,
    /// The JUnit `testsuite`, `classname` and `name` of the case.
    pub suite: String,
    #[serde(default)]
    pub classname: String,
    pub name: String,
    /// The failure's message (at most 4 KiB).
    pub message: String,
}

/// One delivery (an email, a webhook call, a commit status) and how it went:
/// `GET /api/v1/projects/{name}/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub build_id: i64,
    /// `email`, `webhook`, `chat` or `commit_status`.
    pub kind: String,
    /// Recipients, the webhook's scheme and host, or `github:owner/name`.
    pub target: String,
    /// `build.started` or `build.finished`.
    pub event: String,
    /// The build status it reports.
    pub build_status: String,
    /// `pending` (waiting or retrying), `sent`, `failed` (gave up), `skipped` (superseded).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub sent_at: Option<String>,
}
