//! Check out a job's commit: one cached bare mirror per repository, fetched
//! only when it lacks the commit; one pristine checkout per recent commit; and
//! a working copy per job, copied from the pristine one or, in a job folder kept
//! from an earlier job of the repository (`reuse.rs`), synced with it (no git
//! process in the common case) — or, for an uploaded test run, the run's
//! package unpacked instead (`package.rs`).
//!
//! ```text
//!  repo ──clone/fetch──► mirrors/<hash>.git ──clone --shared + checkout──► pristine/<commit>
//!                                                                               │ copy
//!                                                                               ▼
//!                                                                  jobs/<id>-<attempt>/src
//!                                                          (copy, or sync of a kept folder)
//! ```
//!
//! The caches are out of a sandboxed job's sight (`sandbox.rs`). An agent without a sandbox
//! (`--isolation none`) runs steps that can write them: it checks a pristine checkout's seal
//! (`seal.rs`) before and after every copy from it, and makes one that changed again.

use crate::seal::Seal;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::process::Command;
use tokio::sync::{Mutex, RwLock};

/// Pristine checkouts kept per agent (the newest; older ones are removed).
const PRISTINE_KEPT: usize = 8;

#[derive(Default)]
pub struct Mirrors {
    locks: std::sync::Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// Copies read pristine trees; making and pruning them writes.
    pristine: RwLock<()>,
    /// Each pristine checkout this agent made, as it made it (`seal.rs`).
    seals: std::sync::Mutex<HashMap<PathBuf, Arc<Seal>>>,
}

/// A pristine checkout changed since it was made (only looked for when `checked`).
struct Changed;

