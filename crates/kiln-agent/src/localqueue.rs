//! The in-process test queue of `kiln run`: the same rules as the server's queue (first shard
//! lists, batches sized by `kiln_core::shards`, retries, flaky), kept in memory for the shards
//! of one local run.

use crate::queue::{QueueError, TestQueue};
use kiln_core::junit::{Outcome, TestCase};
use kiln_core::batchplan::{median, plan, plan_static, Claim, InFlight};
use kiln_core::testrun::{item_outcome, match_cases, no_result_message, resolve_try, static_assignment};
use kiln_wire::agent::{BatchDoneAck, TestBatch};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq)]
enum Listing {
    Unlisted,
    By(u32),
    Ready { static_split: bool },
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ItemState {
    Pending,
    Claimed(i64),
    Done,
}

#[derive(Debug, Clone)]
struct Item {
    key: String,
    estimate: Option<u64>,
    try_number: u32,
    shard: Option<u32>,
    state: ItemState,
    outcome: Option<Outcome>,
    superseded: bool,
}

/// One stored case of a local run.
#[derive(Debug, Clone)]
pub struct LocalResult {
    pub group: String,
    /// The job (shard) that ran it.
    pub job: String,
    /// The listed id it answers for (or the case's own id).
    pub key: String,
    pub case: TestCase,
    pub try_number: u32,
    pub flaky: bool,
    batch: Option<i64>,
    report: String,
    item: Option<usize>,
}

struct State {
    listing: Listing,
    items: Vec<Item>,
    /// Batch id → (shard, items).
    batches: HashMap<i64, (u32, Vec<usize>)>,
    /// Running batch id → (claimed at, its tests' known estimates, how many are unknown); and
    /// the fixed costs of finished ones.
    timing: HashMap<i64, (std::time::Instant, u64, usize)>,
    overheads: Vec<u64>,
    results: Vec<LocalResult>,
    /// `kiln run --replay`: per shard, the batches a build gave it, in order.
    replay: Option<HashMap<u32, std::collections::VecDeque<Vec<String>>>>,
}

/// The queue of one sharded job (or the results of one plain job) in a local run.
pub struct LocalGroup {
    pub key: String,
    shards: u32,
    retries: u32,
    history: GroupHistory,
    state: Mutex<State>,
    next_batch_id: Arc<std::sync::atomic::AtomicI64>,
}

/// What earlier runs knew of a group: each test's duration, and a batch's fixed cost.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupHistory {
    pub tests: HashMap<String, u64>,
    pub fixed_ms: Option<u64>,
    /// Tests whose last run failed: they go first.
    #[serde(default)]
    pub failed: HashSet<String>,
}

impl LocalGroup {
    pub fn new(key: &str, shards: u32, retries: u32, history: GroupHistory, ids: Arc<std::sync::atomic::AtomicI64>) -> Arc<LocalGroup> {
        let state = State { listing: Listing::Unlisted, items: Vec::new(), batches: HashMap::new(), timing: HashMap::new(), overheads: Vec::new(), results: Vec::new(), replay: None };
        Arc::new(LocalGroup { key: key.to_string(), shards: shards.max(1), retries, history, state: Mutex::new(state), next_batch_id: ids })
    }

    /// Replay: each shard claims exactly these batches, in this order, then is done.
    pub fn replay(&self, batches: HashMap<u32, Vec<Vec<String>>>) {
        self.state.lock().unwrap().replay = Some(batches.into_iter().map(|(s, b)| (s, b.into())).collect());
    }

    /// The fixed cost per batch this run measured (the median), if a batch finished.
    pub fn fixed_ms(&self) -> Option<u64> {
        median(&self.state.lock().unwrap().overheads)
    }

    /// Every case stored so far.
    pub fn results(&self) -> Vec<LocalResult> {
        self.state.lock().unwrap().results.clone()
    }
}

/// One shard's (or one plain job's) handle on a group.
pub struct LocalShard {
    pub group: Arc<LocalGroup>,
    pub shard: u32,
    pub job: String,
}

