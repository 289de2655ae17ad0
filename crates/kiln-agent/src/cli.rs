//! The agent's command line, shared by `kiln agent` and the lean `kiln-agent` binary (the
//! agent alone, for agent machines: none of the server's code is mapped into it, so it stays
//! small). SIGTERM drains (finish current jobs, take no new one, exit 0); a second SIGTERM
//! hands the jobs back and exits.

use clap::Args;
use crate::sandbox::Isolation;
use crate::{AgentConfig, Control};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct AgentArgs {
    /// The server's URL; give it more than once (or a comma list) for servers sharing one
    /// database: the agent uses the first that answers and moves on when it stops answering.
    #[arg(long, env = "KILN_SERVER", required = true, value_delimiter = ',')]
    server: Vec<String>,
    /// An enrolment secret (the server's agent secret, or one from `kiln enrol create`); used
    /// only until the agent has saved its own token in its work folder. Prefer KILN_AGENT_TOKEN or --token-file: a
    /// command line is visible to every process on the host.
    #[arg(long)]
    token: Option<String>,
    /// A file (mode 0600) holding the agent registration secret.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// This agent's name [default: the host name].
    #[arg(long)]
    name: Option<String>,
    /// A label key=value (repeatable); os, arch and host are added.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A probed label key=command: the command's output is the value, e.g. python='python3 -c "import sys;print(sys.version[:4])"'.
    #[arg(long = "probe")]
    probes: Vec<String>,
    /// Jobs to run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Folder for repository mirrors and job working copies.
    #[arg(long, default_value = "kiln-work")]
    work_dir: PathBuf,
    /// Heartbeat interval in seconds (the server may ask for less).
    #[arg(long)]
    heartbeat: Option<u64>,
    /// At start, swap the agent token saved in the work folder for a new one (the old one stops working).
    #[arg(long)]
    rotate_token: bool,
    /// `sandbox`: every job in a bubblewrap sandbox; `none`: steps run as the agent and can
    /// read and change its files (a warning at start and on the agents page).
    #[arg(long, default_value = "sandbox", value_parser = parse_isolation)]
    isolation: Isolation,
}

fn parse_isolation(s: &str) -> Result<Isolation, String> {
    Isolation::parse(s)
}

/// The agent's secret: from `--token-file`, else `KILN_AGENT_TOKEN` (then removed from this
/// process's environment), else `--token` (with a warning).
fn agent_token(a: &AgentArgs) -> Result<String, Exit> {
    let from_env = std::env::var("KILN_AGENT_TOKEN").ok().filter(|t| !t.trim().is_empty());
    // Nothing started later (a step, git) may inherit it.
    std::env::remove_var("KILN_AGENT_TOKEN");
    if let Some(path) = &a.token_file {
        return read_token_file(path);
    }
    if let Some(t) = from_env {
        return Ok(t.trim().to_string());
    }
    match &a.token {
        Some(t) => {
            tracing::warn!("--token on the command line is visible to every process on this host (ps, /proc/PID/cmdline): use KILN_AGENT_TOKEN or --token-file FILE (mode 0600) instead");
            Ok(t.clone())
        }
        // A restart with the agent's own token saved in its work folder needs no enrolment secret.
        None if crate::identity::token_path(&a.work_dir).exists() => Ok(String::new()),
        None => Err(Exit(2, "no agent token: set KILN_AGENT_TOKEN or give --token-file FILE (a file of mode 0600 holding the server's agent registration secret)".into())),
    }
}

/// Read a token file, refusing one that others may read.
fn read_token_file(path: &std::path::Path) -> Result<String, Exit> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |m: String| Exit(2, m);
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("failed to read the token file {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!("the token file {} has mode {mode:04o}, so other users can read it: chmod 600 {}", path.display(), path.display())));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("failed to read the token file {}: {e}", path.display())))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(fail(format!("the token file {} is empty", path.display())));
    }
    Ok(token)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    kiln_core::labels::parse_label(s)
}

pub fn host_name() -> String {
    crate::labels::detected().remove("host").unwrap_or_else(|| "agent".into())
}

pub async fn run(a: AgentArgs) -> Result<i32, Exit> {
    let token = agent_token(&a)?;
    let cfg = AgentConfig {
        server: a.server.join(","),
        token,
        name: a.name.unwrap_or_else(host_name),
        labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
        probes: a.probes,
        concurrency: a.concurrency,
        work_dir: a.work_dir,
        heartbeat_secs: a.heartbeat,
        rotate_token: a.rotate_token,
        isolation: a.isolation,
        hidden: a.token_file.into_iter().collect(),
    };
    let control = Control::default();
    let c2 = control.clone();
    tokio::spawn(async move {
        let sig = shutdown_signal().await;
        tracing::info!("{sig}: draining — finishing current jobs; send it again to hand them back and stop now");
        c2.drain.cancel();
        let sig = shutdown_signal().await;
        tracing::warn!("{sig} again: handing running jobs back to the server");
        c2.abort.cancel();
    });
    match crate::run(cfg, control).await {
        Ok(()) => Ok(0),
        Err(e) => Err(Exit(2, format!("{e}"))),
    }
}

/// A failure that ends a command: the exit code (2 unless said otherwise) and what to tell the
/// user. `kiln`'s other commands use it too.
#[derive(Debug)]
pub struct Exit(pub i32, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

/// The first SIGTERM or SIGINT.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Log lines to stderr, filtered by `KILN_LOG` (default: info, with sqlx and hyper at warn).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| "info,sqlx=warn,hyper=warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

#[cfg(test)]
mod tests {
    use super::AgentArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn servers(args: &[&str]) -> Vec<String> {
        Cli::try_parse_from(std::iter::once("kiln-agent").chain(args.iter().copied())).unwrap().agent.server
    }

    #[test]
    fn servers_come_as_a_comma_list_or_one_flag_each_in_their_order() {
        let (a, b, c) = ("http://a:8080", "http://b:8080", "http://c:8080");
        assert_eq!(servers(&["--server", &format!("{a},{b},{c}")]), [a, b, c]);
        assert_eq!(servers(&["--server", a, "--server", b]), [a, b]);
        assert_eq!(servers(&["--server", &format!("{b},{a}"), "--server", c]), [b, a, c]);
    }
}
