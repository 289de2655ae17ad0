//! Push events as each forge sends them (GitHub, Gitea, GitLab, kiln's generic
//! JSON), read into one `Push`. Pure: no I/O.

use serde_json::Value;

/// What a push event says, whatever forge sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub branch: String,
    pub after: String,
    pub before: Option<String>,
    /// Paths added, modified or removed by the pushed commits, when the event lists them.
    pub changed_paths: Option<Vec<String>>,
    /// Who pushed (forge login), for the build's `triggered_by`.
    pub pusher: Option<String>,
}

/// How an event is to be handled.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Push(Push),
    /// A branch deletion, a tag, a ping or another event: answered 200, builds nothing.
    Ignore(String),
}

fn is_zero(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|c| c == b'0')
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
}

fn changed(v: &Value) -> Option<Vec<String>> {
    let commits = v.get("commits")?.as_array()?;
    let mut out: Vec<String> = Vec::new();
    for c in commits {
        for key in ["added", "modified", "removed"] {
            for p in c.get(key).and_then(Value::as_array).into_iter().flatten() {
                if let Some(p) = p.as_str() {
                    if !out.iter().any(|x| x == p) {
                        out.push(p.to_string());
                    }
                }
            }
        }
    }
    // GitHub caps the list at 20 commits; a truncated list must not hide paths.
    (!commits.is_empty() && commits.len() < 20).then_some(out)
}

/// A push event in GitHub's (and Gitea's) shape: `ref`, `before`, `after`, `deleted`, `commits`.
fn github_like(v: &Value, pusher: Option<String>) -> Result<Event, String> {
    let r = s(v, &["ref"]).ok_or("push event without `ref`")?;
    let after = s(v, &["after"]).ok_or("push event without `after`")?;
    if v.get("deleted").and_then(Value::as_bool) == Some(true) || is_zero(&after) {
        return Ok(Event::Ignore(format!("{r} was deleted: nothing to build")));
    }
    let Some(branch) = r.strip_prefix("refs/heads/").filter(|b| !b.is_empty()) else {
        return Ok(Event::Ignore(format!("{r} is not a branch: nothing to build")));
    };
    Ok(Event::Push(Push { branch: branch.to_string(), after, before: s(v, &["before"]), changed_paths: changed(v), pusher }))
}

/// GitHub: `X-GitHub-Event: push` (or `ping`).
pub fn github(event: &str, body: &[u8]) -> Result<Event, String> {
    match event {
        "ping" => Ok(Event::Ignore("pong".into())),
        "push" => {
            let v: Value = serde_json::from_slice(body).map_err(|e| format!("push event is not JSON: {e}"))?;
            let pusher = s(&v, &["pusher", "name"]).or_else(|| s(&v, &["sender", "login"]));
            github_like(&v, pusher)
        }
        other => Ok(Event::Ignore(format!("{other} events build nothing"))),
    }
}

/// Gitea (and Forgejo): `X-Gitea-Event: push`.
pub fn gitea(event: &str, body: &[u8]) -> Result<Event, String> {
    match event {
        "push" => {
            let v: Value = serde_json::from_slice(body).map_err(|e| format!("push event is not JSON: {e}"))?;
            let pusher = s(&v, &["pusher", "login"]).or_else(|| s(&v, &["pusher", "username"])).or_else(|| s(&v, &["sender", "login"]));
            github_like(&v, pusher)
        }
        other => Ok(Event::Ignore(format!("{other} events build nothing"))),
    }
}

/// GitLab: `X-Gitlab-Event: Push Hook`, `object_kind: push`.
pub fn gitlab(event: &str, body: &[u8]) -> Result<Event, String> {
    if event != "Push Hook" {
        return Ok(Event::Ignore(format!("{event} events build nothing")));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("push event is not JSON: {e}"))?;
    let r = s(&v, &["ref"]).ok_or("push event without `ref`")?;
    let after = s(&v, &["after"]).or_else(|| s(&v, &["checkout_sha"])).ok_or("push event without `after`")?;
    if is_zero(&after) {
        return Ok(Event::Ignore(format!("{r} was deleted: nothing to build")));
    }
    let Some(branch) = r.strip_prefix("refs/heads/").filter(|b| !b.is_empty()) else {
        return Ok(Event::Ignore(format!("{r} is not a branch: nothing to build")));
    };
    Ok(Event::Push(Push {
        branch: branch.to_string(),
        after,
        before: s(&v, &["before"]),
        changed_paths: changed(&v),
        pusher: s(&v, &["user_username"]),
    }))
}

