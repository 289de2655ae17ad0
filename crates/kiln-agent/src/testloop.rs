//! The body of a job: its steps, then — for a `tests:` job — the shard loop, or — for a
//! plain job — the upload of its JUnit reports. The same code runs on an agent (queue over
//! HTTP, `HttpQueue`) and in `kiln run` (an in-process queue, `LocalQueue`).
//!
//! ```text
//!  steps ─► claim ─┬─ list  ─► run `list` (or expand `files:`) ─► upload ids ─┐
//!                  ├─ wait  ─► (another shard lists) ──────────────────────────┤
//!                  ├─ batch ─► run `run {tests}` ─► upload JUnit ─► done ──────┤
//!                  │    ▲──────────────────────────────────────────────────────┘
//!                  └─ done  ─► verdict: passed, or the failed/flaky tests named
//! ```

use crate::executor::{run_steps, Outcome, OutputTx};
use crate::files::find_files;
use crate::queue::{QueueError, TestQueue};
use crate::reports::upload_reports;
use crate::sandbox::{read_own_file, Jail};
use kiln_wire::agent::TestsAssignment;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a shard reports as it goes (for `kiln run`'s display).
#[derive(Debug, Clone)]
pub enum ShardEvent {
    Listed(usize),
    BatchStarted { tests: usize },
    BatchDone { passed: u32, failed: u32, retried: u32 },
}

/// Everything a job body needs besides its queue.
pub struct Body<'a> {
    pub steps: &'a [String],
    pub tests: Option<&'a TestsAssignment>,
    pub env: &'a BTreeMap<String, String>,
    /// The working copy the steps run in.
    pub src: &'a Path,
    /// The job's own folder (JUnit folders per batch, the list's output).
    pub work: &'a Path,
    pub timeout: Option<Duration>,
    pub out: &'a OutputTx,
    pub cancel: &'a CancellationToken,
    pub events: Option<&'a (dyn Fn(ShardEvent) + Send + Sync)>,
    /// The job's sandbox (none with `--isolation none`).
    pub jail: Option<&'a Jail>,
    /// Masked in everything the job reports besides its log: JUnit reports, test ids.
    pub secrets: &'a [String],
    /// Where the shard that lists reads the files the commit changed (their tests go first).
    pub changes: Changes<'a>,
}

/// Where the files a job's commit changed are read from.
#[derive(Debug, Clone, Copy)]
pub enum Changes<'a> {
    /// A server's job: the commit against its first parent, in the agent's bare mirror of the
    /// repository — no working tree, out of a sandboxed step's reach. Never the checkout: a
    /// step runs before the list and may rewrite its `.git`, and git run there by the agent,
    /// outside the sandbox, would obey it (`core.fsmonitor` and filters are commands); a
    /// checkout the sandbox's user owns is also one git refuses to read for root.
    Mirror { git_dir: &'a Path, commit: &'a str },
    /// Read before any step ran (`kiln run`: the developer's working tree — the commit against
    /// its first parent, uncommitted and untracked files; see `local::working_tree_changes`).
    Listed(&'a [String]),
    /// Nothing to compare with (an uploaded package).
    Unknown,
}

impl Body<'_> {
    async fn say(&self, text: String) {
        self.say_line(&text).await;
    }
    pub(crate) async fn say_line(&self, text: &str) {
        let _ = self.out.send(format!("kiln: {text}\n").into_bytes()).await;
    }
    fn event(&self, e: ShardEvent) {
        if let Some(f) = self.events {
            f(e);
        }
    }
    fn left(&self, start: Instant) -> Option<Duration> {
        self.timeout.map(|t| t.saturating_sub(start.elapsed()))
    }
}

/// Run a job: steps, then its tests (sharded) or the upload of its JUnit folder (plain).
pub async fn run_body<Q: TestQueue>(q: &Q, b: &Body<'_>) -> Outcome {
    let start = Instant::now();
    let steps = run_steps(b.steps, b.env, b.src, b.timeout, b.out, b.cancel, b.jail).await;
    match b.tests {
        Some(t) if steps == Outcome::Passed => run_shard(q, b, t, start).await,
        Some(_) => steps,
        None => {
            let junit = b.env.get("KILN_JUNIT_DIR").map(Path::new).unwrap_or(b.work);
            let problems = upload_reports(q, b.out, b.src, b.secrets, None, junit, &[]).await;
            match problems {
                Err(QueueError::Stale(e)) => Outcome::Errored(e),
                Err(e) if steps == Outcome::Passed => Outcome::Errored(e.to_string()),
                _ => steps,
            }
        }
    }
}

