//! Background duties (poller, cron, reaper, notifier, retention), each held by one server at a time under
//! a lease in the database (`duties` table), renewed every third of the lease. When the holder
//! dies its lease runs out and another server takes the duty over. On SQLite (one server) this
//! server holds every duty.

use crate::duties::Duty;
use crate::state::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        let was = st.duties.set(d, held);
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
