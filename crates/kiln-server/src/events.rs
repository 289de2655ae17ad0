//! One stream of build events feeding the console, `kiln up`'s summary and notifications.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `build`, `job`, `log` or `agent`.
    pub kind: &'static str,
    pub build_id: i64,
    pub job_id: Option<i64>,
    pub project: String,
    pub status: String,
}

pub type EventSender = tokio::sync::broadcast::Sender<Event>;