/// The most a list command's output may hold.
const LIST_LIMIT: u64 = 64 << 20;

/// Run the list command (stdout to a file, stderr to the log) and read the ids. The inner
/// error is a listing failure to upload (every shard then ends with it); the outer one ends
/// this shard (cancelled, timed out).
async fn list_ids(b: &Body<'_>, list: &str, start: Instant) -> Result<Result<Vec<String>, String>, Outcome> {
    let file = b.work.join("kiln-test-list.txt");
    let quoted = kiln_core::shards::shell_quote_all(&[file.to_string_lossy().into_owned()]);
    let step = format!("( {list}\n) > {quoted}");
    match run_steps(&[step], b.env, b.src, b.left(start), b.out, b.cancel, b.jail).await {
        Outcome::Passed => {}
        Outcome::Failed { code, .. } => return Ok(Err(format!("the list command exited with code {code}: {list}"))),
        other => return Err(other),
    }
    let text = read_own_file(&file, LIST_LIMIT).map_err(|e| Outcome::Errored(format!("failed to read the list command's output: {e}")))?;
    let text = kiln_core::mask::mask_secrets(&String::from_utf8_lossy(&text), b.secrets);
    let ids: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if ids.is_empty() {
        return Ok(Err(format!("the list command printed no test ids: {list}")));
    }
    Ok(Ok(ids))
}

