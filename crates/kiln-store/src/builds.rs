//! Builds: one run of a pipeline for one commit, its trigger, and its status.

use kiln_core::state::BuildStatus;
use crate::queue::{insert_jobs, NewJob};
use crate::{now_ms, Result, Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct BuildRow {
    pub id: i64,
    pub project_id: i64,
    pub project: String,
    pub status: BuildStatus,
    pub branch: String,
    pub commit: String,
    pub requested_commit: Option<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub trigger: String,
    pub triggered_by: String,
    pub upstream_build: Option<i64>,
    /// For a push: the commit the branch was at before, and the paths it changed (when the source said).
    pub before_commit: Option<String>,
    pub changed_paths: Option<Vec<String>>,
    pub error: Option<String>,
    pub materialized: bool,
    /// Steps get the project's secrets (decided when the build was started: see the server's `app::access`).
    pub with_secrets: bool,
    /// Its commit was its branch's head when the build read its pipeline (not an older commit
    /// asked for by `--commit`): only such builds of the default branch are quarantine evidence.
    pub at_branch_head: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// What starts a build.
#[derive(Debug, Clone)]
pub struct NewBuild {
    pub project_id: i64,
    pub branch: String,
    pub requested_commit: Option<String>,
    pub trigger: String,
    pub triggered_by: String,
    pub upstream_build: Option<i64>,
    pub before_commit: Option<String>,
    pub changed_paths: Option<Vec<String>>,
    /// Steps get the project's secrets.
    pub with_secrets: bool,
}

pub(crate) const COLS: &str = "b.id, b.project_id, p.name AS project, b.status, b.branch, b.commit_sha, b.requested_commit, b.message, b.author, \
b.trigger_kind, b.triggered_by, b.upstream_build, b.before_commit, b.changed_paths, b.error, b.materialized, b.with_secrets, b.at_branch_head, b.created_at, b.started_at, b.finished_at";

/// [`COLS`] as an insert or update of `builds` returns them (no join there: the project's
/// name comes from a subquery).
fn returned_cols() -> &'static str {
    static R: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    R.get_or_init(|| COLS.replace("b.", "").replace("p.name AS project", "(SELECT p.name FROM projects p WHERE p.id = builds.project_id) AS project"))
}

pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<BuildRow> {
    Ok(BuildRow {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        project: r.try_get("project")?,
        status: crate::rows::build_status(r, "status")?,
        branch: r.try_get("branch")?,
        commit: r.try_get("commit_sha")?,
        requested_commit: r.try_get("requested_commit")?,
        message: r.try_get("message")?,
        author: r.try_get("author")?,
        trigger: r.try_get("trigger_kind")?,
        triggered_by: r.try_get("triggered_by")?,
        upstream_build: r.try_get("upstream_build")?,
        before_commit: r.try_get("before_commit")?,
        changed_paths: r.try_get::<Option<String>, _>("changed_paths")?.map(|t| crate::rows::json_list(&t)).transpose()?,
        error: r.try_get("error")?,
        materialized: r.try_get::<i64, _>("materialized")? != 0,
        with_secrets: r.try_get::<i64, _>("with_secrets")? != 0,
        at_branch_head: r.try_get::<i64, _>("at_branch_head")? != 0,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// Filters for listing a project's builds.
#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    pub branch: Option<String>,
    pub status: Option<String>,
    pub trigger: Option<String>,
}

impl Store {
    /// Record a new build, queued and not yet expanded into jobs (one statement: the insert
    /// returns the row).
    pub async fn create_build(&self, nb: &NewBuild) -> Result<BuildRow> {
        Ok(self.insert_build(nb, None).await?.0)
    }

    /// [`Store::create_build`] for the caller that expands the build next: recorded with its
    /// expansion lease held for `lease_ms` (as [`Store::take_expansion`] would take it), and with
    /// the value of kv key `read` read by the same statement.
    pub async fn create_build_to_expand(&self, nb: &NewBuild, lease_ms: i64, read: &str) -> Result<(BuildRow, Option<String>)> {
        self.insert_build(nb, Some((lease_ms, read))).await
    }

    async fn insert_build(&self, nb: &NewBuild, expand: Option<(i64, &str)>) -> Result<(BuildRow, Option<String>)> {
        let now = now_ms();
        let row = {
            let _w = self.write_turn().await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO builds (project_id, status, branch, requested_commit, trigger_kind, triggered_by, upstream_build, before_commit, changed_paths, created_at, with_secrets, expand_until) \
                 VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {}, (SELECT v FROM kv WHERE k = $12) AS read_kv",
                returned_cols()
            )))
            .bind(nb.project_id)
            .bind(&nb.branch)
            .bind(&nb.requested_commit)
            .bind(&nb.trigger)
            .bind(&nb.triggered_by)
            .bind(nb.upstream_build)
            .bind(&nb.before_commit)
            .bind(nb.changed_paths.as_ref().map(crate::rows::to_json))
            .bind(now)
            .bind(nb.with_secrets as i64)
            .bind(expand.map(|(lease_ms, _)| now + lease_ms))
            .bind(expand.map(|(_, read)| read).unwrap_or(""))
            .fetch_one(self.pool())
            .await?
        };
        Ok((from_row(&row)?, if expand.is_some() { row.try_get("read_kv")? } else { None }))
    }

    pub async fn build(&self, id: i64) -> Result<BuildRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("build {id}")))?;
        from_row(&row)
    }

    /// A project's builds, newest first.
    pub async fn list_builds(&self, project_id: i64, f: &BuildFilter, limit: i64, offset: i64) -> Result<(Vec<BuildRow>, i64)> {
        let where_ = "b.project_id = $1 AND ($2 = '' OR b.branch = $2) AND ($3 = '' OR b.status = $3) AND ($4 = '' OR b.trigger_kind = $4)";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM builds b JOIN projects p ON p.id = b.project_id WHERE {where_} ORDER BY b.id DESC LIMIT $5 OFFSET $6"
        )))
        .bind(project_id)
        .bind(f.branch.clone().unwrap_or_default())
        .bind(f.status.clone().unwrap_or_default())
        .bind(f.trigger.clone().unwrap_or_default())
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM builds b WHERE {where_}")))
            .bind(project_id)
            .bind(f.branch.clone().unwrap_or_default())
            .bind(f.status.clone().unwrap_or_default())
            .bind(f.trigger.clone().unwrap_or_default())
            .fetch_one(self.pool())
            .await?;
        Ok((rows.iter().map(from_row).collect::<Result<_>>()?, total))
    }

    /// Builds recorded but not yet expanded into jobs (after a crash, or still being read).
    pub async fn unmaterialized_builds(&self) -> Result<Vec<BuildRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.materialized = 0 ORDER BY b.id"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Builds of a project on a branch that are not finished (for superseding).
    pub async fn unfinished_builds(&self, project_id: i64, branch: &str) -> Result<Vec<BuildRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM builds b JOIN projects p ON p.id = b.project_id \
             WHERE b.project_id = $1 AND b.branch = $2 AND b.status IN ('queued', 'running') ORDER BY b.id"
        )))
        .bind(project_id)
        .bind(branch)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Expand a build: record its commit and insert its jobs, in one transaction.
    /// Jobs that need nothing are ready at once.
    /// `at_branch_head`: the commit was the build's branch's head (see [`BuildRow::at_branch_head`]).
    /// Answers the build's status after it, or None when it was expanded already (by another
    /// server, or ended before it was): then nothing is written.
    pub async fn materialize_build(&self, build_id: i64, commit: &str, message: &str, author: &str, at_branch_head: bool, jobs: &[NewJob]) -> Result<Option<BuildStatus>> {
        let _w = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        // The conditional update is the claim: of two servers expanding the same
        // build, only the one that flips `materialized` inserts jobs.
        let claimed: Option<String> = sqlx::query_scalar(
            "UPDATE builds SET commit_sha = $1, message = $2, author = $3, at_branch_head = $4, materialized = 1 WHERE id = $5 AND materialized = 0 RETURNING status",
        )
            .bind(commit)
            .bind(message)
            .bind(author)
            .bind(at_branch_head as i64)
            .bind(build_id)
            .fetch_optional(&mut *tx)
            .await?;
        if claimed.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        insert_jobs(&mut tx, build_id, jobs).await?;
        tx.commit().await?;
        claimed.map(|s| crate::rows::parse_build_status(&s)).transpose()
    }

    /// End a build as errored before it ran (bad pipeline, unknown commit…). Answers its status
    /// after it, or None when it was expanded or ended already (nothing written).
    pub async fn error_build(&self, build_id: i64, commit: &str, reason: &str) -> Result<Option<BuildStatus>> {
        self.end_unrun_build(build_id, commit, BuildStatus::Errored, reason).await
    }

    /// Record that a change did not build (branch or path filters, triggers off), with the reason.
    /// Answers as [`Store::error_build`].
    pub async fn skip_build(&self, build_id: i64, commit: &str, reason: &str) -> Result<Option<BuildStatus>> {
        self.end_unrun_build(build_id, commit, BuildStatus::Skipped, reason).await
    }

    async fn end_unrun_build(&self, build_id: i64, commit: &str, status: BuildStatus, reason: &str) -> Result<Option<BuildStatus>> {
        let _w = self.write_turn().await;
        let now = now_ms();
        let ended: Option<String> = sqlx::query_scalar(
            "UPDATE builds SET status = $5, error = $1, commit_sha = CASE WHEN $2 = '' THEN commit_sha ELSE $2 END, \
             materialized = 1, finished_at = $3 WHERE id = $4 AND materialized = 0 RETURNING status",
        )
        .bind(reason)
        .bind(commit)
        .bind(now)
        .bind(build_id)
        .bind(status.as_str())
        .fetch_optional(self.pool())
        .await?;
        ended.map(|s| crate::rows::parse_build_status(&s)).transpose()
    }

    /// Builds that passed since `since` (epoch ms): (build id, project name).
    pub async fn passed_since(&self, since: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT b.id, p.name FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.status = 'passed' AND b.finished_at >= $1 ORDER BY b.id",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// The newest build of each project (for the projects list).
    pub async fn latest_build(&self, project_id: i64) -> Result<Option<BuildRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM builds b JOIN projects p ON p.id = b.project_id WHERE b.project_id = $1 ORDER BY b.id DESC LIMIT 1"
        )))
        .bind(project_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }
}
