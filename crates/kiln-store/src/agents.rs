//! Agents: registration with a per-agent token, labels, heartbeats, drain.

use crate::rows::{json_map, to_json};
use crate::{now_ms, Result, Store, StoreError};
use sqlx::Row;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub concurrency: i64,
    pub status: serde_json::Value,
    pub heartbeat_secs: i64,
    pub draining: bool,
    pub last_seen: Option<i64>,
}

impl AgentRow {
    /// Online while its heartbeats arrive (three missed beats make it offline).
    pub fn online(&self, now: i64) -> bool {
        self.last_seen.is_some_and(|t| now - t <= self.heartbeat_secs * 3000 + 2000)
    }
}

const COLS: &str = "id, name, labels, concurrency, status, heartbeat_secs, draining, last_seen";

fn from_row(r: &sqlx::any::AnyRow) -> Result<AgentRow> {
    let status: String = r.try_get("status")?;
    Ok(AgentRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        labels: json_map(&r.try_get::<String, _>("labels")?)?,
        concurrency: r.try_get("concurrency")?,
        status: serde_json::from_str(&status).map_err(|e| StoreError::Corrupt(format!("agent status: {e}")))?,
        heartbeat_secs: r.try_get("heartbeat_secs")?,
        draining: r.try_get::<i64, _>("draining")? != 0,
        last_seen: r.try_get("last_seen")?,
    })
}

impl Store {
    /// Register (or re-register) an agent by name with a fresh token.
    pub async fn register_agent(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        concurrency: i64,
        heartbeat_secs: i64,
        token_hash: &str,
    ) -> Result<AgentRow> {
        let _w = self.write_turn().await;
        let now = now_ms();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (name, token_hash, labels, concurrency, heartbeat_secs, last_seen, created_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, labels = excluded.labels, concurrency = excluded.concurrency, \
             heartbeat_secs = excluded.heartbeat_secs, last_seen = excluded.last_seen, draining = 0, status = '{{}}' RETURNING {COLS}"
        )))
        .bind(name)
        .bind(token_hash)
        .bind(to_json(labels))
        .bind(concurrency)
        .bind(heartbeat_secs)
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        from_row(&row)
    }

    pub async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM agents WHERE token_hash = $1")))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn agent_by_name(&self, name: &str) -> Result<AgentRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM agents WHERE name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent {name:?}")))?;
        from_row(&row)
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM agents ORDER BY name")))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Record a heartbeat: the agent is alive, with this status. Returns whether it must drain.
    pub async fn agent_seen(&self, id: i64, status: Option<&serde_json::Value>) -> Result<bool> {
        let _w = self.write_turn().await;
        let draining: i64 = sqlx::query_scalar(
            "UPDATE agents SET last_seen = $1, status = CASE WHEN $2 = '' THEN status ELSE $2 END WHERE id = $3 RETURNING draining",
        )
        .bind(now_ms())
        .bind(status.filter(|s| !s.is_null()).map(to_json).unwrap_or_default())
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        Ok(draining != 0)
    }

    /// Ask an agent to drain: take no new job, finish its current ones, exit.
    pub async fn set_draining(&self, name: &str, draining: bool) -> Result<()> {
        let _w = self.write_turn().await;
        let n = sqlx::query("UPDATE agents SET draining = $1 WHERE name = $2")
            .bind(draining as i64)
            .bind(name)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("agent {name:?}")));
        }
        Ok(())
    }
}
