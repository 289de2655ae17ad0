//! `kiln logs BUILD [JOB] [--follow] [--tail N]`: every attempt's log, in order, live if
//! asked; with `--tail`, the last N lines of each job's latest attempt (read from the end).

use super::api;
use super::builds::is_final;
use crate::api_client::{Api, Exit};
use crate::ClientOpts;
use kiln_wire::api::{Build, Job, LogSlice};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// Print one attempt's log from `offset`; returns (new offset, attempt over).
async fn drain(api: &Api, job: &Job, attempt: i64, mut offset: u64) -> anyhow::Result<(u64, bool)> {
    loop {
        let s: LogSlice = api.get(&format!("/api/v1/jobs/{}/log?attempt={attempt}&offset={offset}", job.id)).await?;
        let mut out = std::io::stdout().lock();
        out.write_all(s.text.as_bytes())?;
        out.flush()?;
        let progressed = s.next_offset > offset;
        offset = s.next_offset;
        if !progressed {
            return Ok((offset, s.done));
        }
    }
}

/// Write to stdout now.
fn say(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// `kiln logs … | head` closes the pipe early: that is a normal end, not an error.
pub async fn run(c: &ClientOpts, build: i64, job: Option<String>, follow: bool, tail: Option<u64>) -> anyhow::Result<i32> {
    match print_logs(c, build, job, follow, tail).await {
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => Ok(0),
        other => other,
    }
}

/// The last `n` lines of an attempt: asks for ever more bytes from the end until they hold
/// `n` lines (or the whole log). Returns the lines, in the style (colours) set before them,
/// and the offset after them.
async fn last_lines(api: &Api, job: &Job, attempt: i64, n: u64) -> anyhow::Result<(String, u64)> {
    let mut bytes = (n * 160).max(4096);
    loop {
        let s: LogSlice = api.get(&format!("/api/v1/jobs/{}/log?attempt={attempt}&tail={bytes}", job.id)).await?;
        let lines = s.text.split_inclusive('\n').count() as u64;
        if lines > n || s.offset == 0 || bytes >= 8 << 20 {
            let skip = lines.saturating_sub(n) as usize;
            let skipped: String = s.text.split_inclusive('\n').take(skip).collect();
            let style = kiln_core::ansi::style_after(format!("{}{skipped}", s.style).as_bytes());
            let text: String = s.text.split_inclusive('\n').skip(skip).collect();
            // The style added before the lines ends with them (the next job's header is plain).
            let reset = if style.is_empty() || kiln_core::ansi::style_after(format!("{style}{text}").as_bytes()).is_empty() { "" } else { "\x1b[0m" };
            return Ok((style + &text + reset, s.next_offset));
        }
        bytes *= 4;
    }
}

async fn print_logs(c: &ClientOpts, build: i64, job: Option<String>, follow: bool, tail: Option<u64>) -> anyhow::Result<i32> {
    let api = api(c);
    let mut printed: HashMap<(i64, i64), (u64, bool)> = HashMap::new();
    let mut tail_done = tail.is_none();
    let mut header_for: Option<(i64, i64)> = None;
    // Following: new lines are read when the server's event stream says some arrived (or a job
    // or the build changed), opened before the first look so nothing after it is missed.
    let mut wake = match follow {
        true => api.wakeups(&format!("/api/v1/events?build={build}"), &["build", "job", "log"]).await,
        false => None,
    };
    loop {
        let looked = std::time::Instant::now();
        let b: Build = api.build(build).await?;
        let jobs: Vec<&Job> = match &job {
            None => b.jobs.iter().collect(),
            Some(j) => {
                let found: Vec<&Job> = b.jobs.iter().filter(|x| &x.key == j || &x.name == j || x.id.to_string() == *j).collect();
                if found.is_empty() {
                    return Err(Exit(2, format!("build {build} has no job {j:?}")).into());
                }
                found
            }
        };
        if b.jobs.is_empty() {
            if let Some(e) = &b.error {
                say(&format!("{e}\n"))?;
            }
        }
        if !tail_done {
            tail_done = true;
            let n = tail.unwrap_or(0);
            for j in &jobs {
                for a in 1..j.attempt {
                    printed.insert((j.id, a), (u64::MAX, true)); // earlier attempts are skipped
                }
                if j.attempt > 0 {
                    let (text, offset) = last_lines(&api, j, j.attempt, n).await?;
                    let agent = j.attempts.iter().find(|x| x.attempt == j.attempt).map(|x| x.agent.clone()).unwrap_or_default();
                    say(&format!("── {} (attempt {} on {agent}, last {n} lines) ──\n{text}", j.key, j.attempt))?;
                    header_for = Some((j.id, j.attempt));
                    printed.insert((j.id, j.attempt), (offset, false));
                }
            }
        }
        for j in &jobs {
            for a in 1..=j.attempt {
                let key = (j.id, a);
                let (offset, done) = printed.get(&key).copied().unwrap_or((0, false));
                if done {
                    continue;
                }
                if header_for != Some(key) {
                    let agent = j.attempts.iter().find(|x| x.attempt == a).map(|x| x.agent.clone()).unwrap_or_default();
                    say(&format!("── {} (attempt {a} on {agent}) ──\n", j.key))?;
                    header_for = Some(key);
                }
                let (off, over) = drain(&api, j, a, offset).await?;
                printed.insert(key, (off, over));
                if !over && follow {
                    break; // stay on this attempt until it ends, so lines never interleave
                }
            }
        }
        if !follow || is_final(&b.status) {
            // One last pass picks up what arrived since.
            if follow {
                for j in &jobs {
                    for a in 1..=j.attempt {
                        let (offset, _) = printed.get(&(j.id, a)).copied().unwrap_or((0, false));
                        drain(&api, j, a, offset).await?;
                    }
                }
            }
            return Ok(0);
        }
        match wake.as_mut() {
            Some(rx) => {
                // An event, or a look every few seconds all the same.
                if let Ok(None) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                    wake = None;
                }
                // A chatty build sends many log events: at most a look every 100 ms.
                if let Some(rest) = Duration::from_millis(100).checked_sub(looked.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
