//! `kiln run`: a repository's pipeline run right here, with no server, on N local workers.
//! Jobs follow their `needs`; a `tests:` job becomes N shards working one in-process queue
//! (`localqueue`), through the same job body the agent runs (`testloop::run_body`, which uses
//! the agent's executor).
//!
//! ```text
//!  .kiln.yml ─► parse ─► expand (tests: N shards) ─► ready jobs ─► N workers ─► run_body
//!                                       ▲                                        │
//!                                       └──────── needs settled (skip on fail) ◄─┘
//! ```

use crate::executor::Outcome;
use crate::localqueue::{LocalGroup, LocalResult, LocalShard};
use crate::sandbox::{Access, Isolation, Sandbox};
use crate::testloop::{run_body, Body, Changes, ShardEvent};
use kiln_core::expand::{expand, PlannedJob};
use kiln_core::state::{resolve_dependents, JobStatus};
use kiln_wire::agent::{ArtifactsAssignment, ArtifactsWhen, JobAssignment, TestsAssignment};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What to run.
pub struct LocalRun {
    /// The repository (the working tree is used as it is, uncommitted changes included).
    pub dir: PathBuf,
    /// The pipeline file, relative to `dir`.
    pub pipeline: String,
    pub workers: u32,
    /// Where job logs and JUnit folders go.
    pub work: PathBuf,
    /// What earlier runs measured (durations, fixed costs), to order and size batches.
    pub history: crate::localhistory::LocalHistory,
    /// `kiln run --replay`: run only these shard jobs (by key), each claiming exactly these
    /// batches in this order (no retries).
    pub replay: Option<HashMap<String, Vec<Vec<String>>>>,
    /// The build a replay reproduces: its steps see its build id, project, branch and commit
    /// (else those of the repository here, and build 0).
    pub replay_of: Option<BuildIdentity>,
    /// Whether jobs run in the bubblewrap sandbox (with the repository writable in it).
    pub isolation: crate::sandbox::Isolation,
}

/// Who a replayed build was, for its steps' environment.
#[derive(Debug, Clone, Default)]
pub struct BuildIdentity {
    pub build_id: i64,
    pub project: String,
    pub branch: String,
    pub commit: String,
}

/// What happened, as it happens (for the progress display).
#[derive(Debug, Clone)]
pub enum RunEvent {
    Planned { jobs: usize },
    JobStarted { key: String, worker: u32 },
    JobFinished { key: String, status: JobStatus, reason: Option<String>, elapsed: Duration },
    Tests { key: String, event: ShardEvent },
}

/// One job's end.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub key: String,
    pub status: JobStatus,
    pub reason: Option<String>,
    pub log: PathBuf,
    pub elapsed: Duration,
}

/// The whole run's end.
pub struct RunSummary {
    pub jobs: Vec<JobEnd>,
    pub results: Vec<LocalResult>,
    pub elapsed: Duration,
    /// Each test group's fixed cost per batch, as this run measured it.
    pub fixed_ms: HashMap<String, u64>,
}

impl RunSummary {
    /// 0 every job passed, 1 some job failed, 2 some job errored or was cancelled.
    pub fn exit_code(&self) -> i32 {
        if self.jobs.iter().any(|j| matches!(j.status, JobStatus::Errored | JobStatus::Cancelled)) {
            2
        } else if self.jobs.iter().any(|j| j.status != JobStatus::Passed) {
            1
        } else {
            0
        }
    }
}

fn status_of(o: &Outcome) -> JobStatus {
    JobStatus::parse(o.status()).unwrap_or(JobStatus::Errored)
}

