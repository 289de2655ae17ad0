//! Sessions that end when idle: a session's end moves forward as it is used,
//! never past a fixed lifetime from sign-in.

use crate::{hash_token, now_ms, Result, Store};

impl Store {
    /// The session was just used: it now ends `idle_ms` from now, but no later than
    /// `max_ms` after it began. Written only when that moves the end by a tenth of
    /// the idle period or a minute, whichever is less (not on every request).
    pub async fn touch_session(&self, token: &str, idle_ms: i64, max_ms: i64) -> Result<()> {
        let now = now_ms();
        let until = now + idle_ms;
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT created_at, expires_at FROM sessions WHERE token_hash = $1")
            .bind(hash_token(token))
            .fetch_optional(self.pool())
            .await?;
        let Some((created, expires)) = row else { return Ok(()) };
        let target = until.min(created + max_ms);
        if target - expires < (idle_ms / 10).min(60_000) {
            return Ok(());
        }
        let _w = self.write_turn().await;
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2 AND expires_at > $3")
            .bind(target)
            .bind(hash_token(token))
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{now_ms, Store};

    async fn expires(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT expires_at FROM sessions").fetch_one(store.pool()).await.unwrap()
    }

    #[tokio::test]
    async fn a_used_session_lives_on_but_never_past_its_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite:{}", dir.path().join("t.db").display())).await.unwrap();
        let (token, _) = store.create_session("ada", 1000).await.unwrap();
        let idle = 3_600_000;
        store.touch_session(&token, idle, 10 * idle).await.unwrap();
        let moved = expires(&store).await;
        assert!(moved > now_ms() + idle - 5_000, "used: ends an idle period from now");
        store.touch_session(&token, idle, 10 * idle).await.unwrap();
        assert_eq!(expires(&store).await, moved, "not written again within a minute");
        store.touch_session(&token, 100 * idle, 2 * idle).await.unwrap();
        assert!(expires(&store).await <= now_ms() + 2 * idle, "never past the lifetime");
    }
}
