//! `GET /metrics`: Prometheus text that a strict parser accepts, counters that move after a
//! build, busy agents counted while their job runs, and the token a scrape needs when the
//! server is not on loopback (docs/metrics.md).

mod common;

use common::*;
use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict parser of the OpenMetrics text format as `prometheus-client` writes it: every
/// sample belongs to a family declared by `# TYPE` before it, names and labels are well formed,
/// values are numbers, and the text ends with `# EOF`.
fn parse(text: &str) -> Vec<Sample> {
    let name_ok = |n: &str| !n.is_empty() && n.chars().enumerate().all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the text must end with # EOF");
    for (n, line) in lines[..lines.len() - 1].iter().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (what, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(name_ok(name), "{at}: bad metric name");
            match what {
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    assert!(["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"].contains(&t), "{at}: bad type");
                    assert!(families.insert(name.to_string(), t.to_string()).is_none(), "{at}: family declared twice");
                }
                "HELP" | "UNIT" => {}
                _ => panic!("{at}: unknown comment"),
            }
            continue;
        }
        let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{at}: no value"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{at}: value is not a number")),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{at}: unclosed labels"));
                let mut labels = BTreeMap::new();
                let mut s = body;
                while !s.is_empty() {
                    let (k, v) = s.split_once("=\"").unwrap_or_else(|| panic!("{at}: bad label"));
                    assert!(name_ok(k), "{at}: bad label name {k:?}");
                    let mut val = String::new();
                    let mut chars = v.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => val.push(chars.next().unwrap_or_else(|| panic!("{at}: dangling escape")).1),
                            Some((i, '"')) => break i,
                            Some((_, c)) => val.push(c),
                            None => panic!("{at}: unterminated label value"),
                        }
                    };
                    labels.insert(k.to_string(), val);
                    s = &v[end + 1..];
                    s = s.strip_prefix(',').unwrap_or(s);
                }
                (name, labels)
            }
        };
        assert!(name_ok(name), "{at}: bad metric name");
        let family = ["_bucket", "_count", "_sum", "_total", "_created", ""]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|f| families.contains_key(*f))
            .unwrap_or_else(|| panic!("{at}: sample of an undeclared family"));
        if name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "{at}: a bucket without le");
        }
        let _ = family;
        samples.push((name.to_string(), labels, value));
    }
    samples
}

fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples.iter().find(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))).map(|s| s.2)
}

fn scrape(url: &str) -> Vec<Sample> {
    let (status, text) = http("GET", &format!("{url}/metrics"), &[], b"");
    assert_eq!(status, 200, "{text}");
    parse(&text)
}

