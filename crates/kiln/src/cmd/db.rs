//! `kiln db copy --from URL --to URL`: move a whole kiln to another database (SQLite ⇄
//! PostgreSQL) with the servers stopped, printing and checking each table's rows. With
//! `--data-to` the files no database holds (logs, artifacts, packages, the secret key) are
//! copied too and counted (`kiln_server::datafiles`); without it, it says what to do with them.

use clap::Subcommand;
use kiln_server::at_rest::sqlite_file;
use kiln_server::datafiles::{self, Folders};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DbCmd {
    /// Copy every row (projects, builds, jobs, attempts with their log lengths, test results,
    /// users, tokens, sealed secrets, members…) into a new, empty database, and check every
    /// table's row count. With --data-to, the files too (log bytes, artifacts, uploaded
    /// packages, the secret key, the generated agent and admin tokens), counted on both sides;
    /// without it, it ends by saying what to do with them.
    Copy {
        /// The database to read: sqlite:PATH or postgres://…
        #[arg(long)]
        from: String,
        /// The database to write (made or migrated, and empty): sqlite:PATH or postgres://…
        #[arg(long)]
        to: String,
        /// The new servers' data folder (their --data): the source's uploaded packages, secret
        /// key and generated tokens are copied there, and its logs and artifacts unless
        /// --files-to is given
        #[arg(long, value_name = "DIR")]
        data_to: Option<PathBuf>,
        /// The new servers' files folder (their --files), when it is not --data-to
        #[arg(long, value_name = "DIR", requires = "data_to")]
        files_to: Option<PathBuf>,
        /// The source servers' data folder (default: the folder of a sqlite:DIR/kiln.db source;
        /// a PostgreSQL source needs it)
        #[arg(long, value_name = "DIR", requires = "data_to")]
        data_from: Option<PathBuf>,
        /// The source servers' files folder (their --files), when it is not their data folder
        #[arg(long, value_name = "DIR", requires = "data_to")]
        files_from: Option<PathBuf>,
    },
}

