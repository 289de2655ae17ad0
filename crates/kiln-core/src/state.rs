//! Job, build and notification delivery states: the job state machine, a build's status
//! from its jobs, and which jobs the `needs` graph lets run next.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The state of one job (one pipeline job × matrix cell × shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Passed,
    Failed,
    /// Infrastructure or configuration trouble, not a test failure.
    Errored,
    Cancelled,
    /// Not run because a job it needs did not pass.
    Skipped,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Passed,
        JobStatus::Failed,
        JobStatus::Errored,
        JobStatus::Cancelled,
        JobStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Passed => "passed",
            JobStatus::Failed => "failed",
            JobStatus::Errored => "errored",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// Queued → Running | Cancelled | Skipped | Errored; Running → Passed | Failed | Errored |
    /// Cancelled | Queued (requeue after a lost lease); final states go nowhere.
    pub fn can_transition(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match self {
            Queued => matches!(to, Running | Cancelled | Skipped | Errored),
            Running => matches!(to, Passed | Failed | Errored | Cancelled | Queued),
            Passed | Failed | Errored | Cancelled | Skipped => false,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a build, derived from its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    Queued,
    Running,
    Passed,
    Failed,
    Errored,
    Cancelled,
    /// Not run at all: the change matched none of the project's filters, or its triggers were
    /// off (recorded with the reason, never derived from jobs).
    Skipped,
}

impl BuildStatus {
    pub const ALL: [BuildStatus; 7] = [
        BuildStatus::Queued,
        BuildStatus::Running,
        BuildStatus::Passed,
        BuildStatus::Failed,
        BuildStatus::Errored,
        BuildStatus::Cancelled,
        BuildStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Queued => "queued",
            BuildStatus::Running => "running",
            BuildStatus::Passed => "passed",
            BuildStatus::Failed => "failed",
            BuildStatus::Errored => "errored",
            BuildStatus::Cancelled => "cancelled",
            BuildStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, BuildStatus::Queued | BuildStatus::Running)
    }
}

