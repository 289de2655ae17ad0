//! Projects: a repository, its default branch, pipeline path, visibility and settings.

use crate::rows::to_json;
use crate::{now_ms, Result, Store, StoreError};
use kiln_wire::api::{ProjectSettings, Visibility};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub id: i64,
    pub name: String,
    pub repo: String,
    pub branch: String,
    pub pipeline: String,
    pub visibility: Visibility,
    pub settings: ProjectSettings,
    pub created_at: i64,
}

const COLS: &str = "id, name, repo, branch, pipeline, visibility, settings, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<ProjectRow> {
    let settings: String = r.try_get("settings")?;
    Ok(ProjectRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        repo: r.try_get("repo")?,
        branch: r.try_get("branch")?,
        pipeline: r.try_get("pipeline")?,
        visibility: {
            let v: String = r.try_get("visibility")?;
            Visibility::parse(&v).ok_or_else(|| StoreError::Corrupt(format!("project visibility {v:?}")))?
        },
        settings: serde_json::from_str(&settings).map_err(|e| StoreError::Corrupt(format!("project settings: {e}")))?,
        created_at: r.try_get("created_at")?,
    })
}

impl ProjectRow {
    /// Anyone may see it, signed in or not.
    pub fn public(&self) -> bool {
        self.visibility == Visibility::Public
    }
}

impl Store {
    pub async fn create_project(
        &self,
        name: &str,
        repo: &str,
        branch: &str,
        pipeline: &str,
        visibility: Visibility,
        settings: &ProjectSettings,
    ) -> Result<ProjectRow> {
        let _w = self.write_turn().await;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!("project {name:?} already exists; change it with `kiln project set {name} …`")));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO projects (name, repo, branch, pipeline, public, visibility, settings, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLS}"
        )))
        .bind(name)
        .bind(repo)
        .bind(branch)
        .bind(pipeline)
        .bind((visibility == Visibility::Public) as i64)
        .bind(visibility.as_str())
        .bind(to_json(settings))
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        from_row(&row)
    }

    /// Save a project's editable fields as given.
    pub async fn update_project(&self, p: &ProjectRow) -> Result<()> {
        let _w = self.write_turn().await;
        sqlx::query("UPDATE projects SET repo = $1, branch = $2, pipeline = $3, public = $4, visibility = $5, settings = $6 WHERE id = $7")
            .bind(&p.repo)
            .bind(&p.branch)
            .bind(&p.pipeline)
            .bind(p.public() as i64)
            .bind(p.visibility.as_str())
            .bind(to_json(&p.settings))
            .bind(p.id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn project_by_name(&self, name: &str) -> Result<ProjectRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM projects WHERE name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {name:?}")))?;
        from_row(&row)
    }

    pub async fn project_by_id(&self, id: i64) -> Result<ProjectRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM projects WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {id}")))?;
        from_row(&row)
    }

    pub async fn list_projects(&self) -> Result<Vec<ProjectRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM projects ORDER BY name")))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }
}
