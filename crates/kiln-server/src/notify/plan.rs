//! What a build's new status sends: commit status always (when configured),
//! email and webhooks when `--notify-on` says so.
//!
//! A build that ran and ended before its start was noticed (a fast build, or a
//! server that was down) gets its start queued first, so a forge shows pending
//! then the result, and deliveries to one target keep that order.

use super::{commit_status, notice, webhook_out};
use kiln_core::notify::{reason, BuildEvent, NotifyOn, DEFAULT_NOTIFY_ON};
use kiln_core::state::BuildStatus;
use kiln_store::{NewNotification, ProjectRow, Store, Unnotified};

/// The deliveries to queue for `u`'s new status (possibly none).
/// `p` is the build's project.
pub async fn plan(store: &Store, base: &str, u: &Unnotified, p: &ProjectRow) -> kiln_store::Result<Vec<NewNotification>> {
    let forge = commit_status::target(p);
    let emails = p.settings.notify_email.iter().flatten().any(|s| !s.trim().is_empty());
    let webhooks = p.settings.notify_webhook.iter().flatten().any(|u| !u.trim().is_empty());
    if forge.is_none() && !emails && !webhooks {
        // Nothing to tell anyone: read nothing more (most builds of a busy server).
        return Ok(Vec::new());
    }
    let b = store.build(u.build_id).await?;
    let jobs = store.jobs_of_build(b.id).await?;
    let finished = u.status != BuildStatus::Running;
    let start_unsaid = !finished || (b.started_at.is_some() && matches!(u.notified_status, None | Some(BuildStatus::Queued)));
    let on = NotifyOn::parse_list(p.settings.notify_on.as_deref()).unwrap_or_else(|e| {
        tracing::warn!("project {}: {e}; using the default (failure, fixed)", p.name);
        DEFAULT_NOTIFY_ON.to_vec()
    });
    let previous = if finished { store.previous_finished_status(p.id, &b.branch, b.id).await? } else { None };
    let tests = if finished { notice::tests_of_build(store, b.id).await? } else { (None, Vec::new()) };
    let first_failure_ms = if finished { store.first_failure_ms(b.id).await? } else { None };
    // Test messages come from a job's output: mask its secrets here too, not only on the agent.
    let secrets: Vec<String> = p.settings.secrets.iter().flatten().map(|(_, v)| v.clone()).collect();
    let mut rows = Vec::new();
    let mut events = Vec::new();
    if start_unsaid {
        events.push(BuildEvent::Started);
    }
    if finished {
        events.push(BuildEvent::Finished { status: b.status.as_str(), previous: previous.as_deref() });
    }
    for ev in events {
        let started = ev == BuildEvent::Started;
        let why = reason(&on, ev);
        let n = notice::build_notice(
            base,
            &b,
            &jobs,
            started,
            why.map(NotifyOn::as_str).unwrap_or("status"),
            if started { None } else { previous.clone() },
            if started { (None, Vec::new()) } else { tests.clone() },
            first_failure_ms,
        );
        let payload = notice::masked_payload(&n, &secrets);
        let row = |kind: &str, target: String| NewNotification {
            kind: kind.into(),
            target,
            event: n.event.clone(),
            build_status: if started { BuildStatus::Running } else { b.status },
            payload: payload.clone(),
        };
        if let Some(t) = &forge {
            if !b.commit.is_empty() {
                rows.push(row("commit_status", t.clone()));
            }
        }
        if why.is_none() {
            continue;
        }
        let to: Vec<&str> = p.settings.notify_email.iter().flatten().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if !to.is_empty() {
            rows.push(row("email", to.join(",")));
        }
        for url in p.settings.notify_webhook.iter().flatten().filter(|u| !u.trim().is_empty()) {
            let kind = match webhook_out::parse_target(url) {
                Ok(t) => t.kind(),
                Err(_) => "webhook",
            };
            rows.push(row(kind, url.trim().to_string()));
        }
    }
    Ok(rows)
}
