//! Several servers on one PostgreSQL database: what one server publishes
//! (a job may be claimable, an agent may have something to stop) wakes the
//! long polls held by the others, and every event one server emits reaches
//! the others' event streams (console, `kiln up`), through LISTEN/NOTIFY.
//! On SQLite (one server) this service does nothing.

use crate::events::Event;
use crate::state::{AppState, EVENT_PREFIX, WAKE_AGENT_PREFIX};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(st: AppState, stop: CancellationToken) {
    loop {
        let mut listener = match st.store.subscribe().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("cannot listen for other servers yet: {e}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                m = listener.recv() => m,
            };
            match msg {
                // Local wake-ups only: publishing again would echo for ever.
                Ok(n) if n.payload() == "wake" => st.waiters.wake(),
                Ok(n) if n.payload().starts_with(WAKE_AGENT_PREFIX) => {
                    st.waiters.ring_agent(&n.payload()[WAKE_AGENT_PREFIX.len()..]);
                }
                Ok(n) if n.payload() == "control" => st.control.notify_waiters(),
                // Events of work done through another server, for this server's streams.
                Ok(n) if n.payload().starts_with(EVENT_PREFIX) => {
                    if let Ok(mut ev) = serde_json::from_str::<Event>(&n.payload()[EVENT_PREFIX.len()..]) {
                        ev.forwarded = true;
                        let _ = st.events.send(ev);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("lost the connection that listens for other servers: {e}");
                    break;
                }
            }
        }
    }
}
