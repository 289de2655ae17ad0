//! One work slot of the agent: claim, run, report, again — until drained.

use crate::client::{backoff, CallError};
use crate::executor::Outcome;
use crate::testhttp::HttpQueue;
use crate::testloop::{run_body, Body, Changes};
use crate::spool::{upload, LogWriter, Shared};
use crate::env::job_env;
use crate::sandbox::Access;
use crate::{draining, mark_stale, Agent, Running};
use kiln_wire::agent::{FinishRequest, JobAssignment, LogRest, FINISH_LOG_MAX};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) async fn slot(agent: Arc<Agent>, index: u32) {
    let mut failures = 0u32;
    // A claim retried after a lost answer keeps its id, so the server hands back the same job.
    let mut claim_id = uuid_like();
    while !draining(&agent) {
        tracing::debug!("slot {index}: claiming work");
        let claim = tokio::select! {
            c = agent.client.claim(&claim_id) => c,
            _ = agent.control.drain.cancelled() => break,
        };
        match claim {
            Ok(Some(job)) => {
                failures = 0;
                claim_id = uuid_like();
                run_job(&agent, job).await;
            }
            Ok(None) => claim_id = uuid_like(),
            Err(CallError::Unauthorized(e)) => {
                tracing::error!("slot {index}: the server no longer knows this agent ({e}); restart the agent to register again");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => {
                failures += 1;
                if crate::client::worth_logging(failures) {
                    tracing::warn!("slot {index}: claim failed: {e}; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = agent.control.drain.cancelled() => break,
                }
            }
        }
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

async fn run_job(agent: &Arc<Agent>, job: JobAssignment) {
    let mut times = Phases::start();
    let dir = agent.cfg.work_dir.join("jobs").join(format!("{}-{}", job.job_id, job.attempt));
    let temp = crate::sandbox::temp_of(&dir);
    let give = |p: &Path| {
        if let Some(s) = &agent.sandbox {
            s.give(p);
        }
    };
    // A git job reuses a folder an earlier job of its repository left (`reuse.rs`): no git
    // runs there, and every file is made like the pristine checkout's before a step sees it.
    let reuse = job.package.is_none();
    // A kept folder that cannot be reset (a step left what it cannot remove) is not used: the
    // job gets a fresh one, or errors; it never runs among what an earlier job left.
    let made = match reuse && agent.kept.take(&agent.cfg.work_dir, &job.repo, &dir, &temp).is_some() {
        true => reset_job_dir(agent, job.job_id, &dir, &temp, give).or_else(|e| {
            tracing::warn!("job {}: its kept folder could not be reset ({e}); making a fresh one", job.job_id);
            fresh_job_dir(&dir, &temp, give)
        }),
        false => fresh_job_dir(&dir, &temp, give),
    };
    let made = made.map_err(|e| format!("failed to make the job's folder {}: {e}", dir.display()));
    times.mark("folder");
    if let Err(e) = &made {
        tracing::error!("job {}: {e}", job.job_id);
    }
    // The log spool stays outside the job's folder: a step must not write it behind the masker.
    // A new file per job, deleted after it: ext4 writes a file back to disk when it is closed
    // after being truncated to nothing and written again (`auto_da_alloc`), so an emptied and
    // reused spool would send every log to disk; a new one that is deleted soon never gets there.
    let spool = agent.cfg.work_dir.join("spool").join(format!("{}-{}.log", job.job_id, job.attempt));
    let _ = std::fs::create_dir_all(agent.cfg.work_dir.join("spool"));
    tracing::info!("job {} ({} of build {}) attempt {}: started", job.job_id, job.key, job.build_id, job.attempt);
    let cancel = CancellationToken::new();
    let running = Arc::new(Running {
        attempt: job.attempt,
        key: job.key.clone(),
        cancel: cancel.clone(),
        stale: AtomicBool::new(false),
        status_file: dir.join("status.json"),
        secrets: job.secrets.clone(),
    });
    agent.running.lock().unwrap().insert(job.job_id, running.clone());
    // A second SIGTERM stops the steps; the job then goes back to the queue.
    let abort = agent.control.abort.clone();
    let cancel2 = cancel.clone();
    let watch_abort = tokio::spawn(async move {
        abort.cancelled().await;
        cancel2.cancel();
    });

    let (mut writer, shared) = match LogWriter::create(spool.clone(), &job.secrets, job.log_limit) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("job {}: failed to create the log spool: {e}", job.job_id);
            agent.running.lock().unwrap().remove(&job.job_id);
            return;
        }
    };
    // The end of a short log is left for the finish to carry (one call, not two).
    let uploader = tokio::spawn(upload(shared.clone(), agent.client.clone(), job.job_id, job.attempt, FINISH_LOG_MAX as u64));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let write_task = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            writer.write(&chunk);
        }
        writer
    });

    let src = dir.join("src");
    let queue = HttpQueue::new(agent.client.clone(), job.job_id, job.attempt, cancel.clone());
    let outcome = {
        let _ = tx.send(format!("kiln: job {} on agent {}, commit {}\n", job.key, agent.cfg.name, job.commit).into_bytes()).await;
        // A checkout that hangs (a dead remote) must still yield to cancel.
        let prepared = match &made {
            Err(e) => Err(e.clone()),
            Ok(()) => tokio::select! {
                r = crate::checkout::prepare(agent, &job, &src) => r,
                _ = cancel.cancelled() => Err("cancelled while checking out".to_string()),
            },
        };
        times.mark("checkout");
        match prepared {
            Err(_) if cancel.is_cancelled() => Outcome::Cancelled,
            Err(e) => {
                let _ = tx.send(format!("kiln: {e}\n").into_bytes()).await;
                Outcome::Errored(e)
            }
            Ok(()) if job.has_needs && !cancel.is_cancelled() => match crate::artifacts::fetch_inputs(&agent.client, &job, &dir.join("artifacts-in"), &tx).await {
                Err(e) => {
                    let _ = tx.send(format!("kiln: {e}\n").into_bytes()).await;
                    Outcome::Errored(e)
                }
                Ok(()) => run_steps_of(agent, &job, &dir, &src, &queue, &tx, &cancel, &running).await,
            },
            Ok(()) => run_steps_of(agent, &job, &dir, &src, &queue, &tx, &cancel, &running).await,
        }
    };
    drop(tx);
    times.mark("steps");
    let mut writer = write_task.await.expect("log writer task");
    let aborted = agent.control.abort.is_cancelled();
    if let Some(r) = outcome.reason() {
        writer.note(&format!("\nkiln: job {}: {r}\n", outcome.status()));
    }
    writer.close();
    watch_abort.abort();
    let _ = uploader.await;
    times.mark("log");

    let stale = shared.stale.load(Ordering::SeqCst) || running.stale.load(Ordering::SeqCst);
    if stale {
        tracing::warn!("job {} attempt {}: the server took it back; result dropped", job.job_id, job.attempt);
    } else if aborted {
        // What the finish would have carried goes first: the log of this attempt stays whole.
        upload(shared.clone(), agent.client.clone(), job.job_id, job.attempt, 0).await;
        match agent.client.release(job.job_id, job.attempt).await {
            Ok(_) => tracing::info!("job {} handed back to the server", job.job_id),
            Err(e) => tracing::warn!("job {}: failed to hand it back ({e}); its lease will expire", job.job_id),
        }
    } else {
        report(agent, &job, &outcome, &shared, &running).await;
        times.mark("finish");
    }
    agent.running.lock().unwrap().remove(&job.job_id);
    if reuse && made.is_ok() {
        agent.kept.put(&agent.cfg.work_dir, &job.repo, &dir, &temp);
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&temp);
    }
    let _ = std::fs::remove_file(&spool);
    times.mark("cleanup");
    tracing::debug!("job {} attempt {} took {}", job.job_id, job.attempt, times);
}

