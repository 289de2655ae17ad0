//! The lease reaper: a build whose expansion lease ran out is expanded again (on every
//! server); and, on the server holding the reaper duty (`services::duties`), a job whose agent
//! stopped heartbeating goes back to the queue (attempt + 1), or ends errored once its attempts
//! are spent.

use crate::events::EventKind;
use crate::duties::Duty;
use crate::state::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(st: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let lease_ms = st.cfg.lease_ms();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Builds whose expansion lease ran out (their server died reading the pipeline, or
        // between recording and expanding): expanded here. Every server looks, so such a build
        // waits a lease and a tick, not for a duty to move; taking the lease is atomic.
        for b in st.store.expansions_due(lease_ms).await.unwrap_or_default() {
            tracing::warn!("build {} of {} was not expanded within its lease: expanding it here", b.id, b.project);
            let st = st.clone();
            tokio::spawn(async move { crate::materialize::materialize(&st, b, None, crate::materialize::Lease::Take, std::time::Instant::now()).await });
        }
        if !st.duties.held(Duty::Reaper) {
            continue;
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
                        st.emit(EventKind::Job, b.id, Some(e.job_id), &b.project, if e.requeued { "queued" } else { "errored" });
                        st.emit(EventKind::Build, b.id, if b.status.is_final() { None } else { Some(e.job_id) }, &b.project, b.status.as_str());
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
