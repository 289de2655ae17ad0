//! Sessions that end when idle: a session's end moves forward as it is used,
//! never past a fixed lifetime from sign-in.

use crate::{hash_token, now_ms, Result, Store};

impl Store {
    /// The session was just used: it now ends `idle_ms` from now, but no later than
    /// `max_ms` after it began. Written at most once a minute per session.
    pub async fn touch_session(&self, token: &str, idle_ms: i64, max_ms: i64) -> Result<()> {
        let now = now_ms();
        let until = now + idle_ms;
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT created_at, expires_at FROM sessions WHERE token_hash = $1")
            .bind(hash_token(token))
            .fetch_optional(self.pool())
            .await?;
        let Some((created, expires)) = row else { return Ok(()) };
        let target = until.min(created + max_ms);
        if target - expires < 60_000 {
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
