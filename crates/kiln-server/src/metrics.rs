//! Prometheus metrics at `GET /metrics` (docs/metrics.md), through `prometheus-client`.
//!
//! Counters and histograms are fed from the one event stream (`AppState::events`, events of
//! this server only: each server counts its own work, so sums across servers are right);
//! gauges (queue depth, agents) are read from the store at each scrape, so every server
//! reports the shared truth. HTTP request durations come from a middleware on every route,
//! labelled by the route's pattern (axum's `MatchedPath`), never by the raw path.
//!
//! When the server listens on anything but loopback, a scrape needs the metrics token
//! (`--metrics-token`, `metrics_token` in kiln.toml) as a bearer token.

use crate::error::{AppError, AppResult};
use crate::events::{Event, EventKind};
use kiln_core::state::BuildStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LabelSet {
    labels: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectStatus {
    project: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Channel {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRoute {
    method: String,
    route: String,
    status: u16,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from 50 ms to about 14 min.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

/// Seconds, from 1 ms to about 16 s.
fn request_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    queue_depth: Family<LabelSet, Gauge>,
    job_wait: Histograms<LabelSet>,
    job_duration: Histograms<ProjectStatus>,
    builds: Family<ProjectStatus, Counter>,
    agents_online: Gauge,
    agents_busy: Gauge,
    log_bytes: Counter,
    notifications_failed: Family<Channel, Counter>,
    http: Histograms<HttpRoute>,
    /// Label sets seen waiting: reported as 0 once empty, so a series does not vanish.
    seen_sets: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            queue_depth: Family::default(),
            job_wait: Family::new_with_constructor(seconds),
            job_duration: Family::new_with_constructor(seconds),
            builds: Family::default(),
            agents_online: Gauge::default(),
            agents_busy: Gauge::default(),
            log_bytes: Counter::default(),
            notifications_failed: Family::default(),
            http: Family::new_with_constructor(request_seconds),
            registry: Registry::with_prefix("kiln"),
            seen_sets: Default::default(),
        };
        let mut m = m;
        let registry = &mut m.registry;
        registry.register("queue_depth", "Jobs ready and waiting for an agent, by the labels they require", m.queue_depth.clone());
        registry.register("job_wait_seconds", "Time from a job's being ready to its start, by the labels it requires", m.job_wait.clone());
        registry.register("job_duration_seconds", "Time from a job's start to its end, by project and status", m.job_duration.clone());
        registry.register("builds", "Builds that ended, by project and status", m.builds.clone());
        registry.register("agents_online", "Agents whose heartbeats arrive", m.agents_online.clone());
        registry.register("agents_busy", "Agents running at least one job", m.agents_busy.clone());
        registry.register("log_bytes", "Log bytes stored", m.log_bytes.clone());
        registry.register("notifications_failed", "Notification deliveries that ended failed, by channel", m.notifications_failed.clone());
        registry.register("http_request_duration_seconds", "HTTP requests by method, route pattern and status", m.http.clone());
        // Jobs needing no labels: always reported, even before the first.
        let _ = m.job_wait.get_or_create(&LabelSet { labels: String::new() });
        m.seen_sets.lock().unwrap().insert(String::new());
        m
    }

    /// Count one event of this server.
    pub fn observe(&self, ev: &Event) {
        match ev.kind {
            EventKind::Job => {
                if let (Some(labels), Some(wait)) = (&ev.labels, ev.wait_ms) {
                    self.job_wait.get_or_create(&LabelSet { labels: labels.clone() }).observe(wait.max(0) as f64 / 1000.0);
                }
                if let Some(d) = ev.duration_ms {
                    let key = ProjectStatus { project: ev.project.clone(), status: ev.status.clone() };
                    self.job_duration.get_or_create(&key).observe(d.max(0) as f64 / 1000.0);
                }
            }
            // A build's end is emitted once, without a job id. A build its project's filters
            // skipped never ran: it is not counted.
            EventKind::Build if ev.job_id.is_none() && BuildStatus::parse(&ev.status).is_some_and(|s| s.is_final() && s != BuildStatus::Skipped) => {
                let _ = self.builds.get_or_create(&ProjectStatus { project: ev.project.clone(), status: ev.status.clone() }).inc();
            }
            EventKind::Log => {
                self.log_bytes.inc_by(ev.bytes.unwrap_or(0));
            }
            EventKind::Notification => {
                self.notifications_failed.get_or_create(&Channel { channel: ev.channel.clone().unwrap_or_default() }).inc();
            }
            _ => {}
        }
    }

    /// Time one HTTP request, by method, route pattern and status.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let key = HttpRoute { method: method.to_string(), route: route.to_string(), status };
        self.http.get_or_create(&key).observe(seconds);
    }

    /// Read the gauges from the store and encode everything as Prometheus text.
    pub(crate) async fn render(&self, store: &kiln_store::Store) -> AppResult<String> {
        let depth = store.queue_depth_by_requires().await?;
        {
            let mut seen = self.seen_sets.lock().unwrap();
            for set in seen.iter() {
                self.queue_depth.get_or_create(&LabelSet { labels: set.clone() }).set(0);
            }
            for (requires, n) in depth {
                let labels = kiln_core::labels::label_set(&requires);
                self.queue_depth.get_or_create(&LabelSet { labels: labels.clone() }).set(n);
                seen.insert(labels);
            }
        }
        // Every project's build counters exist from 0, so rates work from the first build.
        for p in store.list_projects().await? {
            for status in [BuildStatus::Passed, BuildStatus::Failed, BuildStatus::Errored, BuildStatus::Cancelled] {
                let _ = self.builds.get_or_create(&ProjectStatus { project: p.name.clone(), status: status.as_str().into() });
            }
        }
        let now = kiln_store::now_ms();
        let running = store.running_by_agent().await?;
        let agents = store.list_agents().await?;
        self.agents_online.set(agents.iter().filter(|a| a.online(now)).count() as i64);
        self.agents_busy.set(agents.iter().filter(|a| running.contains_key(&a.name)).count() as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(|e| AppError::Internal(format!("metrics: {e}")))?;
        Ok(out)
    }
}

/// The event that a job started: its label set and how long it waited since it was ready.
pub fn job_started(job: &kiln_store::JobRow, project: &str) -> Event {
    let mut ev = Event::new(EventKind::Job, job.build_id, Some(job.id), project, "running");
    ev.labels = Some(kiln_core::labels::label_set(&job.requires));
    let started = job.started_at.unwrap_or_else(kiln_store::now_ms);
    ev.wait_ms = job.queued_at.map(|q| (kiln_store::now_ms().max(started) - q).max(0));
    ev
}

/// Feed the metrics from this server's events (`rx`) until the server stops.
pub async fn run(mut rx: tokio::sync::broadcast::Receiver<Event>, metrics: &Metrics, stop: CancellationToken) {
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            got = rx.recv() => got,
        };
        match got {
            Ok(ev) if !ev.forwarded => metrics.observe(&ev),
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => tracing::warn!("metrics missed {n} events (the event stream is overloaded)"),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Does this listen address only take connections from this machine?
pub fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen).trim_matches(['[', ']']);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for a in ["127.0.0.1:8080", "[::1]:80", "localhost:1", "127.3.2.1:0"] {
            assert!(is_loopback(a), "{a}");
        }
        for a in ["0.0.0.0:8080", "[::]:80", "10.0.0.1:80", "example.org:80"] {
            assert!(!is_loopback(a), "{a}");
        }
    }
}
