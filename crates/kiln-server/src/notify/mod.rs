//! Notifications: what a build's change sends, and how each kind is delivered.
//!
//! ```text
//!  services/notifier ──scan──► plan (what to queue for a build's new status) ──► store outbox (pending)
//!                    ──due───► Sender::send ─┬─ email.rs          SMTP (lettre), text + HTML
//!                                            ├─ webhook_out.rs    signed JSON, or a chat {"text"}
//!                                            └─ commit_status.rs  GitHub / Gitea statuses API
//! ```
//!
//! API boundary: delivery never touches a build or a job. A failing target is
//! retried with backoff and then recorded as failed on its delivery row; the
//! build's status is never affected.

pub mod commit_status;
pub mod email;
pub mod notice;
pub mod plan;
pub mod webhook_out;

use crate::config::ServerConfig;
use crate::state::AppState;
use kiln_store::NotificationRow;
use kiln_wire::api::ProjectSettings;

/// Why a delivery did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The target may accept it later (unreachable, 5xx, timeout, a refusing server).
    #[error("{0}")]
    Retry(String),
    /// Trying again cannot help until someone changes the configuration.
    #[error("{0}")]
    Permanent(String),
}

/// Everything deliveries need: an HTTP client and, when configured, an SMTP transport.
/// Create and drop it inside the Tokio runtime (the pooled SMTP transport requires it).
pub struct Sender {
    http: crate::outbound::Outbound,
    mailer: Option<email::Mailer>,
}

impl Sender {
    pub fn new(cfg: &ServerConfig) -> Result<Sender, String> {
        let http = crate::outbound::Outbound::new(cfg.reach())?;
        let mailer = cfg.smtp.as_ref().map(email::Mailer::new).transpose()?;
        Ok(Sender { http, mailer })
    }

    /// Deliver one queued notification.
    pub async fn send(&self, st: &AppState, row: &NotificationRow) -> Result<(), SendError> {
        let notice: kiln_wire::notify::BuildNotice = serde_json::from_str(&row.payload)
            .map_err(|e| SendError::Permanent(format!("notification {} has an unreadable payload: {e}", row.id)))?;
        let project = st
            .store
            .project_by_id(row.project_id)
            .await
            .map_err(|e| SendError::Retry(format!("failed to read project {}: {e}", row.project_id)))?;
        match row.kind.as_str() {
            "email" => {
                let mailer = self.mailer.as_ref().ok_or_else(|| {
                    SendError::Permanent("no SMTP server is configured: start kiln server with --smtp-url (or an [smtp] table)".into())
                })?;
                let to: Vec<String> = row.target.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                mailer.send(&to, &notice).await
            }
            "webhook" | "chat" => webhook_out::post(&self.http, &row.target, row.id, &notice, project.settings.notify_webhook_secret.as_deref().or(project.settings.webhook_secret.as_deref())).await,
            "commit_status" => commit_status::post(&self.http, &st.cfg, &project, &row.target, &notice).await,
            other => Err(SendError::Permanent(format!("unknown notification kind {other:?}"))),
        }
    }
}

/// Check the notification settings a user gave; the message names the setting.
pub fn validate_settings(s: &ProjectSettings) -> Result<(), String> {
    kiln_core::notify::NotifyOn::parse_list(s.notify_on.as_deref()).map_err(|e| format!("invalid --notify-on: {e}"))?;
    for a in s.notify_email.iter().flatten() {
        email::parse_mailbox(a).map_err(|e| format!("invalid --notify-email {a:?}: {e}"))?;
    }
    for u in s.notify_webhook.iter().flatten() {
        webhook_out::parse_target(u).map_err(|e| format!("invalid --notify-webhook {u:?}: {e}"))?;
    }
    if let Some(cs) = &s.commit_status {
        commit_status::validate(cs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every commented `key = value` and `[table]` line of the example config, switched on, still parses.
    #[test]
    fn the_example_config_documents_real_keys() {
        let on: String = crate::config::DEFAULT_CONFIG
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(r) if r.starts_with('[') => r,
                Some(r) if r.split_once(" = ").is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) => r,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg: ServerConfig = toml::from_str(&on).unwrap_or_else(|e| panic!("{e}\n{on}"));
        let smtp = cfg.smtp.as_ref().expect("[smtp] in the example");
        assert_eq!(email::settings(smtp).unwrap().tls, email::TlsMode::StartTls);
        let p = &cfg.projects[0];
        let cs = commit_status::from_project_config(p).unwrap();
        assert_eq!((cs.forge.as_deref(), cs.repo.as_deref()), (Some("github"), Some("example/app")));
        assert_eq!(cfg.notify_attempts, 10);
    }
}
