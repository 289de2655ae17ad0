//! Retention: which finished builds go, and which keep their build but lose their
//! artifacts, under a policy. A build is kept while it is among the newest
//! `keep_builds` finished builds of its branch and younger than `keep_days`
//! (each limit applies when set); its artifacts while younger than
//! `artifact_days`. A branch's newest passing build is never removed, nor are
//! builds still queued or running.

use std::collections::HashMap;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A retention policy; `None` = no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_builds: Option<u32>,
    pub keep_days: Option<u32>,
    pub artifact_days: Option<u32>,
}

impl Policy {
    /// This policy's limits, each falling back to `base`'s (the server-wide policy).
    pub fn over(self, base: Policy) -> Policy {
        Policy {
            keep_builds: self.keep_builds.or(base.keep_builds),
            keep_days: self.keep_days.or(base.keep_days),
            artifact_days: self.artifact_days.or(base.artifact_days),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// What retention needs to know of a build.
#[derive(Debug, Clone)]
pub struct BuildFacts {
    pub id: i64,
    pub branch: String,
    pub passed: bool,
    /// Finished (passed, failed, errored, cancelled, or skipped by its project's filters).
    pub finished: bool,
    /// It ran (not skipped by its project's filters): only such builds take places among the
    /// newest `keep_builds`.
    pub ran: bool,
    pub created_at: i64,
}

/// Why a build or its artifacts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The whole build: logs, artifacts, test results, its uploaded package.
    Build { id: i64, reason: String },
    /// Only the build's artifacts.
    Artifacts { id: i64, reason: String },
}

/// Decide, for one project's builds (any order), what goes at `now` (epoch ms).
pub fn plan(builds: &[BuildFacts], policy: Policy, now: i64) -> Vec<Removal> {
    let mut by_branch: HashMap<&str, Vec<&BuildFacts>> = HashMap::new();
    for b in builds {
        by_branch.entry(b.branch.as_str()).or_default().push(b);
    }
    let mut out = Vec::new();
    for list in by_branch.values_mut() {
        list.sort_by(|a, b| b.id.cmp(&a.id));
        let last_pass = list.iter().find(|b| b.passed).map(|b| b.id);
        // A skipped build takes no place among the newest `keep_builds` (a run of filtered pushes
        // must not push out the builds that ran); it goes once it is older than the oldest kept.
        let oldest_kept = policy.keep_builds.and_then(|n| list.iter().filter(|b| b.finished && b.ran).nth((n as usize).saturating_sub(1))).map(|b| b.id);
        let mut finished_seen = 0u32;
        for b in list.iter() {
            if !b.finished {
                continue;
            }
            let beyond = if b.ran {
                finished_seen += 1;
                policy.keep_builds.is_some_and(|n| finished_seen > n)
            } else {
                policy.keep_builds.is_some_and(|n| n == 0 || oldest_kept.is_some_and(|id| b.id < id))
            };
            let age_days = (now - b.created_at) / DAY_MS;
            let reason = match (policy.keep_builds, policy.keep_days) {
                (Some(n), _) if beyond => Some(format!("beyond the newest {n} builds of branch {}", b.branch)),
                (_, Some(d)) if now - b.created_at > d as i64 * DAY_MS => Some(format!("older than {d} days ({age_days} days)")),
                _ => None,
            };
            match reason {
                Some(_) if Some(b.id) == last_pass => {}
                Some(reason) => {
                    out.push(Removal::Build { id: b.id, reason });
                    continue;
                }
                None => {}
            }
            if let Some(d) = policy.artifact_days {
                if now - b.created_at > d as i64 * DAY_MS {
                    out.push(Removal::Artifacts { id: b.id, reason: format!("artifacts older than {d} days") });
                }
            }
        }
    }
    out.sort_by_key(|r| match r {
        Removal::Build { id, .. } | Removal::Artifacts { id, .. } => *id,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: i64, branch: &str, passed: bool, days_old: i64) -> BuildFacts {
        BuildFacts { id, branch: branch.into(), passed, finished: true, ran: true, created_at: 100 * DAY_MS - days_old * DAY_MS }
    }
    fn ids(r: &[Removal]) -> (Vec<i64>, Vec<i64>) {
        let mut builds = Vec::new();
        let mut arts = Vec::new();
        for x in r {
            match x {
                Removal::Build { id, .. } => builds.push(*id),
                Removal::Artifacts { id, .. } => arts.push(*id),
            }
        }
        (builds, arts)
    }
    const NOW: i64 = 100 * DAY_MS;

    #[test]
    fn keeps_the_newest_per_branch_and_the_last_passing_build() {
        // main: 1 passed, 2..5 failed; dev: 6, 7 passed.
        let list = vec![b(1, "main", true, 9), b(2, "main", false, 8), b(3, "main", false, 7), b(4, "main", false, 6), b(5, "main", false, 5), b(6, "dev", true, 4), b(7, "dev", true, 3)];
        let p = Policy { keep_builds: Some(2), ..Policy::default() };
        // main keeps 5, 4 and (its last passing build) 1; dev keeps both.
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![2, 3], vec![]));
        let p = Policy { keep_builds: Some(1), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![2, 3, 4, 6], vec![]));
    }

