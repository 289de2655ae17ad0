//! `kiln db copy --from URL --to URL`: move a whole kiln to another database (SQLite ⇄
//! PostgreSQL) with the servers stopped, printing and checking each table's rows, then saying
//! what to do with the files no database holds (logs, artifacts, packages, the secret key).

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DbCmd {
    /// Copy every row (projects, builds, jobs, attempts with their log lengths, test results,
    /// users, tokens, sealed secrets, members…) into a new, empty database, and check every
    /// table's row count. Files are not copied (log bytes, artifacts, uploaded packages, the
    /// secret key): it ends by saying what to do with them.
    Copy {
        /// The database to read: sqlite:PATH or postgres://…
        #[arg(long)]
        from: String,
        /// The database to write (made or migrated, and empty): sqlite:PATH or postgres://…
        #[arg(long)]
        to: String,
    },
}

pub async fn run(cmd: DbCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        DbCmd::Copy { from, to } => {
            if from == to {
                anyhow::bail!("--from and --to are the same database");
            }
            let src = kiln_store::Store::open(&from).await?;
            let dst = kiln_store::Store::open(&to).await?;
            let counts = src.copy_to(&dst).await?;
            if json {
                let rows: Vec<_> = counts.iter().map(|c| serde_json::json!({ "table": c.table, "source": c.source, "target": c.target })).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<24} {:>10} {:>10}", "table", "source", "target");
                for c in &counts {
                    println!("{:<24} {:>10} {:>10}", c.table, c.source, c.target);
                }
                let total: i64 = counts.iter().map(|c| c.target).sum();
                println!("copied {total} rows in {} tables; every count matches", counts.len());
            }
            // The rows are copied; these files are not, and the copy's servers need them.
            let note = files_note(&from);
            if json {
                eprintln!("{note}");
            } else {
                println!("{note}");
            }
            Ok(0)
        }
    }
}

/// What the user must still do with the files a database does not hold (docs/reliability.md):
/// the files folder's `logs/` and `artifacts/`, the data folder's `packages/` and `secret-key`.
/// A `sqlite:DIR/kiln.db` source names its data folder, the default files folder.
fn files_note(from: &str) -> String {
    let path = from.strip_prefix("sqlite://").or_else(|| from.strip_prefix("sqlite:")).map(|p| std::path::Path::new(p.split('?').next().unwrap_or(p)));
    let data = match path {
        Some(p) if p.file_name().is_some_and(|f| f == "kiln.db") => p.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| ".".to_string(), |d| d.display().to_string()),
        _ => "DATA".to_string(),
    };
    format!(
        "not copied (files, not rows): before starting servers on the copy,\n\
         - log bytes and artifacts: start them with --files naming the old files folder (the old servers' --files, by default \
         their data folder {data}), or copy its logs/ and artifacts/ into the new one\n\
         - uploaded runs: copy {data}/packages/ into the new data folder\n\
         - project secrets: copy {data}/secret-key into the new data folder (or set KILN_SECRET_KEY or --secret-key-file), \
         or they cannot be opened"
    )
}

#[cfg(test)]
mod tests {
    use super::files_note;

    #[test]
    fn the_note_names_the_data_folder_of_a_default_sqlite_database() {
        let note = files_note("sqlite:/srv/kiln-data/kiln.db");
        for part in ["--files", "/srv/kiln-data/secret-key", "/srv/kiln-data/packages/", "logs/ and artifacts/"] {
            assert!(note.contains(part), "{part:?} missing from {note}");
        }
        assert!(files_note("postgres://h/kiln").contains("DATA/secret-key"));
        assert!(files_note("sqlite:elsewhere.db").contains("DATA/packages/"));
    }
}
