//! A fresh PostgreSQL database for a store test (ci/setup-postgres.sh, or `KILN_TEST_POSTGRES` as
//! an admin URL), dropped when the test ends; under CI a missing PostgreSQL fails the test.

pub mod suites;

use kiln_store::Store;

const ADMIN_URL: &str = "postgres://kiln:kiln@127.0.0.1:5432/postgres";

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

/// A store on a fresh database named `PREFIX<uuid>`, its URL, and the guard that drops it; None
/// outside CI when no PostgreSQL answers (`cases` names what then ran on SQLite only).
pub async fn postgres(prefix: &str, cases: &str) -> Option<(Store, String, Database)> {
    let admin = std::env::var("KILN_TEST_POSTGRES").unwrap_or_else(|_| ADMIN_URL.to_string());
    let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let made = std::process::Command::new("psql").args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")]).output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        let why = match &made {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL is needed under CI ({why}): run ci/setup-postgres.sh");
        eprintln!("no PostgreSQL at {admin} ({why}): the {cases} ran on SQLite only");
        return None;
    }
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Some((Store::open(&url).await.unwrap(), url, Database { admin, name }))
}