    #[test]
    fn days_and_artifacts() {
        let list = vec![b(1, "main", true, 30), b(2, "main", true, 20), b(3, "main", false, 10), b(4, "main", true, 1)];
        let p = Policy { keep_days: Some(15), artifact_days: Some(5), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![1, 2], vec![3]));
        // Both limits: a build goes when either says so.
        let p = Policy { keep_builds: Some(3), keep_days: Some(25), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![1], vec![]));
        // Nothing set: nothing goes.
        assert!(plan(&list, Policy::default(), NOW).is_empty());
    }

    #[test]
    fn a_skipped_build_takes_no_place_among_the_newest_and_goes_with_those_older_than_they() {
        let skipped = |id, days_old| BuildFacts { ran: false, ..b(id, "main", false, days_old) };
        // main: 1 passed, 2 failed, 3..=5 skipped by filters, 6 failed, 7 skipped.
        let list = vec![b(1, "main", true, 9), b(2, "main", false, 8), skipped(3, 7), skipped(4, 6), skipped(5, 5), b(6, "main", false, 4), skipped(7, 3)];
        // The two newest that ran (6 and 2) stay however many pushes were skipped since; the
        // skipped builds older than 2 would go (none), the rest stay; 1 is the last pass.
        let p = Policy { keep_builds: Some(2), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![], vec![]));
        // Keeping one: 2 goes, and the skipped builds older than 6 with it; 7 stays.
        let p = Policy { keep_builds: Some(1), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![2, 3, 4, 5], vec![]));
        // Keeping none: every finished build but the last pass; by age: skipped ones too.
        let p = Policy { keep_builds: Some(0), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![2, 3, 4, 5, 6, 7], vec![]));
        let p = Policy { keep_days: Some(6), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![2, 3], vec![]));
    }

    #[test]
    fn never_removes_unfinished_builds_or_the_only_pass() {
        let mut running = b(9, "main", false, 50);
        running.finished = false;
        let list = vec![b(1, "main", true, 40), b(2, "main", false, 30), running];
        let p = Policy { keep_builds: Some(0), keep_days: Some(1), ..Policy::default() };
        assert_eq!(ids(&plan(&list, p, NOW)), (vec![2], vec![]));
        // Project limits fall back to the server's, field by field.
        let server = Policy { keep_builds: Some(5), keep_days: Some(7), artifact_days: None };
        let project = Policy { keep_days: Some(30), ..Policy::default() };
        assert_eq!(project.over(server), Policy { keep_builds: Some(5), keep_days: Some(30), artifact_days: None });
    }
}
