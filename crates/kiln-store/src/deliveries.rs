//! Webhook delivery ids seen recently, kept in the database (so a replay is
//! caught by any server sharing it, and after a restart). Kept in `kv` as
//! `delivery:<key>` → the time it was seen (zero-padded milliseconds, so that
//! old ones can be found by comparing text).

use crate::{now_ms, Result, Store};

impl Store {
    /// Record a delivery `key` (at most 200 bytes are kept). True when it is new,
    /// false when it was seen less than `ttl_ms` ago. Older entries are dropped.
    pub async fn remember_delivery(&self, key: &str, ttl_ms: i64) -> Result<bool> {
        let _w = self.write_turn().await;
        let now = now_ms();
        let stamp = |ms: i64| format!("{:015}", ms.max(0));
        sqlx::query("DELETE FROM kv WHERE k LIKE 'delivery:%' AND v < $1").bind(stamp(now - ttl_ms)).execute(self.pool()).await?;
        let key: String = format!("delivery:{key}").chars().take(200).collect();
        let n = sqlx::query("INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING")
            .bind(&key)
            .bind(stamp(now))
            .execute(self.pool())
            .await?;
        Ok(n.rows_affected() == 1)
    }
}
