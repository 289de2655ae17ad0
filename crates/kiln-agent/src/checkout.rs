//! Check out a job's commit: one cached bare mirror per repository, fetched
//! only when it lacks the commit, and a fresh working copy per job — or, for an
//! uploaded test run, the run's package unpacked instead (`package.rs`).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::process::Command;
use tokio::sync::Mutex;

#[derive(Default)]
pub struct Mirrors {
    locks: std::sync::Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

async fn git(dir: Option<&Path>, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("failed to run git: {e} (is git installed on this agent?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Mirrors {
    /// Put a working copy of `commit` of `repo` at `dest` (which must not exist).
    pub async fn checkout(&self, work_dir: &Path, repo: &str, commit: &str, dest: &Path) -> Result<(), String> {
        let key = hex::encode(&Sha256::digest(repo.as_bytes())[..8]);
        let mirror = work_dir.join("mirrors").join(format!("{key}.git"));
        let lock = self.locks.lock().unwrap().entry(mirror.clone()).or_default().clone();
        {
            let _g = lock.lock().await;
            if !mirror.join("HEAD").exists() {
                std::fs::create_dir_all(mirror.parent().unwrap()).map_err(|e| e.to_string())?;
                let tmp = mirror.with_extension("tmp");
                let _ = std::fs::remove_dir_all(&tmp);
                git(None, &["clone", "--mirror", "--quiet", repo, &tmp.to_string_lossy()])
                    .await
                    .map_err(|e| format!("failed to clone {repo}: {e}"))?;
                std::fs::rename(&tmp, &mirror).map_err(|e| e.to_string())?;
            }
        }
        let dest_s = dest.to_string_lossy();
        git(None, &["clone", "--quiet", "--shared", "--no-checkout", &mirror.to_string_lossy(), &dest_s])
            .await
            .map_err(|e| format!("failed to make a working copy: {e}"))?;
        if checkout_commit(dest, commit).await.is_ok() {
            return Ok(());
        }
        // The mirror lacks the commit: fetch it, then try again.
        {
            let _g = lock.lock().await;
            git(Some(&mirror), &["fetch", "--prune", "--quiet", "origin"]).await.map_err(|e| format!("failed to fetch {repo}: {e}"))?;
        }
        git(Some(dest), &["fetch", "--quiet", "origin"]).await.map_err(|e| format!("failed to update the working copy: {e}"))?;
        checkout_commit(dest, commit).await.map_err(|e| format!("commit {commit} is not in {repo}: {e}"))
    }
}

async fn checkout_commit(dest: &Path, commit: &str) -> Result<(), String> {
    git(Some(dest), &["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit]).await
}

/// Put the job's files at `dest`: its uploaded package when it has one, else a git checkout.
pub(crate) async fn prepare(agent: &crate::Agent, job: &kiln_wire::agent::JobAssignment, dest: &Path) -> Result<(), String> {
    match &job.package {
        Some(url) => crate::package::fetch(&agent.client, url, dest).await,
        None => agent.mirrors.checkout(&agent.cfg.work_dir, &job.repo, &job.commit, dest).await,
    }
}
