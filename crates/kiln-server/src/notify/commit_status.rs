//! Commit status back to the forge: pending when a build starts, then success,
//! failure or error, with a link to the build. GitHub and Gitea share the shape:
//! `POST {api}/repos/{owner}/{repo}/statuses/{sha}` with
//! `{"state", "target_url", "description", "context"}`.

use super::notice::{duration_text, status_words};
use super::SendError;
use crate::config::ProjectConfig;
use kiln_store::ProjectRow;
use kiln_wire::notify::{BuildNotice, CommitStatusSettings};

pub const GITHUB_API: &str = "https://api.github.com";

/// The `[[project]]` keys as settings (None when none is given).
pub fn from_project_config(pc: &ProjectConfig) -> Option<CommitStatusSettings> {
    let cs = CommitStatusSettings {
        forge: pc.commit_status.clone(),
        url: pc.forge_url.clone(),
        repo: pc.forge_repo.clone(),
        token_secret: pc.forge_token_secret.clone(),
        context: pc.status_context.clone(),
    };
    (cs != CommitStatusSettings::default()).then_some(cs)
}

pub fn validate(cs: &CommitStatusSettings) -> Result<(), String> {
    if let Some(f) = &cs.forge {
        if !matches!(f.as_str(), "github" | "gitea" | "off") {
            return Err(format!("invalid --commit-status {f:?}: use github, gitea or off"));
        }
    }
    if let Some(u) = &cs.url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!("invalid --forge-url {u:?}: give the forge's API base, like https://api.github.com or https://gitea.example.com/api/v1"));
        }
    }
    if let Some(r) = &cs.repo {
        let parts: Vec<&str> = r.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!("invalid --forge-repo {r:?}: write OWNER/NAME"));
        }
    }
    Ok(())
}

