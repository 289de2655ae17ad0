//! The batch planner of queue mode: how many of the pending tests the next claim takes.
//!
//! Every batch starts the `run` command once and pays its fixed cost (process start, imports,
//! collection: 0.3–0.7 s for pytest) before its first test. The planner keeps that fixed cost a
//! small share of each batch ([`FIXED_SHARE_PERCENT`]) while keeping the tail short:
//!
//! - **Nothing known** (no history, nothing run yet in this build): one batch per shard, an
//!   even split by count of what is pending among the shards not yet running, its end moved to
//!   a file boundary when the ids carry one (`path::name`, nextest's `binary name`) and one is near. So the start-up is
//!   paid once per shard, not once per crumb: while nothing is known, a second batch per shard
//!   would add a whole fixed cost to the wall time (the shards pay it together), and the share
//!   of a shard is what keeps it as busy as the others. That batch measures the fixed cost and
//!   the tests' times; every later claim (a shard that starts late, tests put back) plans with
//!   them, and the next build plans with the history from its first batch. Only a build with
//!   no history at all, not even its default branch's, is planned blind. A shard that starts
//!   [`LATE_START_MS`] after another takes half its share: the first to finish takes the rest.
//! - **Durations known** (history, or tests already run in this build; an unknown test weighs
//!   the median): the batch fills up to the *water level* — the time at which every shard would
//!   finish together, counting what the others still have in flight. It takes 80 % of it,
//!   keeping a fifth to absorb wrong estimates, when that fifth is worth a batch of its own
//!   (the work that keeps the fixed cost under [`FIXED_SHARE_PERCENT`]); else the whole level,
//!   as every shard would pay one more fixed cost for it. When every other shard is busy for longer
//!   than all that is pending would run, the batch takes it all: no one could start it sooner.
//!   Nor does it leave crumbs: when what it would leave is less work than a batch's fixed cost
//!   (a batch of it would be mostly start-up) and at most a quarter of its own
//!   ([`CRUMBS_PER_BATCH`]), or all that is pending is less than one fixed cost, it takes it
//!   all: splitting less than a start-up's worth saves less than the start-ups cost.
//!
//! The [`Plan`] says why ([`Plan::explain`]); the shard prints it in the job log.

use std::fmt::Write as _;

use crate::shards::file_of;

/// A shard that claims while nothing is known, this long after another shard's batch began,
/// starts late: it takes half its even share, and whoever finishes first takes the rest,
/// planned with what it measured (a whole share would end that much after the others).
pub const LATE_START_MS: u64 = 500;
/// A batch's fixed cost should stay at most this share (%) of its wall time.
pub const FIXED_SHARE_PERCENT: u64 = 10;
/// A batch takes the rest of the queue when that is less work than one fixed cost and at most
/// 1 / this of its own work (crumbs not worth starting the runner for).
pub const CRUMBS_PER_BATCH: u64 = 4;
/// The fixed cost assumed before any batch of a run (or of its history) has measured one.
pub const DEFAULT_FIXED_MS: u64 = 200;

/// A batch another shard is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InFlight {
    /// Since the batch was claimed.
    pub elapsed_ms: u64,
    /// The estimates of its tests whose duration is known.
    pub known_ms: u64,
    /// How many of its tests have no estimate (they weigh the median).
    pub unknown: usize,
}

/// What the planner knows when a shard claims.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The tests this shard may take, in queue order, with their estimates (ms).
    pub pending: &'a [(String, Option<u64>)],
    pub shards: u32,
    /// The other shards' running batches.
    pub in_flight: &'a [InFlight],
    /// A batch's fixed cost: measured in this run, else from the history, else unknown.
    pub fixed_ms: Option<u64>,
    /// The median duration of the tests this run has finished (stands in for unknown ones when
    /// no pending test has an estimate).
    pub run_median_ms: Option<u64>,
}

