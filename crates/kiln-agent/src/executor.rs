//! The executor: runs a job's steps one after another, each in its own process
//! group, with a timeout and cancel that signal the whole group (TERM, then
//! KILL after a grace period). Output of stdout and stderr goes, in order, to
//! one byte stream. `kiln run` and the agent share this code.
//!
//! A step starts from the environment it is given and nothing else (`env::step_env` builds
//! it from an allow-list), and, unless the agent runs with `--isolation none`, inside the
//! job's bubblewrap sandbox (`sandbox::Jail`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use crate::sandbox::{shell, Jail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Time between TERM and KILL when a step is stopped.
pub const KILL_GRACE: Duration = Duration::from_millis(1000);

/// How a run of steps ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// Step `step` (1-based) exited with `code`.
    Failed { step: usize, code: i32 },
    TimedOut { after: Duration },
    Cancelled,
    /// Kiln could not run the step (no shell, no folder…).
    Errored(String),
    /// The steps ran, but tests failed (a sharded job's verdict, with the tests named).
    TestsFailed(String),
}

impl Outcome {
    /// The job status word for this outcome.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed { .. } | Outcome::TimedOut { .. } | Outcome::TestsFailed(_) => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Errored(_) => "errored",
        }
    }
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Outcome::Passed => Some(0),
            Outcome::Failed { code, .. } => Some(*code),
            Outcome::TestsFailed(_) => Some(1),
            _ => None,
        }
    }
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Passed => None,
            Outcome::Failed { step, code } => Some(format!("step {step} exited with code {code}")),
            Outcome::TimedOut { after } => Some(format!("timed out after {}", kiln_core::duration::format_duration(*after))),
            Outcome::Cancelled => Some("cancelled".into()),
            Outcome::Errored(e) | Outcome::TestsFailed(e) => Some(e.clone()),
        }
    }
}

/// Where output goes: chunks of bytes, in order.
pub type OutputTx = mpsc::Sender<Vec<u8>>;

/// Run `steps` in `dir` with exactly the environment `env`, in `jail` when given. The
/// timeout covers all steps together. Stops at the first failing step.
pub async fn run_steps(
    steps: &[String],
    env: &BTreeMap<String, String>,
    dir: &Path,
    timeout: Option<Duration>,
    out: &OutputTx,
    cancel: &CancellationToken,
    jail: Option<&Jail>,
) -> Outcome {
    let started = Instant::now();
    for (i, step) in steps.iter().enumerate() {
        // A marker, not the command: the command is in the job's definition (`kiln show`),
        // and the log holds only what the steps printed and kiln's own notes.
        let _ = out.send(format!("\x1b[1m▶ step {} of {}\x1b[0m\n", i + 1, steps.len()).into_bytes()).await;
        let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
        match run_one(step, env, dir, left, out, cancel, jail).await {
            StepEnd::Exited(0) => {}
            StepEnd::Exited(code) => return Outcome::Failed { step: i + 1, code },
            StepEnd::TimedOut => {
                let after = timeout.unwrap_or_default();
                let _ = out.send(format!("\nkiln: step timed out after {}; its process group was killed\n", kiln_core::duration::format_duration(after)).into_bytes()).await;
                return Outcome::TimedOut { after };
            }
            StepEnd::Cancelled => {
                let _ = out.send(b"\nkiln: cancelled; the step's process group was stopped\n".to_vec()).await;
                return Outcome::Cancelled;
            }
            StepEnd::Error(e) => return Outcome::Errored(e),
        }
    }
    Outcome::Passed
}

enum StepEnd {
    Exited(i32),
    TimedOut,
    Cancelled,
    Error(String),
}

/// Signal a whole process group; a group already gone is fine.
fn signal_group(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// The processes of a sandboxed step: bwrap's child (PID 1 of the step's namespace) leads the
/// step's session; TERM to its group reaches the step without killing the namespace first.
fn sandbox_leader(bwrap: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{bwrap}/task/{bwrap}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[allow(clippy::too_many_arguments)]
async fn run_one(step: &str, env: &BTreeMap<String, String>, dir: &Path, timeout: Option<Duration>, out: &OutputTx, cancel: &CancellationToken, jail: Option<&Jail>) -> StepEnd {
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return StepEnd::Error(format!("failed to make a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return StepEnd::Error(format!("failed to make a pipe: {e}")),
    };
    let mut cmd = match jail {
        Some(j) => {
            let mut c = tokio::process::Command::new(j.program());
            c.args(j.wrap(dir, step));
            c
        }
        None => {
            let mut c = tokio::process::Command::new(shell());
            c.arg("-e").arg("-c").arg(step);
            c
        }
    };
    cmd.current_dir(dir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return StepEnd::Error(format!("failed to start {}: {e}", jail.map_or(Path::new(shell()), |j| j.program()).display())),
    };
    drop(cmd); // our copies of the pipe's writing end must close, or the reader never sees the end
    let pid = child.id().unwrap_or(0);
    // A weak sender: once the job is over and its writer drops the channel, a
    // daemon the step left behind (still holding the pipe) cannot keep it open.
    let out2 = out.downgrade();
    let pump = tokio::task::spawn_blocking(move || pump(reader, out2));
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        st = child.wait() => match st {
            Ok(s) => StepEnd::Exited(s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0))),
            Err(e) => StepEnd::Error(format!("failed to wait for the step: {e}")),
        },
        _ = deadline => StepEnd::TimedOut,
        _ = cancel.cancelled() => StepEnd::Cancelled,
    };
    if matches!(end, StepEnd::TimedOut | StepEnd::Cancelled) {
        // In a sandbox, TERM goes to the step's own group inside; bwrap itself would die at
        // once and take the step with it, leaving it no time to clean up.
        let leader = if jail.is_some() { sandbox_leader(pid) } else { None };
        signal_group(leader.unwrap_or(pid), rustix::process::Signal::TERM);
        if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
            signal_group(pid, rustix::process::Signal::KILL);
        }
        let _ = child.wait().await;
    }
    // Whatever the step left running in its group goes with it (in a sandbox: bwrap dies, and
    // with it the step's PID namespace and everything in it).
    signal_group(pid, rustix::process::Signal::KILL);
    // A daemon that left the group may hold the pipe open: do not wait for it forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    end
}

/// The step's pipe: a chatty step fills it while the reader gathers, instead of waiting on it.
const PIPE_SIZE: usize = 1 << 20;
/// The most read at once (the output channel holds a few dozen of these at most).
const READ_MAX: usize = 256 << 10;
/// A read shorter than this waits a moment before the next, so a chatty step's output is read
/// in big pieces (a few hundred reads a second, not one per write the step makes).
const SMALL_READ: usize = 64 << 10;
const GATHER: Duration = Duration::from_millis(2);

/// Copy the pipe to the output channel until every writer is gone.
fn pump(mut reader: std::io::PipeReader, out: mpsc::WeakSender<Vec<u8>>) {
    // Best effort: a user past their pipe-buffer allowance keeps the default size.
    let _ = rustix::pipe::fcntl_setpipe_size(&reader, PIPE_SIZE);
    let mut buf = vec![0u8; READ_MAX];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let Some(tx) = out.upgrade() else { return };
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return;
                }
                drop(tx);
                if n < SMALL_READ {
                    std::thread::sleep(GATHER);
                }
            }
        }
    }
}
