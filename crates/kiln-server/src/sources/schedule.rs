//! Cron schedules: `on.schedule` in a project's pipeline (default branch) and
//! `schedule` in its settings build the default branch's head at the right
//! minutes (UTC, or the server's `timezone`). Ticks missed while the server was down run once at start-up,
//! not once per missed tick.

use crate::pipeline_meta as meta;
use crate::state::AppState;
use crate::app::trigger::{start_build, Origin};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Is a tick of `expr` due at `now`, given the last time it fired (or was armed)?
/// Hours and days are read in `zone` (UTC when None).
pub fn due(expr: &str, last: DateTime<Utc>, now: DateTime<Utc>, zone: Option<&tzfile::ArcTz>) -> bool {
    let next = match zone {
        Some(z) => kiln_core::cron::next_after_in(expr, last, z),
        None => kiln_core::cron::next_after(expr, last),
    };
    next.is_some_and(|next| next <= now)
}

fn key(project_id: i64, expr: &str) -> String {
    format!("cron:{project_id}:{expr}")
}

/// Check every schedule of every project once, at `now`.
pub async fn check(st: &AppState, now: DateTime<Utc>) {
    let Ok(projects) = st.store.list_projects().await else { return };
    let mut metas = meta::all(st).await;
    for p in projects {
        let mut exprs = p.settings.schedule.clone().unwrap_or_default();
        exprs.extend(metas.remove(&p.id).unwrap_or_default().schedule);
        exprs.dedup();
        for expr in exprs {
            let k = key(p.id, &expr);
            let now_s = now.timestamp_millis().to_string();
            let stored = st.store.kv_get(&k).await.ok().flatten();
            let Some(last) = stored.as_deref().and_then(|v| v.parse::<i64>().ok()).and_then(DateTime::from_timestamp_millis) else {
                // A new schedule counts from now: nothing in the past is owed.
                let _ = st.store.kv_cas(&k, None, &now_s).await;
                continue;
            };
            // Compare-and-set: of several servers sharing a database, one fires the tick.
            if due(&expr, last, now, st.timezone.as_ref()) && st.store.kv_cas(&k, stored.as_deref(), &now_s).await.unwrap_or(false) {
                match start_build(st, &p, None, None, Origin::new("schedule", format!("cron \"{expr}\"")), crate::app::access::Starter::Source).await {
                    Ok(b) => tracing::info!("schedule \"{expr}\" started build {} of {}", b.id, p.name),
                    Err(e) => tracing::error!("schedule \"{expr}\" of {}: {e}", p.name),
                }
            }
        }
    }
}

pub async fn run(st: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if st.duties.held(crate::duties::Duty::Cron) {
            check(&st, Utc::now()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn due_once_per_tick_and_once_for_many_missed() {
        let last = t("2026-01-01T03:00:30Z");
        assert!(!due("0 3 * * *", last, t("2026-01-01T23:59:59Z"), None));
        assert!(due("0 3 * * *", last, t("2026-01-02T03:00:00Z"), None));
        // Down for a week: due (once — the caller then moves `last` to now).
        assert!(due("0 3 * * *", last, t("2026-01-09T12:00:00Z"), None));
        assert!(!due("0 3 * * *", t("2026-01-09T12:00:00Z"), t("2026-01-09T12:00:59Z"), None));
        assert!(due("*/5 * * * *", t("2026-01-01T00:04:59Z"), t("2026-01-01T00:05:00Z"), None));
        assert!(!due("not a cron", last, t("2030-01-01T00:00:00Z"), None));
    }

    #[test]
    fn schedules_follow_a_time_zone_and_its_daylight_saving() {
        let paris = tzfile::ArcTz::named("Europe/Paris").expect("the system tz database has Europe/Paris");
        // 03:00 in Paris is 02:00 UTC in winter and 01:00 UTC in summer.
        assert!(!due("0 3 * * *", t("2026-01-10T00:00:00Z"), t("2026-01-10T01:59:59Z"), Some(&paris)));
        assert!(due("0 3 * * *", t("2026-01-10T00:00:00Z"), t("2026-01-10T02:00:00Z"), Some(&paris)));
        assert!(due("0 3 * * *", t("2026-07-10T00:00:00Z"), t("2026-07-10T01:00:00Z"), Some(&paris)));
        assert!(!due("0 3 * * *", t("2026-07-10T00:00:00Z"), t("2026-07-10T00:59:59Z"), Some(&paris)));
    }
}
