//! Projects: a repository, its default branch, pipeline path, visibility and settings.
//! Secret values are sealed here on every write and opened on every read (`sealed.rs`),
//! so no caller can store one in clear.

use crate::rows::to_json;
use crate::sealed::SEALED_LIKE;
use crate::{is_sealed, now_ms, Result, SecretKey, Store, StoreError};
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

/// The settings as stored: every secret value sealed under the server's key.
fn sealed_settings(key: Option<&SecretKey>, project: &str, settings: &ProjectSettings) -> Result<String> {
    let mut s = settings.clone();
    if let Some(secrets) = s.secrets.as_mut().filter(|m| !m.is_empty()) {
        let key = key.ok_or_else(|| StoreError::SecretKey(format!("project {project:?} has secrets but the server has no key to seal them")))?;
        for (name, v) in secrets.iter_mut() {
            if !is_sealed(v) {
                *v = key.seal(name, v);
            }
        }
    }
    Ok(to_json(&s))
}

/// Project `name`'s settings as stored (`text`), with its secrets opened.
pub(crate) fn open_settings(key: Option<&SecretKey>, name: &str, text: &str) -> Result<ProjectSettings> {
    let mut settings: ProjectSettings = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("project settings: {e}")))?;
    for (secret, v) in settings.secrets.iter_mut().flatten() {
        if is_sealed(v) {
            let key = key.ok_or_else(|| StoreError::SecretKey(format!("project {name:?} has sealed secrets but the server has no key")))?;
            *v = key.open(secret, v).ok_or_else(|| {
                StoreError::SecretKey(format!("secret {secret} of project {name:?} does not open with this server's key: is it the key the secrets were sealed with?"))
            })?;
        }
    }
    Ok(settings)
}

fn from_row(key: Option<&SecretKey>, r: &sqlx::any::AnyRow) -> Result<ProjectRow> {
    let name: String = r.try_get("name")?;
    let settings = open_settings(key, &name, &r.try_get::<String, _>("settings")?)?;
    Ok(ProjectRow {
        id: r.try_get("id")?,
        name,
        repo: r.try_get("repo")?,
        branch: r.try_get("branch")?,
        pipeline: r.try_get("pipeline")?,
        visibility: {
            let v: String = r.try_get("visibility")?;
            Visibility::parse(&v).ok_or_else(|| StoreError::Corrupt(format!("project visibility {v:?}")))?
        },
        settings,
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
        .bind(sealed_settings(self.secret_key(), name, settings)?)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        from_row(self.secret_key(), &row)
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
            .bind(sealed_settings(self.secret_key(), &p.name, &p.settings)?)
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
        from_row(self.secret_key(), &row)
    }

    pub async fn project_by_id(&self, id: i64) -> Result<ProjectRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM projects WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {id}")))?;
        from_row(self.secret_key(), &row)
    }

    pub async fn list_projects(&self) -> Result<Vec<ProjectRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM projects ORDER BY name")))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| from_row(self.secret_key(), r)).collect()
    }

    pub(crate) fn secret_key(&self) -> Option<&SecretKey> {
        self.secret_key.get()
    }

    /// Seal project secrets with `key` from now on (once, at start).
    pub fn use_secret_key(&self, key: SecretKey) {
        let _ = self.secret_key.set(key);
    }

    /// Does the database hold sealed secrets (so a key is needed to start)?
    pub async fn has_sealed_secrets(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects WHERE settings LIKE $1").bind(SEALED_LIKE).fetch_one(self.pool()).await?;
        Ok(n > 0)
    }

    /// Seal every secret still stored in clear (a database from before sealing). On SQLite
    /// the file is then rewritten (`VACUUM`) and the write-ahead log emptied, so the old
    /// plaintext is gone from disk. Returns how many projects changed.
    pub async fn seal_plain_secrets(&self) -> Result<usize> {
        let key = self.secret_key().ok_or_else(|| StoreError::SecretKey("no key to seal project secrets with".into()))?;
        let mut changed = 0;
        {
            let _w = self.write_turn().await;
            let rows = sqlx::query("SELECT id, name, settings FROM projects").fetch_all(self.pool()).await?;
            for r in rows {
                let raw: String = r.try_get("settings")?;
                let name: String = r.try_get("name")?;
                let settings: ProjectSettings = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(format!("project settings: {e}")))?;
                if settings.secrets.iter().flatten().all(|(_, v)| is_sealed(v)) {
                    continue;
                }
                sqlx::query("UPDATE projects SET settings = $1 WHERE id = $2")
                    .bind(sealed_settings(Some(key), &name, &settings)?)
                    .bind(r.try_get::<i64, _>("id")?)
                    .execute(self.pool())
                    .await?;
                changed += 1;
            }
        }
        if changed > 0 && self.backend() == crate::Backend::Sqlite {
            let _w = self.write_turn().await;
            sqlx::raw_sql("VACUUM").execute(self.pool()).await?;
            sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)").execute(self.pool()).await?;
        }
        Ok(changed)
    }
}
