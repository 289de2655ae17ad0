//! The rules of one distributed test run, shared by the server's queue (in the store) and the
//! in-process queue of `kiln run`: which shard group a job belongs to, which listed test a
//! JUnit case reports on, what a finished try means (retry, flaky, final), and a build's test
//! counts. How big a batch is: `batchplan`.
//!
//! ```text
//!  list ─► items (ordered by history) ─► claim: batchplan ─► run ─► JUnit ─► match_cases
//!                                                                   │
//!            retry (try + 1, back of the queue) ◄── resolve_try ◄───┘  final / flaky
//! ```

use std::collections::HashMap;

use crate::junit::{matches_id, Outcome, TestCase};
use crate::shards::split_files;

/// The name tests of a sharded job are queued under: the job's key without its ` [i/n]`
/// shard suffix (so every cell of a matrix has its own queue).
pub fn group_key(job_key: &str, shard_count: u32) -> String {
    if shard_count > 1 {
        if let Some((head, tail)) = job_key.rsplit_once(" [") {
            if tail.ends_with(']') {
                return head.to_string();
            }
        }
    }
    job_key.to_string()
}

/// For every shard 1..=N, the files `split_files` gives it: returns the 1-based shard of each
/// file, in the order of `files`.
pub fn static_assignment(files: &[String], history: &HashMap<String, u64>, shards: u32) -> Vec<u32> {
    let shards = shards.max(1);
    let mut owner = vec![1u32; files.len()];
    let index: HashMap<&str, usize> = files.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect();
    for shard in 1..=shards {
        for f in split_files(files, history, shard, shards) {
            if let Some(&i) = index.get(f.as_str()) {
                owner[i] = shard;
            }
        }
    }
    owner
}

/// Which listed id (index into `listed`) each case reports on, by [`matches_id`]; `None` for
/// a case that names no listed test. A case that matches several listed ids goes to the first.
pub fn match_cases(listed: &[String], cases: &[TestCase]) -> Vec<Option<usize>> {
    cases
        .iter()
        .map(|c| {
            listed
                .iter()
                .position(|id| matches_id(id, c))
                .or_else(|| listed.iter().position(|id| in_python_file(id, c)))
        })
        .collect()
}

/// Whether a listed Python file (`split: files`) holds the case: pytest's JUnit (xunit2) has no
/// `file` attribute, but its classname is the file's module (`tests/test_a.py` →
/// `tests.test_a`), followed by `.Class` for a method.
fn in_python_file(listed: &str, case: &TestCase) -> bool {
    let Some(stem) = listed.strip_prefix("./").unwrap_or(listed).strip_suffix(".py") else {
        return false;
    };
    let module = stem.replace('/', ".");
    case.classname == module || case.classname.strip_prefix(&module).is_some_and(|rest| rest.starts_with('.'))
}

/// The outcome of one listed test from the outcomes of the cases that report on it (a listed
/// file may have many): any failure fails it, else any error errors it, else all skipped is
/// skipped, else passed. `None` when no case reports on it.
pub fn item_outcome(outcomes: impl IntoIterator<Item = Outcome>) -> Option<Outcome> {
    let mut seen = false;
    let mut all_skipped = true;
    let mut errored = false;
    for o in outcomes {
        seen = true;
        match o {
            Outcome::Failed => return Some(Outcome::Failed),
            Outcome::Errored => errored = true,
            Outcome::Skipped => {}
            Outcome::Passed => all_skipped = false,
        }
    }
    if !seen {
        return None;
    }
    Some(if errored {
        Outcome::Errored
    } else if all_skipped {
        Outcome::Skipped
    } else {
        Outcome::Passed
    })
}

/// The message recorded for a listed test that no JUnit case reported on.
pub fn no_result_message(exit_code: Option<i32>) -> String {
    let code = exit_code.map_or_else(|| "no exit code".to_string(), |c| format!("exit code {c}"));
    format!("no result reported: the run command's JUnit output has no case for this test ({code}); check that it writes JUnit XML into $KILN_JUNIT_DIR")
}

/// `; first failure after 2.3 s` for a status line (empty when nothing failed).
pub fn first_failure_note(first_failure_ms: Option<u64>) -> String {
    first_failure_ms.map(|ms| format!("; first failure after {:.1} s", ms as f64 / 1000.0)).unwrap_or_default()
}

/// What one finished try of a test means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Queue the test again (try + 1).
    pub retry: bool,
    /// It failed before and passed now.
    pub flaky: bool,
    /// This try is the test's last word (no retry follows).
    pub is_final: bool,
}

