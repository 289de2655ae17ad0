//! Whether an agent holds a job: `AgentAttempt` names the agent and the attempt it says it
//! runs, and `held_by` is the check every agent write passes (403 `NotHolder` for another
//! agent's attempt, 409 `Stale` for an old one). A leaf: the queue, logs, test queue, test
//! results and artifacts all use it.

use crate::{Result, StoreError};
use sqlx::Row;

/// Who writes about a job: the agent, and the attempt it says it runs. Every agent write
/// in the store takes one, so none can be made without naming the agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentAttempt<'a> {
    pub job_id: i64,
    pub attempt: i64,
    pub agent: &'a str,
}

/// The build of job `job_id` when `agent` holds it in its current, running `attempt`.
/// Every write from an agent passes here (or repeats this `WHERE`): anything else is refused,
/// with 403 (`NotHolder`) when another agent holds that attempt and 409 (`Stale`) otherwise.
pub(crate) async fn held_by(conn: &mut sqlx::AnyConnection, by: AgentAttempt<'_>) -> Result<i64> {
    let AgentAttempt { job_id, attempt, agent } = by;
    let build: Option<i64> = sqlx::query_scalar("SELECT build_id FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running' AND agent_name = $3")
        .bind(job_id)
        .bind(attempt)
        .bind(agent)
        .fetch_optional(&mut *conn)
        .await?;
    match build {
        Some(b) => Ok(b),
        None => Err(why_not_held(conn, job_id, attempt, agent).await?),
    }
}

/// Why `agent` may not write attempt `attempt` of job `job_id`: not found, another agent's, or stale.
pub(crate) async fn why_not_held(conn: &mut sqlx::AnyConnection, job_id: i64, attempt: i64, agent: &str) -> Result<StoreError> {
    let row = sqlx::query("SELECT attempt, agent_name FROM jobs WHERE id = $1").bind(job_id).fetch_optional(&mut *conn).await?;
    let Some(row) = row else { return Ok(StoreError::NotFound(format!("job {job_id}"))) };
    let holder: Option<String> = row.try_get("agent_name")?;
    Ok(if row.try_get::<i64, _>("attempt")? == attempt && holder.as_deref() != Some(agent) {
        StoreError::NotHolder { job_id, agent: agent.to_string() }
    } else {
        StoreError::Stale { job_id, attempt }
    })
}
