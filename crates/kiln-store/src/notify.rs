//! The notification outbox: deliveries (emails, webhook calls, commit statuses)
//! queued in the database in the same transaction that marks a build's status as
//! notified, then claimed, sent and recorded one by one.
//!
//! ```text
//!  builds.status ≠ builds.notified_status ──► enqueue (one transaction: notified_status := status,
//!                                              INSERT notifications … 'pending')
//!  pending, due, not locked ──► lock (attempts + 1, locked_until) ──► send ──► sent | retry at next_at | failed
//! ```
//!
//! Invariant: a build's status is queued for notification at most once (the
//! conditional update of `notified_status` decides), so a restart or a second
//! server never queues it twice; a delivery is sent again only if the server
//! died between the target's answer and recording it.

use crate::{now_ms, Backend, Result, Store};
use kiln_core::state::{BuildStatus, DeliveryStatus};
use sqlx::Row;

/// A delivery to queue.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// `email`, `webhook`, `chat` or `commit_status`.
    pub kind: String,
    /// Where to: recipients, a URL, `github:owner/name`.
    pub target: String,
    /// `build.started` or `build.finished`.
    pub event: String,
    /// The build status it reports.
    pub build_status: BuildStatus,
    /// What to send (JSON, rendered per kind at delivery).
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: i64,
    pub project_id: i64,
    pub build_id: i64,
    pub kind: String,
    pub target: String,
    pub event: String,
    pub build_status: BuildStatus,
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_at: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Sent,
    /// Try again at `next_at` (epoch ms).
    Retry { error: String, next_at: i64 },
    /// Give up.
    Failed { error: String },
}

/// A build whose status has not been notified yet.
#[derive(Debug, Clone)]
pub struct Unnotified {
    pub build_id: i64,
    pub project_id: i64,
    pub status: BuildStatus,
    /// The status last notified (None: none yet).
    pub notified_status: Option<BuildStatus>,
}

const COLS: &str = "id, project_id, build_id, kind, target, event, build_status, payload, status, attempts, last_error, \
next_at, locked_until, created_at, sent_at";

/// Pending, not held by a sender (`$1` = now), and not behind an older pending
/// delivery to the same target for the same build.
const SENDABLE: &str = "n.status = 'pending' AND (n.locked_until IS NULL OR n.locked_until < $1) \
AND NOT EXISTS (SELECT 1 FROM notifications o WHERE o.build_id = n.build_id AND o.target = n.target \
AND o.kind = n.kind AND o.status = 'pending' AND o.id < n.id)";

/// Builds [`Store::mark_notified`] marks in one statement (3 parameters each).
const MARK_AT_ONCE: usize = 100;

/// Build statuses that are notified; `queued` is not (nothing has happened yet).
const NOTIFIED: &str = "('running', 'passed', 'failed', 'errored', 'cancelled')";

fn from_row(r: &sqlx::any::AnyRow) -> Result<NotificationRow> {
    Ok(NotificationRow {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        build_id: r.try_get("build_id")?,
        kind: r.try_get("kind")?,
        target: r.try_get("target")?,
        event: r.try_get("event")?,
        build_status: crate::rows::build_status(r, "build_status")?,
        payload: r.try_get("payload")?,
        status: crate::rows::delivery_status(r, "status")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        next_at: r.try_get("next_at")?,
        locked_until: r.try_get("locked_until")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
    })
}

