//! The lease reaper: a job whose agent stopped heartbeating goes back to the
//! queue (attempt + 1), or ends errored once its attempts are spent.

use crate::state::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(st: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
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
