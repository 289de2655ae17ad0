//! `kiln run [-j N] [PATH]`: run a repository's pipeline here, no server, on N local workers,
//! with a live progress display and a closing summary; it keeps its own timing history
//! (`kiln_agent::localhistory`). Exit code: 0 passed, 1 failed, 2 error.

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use crate::api_client::seg;
use kiln_agent::local::{run_pipeline, LocalRun, RunEvent, RunSummary};
use kiln_agent::localhistory::{history_path, LocalHistory};
use kiln_wire::api::TestStatsList;
use kiln_agent::testloop::ShardEvent;
use kiln_core::junit::Outcome;
use kiln_core::state::JobStatus;
use kiln_core::testrun::{count, final_tries, Try};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct RunArgs {
    /// The repository whose pipeline to run (its working tree, as it is).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Local workers; every `tests:` job is split over them [default: the number of CPUs].
    #[arg(short = 'j', long = "jobs")]
    jobs: Option<u32>,
    /// The pipeline file, relative to PATH.
    #[arg(long, default_value = ".kiln.yml")]
    pipeline: String,
    /// Where job logs go [default: a temporary folder, kept when something fails].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Neither read nor update the timing history (`.git/kiln/timings.json`).
    #[arg(long)]
    no_history: bool,
    /// Before running, add the server's timing history of this project to the local one.
    #[arg(long, value_name = "PROJECT")]
    import_history: Option<String>,
    /// Run a build's `tests:` shards again here, as the server ran them: its commit (taken
    /// from PATH's repository), each shard's batches in the same order; BUILD/JOB replays one
    /// shard (`41/suite [2/4]`). Fetches the batches from the server, then runs locally.
    #[arg(long, value_name = "BUILD[/JOB]", conflicts_with_all = ["jobs", "import_history"])]
    replay: Option<String>,
    /// With --import-history: the branch whose history to import [default: the project's].
    #[arg(long, requires = "import_history")]
    branch: Option<String>,
    #[command(flatten)]
    client: crate::ClientOpts,
    /// `sandbox`: each job in a bubblewrap sandbox (the repository writable, the rest of the
    /// system read-only), as on an agent; `none`: steps run as you, unconfined.
    #[arg(long, default_value = "sandbox", value_parser = kiln_agent::sandbox::Isolation::parse)]
    isolation: kiln_agent::sandbox::Isolation,
}

/// The live display: a bar for jobs, one for tests, plain lines when not on a terminal.
struct Display {
    multi: MultiProgress,
    jobs: ProgressBar,
    tests: ProgressBar,
    tty: bool,
    counts: Mutex<(u64, u64)>,
}

impl Display {
    fn new() -> Display {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
        let style = ProgressStyle::with_template("{spinner} {prefix:>5} [{bar:30}] {pos}/{len} {msg}").expect("valid template").progress_chars("=> ");
        let jobs = multi.add(ProgressBar::new(0).with_style(style.clone()).with_prefix("jobs"));
        let tests = multi.add(ProgressBar::new(0).with_style(style).with_prefix("tests"));
        jobs.enable_steady_tick(Duration::from_millis(120));
        Display { multi, jobs, tests, tty, counts: Mutex::new((0, 0)) }
    }

    fn line(&self, text: String) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    fn on(&self, e: RunEvent) {
        match e {
            RunEvent::Planned { jobs } => self.jobs.set_length(jobs as u64),
            RunEvent::JobStarted { key, worker } => {
                self.jobs.set_message(format!("started {key}"));
                if !self.tty {
                    eprintln!("  {key:<28} running on worker {worker}");
                }
            }
            RunEvent::JobFinished { key, status, reason, elapsed } => {
                self.jobs.inc(1);
                let why = reason.filter(|_| status != JobStatus::Passed).map(|r| format!(" — {r}")).unwrap_or_default();
                self.line(format!("  {key:<28} {} in {}{why}", status.as_str(), kiln_core::duration::format_duration(elapsed)));
            }
            RunEvent::Tests { event, .. } => {
                let mut c = self.counts.lock().unwrap();
                match event {
                    ShardEvent::Listed(n) => self.tests.inc_length(n as u64),
                    ShardEvent::BatchStarted { .. } => {}
                    ShardEvent::BatchDone { passed, failed, retried } => {
                        c.0 += u64::from(passed);
                        c.1 += u64::from(failed);
                        self.tests.inc_length(u64::from(retried));
                        self.tests.inc(u64::from(passed + failed));
                        self.tests.set_message(format!("{} passed, {} failed", c.0, c.1));
                    }
                }
            }
        }
    }
}