async fn git(dir: Option<&Path>, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        // No hook and no fsmonitor command runs for the agent's git, whatever a config says
        // (without a sandbox, a step can write the agent's ~/.gitconfig).
        .args(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // Never wait for a person: an ssh host-key or password prompt fails instead.
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
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
    /// Put a working copy of `commit` of `repo` at `dest`: copied when `dest` does not exist,
    /// else made exactly like the pristine checkout (`reuse::sync_tree`). With `checked` (an
    /// agent without a sandbox, whose steps can write the pristine checkouts), the pristine
    /// checkout's seal is checked before and after: one a step changed is made again, and the
    /// working copy synced with the new one.
    pub async fn checkout(&self, work_dir: &Path, repo: &str, commit: &str, dest: &Path, checked: bool) -> Result<(), String> {
        let pristine = work_dir.join("pristine").join(commit);
        loop {
            {
                let _r = self.pristine.read().await;
                let seal = self.seals.lock().unwrap().get(&pristine).cloned();
                if pristine.join(".git").exists() && (!checked || seal.is_some()) {
                    // A kept folder's working copy (`reuse.rs`) is made like the pristine one;
                    // a new one is copied.
                    let (from, to) = (pristine.clone(), dest.to_path_buf());
                    let copied = tokio::task::spawn_blocking(move || {
                        let intact = |seal: &Option<Arc<Seal>>| !checked || seal.as_ref().is_some_and(|s| s.holds(&from));
                        if !intact(&seal) {
                            return Err(Changed);
                        }
                        let done = match std::fs::symlink_metadata(&to) {
                            // A working copy the sync cannot bring back (a step left what it
                            // cannot remove) is removed whole and copied afresh.
                            Ok(_) => crate::reuse::sync_tree(&from, &to, &[]).or_else(|_| {
                                std::fs::remove_dir_all(&to)?;
                                copy_tree(&from, &to)
                            }),
                            Err(_) => copy_tree(&from, &to),
                        };
                        // Changed while it was read: what was copied may hold the change.
                        if !intact(&seal) {
                            return Err(Changed);
                        }
                        Ok(done)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    if let Ok(done) = copied {
                        return done.map_err(|e| format!("failed to copy the checkout of {commit}: {e}"));
                    }
                }
            }
            let _w = self.pristine.write().await;
            let seal = self.seals.lock().unwrap().get(&pristine).cloned();
            let intact = match (checked, seal.clone()) {
                (false, _) => pristine.join(".git").exists(),
                (true, None) => false,
                (true, Some(s)) => {
                    let p = pristine.clone();
                    pristine.join(".git").exists() && tokio::task::spawn_blocking(move || s.holds(&p)).await.unwrap_or(false)
                }
            };
            if !intact {
                if pristine.exists() {
                    if checked && seal.is_some() {
                        tracing::warn!("the pristine checkout of {commit} was changed since it was made (a step without a sandbox?): making it again");
                    }
                    crate::reuse::remove_any(&pristine).map_err(|e| format!("failed to remove the changed checkout of {commit}: {e}"))?;
                }
                self.make_pristine(work_dir, repo, commit, &pristine).await?;
                if checked {
                    let p = pristine.clone();
                    let sealed = tokio::task::spawn_blocking(move || Seal::of(&p)).await.map_err(|e| e.to_string())?;
                    let sealed = sealed.map_err(|e| format!("failed to read the checkout of {commit}: {e}"))?;
                    self.seals.lock().unwrap().insert(pristine.clone(), Arc::new(sealed));
                }
                let gone = prune(&work_dir.join("pristine"), &pristine);
                let mut seals = self.seals.lock().unwrap();
                for g in gone {
                    seals.remove(&g);
                }
            }
        }
    }

    /// Check `commit` out into `dest`, from the repository's mirror.
    async fn make_pristine(&self, work_dir: &Path, repo: &str, commit: &str, dest: &Path) -> Result<(), String> {
        let mirror = mirror_path(work_dir, repo);
        let lock = self.locks.lock().unwrap().entry(mirror.clone()).or_default().clone();
        let _g = lock.lock().await;
        if !mirror.join("HEAD").exists() {
            std::fs::create_dir_all(mirror.parent().unwrap()).map_err(|e| e.to_string())?;
            let tmp = mirror.with_extension("tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            git(None, &["clone", "--mirror", "--quiet", "--", repo, &tmp.to_string_lossy()])
                .await
                .map_err(|e| format!("failed to clone {repo}: {e}"))?;
            std::fs::rename(&tmp, &mirror).map_err(|e| e.to_string())?;
        }
        let tmp = dest.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.parent().unwrap()).map_err(|e| e.to_string())?;
        git(None, &["clone", "--quiet", "--shared", "--no-checkout", "--template=", &mirror.to_string_lossy(), &tmp.to_string_lossy()])
            .await
            .map_err(|e| format!("failed to make a working copy: {e}"))?;
        if checkout_commit(&tmp, commit).await.is_err() {
            // The mirror lacks the commit: fetch it, then try again.
            git(Some(&mirror), &["fetch", "--prune", "--quiet", "origin"]).await.map_err(|e| format!("failed to fetch {repo}: {e}"))?;
            git(Some(&tmp), &["fetch", "--quiet", "origin"]).await.map_err(|e| format!("failed to update the working copy: {e}"))?;
            checkout_commit(&tmp, commit).await.map_err(|e| format!("commit {commit} is not in {repo}: {e}"))?;
        }
        std::fs::rename(&tmp, dest).map_err(|e| format!("failed to keep the checkout of {commit}: {e}"))
    }
}

/// The agent's bare mirror of `repo`; a working copy borrows its objects (`--shared`), so a
/// sandboxed job sees it, read-only.
pub fn mirror_path(work_dir: &Path, repo: &str) -> PathBuf {
    let key = hex::encode(&Sha256::digest(repo.as_bytes())[..8]);
    work_dir.join("mirrors").join(format!("{key}.git"))
}

async fn checkout_commit(dest: &Path, commit: &str) -> Result<(), String> {
    git(Some(dest), &["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit]).await
}

/// Keep the newest pristine checkouts (and `keep`), remove the rest; the removed ones.
fn prune(dir: &Path, keep: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut all: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path() != keep)
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0));
    let old: Vec<PathBuf> = all.into_iter().skip(PRISTINE_KEPT - 1).map(|(_, p)| p).collect();
    for p in &old {
        let _ = std::fs::remove_dir_all(p);
    }
    old
}

/// Copy a tree: files (with their permissions), folders and symbolic links.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type()?;
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ty.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_keeps_files_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/f.txt"), "hello").unwrap();
        std::fs::write(a.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(a.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("sub/f.txt", a.join("link")).unwrap();
        let b = d.path().join("b");
        copy_tree(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("sub/f.txt")).unwrap(), "hello");
        assert_eq!(std::fs::metadata(b.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(std::fs::read_link(b.join("link")).unwrap(), Path::new("sub/f.txt"));
        // A change in the copy leaves the original alone.
        std::fs::write(b.join("sub/f.txt"), "changed").unwrap();
        assert_eq!(std::fs::read_to_string(a.join("sub/f.txt")).unwrap(), "hello");
    }

    #[test]
    fn prune_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..12 {
            std::fs::create_dir_all(d.path().join(format!("c{i:02}"))).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        prune(d.path(), &d.path().join("c00"));
        let mut left: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left.len(), PRISTINE_KEPT);
        assert!(left.contains(&"c00".to_string()) && left.contains(&"c11".to_string()) && !left.contains(&"c01".to_string()));
    }
}

/// Put the job's files at `dest`: its uploaded package when it has one, else a git checkout.
/// Without a sandbox a step could rewrite the pristine checkouts other projects' jobs are
/// copied from: their seals are then checked around every copy (`Mirrors::checkout`).
pub(crate) async fn prepare(agent: &crate::Agent, job: &kiln_wire::agent::JobAssignment, dest: &Path) -> Result<(), String> {
    match &job.package {
        Some(url) => crate::package::fetch(&agent.client, url, dest).await,
        None => agent.mirrors.checkout(&agent.cfg.work_dir, &job.repo, &job.commit, dest, agent.sandbox.is_none()).await,
    }
}
