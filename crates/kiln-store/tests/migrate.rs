//! Migrations under PostgreSQL's advisory lock: servers opening one fresh database at the same
//! moment take turns, so each starts and the schema is the one a lone server makes. PostgreSQL
//! only (SQLite has one server); skipped with a note when none answers, required under ci/test.

use kiln_store::Store;
use sqlx::AnyPool;

mod common;

/// How many times two stores race on a fresh database.
const ROUNDS: usize = 6;

/// The schema as the catalog has it: every migration version recorded (duplicates kept, so a
/// migration applied twice shows) and every table with its columns.
async fn schema(url: &str) -> (Vec<i64>, Vec<(String, String, String)>) {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM kiln_schema ORDER BY version").fetch_all(&pool).await.unwrap();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY table_name, column_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    (versions, columns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_opening_a_fresh_postgresql_database_together_take_turns_to_migrate() {
    let Some((alone_url, _alone)) = common::empty_postgres("kiln_q_", "migration race") else { return };
    drop(Store::open(&alone_url).await.unwrap());
    let want = schema(&alone_url).await;
    assert!(!want.0.is_empty() && !want.1.is_empty(), "a lone server made no schema: {want:?}");
    for round in 0..ROUNDS {
        let (url, _db) = common::empty_postgres("kiln_q_", "migration race").unwrap();
        let open = |u: String| tokio::spawn(async move { Store::open(&u).await });
        let (a, b) = tokio::join!(open(url.clone()), open(url.clone()));
        let a = a.unwrap().unwrap_or_else(|e| panic!("round {round}: the first server failed to start: {e}"));
        let b = b.unwrap().unwrap_or_else(|e| panic!("round {round}: the second server failed to start: {e}"));
        assert_eq!(schema(&url).await, want, "round {round}: the schema differs from a lone server's");
        // Both work on it: what one writes the other reads.
        let made = a.create_project("p", "/repo", "main", ".kiln.yml", kiln_wire::api::Visibility::Public, &Default::default()).await.unwrap();
        assert_eq!(b.project_by_name("p").await.unwrap().id, made.id, "round {round}");
    }
}
