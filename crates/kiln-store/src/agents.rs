//! Agents: enrolment (with the server's secret or an admin's enrolment secret, whose
//! limits the agent keeps), a per-agent token that survives restarts and can be rotated or
//! revoked, labels, heartbeats, drain. A name online under another token is never taken over.

use crate::rows::{json_map, to_json};
use crate::{now_ms, Result, Store, StoreError};
use sqlx::Row;
use std::collections::BTreeMap;

/// Whether an agent may still work, read again while it waits (one read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Revoked or removed: its token no longer works.
    pub revoked: bool,
    pub draining: bool,
}

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
    /// The enrolment secret it registered with (none: the server's own agent secret).
    pub enrolment_id: Option<i64>,
    /// Labels it must keep (`key=glob`), from its enrolment.
    pub label_limit: BTreeMap<String, String>,
    /// Projects (names or globs) whose jobs it may take; empty: any.
    pub project_limit: Vec<String>,
    /// The hash of its token when this row was read (the caller's, for a row read by token): a
    /// claim takes a job only while the agent still has it, not after a revoke or a new enrolment.
    pub token_hash: String,
}

/// What an agent says about itself when it registers.
#[derive(Debug, Clone)]
pub struct AgentSpec<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub concurrency: i64,
    pub heartbeat_secs: i64,
}

/// What lets an agent enrol.
#[derive(Debug, Clone, Copy)]
pub enum EnrolWith<'a> {
    /// The server's own agent secret (`--agent-token`): no limits.
    ServerSecret,
    /// An enrolment secret an admin created, by its hash.
    Secret(&'a str),
}

impl AgentRow {
    /// Online while its heartbeats arrive (three missed beats make it offline).
    pub fn online(&self, now: i64) -> bool {
        self.last_seen.is_some_and(|t| now - t <= self.heartbeat_secs * 3000 + 2000)
    }

    /// May it take jobs of this project (its enrolment's project limit)?
    pub fn may_serve(&self, project: &str) -> bool {
        self.project_limit.is_empty() || self.project_limit.iter().any(|p| kiln_core::labels::glob_match(p, project))
    }
}

/// Refuse labels outside an enrolment's label limit, naming what is missing.
fn check_label_limit(name: &str, limit: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> Result<()> {
    let missing = kiln_core::labels::missing(limit, labels);
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Refused(format!(
        "agent {name:?} was enrolled for labels {} only, and these labels do not match: {}",
        limit.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
        missing.join(", ")
    )))
}

const COLS: &str = "id, name, labels, concurrency, status, heartbeat_secs, draining, last_seen, enrolment_id, label_limit, project_limit, token_hash";

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
        enrolment_id: r.try_get("enrolment_id")?,
        label_limit: json_map(&r.try_get::<String, _>("label_limit")?)?,
        project_limit: crate::rows::json_list(&r.try_get::<String, _>("project_limit")?)?,
        token_hash: r.try_get("token_hash")?,
    })
}

