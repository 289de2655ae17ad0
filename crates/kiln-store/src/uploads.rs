//! Uploaded test runs: a build whose files come from a package the user
//! uploaded (kept under DATA/packages) instead of a git checkout.

use crate::{now_ms, BuildRow, NewBuild, Result, Store};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub build_id: i64,
    /// File name of the package under DATA/packages.
    pub package: String,
    /// The pipeline text to run, when the upload brought one.
    pub pipeline: Option<String>,
    pub files: i64,
    pub size: i64,
}

impl Store {
    /// Record a build and its package together, so that materializing it always finds the package.
    pub async fn create_upload_build(&self, nb: &NewBuild, package: &str, pipeline: Option<&str>, files: i64, size: i64) -> Result<BuildRow> {
        let id: i64 = {
            let _w = self.write_turn().await;
            let now = now_ms();
            let mut tx = self.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO builds (project_id, status, branch, trigger_kind, triggered_by, created_at, with_secrets) \
                 VALUES ($1, 'queued', $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(nb.project_id)
            .bind(&nb.branch)
            .bind(&nb.trigger)
            .bind(&nb.triggered_by)
            .bind(now)
            .bind(nb.with_secrets as i64)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO uploads (build_id, package, pipeline, files, size, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(id)
                .bind(package)
                .bind(pipeline)
                .bind(files)
                .bind(size)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        };
        self.build(id).await
    }

    /// The package of an uploaded build (None for a build from git).
    pub async fn upload(&self, build_id: i64) -> Result<Option<UploadRow>> {
        let row = sqlx::query("SELECT build_id, package, pipeline, files, size FROM uploads WHERE build_id = $1")
            .bind(build_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(UploadRow {
                build_id: r.try_get("build_id")?,
                package: r.try_get("package")?,
                pipeline: r.try_get("pipeline")?,
                files: r.try_get("files")?,
                size: r.try_get("size")?,
            })
        })
        .transpose()
    }
}