#[test]
fn metrics_parse_and_move_after_a_build() {
    let mut k = Kiln::start_with(&["--notify-attempts", "1"]);
    let repo = k.repo("m", "jobs:\n  one:\n    steps: [\"echo hello-metrics\"]\n");
    // A webhook nobody listens on: its delivery ends failed.
    k.add_project("m", &repo, &["--notify-webhook", "http://127.0.0.1:9/nobody", "--notify-on", "always"]);
    let before = scrape(&k.url);
    assert_eq!(value(&before, "kiln_builds_total", &[("project", "m"), ("status", "passed")]), Some(0.0));
    assert_eq!(value(&before, "kiln_queue_depth", &[("labels", "")]), Some(0.0));
    assert_eq!(value(&before, "kiln_agents_online", &[]), Some(0.0));
    assert_eq!(value(&before, "kiln_job_wait_seconds_count", &[("labels", "")]), Some(0.0));
    // A job needing a label nobody has waits in the queue, counted by its label set.
    let gpu = k.repo("g", "jobs:\n  big:\n    requires: {gpu: \"yes\"}\n    steps: [\"true\"]\n");
    k.add_project("g", &gpu, &[]);
    k.trigger("g");
    k.wait_for("a queued gpu job", 20, || value(&scrape(&k.url), "kiln_queue_depth", &[("labels", "gpu=yes")]) == Some(1.0));

    k.agent("a1", &[]);
    let id = k.trigger("m");
    assert_eq!(k.wait_build(id, 60)["status"], "passed");
    k.wait_for("the failed notification counted", 20, || {
        value(&scrape(&k.url), "kiln_notifications_failed_total", &[("channel", "webhook")]).is_some_and(|v| v >= 1.0)
    });
    let after = scrape(&k.url);
    assert_eq!(value(&after, "kiln_builds_total", &[("project", "m"), ("status", "passed")]), Some(1.0));
    assert_eq!(value(&after, "kiln_job_wait_seconds_count", &[("labels", "")]), Some(1.0));
    assert_eq!(value(&after, "kiln_job_duration_seconds_count", &[("project", "m"), ("status", "passed")]), Some(1.0));
    assert!(value(&after, "kiln_log_bytes_total", &[]).unwrap() >= "hello-metrics".len() as f64);
    assert_eq!(value(&after, "kiln_agents_online", &[]), Some(1.0));
    assert_eq!(value(&after, "kiln_queue_depth", &[("labels", "gpu=yes")]), Some(1.0));
    // Requests are counted by route pattern, never by the raw path.
    assert!(value(&after, "kiln_http_request_duration_seconds_count", &[("route", "/api/v1/builds/{id}"), ("method", "GET"), ("status", "200")]).unwrap() >= 1.0);
    assert!(!after.iter().any(|(_, l, _)| l.get("route").is_some_and(|r| r.contains(&format!("/{id}")))));
}

#[test]
fn agents_busy_counts_an_agent_while_its_job_runs() {
    let mut k = Kiln::start();
    // Unsandboxed, so the step can wait for a file the test makes once it has scraped.
    k.agent("a1", &["--isolation", "none"]);
    k.wait_for("the agent online", 20, || value(&scrape(&k.url), "kiln_agents_online", &[]) == Some(1.0));
    assert_eq!(value(&scrape(&k.url), "kiln_agents_busy", &[]), Some(0.0), "an idle agent is not busy");
    let go = k.path("go");
    let step = format!("n=0; while [ ! -e {go} ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done", go = go.display());
    let repo = k.repo("busy", &format!("jobs:\n  wait:\n    steps:\n      - '{step}'\n"));
    k.add_project("busy", &repo, &[]);
    let id = k.trigger("busy");
    // While the step waits for the file the agent holds the job: it counts as busy.
    k.wait_for("the agent counted busy", 20, || value(&scrape(&k.url), "kiln_agents_busy", &[]) == Some(1.0));
    assert_eq!(k.build(id)["status"], "running");
    std::fs::write(&go, "").unwrap();
    assert_eq!(k.wait_build(id, 60)["status"], "passed");
    let after = scrape(&k.url);
    assert_eq!(value(&after, "kiln_agents_busy", &[]), Some(0.0), "the job is over: the agent is idle again");
    assert_eq!(value(&after, "kiln_agents_online", &[]), Some(1.0));
}

#[test]
fn off_loopback_a_scrape_needs_the_metrics_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut open, url) = spawn_server(&dir.path().join("a"), "0.0.0.0:0", &[]);
    let (status, text) = http("GET", &format!("{url}/metrics"), &[], b"");
    assert_eq!(status, 403, "no metrics token set: {text}");
    assert!(text.contains("--metrics-token"), "{text}");
    let _ = open.kill();
    let _ = open.wait();

    let (mut srv, url) = spawn_server(&dir.path().join("b"), "0.0.0.0:0", &["--metrics-token".into(), "scrape-me".into()]);
    let (status, _) = http("GET", &format!("{url}/metrics"), &[], b"");
    assert_eq!(status, 401);
    let (status, _) = http("GET", &format!("{url}/metrics"), &[("Authorization", "Bearer wrong")], b"");
    assert_eq!(status, 401);
    let (status, text) = http("GET", &format!("{url}/metrics"), &[("Authorization", "Bearer scrape-me")], b"");
    assert_eq!(status, 200);
    assert!(!parse(&text).is_empty());
    let _ = srv.kill();
    let _ = srv.wait();
}
