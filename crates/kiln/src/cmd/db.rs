//! `kiln db copy --from URL --to URL`: move a whole kiln to another database (SQLite ⇄
//! PostgreSQL) with the servers stopped, printing and checking each table's rows.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DbCmd {
    /// Copy everything (projects, builds, jobs, logs, test results, users, tokens, secrets,
    /// members…) into a new, empty database, and check every table's row count.
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
            Ok(0)
        }
    }
}
