//! "Why is it waiting?": the one place that decides why a queued job has not started, from
//! facts the server gathers (the job's needs and labels, the fleet as it is now).

use crate::labels::{label_set, matches, missing};
use std::collections::BTreeMap;
use std::fmt;

/// An agent as "why waiting" sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub online: bool,
    pub draining: bool,
    pub concurrency: i64,
    /// The jobs it runs now that the asker may see.
    pub running: Vec<i64>,
    /// How many more jobs it runs, of projects the asker may not see.
    pub hidden: usize,
}

/// A queued job as "why waiting" sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub requires: BTreeMap<String, String>,
    /// Its needs are met (it may be claimed).
    pub ready: bool,
    /// The jobs it needs that have not passed yet, with their status.
    pub pending_needs: Vec<(String, crate::state::JobStatus)>,
}

/// An agent close to a job's labels: what it has and what it lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closest {
    pub agent: String,
    pub labels: String,
    pub missing: Vec<String>,
}

/// Why a queued job has not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// The build's pipeline has not been read yet (no jobs exist).
    NotExpanded,
    /// Jobs it needs have not passed.
    Needs(Vec<(String, crate::state::JobStatus)>),
    /// No online agent has the labels it requires (`requires` spelled `k=v,…`; the closest
    /// online agents, fewest missing labels first, at most three).
    NoAgent { requires: String, closest: Vec<Closest> },
    /// Every online agent that matches is draining.
    Draining(Vec<String>),
    /// Every matching agent runs as many jobs as it may (agent, its jobs the asker may see,
    /// how many others).
    Busy(Vec<(String, Vec<i64>, usize)>),
    /// A matching agent has room: it takes the job at its next claim (jobs queued earlier go first).
    NextClaim(Vec<String>),
}

impl Waiting {
    /// A short name for the reason, as the API spells it.
    pub fn code(&self) -> &'static str {
        match self {
            Waiting::NotExpanded => "not_expanded",
            Waiting::Needs(_) => "needs",
            Waiting::NoAgent { .. } => "no_agent",
            Waiting::Draining(_) => "draining",
            Waiting::Busy(_) => "busy",
            Waiting::NextClaim(_) => "next_claim",
        }
    }

    /// The agents the reason names.
    pub fn agents(&self) -> Vec<String> {
        match self {
            Waiting::NoAgent { closest, .. } => closest.iter().map(|c| c.agent.clone()).collect(),
            Waiting::Draining(a) | Waiting::NextClaim(a) => a.clone(),
            Waiting::Busy(b) => b.iter().map(|(a, _, _)| a.clone()).collect(),
            Waiting::NotExpanded | Waiting::Needs(_) => Vec::new(),
        }
    }
}

/// Why this job waits, given every agent the server knows (online or not).
pub fn why(job: &JobFacts, agents: &[AgentFacts]) -> Waiting {
    if !job.ready {
        return Waiting::Needs(job.pending_needs.clone());
    }
    let online: Vec<&AgentFacts> = agents.iter().filter(|a| a.online).collect();
    let matching: Vec<&AgentFacts> = online.iter().copied().filter(|a| matches(&job.requires, &a.labels)).collect();
    if matching.is_empty() {
        let mut closest: Vec<Closest> = online
            .iter()
            .map(|a| Closest { agent: a.name.clone(), labels: label_set(&a.labels), missing: missing(&job.requires, &a.labels) })
            .collect();
        closest.sort_by(|a, b| a.missing.len().cmp(&b.missing.len()).then_with(|| a.agent.cmp(&b.agent)));
        closest.truncate(3);
        return Waiting::NoAgent { requires: label_set(&job.requires), closest };
    }
    let serving: Vec<&AgentFacts> = matching.iter().copied().filter(|a| !a.draining).collect();
    if serving.is_empty() {
        return Waiting::Draining(matching.iter().map(|a| a.name.clone()).collect());
    }
    let free: Vec<String> = serving.iter().filter(|a| ((a.running.len() + a.hidden) as i64) < a.concurrency.max(1)).map(|a| a.name.clone()).collect();
    if free.is_empty() {
        return Waiting::Busy(serving.iter().map(|a| (a.name.clone(), a.running.clone(), a.hidden)).collect());
    }
    Waiting::NextClaim(free)
}

