//! `kiln db copy`: move a whole kiln from one database to another (SQLite ⇄ PostgreSQL):
//! every table, in the order the migrations create them (so rows come after the rows they
//! refer to), with their ids; then PostgreSQL's id sequences move past the copied ids, and
//! the rows of every table are counted on both sides.

use crate::{Backend, Result, Store, StoreError};
use sqlx::{Any, Row};

/// Which files a kiln's rows refer to: log bytes, artifacts, uploaded packages, and the key
/// that opens its sealed project secrets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilesNeeded {
    pub logs: bool,
    pub artifacts: bool,
    pub packages: bool,
    pub sealed_secrets: bool,
}

/// A column's type in the target, as the copy reads and binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
    Bytes,
}

fn kind_of(declared: &str) -> Kind {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") || t.contains("serial") {
        Kind::Int
    } else if t.contains("bytea") || t.contains("blob") {
        Kind::Bytes
    } else if t.contains("real") || t.contains("double") || t.contains("float") || t.contains("numeric") {
        Kind::Real
    } else {
        Kind::Text
    }
}

enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

fn read(row: &sqlx::any::AnyRow, col: &str, kind: Kind) -> Result<Value> {
    Ok(match kind {
        Kind::Int => Value::Int(match row.try_get::<Option<i64>, _>(col) {
            Ok(v) => v,
            Err(_) => row.try_get::<Option<i32>, _>(col)?.map(i64::from),
        }),
        Kind::Real => Value::Real(row.try_get(col)?),
        Kind::Text => Value::Text(row.try_get(col)?),
        Kind::Bytes => Value::Bytes(row.try_get(col)?),
    })
}

/// Every table kiln keeps, in the order the migrations create them.
pub fn tables() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, sql) in crate::migrate::SQLITE {
        for line in sql.lines() {
            let l = line.trim();
            let Some(rest) = l.strip_prefix("CREATE TABLE ") else { continue };
            let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// One table's rows on each side after a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedTable {
    pub table: String,
    pub source: i64,
    pub target: i64,
}

impl Store {
    async fn columns(&self, table: &str) -> Result<Vec<(String, Kind)>> {
        let rows = match self.backend() {
            Backend::Postgres => {
                sqlx::query(
                    "SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(self.pool())
                .await?
            }
            Backend::Sqlite => sqlx::query("SELECT name, type FROM pragma_table_info($1)").bind(table).fetch_all(self.pool()).await?,
        };
        rows.iter().map(|r| Ok((r.try_get::<String, _>("name")?, kind_of(&r.try_get::<String, _>("type")?)))).collect()
    }

    /// What this database's rows need from the files beside it, for `kiln db copy --data-to`
    /// to refuse a source folder that lacks them.
    pub async fn files_needed(&self) -> Result<FilesNeeded> {
        let logged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE log_len > 0").fetch_one(self.pool()).await?;
        Ok(FilesNeeded {
            logs: logged > 0,
            artifacts: self.count_rows("artifacts").await? > 0,
            packages: self.count_rows("uploads").await? > 0,
            sealed_secrets: self.has_sealed_secrets().await?,
        })
    }

    /// Rows in a table (`table` comes from `tables()`, never from input).
    pub async fn count_rows(&self, table: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(self.pool()).await?)
    }

    /// Copy every row of every table of `self` into `to`, which must hold no rows yet (a fresh
    /// database: `Store::open` has made its schema). Returns the counts on both sides; an
    /// error if any differs.
    pub async fn copy_to(&self, to: &Store) -> Result<Vec<CopiedTable>> {
        let tables = tables();
        for t in &tables {
            let n = to.count_rows(t).await?;
            if n > 0 {
                return Err(StoreError::Conflict(format!(
                    "the target database is not empty (table {t} has {n} rows): copy into a new, empty database"
                )));
            }
        }
        for t in &tables {
            let cols = to.columns(t).await?;
            let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
            let select = format!("SELECT {} FROM {t}", names.join(", "));
            let insert = format!(
                "INSERT INTO {t} ({}) VALUES ({})",
                names.join(", "),
                (1..=names.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch_all(self.pool()).await?;
            let _w = to.write_turn().await;
            let mut tx: sqlx::Transaction<'_, Any> = to.pool().begin().await?;
            for r in &rows {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
                for (name, kind) in &cols {
                    q = match read(r, name, *kind)? {
                        Value::Int(v) => q.bind(v),
                        Value::Real(v) => q.bind(v),
                        Value::Text(v) => q.bind(v),
                        Value::Bytes(v) => q.bind(v),
                    };
                }
                q.execute(&mut *tx).await?;
            }
            if to.backend() == Backend::Postgres && names.contains(&"id") {
                // BIGSERIAL ids: the next row gets an id past the copied ones.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT MAX(id) FROM {t}), 0) + 1, false) \
                     WHERE pg_get_serial_sequence('{t}', 'id') IS NOT NULL"
                )))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        let mut out = Vec::new();
        for t in tables {
            out.push(CopiedTable { source: self.count_rows(&t).await?, target: to.count_rows(&t).await?, table: t });
        }
        if let Some(bad) = out.iter().find(|c| c.source != c.target) {
            return Err(StoreError::Conflict(format!("table {} has {} rows in the source but {} in the target", bad.table, bad.source, bad.target)));
        }
        Ok(out)
    }
}
