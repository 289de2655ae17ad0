//! Background duties (poller, cron, reaper, notifier, retention), each held by one server at a time under
//! a lease in the database (`duties` table), renewed every third of the lease. When the holder
//! dies its lease runs out and another server takes the duty over. On SQLite (one server) this
//! server holds every duty.

use crate::state::AppState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    Poller,
    Cron,
    Reaper,
    Notifier,
    Retention,
}

impl Duty {
    pub const ALL: [Duty; 5] = [Duty::Poller, Duty::Cron, Duty::Reaper, Duty::Notifier, Duty::Retention];

    pub fn as_str(self) -> &'static str {
        match self {
            Duty::Poller => "poller",
            Duty::Cron => "cron",
            Duty::Reaper => "reaper",
            Duty::Notifier => "notifier",
            Duty::Retention => "retention",
        }
    }
}

/// Which duties this server holds now.
pub struct Duties {
    /// This server process, as the `duties` table names its holder.
    pub id: String,
    held: [AtomicBool; Duty::ALL.len()],
}

impl Duties {
    pub fn new(all_held: bool) -> Duties {
        let id = format!("{}-{}", std::process::id(), &kiln_store::random_token()[..12]);
        Duties { id, held: std::array::from_fn(|_| AtomicBool::new(all_held)) }
    }

    pub fn held(&self, d: Duty) -> bool {
        self.held[d as usize].load(Ordering::SeqCst)
    }
}

/// Take or renew every duty once.
pub async fn renew(st: &AppState) {
    for d in Duty::ALL {
        let held = match st.store.take_duty(d.as_str(), &st.duties.id, st.cfg.lease_ms()).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("cannot renew the {} duty: {e}", d.as_str());
                false
            }
        };
        let was = st.duties.held[d as usize].swap(held, Ordering::SeqCst);
        if held && !was {
            tracing::info!("this server now holds the {} duty", d.as_str());
        }
    }
}

pub async fn run(st: AppState, stop: CancellationToken) {
    if st.store.backend() != kiln_store::Backend::Postgres {
        return;
    }
    let every = Duration::from_millis((st.cfg.lease_ms() / 3) as u64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        renew(&st).await;
    }
}
