//! A fresh PostgreSQL database for a store test (ci/setup-postgres.sh, or `KILN_TEST_POSTGRES` as
//! an admin URL), dropped when the test ends. A missing PostgreSQL fails the test when
//! `KILN_REQUIRE_POSTGRES` or `CI` is set (ci/test sets the first); otherwise the case runs on
//! SQLite only, with a note, so a developer's single `cargo test` needs no PostgreSQL.

pub mod suites;

use kiln_store::Store;

const ADMIN_URL: &str = "postgres://kiln:kiln@127.0.0.1:5432/postgres";

/// Set by ci/test: a PostgreSQL case that cannot get a database fails instead of being skipped.
pub const REQUIRE_POSTGRES: &str = "KILN_REQUIRE_POSTGRES";

/// Drops its database, its connections closed, when dropped.
pub struct Database {
    admin: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql").args([self.admin.as_str(), "-qc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)]).output();
    }
}

/// A fresh, empty database named `PREFIX<uuid>` (no store opened on it, so nothing migrated):
/// its URL and the guard that drops it. None when no PostgreSQL answers and none is required
/// (`cases` names what then ran on SQLite only).
pub fn empty_postgres(prefix: &str, cases: &str) -> Option<(String, Database)> {
    let admin = std::env::var("KILN_TEST_POSTGRES").unwrap_or_else(|_| ADMIN_URL.to_string());
    let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let made = std::process::Command::new("psql").args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")]).output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        let why = match &made {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        let required = std::env::var_os(REQUIRE_POSTGRES).is_some() || std::env::var_os("CI").is_some();
        assert!(!required, "the {cases} need PostgreSQL here ({REQUIRE_POSTGRES} or CI is set) but none answers at {admin} ({why}): run ci/setup-postgres.sh, or set KILN_TEST_POSTGRES to an admin URL");
        eprintln!("no PostgreSQL at {admin} ({why}): the {cases} ran on SQLite only (run ci/setup-postgres.sh to run them on PostgreSQL too)");
        return None;
    }
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Some((url, Database { admin, name }))
}

/// A store on a fresh database named `PREFIX<uuid>`, its URL, and the guard that drops it; None
/// as [`empty_postgres`] says.
#[allow(dead_code)] // tests/migrate.rs opens its stores itself
pub async fn postgres(prefix: &str, cases: &str) -> Option<(Store, String, Database)> {
    let (url, db) = empty_postgres(prefix, cases)?;
    Some((Store::open(&url).await.unwrap(), url, db))
}