fn names(list: &[String]) -> String {
    list.join(", ")
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::NotExpanded => write!(f, "its build's pipeline has not been read yet"),
            Waiting::Needs(pending) => {
                let list: Vec<String> = pending.iter().map(|(k, s)| format!("{k} ({s})")).collect();
                write!(f, "waiting for {} to pass", if list.is_empty() { "the jobs it needs".into() } else { list.join(", ") })
            }
            Waiting::NoAgent { requires, closest } => {
                let wanted = if requires.is_empty() { "any labels".to_string() } else { requires.clone() };
                if closest.is_empty() {
                    return write!(f, "no agent is online (it needs {wanted})");
                }
                let near: Vec<String> = closest
                    .iter()
                    .map(|c| format!("{} has {} but lacks {}", c.agent, if c.labels.is_empty() { "no labels" } else { &c.labels }, c.missing.join(", ")))
                    .collect();
                write!(f, "no online agent has {wanted}; closest: {}", near.join("; "))
            }
            Waiting::Draining(a) => write!(f, "the agents that match are draining: {}", names(a)),
            Waiting::Busy(b) => {
                let list: Vec<String> = b
                    .iter()
                    .map(|(a, jobs, hidden)| {
                        let mut what: Vec<String> = jobs.iter().map(|j| format!("#{j}")).collect();
                        if *hidden > 0 {
                            what.push(format!("{hidden} not shown"));
                        }
                        format!("{a} (job{} {})", if jobs.len() + hidden == 1 { "" } else { "s" }, what.join(", "))
                    })
                    .collect();
                write!(f, "{} matching agent{} busy: {}", b.len(), if b.len() == 1 { " is" } else { "s are" }, list.join(", "))
            }
            Waiting::NextClaim(a) => write!(f, "{} has room and takes it at its next claim, after jobs queued before it", names(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> BTreeMap<String, String> {
        s.split(',').filter(|p| !p.is_empty()).map(|p| p.split_once('=').map(|(k, v)| (k.into(), v.into())).unwrap()).collect()
    }

    fn agent(name: &str, l: &str, online: bool, draining: bool, concurrency: i64, running: &[i64]) -> AgentFacts {
        AgentFacts { name: name.into(), labels: labels(l), online, draining, concurrency, running: running.to_vec(), hidden: 0 }
    }

    fn ready(requires: &str) -> JobFacts {
        JobFacts { requires: labels(requires), ready: true, pending_needs: Vec::new() }
    }

    #[test]
    fn every_reason() {
        let fleet = [
            agent("a", "os=linux,python=3.11", true, false, 1, &[7]),
            agent("b", "os=linux", true, false, 2, &[8, 9]),
            agent("c", "os=linux,python=3.12", false, false, 1, &[]),
            agent("d", "gpu=yes", true, true, 1, &[]),
        ];
        // Needs.
        let blocked = JobFacts { requires: BTreeMap::new(), ready: false, pending_needs: vec![("build".into(), crate::state::JobStatus::Running)] };
        let w = why(&blocked, &fleet);
        assert_eq!(w, Waiting::Needs(vec![("build".into(), crate::state::JobStatus::Running)]));
        assert_eq!(w.to_string(), "waiting for build (running) to pass");
        // No online agent has the labels (c has them but is offline); the closest first.
        let w = why(&ready("python=3.12"), &fleet);
        let Waiting::NoAgent { requires, closest } = &w else { panic!("{w:?}") };
        assert_eq!(requires, "python=3.12");
        assert_eq!(closest.iter().map(|c| c.agent.as_str()).collect::<Vec<_>>(), ["a", "b", "d"]);
        assert_eq!(closest[0].missing, ["python=3.12"]);
        assert!(w.to_string().starts_with("no online agent has python=3.12; closest: a has os=linux,python=3.11 but lacks python=3.12"), "{w}");
        // Matching agents all draining.
        let w = why(&ready("gpu=yes"), &fleet);
        assert_eq!(w, Waiting::Draining(vec!["d".into()]));
        // Matching agents all busy, with their jobs.
        let w = why(&ready("os=linux"), &fleet);
        assert_eq!(w, Waiting::Busy(vec![("a".into(), vec![7], 0), ("b".into(), vec![8, 9], 0)]));
        assert_eq!(w.to_string(), "2 matching agents are busy: a (job #7), b (jobs #8, #9)");
        // Jobs of projects the asker may not see are counted, never named.
        let mut private = fleet.clone();
        private[1].running = vec![8];
        private[1].hidden = 1;
        assert_eq!(why(&ready("os=linux"), &private).to_string(), "2 matching agents are busy: a (job #7), b (jobs #8, 1 not shown)");
        // One has room: it is next.
        let mut roomy = fleet.clone();
        roomy[1].concurrency = 3;
        assert_eq!(why(&ready("os=linux"), &roomy), Waiting::NextClaim(vec!["b".into()]));
        // Nobody online at all.
        let w = why(&ready(""), &fleet[2..3]);
        assert_eq!(w.to_string(), "no agent is online (it needs any labels)");
        assert_eq!(w.code(), "no_agent");
        assert_eq!(Waiting::NotExpanded.code(), "not_expanded");
    }
}
