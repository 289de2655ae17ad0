//! The lease reaper: a job whose agent stopped heartbeating goes back to the
//! queue (attempt + 1), or ends errored once its attempts are spent.

use crate::state::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A build recorded this long ago and still not expanded is expanded again
/// (its first try failed to record its jobs).
const STUCK_MS: i64 = 60_000;

pub async fn run(st: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        if n.is_multiple_of(20) {
            for b in st.store.unmaterialized_builds().await.unwrap_or_default() {
                if kiln_store::now_ms() - b.created_at > STUCK_MS {
                    tracing::warn!("build {} of {} was never expanded: trying again", b.id, b.project);
                    crate::materialize::materialize(&st, b, std::time::Instant::now()).await;
                }
            }
        }
        match st.store.expire_leases().await {
            Ok(expired) if !expired.is_empty() => {
                for e in &expired {
                    tracing::warn!(
                        "job {} attempt {} lost with agent {}: {}",
                        e.job_id,
                        e.attempt,
                        e.agent,
                        if e.requeued { "queued again" } else { "errored" }
                    );
                    if let Ok(b) = st.store.build(e.build_id).await {
                        st.emit("build", b.id, Some(e.job_id), &b.project, &b.status);
                    }
                }
                st.wake_agents();
                st.wake_control();
            }
            Ok(_) => {}
            Err(e) => tracing::error!("lease reaper: {e}"),
        }
    }
}