impl LocalShard {
    fn claim_now(&self) -> TestBatch {
        let g = &self.group;
        let mut st = g.state.lock().unwrap();
        let static_split = match st.listing.clone() {
            Listing::Unlisted => {
                st.listing = Listing::By(self.shard);
                return TestBatch { list: true, ..Default::default() };
            }
            Listing::By(s) if s == self.shard => return TestBatch { list: true, ..Default::default() },
            Listing::By(_) => return TestBatch { wait: true, ..Default::default() },
            Listing::Failed(e) => return TestBatch { error: Some(e), ..Default::default() },
            Listing::Ready { static_split } => static_split,
        };
        if st.replay.is_some() {
            return self.replay_next(&mut st);
        }
        let visible: Vec<usize> = (0..st.items.len())
            .filter(|&i| st.items[i].state == ItemState::Pending && st.items[i].shard.is_none_or(|s| s == self.shard))
            .collect();
        if visible.is_empty() {
            return self.verdict(&st);
        }
        let pending: Vec<(String, Option<u64>)> = visible.iter().map(|&i| (st.items[i].key.clone(), st.items[i].estimate)).collect();
        let p = if static_split {
            plan_static(pending.len())
        } else {
            let in_flight: Vec<InFlight> =
                st.timing.values().map(|(at, known, unknown)| InFlight { elapsed_ms: at.elapsed().as_millis() as u64, known_ms: *known, unknown: *unknown }).collect();
            let ran: Vec<u64> = st.items.iter().enumerate().filter(|(_, it)| it.state == ItemState::Done).map(|(i, _)| st.results.iter().filter(|r| r.item == Some(i)).map(|r| r.case.duration_ms).sum()).collect();
            let fixed_ms = median(&st.overheads).or(g.history.fixed_ms);
            plan(&Claim { pending: &pending, shards: g.shards, in_flight: &in_flight, fixed_ms, run_median_ms: median(&ran) })
        };
        let n = p.len.clamp(1, pending.len());
        let id = g.next_batch_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let taken: Vec<usize> = visible[..n].to_vec();
        for &i in &taken {
            st.items[i].state = ItemState::Claimed(id);
        }
        let known = taken.iter().filter_map(|&i| st.items[i].estimate).sum();
        let unknown = taken.iter().filter(|&&i| st.items[i].estimate.is_none()).count();
        st.timing.insert(id, (std::time::Instant::now(), known, unknown));
        st.batches.insert(id, (self.shard, taken));
        TestBatch { batch_id: Some(id), tests: pending.into_iter().take(n).map(|p| p.0).collect(), plan: Some(p.explain(g.shards)), ..Default::default() }
    }

    /// Done: the tests this shard ran last that failed, and the flaky ones.
    fn verdict(&self, st: &State) -> TestBatch {
        let mine: HashSet<usize> = st.batches.values().filter(|b| b.0 == self.shard).flat_map(|b| b.1.iter().copied()).collect();
        let failed = mine
            .iter()
            .map(|&i| &st.items[i])
            .filter(|it| it.state == ItemState::Done && !it.superseded && matches!(it.outcome, Some(Outcome::Failed | Outcome::Errored)))
            .map(|it| it.key.clone())
            .collect();
        let mut flaky: Vec<String> = st.results.iter().filter(|r| r.flaky && r.item.is_some_and(|i| mine.contains(&i))).map(|r| r.key.clone()).collect();
        flaky.sort();
        flaky.dedup();
        TestBatch { done: true, failed, flaky, ..Default::default() }
    }

    /// `kiln run --replay`: this shard's next recorded batch (its tests as items, added when
    /// the list no longer has them), or done.
    fn replay_next(&self, st: &mut State) -> TestBatch {
        let Some(tests) = st.replay.as_mut().and_then(|r| r.get_mut(&self.shard)).and_then(|q| q.pop_front()) else {
            return self.verdict(st);
        };
        let id = self.group.next_batch_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut taken = Vec::with_capacity(tests.len());
        for t in &tests {
            let i = match st.items.iter().position(|it| &it.key == t && it.state == ItemState::Pending) {
                Some(i) => i,
                None => {
                    let try_number = st.items.iter().filter(|it| &it.key == t).count() as u32;
                    st.items.push(Item { key: t.clone(), estimate: None, try_number, shard: None, state: ItemState::Pending, outcome: None, superseded: false });
                    st.items.len() - 1
                }
            };
            st.items[i].state = ItemState::Claimed(id);
            taken.push(i);
        }
        st.timing.insert(id, (std::time::Instant::now(), 0, taken.len()));
        st.batches.insert(id, (self.shard, taken));
        let plan = format!("replay: batch {} of this shard as the build ran it, {} test{}", st.batches.values().filter(|b| b.0 == self.shard).count(), tests.len(), if tests.len() == 1 { "" } else { "s" });
        TestBatch { batch_id: Some(id), tests, plan: Some(plan), ..Default::default() }
    }

    fn list_now(&self, ids: Result<Vec<String>, String>, static_split: bool, changed_files: &[String]) {
        let g = &self.group;
        let mut st = g.state.lock().unwrap();
        if !matches!(st.listing, Listing::By(_) | Listing::Unlisted) {
            return;
        }
        let ids = match ids {
            Err(e) => {
                st.listing = Listing::Failed(e);
                return;
            }
            Ok(ids) => {
                let mut seen = HashSet::new();
                ids.into_iter().filter(|i| seen.insert(i.clone())).collect::<Vec<_>>()
            }
        };
        let (order, owners): (Vec<String>, Vec<Option<u32>>) = if static_split {
            let o = static_assignment(&ids, &g.history.tests, g.shards);
            (ids, o.into_iter().map(Some).collect())
        } else {
            let (ordered, _) = kiln_core::shards::queue_order(&ids, &g.history.tests, &g.history.failed, changed_files);
            let n = ordered.len();
            (ordered, vec![None; n])
        };
        st.items = order
            .into_iter()
            .zip(owners)
            .map(|(key, shard)| Item { estimate: g.history.tests.get(&key).copied(), key, try_number: 0, shard, state: ItemState::Pending, outcome: None, superseded: false })
            .collect();
        st.listing = Listing::Ready { static_split };
    }

