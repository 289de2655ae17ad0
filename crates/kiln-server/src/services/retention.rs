//! Retention: every `gc_every_secs` (and on `kiln gc`), each project's policy
//! (its own limits over the server-wide `[retention]`) decides, by
//! `kiln_core::retention::plan`, which finished builds go whole (logs,
//! artifacts, test results, an uploaded run's package) and which lose only their
//! artifacts. A branch's newest passing build always stays. Each pass logs
//! what it freed; a dry run only reports it. With several servers on one database only the
//! server holding the retention duty (`services::duties`) runs the timed passes.

use crate::error::AppResult;
use crate::state::AppState;
use kiln_core::retention::{plan, Policy, Removal};
use kiln_wire::api::{GcItem, GcReport, GcWhat, Retention};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn policy(r: Option<Retention>) -> Policy {
    let r = r.unwrap_or_default();
    Policy { keep_builds: r.keep_builds, keep_days: r.keep_days, artifact_days: r.artifact_days }
}

/// A project's disk use as the console shows it: logs and artifacts, and the packages of its
/// uploaded runs once it has some.
pub fn disk_label(d: Option<&kiln_store::DiskUse>) -> String {
    let d = d.cloned().unwrap_or_default();
    let human = |n: u64| crate::uploads::human_bytes(n as i64);
    let mut s = format!("logs {} · artifacts {}", human(d.log_bytes), human(d.artifact_bytes));
    if d.package_bytes > 0 {
        s.push_str(&format!(" · packages {}", human(d.package_bytes)));
    }
    s
}

pub fn routes() -> crate::routes::Routes {
    crate::routes::Routes::new().post("/api/v1/gc", gc)
}

/// `POST /api/v1/gc {dry_run}`: a retention pass now (admins only).
async fn gc(axum::extract::State(st): axum::extract::State<AppState>, viewer: crate::auth::Viewer, axum::Json(req): axum::Json<kiln_wire::api::GcRequest>) -> AppResult<axum::Json<GcReport>> {
    crate::app::access::admin(&viewer)?;
    Ok(axum::Json(collect(&st, req.dry_run).await?))
}

pub async fn run(st: AppState, stop: CancellationToken) {
    if st.cfg.gc_every_secs == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(st.cfg.gc_every_secs));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !st.duties.held(crate::duties::Duty::Retention) {
            continue;
        }
        match collect(&st, false).await {
            Ok(r) if !r.removed.is_empty() => {
                let builds = r.removed.iter().filter(|i| i.what == GcWhat::Build).count();
                tracing::info!("retention: removed {builds} build(s) and the artifacts of {} more, freeing {} bytes", r.removed.len() - builds, r.bytes);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("retention pass failed: {e}"),
        }
    }
}

/// Bytes the files of a build's jobs take: logs and artifacts (and only artifacts if `only_artifacts`).
fn job_files(st: &AppState, jobs: &[i64], only_artifacts: bool) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for j in jobs {
        out.push(crate::artifacts::job_dir(st, *j));
        if !only_artifacts {
            out.push(st.store.log_files().job_dir(*j));
        }
    }
    out
}

/// One retention pass over every project; with `dry_run`, nothing is removed.
pub async fn collect(st: &AppState, dry_run: bool) -> AppResult<GcReport> {
    let server = policy(Some(st.cfg.retention));
    let mut report = GcReport { dry_run, removed: Vec::new(), bytes: 0 };
    for p in st.store.list_projects().await? {
        let pol = policy(p.settings.retention).over(server);
        if pol.is_empty() {
            continue;
        }
        // A project whose builds cannot be read (a status no kiln writes) is named and passed
        // over: it does not stop retention for the others.
        let facts = match st.store.retention_facts(p.id).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("retention: project {} passed over: {e}", p.name);
                continue;
            }
        };
        for r in plan(&facts, pol, kiln_store::now_ms()) {
            let (id, reason, what) = match r {
                Removal::Build { id, reason } => (id, reason, GcWhat::Build),
                Removal::Artifacts { id, reason } => (id, reason, GcWhat::Artifacts),
            };
            let jobs = st.store.job_ids_of_build(id).await?;
            let mut paths = job_files(st, &jobs, what == GcWhat::Artifacts);
            if what == GcWhat::Build {
                if let Some(up) = st.store.upload(id).await? {
                    paths.extend(crate::uploads::package_path(st, &up.package).ok());
                }
            }
            let bytes: u64 = paths.iter().map(|p| if p.is_dir() { kiln_store::dir_size(p) } else { std::fs::metadata(p).map_or(0, |m| m.len()) }).sum();
            if what == GcWhat::Artifacts && bytes == 0 && st.store.artifacts_of_build(id).await?.is_empty() {
                continue; // nothing left to remove
            }
            if !dry_run {
                // Rows first: a build never points at files that are gone.
                match what {
                    GcWhat::Build => st.store.delete_build(id).await?,
                    GcWhat::Artifacts => drop(st.store.delete_artifacts_of_build(id).await?),
                }
                for path in &paths {
                    let gone = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
                    if let Err(e) = gone {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!("retention: failed to remove {}: {e}", path.display());
                        }
                    }
                }
                tracing::info!("retention: build {id} of {} ({}): {reason}; {bytes} bytes freed", p.name, if what == GcWhat::Build { "whole" } else { "artifacts" });
            }
            report.bytes += bytes;
            report.removed.push(GcItem { build_id: id, project: p.name.clone(), what, reason, bytes });
        }
    }
    Ok(report)
}
