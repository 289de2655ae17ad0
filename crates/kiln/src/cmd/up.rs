//! `kiln up`: server, console and local agents in one process, with the
//! current git repository (and any `--repo`) added as public projects and
//! built once at start. Prints the URL and one line per finished build.

use clap::Args;
use kiln_server::config::ServerConfig;
use kiln_server::state::AppState;
use kiln_server::app;
use kiln_server::auth::Viewer;
use kiln_wire::api::{ProjectCreate, ProjectUpdate, TriggerRequest, Visibility};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct UpArgs {
    /// More repositories to build (paths or git URLs); the current repository is added too.
    #[arg(long = "repo")]
    repos: Vec<String>,
    /// Local agents to start.
    #[arg(long, default_value_t = 2)]
    agents: u32,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long, default_value = "kiln-data")]
    data: PathBuf,
    /// Do not add the git repository kiln is started in.
    #[arg(long)]
    no_current: bool,
    /// `sandbox`: every job in a bubblewrap sandbox; `none`: steps run as kiln itself and can
    /// read the data folder (admin token, database). Unset: the sandbox when bubblewrap works
    /// here, else `none` with a warning (given as `sandbox`, a missing bubblewrap is an error).
    #[arg(long, value_parser = kiln_agent::sandbox::Isolation::parse)]
    isolation: Option<kiln_agent::sandbox::Isolation>,
}

/// Where `up`'s agents keep their work: beside the data folder, never inside it
/// (`kiln-data` → `kiln-data-agents`), so no step walks up into the server's files.
fn agents_dir(data: &Path) -> PathBuf {
    let abs = std::path::absolute(data).unwrap_or_else(|_| data.to_path_buf());
    let name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "kiln-data".into());
    abs.with_file_name(format!("{name}-agents"))
}

