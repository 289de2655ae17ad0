//! Notification rules: when a build's change is worth telling (`--notify-on`),
//! how long to wait before retrying a delivery, and how a build status reads on
//! a forge's commit-status API.

use std::time::Duration;

/// A value of `--notify-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    /// A build started running.
    Started,
    /// A build ended failed or errored.
    Failure,
    /// A build passed and the previous finished build on its branch did not.
    Fixed,
    /// A build passed.
    Success,
    /// Every finished build (cancelled ones too).
    Always,
}

/// When nothing is configured: failures, and the first pass after one.
pub const DEFAULT_NOTIFY_ON: [NotifyOn; 2] = [NotifyOn::Failure, NotifyOn::Fixed];

impl NotifyOn {
    pub const ALL: [NotifyOn; 5] = [NotifyOn::Started, NotifyOn::Failure, NotifyOn::Fixed, NotifyOn::Success, NotifyOn::Always];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Started => "started",
            NotifyOn::Failure => "failure",
            NotifyOn::Fixed => "fixed",
            NotifyOn::Success => "success",
            NotifyOn::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Result<NotifyOn, String> {
        let t = s.trim().to_ascii_lowercase();
        NotifyOn::ALL
            .into_iter()
            .find(|o| o.as_str() == t)
            .ok_or_else(|| format!("unknown notify-on value {s:?}: use failure, fixed, success, always or started"))
    }

    /// Parse a configured list; none configured means the default.
    pub fn parse_list(list: Option<&[String]>) -> Result<Vec<NotifyOn>, String> {
        match list {
            None => Ok(DEFAULT_NOTIFY_ON.to_vec()),
            Some(l) if l.iter().all(|s| s.trim().is_empty()) => Ok(DEFAULT_NOTIFY_ON.to_vec()),
            Some(l) => l.iter().filter(|s| !s.trim().is_empty()).map(|s| NotifyOn::parse(s)).collect(),
        }
    }
}

/// What happened to a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildEvent<'a> {
    Started,
    /// It ended with `status`; `previous` is the status of the newest earlier
    /// finished (not cancelled) build on the same branch.
    Finished { status: &'a str, previous: Option<&'a str> },
}

fn is_failure(status: &str) -> bool {
    matches!(status, "failed" | "errored")
}

