//! What every handler and service shares: the store, settings, wake-ups, events.

use crate::config::ServerConfig;
use crate::events::{Event, EventKind, EventSender};
use crate::git::Mirrors;
use kiln_store::Store;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub cfg: ServerConfig,
    /// The registration secret for agents.
    pub agent_token: String,
    /// Long-polling claims, rung when a job they may take may have become claimable.
    pub waiters: crate::waiters::Waiters,
    /// Woken when an agent may have something to stop (cancel, drain, a job taken back).
    pub control: Notify,
    /// Woken when a test queue changes here (a shard uploads its list, the queue is seeded, a
    /// batch finishes): the shards' claims waiting on it answer at once (a change made through
    /// another server is seen at their next look).
    pub test_queues: Notify,
    /// The last answer to each agent's claim, by the claim's id: a retried claim gets the same job.
    pub claims: std::sync::Mutex<std::collections::HashMap<String, (String, kiln_wire::agent::JobAssignment)>>,
    pub events: EventSender,
    /// Prometheus metrics (`crate::metrics`), fed from `events`.
    pub metrics: crate::metrics::Metrics,
    /// The background duties this server holds (taken and renewed by `services::duties`).
    pub duties: crate::duties::Duties,
    pub mirrors: Mirrors,
    /// The time zone cron schedules are read in (None: UTC).
    pub timezone: Option<tzfile::ArcTz>,
    /// Sign-in attempts per address and user name.
    pub throttle: crate::throttle::SignInThrottle,
    /// Cancelled when the server stops (ends long-lived streams such as the console's events).
    pub stop: CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// A job may have become claimable: ring the waiting claims that may take one, here and
    /// on the other servers (`crate::waiters`).
    pub fn wake_agents(&self) {
        self.waiters.wake();
        self.publish("wake");
    }

    /// Ring every waiting claim of agent `name`, here and on the other servers (it drains or
    /// lost its token, and must hear at once).
    pub fn wake_agent(&self, name: &str) {
        self.waiters.ring_agent(name);
        self.publish(format!("{WAKE_AGENT_PREFIX}{name}"));
    }

    /// Tell the other servers sharing a PostgreSQL database (no-op on SQLite).
    fn publish(&self, what: impl Into<String>) {
        let what = what.into();
        if self.store.backend() == kiln_store::Backend::Postgres {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.publish(&what).await {
                    tracing::warn!("failed to tell other servers ({what}): {e}");
                }
            });
        }
    }

    /// Wake every agent waiting for control messages (stop a job, drain).
    pub fn wake_control(&self) {
        self.control.notify_waiters();
        self.publish("control");
    }

    pub fn emit(&self, kind: EventKind, build_id: i64, job_id: Option<i64>, project: &str, status: &str) {
        self.emit_event(Event::new(kind, build_id, job_id, project, status));
    }

    /// Send an event to this server's subscribers and, on PostgreSQL, to the other servers'
    /// (`services::replicas` hands theirs to ours, marked `forwarded`).
    pub fn emit_event(&self, ev: Event) {
        if self.store.backend() == kiln_store::Backend::Postgres {
            if let Ok(json) = serde_json::to_string(&ev) {
                let store = self.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.publish(&format!("{EVENT_PREFIX}{json}")).await {
                        tracing::warn!("failed to tell other servers of an event: {e}");
                    }
                });
            }
        }
        let _ = self.events.send(ev);
    }
}

/// A LISTEN/NOTIFY payload ringing one agent's claims: this, then its name.
pub const WAKE_AGENT_PREFIX: &str = "wake-agent:";

/// A LISTEN/NOTIFY payload carrying an event starts with this (others are wake-ups).
pub const EVENT_PREFIX: &str = "event:";
