//! Schema migrations, embedded in the binary: one folder per backend, applied in order.

use crate::{Backend, Result, Store, StoreError};

pub(crate) const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_notify.sql")),
    (3, include_str!("../migrations/sqlite/0003_tests.sql")),
    (4, include_str!("../migrations/sqlite/0004_console.sql")),
    (5, include_str!("../migrations/sqlite/0005_sources.sql")),
    (10, include_str!("../migrations/sqlite/0010_access.sql")),
    (6, include_str!("../migrations/sqlite/0006_agent_identity.sql")),
    (7, include_str!("../migrations/sqlite/0007_suites.sql")),
    (8, include_str!("../migrations/sqlite/0008_artifacts.sql")),
    (15, include_str!("../migrations/sqlite/0015_scale.sql")),
    (16, include_str!("../migrations/sqlite/0016_quarantine.sql")),
    (17, include_str!("../migrations/sqlite/0017_quarantine_runs_by_build.sql")),
    (18, include_str!("../migrations/sqlite/0018_builds_at_branch_head.sql")),
    (19, include_str!("../migrations/sqlite/0019_seeded_test_queues.sql")),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_notify.sql")),
    (3, include_str!("../migrations/postgres/0003_tests.sql")),
    (4, include_str!("../migrations/postgres/0004_console.sql")),
    (5, include_str!("../migrations/postgres/0005_sources.sql")),
    (10, include_str!("../migrations/postgres/0010_access.sql")),
    (6, include_str!("../migrations/postgres/0006_agent_identity.sql")),
    (7, include_str!("../migrations/postgres/0007_suites.sql")),
    (8, include_str!("../migrations/postgres/0008_artifacts.sql")),
    (15, include_str!("../migrations/postgres/0015_scale.sql")),
    (16, include_str!("../migrations/postgres/0016_quarantine.sql")),
    (17, include_str!("../migrations/postgres/0017_quarantine_runs_by_build.sql")),
    (18, include_str!("../migrations/postgres/0018_builds_at_branch_head.sql")),
    (19, include_str!("../migrations/postgres/0019_seeded_test_queues.sql")),
];

/// The PostgreSQL advisory lock servers take turns on to migrate ("kiln" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b696c6e;

/// Apply every migration newer than the database's recorded version. On PostgreSQL, servers
/// starting together take turns under an advisory lock: the first migrates, the others then
/// find nothing to do.
pub(crate) async fn run(store: &Store) -> Result<()> {
    if store.backend() != Backend::Postgres {
        return apply(store).await;
    }
    let mut lock = store.pool().acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *lock).await?;
    let out = apply(store).await;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *lock).await?;
    out
}

async fn apply(store: &Store) -> Result<()> {
    let pool = store.pool();
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS kiln_schema (version BIGINT NOT NULL)")
        .execute(pool)
        .await
        .map_err(|e| StoreError::Migrate(e.to_string()))?;
    // Each migration is applied once, whatever order they were added in.
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM kiln_schema").fetch_all(pool).await?;
    let list = match store.backend() {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    for (version, sql) in list.iter().filter(|(v, _)| !applied.contains(v)) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Migrate(format!("version {version}: {e}")))?;
        sqlx::query("INSERT INTO kiln_schema (version) VALUES ($1)").bind(*version).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}