/// Why `event` is worth telling under `on`, if it is: the most specific reason
/// (fixed before success before always; failure before always).
pub fn reason(on: &[NotifyOn], event: BuildEvent<'_>) -> Option<NotifyOn> {
    match event {
        BuildEvent::Started => on.contains(&NotifyOn::Started).then_some(NotifyOn::Started),
        BuildEvent::Finished { status, previous } => {
            let fixed = status == "passed" && previous.is_some_and(is_failure);
            let candidates = [
                (NotifyOn::Fixed, fixed),
                (NotifyOn::Failure, is_failure(status)),
                (NotifyOn::Success, status == "passed"),
                (NotifyOn::Always, true),
            ];
            candidates.into_iter().find(|(o, holds)| *holds && on.contains(o)).map(|(o, _)| o)
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones: 1 s, doubling, at most 10 min.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    Duration::from_secs((1u64 << exp).min(600))
}

/// A build status as GitHub's and Gitea's commit-status `state`.
pub fn commit_state(build_status: &str) -> &'static str {
    match build_status {
        "passed" => "success",
        "failed" => "failure",
        "queued" | "running" => "pending",
        _ => "error",
    }
}

/// `owner/name` from a forge repository URL: `https://github.com/o/n.git`,
/// `git@github.com:o/n.git`, `ssh://git@host/o/n`. None for a local path.
pub fn forge_repo_from_url(url: &str) -> Option<String> {
    let rest = if let Some((_, r)) = url.split_once("://") {
        r.split_once('/')?.1
    } else if let Some((host, r)) = url.split_once(':') {
        if !host.contains('@') && !host.contains('.') {
            return None;
        }
        r
    } else {
        return None;
    };
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = rest.rsplit('/');
    let name = parts.next().filter(|s| !s.is_empty())?;
    let owner = parts.next().filter(|s| !s.is_empty())?;
    Some(format!("{owner}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fin<'a>(status: &'a str, previous: Option<&'a str>) -> BuildEvent<'a> {
        BuildEvent::Finished { status, previous }
    }

    #[test]
    fn default_tells_failures_and_fixes_only() {
        let on = NotifyOn::parse_list(None).unwrap();
        assert_eq!(reason(&on, fin("failed", Some("passed"))), Some(NotifyOn::Failure));
        assert_eq!(reason(&on, fin("errored", None)), Some(NotifyOn::Failure));
        assert_eq!(reason(&on, fin("failed", Some("failed"))), Some(NotifyOn::Failure));
        assert_eq!(reason(&on, fin("passed", Some("failed"))), Some(NotifyOn::Fixed));
        assert_eq!(reason(&on, fin("passed", Some("errored"))), Some(NotifyOn::Fixed));
        assert_eq!(reason(&on, fin("passed", Some("passed"))), None);
        assert_eq!(reason(&on, fin("passed", None)), None);
        assert_eq!(reason(&on, fin("cancelled", Some("failed"))), None);
        assert_eq!(reason(&on, BuildEvent::Started), None);
    }

    #[test]
    fn always_success_and_started() {
        let on = NotifyOn::parse_list(Some(&["always".into()])).unwrap();
        assert_eq!(reason(&on, fin("cancelled", None)), Some(NotifyOn::Always));
        assert_eq!(reason(&on, fin("passed", Some("failed"))), Some(NotifyOn::Always));
        let on = NotifyOn::parse_list(Some(&["success".into(), "started".into()])).unwrap();
        assert_eq!(reason(&on, fin("passed", Some("failed"))), Some(NotifyOn::Success));
        assert_eq!(reason(&on, fin("failed", None)), None);
        assert_eq!(reason(&on, BuildEvent::Started), Some(NotifyOn::Started));
        let on = NotifyOn::parse_list(Some(&["fixed".into()])).unwrap();
        assert_eq!(reason(&on, fin("failed", None)), None);
        assert_eq!(reason(&on, fin("passed", Some("failed"))), Some(NotifyOn::Fixed));
    }

    #[test]
    fn bad_values_are_named() {
        let e = NotifyOn::parse_list(Some(&["failure".into(), "sometimes".into()])).unwrap_err();
        assert!(e.contains("\"sometimes\""), "{e}");
        assert_eq!(NotifyOn::parse(" Fixed ").unwrap(), NotifyOn::Fixed);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let waits: Vec<u64> = (1..=5).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert_eq!(backoff(0).as_secs(), 1);
        assert_eq!(backoff(30).as_secs(), 600);
        assert_eq!(backoff(u32::MAX).as_secs(), 600);
    }

    #[test]
    fn commit_states() {
        assert_eq!(commit_state("passed"), "success");
        assert_eq!(commit_state("failed"), "failure");
        assert_eq!(commit_state("errored"), "error");
        assert_eq!(commit_state("cancelled"), "error");
        assert_eq!(commit_state("running"), "pending");
    }

    #[test]
    fn repo_from_url() {
        assert_eq!(forge_repo_from_url("https://github.com/o/n.git").as_deref(), Some("o/n"));
        assert_eq!(forge_repo_from_url("https://gitea.example.com/o/n/").as_deref(), Some("o/n"));
        assert_eq!(forge_repo_from_url("git@github.com:o/n.git").as_deref(), Some("o/n"));
        assert_eq!(forge_repo_from_url("ssh://git@host:2222/o/n").as_deref(), Some("o/n"));
        assert_eq!(forge_repo_from_url("/srv/git/app"), None);
        assert_eq!(forge_repo_from_url("https://host/only"), None);
    }
}
