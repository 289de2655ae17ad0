//! What the templates show: rows turned into display values (short shas,
//! durations, "3 min ago"), status names for people, and the inline SVG chart
//! of recent build durations. No I/O.

use kiln_store::BuildRow;
use std::time::Duration;

/// `1m 05s`, `3.2s`, `2h 10m`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        return kiln_core::duration::format_duration(Duration::from_millis(ms as u64));
    }
    let s = ms / 1000;
    if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// `just now`, `3 s ago`, `5 min ago`, `2 h ago`, `4 d ago` (the console's JS keeps it ticking).
pub fn ago(ms: i64, now: i64) -> String {
    let s = ((now - ms) / 1000).max(0);
    match s {
        0 => "just now".into(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86400),
    }
}

/// The TestRunner names for an uploaded run's status.
pub fn run_status(status: &str) -> &str {
    match status {
        "queued" => "created",
        s => s,
    }
}

/// A build as rows and headers show it.
#[derive(Debug, Clone)]
pub struct BuildView {
    pub id: i64,
    pub project: String,
    pub status: String,
    pub branch: String,
    pub commit: String,
    pub short: String,
    pub title: String,
    pub author: String,
    pub trigger: String,
    pub by: String,
    pub created_at: i64,
    pub created_iso: String,
    /// `3 min ago` when rendered (the script keeps it ticking).
    pub ago: String,
    pub started_at: i64,
    pub duration: String,
    pub running: bool,
    pub error: String,
    /// `first failure after 2.3s` for a failed build whose caller looked it up
    /// ([`first_failure`]); else empty.
    pub first_failure: String,
}

pub fn build_view(b: &BuildRow) -> BuildView {
    let title = b.message.as_deref().and_then(|m| m.lines().next()).map(str::to_string).unwrap_or_default();
    let duration = match (b.started_at, b.finished_at) {
        (Some(s), Some(f)) => duration(f - s),
        (None, Some(_)) => "—".into(),
        _ => String::new(),
    };
    BuildView {
        id: b.id,
        project: b.project.clone(),
        status: b.status.as_str().to_string(),
        branch: b.branch.clone(),
        commit: b.commit.clone(),
        short: b.commit.chars().take(8).collect(),
        title,
        // "Name <mail>" shows as the name; the address stays in the API.
        author: b.author.as_deref().map(|a| a.split(" <").next().unwrap_or(a).trim().to_string()).unwrap_or_default(),
        trigger: b.trigger.clone(),
        by: b.triggered_by.clone(),
        created_at: b.created_at,
        created_iso: crate::wireform::ts(b.created_at),
        ago: ago(b.created_at, kiln_store::now_ms()),
        started_at: b.started_at.unwrap_or(0),
        duration,
        running: b.status == kiln_core::state::BuildStatus::Running,
        error: b.error.clone().unwrap_or_default(),
        first_failure: String::new(),
    }
}

/// How long after its start a build's first test or job failed, as a page says it.
pub fn first_failure(ms: Option<u64>) -> String {
    ms.map(|ms| format!("first failure after {}", duration(ms as i64))).unwrap_or_default()
}

/// Whether a build ended failed or errored (only those have a first failure to show).
pub fn ended_badly(b: &BuildView) -> bool {
    matches!(b.status.as_str(), "failed" | "errored")
}

/// A bar chart of the newest builds' durations (oldest left), each bar a link
/// coloured by status. Only numbers and fixed class names go into the SVG.
pub fn duration_chart(builds: &[BuildRow]) -> String {
    const W: i64 = 7;
    const GAP: i64 = 2;
    const H: i64 = 30;
    let bars: Vec<(&BuildRow, Option<i64>)> =
        builds.iter().rev().map(|b| (b, b.started_at.zip(b.finished_at).map(|(s, f)| (f - s).max(0)))).collect();
    if bars.is_empty() {
        return String::new();
    }
    let max = bars.iter().filter_map(|(_, d)| *d).max().unwrap_or(0).max(1);
    let width = bars.len() as i64 * (W + GAP);
    let mut out = format!(
        r#"<svg class="chart" width="{width}" height="{H}" viewBox="0 0 {width} {H}" role="img" aria-label="durations of the last {} builds">"#,
        bars.len()
    );
    for (i, (b, d)) in bars.iter().enumerate() {
        let h = match d {
            Some(d) => (d * (H - 2) / max).max(2),
            None => 2,
        };
        let x = i as i64 * (W + GAP);
        let status: &str = match b.status.as_str() {
            s @ ("passed" | "failed" | "errored" | "running" | "queued" | "cancelled") => s,
            _ => "other",
        };
        let label = match d {
            Some(d) => format!("#{} {} in {}", b.id, status, duration(*d)),
            None => format!("#{} {}", b.id, status),
        };
        out.push_str(&format!(
            r#"<a href="/builds/{id}"><rect class="bar {status}" x="{x}" y="{y}" width="{W}" height="{h}" rx="1.5"><title>{label}</title></rect></a>"#,
            id = b.id,
            y = H - h,
        ));
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ages_read_well() {
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(3_600_000 + 600_000), "1h 10m");
        assert_eq!(ago(1_000, 4_000), "3 s ago");
        assert_eq!(ago(0, 7_200_000), "2 h ago");
        assert_eq!(run_status("queued"), "created");
    }
}