/// How the size was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Nothing known: an even split by count.
    Even,
    /// Durations known or measured: filled to the water level.
    Level,
    /// A static (`split: files`) claim: everything this shard owns.
    Static,
}

/// The planner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// How many of the pending tests to take (≥ 1 when any is pending).
    pub len: usize,
    pub pending: usize,
    pub basis: Basis,
    /// The estimated time of the batch's tests (0 when nothing is known).
    pub work_ms: u64,
    /// The fixed cost planned with (`None`: not yet measured).
    pub fixed_ms: Option<u64>,
    /// The water level (0 for an even split).
    pub level_ms: u64,
    /// For an even split: the shards it is split over (those not yet running, this one included).
    pub split_over: u32,
    /// For an even split: this shard starts late ([`LATE_START_MS`]) and takes half its share.
    pub late: bool,
    /// Filled to the level: it took the rest too, less work than a batch's fixed cost.
    pub crumbs: bool,
}

impl Plan {
    /// One line for the job log: the batch, its size and the estimated fixed cost.
    pub fn explain(&self, shards: u32) -> String {
        let mut s = format!("plan: {} of {} pending test{}", self.len, self.pending, if self.pending == 1 { "" } else { "s" });
        let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
        match self.basis {
            Basis::Static => s.push_str(", the files assigned to this shard"),
            Basis::Even => {
                let _ = write!(s, ", no timing known: an even split, one batch for each of the {} shard{} not yet running (of {shards})", self.split_over, if self.split_over == 1 { "" } else { "s" });
                if self.late {
                    s.push_str(", half a share as this shard starts late (the first to finish takes the rest)");
                }
                match self.fixed_ms {
                    Some(f) => {
                        let _ = write!(s, "; fixed cost per batch {f} ms (history)");
                    }
                    None => s.push_str("; this batch measures the fixed cost"),
                }
            }
            Basis::Level => {
                let fixed = self.fixed_ms.unwrap_or(DEFAULT_FIXED_MS);
                let share = fixed * 100 / (fixed + self.work_ms).max(1);
                let _ = write!(s, ", about {} of tests + {} ms fixed cost ({share} %", secs(self.work_ms), fixed);
                if self.fixed_ms.is_none() {
                    s.push_str(", assumed");
                }
                let _ = write!(s, "); water level {} over {shards} shards", secs(self.level_ms));
                if self.crumbs {
                    s.push_str(", and the rest: less work than a batch's fixed cost");
                }
            }
        }
        s
    }
}

/// An even split by count into `parts` batches: `pending / parts`, rounded up, its end moved to
/// the nearest file boundary within an eighth of its size (the shards' shares stay close).
fn even_split(pending: &[(String, Option<u64>)], parts: u32) -> usize {
    let len = pending.len().div_ceil(parts.max(1) as usize).max(1);
    if len >= pending.len() || file_of(&pending[len].0).is_none() {
        return len;
    }
    let slack = len / 8;
    let boundary = |i: usize| i > 0 && i < pending.len() && file_of(&pending[i - 1].0) != file_of(&pending[i].0);
    (0..=slack)
        .flat_map(|d| [len.checked_sub(d), Some(len + d)])
        .flatten()
        .find(|&i| boundary(i))
        .unwrap_or(len)
}

/// The median of some values (`None` when there are none).
pub fn median(values: &[u64]) -> Option<u64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

