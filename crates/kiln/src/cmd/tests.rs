//! `kiln show BUILD --tests` (a build's tests, failures first), `kiln tests PROJECT`
//! (a project's slowest or flakiest tests from its history, and its quarantine) and
//! `kiln tests quarantine|release PROJECT TEST` (maintainers).

use super::{api, print_json};
use crate::api_client::seg;
use crate::ClientOpts;
use kiln_wire::api::{BuildTests, QuarantineChange, QuarantineRequest, TestResult, TestStatsList, TestSummary};

/// `kiln tests quarantine|release PROJECT TEST`.
#[derive(clap::Subcommand)]
pub enum QuarantineCmd {
    /// Quarantine a test: it still runs and is reported, but its failure no longer fails a
    /// `tests:` job (needs the maintainer role).
    Quarantine {
        project: String,
        test: String,
        /// Why (recorded with the change).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Release a quarantined test: its failures fail jobs again (needs the maintainer role).
    Release {
        project: String,
        test: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// "quarantined t1 (auto: flaky in 2 of its last 5 runs) — builds 4, 7".
fn change_line(c: &QuarantineChange) -> String {
    let who = match &c.by {
        Some(u) => format!("by {u}"),
        None => c.cause.clone(),
    };
    let runs = if c.builds.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> =
            c.builds.iter().zip(&c.jobs).map(|(b, j)| format!("#{b} (job {j}{})", if c.deleted.contains(b) { ", deleted" } else { "" })).collect();
        format!("; runs: {}", pairs.join(", "))
    };
    format!("{} {:<11} {} ({who}: {}{runs})", c.at, c.change, c.test, c.reason)
}

pub async fn quarantine(c: &ClientOpts, cmd: QuarantineCmd) -> anyhow::Result<i32> {
    let (project, test, reason, what) = match cmd {
        QuarantineCmd::Quarantine { project, test, reason } => (project, test, reason, "quarantine"),
        QuarantineCmd::Release { project, test, reason } => (project, test, reason, "quarantine/release"),
    };
    let change: QuarantineChange = api(c).post(&format!("/api/v1/projects/{}/{what}", seg(&project)), &QuarantineRequest { test, reason }).await?;
    if c.json {
        print_json(&change);
    } else {
        println!("{}", change_line(&change));
    }
    Ok(0)
}

/// "40 passed (1 flaky), 2 failed, 1 skipped; first failure after 2.3 s" — zero counts other
/// than passed left out.
pub fn summary_line(s: &TestSummary) -> String {
    counts_line(s) + &kiln_core::testrun::first_failure_note(s.first_failure_ms)
}

/// "40 passed (1 flaky), 2 failed, 1 skipped".
pub fn counts_line(s: &TestSummary) -> String {
    kiln_core::testrun::Counts { total: s.total, passed: s.passed, failed: s.failed, errored: s.errored, skipped: s.skipped, flaky: s.flaky }.line()
}

fn ms(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// The name a person knows a test by: its listed id, with the case's own name when the id
/// names more than the case (a file).
fn test_name(t: &TestResult) -> String {
    let own = if t.classname.is_empty() { t.name.clone() } else { format!("{}::{}", t.classname, t.name) };
    if t.key.is_empty() || t.key == own {
        own
    } else if t.key.ends_with(&t.name) {
        t.key.clone()
    } else {
        format!("{} ({own})", t.key)
    }
}

pub async fn show_build(c: &ClientOpts, id: i64) -> anyhow::Result<i32> {
    let bt: BuildTests = api(c).get(&format!("/api/v1/builds/{id}/tests")).await?;
    if c.json {
        print_json(&bt);
        return Ok(0);
    }
    if bt.tests.is_empty() {
        println!("build #{id} has no test results (jobs upload JUnit XML written to $KILN_JUNIT_DIR)");
        return Ok(0);
    }
    println!("build #{id} tests: {} of {}", summary_line(&bt.summary), bt.summary.total);
    let finals: Vec<&TestResult> = bt.tests.iter().filter(|t| t.is_final).collect();
    let failed: Vec<&&TestResult> = finals.iter().filter(|t| t.outcome == "failed" || t.outcome == "errored").collect();
    if !failed.is_empty() {
        println!("\nfailures:");
        for t in failed {
            let tries = if t.try_number > 0 { format!(", try {}", t.try_number + 1) } else { String::new() };
            let q = if t.quarantined { " QUARANTINED" } else { "" };
            println!("  {}{q} {} ({}, {}{tries})", t.outcome.to_uppercase(), test_name(t), ms(t.duration_ms), t.job);
            for line in t.message.as_deref().unwrap_or("").lines().take(12) {
                println!("      {line}");
            }
        }
    }
    let flaky: Vec<&&TestResult> = finals.iter().filter(|t| t.flaky).collect();
    if !flaky.is_empty() {
        println!("\nflaky (failed, then passed on a retry):");
        for t in flaky {
            println!("  {} (passed on try {}, {})", test_name(t), t.try_number + 1, t.job);
        }
    }
    let mut slow: Vec<&&TestResult> = finals.iter().collect();
    slow.sort_by_key(|t| std::cmp::Reverse(t.duration_ms));
    println!("\nslowest:");
    for t in slow.iter().take(5) {
        println!("  {:>9}  {}", ms(t.duration_ms), test_name(t));
    }
    println!("\nall tests ({}):", finals.len());
    for t in &finals {
        let mark = match (t.quarantined, t.flaky) {
            (true, _) if t.outcome == "failed" || t.outcome == "errored" => " (quarantined: does not fail the build)",
            (true, _) => " (quarantined)",
            (false, true) => " (flaky)",
            _ => "",
        };
        println!("  {:<8} {:>9}  {}{mark}  [{}]", t.outcome, ms(t.duration_ms), test_name(t), t.job);
    }
    Ok(0)
}

pub async fn history(c: &ClientOpts, project: &str, branch: Option<String>, flakiest: bool, limit: usize) -> anyhow::Result<i32> {
    let mut q = format!("?sort={}&limit={limit}", if flakiest { "flakiest" } else { "slowest" });
    if let Some(b) = branch {
        q.push_str(&format!("&branch={}", seg(&b)));
    }
    let list: TestStatsList = api(c).get(&format!("/api/v1/projects/{}/tests{q}", seg(project))).await?;
    if c.json {
        print_json(&list);
        return Ok(0);
    }
    if list.tests.is_empty() {
        let what = if flakiest { "no flaky or failing test" } else { "no test history" };
        println!("{what} for {} on {} yet", list.project, list.branch);
    } else {
        println!("{} on {}: {} tests", list.project, list.branch, if flakiest { "flakiest" } else { "slowest" });
        println!("  {:>9} {:>5} {:>6} {:>6} {:>7}  test", "avg", "runs", "fails", "flaky", "rate");
        for t in &list.tests {
            let mark = if t.quarantined { "  [quarantined]" } else { "" };
            println!("  {:>9} {:>5} {:>6} {:>6} {:>6.1}%  {}{mark}", ms(t.avg_ms), t.runs, t.failures, t.flaky, t.flaky_rate * 100.0, t.key);
        }
    }
    if flakiest {
        let q = &list.quarantine;
        println!("\nquarantined now: {}", if q.quarantined.is_empty() { "none".to_string() } else { q.quarantined.join(", ") });
        if !q.changes.is_empty() {
            println!("quarantine changes (newest first):");
            for ch in &q.changes {
                println!("  {}", change_line(ch));
            }
        }
    }
    Ok(0)
}
