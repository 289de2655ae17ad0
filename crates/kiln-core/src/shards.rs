//! Test distribution: longest-first ordering from history, queue-mode batch sizing, static splits, `{tests}` rendering and a queue-mode simulator.

use std::collections::HashMap;

/// Estimate for a test when nothing about any test is known.
const DEFAULT_ESTIMATE_MS: u64 = 1000;
/// The largest batch handed out while no test has a known duration.
const MAX_COLD_BATCH: usize = 8;

/// Estimates with the unknown ones replaced by the median of the known ones (1 s when none is
/// known). Every estimate is at least 1 ms so that batch targets stay meaningful.
fn fill_unknown(estimates: &[Option<u64>]) -> Vec<u64> {
    let mut known: Vec<u64> = estimates.iter().flatten().copied().collect();
    if known.len() < estimates.len() {
        // The median is only used when some estimate is unknown.
        known.sort_unstable();
    }
    let median = match known.len() {
        0 => DEFAULT_ESTIMATE_MS,
        n if n % 2 == 1 => known[n / 2],
        n => (known[n / 2 - 1] + known[n / 2]) / 2,
    };
    estimates
        .iter()
        .map(|e| e.unwrap_or(median).max(1))
        .collect()
}

/// Indices longest estimate first; an unknown goes after known tests of the same estimate;
/// ties keep the original order.
fn longest_first(estimates: &[Option<u64>]) -> Vec<usize> {
    let filled = fill_unknown(estimates);
    let mut order: Vec<usize> = (0..estimates.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(filled[i]), estimates[i].is_none(), i));
    order
}

/// Order tests longest-known-first. Unknown durations are treated as the median of known ones
/// (or a default of 1 s when none are known) and go after known-longer ones. Stable for ties
/// (original order).
pub fn order_by_history(tests: &[String], history: &HashMap<String, u64>) -> Vec<String> {
    let estimates: Vec<Option<u64>> = tests.iter().map(|t| history.get(t).copied()).collect();
    longest_first(&estimates)
        .into_iter()
        .map(|i| tests[i].clone())
        .collect()
}

/// How many tests to give a shard that claims now.
///
/// `remaining`: the not-yet-claimed tests in order (longest first) with their estimated ms
/// (`None` = unknown); `shards`: N. Returns the batch size (>= 1 when `remaining` is non-empty,
/// 0 when it is empty). Guided self-scheduling: take tests from the front until the batch's
/// estimate reaches remaining_total / (2N); with no history at all, batches start small:
/// `remaining.len() / (4N)`, at least 1, at most 8.
pub fn batch_size(remaining: &[(String, Option<u64>)], shards: u32) -> usize {
    let estimates: Vec<Option<u64>> = remaining.iter().map(|(_, e)| *e).collect();
    batch_len(&estimates, shards)
}

fn batch_len(estimates: &[Option<u64>], shards: u32) -> usize {
    let n = u64::from(shards.max(1));
    if estimates.is_empty() {
        return 0;
    }
    if estimates.iter().all(Option::is_none) {
        let cold = estimates.len() / (4 * n as usize);
        return cold.clamp(1, MAX_COLD_BATCH).min(estimates.len());
    }
    let filled = fill_unknown(estimates);
    let target = filled.iter().sum::<u64>() / (2 * n);
    let mut sum = 0;
    for (count, estimate) in filled.iter().enumerate() {
        sum += estimate;
        if sum >= target {
            return count + 1;
        }
    }
    filled.len()
}

/// The naive static split used for comparison (nextest `--partition count:K/N`): test i goes to
/// shard (i % N) + 1. An out-of-range `shard` gets nothing.
pub fn partition_count(tests: &[String], shard: u32, shards: u32) -> Vec<String> {
    if shard == 0 || shard > shards {
        return Vec::new();
    }
    let (k, n) = (shard as usize - 1, shards as usize);
    tests
        .iter()
        .enumerate()
        .filter(|(i, _)| i % n == k)
        .map(|(_, t)| t.clone())
        .collect()
}