/// Plan the next batch of a queue-mode claim (see the module's doc).
pub fn plan(c: &Claim<'_>) -> Plan {
    let pending = c.pending.len();
    let shards = c.shards.max(1);
    let known: Vec<u64> = c.pending.iter().filter_map(|p| p.1).collect();
    let Some(stand_in) = median(&known).or(c.run_median_ms) else {
        // The shards not running a batch share what is pending (the others took their share).
        let parts = (shards as usize).saturating_sub(c.in_flight.len()).max(1) as u32;
        let late = c.in_flight.iter().any(|f| f.elapsed_ms >= LATE_START_MS);
        let len = if pending == 0 { 0 } else { even_split(c.pending, if late { 2 * parts } else { parts }) };
        return Plan { len, pending, basis: Basis::Even, work_ms: 0, fixed_ms: c.fixed_ms, level_ms: 0, split_over: parts, late, crumbs: false };
    };
    let fixed = c.fixed_ms.unwrap_or(DEFAULT_FIXED_MS);
    let est: Vec<u64> = c.pending.iter().map(|p| p.1.unwrap_or(stand_in).max(1)).collect();
    let total: u64 = est.iter().sum();
    // Water level L: Σ over shards of max(0, L − committed) = pending work (this shard has 0).
    let n = shards as usize;
    let mut committed: Vec<u64> = c
        .in_flight
        .iter()
        .map(|f| (f.known_ms + f.unknown as u64 * stand_in + fixed).saturating_sub(f.elapsed_ms))
        .take(n - 1)
        .collect();
    committed.resize(n, 0);
    let (mut lo, mut hi) = (0u64, total + committed.iter().sum::<u64>());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let filled: u64 = committed.iter().map(|&c| mid.saturating_sub(c)).sum();
        if filled >= total {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let level = lo;
    // Work that keeps the fixed cost at FIXED_SHARE_PERCENT of the batch's wall time.
    let worth = fixed * (100 - FIXED_SHARE_PERCENT) / FIXED_SHARE_PERCENT;
    let reserve = level / 5;
    let target = if reserve >= worth { level - reserve } else { level };

    let mut len = est.len();
    let mut sum = 0;
    for (i, e) in est.iter().enumerate() {
        if i > 0 && sum + e > target {
            len = i;
            break;
        }
        sum += e;
    }
    // Take all that is pending when every other shard is busy for longer than that would
    // run: no one could start any of it sooner.
    let others_free = committed[..n - 1].iter().copied().min().unwrap_or(u64::MAX);
    if total <= others_free {
        (len, sum) = (est.len(), total);
    }
    // What would be left is less than a batch's fixed cost, and a small part of this batch: run
    // it here rather than start the runner again for it.
    let rest = total - sum;
    let crumbs = len < est.len() && rest < fixed && (rest * CRUMBS_PER_BATCH <= sum || total < fixed);
    if crumbs {
        (len, sum) = (est.len(), total);
    }
    Plan { len, pending, basis: Basis::Level, work_ms: sum, fixed_ms: c.fixed_ms, level_ms: level, split_over: 0, late: false, crumbs }
}

/// A static (`split: files`) claim: the shard takes every file it owns.
pub fn plan_static(pending: usize) -> Plan {
    Plan { len: pending, pending, basis: Basis::Static, work_ms: 0, fixed_ms: None, level_ms: 0, split_over: 0, late: false, crumbs: false }
}

/// One batch handed out by [`simulate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBatch {
    /// 0-based shard that claimed it.
    pub shard: usize,
    pub start_ms: u64,
    pub end_ms: u64,
    pub tests: Vec<String>,
}

/// The outcome of a simulated run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub wall_ms: u64,
    pub batches: Vec<SimBatch>,
}

