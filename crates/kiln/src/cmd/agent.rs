//! `kiln agent`: take jobs from a server. SIGTERM drains (finish current jobs,
//! take no new one, exit 0); a second SIGTERM hands the jobs back and exits.

use clap::Args;
use kiln_agent::{AgentConfig, Control};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct AgentArgs {
    /// The server's URL; give it more than once (or a comma list) for servers sharing one
    /// database: the agent uses the first that answers and moves on when it stops answering.
    #[arg(long, env = "KILN_SERVER", required = true, value_delimiter = ',')]
    server: Vec<String>,
    /// The server's agent registration secret.
    #[arg(long, env = "KILN_AGENT_TOKEN", hide_env_values = true)]
    token: String,
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
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    kiln_core::labels::parse_label(s)
}

pub fn host_name() -> String {
    kiln_agent::labels::detected().remove("host").unwrap_or_else(|| "agent".into())
}

pub async fn run(a: AgentArgs) -> anyhow::Result<i32> {
    let cfg = AgentConfig {
        server: a.server.join(","),
        token: a.token,
        name: a.name.unwrap_or_else(host_name),
        labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
        probes: a.probes,
        concurrency: a.concurrency,
        work_dir: a.work_dir,
        heartbeat_secs: a.heartbeat,
    };
    let control = Control::default();
    let c2 = control.clone();
    tokio::spawn(async move {
        let sig = super::shutdown_signal().await;
        tracing::info!("{sig}: draining — finishing current jobs; send it again to hand them back and stop now");
        c2.drain.cancel();
        let sig = super::shutdown_signal().await;
        tracing::warn!("{sig} again: handing running jobs back to the server");
        c2.abort.cancel();
    });
    match kiln_agent::run(cfg, control).await {
        Ok(()) => Ok(0),
        Err(e) => Err(crate::api_client::Exit(2, format!("{e}")).into()),
    }
}