impl std::fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one notification delivery stands (a row of the outbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting to be sent, or to be tried again.
    Pending,
    Sent,
    /// Given up on after its attempts.
    Failed,
    /// Replaced by a newer status before it could be sent (a commit status).
    Skipped,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [DeliveryStatus::Pending, DeliveryStatus::Sent, DeliveryStatus::Failed, DeliveryStatus::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Build status from its jobs: no jobs → Queued; some job not final → Running if any job is
/// running or final, else Queued; all final → Errored if any errored, else Failed if any
/// failed, else Cancelled if any cancelled, else Passed (skipped jobs alone do not fail a build).
pub fn derive_build_status(jobs: &[JobStatus]) -> BuildStatus {
    if jobs.is_empty() {
        return BuildStatus::Queued;
    }
    if jobs.iter().any(|j| !j.is_final()) {
        return if jobs.iter().any(|j| *j != JobStatus::Queued) {
            BuildStatus::Running
        } else {
            BuildStatus::Queued
        };
    }
    let any = |s: JobStatus| jobs.contains(&s);
    if any(JobStatus::Errored) {
        BuildStatus::Errored
    } else if any(JobStatus::Failed) {
        BuildStatus::Failed
    } else if any(JobStatus::Cancelled) {
        BuildStatus::Cancelled
    } else {
        BuildStatus::Passed
    }
}

/// Given the jobs of a build as (key, keys it needs, status): the queued jobs that may run now
/// (every need Passed; a job without needs is always ready) and the queued jobs that must be
/// Skipped because a need ended Failed, Errored, Cancelled or Skipped, or names no job of the
/// build. Skipping is carried through the graph: a job whose need is skipped here is skipped too.
/// Both lists keep the input order.
pub fn resolve_dependents(jobs: &[(String, Vec<String>, JobStatus)]) -> (Vec<String>, Vec<String>) {
    let mut status: HashMap<&str, JobStatus> =
        jobs.iter().map(|(k, _, s)| (k.as_str(), *s)).collect();
    let mut skip = Vec::new();
    loop {
        let mut changed = false;
        for (key, needs, _) in jobs {
            if status[key.as_str()] != JobStatus::Queued {
                continue;
            }
            let doomed = needs.iter().any(|n| match status.get(n.as_str()) {
                None => true,
                Some(s) => s.is_final() && *s != JobStatus::Passed,
            });
            if doomed {
                status.insert(key, JobStatus::Skipped);
                skip.push(key.clone());
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let ready = jobs
        .iter()
        .filter(|(key, needs, _)| {
            status[key.as_str()] == JobStatus::Queued
                && needs
                    .iter()
                    .all(|n| status.get(n.as_str()) == Some(&JobStatus::Passed))
        })
        .map(|(key, _, _)| key.clone())
        .collect();
    let order: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, (k, _, _))| (k.as_str(), i))
        .collect();
    skip.sort_by_key(|k| order[k.as_str()]);
    (ready, skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in BuildStatus::ALL {
            assert_eq!(BuildStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("Passed"), None);
        assert_eq!(BuildStatus::parse("skipped"), Some(BuildStatus::Skipped));
        assert!(BuildStatus::Skipped.is_final());
        assert_eq!(BuildStatus::parse("none"), None);
        assert_eq!(Cancelled.as_str(), "cancelled");
    }

    #[test]
    fn finality() {
        let finals: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [Passed, Failed, Errored, Cancelled, Skipped]);
        assert!(!BuildStatus::Running.is_final() && BuildStatus::Failed.is_final());
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        let allowed = [
            (Queued, Running),
            (Queued, Cancelled),
            (Queued, Skipped),
            (Queued, Errored),
            (Running, Passed),
            (Running, Failed),
            (Running, Errored),
            (Running, Cancelled),
            (Running, Queued),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    from.can_transition(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn build_status_from_jobs() {
        let cases: &[(&[JobStatus], BuildStatus)] = &[
            (&[], BuildStatus::Queued),
            (&[Queued, Queued], BuildStatus::Queued),
            (&[Queued, Running], BuildStatus::Running),
            (&[Queued, Passed], BuildStatus::Running),
            (&[Failed, Queued], BuildStatus::Running),
            (&[Passed, Passed], BuildStatus::Passed),
            (&[Passed, Skipped], BuildStatus::Passed),
            (&[Skipped], BuildStatus::Passed),
            (&[Passed, Failed, Skipped], BuildStatus::Failed),
            (&[Failed, Errored], BuildStatus::Errored),
            (&[Cancelled, Failed], BuildStatus::Failed),
            (&[Cancelled, Passed, Skipped], BuildStatus::Cancelled),
        ];
        for (jobs, want) in cases {
            assert_eq!(derive_build_status(jobs), *want, "{jobs:?}");
        }
    }

    fn jobs(spec: &[(&str, &[&str], JobStatus)]) -> Vec<(String, Vec<String>, JobStatus)> {
        spec.iter()
            .map(|(k, n, s)| (k.to_string(), n.iter().map(|x| x.to_string()).collect(), *s))
            .collect()
    }

    #[test]
    fn dependents_become_ready_or_skipped() {
        type Case<'a> = (
            &'a [(&'a str, &'a [&'a str], JobStatus)],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (&[("a", &[], Queued)], &["a"], &[]),
            (&[("a", &[], Running), ("b", &["a"], Queued)], &[], &[]),
            (&[("a", &[], Passed), ("b", &["a"], Queued)], &["b"], &[]),
            (&[("a", &[], Failed), ("b", &["a"], Queued)], &[], &["b"]),
            (&[("a", &[], Cancelled), ("b", &["a"], Queued)], &[], &["b"]),
            (
                &[
                    ("a1", &[], Passed),
                    ("a2", &[], Running),
                    ("b", &["a1", "a2"], Queued),
                ],
                &[],
                &[],
            ),
            (
                &[
                    ("c", &["b"], Queued),
                    ("a", &[], Errored),
                    ("b", &["a"], Queued),
                    ("d", &[], Queued),
                ],
                &["d"],
                &["c", "b"],
            ),
            (&[("a", &[], Passed), ("b", &["a"], Running)], &[], &[]),
            (&[("b", &["ghost"], Queued)], &[], &["b"]),
        ];
        for (spec, ready, skip) in cases {
            let (r, s) = resolve_dependents(&jobs(spec));
            assert_eq!(r, *ready, "ready for {spec:?}");
            assert_eq!(s, *skip, "skip for {spec:?}");
        }
    }
}