/// The files the job's commit changed against its first parent (see [`Changes`]); empty when
/// git cannot tell (a first commit, a package).
async fn changed_files(b: &Body<'_>) -> Vec<String> {
    match b.changes {
        Changes::Unknown => Vec::new(),
        Changes::Listed(files) => files.to_vec(),
        Changes::Mirror { git_dir, commit } => {
            let out = tokio::process::Command::new("git")
                .arg("--git-dir")
                .arg(git_dir)
                // Nothing a repository's config names is run for this read.
                .args(["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "diff", "--no-ext-diff", "--name-only"])
                .arg(format!("{commit}^"))
                .arg(commit)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => {
                    let mut files: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
                    files.sort();
                    files.dedup();
                    files
                }
                _ => Vec::new(),
            }
        }
    }
}

/// Claim batches until the queue is empty; then the verdict.
async fn run_shard<Q: TestQueue>(q: &Q, b: &Body<'_>, t: &TestsAssignment, start: Instant) -> Outcome {
    if !t.run.contains("{tests}") {
        return Outcome::Errored(format!("the tests' run command has no {{tests}} placeholder: {}", t.run));
    }
    let mut problems: Vec<String> = Vec::new();
    let (mut batches, mut ran) = (0u32, 0usize);
    loop {
        if b.cancel.is_cancelled() {
            return Outcome::Cancelled;
        }
        let asked = Instant::now();
        let claim = match q.claim().await {
            Ok(c) => c,
            Err(QueueError::Cancelled) => return Outcome::Cancelled,
            Err(e) => return Outcome::Errored(e.to_string()),
        };
        let claimed_ms = asked.elapsed().as_millis();
        if let Some(e) = claim.error {
            b.say(format!("no tests to run: {e}")).await;
            return Outcome::Errored(e);
        }
        if claim.wait {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if claim.list {
            let (ids, static_split) = match &t.split_files {
                Some(glob) => {
                    let files = find_files(b.src, glob);
                    let ids = if files.is_empty() { Err(format!("the files glob {glob:?} matched no file")) } else { Ok(files) };
                    (ids, true)
                }
                None => {
                    let list = t.list.as_deref().unwrap_or_default();
                    match list_ids(b, list, start).await {
                        Ok(ids) => (ids, false),
                        Err(stop) => return stop,
                    }
                }
            };
            match &ids {
                Ok(ids) => {
                    b.say(format!("listed {} test{} in {} ms", ids.len(), if ids.len() == 1 { "" } else { "s" }, start.elapsed().as_millis())).await;
                    b.event(ShardEvent::Listed(ids.len()));
                }
                Err(e) => b.say(format!("listing failed: {e}")).await,
            }
            if let Err(e) = q.upload_list(ids, static_split, changed_files(b).await).await {
                return if matches!(e, QueueError::Cancelled) { Outcome::Cancelled } else { Outcome::Errored(e.to_string()) };
            }
            continue;
        }
        if claim.done {
            let n = claim.failed.len();
            b.say(format!("shard done: {batches} batch{}, {ran} test{} run, {n} failed, {} flaky", if batches == 1 { "" } else { "es" }, if ran == 1 { "" } else { "s" }, claim.flaky.len())).await;
            if !claim.quarantined.is_empty() {
                b.say(format!("quarantined, failed without failing the job: {}", claim.quarantined.join(", "))).await;
            }
            if let Some(p) = problems.first() {
                let more = if problems.len() > 1 { format!(" (and {} more problems; see the log)", problems.len() - 1) } else { String::new() };
                return Outcome::Errored(format!("{p}{more}"));
            }
            if let Some(v) = kiln_core::testrun::verdict(&claim.failed, &claim.flaky, t.flaky_fails_build) {
                return Outcome::TestsFailed(v);
            }
            return Outcome::Passed;
        }
        let Some(batch) = claim.batch_id else {
            return Outcome::Errored("the server sent an empty answer to a test claim".into());
        };
        let cmd = match kiln_core::shards::render_run(&t.run, &claim.tests) {
            Ok(c) => c,
            Err(e) => return Outcome::Errored(e),
        };
        let junit = b.work.join("junit").join(format!("batch-{batch}"));
        // A step may have put a link (to a folder of the agent's) where this folder goes.
        if std::fs::symlink_metadata(&junit).is_ok_and(|m| !m.is_dir()) {
            let _ = std::fs::remove_file(&junit);
        }
        if let Err(e) = std::fs::create_dir_all(&junit) {
            return Outcome::Errored(format!("failed to create {}: {e}", junit.display()));
        }
        if let Some(j) = b.jail {
            j.give(&junit);
        }
        let mut env = b.env.clone();
        env.insert("KILN_JUNIT_DIR".into(), junit.to_string_lossy().into_owned());
        env.insert("KILN_TEST_BATCH".into(), batch.to_string());
        if let Some(plan) = &claim.plan {
            b.say(format!("batch {batch}: {plan}")).await;
        }
        b.say(format!("batch {batch}: {} test{} (claimed in {claimed_ms} ms, started {} ms after the claim)", claim.tests.len(), if claim.tests.len() == 1 { "" } else { "s" }, asked.elapsed().as_millis())).await;
        b.event(ShardEvent::BatchStarted { tests: claim.tests.len() });
        let ended = run_steps(&[cmd], &env, b.src, b.left(start), b.out, b.cancel, b.jail).await;
        let exit_code = match &ended {
            Outcome::Passed => Some(0),
            Outcome::Failed { code, .. } => Some(*code),
            // Timed out, cancelled, or could not start: the batch stays with this attempt and
            // goes back to the queue once the job ends.
            other => return other.clone(),
        };
        match upload_reports(q, b.out, b.src, b.secrets, Some(batch), &junit, &t.reports).await {
            Ok(found) if found.is_empty() => b.say(format!("batch {batch}: no JUnit report in $KILN_JUNIT_DIR or `reports`")).await,
            Ok(_) => {}
            Err(QueueError::Refused(e)) => problems.push(e),
            Err(QueueError::Cancelled) => return Outcome::Cancelled,
            Err(e) => return Outcome::Errored(e.to_string()),
        }
        let ack = match q.batch_done(batch, exit_code).await {
            Ok(a) => a,
            Err(QueueError::Cancelled) => return Outcome::Cancelled,
            Err(e) => return Outcome::Errored(e.to_string()),
        };
        batches += 1;
        ran += claim.tests.len();
        b.event(ShardEvent::BatchDone { passed: ack.passed, failed: ack.failed, retried: ack.retried });
        let retried = if ack.retried > 0 { format!(", {} queued again", ack.retried) } else { String::new() };
        let requeued = if ack.requeued > 0 { format!(", {} without a result queued again (claimed before the list came)", ack.requeued) } else { String::new() };
        b.say(format!("batch {batch}: {} passed, {} failed{retried}{requeued}", ack.passed, ack.failed)).await;
        if exit_code != Some(0) && ack.failed == 0 && ack.requeued == 0 {
            problems.push(format!("the run command exited with code {} in batch {batch} although its tests passed", exit_code.unwrap_or(-1)));
        }
    }
}
