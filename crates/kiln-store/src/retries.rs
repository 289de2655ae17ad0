//! Rerun only what failed: a new build of the same commit holding copies of the original's
//! failed plain jobs and of every shard of its failed `tests:` jobs, linked to the original
//! (`build_retries`). A `tests:` group that had failed tests runs only those (`retry_tests`:
//! its listed ids are cut down to them); one that failed without a failed test runs whole.
//! Also a build's batches as they were claimed, for `kiln run --replay`.

use kiln_core::state::JobStatus;
use crate::builds::NewBuild;
use crate::queue::NewJob;
use crate::{BuildRow, Result, Store, StoreError};
use sqlx::Row;
use std::collections::{BTreeSet, HashSet};

impl Store {
    /// Start a build that reruns what failed in `build_id` (see the module's doc), triggered by
    /// `by`. Errors (Conflict) when the build has not finished or nothing in it failed.
    pub async fn retry_failed(&self, build_id: i64, by: &str) -> Result<BuildRow> {
        let orig = self.build(build_id).await?;
        if orig.finished_at.is_none() {
            return Err(StoreError::Conflict(format!("build {build_id} has not finished yet: retry it once it has")));
        }
        let commit = orig.commit.clone();
        let jobs = self.jobs_of_build(build_id).await?;
        let bad = |s: &JobStatus| matches!(s, JobStatus::Failed | JobStatus::Errored);
        // Every failed job's group (a plain job is its own group).
        let group_of = |key: &str, spec: &str| {
            let shards = serde_json::from_str::<serde_json::Value>(spec).ok().and_then(|v| v["shard_count"].as_u64()).unwrap_or(1) as u32;
            kiln_core::testrun::group_key(key, shards)
        };
        let failed_groups: BTreeSet<String> = jobs.iter().filter(|j| bad(&j.status)).map(|j| group_of(&j.key, &j.spec)).collect();
        if failed_groups.is_empty() {
            return Err(StoreError::Conflict(format!("build {build_id} has no failed job to retry")));
        }
        let copied: Vec<_> = jobs.iter().filter(|j| failed_groups.contains(&group_of(&j.key, &j.spec))).collect();
        let keys: HashSet<&str> = copied.iter().map(|j| j.key.as_str()).collect();
        let mut tests: Vec<(String, String)> = Vec::new();
        for g in &failed_groups {
            let failed: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT test_key FROM test_items WHERE build_id = $1 AND group_key = $2 AND state = 'done' AND superseded = 0 \
                 AND outcome IN ('failed', 'errored') ORDER BY test_key",
            )
            .bind(build_id)
            .bind(g)
            .fetch_all(self.pool())
            .await?;
            tests.extend(failed.into_iter().map(|t| (g.clone(), t)));
        }
        let nb = self
            .create_build(&NewBuild {
                project_id: orig.project_id,
                branch: orig.branch.clone(),
                requested_commit: Some(commit.clone()),
                trigger: "retry".into(),
                triggered_by: by.to_string(),
                upstream_build: None,
                before_commit: None,
                changed_paths: None,
                with_secrets: orig.with_secrets,
            })
            .await?;
        {
            let _w = self.write_turn().await;
            let mut tx = self.pool().begin().await?;
            sqlx::query("INSERT INTO build_retries (build_id, retry_of) VALUES ($1, $2)").bind(nb.id).bind(build_id).execute(&mut *tx).await?;
            for (g, t) in &tests {
                sqlx::query("INSERT INTO retry_tests (build_id, group_key, test_key) VALUES ($1, $2, $3)").bind(nb.id).bind(g).bind(t).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        let new_jobs: Vec<NewJob> = copied
            .iter()
            .map(|j| {
                let mut spec: serde_json::Value = serde_json::from_str(&j.spec).map_err(|e| StoreError::Corrupt(format!("job {} spec: {e}", j.id)))?;
                spec["build_id"] = nb.id.into();
                Ok(NewJob {
                    key: j.key.clone(),
                    name: j.name.clone(),
                    spec: spec.to_string(),
                    requires: j.requires.clone(),
                    // What it needs passed in the original build.
                    needs: j.needs.iter().filter(|n| keys.contains(n.as_str())).cloned().collect(),
                    max_attempts: j.max_attempts,
                })
            })
            .collect::<Result<_>>()?;
        self.materialize_build(nb.id, &commit, orig.message.as_deref().unwrap_or(""), orig.author.as_deref().unwrap_or(""), false, &new_jobs).await?;
        self.build(nb.id).await
    }

    /// Every test batch of a build in claim order: (job key, attempt, batch id, state, its
    /// tests in the order `run` got them). A returned batch's tests went back to the queue and
    /// are not listed with it.
    pub async fn build_batches(&self, build_id: i64) -> Result<Vec<(String, i64, i64, String, Vec<String>)>> {
        let mut out: Vec<(String, i64, i64, String, Vec<String>)> = Vec::new();
        for r in sqlx::query("SELECT b.id, b.attempt, b.state, j.job_key FROM test_batches b JOIN jobs j ON j.id = b.job_id WHERE b.build_id = $1 ORDER BY b.id")
            .bind(build_id)
            .fetch_all(self.pool())
            .await?
        {
            out.push((r.try_get("job_key")?, r.try_get("attempt")?, r.try_get("id")?, r.try_get("state")?, Vec::new()));
        }
        for r in sqlx::query("SELECT batch_id, test_key FROM test_items WHERE build_id = $1 AND batch_id IS NOT NULL ORDER BY seq, id").bind(build_id).fetch_all(self.pool()).await? {
            let b: i64 = r.try_get("batch_id")?;
            if let Some(x) = out.iter_mut().find(|x| x.2 == b) {
                x.4.push(r.try_get("test_key")?);
            }
        }
        Ok(out)
    }

    /// The build a retry build reruns the failures of.
    pub async fn retry_of(&self, build_id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT retry_of FROM build_retries WHERE build_id = $1").bind(build_id).fetch_optional(self.pool()).await?)
    }

    /// For a retry build's test group: the only tests to run (`None`: all of them).
    pub(crate) async fn retry_tests(&self, build_id: i64, group: &str) -> Result<Option<HashSet<String>>> {
        let keys: Vec<String> = sqlx::query_scalar("SELECT test_key FROM retry_tests WHERE build_id = $1 AND group_key = $2")
            .bind(build_id)
            .bind(group)
            .fetch_all(self.pool())
            .await?;
        Ok((!keys.is_empty()).then(|| keys.into_iter().collect()))
    }
}