fn ms(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// The closing summary: jobs, failed jobs' log tails, test counts, failures, slowest.
fn print_summary(s: &RunSummary) {
    println!();
    for j in &s.jobs {
        let why = j.reason.as_ref().filter(|_| j.status != JobStatus::Passed).map(|r| format!(" — {r}")).unwrap_or_default();
        println!("{:<30} {:<9} {}{why}", j.key, j.status.as_str(), kiln_core::duration::format_duration(j.elapsed));
    }
    for j in s.jobs.iter().filter(|j| matches!(j.status, JobStatus::Failed | JobStatus::Errored)) {
        let text = std::fs::read_to_string(&j.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("\n--- {} (last lines of {}) ---", j.key, j.log.display());
        for l in &lines[lines.len().saturating_sub(25)..] {
            println!("{l}");
        }
    }
    if !s.results.is_empty() {
        let tries: Vec<Try> = s
            .results
            .iter()
            .map(|r| {
                let c = &r.case;
                let case = if c.classname.is_empty() && c.name == r.key { String::new() } else { format!("{}::{}", c.classname, c.name) };
                Try { group: r.group.clone(), key: r.key.clone(), case, try_number: r.try_number, outcome: c.outcome }
            })
            .collect();
        let finals = final_tries(&tries);
        println!();
        for &(i, _) in &finals {
            let r = &s.results[i];
            if matches!(r.case.outcome, Outcome::Failed | Outcome::Errored) {
                println!("{} {}", r.case.outcome.as_str().to_uppercase(), r.key);
                for l in r.case.message.as_deref().unwrap_or("").lines().take(8) {
                    println!("    {l}");
                }
            }
        }
        for &(i, flaky) in &finals {
            if flaky {
                println!("FLAKY {} (passed on try {})", s.results[i].key, s.results[i].try_number + 1);
            }
        }
        let mut slow: Vec<usize> = finals.iter().map(|f| f.0).collect();
        slow.sort_by(|a, b| s.results[*b].case.duration_ms.cmp(&s.results[*a].case.duration_ms));
        println!("slowest: {}", slow.iter().take(3).map(|&i| format!("{} {}", s.results[i].key, ms(s.results[i].case.duration_ms))).collect::<Vec<_>>().join(", "));
        let c = count(&tries);
        println!("tests: {}", c.line());
    }
    let word = match s.exit_code() {
        0 => "PASSED",
        1 => "FAILED",
        _ => "ERRORED",
    };
    println!("{word} in {} ({} jobs)", kiln_core::duration::format_duration(s.elapsed), s.jobs.len());
}

/// What `--replay` runs: the build's commit checked out in a temporary folder, how many shards
/// its jobs had, and each replayed shard's batches in order.
struct Replay {
    dir: tempfile::TempDir,
    of: kiln_agent::local::BuildIdentity,
    shards: u32,
    batches: std::collections::HashMap<String, Vec<Vec<String>>>,
}

/// Fetch a build's batches (`BUILD` or `BUILD/JOB`) and check its commit out of PATH's
/// repository.
async fn replay_plan(a: &RunArgs, what: &str) -> anyhow::Result<Replay> {
    let (build, job) = match what.split_once('/') {
        Some((b, j)) => (b, Some(j)),
        None => (what, None),
    };
    let id: i64 = build.trim().parse().map_err(|_| crate::api_client::Exit(2, format!("--replay {what:?}: expected BUILD or BUILD/JOB, BUILD a number")))?;
    let rec: kiln_wire::api::BuildBatches = super::api(&a.client).get(&format!("/api/v1/builds/{id}/batches")).await?;
    let mut batches: std::collections::HashMap<String, Vec<Vec<String>>> = std::collections::HashMap::new();
    for b in rec.batches.into_iter().filter(|b| !b.tests.is_empty() && job.is_none_or(|j| j == b.job)) {
        batches.entry(b.job).or_default().push(b.tests);
    }
    if batches.is_empty() {
        let which = job.map(|j| format!(" of job {j:?}")).unwrap_or_default();
        return Err(crate::api_client::Exit(2, format!("build {id} has no test batches{which} to replay")).into());
    }
    // `suite [2/4]` → 4 shards, so the jobs here get the same keys.
    let shards = batches
        .keys()
        .filter_map(|k| k.rsplit_once(" [").and_then(|(_, t)| t.trim_end_matches(']').split_once('/')).and_then(|(_, n)| n.parse().ok()))
        .max()
        .unwrap_or(1);
    // The server says which commit: a hex object name, never something git would read as an option.
    if rec.commit.len() < 7 || rec.commit.len() > 64 || !rec.commit.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(crate::api_client::Exit(2, format!("build {id} has no commit to replay ({:?})", rec.commit)).into());
    }
    let dir = tempfile::Builder::new().prefix("kiln-replay-").tempdir()?;
    let archive = std::process::Command::new("git").arg("-C").arg(&a.path).args(["archive", "--format=tar", &rec.commit]).output()?;
    if !archive.status.success() {
        return Err(crate::api_client::Exit(2, format!("commit {} of build {id} is not in {}: fetch it first ({})", rec.commit, a.path.display(), String::from_utf8_lossy(&archive.stderr).trim())).into());
    }
    let mut tar = std::process::Command::new("tar").arg("-x").arg("-C").arg(dir.path()).stdin(std::process::Stdio::piped()).spawn()?;
    std::io::Write::write_all(tar.stdin.as_mut().expect("piped"), &archive.stdout)?;
    drop(tar.stdin.take());
    if !tar.wait()?.success() {
        anyhow::bail!("failed to unpack commit {} into {}", rec.commit, dir.path().display());
    }
    eprintln!("replaying build {id} at {}: {}", &rec.commit[..rec.commit.len().min(12)], batches.iter().map(|(k, b)| format!("{k} ({} batches)", b.len())).collect::<Vec<_>>().join(", "));
    let of = kiln_agent::local::BuildIdentity { build_id: rec.build_id, project: rec.project, branch: rec.branch, commit: rec.commit };
    Ok(Replay { dir, of, shards, batches })
}

pub async fn run(a: RunArgs) -> anyhow::Result<i32> {
    let workers = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32)).max(1);
    let (work, temp) = match &a.work_dir {
        Some(w) => (w.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("kiln-run-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let replay = match &a.replay {
        Some(r) => Some(replay_plan(&a, r).await?),
        None => None,
    };
    let (workers, dir) = match &replay {
        Some(r) => (r.shards, r.dir.path().to_path_buf()),
        None => (workers, a.path.clone()),
    };
    let history_file = if a.no_history || replay.is_some() { None } else { history_path(&a.path) };
    let mut history = match &history_file {
        Some(f) => LocalHistory::load(f).map_err(|e| crate::api_client::Exit(2, format!("{e:#}")))?,
        None => LocalHistory::default(),
    };
    if let Some(project) = &a.import_history {
        let q = a.branch.as_ref().map(|b| format!("&branch={}", seg(b))).unwrap_or_default();
        let list: TestStatsList = super::api(&a.client).get(&format!("/api/v1/projects/{}/tests?sort=slowest&limit=10000{q}", seg(project))).await?;
        let added = history.import(list.tests.into_iter().map(|t| (t.key, t.avg_ms)));
        eprintln!("imported the timing history of {} on {}: {added} tests", list.project, list.branch);
    }
    let cfg = LocalRun { dir, pipeline: a.pipeline.clone(), workers, work, history: history.clone(), replay: replay.as_ref().map(|r| r.batches.clone()), replay_of: replay.as_ref().map(|r| r.of.clone()), isolation: a.isolation };
    let display = Arc::new(Display::new());
    let d2 = display.clone();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        let sig = super::shutdown_signal().await;
        eprintln!("{sig}: stopping every job");
        c2.cancel();
    });
    let summary = run_pipeline(&cfg, Arc::new(move |e| d2.on(e)), cancel).await;
    display.jobs.finish_and_clear();
    display.tests.finish_and_clear();
    let summary = summary.map_err(|e| crate::api_client::Exit(2, format!("{e:#}")))?;
    print_summary(&summary);
    if let Some(f) = &history_file {
        history.record(&summary.results, &summary.fixed_ms);
        if let Err(e) = history.save(f) {
            eprintln!("warning: {e:#}");
        }
    }
    let code = summary.exit_code();
    if code != 0 {
        if let Some(t) = temp {
            // Keep the logs of a run that did not pass.
            let kept = t.keep();
            println!("job logs kept in {}", kept.display());
        }
    }
    Ok(code)
}