/// kiln's generic hook: `{"branch": "main", "commit": "<sha>"}` (commit optional: the branch head).
pub fn generic(body: &[u8]) -> Result<Event, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let branch = s(&v, &["branch"]).filter(|b| !b.is_empty()).ok_or("generic hook body needs {\"branch\": …, \"commit\": …}")?;
    let after = s(&v, &["commit"]).unwrap_or_default();
    Ok(Event::Push(Push { branch, after, before: s(&v, &["before"]), changed_paths: None, pusher: s(&v, &["sender"]) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

    fn github_push(r: &str, after: &str, deleted: bool) -> Vec<u8> {
        serde_json::json!({
            "ref": r, "before": "0000000000000000000000000000000000000000", "after": after,
            "created": true, "deleted": deleted, "forced": false, "base_ref": null, "compare": "https://github.com/o/r/compare/x",
            "commits": [{"id": after, "message": "fix", "author": {"name": "Ada", "email": "a@x"},
                         "added": ["src/new.rs"], "removed": [], "modified": ["README.md", "src/new.rs"]}],
            "head_commit": {"id": after, "message": "fix"},
            "repository": {"id": 1, "name": "r", "full_name": "o/r", "clone_url": "https://github.com/o/r.git"},
            "pusher": {"name": "ada", "email": "a@x"}, "sender": {"login": "ada", "id": 1}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn github_push_to_a_branch() {
        let e = github("push", &github_push("refs/heads/release/1.0", SHA, false)).unwrap();
        let Event::Push(p) = e else { panic!("{e:?}") };
        assert_eq!(p.branch, "release/1.0");
        assert_eq!(p.after, SHA);
        assert_eq!(p.changed_paths.unwrap(), vec!["src/new.rs", "README.md"]);
        assert_eq!(p.pusher.as_deref(), Some("ada"));
    }

    #[test]
    fn github_ignores_deletions_tags_and_pings() {
        assert!(matches!(github("push", &github_push("refs/heads/x", "0000000000000000000000000000000000000000", true)).unwrap(), Event::Ignore(m) if m.contains("deleted")));
        assert!(matches!(github("push", &github_push("refs/tags/v1", SHA, false)).unwrap(), Event::Ignore(m) if m.contains("not a branch")));
        // Found by fuzz/run.sh: `refs/heads/` alone names no branch (GitLab's parser too).
        assert!(matches!(github("push", &github_push("refs/heads/", SHA, false)).unwrap(), Event::Ignore(m) if m.contains("not a branch")));
        let gl = serde_json::json!({"object_kind": "push", "ref": "refs/heads/", "before": SHA, "after": SHA}).to_string();
        assert!(matches!(gitlab("Push Hook", gl.as_bytes()).unwrap(), Event::Ignore(m) if m.contains("not a branch")));
        assert!(matches!(github("ping", b"{\"zen\":\"x\"}").unwrap(), Event::Ignore(_)));
        assert!(matches!(github("issues", b"{}").unwrap(), Event::Ignore(_)));
        assert!(github("push", b"not json").is_err());
    }

    #[test]
    fn gitea_push() {
        let body = serde_json::json!({
            "ref": "refs/heads/main", "before": "a".repeat(40), "after": SHA, "compare_url": "",
            "commits": [{"id": SHA, "message": "m", "added": [], "removed": ["old.txt"], "modified": []}],
            "repository": {"full_name": "o/r"}, "pusher": {"login": "gitea-user", "username": "gitea-user"}, "sender": {"login": "gitea-user"}
        });
        let Event::Push(p) = gitea("push", body.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!((p.branch.as_str(), p.pusher.as_deref()), ("main", Some("gitea-user")));
        assert_eq!(p.changed_paths.unwrap(), vec!["old.txt"]);
        assert_eq!(p.before.unwrap(), "a".repeat(40));
    }

    #[test]
    fn gitlab_push_and_deletion() {
        let body = serde_json::json!({
            "object_kind": "push", "event_name": "push", "before": "b".repeat(40), "after": SHA, "ref": "refs/heads/dev",
            "checkout_sha": SHA, "user_username": "lab", "project": {"path_with_namespace": "o/r"},
            "commits": [{"id": SHA, "added": ["a"], "modified": [], "removed": []}], "total_commits_count": 1
        });
        let Event::Push(p) = gitlab("Push Hook", body.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!((p.branch.as_str(), p.pusher.as_deref()), ("dev", Some("lab")));
        let del = serde_json::json!({"object_kind": "push", "before": SHA, "after": "0".repeat(40), "ref": "refs/heads/dev", "checkout_sha": null});
        assert!(matches!(gitlab("Push Hook", del.to_string().as_bytes()).unwrap(), Event::Ignore(_)));
        assert!(matches!(gitlab("Tag Push Hook", b"{}").unwrap(), Event::Ignore(_)));
    }

    #[test]
    fn generic_body() {
        assert!(generic(br#"{"branch":"","commit":"abc123"}"#).is_err(), "an empty branch is no branch");
        let Event::Push(p) = generic(br#"{"branch":"main","commit":"abc123"}"#).unwrap() else { panic!() };
        assert_eq!((p.branch.as_str(), p.after.as_str()), ("main", "abc123"));
        assert!(generic(br#"{"commit":"abc"}"#).is_err());
    }
}