impl Store {
    /// Enrol an agent under a new token. The enrolment secret must be known, not revoked
    /// and not used up (`Ok(None)` otherwise); the labels must match its label limit. A name
    /// that is online under another token is refused (`Conflict`): its jobs stay where they
    /// are. An offline name is taken over by the new token.
    pub async fn enrol_agent(&self, with: EnrolWith<'_>, a: &AgentSpec<'_>, token_hash: &str) -> Result<Option<AgentRow>> {
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        let (enrolment_id, label_limit, project_limit) = match with {
            EnrolWith::ServerSecret => (None, BTreeMap::new(), Vec::new()),
            EnrolWith::Secret(hash) => {
                let row = sqlx::query(
                    "UPDATE enrolments SET used = used + 1, uses_left = CASE WHEN uses_left IS NULL THEN NULL ELSE uses_left - 1 END \
                     WHERE secret_hash = $1 AND revoked_at IS NULL AND (uses_left IS NULL OR uses_left > 0) RETURNING id, labels, projects",
                )
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let id: i64 = row.try_get("id")?;
                (Some(id), json_map(&row.try_get::<String, _>("labels")?)?, crate::rows::json_list(&row.try_get::<String, _>("projects")?)?)
            }
        };
        check_label_limit(a.name, &label_limit, a.labels)?;
        let now = now_ms();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (name, token_hash, labels, concurrency, heartbeat_secs, last_seen, created_at, enrolment_id, label_limit, project_limit) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) \
             ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, labels = excluded.labels, concurrency = excluded.concurrency, \
             heartbeat_secs = excluded.heartbeat_secs, last_seen = excluded.last_seen, draining = 0, status = '{{}}', \
             enrolment_id = excluded.enrolment_id, label_limit = excluded.label_limit, project_limit = excluded.project_limit \
             WHERE agents.last_seen IS NULL OR agents.last_seen < $6 - agents.heartbeat_secs * 3000 - 2000 RETURNING {COLS}"
        )))
        .bind(a.name)
        .bind(token_hash)
        .bind(to_json(a.labels))
        .bind(a.concurrency)
        .bind(a.heartbeat_secs)
        .bind(now)
        .bind(enrolment_id)
        .bind(to_json(&label_limit))
        .bind(to_json(&project_limit))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!(
                "agent name {:?} is online under another token: give this agent another --name, or revoke the other one with `kiln enrol revoke-agent {}`",
                a.name, a.name
            )));
        };
        tx.commit().await?;
        from_row(&row).map(Some)
    }

    /// An enrolled agent registers again with its own token (it restarted): same name, labels
    /// still within its enrolment's limit. `Ok(None)` when no agent has that token.
    pub async fn reregister_agent(&self, token_hash: &str, a: &AgentSpec<'_>) -> Result<Option<AgentRow>> {
        let Some(cur) = self.agent_by_token(token_hash).await? else { return Ok(None) };
        if cur.name != a.name {
            return Err(StoreError::Conflict(format!(
                "this agent token belongs to agent {:?}, not {:?}: run it as --name {:?}, or delete the saved token to enrol a new agent",
                cur.name, a.name, cur.name
            )));
        }
        check_label_limit(a.name, &cur.label_limit, a.labels)?;
        let _w = self.write_turn().await;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET labels = $1, concurrency = $2, heartbeat_secs = $3, last_seen = $4, draining = 0, status = '{{}}' \
             WHERE id = $5 AND token_hash = $6 RETURNING {COLS}"
        )))
        .bind(to_json(a.labels))
        .bind(a.concurrency)
        .bind(a.heartbeat_secs)
        .bind(now_ms())
        .bind(cur.id)
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Replace an agent's token: the old one stops working at once.
    pub async fn rotate_agent_token(&self, id: i64, old_hash: &str, new_hash: &str) -> Result<()> {
        let _w = self.write_turn().await;
        let n = sqlx::query("UPDATE agents SET token_hash = $1 WHERE id = $2 AND token_hash = $3")
            .bind(new_hash)
            .bind(id)
            .bind(old_hash)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!("agent {id}'s token changed meanwhile; register again")));
        }
        Ok(())
    }

    /// Whether the agent's token was revoked (or the agent removed), and whether it drains: a
    /// claim waiting under the old token asks after each wake-up, so a revoked agent is handed
    /// no job and a draining one stops waiting.
    pub async fn agent_standing(&self, name: &str) -> Result<Standing> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT token_hash, draining FROM agents WHERE name = $1").bind(name).fetch_optional(self.pool()).await?;
        Ok(match row {
            Some((token, draining)) if token != "revoked" => Standing { revoked: false, draining: draining != 0 },
            _ => Standing { revoked: true, draining: false },
        })
    }

    /// Revoke an agent: its token stops working and it counts as offline, so it can come
    /// back only by enrolling again with a valid enrolment secret. Its running jobs are
    /// taken back (returned).
    pub async fn revoke_agent(&self, name: &str) -> Result<Vec<crate::LeaseExpiry>> {
        {
            let _w = self.write_turn().await;
            let n = sqlx::query("UPDATE agents SET token_hash = 'revoked', last_seen = NULL WHERE name = $1")
                .bind(name)
                .execute(self.pool())
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound(format!("agent {name:?}")));
            }
        }
        self.requeue_agent_jobs(name, "its agent was revoked").await
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