/// Parse the pipeline and plan its jobs, every `tests:` job split over `workers` shards.
pub fn plan(dir: &Path, file: &str, workers: u32) -> anyhow::Result<Vec<PlannedJob>> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
    let mut pipeline = kiln_core::pipeline::parse(file, &text).map_err(|diags| {
        let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    for job in &mut pipeline.jobs {
        if let Some(t) = job.tests.as_mut() {
            t.shards = workers.max(1);
        }
    }
    Ok(expand(&pipeline))
}

/// What `git -C dir ARGS` printed, when it succeeded.
fn git_stdout(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).stdin(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The build a run here is: the replayed one, or the repository's branch and head as build 0.
fn identity(dir: &Path, replay_of: Option<&BuildIdentity>) -> BuildIdentity {
    if let Some(b) = replay_of {
        return b.clone();
    }
    let git = |args: &[&str]| git_stdout(dir, args).map(|out| out.trim().to_string()).unwrap_or_default();
    let project = dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default();
    BuildIdentity { build_id: 0, project, branch: git(&["symbolic-ref", "--short", "HEAD"]), commit: git(&["rev-parse", "HEAD"]) }
}

/// The assignment an agent would get for this planned job (for the step environment).
fn assignment(pj: &PlannedJob, index: usize, dir: &Path, build: &BuildIdentity) -> JobAssignment {
    JobAssignment {
        job_id: index as i64 + 1,
        attempt: 1,
        build_id: build.build_id,
        project: build.project.clone(),
        repo: dir.to_string_lossy().into_owned(),
        branch: build.branch.clone(),
        commit: build.commit.clone(),
        key: pj.key.clone(),
        name: pj.name.clone(),
        steps: pj.steps.clone(),
        env: pj.env.clone(),
        timeout_secs: pj.timeout.map(|t| t.as_secs().max(1)),
        shard_index: pj.shard_index,
        shard_count: pj.shard_count,
        secrets: Vec::new(),
        log_limit: 0,
        package: None,
        artifacts: artifacts_spec(&pj.artifacts, pj.artifacts_when),
        has_needs: !pj.needs.is_empty(),
        network: pj.network == kiln_core::pipeline::Network::On,
        tests: pj.tests.as_ref().map(|t| TestsAssignment {
            list: t.list.clone(),
            run: t.run.clone(),
            split_files: t.split_files.clone(),
            reports: t.reports.clone(),
            retries: t.retries,
            flaky_fails_build: t.flaky_fails_build,
        }),
    }
}

/// The pipeline's `artifacts:` as an agent gets it (None when the job keeps nothing).
fn artifacts_spec(paths: &[String], when: kiln_core::pipeline::ArtifactsWhen) -> Option<ArtifactsAssignment> {
    use kiln_core::pipeline::ArtifactsWhen as W;
    (!paths.is_empty()).then(|| ArtifactsAssignment {
        paths: paths.to_vec(),
        when: match when {
            W::Always => ArtifactsWhen::Always,
            W::OnSuccess => ArtifactsWhen::OnSuccess,
            W::OnFailure => ArtifactsWhen::OnFailure,
        },
    })
}

/// Where a job runs: its folder, the repository, and the sandbox of the run (if any).
struct Place {
    dir: PathBuf,
    work: PathBuf,
    all_work: PathBuf,
    sandbox: Option<Arc<Sandbox>>,
    /// The jobs it needs (their kept artifacts go to `$KILN_ARTIFACTS_IN/<job>/`).
    needs: Vec<String>,
    /// The files the working tree changed, read before any step ran.
    changes: Arc<Vec<String>>,
}

/// The files the working tree changed: the commit against its first parent, uncommitted and
/// untracked files. Read once, before any step runs: a step may change the tree's `.git`,
/// and git run there afterwards would obey it (filters and `core.fsmonitor` are commands).
fn working_tree_changes(dir: &Path) -> Vec<String> {
    let git = |args: &[&str]| git_stdout(dir, args).map(|out| out.lines().filter(|l| !l.is_empty()).map(str::to_string).collect::<Vec<String>>()).unwrap_or_default();
    let mut files = git(&["diff", "--no-ext-diff", "--name-only", "HEAD^", "HEAD"]);
    files.extend(git(&["diff", "--no-ext-diff", "--name-only", "HEAD"]));
    files.extend(git(&["ls-files", "--others", "--exclude-standard"]));
    files.sort();
    files.dedup();
    files
}

/// Where `kiln run` keeps a job's artifacts: `<work>/artifacts/<job>/<name>`.
fn kept_dir(all_work: &Path, key: &str) -> Option<PathBuf> {
    kiln_core::paths::safe_relative(key).map(|k| all_work.join("artifacts").join(k))
}

/// Copy `from` to `to`, making its folder.
fn copy_file(from: &Path, to: &Path) -> std::io::Result<u64> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to)
}

/// After the steps: keep the files the job's `artifacts:` globs name (symlinks skipped), when
/// `when` says so, as an agent uploads them. The log says what was kept.
fn keep_artifacts(job: &JobAssignment, src: &Path, all_work: &Path, outcome: &Outcome) -> Vec<String> {
    let Some(spec) = &job.artifacts else { return Vec::new() };
    if !crate::artifacts::wanted(spec.when, outcome) {
        return Vec::new();
    }
    let Some(dest) = kept_dir(all_work, &job.key) else {
        return vec![format!("kiln: artifacts of job {:?} not kept: its name cannot be a folder\n", job.key)];
    };
    let _ = std::fs::remove_dir_all(&dest);
    let mut names: Vec<String> = spec.paths.iter().flat_map(|g| crate::files::find_files(src, g)).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return vec![format!("kiln: no files match the artifacts {:?}\n", spec.paths)];
    }
    names
        .iter()
        .map(|name| match kiln_core::paths::safe_relative(name).map(|rel| copy_file(&src.join(name), &dest.join(rel))) {
            Some(Ok(n)) => format!("kiln: kept artifact {name} ({n} bytes)\n"),
            Some(Err(e)) => format!("kiln: artifact {name} not kept: {e}\n"),
            None => format!("kiln: artifact {name} not kept: the name leaves its folder\n"),
        })
        .collect()
}

