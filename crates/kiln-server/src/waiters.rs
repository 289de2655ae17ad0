//! Claims waiting in their long poll, and which of them a wake-up wakes. Waking every waiting
//! claim for every job that may have become claimable (hundreds of agents, each asking the
//! store again) made a queue with many agents slow; instead one task reads what the ready jobs
//! ask for ([`kiln_store::Demand`], the claim's own test) and rings, for each ready job, one
//! waiting agent that may take it, oldest waiting first.
//!
//! ```text
//!  wake() ×N ──► round task (one at a time; wake-ups during a round make one more round)
//!                  ready demands ──► per demand, the first fitting waiter not yet picked ──► ring
//! ```
//!
//! No wake-up is lost: a claim registers before it asks the store, a round runs after the write
//! that readied a job, and a ring that comes while its claim is asking is kept for its next
//! wait. A rung claim that leaves without a job (its agent drains, it gives up) makes one more
//! round, so another waiter gets the job. On PostgreSQL each server rings its own waiters
//! for the wake-ups of all servers (`services::replicas`).

use kiln_store::{AgentRow, Demand};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

struct Entry {
    agent: Arc<AgentRow>,
    bell: Arc<Bell>,
}

#[derive(Default)]
struct Bell {
    notify: Notify,
    /// Rung and not yet heard.
    rung: AtomicBool,
}

#[derive(Default)]
pub struct Waiters {
    /// By arrival: the oldest waiter first.
    list: Mutex<BTreeMap<u64, Entry>>,
    next: AtomicU64,
    /// Wake-ups for the round task.
    due: Notify,
}

/// One claim waiting; it stops waiting when dropped.
pub struct Waiting<'a> {
    waiters: &'a Waiters,
    id: u64,
    bell: Arc<Bell>,
    /// A ring was heard and no job taken since.
    heard: AtomicBool,
}

impl Waiting<'_> {
    /// The claim took a job. A ring it had not heard yet may have been meant for another
    /// ready job (a round reads the jobs after this claim's): one more round, so that job's
    /// other fitting waiters are rung.
    pub fn took_job(self) {
        self.heard.store(false, Ordering::SeqCst);
        if self.bell.rung.swap(false, Ordering::SeqCst) {
            self.waiters.wake();
        }
    }

    /// Until this claim is rung (at once if it was rung since it last heard).
    pub async fn rung(&self) {
        self.bell.notify.notified().await;
        self.bell.rung.store(false, Ordering::SeqCst);
        self.heard.store(true, Ordering::SeqCst);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiters.list.lock().unwrap().remove(&self.id);
        if self.bell.rung.load(Ordering::SeqCst) || self.heard.load(Ordering::SeqCst) {
            // Rung for a job it did not take (its agent drains or was revoked, an error, or
            // it gave up): let another waiter have it.
            self.waiters.wake();
        }
    }
}

impl Waiters {
    /// Register a claim of `agent` before it asks the store.
    pub fn wait(&self, agent: &AgentRow) -> Waiting<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let bell = Arc::new(Bell::default());
        self.list.lock().unwrap().insert(id, Entry { agent: Arc::new(agent.clone()), bell: bell.clone() });
        Waiting { waiters: self, id, bell, heard: AtomicBool::new(false) }
    }

    /// A job may have become claimable: have the round task ring the waiters that may take one.
    pub fn wake(&self) {
        self.due.notify_one();
    }

    /// Ring every waiting claim of the agent `name`; how many.
    pub fn ring_agent(&self, name: &str) -> usize {
        let list = self.list.lock().unwrap();
        let mine: Vec<&Arc<Bell>> = list.values().filter(|e| e.agent.name == name).map(|e| &e.bell).collect();
        for b in &mine {
            b.rung.store(true, Ordering::SeqCst);
            b.notify.notify_one();
        }
        mine.len()
    }

    /// How many claims wait now.
    pub fn len(&self) -> usize {
        self.list.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ring, for each demand in order, the first waiter it fits that no earlier demand took;
    /// `None` (the demands could not be read) rings every waiter. Returns how many were rung.
    pub fn ring(&self, demands: Option<&[Demand]>) -> usize {
        let list = self.list.lock().unwrap();
        let picked: Vec<&Arc<Bell>> = match demands {
            None => list.values().map(|e| &e.bell).collect(),
            Some(demands) => {
                // Waiters grouped by what they may take (their labels and projects), so each
                // demand is tested against a few groups, not every waiter.
                let mut groups: Vec<(&AgentRow, std::collections::VecDeque<&Arc<Bell>>)> = Vec::new();
                for e in list.values() {
                    let a = &*e.agent;
                    match groups.iter_mut().find(|(g, _)| g.labels == a.labels && g.project_limit == a.project_limit) {
                        Some((_, q)) => q.push_back(&e.bell),
                        None => groups.push((a, std::collections::VecDeque::from([&e.bell]))),
                    }
                }
                let mut left = list.len();
                let mut picked = Vec::new();
                for d in demands {
                    if left == 0 {
                        break;
                    }
                    if let Some((_, q)) = groups.iter_mut().find(|(g, q)| !q.is_empty() && d.fits(g)) {
                        picked.push(q.pop_front().unwrap());
                        left -= 1;
                    }
                }
                picked
            }
        };
        for b in &picked {
            b.rung.store(true, Ordering::SeqCst);
            b.notify.notify_one();
        }
        picked.len()
    }
}

