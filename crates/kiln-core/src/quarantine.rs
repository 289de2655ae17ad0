//! Quarantine of flaky tests: when a test's recent runs make it flaky enough to quarantine,
//! and when enough clean runs in a row release it. A quarantined test still runs and is
//! reported; its failure does not fail its job. Pure rules: the store keeps the runs and the
//! changes, the server decides with these.
//!
//! ```text
//!  runs (newest first) ─► flaky ÷ runs over the last `window` ≥ `flaky_rate`
//!                         (and at least `min_runs` runs)          ─► quarantined
//!  quarantined ─► the last `release_after` runs since all clean   ─► released
//! ```

/// A change of a test's quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Quarantined,
    Released,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Quarantined => "quarantined",
            Change::Released => "released",
        }
    }
    pub fn parse(s: &str) -> Option<Change> {
        match s {
            "quarantined" => Some(Change::Quarantined),
            "released" => Some(Change::Released),
            _ => None,
        }
    }
}

/// Who made a change: the rules, or a maintainer by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Auto,
    Manual,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Auto => "auto",
            Cause::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Cause> {
        match s {
            "auto" => Some(Cause::Auto),
            "manual" => Some(Cause::Manual),
            _ => None,
        }
    }
}

/// How one test came out in one build (its final try; a skipped test is no run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Passed on its first try.
    Clean,
    /// Failed, then passed on a retry.
    Flaky,
    /// Its final try failed or errored.
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Clean => "clean",
            RunOutcome::Flaky => "flaky",
            RunOutcome::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<RunOutcome> {
        match s {
            "clean" => Some(RunOutcome::Clean),
            "flaky" => Some(RunOutcome::Flaky),
            "failed" => Some(RunOutcome::Failed),
            _ => None,
        }
    }
}

/// One run of a test: the build and job it ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub build_id: i64,
    pub job_id: i64,
    pub outcome: RunOutcome,
}

/// The rules (`[quarantine]` in kiln.toml, `--quarantine-*` flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Quarantine when flaky runs ÷ runs over the window reach this (0 < rate ≤ 1).
    pub flaky_rate: f64,
    /// How many of a test's most recent runs the rate is taken over.
    pub window: usize,
    /// No automatic quarantine before a test has this many runs in the window.
    pub min_runs: usize,
    /// Release after this many clean runs in a row since the quarantine.
    pub release_after: usize,
}

/// The most recent runs kept per test (the largest window).
pub const MAX_WINDOW: usize = 100;

impl Default for Rules {
    fn default() -> Self {
        Rules { flaky_rate: 0.2, window: 20, min_runs: 5, release_after: 10 }
    }
}

impl Rules {
    /// The rules are usable: a clear message naming the setting otherwise.
    pub fn check(&self) -> Result<(), String> {
        if !(self.flaky_rate > 0.0 && self.flaky_rate <= 1.0) {
            return Err(format!("quarantine flaky_rate {} must be above 0 and at most 1 (e.g. 0.2 for 20 %)", self.flaky_rate));
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(format!("quarantine window {} must be 1 to {MAX_WINDOW} runs", self.window));
        }
        if self.min_runs == 0 || self.min_runs > self.window {
            return Err(format!("quarantine min_runs {} must be 1 to the window ({})", self.min_runs, self.window));
        }
        if self.release_after == 0 {
            return Err("quarantine release_after must be at least 1 clean run".into());
        }
        Ok(())
    }

    /// Whether a test not quarantined should be, from its runs (newest first): the evidence
    /// (its flaky runs in the window, newest first) and why, or None.
    pub fn quarantine(&self, runs: &[Run]) -> Option<(Vec<Run>, String)> {
        let window = &runs[..runs.len().min(self.window)];
        if window.len() < self.min_runs {
            return None;
        }
        let flaky: Vec<Run> = window.iter().filter(|r| r.outcome == RunOutcome::Flaky).copied().collect();
        let rate = flaky.len() as f64 / window.len() as f64;
        (!flaky.is_empty() && rate >= self.flaky_rate).then(|| {
            let why = format!(
                "flaky in {} of its last {} runs ({:.0} % ≥ {:.0} %)",
                flaky.len(),
                window.len(),
                rate * 100.0,
                self.flaky_rate * 100.0
            );
            (flaky, why)
        })
    }