/// Decide after try `try_number` (0 = first run) of a test ended with `outcome`, given the
/// `retries` allowed and whether an earlier try failed.
pub fn resolve_try(outcome: Outcome, try_number: u32, retries: u32, failed_before: bool) -> Resolution {
    let bad = matches!(outcome, Outcome::Failed | Outcome::Errored);
    let retry = bad && try_number < retries;
    Resolution {
        retry,
        flaky: outcome == Outcome::Passed && failed_before,
        is_final: !retry,
    }
}

/// A build's (or one run's) test counts over distinct tests, by their final try. `passed`
/// includes the flaky ones (failed, then passed on a retry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub errored: u64,
    pub skipped: u64,
    pub flaky: u64,
}

impl Counts {
    /// Count one test by its final outcome.
    pub fn add(&mut self, outcome: Outcome, flaky: bool) {
        self.total += 1;
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Errored => self.errored += 1,
            Outcome::Skipped => self.skipped += 1,
        }
        if flaky {
            self.flaky += 1;
        }
    }

    /// "38 passed (1 flaky), 2 failed, 1 skipped" — zero counts left out but `passed`.
    pub fn line(&self) -> String {
        let mut out = format!("{} passed", self.passed);
        if self.flaky > 0 {
            out.push_str(&format!(" ({} flaky)", self.flaky));
        }
        for (n, word) in [(self.failed, "failed"), (self.errored, "errored"), (self.skipped, "skipped")] {
            if n > 0 {
                out.push_str(&format!(", {n} {word}"));
            }
        }
        out
    }
}

/// One recorded case of one try of a listed test, as [`final_tries`] needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Try {
    /// The queue (or job) the test ran in, and the listed id the case answers for.
    pub group: String,
    pub key: String,
    /// The case within it (`classname::name`); "" for a try with no case of its own (the
    /// "no result reported" marker), which stands for every case of the listed test.
    pub case: String,
    pub try_number: u32,
    pub outcome: Outcome,
}

/// The final tries: every case of the last try of each (group, key), each with whether it is
/// flaky (it passed, and an earlier try of the same case, or of the whole listed test, failed).
/// In input order.
pub fn final_tries(tries: &[Try]) -> Vec<(usize, bool)> {
    let mut by_test: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, t) in tries.iter().enumerate() {
        by_test.entry((t.group.as_str(), t.key.as_str())).or_default().push(i);
    }
    let bad = |o: Outcome| matches!(o, Outcome::Failed | Outcome::Errored);
    let mut out = Vec::new();
    for (i, t) in tries.iter().enumerate() {
        let same = &by_test[&(t.group.as_str(), t.key.as_str())];
        let last = same.iter().map(|&j| tries[j].try_number).max().unwrap_or(0);
        if t.try_number != last {
            continue;
        }
        let flaky = t.outcome == Outcome::Passed
            && same.iter().any(|&j| {
                let e = &tries[j];
                e.try_number < t.try_number && bad(e.outcome) && (e.case == t.case || e.case.is_empty())
            });
        out.push((i, flaky));
    }
    out
}

/// Counts over `tries` by [`final_tries`].
pub fn count(tries: &[Try]) -> Counts {
    let mut c = Counts::default();
    for (i, flaky) in final_tries(tries) {
        c.add(tries[i].outcome, flaky);
    }
    c
}