/// The round task: after each wake-up (many at once count as one), read the ready demands and
/// ring the waiters that may take them.
pub async fn run(store: &kiln_store::Store, waiters: &Waiters, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = waiters.due.notified() => {}
        }
        let waiting = waiters.len();
        if waiting == 0 {
            continue;
        }
        // Usually the oldest few ready jobs are enough to ring every waiter; when they are not
        // (and there are more), read as far as a claim would.
        let first = (4 * waiting + 32).min(kiln_store::CLAIM_HORIZON);
        let mut limit = first;
        loop {
            match store.ready_demands(limit).await {
                Ok(d) => {
                    let rung = waiters.ring(Some(&d));
                    if rung < waiting && d.len() == limit && limit < kiln_store::CLAIM_HORIZON {
                        limit = kiln_store::CLAIM_HORIZON;
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot read the ready jobs ({e}); waking every waiting agent");
                    waiters.ring(None);
                }
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, labels: &[(&str, &str)], projects: &[&str]) -> AgentRow {
        AgentRow {
            id: 1,
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            concurrency: 1,
            status: serde_json::Value::Null,
            heartbeat_secs: 10,
            draining: false,
            last_seen: None,
            enrolment_id: None,
            label_limit: Default::default(),
            project_limit: projects.iter().map(|s| s.to_string()).collect(),
            token_hash: String::new(),
        }
    }

    fn demand(requires: &[(&str, &str)], project: &str) -> Demand {
        Demand { requires: requires.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), project: project.into() }
    }

    fn rung(w: &Waiting) -> bool {
        w.bell.rung.load(Ordering::SeqCst)
    }

    #[test]
    fn one_waiter_rung_per_ready_job_that_it_may_take() {
        let ws = Waiters::default();
        let linux: Vec<Waiting> = (0..5).map(|i| ws.wait(&agent(&format!("l{i}"), &[("os", "linux")], &[]))).collect();
        let mac = ws.wait(&agent("m", &[("os", "macos")], &[]));
        let only_web = ws.wait(&agent("w", &[("os", "linux")], &["web"]));
        let n = ws.ring(Some(&[demand(&[("os", "linux")], "api"), demand(&[("os", "macos")], "api"), demand(&[("os", "linux")], "api"), demand(&[("gpu", "*")], "api")]));
        assert_eq!(n, 3);
        // The oldest linux waiters, the mac one; not the third linux one, not the web-only agent.
        assert_eq!(linux.iter().map(rung).collect::<Vec<_>>(), vec![true, true, false, false, false]);
        assert!(rung(&mac) && !rung(&only_web));
        // A web job goes to the agent limited to web only if no other fitting waiter is left first.
        let n = ws.ring(Some(&[demand(&[], "web")]));
        assert_eq!(n, 1);
        assert!(rung(&linux[0]), "the oldest fitting waiter");
        // More jobs than waiters: everyone rung once; unreadable demands: everyone.
        let all: Vec<Demand> = (0..20).map(|_| demand(&[], "web")).collect();
        assert_eq!(ws.ring(Some(&all)), 7);
        assert_eq!(ws.ring(None), 7);
        assert_eq!(ws.ring(Some(&[])), 0);
        // One agent by name (it drains): only its claims.
        let ws = Waiters::default();
        let (a, b) = (ws.wait(&agent("a", &[], &[])), ws.wait(&agent("b", &[], &[])));
        assert_eq!(ws.ring_agent("a"), 1);
        assert!(rung(&a) && !rung(&b));
    }

    /// Whether a round is due (the round task would run), consuming it.
    async fn round_due(ws: &Waiters) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), ws.due.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn a_ring_heard_or_not_that_ends_without_its_job_makes_one_more_round() {
        let ws = Waiters::default();
        // Heard, then the claim leaves without a job (its agent drains, is revoked, an error).
        let w = ws.wait(&agent("a", &[], &[]));
        ws.ring(Some(&[demand(&[], "p")]));
        w.rung().await;
        assert!(!round_due(&ws).await);
        drop(w);
        assert!(round_due(&ws).await, "a heard ring whose job was not taken rings again");
        // Rung while asking the store, which found an older job: that ring was another job's.
        let w = ws.wait(&agent("a", &[], &[]));
        ws.ring(Some(&[demand(&[], "p")]));
        w.took_job();
        assert!(round_due(&ws).await, "the unheard ring goes round again");
        // A claim that took a job with no ring pending makes no extra round.
        let w = ws.wait(&agent("a", &[], &[]));
        w.took_job();
        assert!(!round_due(&ws).await);
    }

    #[tokio::test]
    async fn a_ring_while_asking_the_store_is_heard_at_the_next_wait() {
        let ws = Waiters::default();
        let w = ws.wait(&agent("a", &[], &[]));
        ws.ring(Some(&[demand(&[], "p")]));
        tokio::time::timeout(std::time::Duration::from_secs(5), w.rung()).await.expect("the ring was kept");
        assert!(!rung(&w));
        // Heard once: the next wait waits.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), w.rung()).await.is_err());
    }

    #[tokio::test]
    async fn a_rung_waiter_that_leaves_makes_another_round() {
        let ws = Waiters::default();
        let w = ws.wait(&agent("a", &[], &[]));
        let other = ws.wait(&agent("b", &[], &[]));
        ws.ring(Some(&[demand(&[], "p")]));
        assert!(rung(&w) && !rung(&other));
        drop(w);
        assert_eq!(ws.len(), 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), ws.due.notified()).await.expect("a round is due");
    }
}
