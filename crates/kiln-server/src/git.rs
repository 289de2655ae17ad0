//! The server's read-only view of repositories: one bare mirror per project,
//! fetched on demand, to resolve branches and read the pipeline file of a commit.
//! The server reads files with git; it never runs code from a repository.

use crate::private_net::Reach;
use crate::redact;
use crate::repo_route::{self, Route};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::Mutex;

pub struct Mirrors {
    root: PathBuf,
    /// Which repositories the server may read.
    access: Access,
    /// Per-project lock and what the last fetch did (so a burst of triggers fetches once).
    fetches: std::sync::Mutex<HashMap<i64, Arc<Mutex<Fetched>>>>,
    /// Branch heads as of each project's last fetch.
    heads: std::sync::Mutex<HashMap<i64, HashMap<String, String>>>,
    /// What a commit says, read once: (project, commit, pipeline path) → (pipeline text, subject, author).
    commits: std::sync::Mutex<HashMap<(i64, String, String), CommitFacts>>,
}

/// A project's last fetch: when it began, and the repository URL its mirror's remote was set
/// to (set again only when the project's repository changes).
#[derive(Default)]
struct Fetched {
    at: Option<Instant>,
    url: Option<String>,
}

/// The facts about one commit that a build needs.
#[derive(Clone)]
pub struct CommitFacts {
    pub pipeline: Option<String>,
    pub subject: String,
    pub author: String,
}

/// Commits remembered per server before the cache starts over.
const COMMIT_CACHE: usize = 1024;

/// Git transports a repository may use, whatever the host's git config says.
/// `file` (local paths and `file://`) is added only for allowed local repositories.
const NETWORK_PROTOCOLS: &str = "https:ssh:git";
/// A clone or fetch that takes longer is stopped (with every process it started).
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(300);
/// Any other git call that takes longer is stopped.
pub const LOCAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Which repositories the server may read: network ones on public addresses, or on private
/// ones the admin allows (`reach`); local paths and `file://` only with `--allow-local-repos`,
/// or the ones `kiln up` was given.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub allow_local: bool,
    pub local_repos: Vec<PathBuf>,
    pub reach: Reach,
}

/// How a repository is reached.
#[derive(Debug, PartialEq, Eq)]
enum Transport {
    Network,
    Local(PathBuf),
}

fn transport(repo: &str) -> Result<Transport, String> {
    let shown = redact::without_credentials(repo);
    if repo.starts_with('-') {
        return Err(format!("repository {shown:?} starts with '-': give a URL or a path"));
    }
    if let Some((scheme, rest)) = repo.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "https" | "ssh" | "git" | "git+ssh" | "ssh+git" => Ok(Transport::Network),
            "file" => Ok(Transport::Local(PathBuf::from(rest))),
            other => Err(format!("repository {shown:?}: the {other}:// transport is not allowed; use https://, ssh:// (or user@host:path) or git://")),
        };
    }
    if let Some((helper, _)) = repo.split_once("::") {
        if !helper.contains('/') {
            return Err(format!("repository {shown:?}: the {helper}:: transport is not allowed; use https://, ssh:// (or user@host:path) or git://"));
        }
    }
    match repo.find(':') {
        // scp-like `user@host:path`: ssh (a colon before any slash).
        Some(c) if !repo[..c].contains('/') && c > 0 => Ok(Transport::Network),
        _ => Ok(Transport::Local(PathBuf::from(repo))),
    }
}

impl Access {
    /// The transports a clone or fetch of `repo` may use, or why it may not be read. A host
    /// written as a private address is refused here; a name, when it is resolved ([`Access::route`]).
    pub fn protocols(&self, repo: &str) -> Result<&'static str, String> {
        match transport(repo)? {
            Transport::Network => {
                let end = repo_route::endpoint(repo).map_err(|e| format!("repository {:?}: {e}", redact::without_credentials(repo)))?;
                self.reach.check_literal(&end.host).map_err(|e| format!("repository {}: {e}", redact::without_credentials(repo)))?;
                Ok(NETWORK_PROTOCOLS)
            }
            Transport::Local(path) => {
                let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
                if self.allow_local || self.local_repos.iter().any(|r| canon(r) == canon(&path)) {
                    Ok("https:ssh:git:file")
                } else {
                    Err(format!(
                        "repository {:?} is on the server's own disk: local paths and file:// are refused unless the server runs with --allow-local-repos (allow_local_repos = true in kiln.toml)",
                        redact::without_credentials(repo)
                    ))
                }
            }
        }
    }
}