fn git_out(dir: &Path, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// (name, repo, branch) for a repository argument.
fn describe(repo: &str) -> (String, String, String) {
    let local = Path::new(repo);
    if local.exists() {
        let top = git_out(local, &["rev-parse", "--show-toplevel"]).unwrap_or_else(|| repo.to_string());
        let branch = git_out(Path::new(&top), &["symbolic-ref", "--short", "HEAD"]).unwrap_or_else(|| "main".into());
        let name = Path::new(&top).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
        return (sanitize(&name), top, branch);
    }
    let name = repo.trim_end_matches('/').trim_end_matches(".git").rsplit(['/', ':']).next().unwrap_or("project");
    (sanitize(name), repo.to_string(), "main".into())
}

fn sanitize(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    s.trim_start_matches('.').to_string()
}

async fn add_and_build(st: &AppState, repo: &str) -> anyhow::Result<()> {
    let (name, repo, branch) = describe(repo);
    // `kiln up` acts for this machine's admin: its projects are public, like a local dashboard.
    let admin = Viewer::User { name: kiln_server::users::FIRST_ADMIN.into(), admin: true };
    let p = match app::projects::show(st, &admin, &name).await {
        Ok(_) => {
            let req = ProjectUpdate { repo: Some(repo), branch: Some(branch), ..Default::default() };
            app::projects::update(st, &admin, &name, req).await?
        }
        Err(_) => {
            let req = ProjectCreate { name, repo, branch: Some(branch), visibility: Some(Visibility::Public), ..Default::default() };
            app::projects::create(st, &admin, req).await?
        }
    };
    let b = app::builds::trigger(st, &admin, &p.name, &TriggerRequest::default()).await?;
    println!("  building {} ({} @ {}) as build #{}", p.name, p.repo, p.branch, b.id);
    Ok(())
}

/// Print one line as each build finishes.
async fn summaries(st: AppState, base: String) {
    let mut rx = st.events.subscribe();
    loop {
        match rx.recv().await {
            Ok(ev) if ev.kind == kiln_wire::events::EventKind::Build && super::builds::is_final(&ev.status) && ev.job_id.is_none() => {
                if let Ok(b) = st.store.build(ev.build_id).await {
                    let jobs = st.store.jobs_of_build(b.id).await.unwrap_or_default();
                    let dur = match (b.started_at, b.finished_at) {
                        (Some(s), Some(f)) => kiln_core::duration::format_duration(std::time::Duration::from_millis((f - s).max(0) as u64)),
                        _ => "-".into(),
                    };
                    let failed: Vec<&str> = jobs.iter().filter(|j| matches!(j.status, kiln_core::state::JobStatus::Failed | kiln_core::state::JobStatus::Errored)).map(|j| j.key.as_str()).collect();
                    let extra = if failed.is_empty() { String::new() } else { format!(" — failed: {}", failed.join(", ")) };
                    let err = b.error.as_deref().map(|e| format!(" — {}", e.lines().next().unwrap_or(""))).unwrap_or_default();
                    println!("build #{} {} {} in {dur}, {} job(s){extra}{err}  {base}/builds/{}", b.id, b.project, b.status.as_str().to_uppercase(), jobs.len(), b.id);
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

pub async fn run(a: UpArgs) -> anyhow::Result<i32> {
    let mut repos = a.repos.clone();
    if !a.no_current {
        if let Some(top) = git_out(Path::new("."), &["rev-parse", "--show-toplevel"]) {
            repos.insert(0, top);
        }
    }
    // The repositories given are on this machine: the server may read those (and no
    // other local path); notifications may go to local receivers.
    let local_repos = repos.iter().map(|r| PathBuf::from(describe(r).1)).collect();
    let agents_dir = agents_dir(&a.data);
    // Check the sandbox before anything starts, so a missing bubblewrap is the only message.
    let isolation = match a.isolation {
        Some(kiln_agent::sandbox::Isolation::Sandbox) => {
            kiln_agent::sandbox::Sandbox::detect(true, Vec::new()).map_err(|e| crate::api_client::Exit(2, e))?;
            kiln_agent::sandbox::Isolation::Sandbox
        }
        Some(other) => other,
        None => match kiln_agent::sandbox::Sandbox::detect(true, Vec::new()) {
            Ok(_) => kiln_agent::sandbox::Isolation::Sandbox,
            Err(e) => {
                eprintln!("WARNING: jobs run unsandboxed, as you, and can read {} (admin token, database): {e}", a.data.display());
                kiln_agent::sandbox::Isolation::None
            }
        },
    };
    let cfg = ServerConfig { listen: a.listen.clone(), data: a.data.clone(), local_repos, allow_private_targets: true, ..Default::default() };
    let stop = CancellationToken::new();
    let srv = kiln_server::start(cfg, stop.clone()).await?;
    let st = srv.state.clone();
    println!("kiln is up: {}", srv.url);
    println!("  admin API token in {}/admin-token (export KILN_TOKEN=$(cat {}/admin-token))", a.data.display(), a.data.display());
    if let Some(p) = &srv.generated_admin_password {
        println!("  console sign-in: admin / {p} (shown only this once)");
    }
    tokio::spawn(summaries(st.clone(), srv.url.clone()));

    let control = kiln_agent::Control::default();
    let mut agents = Vec::new();
    for i in 1..=a.agents.max(1) {
        let cfg = kiln_agent::AgentConfig {
            server: srv.url.clone(),
            token: st.agent_token.clone(),
            name: format!("local-{i}"),
            labels: Default::default(),
            probes: Vec::new(),
            concurrency: 1,
            work_dir: agents_dir.join(format!("agent-{i}")),
            heartbeat_secs: None,
            rotate_token: false,
            isolation,
            hidden: vec![a.data.clone(), agents_dir.clone()],
        };
        let c = control.clone();
        agents.push(tokio::spawn(async move { kiln_agent::run(cfg, c).await }));
    }
    println!("  {} local agent(s) started", a.agents.max(1));

    if repos.is_empty() {
        println!("  not in a git repository: add one with `kiln up --repo PATH` or `kiln project add`");
    }
    for r in &repos {
        if let Err(e) = add_and_build(&st, r).await {
            eprintln!("kiln: failed to add {r}: {e}");
        }
    }
    let sig = super::shutdown_signal().await;
    println!("{sig}: stopping (agents finish their current jobs)");
    control.drain.cancel();
    for t in agents {
        let _ = t.await;
    }
    stop.cancel();
    let _ = srv.task.await;
    Ok(0)
}
