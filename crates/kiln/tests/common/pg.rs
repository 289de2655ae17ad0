//! PostgreSQL for tests (started by ci/setup-postgres.sh, or `KILN_TEST_POSTGRES` as an admin
//! URL): each test makes a fresh database, dropped when it ends. Missing PostgreSQL fails loudly,
//! never skips.

use std::process::{Child, Command};

const ADMIN_URL: &str = "postgres://kiln:kiln@127.0.0.1:5432/postgres";

/// A fresh database for one test: dropped (its connections closed) when the test ends.
pub struct Database {
    pub url: String,
    admin: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql").args([self.admin.as_str(), "-qc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)]).output();
    }
}

/// A fresh database named by a UUID, dropped when the returned value is.
pub fn fresh_database() -> Database {
    let admin = std::env::var("KILN_TEST_POSTGRES").unwrap_or_else(|_| ADMIN_URL.to_string());
    let name = format!("kiln_test_{}", uuid::Uuid::new_v4().simple());
    let out = Command::new("psql")
        .args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql is needed for the PostgreSQL tests: run ci/setup-postgres.sh");
    assert!(
        out.status.success(),
        "cannot create a database on {admin}: {} — run ci/setup-postgres.sh (or set KILN_TEST_POSTGRES)",
        String::from_utf8_lossy(&out.stderr)
    );
    Database { url: format!("{}/{name}", admin.rsplit_once('/').unwrap().0), admin, name }
}

/// A child process killed and reaped when dropped.
pub struct Reaped(pub Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