impl Access {
    /// How git must reach `repo` now: nothing to add for a local repository or when every host
    /// is allowed; else its host resolved here (refused when only private addresses answer and
    /// the host is not allowed), and git held to the addresses checked (so a name pointed inside
    /// between two lookups is not followed) and to no redirect.
    pub async fn route(&self, repo: &str) -> Result<Route, String> {
        if matches!(transport(repo)?, Transport::Local(_)) {
            return Ok(Route::default());
        }
        let shown = redact::without_credentials(repo);
        let end = repo_route::endpoint(repo).map_err(|e| format!("repository {shown:?}: {e}"))?;
        if self.reach.allow_all {
            return Ok(Route::default());
        }
        // A literal address resolves to itself, and is refused here like a name's.
        let addrs = self.reach.resolve(&end.host, end.port).await.map_err(|e| format!("repository {shown}: {e}"))?;
        repo_route::pinned(&end, &addrs).map_err(|e| format!("repository {shown:?}: {e}"))
    }
}

/// Kills a git process group when dropped (a timeout, or the request that ran it went away).
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Run git with the server's fixed settings: only `protocols` as transports, no
/// system or global config, never a prompt, in its own process group that is
/// killed on timeout or when the caller stops waiting. Stdout, or stderr (with
/// credentials removed) as the error.
async fn run(dir: Option<&Path>, args: &[&str], protocols: &str, route: &Route, timeout: Duration) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    for c in &route.config {
        cmd.arg("-c").arg(c);
    }
    cmd.args(["-c", "protocol.allow=never"]);
    for p in protocols.split(':') {
        cmd.arg("-c").arg(format!("protocol.{p}.allow=always"));
    }
    cmd.args(["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60", "-c", "credential.helper="]);
    for v in ["GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PROXY_COMMAND", "GIT_SSH", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_EXEC_PATH"] {
        cmd.env_remove(v);
    }
    cmd.args(args)
        .env("GIT_ALLOW_PROTOCOL", protocols)
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", route.ssh_command())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("failed to run git: {e} (is git installed?)"))?;
    let mut group = GroupKill(child.id());
    let what = args.first().copied().unwrap_or("");
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| format!("git {what}: {e}"))?,
        Err(_) => return Err(format!("git {what} did not finish in {} s and was stopped", timeout.as_secs())),
    };
    if out.status.success() {
        group.0 = None;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(redact::in_text(String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Run git on the server's own mirrors (no transport but the network ones, `LOCAL_TIMEOUT`).
pub async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    run(dir, args, NETWORK_PROTOCOLS, &Route::default(), LOCAL_TIMEOUT).await
}

impl Mirrors {
    pub fn new(root: PathBuf, access: Access) -> Mirrors {
        Mirrors { root, access, fetches: Default::default(), heads: Default::default(), commits: Default::default() }
    }

    /// Why `repo` may not be read by this server, if it may not.
    pub fn check(&self, repo: &str) -> Result<(), String> {
        self.access.protocols(repo).map(drop)
    }

    pub fn path(&self, project_id: i64) -> PathBuf {
        self.root.join(format!("{project_id}.git"))
    }

    /// Make the mirror current with the repository, unless a fetch that began
    /// after `asked_at` already did. Clones it the first time.
    pub async fn refresh(&self, project_id: i64, repo: &str, asked_at: Instant) -> Result<PathBuf, String> {
        let lock = self.fetches.lock().unwrap().entry(project_id).or_default().clone();
        let mut last = lock.lock().await;
        let path = self.path(project_id);
        if last.at.is_some_and(|t| t >= asked_at) && path.exists() {
            return Ok(path);
        }
        let protocols = self.access.protocols(repo)?;
        let route = self.access.route(repo).await?;
        let shown = redact::without_credentials(repo);
        last.at = Some(Instant::now());
        if !path.join("HEAD").exists() {
            std::fs::create_dir_all(&self.root).map_err(|e| format!("failed to create {}: {e}", self.root.display()))?;
            let tmp = self.root.join(format!("{project_id}.git.tmp"));
            let _ = std::fs::remove_dir_all(&tmp);
            run(None, &["clone", "--mirror", "--quiet", "--", repo, &tmp.to_string_lossy()], protocols, &route, NETWORK_TIMEOUT)
                .await
                .map_err(|e| format!("failed to clone {shown}: {e}"))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("failed to move the mirror into place: {e}"))?;
            last.url = Some(repo.to_string());
        } else {
            if last.url.as_deref() != Some(repo) {
                git(Some(&path), &["remote", "set-url", "origin", "--", repo]).await.map_err(|e| redact::in_text(&e))?;
                last.url = Some(repo.to_string());
            }
            run(Some(&path), &["fetch", "--prune", "--quiet", "origin"], protocols, &route, NETWORK_TIMEOUT).await.map_err(|e| format!("failed to fetch {shown}: {e}"))?;
        }
        let heads = branch_heads(&path).await?.into_iter().collect();
        self.heads.lock().unwrap().insert(project_id, heads);
        Ok(path)
    }

    /// The head of `branch` as of the last fetch (call `refresh` first).
    pub async fn branch_head(&self, project_id: i64, branch: &str) -> Result<String, String> {
        let cached = self.heads.lock().unwrap().get(&project_id).and_then(|h| h.get(branch).cloned());
        match cached {
            Some(sha) => Ok(sha),
            None => resolve(&self.path(project_id), &format!("refs/heads/{branch}")).await.map_err(|_| format!("branch {branch} is not in the repository")),
        }
    }

    /// A commit's pipeline file and subject line, read from the mirror once.
    pub async fn commit_facts(&self, project_id: i64, commit: &str, pipeline: &str) -> Result<CommitFacts, String> {
        let key = (project_id, commit.to_string(), pipeline.to_string());
        if let Some(f) = self.commits.lock().unwrap().get(&key) {
            return Ok(f.clone());
        }
        let mirror = self.path(project_id);
        let text = read_file(&mirror, commit, pipeline).await?;
        let (subject, author) = commit_info(&mirror, commit).await;
        let facts = CommitFacts { pipeline: text, subject, author };
        let mut cache = self.commits.lock().unwrap();
        if cache.len() >= COMMIT_CACHE {
            cache.clear();
        }
        cache.insert(key, facts.clone());
        Ok(facts)
    }

    /// Is this commit already in the mirror (no fetch needed)?
    pub async fn has_commit(&self, project_id: i64, commit: &str) -> bool {
        let path = self.path(project_id);
        path.exists() && git(Some(&path), &["cat-file", "-e", &format!("{commit}^{{commit}}")]).await.is_ok()
    }
}

/// Resolve a branch name or commit to a full sha.
pub async fn resolve(mirror: &Path, rev: &str) -> Result<String, String> {
    git(Some(mirror), &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
        .await
        .map(|s| s.trim().to_string())
        .map_err(|_| format!("{rev} is not a branch or commit of the repository"))
}

/// A file's text at a commit, or None when the commit does not have it. Files
/// over `caps::MAX_PIPELINE_BYTES` are refused before they are read.
pub async fn read_file(mirror: &Path, commit: &str, path: &str) -> Result<Option<String>, String> {
    let object = format!("{commit}:{path}");
    if let Ok(size) = git(Some(mirror), &["cat-file", "-s", &object]).await {
        crate::caps::check_pipeline_size(path, size.trim().parse().unwrap_or(0))?;
    }
    match git(Some(mirror), &["cat-file", "blob", &object]).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.contains("does not exist") || e.contains("Not a valid object") || e.contains("bad file") || e.contains("path") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Subject and author of a commit.
pub async fn commit_info(mirror: &Path, commit: &str) -> (String, String) {
    match git(Some(mirror), &["log", "-1", "--format=%s%x00%an <%ae>", commit]).await {
        Ok(s) => {
            let mut it = s.trim_end().splitn(2, '\0');
            (it.next().unwrap_or("").to_string(), it.next().unwrap_or("").to_string())
        }
        Err(_) => (String::new(), String::new()),
    }
}

/// Every branch head: (branch, sha).
pub async fn branch_heads(mirror: &Path) -> Result<Vec<(String, String)>, String> {
    let out = git(Some(mirror), &["for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads"]).await?;
    Ok(out.lines().filter_map(|l| l.split_once(' ')).map(|(b, s)| (b.to_string(), s.to_string())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_classified() {
        let a = Access::default();
        assert_eq!(a.protocols("https://u:p@host/x.git"), Ok(NETWORK_PROTOCOLS));
        assert_eq!(a.protocols("git@github.com:org/x.git"), Ok(NETWORK_PROTOCOLS));
        assert_eq!(a.protocols("git://host/x"), Ok(NETWORK_PROTOCOLS));
        for bad in ["ext::sh -c id", "fd::3", "http://host/x", "-uhack", "/srv/x", "file:///srv/x", "./x"] {
            assert!(a.protocols(bad).is_err(), "{bad}");
        }
        assert!(a.protocols("http://u:Secret@h/x").unwrap_err().contains("http://h/x"), "messages carry no credentials");
        let local = Access { allow_local: false, local_repos: vec![PathBuf::from("/srv/x")], reach: Reach::default() };
        assert!(local.protocols("/srv/x").is_ok() && local.protocols("/srv/y").is_err());
        assert!(Access { allow_local: true, local_repos: vec![], reach: Reach::default() }.protocols("file:///srv/y").is_ok());
    }

    #[tokio::test]
    async fn ext_is_refused_by_git_itself_whatever_the_environment_allows() {
        let dir = tempfile::tempdir().unwrap();
        let pwned = dir.path().join("pwned");
        // What a permissive host might have in the server's environment.
        std::env::set_var("GIT_CONFIG_PARAMETERS", "'protocol.allow'='always'");
        let url = format!("ext::sh -c touch% {}", pwned.display());
        let dest = dir.path().join("m.git");
        let e = run(None, &["clone", "--mirror", "--", &url, &dest.to_string_lossy()], NETWORK_PROTOCOLS, &Route::default(), LOCAL_TIMEOUT).await.unwrap_err();
        std::env::remove_var("GIT_CONFIG_PARAMETERS");
        assert!(e.contains("not allowed"), "{e}");
        assert!(!pwned.exists());
    }

    /// A repository with one commit whose file `f` says `text`.
    async fn repo_saying(dir: &Path, text: &str) -> String {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("f"), text).unwrap();
        for args in [&["init", "-q", "-b", "main"][..], &["add", "f"], &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", text]] {
            git(Some(dir), args).await.unwrap();
        }
        resolve(dir, "main").await.unwrap()
    }

    #[tokio::test]
    async fn a_mirror_follows_its_project_to_a_new_repository() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let (a, b) = (repo_saying(&one, "one").await, repo_saying(&two, "two").await);
        let m = Mirrors::new(dir.path().join("mirrors"), Access { allow_local: true, local_repos: vec![], reach: Reach::default() });
        let url = |p: &Path| p.to_string_lossy().into_owned();
        m.refresh(1, &url(&one), Instant::now()).await.unwrap();
        assert_eq!(m.branch_head(1, "main").await.unwrap(), a);
        // The project now names another repository: the next fetch reads that one.
        let mirror = m.refresh(1, &url(&two), Instant::now()).await.unwrap();
        assert_eq!(m.branch_head(1, "main").await.unwrap(), b);
        let remote = git(Some(&mirror), &["remote", "get-url", "origin"]).await.unwrap();
        assert_eq!(remote.trim(), url(&two));
        // And back, after a commit there: the remote is set again, the new commit fetched.
        let c = {
            std::fs::write(one.join("f"), "one again").unwrap();
            git(Some(&one), &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "again"]).await.unwrap();
            resolve(&one, "main").await.unwrap()
        };
        m.refresh(1, &url(&one), Instant::now()).await.unwrap();
        assert_eq!(m.branch_head(1, "main").await.unwrap(), c);
        assert_eq!(m.commit_facts(1, &c, "f").await.unwrap().pipeline.as_deref(), Some("one again"), "a new commit's file is read anew");
        assert_eq!(m.commit_facts(1, &a, "f").await.unwrap().pipeline.as_deref(), Some("one"));
    }

    #[tokio::test]
    async fn a_git_call_past_its_timeout_is_stopped_with_its_helpers() {
        let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("git://127.0.0.1:{}/x", tarpit.local_addr().unwrap().port());
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.git");
        let e = run(None, &["clone", "--mirror", "--", &url, &dest.to_string_lossy()], NETWORK_PROTOCOLS, &Route::default(), Duration::from_millis(500)).await.unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
    }

    /// A child process killed when dropped.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    async fn listening(port: u16) {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nothing listens on {port}");
    }

    #[tokio::test]
    async fn git_connects_to_the_pinned_address_whatever_the_name_resolves_to() {
        let dir = tempfile::tempdir().unwrap();
        let head = repo_saying(&dir.path().join("served"), "pinned").await;
        let (from, to) = (dir.path().join("served"), dir.path().join("served.git"));
        run(None, &["clone", "--bare", "--quiet", &from.to_string_lossy(), &to.to_string_lossy()], "file", &Route::default(), LOCAL_TIMEOUT).await.unwrap();
        git(Some(&dir.path().join("served.git")), &["update-server-info"]).await.unwrap();
        // git:// through `insteadOf`: the name `pinned.invalid` resolves nowhere.
        let port = free_port();
        let base = format!("--base-path={}", dir.path().display());
        // git-daemon itself, not `git daemon` (whose killing would leave the daemon running).
        let exec = std::process::Command::new("git").arg("--exec-path").output().unwrap();
        let daemon = Path::new(String::from_utf8_lossy(&exec.stdout).trim()).join("git-daemon");
        let _daemon = Killed(std::process::Command::new(daemon).args(["--export-all", "--reuseaddr", "--listen=127.0.0.1", &format!("--port={port}"), &base]).arg(dir.path()).spawn().unwrap());
        listening(port).await;
        let url = format!("git://pinned.invalid:{port}/served.git");
        let dest = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
        let unpinned = run(None, &["clone", "--mirror", "--", &url, &dest("a.git")], NETWORK_PROTOCOLS, &Route::default(), LOCAL_TIMEOUT).await;
        assert!(unpinned.is_err(), "the name resolves after all: the test proves nothing");
        let end = repo_route::endpoint(&url).unwrap();
        let route = repo_route::pinned(&end, &[std::net::SocketAddr::from(([127, 0, 0, 1], port))]).unwrap();
        run(None, &["clone", "--mirror", "--", &url, &dest("b.git")], NETWORK_PROTOCOLS, &route, LOCAL_TIMEOUT).await.unwrap();
        assert_eq!(resolve(&dir.path().join("b.git"), "main").await.unwrap(), head);
        // http(s) through `http.curloptResolve` (the same setting for both; served plainly here).
        let port = free_port();
        let _web = Killed(std::process::Command::new("python3").args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"]).arg(dir.path()).stderr(std::process::Stdio::null()).spawn().unwrap());
        listening(port).await;
        let url = format!("http://pinned.invalid:{port}/served.git");
        let route = Route { config: vec![format!("http.curloptResolve=pinned.invalid:{port}:127.0.0.1")], ssh: vec![] };
        run(None, &["clone", "--mirror", "--", &url, &dest("c.git")], "http", &route, LOCAL_TIMEOUT).await.unwrap();
        assert_eq!(resolve(&dir.path().join("c.git"), "main").await.unwrap(), head);
    }
}