/// Static file split (`split: files` mode): distribute files across N shards greedily by known
/// duration (longest-processing-time first: each file to the least-loaded shard, lowest shard on
/// ties); unknown = median/1s. Returns the files for `shard` (1-based) in their input order.
pub fn split_files(
    files: &[String],
    history: &HashMap<String, u64>,
    shard: u32,
    shards: u32,
) -> Vec<String> {
    if shard == 0 || shard > shards {
        return Vec::new();
    }
    let estimates: Vec<Option<u64>> = files.iter().map(|f| history.get(f).copied()).collect();
    let filled = fill_unknown(&estimates);
    let mut load = vec![0u64; shards as usize];
    let mut owner = vec![0usize; files.len()];
    for i in longest_first(&estimates) {
        let least = (0..load.len())
            .min_by_key(|&s| (load[s], s))
            .expect("shards >= 1");
        load[least] += filled[i];
        owner[i] = least;
    }
    let k = shard as usize - 1;
    files
        .iter()
        .zip(owner)
        .filter(|(_, o)| *o == k)
        .map(|(f, _)| f.clone())
        .collect()
}

/// Shell-quote ids for substitution into a `run` template: each id single-quoted with `'`
/// escaped as `'\''`; joined by spaces.
pub fn shell_quote_all(ids: &[String]) -> String {
    let quoted: Vec<String> = ids
        .iter()
        .map(|id| format!("'{}'", id.replace('\'', r"'\''")))
        .collect();
    quoted.join(" ")
}

/// Replace `{tests}` in the template with [`shell_quote_all`] of the ids. Error if the template
/// lacks `{tests}`.
pub fn render_run(template: &str, ids: &[String]) -> Result<String, String> {
    if !template.contains("{tests}") {
        return Err(format!(
            "the run command has no {{tests}} placeholder: {template}"
        ));
    }
    Ok(template.replace("{tests}", &shell_quote_all(ids)))
}

/// One batch handed out by [`simulate_batches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBatch {
    /// 1-based shard that claimed it.
    pub shard: u32,
    pub start_ms: u64,
    pub tests: Vec<String>,
}

/// The outcome of a simulated queue-mode run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub wall_ms: u64,
    pub batches: Vec<SimBatch>,
}

/// Simulate queue mode: tests are ordered by estimate ([`order_by_history`]'s rule); whenever a
/// shard is free (the earliest, lowest-numbered first) it claims [`batch_size`] tests and runs
/// them one after another, plus `overhead_ms` per batch.
pub fn simulate_batches(
    tests: &[(String, u64, Option<u64>)],
    shards: u32,
    overhead_ms: u64,
) -> Simulation {
    let estimates: Vec<Option<u64>> = tests.iter().map(|t| t.2).collect();
    let order = longest_first(&estimates);
    let queue: Vec<Option<u64>> = order.iter().map(|&i| estimates[i]).collect();
    let mut free_at = vec![0u64; shards.max(1) as usize];
    let mut batches = Vec::new();
    let mut next = 0;
    while next < queue.len() {
        let shard = (0..free_at.len())
            .min_by_key(|&s| (free_at[s], s))
            .expect("shards >= 1");
        let len = batch_len(&queue[next..], shards);
        let taken = &order[next..next + len];
        next += len;
        let start_ms = free_at[shard];
        free_at[shard] = start_ms + overhead_ms + taken.iter().map(|&i| tests[i].1).sum::<u64>();
        batches.push(SimBatch {
            shard: shard as u32 + 1,
            start_ms,
            tests: taken.iter().map(|&i| tests[i].0.clone()).collect(),
        });
    }
    let wall_ms = free_at.into_iter().max().unwrap_or(0);
    Simulation { wall_ms, batches }
}

