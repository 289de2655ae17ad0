//! The event stream: one enum of kinds, spelled once, used by the server (its console stream
//! `GET /api/v1/events`, metrics, the notifier), by `kiln up`, by the console's JS (a test checks
//! it listens only for kinds listed here) and between servers sharing a PostgreSQL database.

use serde::{Deserialize, Serialize};

/// What happened. Serialised as the lowercase name; it is also the server-sent event's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A build was queued or changed status (`job_id` is set when a job's change caused it).
    Build,
    /// A job started, finished or was taken back.
    Job,
    /// Log bytes arrived for a job.
    Log,
    /// An agent registered (a new one, or one restarting), was drained or was revoked: the fleet
    /// changed. Carries no name; the fleet page re-reads the agents.
    Agent,
    /// A distributed test queue moved (a batch claimed or done).
    Tests,
    /// A notification delivery ended failed.
    Notification,
}

/// Sent on the console stream instead of events a slow reader missed: re-read everything.
pub const RESYNC: &str = "resync";

impl EventKind {
    pub const ALL: [EventKind; 6] =
        [EventKind::Build, EventKind::Job, EventKind::Log, EventKind::Agent, EventKind::Tests, EventKind::Notification];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Build => "build",
            EventKind::Job => "job",
            EventKind::Log => "log",
            EventKind::Agent => "agent",
            EventKind::Tests => "tests",
            EventKind::Notification => "notification",
        }
    }
}

/// One event. The optional facts are set where they are known and feed the metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub build_id: i64,
    pub job_id: Option<i64>,
    pub project: String,
    pub status: String,
    /// A job that started: the labels it requires, `k=v` joined by commas (`""`: any agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// A job that started: milliseconds from ready to started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<i64>,
    /// A job that finished: milliseconds from started to finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Log bytes stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// A notification: its channel (`email`, `webhook`, `commit_status`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Received from another server (not counted again by this server's metrics).
    #[serde(skip)]
    pub forwarded: bool,
}

impl Event {
    pub fn new(kind: EventKind, build_id: i64, job_id: Option<i64>, project: &str, status: &str) -> Event {
        Event {
            kind,
            build_id,
            job_id,
            project: project.to_string(),
            status: status.to_string(),
            labels: None,
            wait_ms: None,
            duration_ms: None,
            bytes: None,
            channel: None,
            forwarded: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_names() {
        for k in EventKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        let e = Event::new(EventKind::Build, 3, None, "p", "queued");
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