/// Simulate queue mode with the planner: `tests` are (id, true ms, estimate) in queue order;
/// every batch costs `fixed_ms` plus its tests' true times. Shards learn as a real run does:
/// the fixed cost and the median duration from the batches finished before a claim;
/// `history_fixed_ms` stands in until then.
pub fn simulate(tests: &[(String, u64, Option<u64>)], shards: u32, fixed_ms: u64, history_fixed_ms: Option<u64>) -> Simulation {
    let n = shards.max(1) as usize;
    let mut free_at = vec![0u64; n];
    let mut running: Vec<Option<(u64, u64, InFlight)>> = vec![None; n];
    let mut done: Vec<(u64, Vec<u64>)> = Vec::new(); // (end, durations)
    let mut batches: Vec<SimBatch> = Vec::new();
    let mut next = 0;
    while next < tests.len() {
        let shard = (0..n).min_by_key(|&s| (free_at[s], s)).expect("shards >= 1");
        let now = free_at[shard];
        running[shard] = None;
        let finished: Vec<&(u64, Vec<u64>)> = done.iter().filter(|d| d.0 <= now).collect();
        let ran: Vec<u64> = finished.iter().flat_map(|d| d.1.iter().copied()).collect();
        let fixed = if finished.is_empty() { history_fixed_ms } else { Some(fixed_ms) };
        let in_flight: Vec<InFlight> = running
            .iter()
            .flatten()
            .filter(|r| r.1 > now)
            .map(|r| InFlight { elapsed_ms: now - r.0, ..r.2 })
            .collect();
        let pending: Vec<(String, Option<u64>)> = tests[next..].iter().map(|t| (t.0.clone(), t.2)).collect();
        let p = plan(&Claim { pending: &pending, shards, in_flight: &in_flight, fixed_ms: fixed, run_median_ms: median(&ran) });
        let taken = &tests[next..next + p.len];
        next += p.len;
        let end = now + fixed_ms + taken.iter().map(|t| t.1).sum::<u64>();
        let flight = InFlight { elapsed_ms: 0, known_ms: taken.iter().filter_map(|t| t.2).sum(), unknown: taken.iter().filter(|t| t.2.is_none()).count() };
        running[shard] = Some((now, end, flight));
        done.push((end, taken.iter().map(|t| t.1).collect()));
        free_at[shard] = end;
        batches.push(SimBatch { shard, start_ms: now, end_ms: end, tests: taken.iter().map(|t| t.0.clone()).collect() });
    }
    Simulation { wall_ms: free_at.into_iter().max().unwrap_or(0), batches }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pending(est: &[Option<u64>]) -> Vec<(String, Option<u64>)> {
        est.iter().enumerate().map(|(i, e)| (format!("t{i}"), *e)).collect()
    }

    fn claim<'a>(p: &'a [(String, Option<u64>)], shards: u32, fixed: Option<u64>) -> Claim<'a> {
        Claim { pending: p, shards, in_flight: &[], fixed_ms: fixed, run_median_ms: None }
    }

    #[test]
    fn nothing_known_gives_each_shard_one_even_share() {
        let p = pending(&[None; 400]);
        let plan = plan(&claim(&p, 4, None));
        assert_eq!((plan.len, plan.basis, plan.split_over), (100, Basis::Even, 4));
        assert!(plan.explain(4).contains("one batch for each of the 4 shards not yet running (of 4); this batch measures the fixed cost"), "{}", plan.explain(4));
        // The shards that claim next share what is left among those not yet running.
        let busy = [InFlight::default(); 2];
        let p = pending(&[None; 200]);
        let c = Claim { pending: &p, shards: 4, in_flight: &busy, fixed_ms: None, run_median_ms: None };
        assert_eq!((super::plan(&c).len, super::plan(&c).split_over), (100, 2));
        // A shard that starts late takes half its share; the first to finish takes the rest.
        let late = [InFlight { elapsed_ms: LATE_START_MS, ..InFlight::default() }, InFlight::default()];
        let c = Claim { pending: &p, shards: 4, in_flight: &late, fixed_ms: None, run_median_ms: None };
        assert_eq!((super::plan(&c).len, super::plan(&c).late), (50, true));
        assert!(super::plan(&c).explain(4).contains("half a share as this shard starts late"), "{}", super::plan(&c).explain(4));
        // More running than shards (attempts overlapping): the claim takes the rest.
        let c = Claim { pending: &p, shards: 1, in_flight: &busy, fixed_ms: None, run_median_ms: None };
        assert_eq!(super::plan(&c).len, 200);
        assert_eq!(super::plan(&claim(&pending(&[None; 3]), 4, None)).len, 1);
        assert_eq!(super::plan(&claim(&[], 4, None)).len, 0);
        // The history's fixed cost is shown but the split stays even.
        let p = pending(&[None; 10]);
        let plan = super::plan(&claim(&p, 2, Some(300)));
        assert_eq!(plan.len, 5);
        assert!(plan.explain(2).contains("300 ms (history)"));
    }

    #[test]
    fn an_even_split_ends_at_a_nearby_file_boundary() {
        // Files of 9 tests, 2 shards: 40 / 2 = 20, and a boundary at 18 is within 20 / 8.
        let p: Vec<(String, Option<u64>)> = (0..40).map(|i| (format!("tests/f{}.py::t{i}", i / 9), None)).collect();
        assert_eq!(plan(&claim(&p, 2, None)).len, 18);
        // No boundary near: the count stands.
        let p: Vec<(String, Option<u64>)> = (0..40).map(|i| (format!("tests/f{}.py::t{i}", i / 30), None)).collect();
        assert_eq!(plan(&claim(&p, 2, None)).len, 20);
    }

    #[test]
    fn a_large_fixed_cost_makes_one_batch_per_shard() {
        // 400 × 35 ms on 4 shards, 500 ms to start: the level is 3.5 s, and 10 % of the batch
        // would need 4.5 s of work, so the batch takes the whole level.
        let p = pending(&[Some(35); 400]);
        let first = plan(&claim(&p, 4, Some(500)));
        assert_eq!((first.len, first.level_ms), (100, 3500));
        assert!(first.explain(4).contains("500 ms fixed cost (12 %)"), "{}", first.explain(4));
        // A cheap runner: 80 % of the level, a fifth kept for a later batch.
        assert_eq!(plan(&claim(&p, 4, Some(10))).len, 80);
        // A fifth of the level is worth less than a batch (9 fixed costs): the whole level.
        assert_eq!(plan(&claim(&p, 4, Some(100))).len, 100);
        assert_eq!(plan(&claim(&p, 4, Some(77))).len, 80);
        // The last shard to claim takes the crumbs rather than leave a batch that costs more
        // than it runs.
        let p = pending(&[Some(35); 102]);
        let busy = [InFlight { elapsed_ms: 0, known_ms: 3500, unknown: 0 }; 3];
        let c = Claim { pending: &p, shards: 4, in_flight: &busy, fixed_ms: Some(500), run_median_ms: None };
        assert_eq!(plan(&c).len, 102);
    }

    #[test]
    fn a_batch_takes_the_crumbs_it_would_leave() {
        // 2 shards, 80 ms to start: 30 tests of 20 ms and 3 of 5 ms. Filled to the level (27 tests),
        // the batch would leave 75 ms of tests to a batch that would be mostly start-up.
        let mut est = vec![Some(20); 30];
        est.extend([Some(5); 3]);
        let p = pending(&est);
        let busy = [InFlight { elapsed_ms: 0, known_ms: 400, unknown: 0 }];
        let c = Claim { pending: &p, shards: 2, in_flight: &busy, fixed_ms: Some(80), run_median_ms: None };
        let taken = plan(&c);
        assert_eq!((taken.len, taken.crumbs), (33, true));
        assert!(taken.explain(2).ends_with("and the rest: less work than a batch's fixed cost"), "{}", taken.explain(2));
        // What it leaves is a whole share, if less than a fixed cost: another shard runs it
        // alongside (2 × 100 ms of tests, 286 ms to start).
        let p2 = pending(&[Some(10); 40]);
        let share = plan(&claim(&p2, 2, Some(286)));
        assert_eq!((share.len, share.crumbs), (20, false));
        // What it leaves is worth a batch: it leaves it.
        let c = Claim { fixed_ms: Some(5), ..c };
        let left = plan(&c);
        assert!(left.len < 33 && !left.crumbs, "{left:?}");
        assert!(!left.explain(2).contains("the rest"), "{}", left.explain(2));
    }

    #[test]
    fn less_than_a_fixed_cost_pending_goes_in_one_batch() {
        // The tail: 14 tests of 3 ms, 84 ms to start, 4 shards free. Filled to the level
        // (11 ms), a batch would be 4 tests and 84 ms of start-up; one batch takes all 42 ms.
        let p = pending(&[Some(3); 14]);
        let tail = plan(&claim(&p, 4, Some(84)));
        assert_eq!((tail.len, tail.crumbs), (14, true));
        // More than a fixed cost pending: filled to the level (45 ms).
        let p = pending(&[Some(3); 60]);
        let split = plan(&claim(&p, 4, Some(84)));
        assert_eq!((split.len, split.crumbs), (15, false));
    }

    #[test]
    fn measured_durations_stand_in_for_unknown_ones() {
        let p = pending(&[None; 233]);
        let c = Claim { pending: &p, shards: 4, in_flight: &[], fixed_ms: Some(500), run_median_ms: Some(35) };
        let plan = plan(&c);
        assert_eq!(plan.basis, Basis::Level);
        assert_eq!(plan.len, 58); // 233 × 35 ms / 4 = 2039 ms of level
        // Known ones set the median for unknown ones; a test longer than the target goes alone.
        let mut est = vec![Some(60_000), Some(10), Some(10)];
        est.extend([None; 20]);
        assert_eq!(super::plan(&claim(&pending(&est), 4, Some(10))).len, 1);
    }

    #[test]
    fn a_static_claim_takes_everything() {
        let p = plan_static(7);
        assert_eq!((p.len, p.basis), (7, Basis::Static));
        assert!(p.explain(3).contains("assigned"));
    }

    fn suite() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(prop_oneof![8 => 1u64..200, 2 => 200u64..3_000, 1 => 3_000u64..20_000], 1..400)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Every test is given out exactly once, in queue order, whatever is known.
        #[test]
        fn every_test_once(times in suite(), shards in 1u32..12, fixed in 0u64..800, known in any::<bool>(), hist in any::<bool>()) {
            let tests: Vec<_> = times.iter().enumerate().map(|(i, &ms)| (format!("t{i}"), ms, known.then_some(ms))).collect();
            let sim = simulate(&tests, shards, fixed, hist.then_some(fixed));
            let given: Vec<&String> = sim.batches.iter().flat_map(|b| &b.tests).collect();
            let all: Vec<&String> = tests.iter().map(|t| &t.0).collect();
            prop_assert_eq!(given, all);
            prop_assert!(sim.batches.iter().all(|b| !b.tests.is_empty() && b.shard < shards as usize));
        }

        /// Without history a shard runs a few batches, not dozens: at most its even share plus
        /// what the level-filling of the rest needs.
        #[test]
        fn without_history_few_batches(times in suite(), shards in 1u32..12, fixed in 100u64..800) {
            let tests: Vec<_> = times.iter().enumerate().map(|(i, &ms)| (format!("t{i}"), ms, None)).collect();
            let sim = simulate(&tests, shards, fixed, None);
            let most = (0..shards as usize).map(|s| sim.batches.iter().filter(|b| b.shard == s).count()).max().unwrap();
            let total: u64 = times.iter().sum();
            // With all the work worth ≥ 9 fixed costs per batch, batches number at most
            // total / (9 × fixed) plus a handful for the even start and the tail.
            let allowed = (total / (9 * fixed)) as usize + 5;
            prop_assert!(most <= allowed, "{} batches on one shard, allowed {}", most, allowed);
        }

        /// Without history, shards that start together each run one batch: the start-up is
        /// paid once per shard, and every test is still given out.
        #[test]
        fn without_history_one_batch_per_shard(times in suite(), shards in 1u32..12, fixed in 0u64..800) {
            let tests: Vec<_> = times.iter().enumerate().map(|(i, &ms)| (format!("t{i}"), ms, None)).collect();
            let sim = simulate(&tests, shards, fixed, None);
            prop_assert_eq!(sim.batches.len(), tests.len().min(shards as usize));
            prop_assert!((0..shards as usize).all(|s| sim.batches.iter().filter(|b| b.shard == s).count() <= 1));
        }

        /// Without history, a suite of similar short tests (10–60 ms, as `acceptance/suites`)
        /// ends within a quarter of one fixed cost plus an even share of the work.
        #[test]
        fn without_history_similar_tests_end_near_the_bound(times in prop::collection::vec(10u64..=60, 400..800), shards in 1u32..8, fixed in 0u64..800) {
            let tests: Vec<_> = times.iter().enumerate().map(|(i, &ms)| (format!("t{i}"), ms, None)).collect();
            let sim = simulate(&tests, shards, fixed, None);
            let bound = fixed + times.iter().sum::<u64>().div_ceil(u64::from(shards));
            prop_assert!(sim.wall_ms as f64 <= 1.25 * bound as f64, "wall {} bound {}", sim.wall_ms, bound);
        }

        /// With exact history and a known fixed cost, the wall time stays within 10 % of the
        /// bound: max(longest, total / N) plus the fixed costs the busiest shard pays; or, where
        /// whole tests cannot reach that bound (a few long tests on few shards), no later than
        /// longest-first placement of the single tests would end, plus those fixed costs. Only
        /// where each shard has work worth 9 fixed costs: below that, keeping the fixed cost at
        /// 10 % of the work means fewer batches than shards, and the plan trades wall time for it.
        #[test]
        fn with_history_near_the_bound(times in suite(), shards in 1u32..12, fixed in 0u64..800) {
            let mut tests: Vec<_> = times.iter().enumerate().map(|(i, &ms)| (format!("t{i}"), ms, Some(ms))).collect();
            tests.sort_by_key(|t| std::cmp::Reverse(t.1));
            let sim = simulate(&tests, shards, fixed, Some(fixed));
            let total: u64 = times.iter().sum();
            let longest = *times.iter().max().unwrap();
            let bound = longest.max(total.div_ceil(u64::from(shards)));
            let most = (0..shards as usize).map(|s| sim.batches.iter().filter(|b| b.shard == s).count()).max().unwrap() as u64;
            prop_assume!(total / u64::from(shards) >= 9 * fixed);
            let mut load = vec![0u64; shards as usize];
            for t in &tests {
                *load.iter_mut().min().unwrap() += t.1;
            }
            let lpt = *load.iter().max().unwrap();
            let limit = (1.10 * (bound + most * fixed) as f64).max(1.10 * (lpt + most * fixed) as f64);
            prop_assert!(sim.wall_ms as f64 <= limit,
                "wall {} bound {} longest-first {} batches on the busiest shard {}", sim.wall_ms, bound, lpt, most);
        }

        /// The fixed costs paid stay about 10 % of the work: a batch carries ≥ 9 fixed costs of
        /// work, but for the tail (a few per shard).
        #[test]
        fn fixed_cost_is_a_small_share(times in suite(), shards in 1u32..8, fixed in 50u64..800, known in any::<bool>()) {
            let mut tests: Vec<_> = times.iter().enumerate().map(|(i, &ms)| (format!("t{i}"), ms, known.then_some(ms))).collect();
            tests.sort_by_key(|t| std::cmp::Reverse(t.1));
            let sim = simulate(&tests, shards, fixed, known.then_some(fixed));
            let total: u64 = times.iter().sum();
            let paid = sim.batches.len() as u64 * fixed;
            let allowed = total * FIXED_SHARE_PERCENT / (100 - FIXED_SHARE_PERCENT) + 4 * u64::from(shards) * fixed;
            prop_assert!(paid <= allowed, "{} batches paid {} ms, allowed {}", sim.batches.len(), paid, allowed);
        }
    }
}