/// A shard's verdict once the queue is empty: its job fails when a test it ran last failed,
/// or when a test it ran was flaky and flaky tests fail the build.
pub fn verdict(failed: &[String], flaky: &[String], flaky_fails_build: bool) -> Option<String> {
    let list = |v: &[String]| {
        let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 5 {
            s.push_str(&format!(" and {} more", v.len() - 5));
        }
        s
    };
    if !failed.is_empty() {
        let n = failed.len();
        return Some(format!("{n} test{} failed: {}", if n == 1 { "" } else { "s" }, list(failed)));
    }
    if flaky_fails_build && !flaky.is_empty() {
        let n = flaky.len();
        return Some(format!("{n} flaky test{} (flaky_fails_build is set): {}", if n == 1 { "" } else { "s" }, list(flaky)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(classname: &str, name: &str, outcome: Outcome) -> TestCase {
        TestCase {
            suite: String::new(),
            classname: classname.into(),
            name: name.into(),
            file: None,
            duration_ms: 5,
            outcome,
            message: None,
        }
    }

    #[test]
    fn group_keys_drop_only_the_shard_suffix() {
        assert_eq!(group_key("suite [2/4]", 4), "suite");
        assert_eq!(group_key("suite (py=3.11) [2/4]", 4), "suite (py=3.11)");
        assert_eq!(group_key("suite", 1), "suite");
        assert_eq!(group_key("odd [x", 2), "odd [x");
    }

    #[test]
    fn cases_match_listed_ids_and_outcomes_combine() {
        let listed = vec!["tests/test_a.py::test_x".to_string(), "t2".to_string()];
        let cases = [
            case("tests.test_a", "test_x", Outcome::Passed),
            case("synthetic", "t2", Outcome::Failed),
            case("other", "unlisted", Outcome::Passed),
        ];
        assert_eq!(match_cases(&listed, &cases), [Some(0), Some(1), None]);
        // Files of `split: files`: pytest's classname is the module (and class).
        let files = vec!["tests/test_a.py".to_string(), "tests/test_ab.py".to_string()];
        let cases = [case("tests.test_a", "x", Outcome::Passed), case("tests.test_ab.TestK", "y", Outcome::Passed), case("tests.test_abc", "z", Outcome::Passed)];
        assert_eq!(match_cases(&files, &cases), [Some(0), Some(1), None]);
        use Outcome::*;
        assert_eq!(item_outcome([Passed, Skipped]), Some(Passed));
        assert_eq!(item_outcome([Skipped, Skipped]), Some(Skipped));
        assert_eq!(item_outcome([Passed, Errored, Skipped]), Some(Errored));
        assert_eq!(item_outcome([Errored, Failed]), Some(Failed));
        assert_eq!(item_outcome([]), None);
    }

    #[test]
    fn tries_retry_until_spent_and_pass_after_failure_is_flaky() {
        let r = resolve_try(Outcome::Failed, 0, 2, false);
        assert!(r.retry && !r.is_final && !r.flaky);
        let r = resolve_try(Outcome::Errored, 2, 2, true);
        assert!(!r.retry && r.is_final);
        let r = resolve_try(Outcome::Passed, 1, 2, true);
        assert!(!r.retry && r.is_final && r.flaky);
        assert!(!resolve_try(Outcome::Passed, 0, 2, false).flaky);
        assert!(!resolve_try(Outcome::Skipped, 0, 2, false).retry);
    }

    #[test]
    fn counts_use_the_final_try() {
        use Outcome::*;
        let t = |key: &str, case: &str, n: u32, o: Outcome| Try { group: "g".into(), key: key.into(), case: case.into(), try_number: n, outcome: o };
        let tries = [
            t("a", "a", 0, Passed),
            t("b", "b", 0, Failed),
            t("b", "b", 1, Passed),
            t("c", "c", 0, Failed),
            t("c", "c", 1, Failed),
            t("d", "d", 0, Skipped),
            t("e", "e", 0, Errored),
            // A listed file: no result the first time, then two cases.
            t("f.py", "", 0, Errored),
            t("f.py", "x", 1, Passed),
            t("f.py", "y", 1, Failed),
            // Another file: one case failed, the other passed both times.
            t("g.py", "x", 0, Failed),
            t("g.py", "y", 0, Passed),
            t("g.py", "x", 1, Passed),
            t("g.py", "y", 1, Passed),
        ];
        let c = count(&tries);
        assert_eq!(c, Counts { total: 9, passed: 5, failed: 2, errored: 1, skipped: 1, flaky: 3 });
        assert_eq!(c.line(), "5 passed (3 flaky), 2 failed, 1 errored, 1 skipped");
        let finals = final_tries(&tries);
        assert_eq!(finals.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 2, 4, 5, 6, 8, 9, 12, 13]);
        assert_eq!(finals.iter().filter(|x| x.1).map(|x| x.0).collect::<Vec<_>>(), [2, 8, 12]);
        // The same key in another group is another test.
        let other = [t("a", "a", 0, Passed), Try { group: "h".into(), ..t("a", "a", 0, Failed) }];
        assert_eq!(count(&other).total, 2);
    }

    #[test]
    fn static_assignment_agrees_with_split_files() {
        let files: Vec<String> = ["a.py", "b.py", "c.py", "d.py", "e.py"].map(String::from).to_vec();
        let h: HashMap<String, u64> = [("a.py", 100), ("b.py", 90), ("c.py", 50), ("d.py", 40), ("e.py", 30)]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect();
        assert_eq!(static_assignment(&files, &h, 2), [1, 2, 2, 1, 1]);
        assert_eq!(static_assignment(&files, &h, 1), [1; 5]);
    }

    #[test]
    fn verdicts_name_the_tests() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(verdict(&[], &v(&["f"]), false), None);
        assert_eq!(verdict(&[], &v(&["f"]), true).unwrap(), "1 flaky test (flaky_fails_build is set): f");
        let many = v(&["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(verdict(&many, &[], false).unwrap(), "7 tests failed: a, b, c, d, e and 2 more");
    }
}
