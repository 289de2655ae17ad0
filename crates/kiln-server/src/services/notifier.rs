//! The notifier: turns build status changes into queued deliveries and sends
//! them, beside the builds and never in their way.
//!
//! ```text
//!   woken by build/job events, a finished delivery, or a timer
//!        │
//!        ├─ enqueue: builds whose status ≠ notified_status ─► plan ─► outbox rows (one transaction)
//!        └─ deliver: due rows ─► lock (attempt + 1) ─► task: Sender::send ─► sent | retry later | failed
//! ```
//!
//! Durability: the outbox and `notified_status` are in the database, so a
//! restart (even kill -9) loses nothing: a build that ended while the server
//! was down, or whose deliveries were pending, is picked up at start. A
//! delivery is repeated only if the server died after the target accepted it
//! and before that was recorded (receivers can deduplicate on `X-Kiln-Delivery`).

use crate::events::{Event, EventKind};
use crate::notify::{plan, SendError, Sender};
use crate::state::AppState;
use kiln_core::notify::backoff;
use kiln_core::state::BuildStatus;
use kiln_store::{DeliveryOutcome, NotificationRow, ProjectRow};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Deliveries in flight at once (each to its own target, so one slow target holds one slot).
const MAX_IN_FLIGHT: usize = 8;
/// How long a delivery is held while being sent (longer than any send's timeout).
const HOLD_MS: i64 = 120_000;
/// The longest one send may take (well under HOLD_MS).
const SEND_TIMEOUT: Duration = Duration::from_secs(90);
/// The longest sleep between passes (a safety net; events usually wake it first).
const IDLE: Duration = Duration::from_secs(5);
/// Events come in bursts (a build queued, started, its jobs finished): a pass they wake waits
/// until this long after the last one and reads them all, so a busy server makes a few passes
/// a second, not several per job. A notification leaves at most this much later.
const GATHER: Duration = Duration::from_millis(200);

pub async fn run(st: AppState, stop: CancellationToken, base_url: String) {
    let sender = match Sender::new(&st.cfg) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!("notifications are off: {e}");
            return;
        }
    };
    if let Err(e) = st.store.release_notification_locks().await {
        tracing::warn!("notifier: failed to release delivery holds: {e}");
    }
    let mut events = st.events.subscribe();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let attempts = st.cfg.notify_attempts.max(1);
    loop {
        // Every event up to now is read by this pass.
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
        let pass_at = tokio::time::Instant::now();
        // A stop that came during the gather makes no new pass: the wait below shuts down.
        if !stop.is_cancelled() && st.duties.held(crate::duties::Duty::Notifier) {
            if let Err(e) = enqueue_changes(&st, &base_url).await {
                tracing::error!("notifier: failed to queue notifications: {e}");
            }
            if let Err(e) = dispatch_due(&st, &sender, &mut in_flight, attempts).await {
                tracing::error!("notifier: failed to read due notifications: {e}");
            }
        }
        let wait = match st.store.next_notification_at().await {
            // Full: a finishing send wakes the loop.
            _ if in_flight.len() >= MAX_IN_FLIGHT => IDLE,
            Ok(Some(at)) => Duration::from_millis((at - kiln_store::now_ms()).clamp(20, IDLE.as_millis() as i64) as u64),
            _ => IDLE,
        };
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        // Wait for something that may matter (log events do not).
        let mut by_event = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    // Let sends under way finish (and be recorded) for a moment, then abort the rest.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async { while in_flight.join_next().await.is_some() {} }).await;
                    in_flight.shutdown().await;
                    drop(sender);
                    return;
                }
                ev = events.recv() => match ev {
                    Ok(ev) if ev.kind == EventKind::Log => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => { by_event = true; break }
                    Err(RecvError::Closed) => { (&mut sleep).await; break }
                },
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => break,
                _ = &mut sleep => break,
            }
        }
        if by_event {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep_until(pass_at + GATHER) => {}
            }
        }
    }
}

