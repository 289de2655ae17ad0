//! Read-only queries behind the console's pages: one project's builds by page
//! with filters (each filter has its index, see migration 0004), the newest
//! build per branch, recent durations, the queue, the running jobs, the
//! uploaded test runs. Every query is bounded (LIMIT) so a page costs the same
//! with ten builds or ten thousand.

use crate::builds::{from_row as build_from_row, COLS as BUILD_COLS};
use crate::rows::json_map;
use crate::{BuildFilter, BuildRow, Result, Store};
use sqlx::Row;
use std::collections::BTreeMap;

/// A job waiting in the queue, with what the queue page shows.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub job_id: i64,
    pub build_id: i64,
    pub key: String,
    pub project: String,
    pub public: bool,
    pub requires: BTreeMap<String, String>,
    pub queued_at: i64,
}

/// A job some agent runs now.
#[derive(Debug, Clone)]
pub struct RunningJobView {
    pub job_id: i64,
    pub build_id: i64,
    pub key: String,
    pub agent: String,
    pub project: String,
    pub public: bool,
    pub started_at: Option<i64>,
}

/// Counts of what is not yet claimable.
#[derive(Debug, Clone, Default)]
pub struct QueueCounts {
    /// Queued jobs still waiting for jobs they need.
    pub blocked: i64,
    /// Builds whose pipeline is still being read.
    pub unmaterialized: i64,
}

impl Store {
    /// One page of a project's builds, newest first, and how many match in all.
    /// Only the filters given appear in the SQL, so each uses its own index.
    pub async fn builds_page(&self, project_id: i64, f: &BuildFilter, limit: i64, offset: i64) -> Result<(Vec<BuildRow>, i64)> {
        let mut where_ = String::from("b.project_id = $1");
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in [("b.branch", &f.branch), ("b.status", &f.status), ("b.trigger_kind", &f.trigger)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                binds.push(v.to_string());
                where_.push_str(&format!(" AND {col} = ${}", binds.len() + 1));
            }
        }
        let n = binds.len();
        let sql = format!(
            "SELECT {BUILD_COLS} FROM builds b JOIN projects p ON p.id = b.project_id WHERE {where_} ORDER BY b.id DESC LIMIT ${} OFFSET ${}",
            n + 2,
            n + 3
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(project_id);
        for b in &binds {
            q = q.bind(b.clone());
        }
        let rows = q.bind(limit).bind(offset).fetch_all(self.pool()).await?;
        let count_sql = format!("SELECT COUNT(*) FROM builds b WHERE {where_}");
        let mut c = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql)).bind(project_id);
        for b in &binds {
            c = c.bind(b.clone());
        }
        let total: i64 = c.fetch_one(self.pool()).await?;
        Ok((rows.iter().map(build_from_row).collect::<Result<_>>()?, total))
    }

    /// The newest build of each branch of a project (most recent branches first).
    pub async fn latest_per_branch(&self, project_id: i64, limit: i64) -> Result<Vec<BuildRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLS} FROM builds b JOIN projects p ON p.id = b.project_id \
             WHERE b.id IN (SELECT MAX(id) FROM builds WHERE project_id = $1 GROUP BY branch) ORDER BY b.id DESC LIMIT $2"
        )))
        .bind(project_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(build_from_row).collect()
    }

    /// A project's newest builds (for the duration chart).
    pub async fn recent_builds(&self, project_id: i64, limit: i64) -> Result<Vec<BuildRow>> {
        self.builds_page(project_id, &BuildFilter::default(), limit, 0).await.map(|(b, _)| b)
    }

    /// Branches a project has builds for (for the filter menu).
    pub async fn build_branches(&self, project_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT branch FROM builds WHERE project_id = $1 ORDER BY branch LIMIT 200")
            .bind(project_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Uploaded test runs of every project, newest first.
    pub async fn recent_uploads(&self, limit: i64) -> Result<Vec<BuildRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLS} FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.trigger_kind = 'upload' ORDER BY b.id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(build_from_row).collect()
    }

    /// Ready jobs no agent has taken yet, oldest first.
    pub async fn queue_view(&self, limit: i64) -> Result<(Vec<QueuedJob>, QueueCounts)> {
        let rows = sqlx::query(
            "SELECT j.id, j.build_id, j.job_key, j.requires, j.queued_at, j.created_at, p.name, p.public FROM jobs j \
             JOIN builds b ON b.id = j.build_id JOIN projects p ON p.id = b.project_id \
             WHERE j.status = 'queued' AND j.ready = 1 ORDER BY j.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for r in &rows {
            jobs.push(QueuedJob {
                job_id: r.try_get("id")?,
                build_id: r.try_get("build_id")?,
                key: r.try_get("job_key")?,
                project: r.try_get("name")?,
                public: r.try_get::<i64, _>("public")? != 0,
                requires: json_map(&r.try_get::<String, _>("requires")?)?,
                queued_at: r.try_get::<Option<i64>, _>("queued_at")?.unwrap_or(r.try_get("created_at")?),
            });
        }
        let blocked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND ready = 0").fetch_one(self.pool()).await?;
        let unmaterialized: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM builds WHERE materialized = 0").fetch_one(self.pool()).await?;
        Ok((jobs, QueueCounts { blocked, unmaterialized }))
    }

    /// Every running job with its agent and project.
    pub async fn running_jobs(&self) -> Result<Vec<RunningJobView>> {
        let rows = sqlx::query(
            "SELECT j.id, j.build_id, j.job_key, j.agent_name, j.started_at, p.name, p.public FROM jobs j \
             JOIN builds b ON b.id = j.build_id JOIN projects p ON p.id = b.project_id \
             WHERE j.status = 'running' ORDER BY j.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunningJobView {
                    job_id: r.try_get("id")?,
                    build_id: r.try_get("build_id")?,
                    key: r.try_get("job_key")?,
                    agent: r.try_get::<Option<String>, _>("agent_name")?.unwrap_or_default(),
                    project: r.try_get("name")?,
                    public: r.try_get::<i64, _>("public")? != 0,
                    started_at: r.try_get("started_at")?,
                })
            })
            .collect()
    }
}
