//! The background duties a server may hold (poller, cron, reaper, notifier, retention), and
//! which of them this server holds now. Taking and renewing them under a lease is
//! `services::duties`.

use std::sync::atomic::{AtomicBool, Ordering};

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

    /// Record whether this server holds `d` now; returns whether it held it before.
    pub fn set(&self, d: Duty, held: bool) -> bool {
        self.held[d as usize].swap(held, Ordering::SeqCst)
    }
}
