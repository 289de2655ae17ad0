//! `kiln`: the command line. It parses arguments and calls the crates that do
//! the work (server, agent, store, core). Exit codes: 0 passed/ok, 1 failed,
//! 2 error (bad input, unknown project or build, server unreachable).

mod api_client;
mod cmd;
mod hidden_input;
mod wakeups;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kiln", version, about = "A self-hosted CI server and distributed test runner")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every client command shares.
#[derive(Args, Clone)]
pub struct ClientOpts {
    /// The kiln server's URL.
    #[arg(long, env = "KILN_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// API token (see `kiln server` output or DATA/admin-token).
    #[arg(long, env = "KILN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON objects instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Server, web console and local agents in one process, building this repository.
    Up(cmd::up::UpArgs),
    /// Run the server alone.
    Server(cmd::server::ServerArgs),
    /// Database tools: `kiln db copy --from sqlite:… --to postgres://…`.
    Db {
        #[command(subcommand)]
        action: cmd::db::DbCmd,
        /// Print the counts as JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Run an agent that takes jobs from a server.
    Agent(cmd::agent::AgentArgs),
    /// Add, change or list projects.
    Project {
        #[command(subcommand)]
        action: cmd::project::ProjectCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Queue a build of a project.
    Trigger {
        project: String,
        #[arg(long, conflicts_with = "commit")]
        branch: Option<String>,
        #[arg(long)]
        commit: Option<String>,
        /// Follow the build live and exit with its result (0 passed, 1 failed, 2 error).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a project's builds, newest first.
    Builds {
        project: String,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show a build: its status, trigger, jobs and their attempts.
    Show {
        build: i64,
        /// Show the build's test results instead: failures first with messages, slowest, counts.
        #[arg(long)]
        tests: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// A project's test history on a branch: the slowest (default) or flakiest tests, and its
    /// quarantine; `kiln tests quarantine|release PROJECT TEST` (maintainers).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Tests {
        #[command(subcommand)]
        action: Option<cmd::tests::QuarantineCmd>,
        #[arg(required = true)]
        project: Option<String>,
        /// The branch [default: the project's branch].
        #[arg(long)]
        branch: Option<String>,
        #[arg(long, conflicts_with = "flakiest")]
        slowest: bool,
        #[arg(long)]
        flakiest: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Run this repository's pipeline right here, without a server, on N local workers.
    Run(cmd::run::RunArgs),
    /// Print a build's logs (all jobs, or one), optionally following them live.
    Logs {
        build: i64,
        /// A job's key, name or id.
        job: Option<String>,
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines of each job's latest attempt (then follow, with --follow).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Apply the retention policies now: remove old builds' logs, artifacts, results and packages.
    Gc {
        /// Only show what would go.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a build's artifacts, or download them into DIR/<job>/<name>.
    Artifacts {
        build: i64,
        /// Download every artifact into this folder.
        #[arg(long, value_name = "DIR")]
        download: Option<std::path::PathBuf>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List agents: online, labels, current jobs, reported status.
    Agents {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Start a new build of a build's commit that reruns only what failed in it.
    Retry {
        build: i64,
        /// Rerun the failed tests of `tests:` jobs and the failed plain jobs.
        #[arg(long)]
        failed: bool,
        /// Follow the new build to its end (exit code as `trigger --wait`).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Cancel a build, or one of its jobs.
    Cancel {
        build: i64,
        job: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Agent enrolment (admins): enrolment secrets (create, list, revoke) and revoking an agent.
    Enrol {
        #[command(subcommand)]
        action: cmd::enrol::EnrolCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Ask an agent to drain: finish its jobs, take no new one, exit.
    Drain {
        agent: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// For a git post-receive hook: read `oldrev newrev refname` lines and tell the server.
    Notify {
        project: String,
        /// A file holding the project's webhook secret (else KILN_WEBHOOK_SECRET): each branch
        /// goes to the project's generic hook, signed, and no API token is needed.
        #[arg(long, value_name = "FILE")]
        webhook_secret_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Run local test files on a project's pipeline (an uploaded test run).
    Submit(cmd::submit::SubmitArgs),
    /// Users: add (admins), list, change a password.
    User {
        #[command(subcommand)]
        action: cmd::users::UserCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Your personal API tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        action: cmd::users::TokenCmd,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Validate a pipeline file; print each error with file, line and column.
    Check {
        #[arg(default_value = ".kiln.yml")]
        file: PathBuf,
    },
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Up(a) => cmd::up::run(a).await,
        Command::Server(a) => cmd::server::run(a).await,
        Command::Db { action, json } => cmd::db::run(action, json).await,
        Command::Agent(a) => cmd::agent::run(a).await,
        Command::Project { action, client } => cmd::project::run(action, &client).await,
        Command::Trigger { project, branch, commit, wait, client } => cmd::builds::trigger(&client, &project, branch, commit, wait).await,
        Command::Builds { project, branch, status, limit, client } => cmd::builds::list(&client, &project, branch, status, limit).await,
        Command::Show { build, tests: true, client } => cmd::tests::show_build(&client, build).await,
        Command::Show { build, client, .. } => cmd::builds::show(&client, build).await,
        Command::Tests { action: Some(a), client, .. } => cmd::tests::quarantine(&client, a).await,
        Command::Tests { project, branch, flakiest, limit, client, .. } => cmd::tests::history(&client, &project.unwrap_or_default(), branch, flakiest, limit).await,
        Command::Run(a) => cmd::run::run(a).await,
        Command::Logs { build, job, follow, tail, client } => cmd::logs::run(&client, build, job, follow, tail).await,
        Command::Agents { client } => cmd::agents::list(&client).await,
        Command::Gc { dry_run, client } => cmd::artifacts::gc(&client, dry_run).await,
        Command::Artifacts { build, download, client } => cmd::artifacts::run(&client, build, download.as_deref(), client.json).await,
        Command::Cancel { build, job, client } => cmd::builds::cancel(&client, build, job).await,
        Command::Enrol { action, client } => cmd::enrol::run(action, &client).await,
        Command::Retry { build, failed, wait, client } => cmd::retry::retry(&client, build, failed, wait).await,
        Command::Drain { agent, client } => cmd::agents::drain(&client, &agent).await,
        Command::Notify { project, webhook_secret_file, client } => cmd::notify::run(&client, &project, webhook_secret_file.as_deref()).await,
        Command::Check { file } => cmd::check::run(&file),
        Command::Submit(a) => cmd::submit::run(a).await,
        Command::User { action, client } => cmd::users::user(action, &client).await,
        Command::Token { action, client } => cmd::users::token(action, &client).await,
    }
}

fn main() {
    let cli = Cli::parse();
    kiln_agent::cli::init_tracing();
    // An agent only waits on the network and its steps: one thread keeps it small.
    let rt = match cli.command {
        Command::Agent(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .expect("tokio runtime");
    let code = match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<api_client::Exit>() {
                eprintln!("kiln: {}", exit.1);
                exit.0
            } else {
                eprintln!("kiln: {e:#}");
                2
            }
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    std::process::exit(code);
}