/// Queue deliveries for every build whose status changed since it was notified.
async fn enqueue_changes(st: &AppState, base: &str) -> kiln_store::Result<()> {
    loop {
        let todo = st.store.unnotified_builds(100).await?;
        let n = todo.len();
        // Builds whose status sends nothing are marked together, in one write; each project
        // is read once a pass.
        let mut quiet = Vec::new();
        let mut projects: HashMap<i64, Option<ProjectRow>> = HashMap::new();
        for u in todo {
            let project = match projects.get(&u.project_id) {
                Some(p) => p.clone(),
                None => {
                    let p = match st.store.project_by_id(u.project_id).await {
                        Ok(p) => Some(p),
                        Err(kiln_store::StoreError::NotFound(_)) => None,
                        Err(e) => return Err(e),
                    };
                    projects.insert(u.project_id, p.clone());
                    p
                }
            };
            let planned = match &project {
                Some(p) => plan::plan(&st.store, base, &u, p).await,
                None => Err(kiln_store::StoreError::NotFound(format!("project {}", u.project_id))),
            };
            let rows = match planned {
                Ok(rows) => rows,
                // Its project is gone: nothing to tell, but mark it so it is not read again.
                Err(kiln_store::StoreError::NotFound(what)) => {
                    tracing::warn!("build {}: no notifications ({what} not found)", u.build_id);
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            if rows.is_empty() {
                quiet.push(u);
                continue;
            }
            let supersede = (u.status != BuildStatus::Running).then_some("commit_status");
            let queued = st.store.enqueue_notifications(u.build_id, u.notified_status, u.status, &rows, supersede).await?;
            if queued {
                tracing::debug!("build {} {}: {} notification(s) queued", u.build_id, u.status, rows.len());
            }
        }
        st.store.mark_notified(&quiet).await?;
        if n < 100 {
            return Ok(());
        }
    }
}

/// Start sending what is due, up to the in-flight limit.
async fn dispatch_due(st: &AppState, sender: &Arc<Sender>, in_flight: &mut JoinSet<()>, attempts: u32) -> kiln_store::Result<()> {
    let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
    if room == 0 {
        return Ok(());
    }
    for row in st.store.due_notifications(room as i64).await? {
        if !st.store.lock_notification(row.id, HOLD_MS).await? {
            continue;
        }
        let (st, sender) = (st.clone(), sender.clone());
        in_flight.spawn(async move { deliver(&st, &sender, row, attempts).await });
    }
    Ok(())
}

/// Send one delivery and record the outcome.
async fn deliver(st: &AppState, sender: &Sender, row: NotificationRow, max_attempts: u32) {
    let attempt = row.attempts as u32 + 1;
    let sent = tokio::time::timeout(SEND_TIMEOUT, sender.send(st, &row))
        .await
        .unwrap_or_else(|_| Err(SendError::Retry(format!("no answer within {}s", SEND_TIMEOUT.as_secs()))));
    let outcome = match sent {
        Ok(()) => DeliveryOutcome::Sent,
        Err(SendError::Permanent(error)) => DeliveryOutcome::Failed { error },
        Err(SendError::Retry(error)) if attempt >= max_attempts => {
            DeliveryOutcome::Failed { error: format!("{error} (gave up after {attempt} attempts)") }
        }
        Err(SendError::Retry(error)) => {
            DeliveryOutcome::Retry { error, next_at: kiln_store::now_ms() + backoff(attempt).as_millis() as i64 }
        }
    };
    match &outcome {
        DeliveryOutcome::Sent => tracing::info!("build {}: {} {} delivered to {}", row.build_id, row.event, row.kind, shown(&row)),
        DeliveryOutcome::Retry { error, .. } => tracing::warn!("build {}: {} attempt {attempt} failed, will retry: {error}", row.build_id, row.kind),
        DeliveryOutcome::Failed { error } => {
            tracing::warn!("build {}: {} to {} failed: {error}", row.build_id, row.kind, shown(&row));
            let mut ev = Event::new(EventKind::Notification, row.build_id, None, "", "failed");
            ev.channel = Some(row.kind.clone());
            st.emit_event(ev);
        }
    }
    if let Err(e) = st.store.record_delivery(row.id, &outcome).await {
        tracing::error!("notifier: failed to record delivery {}: {e}", row.id);
    }
}

fn shown(row: &NotificationRow) -> String {
    crate::redact::shown_target(&row.kind, &row.target)
}