/// Where a job's time went on the agent, phase by phase (a debug line per job).
struct Phases {
    last: std::time::Instant,
    spent: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Self {
        Phases { last: std::time::Instant::now(), spent: Vec::new() }
    }

    /// The phase `name` ends now.
    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.spent.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.spent.iter().map(|(n, d)| format!("{n} {:.1} ms", d.as_secs_f64() * 1000.0)).collect();
        f.write_str(&parts.join(", "))
    }
}

/// A new job folder: whatever was at `dir` and its temp folder is removed first (an error
/// if it cannot be), then `env::make_job_dir`.
fn fresh_job_dir(dir: &Path, temp: &Path, give: impl Fn(&Path)) -> std::io::Result<()> {
    for d in [dir, temp] {
        match std::fs::remove_dir_all(d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    crate::env::make_job_dir(dir, give)
}

/// Make a kept job folder like a fresh one (`env::make_job_dir`), all but its working copy
/// (`src`, synced by the checkout): the same empty folders and files, nothing else, and an empty
/// temp folder; handed to the step's user by `give`. Without a sandbox, whose steps can write
/// the layout the folders are reset from, the layout's seal is checked before and after (one
/// that changed is made again; changed meanwhile, the job gets a fresh folder instead).
fn reset_job_dir(agent: &Agent, job_id: i64, dir: &Path, temp: &Path, give: impl Fn(&Path)) -> std::io::Result<()> {
    use crate::seal::Seal;
    let layout = agent.cfg.work_dir.join("layout");
    let temp_layout = crate::sandbox::temp_of(&layout);
    let checked = agent.sandbox.is_none();
    let holds = |s: &(Seal, Seal)| s.0.holds(&layout) && s.1.holds(&temp_layout);
    let mut sealed = agent.layout_seal.lock().unwrap();
    if checked && !sealed.as_ref().is_some_and(holds) {
        // Made by an earlier run of the agent, or changed since: made again.
        crate::reuse::remove_any(&layout)?;
        crate::reuse::remove_any(&temp_layout)?;
        *sealed = None;
    }
    if !layout.join("home").is_dir() {
        // Made aside and renamed into place: two slots may get here at once.
        let aside = agent.cfg.work_dir.join(format!("layout-{job_id}"));
        crate::env::make_job_dir(&aside, |_| {})?;
        if std::fs::rename(&aside, &layout).is_ok() {
            let _ = std::fs::rename(crate::sandbox::temp_of(&aside), &temp_layout);
        }
        let _ = crate::reuse::remove_any(&aside);
        let _ = crate::reuse::remove_any(&crate::sandbox::temp_of(&aside));
    }
    match crate::sandbox::tmp_mount_point(&agent.cfg.work_dir) {
        Some(stub) => std::fs::create_dir_all(temp_layout.join(stub))?,
        None => std::fs::create_dir_all(&temp_layout)?,
    }
    if checked && sealed.is_none() {
        *sealed = Some((Seal::of(&layout)?, Seal::of(&temp_layout)?));
    }
    // Only a check needs the others kept out while the folder is synced.
    let sealed = checked.then_some(sealed);
    crate::reuse::sync_tree(&layout, dir, &["src"])?;
    crate::reuse::sync_tree(&temp_layout, temp, &[])?;
    if let Some(mut sealed) = sealed {
        if !sealed.as_ref().is_some_and(holds) {
            *sealed = None;
            return Err(std::io::Error::other("the job layout changed while the folder was reset"));
        }
    }
    give(temp);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name() != "src" {
            give(&e.path());
        }
    }
    Ok(())
}

/// The job's body (steps, or the shard loop) in its sandbox, then its artifacts.
#[allow(clippy::too_many_arguments)]
async fn run_steps_of(
    agent: &Agent,
    job: &JobAssignment,
    dir: &Path,
    src: &Path,
    queue: &HttpQueue,
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
    cancel: &CancellationToken,
    running: &Running,
) -> Outcome {
    if let Some(s) = &agent.sandbox {
        s.give(src);
    }
    let mirror = job.package.is_none().then(|| crate::checkout::mirror_path(&agent.cfg.work_dir, &job.repo));
    let extra: Vec<(&Path, Access)> = mirror.iter().map(|m| (m.as_path(), Access::ReadOnly)).collect();
    let jail = agent.sandbox.as_ref().map(|s| s.jail(dir, &extra, &agent.cfg.work_dir, job.network));
    let env = job_env(job, &agent.cfg.name, dir, jail.as_ref().map(|j| j.home.as_path()));
    let body = Body {
        steps: &job.steps,
        tests: job.tests.as_ref(),
        env: &env,
        src,
        work: dir,
        timeout: job.timeout_secs.map(Duration::from_secs),
        out: tx,
        cancel,
        events: None,
        jail: jail.as_ref(),
        secrets: &job.secrets,
        changes: match &mirror {
            Some(git_dir) => Changes::Mirror { git_dir, commit: &job.commit },
            None => Changes::Unknown,
        },
    };
    let outcome = run_body(queue, &body).await;
    if queue.stale.load(Ordering::SeqCst) {
        mark_stale(running);
    }
    if let Some(spec) = &job.artifacts {
        if !crate::artifacts::upload(&agent.client, job, spec, src, &outcome, tx).await {
            mark_stale(running);
        }
    }
    outcome
}

/// Tell the server how the job ended, with the end of its log when short (`spool::rest`),
/// retrying until it answers.
async fn report(agent: &Agent, job: &JobAssignment, outcome: &Outcome, shared: &Arc<Shared>, running: &Running) {
    use base64::Engine;
    let log_rest = crate::spool::rest(shared).filter(|(_, b)| !b.is_empty()).map(|(offset, b)| LogRest { offset, base64: base64::engine::general_purpose::STANDARD.encode(b) });
    let mut req = FinishRequest {
        attempt: job.attempt,
        status: outcome.status().to_string(),
        exit_code: outcome.exit_code(),
        reason: outcome.reason(),
        log_len: shared.written.load(Ordering::SeqCst),
        log_rest,
    };
    let mut failures = 0;
    loop {
        match agent.client.finish(job.job_id, &req).await {
            Err(CallError::Gap(held)) if req.log_rest.is_some() => {
                // The server holds less than the agent thought (another server's files): the
                // log goes up from there as an upload, then the finish alone.
                tracing::warn!("job {}: the server holds {held} bytes of its log; sending the rest before the result", job.job_id);
                shared.delivered.store(held, Ordering::SeqCst);
                upload(shared.clone(), agent.client.clone(), job.job_id, job.attempt, 0).await;
                if shared.stale.load(Ordering::SeqCst) {
                    mark_stale(running);
                    return;
                }
                req.log_rest = None;
            }
            Ok(_) => {
                tracing::info!("job {} ({}) attempt {}: {}", job.job_id, job.key, job.attempt, outcome.status());
                return;
            }
            Err(CallError::Stale(e)) => {
                mark_stale(running);
                tracing::warn!("job {} attempt {}: result refused ({e})", job.job_id, job.attempt);
                return;
            }
            Err(CallError::Refused(e)) => {
                tracing::error!("job {}: result refused: {e}", job.job_id);
                return;
            }
            Err(e) => {
                failures += 1;
                if crate::client::worth_logging(failures) {
                    tracing::warn!("job {}: cannot report the result yet ({e}); retrying", job.job_id);
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}
