//! Aggregates read at a metrics scrape and by "why is it waiting?": ready jobs by the labels
//! they require, and how many jobs each agent runs. Bounded: one row per label set or agent.

use crate::rows::json_map;
use crate::{Result, Store};
use sqlx::Row;
use std::collections::BTreeMap;

impl Store {
    /// Jobs ready and waiting for an agent, counted by the labels they require.
    pub async fn queue_depth_by_requires(&self) -> Result<Vec<(BTreeMap<String, String>, i64)>> {
        let rows = sqlx::query("SELECT requires, COUNT(*) AS n FROM jobs WHERE status = 'queued' AND ready = 1 GROUP BY requires")
            .fetch_all(self.pool())
            .await?;
        let mut out: BTreeMap<BTreeMap<String, String>, i64> = BTreeMap::new();
        for r in &rows {
            // Two spellings of one set (key order) count together.
            *out.entry(json_map(&r.try_get::<String, _>("requires")?)?).or_default() += r.try_get::<i64, _>("n")?;
        }
        Ok(out.into_iter().collect())
    }

    /// Running jobs by agent name: (job id, project name), oldest first.
    pub async fn running_by_agent(&self) -> Result<BTreeMap<String, Vec<(i64, String)>>> {
        let rows = sqlx::query(
            "SELECT j.agent_name, j.id, p.name FROM jobs j JOIN builds b ON b.id = j.build_id JOIN projects p ON p.id = b.project_id \
             WHERE j.status = 'running' AND j.agent_name IS NOT NULL ORDER BY j.id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        for r in &rows {
            out.entry(r.try_get("agent_name")?).or_default().push((r.try_get("id")?, r.try_get("name")?));
        }
        Ok(out)
    }
}