    /// Whether a quarantined test is released, from its runs since the quarantine (newest
    /// first): the evidence (the clean runs in a row) and why, or None.
    pub fn release(&self, since: &[Run]) -> Option<(Vec<Run>, String)> {
        let streak: Vec<Run> = since.iter().take_while(|r| r.outcome == RunOutcome::Clean).take(self.release_after).copied().collect();
        (streak.len() >= self.release_after).then(|| {
            let n = streak.len();
            (streak, format!("{n} clean run{} in a row", if n == 1 { "" } else { "s" }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(s: &str) -> Vec<Run> {
        s.chars()
            .enumerate()
            .map(|(i, c)| Run {
                build_id: 100 - i as i64,
                job_id: 1000 - i as i64,
                outcome: match c {
                    'c' => RunOutcome::Clean,
                    'f' => RunOutcome::Flaky,
                    _ => RunOutcome::Failed,
                },
            })
            .collect()
    }

    #[test]
    fn quarantines_at_the_rate_over_the_window_only() {
        let r = Rules { flaky_rate: 0.25, window: 8, min_runs: 4, release_after: 3 };
        // 2 flaky of the last 8: 25 %.
        let (ev, why) = r.quarantine(&runs("cfcccfccffff")).unwrap();
        assert_eq!(ev.iter().map(|r| r.build_id).collect::<Vec<_>>(), vec![99, 95]);
        assert!(why.contains("2 of its last 8"), "{why}");
        // 1 of the last 8: below; the older flaky runs are outside the window.
        assert!(r.quarantine(&runs("cfccccccffff")).is_none());
        // Failures are not flakiness.
        assert!(r.quarantine(&runs("xxxxxxxx")).is_none());
    }

    #[test]
    fn needs_min_runs() {
        let r = Rules { flaky_rate: 0.2, window: 20, min_runs: 3, release_after: 3 };
        assert!(r.quarantine(&runs("ff")).is_none());
        assert!(r.quarantine(&runs("ffc")).is_some());
    }

    #[test]
    fn releases_after_clean_runs_in_a_row() {
        let r = Rules { release_after: 3, ..Rules::default() };
        assert!(r.release(&runs("cc")).is_none());
        assert!(r.release(&runs("ccfcc")).is_none());
        assert!(r.release(&runs("ccxccc")).is_none());
        let (ev, why) = r.release(&runs("cccf")).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(why, "3 clean runs in a row");
    }

    #[test]
    fn bad_rules_name_the_setting() {
        for (r, word) in [
            (Rules { flaky_rate: 0.0, ..Rules::default() }, "flaky_rate"),
            (Rules { flaky_rate: 1.5, ..Rules::default() }, "flaky_rate"),
            (Rules { window: 0, ..Rules::default() }, "window"),
            (Rules { window: 101, ..Rules::default() }, "window"),
            (Rules { min_runs: 21, ..Rules::default() }, "min_runs"),
            (Rules { release_after: 0, ..Rules::default() }, "release_after"),
        ] {
            assert!(r.check().unwrap_err().contains(word), "{r:?}");
        }
        assert!(Rules::default().check().is_ok());
    }

    #[test]
    fn names_round_trip() {
        for c in [Change::Quarantined, Change::Released] {
            assert_eq!(Change::parse(c.as_str()), Some(c));
        }
        for c in [Cause::Auto, Cause::Manual] {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
        }
        for o in [RunOutcome::Clean, RunOutcome::Flaky, RunOutcome::Failed] {
            assert_eq!(RunOutcome::parse(o.as_str()), Some(o));
        }
    }
}
