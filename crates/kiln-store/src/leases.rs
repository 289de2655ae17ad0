//! Leases that let several servers share one database and survive one's death: the lease on
//! expanding a build (the server reading its pipeline holds it; when it runs out another
//! server takes the build over), and background duties (poller, cron, reaper, notifier), each
//! held by one server at a time and taken over when its holder stops renewing.

use crate::{now_ms, BuildRow, Result, Store};

impl Store {
    /// Take (or renew) the lease on expanding a build not yet expanded: Some when this caller
    /// may expand it now (nobody holds a live lease on it), None otherwise. Some holds the
    /// value of kv key `read` as it is at that moment, read by the same statement: what the
    /// expansion compares what it reads with (the server's `pipeline_meta` keys).
    pub async fn take_expansion(&self, build_id: i64, lease_ms: i64, read: &str) -> Result<Option<Option<String>>> {
        let _w = self.write_turn().await;
        let now = now_ms();
        Ok(sqlx::query_scalar(
            "UPDATE builds SET expand_until = $1 WHERE id = $2 AND materialized = 0 AND (expand_until IS NULL OR expand_until < $3) \
             RETURNING (SELECT v FROM kv WHERE k = $4)",
        )
        .bind(now + lease_ms)
        .bind(build_id)
        .bind(now)
        .bind(read)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Keep the lease on a build being expanded.
    pub async fn renew_expansion(&self, build_id: i64, lease_ms: i64) -> Result<()> {
        let _w = self.write_turn().await;
        sqlx::query("UPDATE builds SET expand_until = $1 WHERE id = $2 AND materialized = 0")
            .bind(now_ms() + lease_ms)
            .bind(build_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forget every expansion lease (a single server starting again: whatever it was expanding
    /// when it stopped is its own to take up again at once).
    pub async fn release_expansions(&self) -> Result<u64> {
        let _w = self.write_turn().await;
        Ok(sqlx::query("UPDATE builds SET expand_until = NULL WHERE materialized = 0 AND expand_until IS NOT NULL").execute(self.pool()).await?.rows_affected())
    }

    /// Builds not expanded whose expansion lease ran out, or that nobody took within a lease
    /// of being recorded (their server died between recording and expanding).
    pub async fn expansions_due(&self, lease_ms: i64) -> Result<Vec<BuildRow>> {
        let now = now_ms();
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM builds WHERE materialized = 0 AND ((expand_until IS NULL AND created_at < $1) OR expand_until < $2) ORDER BY id LIMIT 100",
        )
        .bind(now - lease_ms)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.build(id).await?);
        }
        Ok(out)
    }

    /// Take or keep the duty `name` for `holder` for `lease_ms`: true when `holder` holds it
    /// now (it did already, or the last holder's lease ran out).
    pub async fn take_duty(&self, name: &str, holder: &str, lease_ms: i64) -> Result<bool> {
        let _w = self.write_turn().await;
        let now = now_ms();
        let n = sqlx::query(
            "INSERT INTO duties (name, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE duties.holder = excluded.holder OR duties.until < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + lease_ms)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Who holds each duty, and until when (epoch ms).
    pub async fn duties(&self) -> Result<Vec<(String, String, i64)>> {
        use sqlx::Row;
        let rows = sqlx::query("SELECT name, holder, until FROM duties ORDER BY name").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("holder")?, r.try_get("until")?))).collect()
    }
}
