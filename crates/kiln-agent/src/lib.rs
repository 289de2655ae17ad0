//! kiln's agent: registers with its labels, claims jobs by long poll, checks
//! out the commit, runs the steps (see `executor`), streams the log (see
//! `spool`), heartbeats to keep its leases, and drains on request. Its command line (`cli`)
//! is `kiln agent` and the lean `kiln-agent` binary (`main.rs`) alike.
//!
//! ```text
//!  register ─► K slots: claim (long poll) ─► checkout ─► run steps ─► flush log ─► finish
//!                 ▲                                  │ output ─► LogWriter ─► spool ─► upload
//!  heartbeat every N s: status + running attempts ─► stop list (cancel / stale), drain
//! ```

pub mod artifacts;
pub mod checkout;
pub mod cli;
pub mod client;
pub mod env;
pub mod executor;
pub mod files;
pub mod identity;
pub mod labels;
pub mod package;
pub mod queue;
pub mod local;
pub mod localhistory;
pub mod localqueue;
pub mod reports;
pub mod reuse;
pub mod logtail;
pub mod sandbox;
pub mod seal;
pub mod spool;
pub mod testhttp;
pub mod testloop;
mod worker;

pub use env::job_env;

use client::{backoff, Client};
use kiln_wire::agent::{HeartbeatRequest, RegisterRequest, RunningJob};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's URL, or several separated by commas (servers sharing one database: the
    /// first that answers is used, the next when it stops answering).
    pub server: String,
    pub token: String,
    pub name: String,
    /// Labels given on the command line (added to the detected and probed ones).
    pub labels: BTreeMap<String, String>,
    /// `key=command` probes run at start.
    pub probes: Vec<String>,
    pub concurrency: u32,
    pub work_dir: PathBuf,
    pub heartbeat_secs: Option<u64>,
    /// Swap the saved agent token for a new one at start (`--rotate-token`).
    pub rotate_token: bool,
    /// Whether jobs run in the bubblewrap sandbox (`--isolation`).
    pub isolation: sandbox::Isolation,
    /// More paths no job may see (the token file; the server's data folder under `kiln up`).
    pub hidden: Vec<PathBuf>,
}

/// How the agent is told to stop: `drain` finishes current jobs first; `abort`
/// hands them back to the server at once.
#[derive(Clone, Default)]
pub struct Control {
    pub drain: CancellationToken,
    pub abort: CancellationToken,
}

/// A job this agent is running.
pub(crate) struct Running {
    pub attempt: i64,
    pub key: String,
    pub cancel: CancellationToken,
    /// The server took the job back (stale attempt): do not report it.
    pub stale: AtomicBool,
    pub status_file: PathBuf,
    /// Masked in what the job's steps write to its status file.
    pub secrets: Vec<String>,
}

pub(crate) struct Agent {
    pub cfg: AgentConfig,
    pub client: Client,
    pub control: Control,
    pub running: Mutex<HashMap<i64, Arc<Running>>>,
    pub mirrors: checkout::Mirrors,
    /// Job folders kept for the next job of their repository (git jobs).
    pub kept: reuse::Kept,
    /// `None` with `--isolation none`.
    pub sandbox: Option<Arc<sandbox::Sandbox>>,
    /// Without a sandbox: the empty job layout kept folders are reset from, and its temp
    /// folder, as this agent made them (`worker::reset_job_dir` checks them).
    pub layout_seal: Mutex<Option<(seal::Seal, seal::Seal)>>,
}

/// Every label this agent offers.
pub fn all_labels(cfg: &AgentConfig) -> BTreeMap<String, String> {
    let mut l = labels::detected();
    for p in &cfg.probes {
        if let Some((k, v)) = labels::probe(p) {
            l.insert(k, v);
        }
    }
    l.extend(cfg.labels.clone());
    l
}

/// Register (see `identity`) with the labels it offers.
async fn register(cfg: &AgentConfig, labels: &BTreeMap<String, String>, control: &Control) -> anyhow::Result<(Client, u64)> {
    let req = RegisterRequest {
        name: cfg.name.clone(),
        labels: labels.clone(),
        concurrency: cfg.concurrency,
        protocol: kiln_wire::PROTOCOL_VERSION,
        heartbeat_secs: cfg.heartbeat_secs,
    };
    identity::register(cfg, &req, control).await
}

/// Check the sandbox this agent's jobs will run in (`None`, with a warning, for `--isolation none`).
pub fn check_isolation(cfg: &AgentConfig) -> anyhow::Result<Option<Arc<sandbox::Sandbox>>> {
    match cfg.isolation {
        sandbox::Isolation::Sandbox => Ok(Some(sandbox::Sandbox::detect(true, cfg.hidden.clone()).map_err(|e| anyhow::anyhow!("{e}"))?)),
        sandbox::Isolation::None => {
            tracing::warn!("agent {}: {}", cfg.name, sandbox::NO_SANDBOX_WARNING);
            Ok(None)
        }
    }
}

