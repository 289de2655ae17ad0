//! What retention reads and removes: every build's facts per project, disk use per
//! project, and removing a finished build's rows (jobs, attempts, test results,
//! artifacts, its uploaded run, notifications, its runs as quarantine evidence; the
//! quarantine's changes keep naming it). The files go in the server's
//! `services/retention.rs`, which calls these.

use crate::{Result, Store};
use kiln_core::retention::BuildFacts;
use sqlx::Row;

/// Bytes a project's builds hold: logs (as written, before compression), artifacts, and the
/// packages of its uploaded runs.
#[derive(Debug, Clone, Default)]
pub struct DiskUse {
    pub log_bytes: u64,
    pub artifact_bytes: u64,
    pub package_bytes: u64,
}

impl Store {
    /// Every build of a project, as retention sees it.
    pub async fn retention_facts(&self, project_id: i64) -> Result<Vec<BuildFacts>> {
        let rows = sqlx::query("SELECT id, branch, status, created_at FROM builds WHERE project_id = $1").bind(project_id).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let st = crate::rows::build_status(r, "status")?;
                Ok(BuildFacts {
                    id: r.try_get("id")?,
                    branch: r.try_get("branch")?,
                    passed: st == kiln_core::state::BuildStatus::Passed,
                    finished: st.is_final(),
                    ran: st != kiln_core::state::BuildStatus::Skipped,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The job ids of a build (their log and artifact folders).
    pub async fn job_ids_of_build(&self, build_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM jobs WHERE build_id = $1").bind(build_id).fetch_all(self.pool()).await?)
    }

    /// Remove a finished build and everything recorded under it (not its files), except its
    /// tests' runs as quarantine evidence: those are capped per test (`MAX_WINDOW`) where they
    /// are recorded, and a branch that keeps fewer builds than the quarantine's window must
    /// still be able to quarantine and release a test.
    pub async fn delete_build(&self, build_id: i64) -> Result<()> {
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM attempts WHERE job_id IN (SELECT id FROM jobs WHERE build_id = $1)",
            "DELETE FROM log_chunks WHERE job_id IN (SELECT id FROM jobs WHERE build_id = $1)",
            "DELETE FROM artifacts WHERE build_id = $1",
            "DELETE FROM test_results WHERE build_id = $1",
            "DELETE FROM test_batches WHERE build_id = $1",
            "DELETE FROM test_items WHERE build_id = $1",
            "DELETE FROM test_groups WHERE build_id = $1",
            "DELETE FROM build_quarantine WHERE build_id = $1",
            "DELETE FROM quarantine_builds WHERE build_id = $1",
            "DELETE FROM notifications WHERE build_id = $1",
            "DELETE FROM uploads WHERE build_id = $1",
            "DELETE FROM jobs WHERE build_id = $1",
            "DELETE FROM builds WHERE id = $1",
        ] {
            sqlx::query(sql).bind(build_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forget a build's artifacts (the build stays).
    pub async fn delete_artifacts_of_build(&self, build_id: i64) -> Result<u64> {
        let _w = self.write_turn().await;
        let n = sqlx::query("DELETE FROM artifacts WHERE build_id = $1").bind(build_id).execute(self.pool()).await?;
        Ok(n.rows_affected())
    }

    /// Log, artifact and package bytes per project id.
    pub async fn disk_use(&self) -> Result<std::collections::HashMap<i64, DiskUse>> {
        let mut out: std::collections::HashMap<i64, DiskUse> = std::collections::HashMap::new();
        let logs = sqlx::query("SELECT b.project_id AS p, CAST(COALESCE(SUM(a.log_len), 0) AS BIGINT) AS n FROM attempts a JOIN jobs j ON j.id = a.job_id JOIN builds b ON b.id = j.build_id GROUP BY b.project_id")
            .fetch_all(self.pool())
            .await?;
        for r in logs {
            let n: Option<i64> = r.try_get("n")?;
            out.entry(r.try_get("p")?).or_default().log_bytes = n.unwrap_or(0).max(0) as u64;
        }
        let arts = sqlx::query("SELECT b.project_id AS p, CAST(COALESCE(SUM(a.size), 0) AS BIGINT) AS n FROM artifacts a JOIN builds b ON b.id = a.build_id GROUP BY b.project_id").fetch_all(self.pool()).await?;
        for r in arts {
            let n: Option<i64> = r.try_get("n")?;
            out.entry(r.try_get("p")?).or_default().artifact_bytes = n.unwrap_or(0).max(0) as u64;
        }
        let packages = sqlx::query("SELECT b.project_id AS p, CAST(COALESCE(SUM(u.size), 0) AS BIGINT) AS n FROM uploads u JOIN builds b ON b.id = u.build_id GROUP BY b.project_id").fetch_all(self.pool()).await?;
        for r in packages {
            let n: Option<i64> = r.try_get("n")?;
            out.entry(r.try_get("p")?).or_default().package_bytes = n.unwrap_or(0).max(0) as u64;
        }
        Ok(out)
    }
}