/// Simulate queue mode for property tests and the benchmark: given true durations, estimated
/// durations (history or None), N shards and a per-batch overhead in ms, return the simulated
/// wall time in ms.
pub fn simulate(tests: &[(String, u64, Option<u64>)], shards: u32, overhead_ms: u64) -> u64 {
    simulate_batches(tests, shards, overhead_ms).wall_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn history(v: &[(&str, u64)]) -> HashMap<String, u64> {
        v.iter().map(|(k, ms)| (k.to_string(), *ms)).collect()
    }

    /// SplitMix64: a small deterministic PRNG.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn orders_longest_known_first_with_unknowns_at_the_median() {
        let tests = strings(&["u1", "a", "b", "c", "u2", "d", "e"]);
        let h = history(&[("a", 100), ("b", 5000), ("c", 300), ("d", 300), ("e", 10)]);
        // median of known = 300: unknowns go after the known 300s, before the shorter ones.
        assert_eq!(
            order_by_history(&tests, &h),
            strings(&["b", "c", "d", "u1", "u2", "a", "e"])
        );
        let none = strings(&["z", "y", "x"]);
        assert_eq!(order_by_history(&none, &HashMap::new()), none);
        let h = history(&[("a", 1), ("b", 3), ("c", 2), ("d", 4)]);
        // even count: median (2 + 3) / 2 = 2, so the unknown goes after "c".
        assert_eq!(
            order_by_history(&strings(&["u", "a", "b", "c", "d"]), &h),
            strings(&["d", "b", "c", "u", "a"])
        );
    }

    #[test]
    fn batch_sizes() {
        let with = |est: &[Option<u64>]| -> Vec<(String, Option<u64>)> {
            est.iter()
                .enumerate()
                .map(|(i, e)| (format!("t{i}"), *e))
                .collect()
        };
        assert_eq!(batch_size(&[], 4), 0);
        // No history: remaining / 4N, at least 1, at most 8.
        assert_eq!(batch_size(&with(&[None; 100]), 4), 6);
        assert_eq!(batch_size(&with(&[None; 1000]), 4), 8);
        assert_eq!(batch_size(&with(&[None; 3]), 4), 1);
        // 10 × 100 ms, N = 2: target 1000 / 4 = 250 ms → 3 tests.
        assert_eq!(batch_size(&with(&[Some(100); 10]), 2), 3);
        // A test longer than the target goes alone.
        let mut big = vec![Some(10_000)];
        big.extend([Some(10); 50]);
        assert_eq!(batch_size(&with(&big), 2), 1);
        // Unknowns count as the median of the known (100): total 1200, target 300.
        let partial = [
            Some(200),
            None,
            None,
            Some(100),
            Some(50),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ];
        assert_eq!(batch_size(&with(&partial), 2), 3);
        assert_eq!(batch_size(&with(&[Some(5), Some(5)]), 0), 1);
    }

    #[test]
    fn partition_count_round_robin() {
        let tests = strings(&["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(partition_count(&tests, 1, 3), strings(&["a", "d", "g"]));
        assert_eq!(partition_count(&tests, 2, 3), strings(&["b", "e"]));
        assert_eq!(partition_count(&tests, 3, 3), strings(&["c", "f"]));
        assert!(
            partition_count(&tests, 0, 3).is_empty() && partition_count(&tests, 4, 3).is_empty()
        );
    }

    #[test]
    fn split_files_longest_processing_time_first() {
        let files = strings(&["e.py", "a.py", "b.py", "c.py", "d.py"]);
        let h = history(&[
            ("a.py", 100),
            ("b.py", 90),
            ("c.py", 50),
            ("d.py", 40),
            ("e.py", 30),
        ]);
        // a→1 (100), b→2 (90), c→2 (140), d→1 (140), e→1 on the tie (170).
        assert_eq!(
            split_files(&files, &h, 1, 2),
            strings(&["e.py", "a.py", "d.py"])
        );
        assert_eq!(split_files(&files, &h, 2, 2), strings(&["b.py", "c.py"]));
        // An unknown file weighs the median (50) and goes after c: a→1, b→2, c→2, new→1, d→2, e→1.
        let files = strings(&["a.py", "b.py", "c.py", "d.py", "e.py", "new.py"]);
        assert_eq!(
            split_files(&files, &h, 1, 2),
            strings(&["a.py", "e.py", "new.py"])
        );
        assert!(split_files(&files, &h, 3, 2).is_empty());
    }

    /// Split a shell command line the way sh does for the quoting shell_quote_all uses:
    /// single quotes, backslash escapes outside quotes, blanks between words.
    fn sh_words(line: &str) -> Vec<String> {
        let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    in_word = true;
                    for q in chars.by_ref().take_while(|&q| q != '\'') {
                        word.push(q);
                    }
                }
                '\\' => {
                    in_word = true;
                    word.extend(chars.next());
                }
                ' ' if in_word => {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                ' ' => {}
                c => {
                    assert!(
                        !"$`;|&<>\"(){}*?[]#~".contains(c),
                        "unquoted {c:?} in {line}"
                    );
                    in_word = true;
                    word.push(c);
                }
            }
        }
        if in_word {
            words.push(word);
        }
        words
    }

    #[test]
    fn shell_quoting_survives_tricky_names() {
        assert_eq!(
            shell_quote_all(&strings(&["a b", "it's"])),
            r"'a b' 'it'\''s'"
        );
        assert_eq!(shell_quote_all(&[]), "");
        let tricky = strings(&[
            "tests/test_a.py::test_x[1-a]",
            "it's",
            "''",
            "two words",
            "$HOME",
            "`id`",
            "a;rm -rf /",
            "",
            "x\"y",
            "back\\slash",
            "*",
            "tab\tnew\nline",
            "ünïcode ✓",
            "$(echo hi)",
            "'",
        ]);
        assert_eq!(sh_words(&shell_quote_all(&tricky)), tricky);
    }

    #[test]
    fn render_run_substitutes_every_placeholder() {
        let ids = strings(&["a::b", "c d"]);
        assert_eq!(
            render_run("pytest {tests}", &ids).unwrap(),
            "pytest 'a::b' 'c d'"
        );
        assert_eq!(
            render_run("x {tests} && y {tests}", &ids[..1]).unwrap(),
            "x 'a::b' && y 'a::b'"
        );
        assert!(render_run("pytest", &ids).unwrap_err().contains("{tests}"));
    }

    #[test]
    fn simulate_small_cases() {
        let t = |name: &str, ms: u64, est: Option<u64>| (name.to_string(), ms, est);
        let equal: Vec<_> = (0..4)
            .map(|i| t(&format!("t{i}"), 1000, Some(1000)))
            .collect();
        assert_eq!(simulate(&equal, 2, 0), 2000);
        let sim = simulate_batches(&equal, 2, 10);
        assert_eq!(
            sim.wall_ms,
            2000 + 10 * sim.batches.iter().filter(|b| b.shard == 1).count() as u64
        );
        // The long test starts first, so two shards finish at 3000 instead of 4000.
        let skew = [
            t("s1", 1000, Some(1000)),
            t("s2", 1000, Some(1000)),
            t("long", 3000, Some(3000)),
        ];
        assert_eq!(simulate(&skew, 2, 0), 3000);
        assert_eq!(simulate(&[], 3, 50), 0);
    }

    fn random_suite(rng: &mut Rng, count: usize) -> Vec<(String, u64)> {
        (0..count)
            .map(|i| {
                // Mostly short tests, a heavy tail of slow ones.
                let ms = match rng.below(100) {
                    0..=69 => 1 + rng.below(200),
                    70..=94 => 200 + rng.below(3_000),
                    _ => 3_000 + rng.below(30_000),
                };
                (format!("t{i}"), ms)
            })
            .collect()
    }

    fn assert_each_given_once(sim: &Simulation, suite: &[(String, u64)]) {
        let mut given: Vec<&String> = sim.batches.iter().flat_map(|b| &b.tests).collect();
        given.sort();
        let mut all: Vec<&String> = suite.iter().map(|(n, _)| n).collect();
        all.sort();
        assert_eq!(given, all);
    }

    #[test]
    fn queue_mode_with_exact_history_stays_within_ten_percent_of_the_bound() {
        let mut rng = Rng(7);
        for round in 0..300 {
            let shards = 1 + rng.below(16) as u32;
            let count = shards as usize * (20 + rng.below(80) as usize);
            let overhead = [0, 0, 20, 500][round % 4];
            let suite = random_suite(&mut rng, count);
            let tests: Vec<_> = suite
                .iter()
                .map(|(n, ms)| (n.clone(), *ms, Some(*ms)))
                .collect();
            let sim = simulate_batches(&tests, shards, overhead);
            assert_each_given_once(&sim, &suite);
            let total: u64 = suite.iter().map(|t| t.1).sum();
            let longest = suite.iter().map(|t| t.1).max().unwrap();
            let bound = longest.max(total.div_ceil(u64::from(shards))) as f64;
            let allowed = 1.10 * bound + (sim.batches.len() as u64 * overhead) as f64;
            assert!(
                sim.wall_ms as f64 <= allowed,
                "round {round}: N={shards} n={count} wall {} > {allowed}",
                sim.wall_ms
            );
            assert_eq!(sim.wall_ms, simulate(&tests, shards, overhead));
        }
    }

    #[test]
    fn queue_mode_without_history_gives_out_every_test_once() {
        let mut rng = Rng(11);
        for _ in 0..100 {
            let shards = 1 + rng.below(8) as u32;
            let count = 1 + rng.below(400) as usize;
            let suite = random_suite(&mut rng, count);
            let tests: Vec<_> = suite.iter().map(|(n, ms)| (n.clone(), *ms, None)).collect();
            let sim = simulate_batches(&tests, shards, 0);
            assert_each_given_once(&sim, &suite);
            assert!(sim
                .batches
                .iter()
                .all(|b| (1..=MAX_COLD_BATCH).contains(&b.tests.len())));
            assert!(sim.batches.iter().all(|b| (1..=shards).contains(&b.shard)));
        }
    }
}