/// Run the agent until it is drained or aborted.
pub async fn run(cfg: AgentConfig, control: Control) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.work_dir).map_err(|e| anyhow::anyhow!("failed to create the work folder {}: {e}", cfg.work_dir.display()))?;
    // Only this agent reads its work folder: not the steps of another agent on this host.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&cfg.work_dir, std::fs::Permissions::from_mode(0o700));
    }
    let sandbox = check_isolation(&cfg)?;
    let labels = all_labels(&cfg);
    let (client, hb) = register(&cfg, &labels, &control).await?;
    tracing::info!("agent {} registered with {} (labels: {:?})", cfg.name, cfg.server, labels);
    let agent = Arc::new(Agent { cfg: cfg.clone(), client, control: control.clone(), running: Default::default(), mirrors: Default::default(), kept: Default::default(), sandbox, layout_seal: Default::default() });
    let hb_stop = CancellationToken::new();
    let hb_task = tokio::spawn(heartbeat_loop(agent.clone(), Duration::from_secs(hb), hb_stop.clone()));
    let control_task = tokio::spawn(control_loop(agent.clone(), hb_stop.clone()));
    let slots: Vec<_> = (0..cfg.concurrency.max(1)).map(|i| tokio::spawn(worker::slot(agent.clone(), i))).collect();
    for s in slots {
        let _ = s.await;
    }
    hb_stop.cancel();
    let _ = hb_task.await;
    let _ = control_task.await;
    tracing::info!("agent {} stopped", cfg.name);
    Ok(())
}

/// The status this agent reports: what it runs, plus what each job's steps wrote to `$KILN_STATUS_FILE`.
fn status_json(agent: &Agent) -> serde_json::Value {
    let running = agent.running.lock().unwrap();
    let mut jobs = serde_json::Map::new();
    for (id, r) in running.iter() {
        let mut v = serde_json::json!({ "job": id, "key": r.key });
        if let Some(status) = step_status(&r.status_file, &r.secrets) {
            v["status"] = status;
        }
        jobs.insert(id.to_string(), v);
    }
    let mut s = serde_json::json!({ "running": running.len(), "jobs": jobs, "pid": std::process::id(), "version": env!("CARGO_PKG_VERSION") });
    s["isolation"] = agent.cfg.isolation.as_str().into();
    if agent.sandbox.is_none() {
        s["warning"] = sandbox::NO_SANDBOX_WARNING.into();
    }
    s
}

/// What a job's steps wrote to `$KILN_STATUS_FILE` (JSON, or else its text), masked; at most
/// 64 KiB, and never through a link.
fn step_status(path: &std::path::Path, secrets: &[String]) -> Option<serde_json::Value> {
    let bytes = sandbox::read_own_file(path, 64 << 10).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return None;
    }
    let mut v = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text.trim().to_string()));
    kiln_core::mask::mask_json(&mut v, secrets);
    Some(v)
}

/// Act on what the server says about running jobs and draining.
fn apply(agent: &Agent, resp: kiln_wire::agent::HeartbeatResponse) {
    for s in resp.stop {
        if let Some(r) = agent.running.lock().unwrap().get(&s.job_id) {
            if r.attempt == s.attempt && !r.cancel.is_cancelled() {
                tracing::warn!("job {} attempt {}: the server asked to stop it", s.job_id, s.attempt);
                r.cancel.cancel();
            }
        }
    }
    if resp.drain && !agent.control.drain.is_cancelled() {
        tracing::info!("the server asked this agent to drain");
        agent.control.drain.cancel();
    }
}

fn running_jobs(agent: &Agent) -> Vec<RunningJob> {
    agent.running.lock().unwrap().iter().map(|(id, r)| RunningJob { job_id: *id, attempt: r.attempt }).collect()
}

/// The control long poll: a cancel or drain reaches the agent at once, not at the next heartbeat.
async fn control_loop(agent: Arc<Agent>, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let req = kiln_wire::agent::WaitRequest { jobs: running_jobs(&agent) };
        let res = tokio::select! {
            _ = stop.cancelled() => return,
            r = agent.client.wait(&req) => r,
        };
        match res {
            Ok(resp) => {
                failures = 0;
                let acted = !resp.stop.is_empty() || resp.drain;
                apply(&agent, resp);
                if acted {
                    // The same answer repeats until the job is gone: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(_) => {
                failures += 1;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
}

/// Heartbeat every `every`, and at once when a step changes its status file.
async fn heartbeat_loop(agent: Arc<Agent>, every: Duration, stop: CancellationToken) {
    let mut last_sent = tokio::time::Instant::now() - every;
    let mut last_status = serde_json::Value::Null;
    let mut failures = 0u32;
    loop {
        let status = status_json(&agent);
        let due = last_sent.elapsed() >= every || status != last_status;
        if due {
            let req = HeartbeatRequest { status: status.clone(), jobs: running_jobs(&agent), draining: agent.control.drain.is_cancelled() };
            match agent.client.heartbeat(&req).await {
                Ok(resp) => {
                    failures = 0;
                    last_sent = tokio::time::Instant::now();
                    last_status = status;
                    apply(&agent, resp);
                }
                Err(e) => {
                    failures += 1;
                    if crate::client::worth_logging(failures) {
                        tracing::warn!("heartbeat failed: {e}");
                    }
                    last_sent = tokio::time::Instant::now() - every + backoff(failures).min(every);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// True once the agent is asked to drain.
pub(crate) fn draining(agent: &Agent) -> bool {
    agent.control.drain.is_cancelled()
}

pub(crate) fn mark_stale(r: &Running) {
    r.stale.store(true, Ordering::SeqCst);
    r.cancel.cancel();
}
