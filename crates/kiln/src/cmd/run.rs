//! `kiln run [-j N] [PATH]`: run a repository's pipeline here, no server, on N local workers,
//! with a live progress display and a closing summary. Exit code: 0 passed, 1 failed, 2 error.

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_agent::local::{run_pipeline, LocalRun, RunEvent, RunSummary};
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

pub async fn run(a: RunArgs) -> anyhow::Result<i32> {
    let workers = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32)).max(1);
    let (work, temp) = match &a.work_dir {
        Some(w) => (w.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("kiln-run-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let cfg = LocalRun { dir: a.path.clone(), pipeline: a.pipeline.clone(), workers, work, isolation: a.isolation };
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