impl Store {
    /// Builds whose status changed since they were last notified, oldest first.
    pub async fn unnotified_builds(&self, limit: i64) -> Result<Vec<Unnotified>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, project_id, status, notified_status FROM builds \
             WHERE (notified_status IS NULL OR notified_status <> status) AND status IN {NOTIFIED} ORDER BY id LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Unnotified {
                    build_id: r.try_get("id")?,
                    project_id: r.try_get("project_id")?,
                    status: crate::rows::build_status(r, "status")?,
                    notified_status: crate::rows::maybe_build_status(r, "notified_status")?,
                })
            })
            .collect()
    }

    /// The status of the newest finished (not cancelled) build on the branch before `before_id`.
    pub async fn previous_finished_status(&self, project_id: i64, branch: &str, before_id: i64) -> Result<Option<String>> {
        let s: Option<String> = sqlx::query_scalar(
            "SELECT status FROM builds WHERE project_id = $1 AND branch = $2 AND id < $3 \
             AND status IN ('passed', 'failed', 'errored') ORDER BY id DESC LIMIT 1",
        )
        .bind(project_id)
        .bind(branch)
        .bind(before_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(s)
    }

    /// Mark `status` as notified for the build (it was `from`) and queue its
    /// deliveries, in one transaction. Returns false, writing nothing, when the
    /// build moved on or another pass already queued this status.
    ///
    /// Pending deliveries of kind `supersede_kind` for the same build and target
    /// that already failed once and are not being sent are skipped: a newer
    /// status replaces them (a commit status is a state, not a message).
    pub async fn enqueue_notifications(
        &self,
        build_id: i64,
        from: Option<BuildStatus>,
        status: BuildStatus,
        rows: &[NewNotification],
        supersede_kind: Option<&str>,
    ) -> Result<bool> {
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        if !mark_notified(&mut tx, build_id, from, status).await? {
            return Ok(false);
        }
        if let Some(kind) = supersede_kind {
            sqlx::query(
                "UPDATE notifications SET status = 'skipped', last_error = COALESCE(last_error, '') || ' (superseded by a newer status)' \
                 WHERE build_id = $1 AND kind = $2 AND status = 'pending' AND attempts > 0 AND (locked_until IS NULL OR locked_until < $3)",
            )
            .bind(build_id)
            .bind(kind)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for n in rows {
            sqlx::query(
                "INSERT INTO notifications (project_id, build_id, kind, target, event, build_status, payload, status, next_at, created_at) \
                 SELECT project_id, id, $1, $2, $3, $4, $5, 'pending', $6, $6 FROM builds WHERE id = $7",
            )
            .bind(&n.kind)
            .bind(&n.target)
            .bind(&n.event)
            .bind(n.build_status.as_str())
            .bind(&n.payload)
            .bind(now)
            .bind(build_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Record that these builds' statuses send nothing (their projects have no targets), in
    /// one write: each is marked only if its status and notified status are still as read.
    pub async fn mark_notified(&self, builds: &[Unnotified]) -> Result<()> {
        if builds.is_empty() {
            return Ok(());
        }
        let _w = self.write_turn().await;
        // One statement for them all, each under its own condition (see `mark_notified`).
        for chunk in builds.chunks(MARK_AT_ONCE) {
            let each = (0..chunk.len())
                .map(|i| format!("(id = ${} AND status = ${} AND COALESCE(notified_status, '') = ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql = format!("UPDATE builds SET notified_status = status WHERE {each}");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for u in chunk {
                q = q.bind(u.build_id).bind(u.status.as_str()).bind(u.notified_status.map_or("", BuildStatus::as_str));
            }
            q.execute(self.pool()).await?;
        }
        Ok(())
    }

    /// Pending deliveries that are due and not being sent, oldest first; a delivery
    /// waits while an older one for the same build and target is pending (order kept).
    pub async fn due_notifications(&self, limit: i64) -> Result<Vec<NotificationRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM notifications n WHERE {SENDABLE} AND n.next_at <= $1 ORDER BY n.id LIMIT $2"
        )))
        .bind(now_ms())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// When the next sendable delivery is due (epoch ms), if any. Deliveries being
    /// sent are left out: their end wakes the notifier.
    pub async fn next_notification_at(&self) -> Result<Option<i64>> {
        let v: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT MIN(n.next_at) FROM notifications n WHERE {SENDABLE}")))
            .bind(now_ms())
            .fetch_one(self.pool())
            .await?;
        Ok(v)
    }

    /// Take a delivery to send it: counts the attempt and holds it for `hold_ms`.
    /// False when another sender took it first.
    pub async fn lock_notification(&self, id: i64, hold_ms: i64) -> Result<bool> {
        let _w = self.write_turn().await;
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE notifications SET locked_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND status = 'pending' AND (locked_until IS NULL OR locked_until < $3)",
        )
        .bind(now + hold_ms)
        .bind(id)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Record how an attempt went.
    pub async fn record_delivery(&self, id: i64, outcome: &DeliveryOutcome) -> Result<()> {
        let _w = self.write_turn().await;
        let now = now_ms();
        let q = match outcome {
            DeliveryOutcome::Sent => sqlx::query(
                "UPDATE notifications SET status = 'sent', sent_at = $1, locked_until = NULL, last_error = NULL WHERE id = $2",
            )
            .bind(now)
            .bind(id),
            DeliveryOutcome::Retry { error, next_at } => {
                sqlx::query("UPDATE notifications SET last_error = $1, next_at = $2, locked_until = NULL WHERE id = $3")
                    .bind(error.clone())
                    .bind(*next_at)
                    .bind(id)
            }
            DeliveryOutcome::Failed { error } => {
                sqlx::query("UPDATE notifications SET status = 'failed', last_error = $1, locked_until = NULL WHERE id = $2")
                    .bind(error.clone())
                    .bind(id)
            }
        };
        q.execute(self.pool()).await?;
        Ok(())
    }

    /// After a restart of the only server (SQLite): nothing is being sent, so
    /// release every hold at once instead of waiting for it to run out.
    pub async fn release_notification_locks(&self) -> Result<()> {
        if self.backend() != Backend::Sqlite {
            return Ok(());
        }
        let _w = self.write_turn().await;
        sqlx::query("UPDATE notifications SET locked_until = NULL WHERE status = 'pending' AND locked_until IS NOT NULL")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A project's recent deliveries, newest first.
    pub async fn project_notifications(&self, project_id: i64, limit: i64, offset: i64) -> Result<Vec<NotificationRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM notifications WHERE project_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        )))
        .bind(project_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}

/// Mark `build_id` notified of `status`, if it is still in `status` and was notified of `from`
/// (None: never). False when another pass (or server) got there first, or the status moved on.
async fn mark_notified(tx: &mut sqlx::Transaction<'static, sqlx::Any>, build_id: i64, from: Option<BuildStatus>, status: BuildStatus) -> Result<bool> {
    let marked = sqlx::query("UPDATE builds SET notified_status = $1 WHERE id = $2 AND status = $1 AND COALESCE(notified_status, '') = $3")
        .bind(status.as_str())
        .bind(build_id)
        .bind(from.map_or("", BuildStatus::as_str))
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(marked == 1)
}