/// `host[:port]` of a URL or an scp-like git address (`git@host:o/n`), lower-cased.
fn host_of(url: &str) -> Option<String> {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest,
        None => url.split_once(':').filter(|(h, _)| h.contains('@')).map(|(h, _)| h)?,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Where commit status may go for a project: GitHub's API, the repository's own host, and the
/// hosts an admin listed (`--forge-host`).
pub fn allowed_forge_hosts(cfg: &crate::config::ServerConfig, repo: &str) -> Vec<String> {
    let mut hosts = vec!["api.github.com".to_string()];
    hosts.extend(host_of(repo));
    hosts.extend(cfg.forge_hosts.iter().map(|h| h.to_ascii_lowercase()));
    hosts
}

/// Whether commit status for a project of `repo` may be sent to `url` (host, or host:port, listed).
pub fn forge_host_allowed(cfg: &crate::config::ServerConfig, repo: &str, url: &str) -> bool {
    let Some(host) = host_of(url) else { return false };
    let bare = host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_else(|| host.clone());
    allowed_forge_hosts(cfg, repo).iter().any(|a| *a == host || *a == bare)
}

/// The forge kind of a project with commit status on.
fn forge(p: &ProjectRow) -> Option<&str> {
    let f = p.settings.commit_status.as_ref()?.forge.as_deref()?;
    (f == "github" || f == "gitea").then_some(f)
}

/// `github:owner/name` when commit status is on (the name may be empty: delivery then says what to set).
pub fn target(p: &ProjectRow) -> Option<String> {
    let f = forge(p)?;
    let cs = p.settings.commit_status.as_ref()?;
    let repo = cs.repo.clone().or_else(|| kiln_core::notify::forge_repo_from_url(&p.repo)).unwrap_or_default();
    Some(format!("{f}:{repo}"))
}

/// The API base: configured, GitHub's, or for Gitea the repository's host + `/api/v1`.
fn api_base(kind: &str, cs: &CommitStatusSettings, repo_url: &str) -> Option<String> {
    if let Some(u) = &cs.url {
        return Some(u.trim_end_matches('/').to_string());
    }
    match kind {
        "github" => Some(GITHUB_API.into()),
        _ => {
            let (scheme, rest) = repo_url.split_once("://")?;
            if scheme != "http" && scheme != "https" {
                return None;
            }
            let host = rest.split('/').next()?.rsplit('@').next()?;
            Some(format!("{scheme}://{host}/api/v1"))
        }
    }
}

/// The description next to the mark (forges keep 140 characters).
pub fn description(n: &BuildNotice) -> String {
    let mut s = format!("build #{} {}", n.build.id, if n.build.status == "running" { "is running".into() } else { status_words(n) });
    if let Some(d) = duration_text(n).filter(|_| n.build.status != "running") {
        s.push_str(&format!(" in {d}"));
    }
    s.chars().take(140).collect()
}

/// The JSON body GitHub and Gitea take.
pub fn body(n: &BuildNotice, context: &str) -> serde_json::Value {
    serde_json::json!({
        "state": kiln_core::notify::commit_state(&n.build.status),
        "target_url": n.build.url,
        "description": description(n),
        "context": context,
    })
}

pub async fn post(http: &crate::outbound::Outbound, cfg: &crate::config::ServerConfig, p: &ProjectRow, target: &str, n: &BuildNotice) -> Result<(), SendError> {
    let perm = |m: String| SendError::Permanent(m);
    let (kind, repo) = target.split_once(':').ok_or_else(|| perm(format!("bad commit status target {target:?}")))?;
    let cs = p.settings.commit_status.clone().unwrap_or_default();
    if repo.is_empty() {
        return Err(perm(format!("commit status for {}: no forge repository: kiln project set {} --forge-repo OWNER/NAME", p.name, p.name)));
    }
    let base = api_base(kind, &cs, &p.repo)
        .ok_or_else(|| perm(format!("commit status for {}: no {kind} API URL: kiln project set {} --forge-url https://HOST/api/v1", p.name, p.name)))?;
    if !forge_host_allowed(cfg, &p.repo, &base) {
        return Err(perm(format!(
            "commit status for {}: {base} is not on the server's list of forge hosts (an admin adds one with `kiln server --forge-host HOST`)",
            p.name
        )));
    }
    let secret = cs.token_secret.clone().unwrap_or_else(|| if kind == "github" { "GITHUB_TOKEN".into() } else { "GITEA_TOKEN".into() });
    let token = p
        .settings
        .secrets
        .as_ref()
        .and_then(|s| s.get(&secret))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| perm(format!("commit status for {}: the project has no secret {secret}: kiln project set {} --secret {secret}=TOKEN", p.name, p.name)))?;
    let context = cs.context.clone().unwrap_or_else(|| format!("kiln/{}", p.name));
    let url = format!("{base}/repos/{repo}/statuses/{}", n.build.commit);
    let shown = crate::redact::without_credentials(&base);
    let mut req = http.post(&url).map_err(|e| perm(format!("commit status for {}: {e}", p.name)))?.json(&body(n, &context));
    req = if kind == "github" {
        req.bearer_auth(token).header("accept", "application/vnd.github+json").header("x-github-api-version", "2022-11-28")
    } else {
        req.header("authorization", format!("token {token}")).header("accept", "application/json")
    };
    let resp = req
        .send()
        .await
        .map_err(|e| SendError::Retry(format!("{kind} at {shown} unreachable: {}", crate::outbound::failure(&e))))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    Err(SendError::Retry(format!("{kind} at {shown} answered {} to the status of {}", crate::outbound::status_line(status), &n.build.commit[..12.min(n.build.commit.len())])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_bases() {
        let none = CommitStatusSettings::default();
        assert_eq!(api_base("github", &none, "https://github.com/o/n").as_deref(), Some(GITHUB_API));
        assert_eq!(api_base("gitea", &none, "https://git.example.com:3000/o/n.git").as_deref(), Some("https://git.example.com:3000/api/v1"));
        assert_eq!(api_base("gitea", &none, "/srv/git/n"), None);
        let set = CommitStatusSettings { url: Some("http://127.0.0.1:9/api/v3/".into()), ..Default::default() };
        assert_eq!(api_base("github", &set, "").as_deref(), Some("http://127.0.0.1:9/api/v3"));
    }

    #[test]
    fn forge_hosts_are_github_the_repository_and_the_admins_list() {
        let mut cfg = crate::config::ServerConfig::default();
        let repo = "https://git.example.com/o/n.git";
        assert!(forge_host_allowed(&cfg, repo, GITHUB_API));
        assert!(forge_host_allowed(&cfg, repo, "https://git.example.com/api/v1"));
        assert!(forge_host_allowed(&cfg, "git@git.example.com:o/n.git", "https://git.example.com/api/v1"));
        assert!(!forge_host_allowed(&cfg, repo, "http://127.0.0.1:9/exfil"));
        assert!(!forge_host_allowed(&cfg, repo, "https://api.github.com.evil.example/"));
        cfg.forge_hosts.push("127.0.0.1:9".into());
        assert!(forge_host_allowed(&cfg, repo, "http://127.0.0.1:9/exfil"));
        assert!(!forge_host_allowed(&cfg, repo, "http://127.0.0.1:10/exfil"));
    }

    #[test]
    fn validation_names_the_flag() {
        let bad = CommitStatusSettings { forge: Some("gitlab".into()), ..Default::default() };
        assert!(validate(&bad).unwrap_err().contains("--commit-status"));
        let bad = CommitStatusSettings { repo: Some("just-a-name".into()), ..Default::default() };
        assert!(validate(&bad).unwrap_err().contains("OWNER/NAME"));
        let ok = CommitStatusSettings { forge: Some("gitea".into()), repo: Some("o/n".into()), ..Default::default() };
        assert!(validate(&ok).is_ok());
    }
}