pub async fn run(cmd: DbCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        DbCmd::Copy { from, to, data_to, files_to, data_from, files_from } => {
            if from == to {
                anyhow::bail!("--from and --to are the same database");
            }
            let src = kiln_store::Store::open(&from).await?;
            // The folders are checked before anything is written, against what the source's
            // rows refer to: a refusal loses nothing.
            let mut notes = Vec::new();
            let folders = match data_to {
                Some(data_to) => {
                    let Some(data) = data_from.or_else(|| data_folder_of(&from)) else {
                        anyhow::bail!("--data-to needs the source's data folder: name it with --data-from (it is only implied by a sqlite:DIR/kiln.db source)");
                    };
                    let old = Folders { files: files_from.unwrap_or_else(|| data.clone()), data };
                    let new = Folders { files: files_to.unwrap_or_else(|| data_to.clone()), data: data_to };
                    notes = datafiles::check(&old, &new, &src.files_needed().await?).map_err(anyhow::Error::msg)?;
                    Some((old, new))
                }
                None => None,
            };
            if let Some(dir) = sqlite_file(&to).and_then(|p| p.parent().map(PathBuf::from)).filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                datafiles::make_dir(&dir).map_err(|e| anyhow::anyhow!("failed to make {}: {e}", dir.display()))?;
            }
            // A new SQLite file is private from its first byte, as a server makes its own.
            kiln_server::at_rest::private_database(&to)?;
            // Files first (a full disk is the likeliest failure), then rows; either failing
            // takes back the files it made.
            let copied = match &folders {
                Some((old, new)) => Some(datafiles::copy(old, new).map_err(|e| anyhow::anyhow!("{e}; nothing was copied (the files made were removed)"))?),
                None => None,
            };
            let rows = async {
                let dst = kiln_store::Store::open(&to).await?;
                src.copy_to(&dst).await
            };
            let counts = match rows.await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(c) = &copied {
                        c.undo();
                    }
                    anyhow::bail!("{e}{}", if copied.is_some() { " (the files copied were removed again)" } else { "" });
                }
            };
            let files = copied.map(|c| c.counts).unwrap_or_default();
            if json {
                let rows: Vec<_> = counts.iter().map(|c| serde_json::json!({ "table": c.table, "source": c.source, "target": c.target })).collect();
                if folders.is_none() {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    let files: Vec<_> = files
                        .iter()
                        .map(|c| serde_json::json!({ "files": c.what, "source": c.source_files, "target": c.target_files, "source_bytes": c.source_bytes, "target_bytes": c.target_bytes }))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "tables": rows, "files": files }))?);
                }
            } else {
                println!("{:<24} {:>10} {:>10}", "table", "source", "target");
                for c in &counts {
                    println!("{:<24} {:>10} {:>10}", c.table, c.source, c.target);
                }
                let total: i64 = counts.iter().map(|c| c.target).sum();
                println!("copied {total} rows in {} tables; every count matches", counts.len());
                if let Some((old, new)) = &folders {
                    println!("{:<24} {:>10} {:>10} {:>14}", "files", "source", "target", "bytes");
                    for c in &files {
                        println!("{:<24} {:>10} {:>10} {:>14}", c.what, c.source_files, c.target_files, c.target_bytes);
                    }
                    let (n, bytes) = files.iter().fold((0, 0), |(n, b), c| (n + c.target_files, b + c.target_bytes));
                    println!(
                        "copied {n} files ({bytes} bytes) from {} to {}; every count matches. Start the new servers with --data {}{}",
                        old.data.display(),
                        new.data.display(),
                        new.data.display(),
                        if new.files != new.data { format!(" --files {}", new.files.display()) } else { String::new() }
                    );
                }
            }
            if folders.is_some() {
                for n in &notes {
                    if json {
                        eprintln!("{n}");
                    } else {
                        println!("{n}");
                    }
                }
                return Ok(0);
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
    let data = data_folder_of(from).map_or_else(|| "DATA".to_string(), |d| d.display().to_string());
    format!(
        "not copied (files, not rows; `--data-to DIR` copies them): before starting servers on the copy,\n\
         - log bytes and artifacts: start them with --files naming the old files folder (the old servers' --files, by default \
         their data folder {data}), or copy its logs/ and artifacts/ into the new one\n\
         - uploaded runs: copy {data}/packages/ into the new data folder\n\
         - project secrets: copy {data}/secret-key into the new data folder (or set KILN_SECRET_KEY or --secret-key-file), \
         or they cannot be opened"
    )
}

/// The data folder a `sqlite:DIR/kiln.db` database lives in (a server's default layout).
fn data_folder_of(url: &str) -> Option<PathBuf> {
    let path = sqlite_file(url)?;
    if path.file_name()? != "kiln.db" {
        return None;
    }
    Some(path.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::{data_folder_of, files_note};

    #[test]
    fn the_note_names_the_data_folder_of_a_default_sqlite_database() {
        let note = files_note("sqlite:/srv/kiln-data/kiln.db");
        for part in ["--files", "/srv/kiln-data/secret-key", "/srv/kiln-data/packages/", "logs/ and artifacts/"] {
            assert!(note.contains(part), "{part:?} missing from {note}");
        }
        assert!(files_note("postgres://h/kiln").contains("DATA/secret-key"));
        assert!(files_note("sqlite:elsewhere.db").contains("DATA/packages/"));
        assert!(files_note("sqlite:/d/kiln.db").contains("--data-to"));
        assert_eq!(data_folder_of("sqlite:kiln.db"), Some(".".into()));
        assert_eq!(data_folder_of("sqlite:/srv/d/kiln.db?mode=rwc"), Some("/srv/d".into()));
        assert_eq!(data_folder_of("postgres://h/kiln"), None);
    }
}
