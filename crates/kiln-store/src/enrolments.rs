//! Enrolment secrets: what an admin hands out so that agents can register. Each may be
//! limited to labels (an agent enrolled with it must keep matching them) and projects
//! (its agents take no other project's jobs), to a number of uses, and revoked.
//! Only the secret's hash is kept.

use crate::rows::{json_list, json_map, to_json};
use crate::{hash_token, now_ms, random_token, Result, Store, StoreError};
use sqlx::Row;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct EnrolmentRow {
    pub id: i64,
    pub labels: BTreeMap<String, String>,
    pub projects: Vec<String>,
    /// Registrations left; `None`: unlimited.
    pub uses_left: Option<i64>,
    pub used: i64,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const COLS: &str = "id, labels, projects, uses_left, used, created_by, created_at, revoked_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<EnrolmentRow> {
    Ok(EnrolmentRow {
        id: r.try_get("id")?,
        labels: json_map(&r.try_get::<String, _>("labels")?)?,
        projects: json_list(&r.try_get::<String, _>("projects")?)?,
        uses_left: r.try_get("uses_left")?,
        used: r.try_get("used")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Store {
    /// Make an enrolment secret. Returns it with the secret itself, which is shown once.
    pub async fn create_enrolment(&self, created_by: &str, labels: &BTreeMap<String, String>, projects: &[String], uses: Option<i64>) -> Result<(EnrolmentRow, String)> {
        let secret = format!("kiln-enrol-{}", random_token());
        let _w = self.write_turn().await;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO enrolments (secret_hash, labels, projects, uses_left, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLS}"
        )))
        .bind(hash_token(&secret))
        .bind(to_json(labels))
        .bind(to_json(&projects))
        .bind(uses)
        .bind(created_by)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok((from_row(&row)?, secret))
    }

    pub async fn list_enrolments(&self) -> Result<Vec<EnrolmentRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM enrolments ORDER BY id"))).fetch_all(self.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    /// Revoke an enrolment secret: no agent registers with it any more. Agents that
    /// enrolled with it keep their own tokens until they are revoked one by one.
    pub async fn revoke_enrolment(&self, id: i64) -> Result<()> {
        let _w = self.write_turn().await;
        let n = sqlx::query("UPDATE enrolments SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("enrolment {id}")));
        }
        Ok(())
    }
}
