//! API tokens for people and scripts (stored as SHA-256 hashes, never in clear).

use crate::{hash_token, now_ms, Result, Store};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub user: String,
    pub admin: bool,
    pub label: String,
}

impl Store {
    /// Store a token (idempotent for the same token).
    pub async fn add_token(&self, token: &str, user: &str, admin: bool, label: &str) -> Result<()> {
        let _w = self.write_turn().await;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_name, is_admin, label, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(hash_token(token))
        .bind(user)
        .bind(admin as i64)
        .bind(label)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The token's owner as they are now: their admin flag is read from the user at every call
    /// (a demoted admin's tokens lose it at once), and a disabled user's tokens are refused.
    /// A token whose user has no account (an `--admin-token` seeded before any user) keeps its own flag.
    pub async fn token(&self, token: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "SELECT t.id, t.user_name, COALESCE(u.is_admin, t.is_admin) AS is_admin, t.label FROM api_tokens t \
             LEFT JOIN users u ON u.name = t.user_name WHERE t.token_hash = $1 AND COALESCE(u.disabled, 0) = 0",
        )
            .bind(hash_token(token))
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(TokenRow {
                id: r.try_get("id")?,
                user: r.try_get("user_name")?,
                admin: r.try_get::<i64, _>("is_admin")? != 0,
                label: r.try_get("label")?,
            })
        })
        .transpose()
    }

    /// Delete the tokens seeded under `label` except `keep` (a token given by a flag that has
    /// since changed or gone stops working).
    pub async fn forget_seeded_tokens(&self, label: &str, keep: Option<&str>) -> Result<u64> {
        let _w = self.write_turn().await;
        let keep = keep.map(hash_token).unwrap_or_default();
        Ok(sqlx::query("DELETE FROM api_tokens WHERE label = $1 AND token_hash <> $2").bind(label).bind(keep).execute(self.pool()).await?.rows_affected())
    }

    pub async fn count_tokens(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens").fetch_one(self.pool()).await?)
    }
}