    fn report_now(&self, batch: Option<i64>, path: &str, xml: &[u8]) -> Result<u32, QueueError> {
        let cases = kiln_core::junit::parse(path, xml).map_err(|e| QueueError::Refused(format!("malformed JUnit report {e}")))?;
        let mut st = self.group.state.lock().unwrap();
        let items: Vec<usize> = batch.and_then(|b| st.batches.get(&b)).map(|b| b.1.clone()).unwrap_or_default();
        let listed: Vec<String> = items.iter().map(|&i| st.items[i].key.clone()).collect();
        st.results.retain(|r| !(r.batch == batch && r.report == path && r.job == self.job));
        for (case, m) in cases.iter().zip(match_cases(&listed, &cases)) {
            let item = m.map(|j| items[j]);
            let (key, try_number) = match item {
                Some(i) => (st.items[i].key.clone(), st.items[i].try_number),
                None => (case.id(), 0),
            };
            st.results.push(LocalResult { group: self.group.key.clone(), job: self.job.clone(), key, case: case.clone(), try_number, flaky: false, batch, report: path.to_string(), item });
        }
        Ok(cases.len() as u32)
    }

    fn done_now(&self, batch: i64, exit_code: Option<i32>) -> BatchDoneAck {
        let g = &self.group;
        let mut st = g.state.lock().unwrap();
        let items = st.batches.get(&batch).map(|b| b.1.clone()).unwrap_or_default();
        let mut ack = BatchDoneAck::default();
        if let Some((at, _, _)) = st.timing.remove(&batch) {
            let ran: u64 = st.results.iter().filter(|r| r.batch == Some(batch)).map(|r| r.case.duration_ms).sum();
            st.overheads.push((at.elapsed().as_millis() as u64).saturating_sub(ran));
        }
        for i in items {
            if st.items[i].state != ItemState::Claimed(batch) {
                continue;
            }
            let got: Vec<(Outcome, u64)> = st.results.iter().filter(|r| r.item == Some(i)).map(|r| (r.case.outcome, r.case.duration_ms)).collect();
            let ms: u64 = got.iter().map(|g| g.1).sum();
            let (key, try_number) = (st.items[i].key.clone(), st.items[i].try_number);
            let outcome = item_outcome(got.iter().map(|g| g.0)).unwrap_or_else(|| {
                let case = TestCase { suite: String::new(), classname: String::new(), name: key.clone(), file: None, duration_ms: 0, outcome: Outcome::Errored, message: Some(no_result_message(exit_code)) };
                let r = LocalResult { group: g.key.clone(), job: self.job.clone(), key: key.clone(), case, try_number, flaky: false, batch: Some(batch), report: String::new(), item: Some(i) };
                st.results.push(r);
                Outcome::Errored
            });
            let failed_before = st.items.iter().any(|it| it.key == key && it.try_number < try_number && matches!(it.outcome, Some(Outcome::Failed | Outcome::Errored)));
            let r = resolve_try(outcome, try_number, g.retries, failed_before);
            let it = &mut st.items[i];
            it.state = ItemState::Done;
            it.outcome = Some(outcome);
            it.superseded = r.retry;
            if matches!(outcome, Outcome::Failed | Outcome::Errored) {
                ack.failed += 1;
            } else {
                ack.passed += 1;
            }
            if r.retry {
                ack.retried += 1;
                let estimate = if ms > 0 { Some(ms) } else { it.estimate };
                st.items.push(Item { key: key.clone(), estimate, try_number: try_number + 1, shard: None, state: ItemState::Pending, outcome: None, superseded: false });
            }
            if r.flaky {
                st.results.iter_mut().filter(|r| r.item == Some(i)).for_each(|r| r.flaky = true);
            }
        }
        ack
    }
}

impl TestQueue for LocalShard {
    async fn claim(&self) -> Result<TestBatch, QueueError> {
        Ok(self.claim_now())
    }
    async fn upload_list(&self, ids: Result<Vec<String>, String>, static_split: bool, changed_files: Vec<String>) -> Result<(), QueueError> {
        self.list_now(ids, static_split, &changed_files);
        Ok(())
    }
    async fn report(&self, batch: Option<i64>, path: &str, xml: Vec<u8>) -> Result<u32, QueueError> {
        self.report_now(batch, path, &xml)
    }
    async fn batch_done(&self, batch: i64, exit_code: Option<i32>) -> Result<BatchDoneAck, QueueError> {
        Ok(self.done_now(batch, exit_code))
    }
}
