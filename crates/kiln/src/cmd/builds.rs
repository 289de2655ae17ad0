//! `kiln trigger [--wait]`, `kiln builds`, `kiln show`, `kiln cancel`.

use super::{api, print_json};
use crate::api_client::{seg, Api, Exit};
use crate::ClientOpts;
use kiln_wire::api::{Build, BuildList, TriggerRequest};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

/// Exit code for a finished build: 0 passed, 1 failed, 2 errored, cancelled or skipped.
pub fn exit_code(status: &str) -> i32 {
    match status {
        "passed" => 0,
        "failed" => 1,
        _ => 2,
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}

/// A build's or a job's status, as the API spells it, is final (the two have the same states).
pub fn is_final(status: &str) -> bool {
    kiln_core::state::BuildStatus::parse(status).is_some_and(kiln_core::state::BuildStatus::is_final)
}

/// One line for a build.
pub fn build_line(b: &Build) -> String {
    let dur = b.duration_ms.map(|d| format!(" in {}", kiln_core::duration::format_duration(Duration::from_millis(d as u64)))).unwrap_or_default();
    let tests = b.tests.as_ref().map(|t| format!(" — tests: {}", super::tests::counts_line(t))).unwrap_or_default();
    let tests = tests + &kiln_core::testrun::first_failure_note(b.first_failure_ms);
    let at = if b.commit.is_empty() { b.branch.clone() } else { format!("{}@{}", b.branch, short(&b.commit)) };
    format!(
        "#{} {} {} {at} ({} by {}){}{tests}{}",
        b.id,
        b.project,
        b.status,
        b.trigger,
        b.triggered_by,
        dur,
        b.message.as_deref().map(|m| format!("  {m}")).unwrap_or_default()
    )
}

pub async fn trigger(c: &ClientOpts, project: &str, branch: Option<String>, commit: Option<String>, wait: bool) -> anyhow::Result<i32> {
    let api = api(c);
    let b: Build = api.post(&format!("/api/v1/projects/{}/builds", seg(project)), &TriggerRequest { branch, commit }).await?;
    if !wait {
        if c.json { print_json(&b) } else { println!("queued build #{} of {}", b.id, b.project) }
        return Ok(0);
    }
    if !c.json {
        println!("queued build #{} of {} — following it", b.id, b.project);
    }
    follow_to_end(&api, b.id, c.json).await
}

/// Follow a build to its end, print it (or its JSON), and return its exit code.
pub async fn follow_to_end(api: &Api, id: i64, json: bool) -> anyhow::Result<i32> {
    let done = follow(api, id, !json).await?;
    if json {
        print_json(&done);
    } else {
        println!("{}", build_line(&done));
        if let Some(e) = &done.error {
            println!("{e}");
        }
    }
    Ok(exit_code(&done.status))
}

/// Follow a build until it ends, printing each job's state as it changes
/// (a spinner line on a terminal, plain lines otherwise). The build is read again when the
/// server's event stream says one of its jobs or itself changed (`wakeups.rs`), or every
/// 150 ms when the stream cannot be opened.
pub async fn follow(api: &Api, id: i64, print: bool) -> anyhow::Result<Build> {
    let tty = print && std::io::stdout().is_terminal();
    let spinner = tty.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    let mut seen: HashMap<String, (String, i64)> = HashMap::new();
    // Opened before the first look, so no change after it is missed.
    let mut wake = api.wakeups(&format!("/api/v1/events?build={id}"), &["build", "job"]).await;
    loop {
        let b: Build = api.build(id).await?;
        if print {
            for j in &b.jobs {
                let now = (j.status.clone(), j.attempt);
                if seen.get(&j.key) != Some(&now) {
                    let mut line = format!("  {:<28} {}", j.key, j.status);
                    if let Some(a) = &j.agent {
                        if j.status != "queued" && j.status != "skipped" {
                            line.push_str(&format!(" on {a}"));
                        }
                    }
                    if j.attempt > 1 {
                        line.push_str(&format!(" (attempt {})", j.attempt));
                    }
                    if let Some(w) = &j.waiting {
                        line.push_str(&format!(" — {}", w.message));
                    }
                    if let Some(r) = j.reason.as_ref().filter(|_| j.status != "passed" && j.status != "running") {
                        line.push_str(&format!(" — {r}"));
                    }
                    match &spinner {
                        Some(pb) => pb.println(line),
                        None => println!("{line}"),
                    }
                    seen.insert(j.key.clone(), now);
                }
            }
            if let Some(pb) = &spinner {
                let done = b.jobs.iter().filter(|j| is_final(&j.status) || j.status == "skipped").count();
                pb.set_message(format!("build #{} {} — {done}/{} jobs done", b.id, b.status, b.jobs.len()));
            }
        }
        if is_final(&b.status) {
            if let Some(pb) = spinner {
                pb.finish_and_clear();
            }
            return Ok(b);
        }
        match wake.as_mut() {
            // A build or job event, or a look every few seconds all the same (an event
            // another server recorded may come late).
            Some(rx) => {
                if let Ok(None) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                    wake = None;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(150)).await,
        }
    }
}

pub async fn list(c: &ClientOpts, project: &str, branch: Option<String>, status: Option<String>, limit: i64) -> anyhow::Result<i32> {
    let mut q = format!("?limit={limit}");
    if let Some(b) = branch {
        q.push_str(&format!("&branch={}", seg(&b)));
    }
    if let Some(s) = status {
        q.push_str(&format!("&status={}", seg(&s)));
    }
    let list: BuildList = api(c).get(&format!("/api/v1/projects/{}/builds{q}", seg(project))).await?;
    if c.json {
        print_json(&list.builds);
    } else if list.builds.is_empty() {
        println!("no builds of {project} yet: kiln trigger {project}");
    } else {
        list.builds.iter().for_each(|b| println!("{}", build_line(b)));
    }
    Ok(0)
}

pub async fn show(c: &ClientOpts, id: i64) -> anyhow::Result<i32> {
    let b: Build = api(c).build(id).await?;
    if c.json {
        print_json(&b);
        return Ok(0);
    }
    println!("{}", build_line(&b));
    if let Some(up) = b.upstream_build {
        println!("  started by build #{up}");
    }
    if let Some(orig) = b.retry_of {
        println!("  reruns what failed in build #{orig}");
    }
    if let Some(a) = &b.author {
        println!("  author {a}");
    }
    if let Some(e) = &b.error {
        println!("  error:");
        for l in e.lines() {
            println!("    {l}");
        }
    }
    if let Some(w) = &b.waiting {
        println!("  waiting: {}", w.message);
    }
    for j in &b.jobs {
        let mut line = format!("  {:<28} {}", j.key, j.status);
        if let Some(code) = j.exit_code.filter(|_| j.status == "failed") {
            line.push_str(&format!(" (exit {code})"));
        }
        if let Some(r) = j.reason.as_ref().filter(|_| j.status != "passed") {
            line.push_str(&format!(" — {r}"));
        }
        if let Some(w) = &j.waiting {
            line.push_str(&format!(" — {}", w.message));
        }
        println!("{line}");
        for (i, step) in j.steps.iter().enumerate() {
            let first = step.lines().next().unwrap_or("");
            let more = if step.lines().count() > 1 { " …" } else { "" };
            println!("      step {}: {first}{more}", i + 1);
        }
        for a in &j.attempts {
            println!(
                "      attempt {} on {}: {}{}",
                a.attempt,
                a.agent,
                a.status,
                a.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
            );
        }
    }
    Ok(0)
}

pub async fn cancel(c: &ClientOpts, id: i64, job: Option<String>) -> anyhow::Result<i32> {
    let b: Build = api(c).post(&format!("/api/v1/builds/{id}/cancel"), &serde_json::json!({ "job": job })).await?;
    if c.json {
        print_json(&b)
    } else {
        println!("cancelling {}", build_line(&b));
    }
    if b.jobs.is_empty() && !is_final(&b.status) {
        return Err(Exit(2, format!("build {id} could not be cancelled")).into());
    }
    Ok(0)
}