/// Before the steps: the artifacts the jobs it needs kept, into `$KILN_ARTIFACTS_IN/<job>/<name>`.
fn fetch_inputs(needs: &[String], all_work: &Path, work: &Path) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    for need in needs {
        let Some(from) = kept_dir(all_work, need) else { continue };
        let Some(rel) = kiln_core::paths::safe_relative(need) else { continue };
        let into = work.join("artifacts-in").join(rel);
        for name in crate::files::find_files(&from, "**") {
            let n = copy_file(&from.join(&name), &into.join(&name)).map_err(|e| format!("failed to copy artifact {name} of {need}: {e}"))?;
            notes.push(format!("kiln: fetched artifact {need}/{name} ({n} bytes) into $KILN_ARTIFACTS_IN\n"));
        }
    }
    Ok(notes)
}

/// Run one job in `work` with its log in `log`.
async fn run_job(job: JobAssignment, place: Place, queue: LocalShard, cancel: CancellationToken, events: Arc<dyn Fn(RunEvent) + Send + Sync>) -> Outcome {
    let Place { dir, work, all_work, sandbox, needs, changes } = place;
    if let Err(e) = crate::env::make_job_dir(&work, |_| {}) {
        return Outcome::Errored(format!("failed to make the job's folder {}: {e}", work.display()));
    }
    let inputs = fetch_inputs(&needs, &all_work, &work);
    let log = match std::fs::File::create(work.join("log")) {
        Ok(f) => f,
        Err(e) => return Outcome::Errored(format!("failed to create the job's log in {}: {e}", work.display())),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::task::spawn_blocking(move || {
        let mut log = std::io::BufWriter::new(log);
        while let Some(chunk) = rx.blocking_recv() {
            let _ = log.write_all(&chunk);
        }
        let _ = log.flush();
    });
    let jail = sandbox.as_ref().map(|s| s.jail(&work, &[(dir.as_path(), Access::Writable)], &all_work, job.network));
    let env = crate::job_env(&job, "local", &work, jail.as_ref().map(|j| j.home.as_path()));
    let key = job.key.clone();
    let inputs = match inputs {
        Ok(notes) => notes,
        Err(e) => {
            let _ = tx.send(format!("kiln: {e}\n").into_bytes()).await;
            drop(tx);
            let _ = writer.await;
            return Outcome::Errored(e);
        }
    };
    for note in inputs {
        let _ = tx.send(note.into_bytes()).await;
    }
    let on_tests = move |e: ShardEvent| events(RunEvent::Tests { key: key.clone(), event: e });
    let body = Body {
        steps: &job.steps,
        tests: job.tests.as_ref(),
        env: &env,
        src: &dir,
        work: &work,
        timeout: job.timeout_secs.map(Duration::from_secs),
        out: &tx,
        cancel: &cancel,
        events: Some(&on_tests),
        jail: jail.as_ref(),
        secrets: &[],
        changes: Changes::Listed(&changes),
    };
    let outcome = run_body(&queue, &body).await;
    for note in keep_artifacts(&job, &dir, &all_work, &outcome) {
        let _ = tx.send(note.into_bytes()).await;
    }
    if let Some(r) = outcome.reason() {
        let _ = tx.send(format!("\nkiln: job {}: {r}\n", outcome.status()).into_bytes()).await;
    }
    drop(tx);
    let _ = writer.await;
    outcome
}

/// Run the pipeline; `events` sees each step of the way. Cancelling `cancel` stops every job.
pub async fn run_pipeline(cfg: &LocalRun, events: Arc<dyn Fn(RunEvent) + Send + Sync>, cancel: CancellationToken) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let mut planned = plan(&cfg.dir, &cfg.pipeline, cfg.workers)?;
    if let Some(r) = &cfg.replay {
        planned.retain(|p| r.contains_key(&p.key));
        if planned.is_empty() {
            let wanted: Vec<&String> = r.keys().collect();
            anyhow::bail!("the pipeline here has none of the jobs to replay ({wanted:?}): is this the build's commit?");
        }
        for p in &mut planned {
            p.needs.clear();
        }
    }
    std::fs::create_dir_all(&cfg.work).map_err(|e| anyhow::anyhow!("failed to create {}: {e}", cfg.work.display()))?;
    // The steps are the user's own: they run as the user, in the same sandbox as on an agent.
    let sandbox = match cfg.isolation {
        Isolation::Sandbox => Some(Sandbox::detect(false, Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?),
        Isolation::None => None,
    };
    events(RunEvent::Planned { jobs: planned.len() });
    let changes = Arc::new(working_tree_changes(&cfg.dir));
    let build = identity(&cfg.dir, cfg.replay_of.as_ref());
    let ids = Arc::new(AtomicI64::new(1));
    let mut groups: HashMap<String, Arc<LocalGroup>> = HashMap::new();
    let mut status: Vec<JobStatus> = vec![JobStatus::Queued; planned.len()];
    let mut ready: Vec<bool> = planned.iter().map(|p| p.needs.is_empty()).collect();
    let mut ends: Vec<Option<JobEnd>> = vec![None; planned.len()];
    let mut running = tokio::task::JoinSet::new();
    let mut free: Vec<u32> = (1..=cfg.workers.max(1)).rev().collect();
    loop {
        while let Some(i) = (0..planned.len()).find(|&i| ready[i] && status[i] == JobStatus::Queued) {
            let Some(worker) = free.pop() else { break };
            let pj = &planned[i];
            status[i] = JobStatus::Running;
            let group_key = kiln_core::testrun::group_key(&pj.key, pj.shard_count);
            let retries = if cfg.replay.is_some() { 0 } else { pj.tests.as_ref().map_or(0, |t| t.retries) };
            let group = groups
                .entry(group_key.clone())
                .or_insert_with(|| {
                    let g = LocalGroup::new(&group_key, pj.shard_count, retries, cfg.history.group(&group_key), ids.clone());
                    if let Some(r) = &cfg.replay {
                        let mine = planned.iter().filter(|p| kiln_core::testrun::group_key(&p.key, p.shard_count) == group_key);
                        g.replay(mine.filter_map(|p| r.get(&p.key).map(|b| (p.shard_index, b.clone()))).collect());
                    }
                    g
                })
                .clone();
            let queue = LocalShard { group, shard: pj.shard_index, job: pj.key.clone() };
            let job = assignment(pj, i, &cfg.dir, &build);
            let work = cfg.work.join(format!("job-{}", i + 1));
            events(RunEvent::JobStarted { key: pj.key.clone(), worker });
            let place = Place { dir: cfg.dir.clone(), work, all_work: cfg.work.clone(), sandbox: sandbox.clone(), needs: pj.needs.clone(), changes: changes.clone() };
            let (cancel, ev) = (cancel.clone(), events.clone());
            running.spawn(async move {
                let t = Instant::now();
                let outcome = run_job(job, place, queue, cancel, ev).await;
                (i, worker, outcome, t.elapsed())
            });
        }
        let Some(done) = running.join_next().await else { break };
        let (i, worker, outcome, elapsed) = done.map_err(|e| anyhow::anyhow!("a job's task failed: {e}"))?;
        free.push(worker);
        status[i] = status_of(&outcome);
        let key = planned[i].key.clone();
        events(RunEvent::JobFinished { key: key.clone(), status: status[i], reason: outcome.reason(), elapsed });
        ends[i] = Some(JobEnd { key, status: status[i], reason: outcome.reason(), log: cfg.work.join(format!("job-{}", i + 1)).join("log"), elapsed });
        let jobs: Vec<(String, Vec<String>, JobStatus)> = planned.iter().zip(&status).map(|(p, s)| (p.key.clone(), p.needs.clone(), *s)).collect();
        let (now_ready, skip) = resolve_dependents(&jobs);
        for (j, p) in planned.iter().enumerate() {
            if now_ready.contains(&p.key) {
                ready[j] = true;
            }
            if skip.contains(&p.key) && status[j] == JobStatus::Queued {
                status[j] = JobStatus::Skipped;
                let reason = Some("a job it needs did not pass".to_string());
                events(RunEvent::JobFinished { key: p.key.clone(), status: JobStatus::Skipped, reason: reason.clone(), elapsed: Duration::ZERO });
                ends[j] = Some(JobEnd { key: p.key.clone(), status: JobStatus::Skipped, reason, log: PathBuf::new(), elapsed: Duration::ZERO });
            }
        }
    }
    let jobs = ends
        .into_iter()
        .zip(&planned)
        .map(|(e, p)| {
            e.unwrap_or_else(|| JobEnd { key: p.key.clone(), status: JobStatus::Skipped, reason: Some("never became ready".into()), log: PathBuf::new(), elapsed: Duration::ZERO })
        })
        .collect();
    let mut results = Vec::new();
    let mut keys: Vec<&String> = groups.keys().collect();
    keys.sort();
    for k in keys {
        results.extend(groups[k].results());
    }
    let fixed_ms = groups.iter().filter_map(|(k, g)| g.fixed_ms().map(|f| (k.clone(), f))).collect();
    Ok(RunSummary { jobs, results, elapsed: started.elapsed(), fixed_ms })
}
