//! People: users with password hashes (hashed by the server), sign-in sessions
//! (stored as SHA-256 of the cookie value, with their CSRF token), and the
//! personal API tokens each user makes.

use crate::{hash_token, now_ms, random_token, Result, Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub admin: bool,
    /// Disabled users can neither sign in nor use their tokens.
    pub disabled: bool,
    pub created_at: i64,
}

/// A live sign-in session: who, and the CSRF token its forms must carry.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user: String,
    pub admin: bool,
    pub csrf: String,
    pub expires_at: i64,
}

/// A personal API token as listed (the token itself is never kept).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: i64,
    pub user: String,
    pub admin: bool,
    pub label: String,
    pub created_at: i64,
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        admin: r.try_get::<i64, _>("is_admin")? != 0,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

const USER_COLS: &str = "id, name, password_hash, is_admin, disabled, created_at";

impl Store {
    pub async fn create_user(&self, name: &str, password_hash: &str, admin: bool) -> Result<UserRow> {
        let _w = self.write_turn().await;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE name = $1").bind(name).fetch_optional(self.pool()).await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!("user {name:?} already exists")));
        }
        let row = sqlx::query(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, password_hash, is_admin, disabled, created_at",
        )
        .bind(name)
        .bind(password_hash)
        .bind(admin as i64)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        user_from_row(&row)
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLS} FROM users WHERE name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLS} FROM users ORDER BY name"))).fetch_all(self.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(self.pool()).await?)
    }

    /// Change a user's password; their sessions end (sign in again), except `keep` (the session
    /// that made the change, given as its cookie value).
    pub async fn set_password(&self, name: &str, password_hash: &str, keep: Option<&str>) -> Result<()> {
        let _w = self.write_turn().await;
        let n = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        }
        let keep = keep.map(hash_token).unwrap_or_default();
        sqlx::query("DELETE FROM sessions WHERE user_name = $1 AND token_hash <> $2").bind(name).bind(keep).execute(self.pool()).await?;
        Ok(())
    }

    /// Disable or enable a user. Disabling ends their sessions and deletes their API tokens at once.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let n = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2").bind(disabled as i64).bind(name).execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        }
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_name = $1").bind(name).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM api_tokens WHERE user_name = $1").bind(name).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Make a user an admin or not (checked at every request, so it takes effect at once).
    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<()> {
        let _w = self.write_turn().await;
        let n = sqlx::query("UPDATE users SET is_admin = $1 WHERE name = $2").bind(admin as i64).bind(name).execute(self.pool()).await?.rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        }
        Ok(())
    }

    /// Remove a user with their sessions, tokens and project roles.
    pub async fn remove_user(&self, name: &str) -> Result<()> {
        let _w = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        let n = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        }
        for table in ["sessions", "api_tokens", "project_members"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE user_name = $1"))).bind(name).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Delete every API token of `user`; returns how many there were.
    pub async fn revoke_tokens_of(&self, user: &str) -> Result<u64> {
        let _w = self.write_turn().await;
        Ok(sqlx::query("DELETE FROM api_tokens WHERE user_name = $1").bind(user).execute(self.pool()).await?.rows_affected())
    }

    /// Start a session for `user`; returns (cookie value, CSRF token).
    pub async fn create_session(&self, user: &str, ttl_ms: i64) -> Result<(String, String)> {
        let _w = self.write_turn().await;
        let token = random_token();
        let csrf = random_token();
        let now = now_ms();
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now).execute(self.pool()).await?;
        sqlx::query("INSERT INTO sessions (token_hash, user_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash_token(&token))
            .bind(user)
            .bind(&csrf)
            .bind(now)
            .bind(now + ttl_ms)
            .execute(self.pool())
            .await?;
        Ok((token, csrf))
    }

    /// The live session for a cookie value (its user must still exist).
    pub async fn session(&self, token: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT s.user_name, s.csrf, s.expires_at, u.is_admin FROM sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(hash_token(token))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                user: r.try_get("user_name")?,
                admin: r.try_get::<i64, _>("is_admin")? != 0,
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, token: &str) -> Result<()> {
        let _w = self.write_turn().await;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(hash_token(token)).execute(self.pool()).await?;
        Ok(())
    }

    /// Make a new API token for `user`; returns it (shown once) and its id.
    pub async fn create_token(&self, user: &str, admin: bool, label: &str) -> Result<(String, i64)> {
        let token = random_token();
        self.add_token(&token, user, admin, label).await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens WHERE token_hash = $1").bind(hash_token(&token)).fetch_one(self.pool()).await?;
        Ok((token, id))
    }

    /// A user's API tokens (or everyone's, with `None`), newest first.
    pub async fn tokens_of(&self, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT t.id, t.user_name, COALESCE(u.is_admin, t.is_admin) AS is_admin, t.label, t.created_at \
             FROM api_tokens t LEFT JOIN users u ON u.name = t.user_name WHERE ($1 IS NULL OR t.user_name = $1) ORDER BY t.id DESC",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    user: r.try_get("user_name")?,
                    admin: r.try_get::<i64, _>("is_admin")? != 0,
                    label: r.try_get("label")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Revoke one of `user`'s tokens (any user's, with `None`: admins).
    pub async fn revoke_token(&self, user: Option<&str>, id: i64) -> Result<()> {
        let _w = self.write_turn().await;
        let n = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND ($2 IS NULL OR user_name = $2)")
            .bind(id)
            .bind(user)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(match user {
                Some(u) => format!("token {id} of user {u:?}"),
                None => format!("token {id}"),
            }));
        }
        Ok(())
    }
}
