//! The server's read-only view of repositories: one bare mirror per project,
//! fetched on demand, to resolve branches and read the pipeline file of a commit.
//! The server reads files with git; it never runs code from a repository.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::process::Command;
use tokio::sync::Mutex;

pub struct Mirrors {
    root: PathBuf,
    /// Per-project lock and the time the last fetch began (so a burst of triggers fetches once).
    fetches: std::sync::Mutex<HashMap<i64, Arc<Mutex<Option<Instant>>>>>,
    /// Branch heads as of each project's last fetch.
    heads: std::sync::Mutex<HashMap<i64, HashMap<String, String>>>,
    /// What a commit says, read once: (project, commit, pipeline path) → (pipeline text, subject, author).
    commits: std::sync::Mutex<HashMap<(i64, String, String), CommitFacts>>,
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

/// Run git, returning stdout, or its stderr as the error.
pub async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0").env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes").kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| format!("failed to run git: {e} (is git installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Mirrors {
    pub fn new(root: PathBuf) -> Mirrors {
        Mirrors { root, fetches: Default::default(), heads: Default::default(), commits: Default::default() }
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
        if last.is_some_and(|t| t >= asked_at) && path.exists() {
            return Ok(path);
        }
        *last = Some(Instant::now());
        if !path.join("HEAD").exists() {
            std::fs::create_dir_all(&self.root).map_err(|e| format!("failed to create {}: {e}", self.root.display()))?;
            let tmp = self.root.join(format!("{project_id}.git.tmp"));
            let _ = std::fs::remove_dir_all(&tmp);
            git(None, &["clone", "--mirror", "--quiet", "--", repo, &tmp.to_string_lossy()])
                .await
                .map_err(|e| format!("failed to clone {repo}: {e}"))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("failed to move the mirror into place: {e}"))?;
        } else {
            git(Some(&path), &["remote", "set-url", "origin", repo]).await?;
            git(Some(&path), &["fetch", "--prune", "--quiet", "origin"]).await.map_err(|e| format!("failed to fetch {repo}: {e}"))?;
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
