//! Test distribution: the queue's order (longest first from history, a file's tests together,
//! failures first), static splits and `{tests}` rendering (queue-mode batch sizing is
//! `batchplan`).

use std::collections::{HashMap, HashSet};

/// Estimate for a test when nothing about any test is known.
const DEFAULT_ESTIMATE_MS: u64 = 1000;

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

/// The file a test id names, which a runner loads for any of its tests: `path` of a
/// `path::name` id (pytest, and most JUnit dialects' `file::name`), or the test binary of
/// nextest's `binary name`. `None` for an id that names no file.
pub fn file_of(id: &str) -> Option<&str> {
    // A binary id may hold `::` (`petgraph::graph dfs`); a pytest id holds a space only in its
    // parameters (`tests/a.py::test[a b]`).
    match id.split_once(' ') {
        Some((binary, _)) if !binary.contains('[') => Some(binary),
        _ => id.split_once("::").map(|(file, _)| file),
    }
}

/// A file's tests together, in the order of each file's first test (for a longest-first order:
/// its longest), each file's tests keeping their order; ids that name no file keep their
/// place among the files. A batch then loads few files: pytest imports and collects only the
/// files it is given, nextest lists only the binaries its filter can match.
pub fn files_together(ordered: Vec<String>) -> Vec<String> {
    // Each test goes where its file first came (a stable sort keeps the order within a file).
    let mut first: HashMap<&str, usize> = HashMap::new();
    let place: Vec<usize> = ordered.iter().enumerate().map(|(i, id)| file_of(id).map_or(i, |f| *first.entry(f).or_insert(i))).collect();
    let mut order: Vec<usize> = (0..ordered.len()).collect();
    order.sort_by_key(|&i| place[i]);
    let mut taken: Vec<Option<String>> = ordered.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| taken[i].take()).collect()
}

/// The order of a queue-mode group's queue: longest first from history
/// ([`order_by_history`]), a file's tests together ([`files_together`]), then failures first
/// ([`failures_first`]). Returns it and how many tests moved to the front.
pub fn queue_order(ids: &[String], history: &HashMap<String, u64>, failed: &HashSet<String>, changed_files: &[String]) -> (Vec<String>, usize) {
    failures_first(files_together(order_by_history(ids, history)), failed, changed_files)
}

/// Whether test `id` lives in one of `files` (the file part of `path::name`, or the id itself
/// for a listed file; a leading `./` is ignored).
fn in_files(id: &str, files: &HashSet<&str>) -> bool {
    let id = id.strip_prefix("./").unwrap_or(id);
    let file = id.split_once("::").map_or(id, |(f, _)| f);
    files.contains(file)
}

/// Failures first: the tests that failed last time, then those in files the commit changed,
/// move to the front of `ordered` (each keeping its order), so that the first batches run them.
/// Returns the new order and how many moved.
pub fn failures_first(ordered: Vec<String>, failed: &HashSet<String>, changed_files: &[String]) -> (Vec<String>, usize) {
    let changed: HashSet<&str> = changed_files.iter().map(|f| f.strip_prefix("./").unwrap_or(f)).collect();
    let (mut first, mut then, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for t in ordered {
        if failed.contains(&t) {
            first.push(t);
        } else if in_files(&t, &changed) {
            then.push(t);
        } else {
            rest.push(t);
        }
    }
    let moved = first.len() + then.len();
    first.append(&mut then);
    first.append(&mut rest);
    (first, moved)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn history(v: &[(&str, u64)]) -> HashMap<String, u64> {
        v.iter().map(|(k, ms)| (k.to_string(), *ms)).collect()
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
    fn a_files_tests_go_together_in_the_order_of_its_first() {
        let ordered = strings(&["tests/a.py::slow", "tests/b.py::x", "loose", "tests/a.py::quick", "tests/b.py::y", "tests/c.py::z"]);
        assert_eq!(
            files_together(ordered),
            strings(&["tests/a.py::slow", "tests/a.py::quick", "tests/b.py::x", "tests/b.py::y", "loose", "tests/c.py::z"])
        );
        // nextest's `binary name` ids: the binary is the file.
        let ordered = strings(&["petgraph::graph dfs", "petgraph tests::a", "petgraph::graph bfs", "petgraph tests::b"]);
        assert_eq!(files_together(ordered), strings(&["petgraph::graph dfs", "petgraph::graph bfs", "petgraph tests::a", "petgraph tests::b"]));
        assert_eq!(file_of("tests/a.py::T::test[a b]"), Some("tests/a.py"));
        assert_eq!(file_of("petgraph::graph dfs"), Some("petgraph::graph"));
        assert_eq!(file_of("petgraph graph::tests::a"), Some("petgraph"));
        assert_eq!(file_of("plain"), None);
    }

    #[test]
    fn the_queue_is_longest_first_files_together_failures_first() {
        let ids = strings(&["a.py::quick", "b.py::mid", "a.py::slow", "c.py::broken"]);
        let h = history(&[("a.py::quick", 10), ("b.py::mid", 500), ("a.py::slow", 900), ("c.py::broken", 1)]);
        let failed: HashSet<String> = ["c.py::broken".to_string()].into();
        assert_eq!(queue_order(&ids, &h, &failed, &[]), (strings(&["c.py::broken", "a.py::slow", "a.py::quick", "b.py::mid"]), 1));
    }

    #[test]
    fn failures_and_changed_files_go_first() {
        let ordered = strings(&["tests/a.py::slow", "tests/b.py::x", "tests/c.py::y", "tests/b.py::z", "d.py"]);
        let failed: HashSet<String> = ["tests/c.py::y".to_string()].into();
        let (order, moved) = failures_first(ordered.clone(), &failed, &strings(&["./tests/b.py", "d.py"]));
        assert_eq!(order, strings(&["tests/c.py::y", "tests/b.py::x", "tests/b.py::z", "d.py", "tests/a.py::slow"]));
        assert_eq!(moved, 4);
        assert_eq!(failures_first(ordered.clone(), &HashSet::new(), &[]), (ordered, 0));
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
}
