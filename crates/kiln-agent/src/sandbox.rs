//! The sandbox around a job's steps: bubblewrap (`bwrap`, the sandbox Flatpak uses).
//!
//! Each step runs in a fresh mount, PID and IPC namespace (and network namespace for
//! `network: false`):
//!
//! ```text
//!  /               the host, read-only
//!  /dev /proc      fresh (the job sees only its own processes)
//!  /tmp            the job's own temp folder (JOB.tmp), writable
//!  agent folders   hidden under an empty tmpfs: other jobs, mirrors, pristine checkouts, spool,
//!                  the token file (/dev/null), the server's data folder under `kiln up`
//!  JOB             bound back at the same path, writable: src (working copy), junit,
//!                  artifacts, artifacts-in (KILN_ARTIFACTS_IN), status.json, home
//! ```
//!
//! When the agent runs as root, the step also drops to uid/gid 65534 (`nobody`) with
//! `setpriv`, so it owns none of the agent's files: the job's folders are handed to that user
//! first. An agent that is not root cannot switch users; its steps then run under its own uid
//! (in a user namespace), still seeing none of its folders. A timeout or cancel sends TERM to
//! the step inside, then KILL to bwrap, whose PID namespace takes every process with it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The shell a step runs in, in the sandbox or not: bash when there is one, else sh.
pub(crate) fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// The user a step runs as when the agent is root (`nobody` on Debian and most distributions).
pub const JOB_UID: u32 = 65534;

/// Whether jobs run in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Every job in bubblewrap (the default).
    #[default]
    Sandbox,
    /// Steps run as the agent, seeing everything it sees (`--isolation none`).
    None,
}

impl Isolation {
    pub fn parse(s: &str) -> Result<Isolation, String> {
        match s {
            "sandbox" => Ok(Isolation::Sandbox),
            "none" => Ok(Isolation::None),
            other => Err(format!("unknown isolation {other:?} (expected sandbox or none)")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Sandbox => "sandbox",
            Isolation::None => "none",
        }
    }
}

/// The warning an agent without sandbox prints at start and reports in its status.
pub const NO_SANDBOX_WARNING: &str = "jobs run without a sandbox (--isolation none): every step can read and change this agent's files, other jobs, cached checkouts and its token";

/// How to get bubblewrap, for error messages.
const INSTALL_HINT: &str = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap; or run ci/setup-sandbox.sh), or run with --isolation none to go without a sandbox";

/// How a folder is bound into a job's sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    Writable,
}

/// The sandbox as checked at start: where bwrap is and who the steps run as.
#[derive(Debug)]
pub struct Sandbox {
    bwrap: PathBuf,
    /// `setpriv` and the uid to drop to (the agent is root).
    drop_to: Option<(PathBuf, u32)>,
    /// Root without switching users (`kiln run` as root): drop every capability instead.
    root_caps: bool,
    /// Folders and files no step may see besides the job's agent folder.
    hidden: Vec<PathBuf>,
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

impl Sandbox {
    /// Find bwrap and check that it works here (it needs user or mount namespaces). `other_user`:
    /// when running as root, run steps as [`JOB_UID`]. `hidden`: more paths to hide.
    pub fn detect(other_user: bool, hidden: Vec<PathBuf>) -> Result<Arc<Sandbox>, String> {
        let bwrap = find_program("bwrap").ok_or_else(|| format!("bubblewrap (bwrap) is not installed, and jobs run in its sandbox by default: {INSTALL_HINT}"))?;
        let root = rustix::process::geteuid().is_root();
        let drop_to = match (root && other_user, find_program("setpriv")) {
            (true, Some(setpriv)) => Some((setpriv, JOB_UID)),
            (true, None) => {
                tracing::warn!("setpriv (util-linux) is missing: sandboxed steps run as root without capabilities rather than as uid {JOB_UID}");
                None
            }
            (false, _) => None,
        };
        let hidden = hidden.iter().filter_map(|p| std::path::absolute(p).ok()).collect();
        let sb = Sandbox { bwrap, drop_to, root_caps: root, hidden };
        sb.probe()?;
        Ok(Arc::new(sb))
    }

    /// Run `true` in a sandbox like a job's (network cut off too), or say why it fails.
    fn probe(&self) -> Result<(), String> {
        let dir = tempfile::Builder::new().prefix("kiln-sandbox-check-").tempdir().map_err(|e| format!("failed to make a folder to check the sandbox: {e}"))?;
        let job = dir.path().join("job");
        let hide = dir.path().join("agent");
        for d in [job.clone(), temp_of(&job), hide.clone()] {
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        self.give(&temp_of(&job));
        let jail = self.jail(&job, &[], &hide, false);
        let out = jail.command(&job, "true").output().map_err(|e| format!("failed to run {}: {e}", self.bwrap.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!(
            "bubblewrap ({}) cannot make a sandbox here: {why}; it needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0) or to run as root; or run with --isolation none to go without a sandbox",
            self.bwrap.display()
        ))
    }

    /// The uid steps run as, when it differs from the agent's.
    pub fn job_uid(&self) -> Option<u32> {
        self.drop_to.as_ref().map(|d| d.1)
    }

    /// Hand `path` (recursively) to the step's user, so it can write there. Does nothing when
    /// steps run as the agent's own user.
    pub fn give(&self, path: &Path) {
        if let Some(uid) = self.job_uid() {
            chown_tree(path, uid);
        }
    }

    /// The sandbox of one job: `job` (its folder, bound writable, with `JOB.tmp` as /tmp), the
    /// other folders it needs (the repository's mirror, read-only; the repository itself under
    /// `kiln run`, writable), and `agent_dir`, the folder to hide (the agent's work folder).
    pub fn jail(self: &Sandbox, job: &Path, extra: &[(&Path, Access)], agent_dir: &Path, network: bool) -> Jail {
        let job = absolute(job);
        let mut a = Args::default();
        a.push(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
        a.push(["--bind"]);
        a.path(&temp_of(&job));
        a.push(["/tmp"]);
        let mut fresh: Vec<PathBuf> = vec![PathBuf::from("/tmp")];
        let bound: Vec<(PathBuf, Access)> = std::iter::once((job.clone(), Access::Writable)).chain(extra.iter().map(|(p, a)| (absolute(p), *a))).collect();
        // Hide the agent's folders, and any folder above a bound one that the step's user could
        // not pass through anyway (so the bound folder stays reachable at its own path).
        let mut hide: Vec<PathBuf> = vec![absolute(agent_dir)];
        hide.extend(self.hidden.iter().cloned());
        if self.job_uid().is_some() {
            hide.extend(bound.iter().filter_map(|(p, _)| closed_ancestor(p)));
        }
        hide.sort();
        hide.dedup();
        for h in &hide {
            if fresh.iter().any(|f| h.starts_with(f)) {
                continue; // already hidden
            }
            let Ok(meta) = std::fs::metadata(h) else { continue };
            if meta.is_dir() {
                self.dirs_to(&mut a, &fresh, h);
                a.push(["--tmpfs"]);
                a.path(h);
                fresh.push(h.clone());
            } else {
                a.push(["--ro-bind", "/dev/null"]);
                a.path(h);
            }
        }
        // A bound folder deep under /tmp would have its parents made on disk, in the job's temp
        // folder, for every job (and removed after it): a tmpfs at the topmost of them keeps
        // them in memory.
        for (b, _) in &bound {
            let Ok(below) = b.strip_prefix("/tmp") else { continue };
            let mut parts = below.components();
            if let (Some(first), Some(_)) = (parts.next(), parts.next()) {
                let top = Path::new("/tmp").join(first);
                if !fresh.contains(&top) {
                    a.push(["--tmpfs"]);
                    a.path(&top);
                    fresh.push(top);
                }
            }
        }
        for (b, access) in &bound {
            if !b.exists() {
                continue;
            }
            self.dirs_to(&mut a, &fresh, b);
            a.push([if *access == Access::Writable { "--bind" } else { "--ro-bind" }]);
            a.path(b);
            a.path(b);
        }
        a.push(["--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]);
        if !network {
            a.push(["--unshare-net"]);
        }
        if self.root_caps && self.drop_to.is_none() {
            a.push(["--cap-drop", "ALL"]);
        }
        let mut after: Vec<OsString> = Vec::new();
        if let Some((setpriv, uid)) = &self.drop_to {
            after.push(setpriv.into());
            for s in [format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--inh-caps=-all".into(), "--bounding-set=-all".into(), "--".into()] {
                after.push(s.into());
            }
        }
        Jail { bwrap: self.bwrap.clone(), args: a.0, after, home: job.join("home"), owner: self.job_uid() }
    }

    /// `--dir` for every folder between the nearest fresh mount above `path` and `path`: bwrap
    /// would make them 0700, which a step running as another user could not pass.
    fn dirs_to(&self, a: &mut Args, fresh: &[PathBuf], path: &Path) {
        let Some(root) = fresh.iter().filter(|f| path.starts_with(f) && path != f.as_path()).max_by_key(|f| f.components().count()) else { return };
        let mut todo: Vec<&Path> = path.ancestors().skip(1).take_while(|p| *p != root.as_path()).collect();
        todo.reverse();
        for d in todo {
            a.push(["--perms", "0755", "--dir"]);
            a.path(d);
        }
    }
}

/// A job's temp folder: beside its folder, not in it, so that in the sandbox it is only at
/// `/tmp` (a step walking up from its working copy does not meet its own temp files).
pub fn temp_of(job: &Path) -> PathBuf {
    let mut name = job.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    job.with_file_name(name)
}

/// The topmost folder above `path` (not `/`) that others cannot pass through (no `o+x`).
fn closed_ancestor(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut anc: Vec<&Path> = path.ancestors().skip(1).filter(|p| p.parent().is_some()).collect();
    anc.reverse();
    anc.into_iter().find(|p| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o001 == 0).unwrap_or(false)).map(Path::to_path_buf)
}

/// The folder bubblewrap mounts a tmpfs on inside a job's /tmp when the agent's work folder is
/// under /tmp (see `jail`): its mount point is made in the job's temp folder, on disk. A kept
/// job folder keeps that empty folder (`worker::reset_job_dir`), so it is not made and removed
/// again for every job.
pub fn tmp_mount_point(work_dir: &Path) -> Option<PathBuf> {
    let below = absolute(work_dir);
    let first = below.strip_prefix("/tmp").ok()?.components().next()?;
    Some(PathBuf::from(first.as_os_str()))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `lchown -R`: links are not followed. What the user owns already is left alone (a chown to
/// the same owner still rewrites the inode, and kept folders are mostly theirs already).
fn chown_tree(path: &Path, uid: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if meta.uid() != uid || meta.gid() != uid {
        let _ = std::os::unix::fs::lchown(path, Some(uid), Some(uid));
    }
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                chown_tree(&e.path(), uid);
            }
        }
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push<const N: usize>(&mut self, words: [&str; N]) {
        self.0.extend(words.iter().map(OsString::from));
    }
    fn path(&mut self, p: &Path) {
        self.0.push(p.as_os_str().to_owned());
    }
}

/// One job's sandbox, ready to wrap each of its steps.
#[derive(Debug, Clone)]
pub struct Jail {
    bwrap: PathBuf,
    args: Vec<OsString>,
    /// Between bwrap's `--` and the shell: the switch to the step's user.
    after: Vec<OsString>,
    /// The job's own home folder (`HOME` in the sandbox).
    pub home: PathBuf,
    /// The step's user, when it is not the agent's.
    owner: Option<u32>,
}

impl Jail {
    /// Hand a folder made during the job (a batch's JUnit folder) to the step's user.
    pub fn give(&self, path: &Path) {
        if let Some(uid) = self.owner {
            chown_tree(path, uid);
        }
    }

    /// `bwrap … --chdir DIR -- [setpriv …] SHELL -e -c STEP`, as a plain command.
    pub fn command(&self, dir: &Path, step: &str) -> Command {
        let mut c = Command::new(&self.bwrap);
        c.args(self.wrap(dir, step));
        c
    }

    /// The arguments of bwrap for `step` run in `dir`.
    pub fn wrap(&self, dir: &Path, step: &str) -> Vec<OsString> {
        let mut v = self.args.clone();
        v.push("--chdir".into());
        v.push(absolute(dir).into_os_string());
        v.push("--".into());
        v.extend(self.after.iter().cloned());
        v.push(shell().into());
        v.extend(["-e".into(), "-c".into(), step.into()]);
        v
    }

    pub fn program(&self) -> &Path {
        &self.bwrap
    }
}

/// Read a small file a step may have written, refusing links (a step could point one at a
/// file of the agent's) and anything but a regular file; at most `max` bytes.
pub fn read_own_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!("{} is not a regular file", path.display())));
    }
    let mut out = Vec::new();
    file.take(max).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(j: &Jail) -> Vec<String> {
        j.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_job_sees_its_folder_and_not_the_agents() {
        // Wherever the checkout is (CI may clone under /tmp).
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let agent = d.path().join("work");
        let job = agent.join("jobs/7-1");
        std::fs::create_dir_all(&job).unwrap();
        let sb = Sandbox { bwrap: "bwrap".into(), drop_to: None, root_caps: false, hidden: vec![] };
        let w = words(&sb.jail(&job, &[], &agent, true));
        let agent_s = agent.to_string_lossy().into_owned();
        // Hidden by a tmpfs over it, or (a work folder under /tmp) by the job's own temp folder
        // mounted over /tmp; either way before the job's folder is bound back.
        let hidden = match w.windows(2).position(|p| p[0] == "--tmpfs" && p[1] == agent_s) {
            Some(i) => i + 1,
            None if agent.starts_with("/tmp") => w.windows(2).position(|p| p[1] == "/tmp").unwrap_or_else(|| panic!("/tmp is not replaced: {w:?}")) + 1,
            None => panic!("the agent's folder is not hidden: {w:?}"),
        };
        let bind = w.iter().rposition(|x| *x == job.to_string_lossy()).unwrap();
        assert!(hidden < bind, "the agent's folder is hidden before the job's is bound back: {w:?}");
        assert!(w.windows(2).any(|p| p[0] == temp_of(&job).to_string_lossy() && p[1] == "/tmp"), "{w:?}");
        // The folder between the hidden one and the job's is made passable (bwrap would make it 0700).
        assert!(w.windows(4).any(|p| p == ["--perms", "0755", "--dir", &*agent.join("jobs").to_string_lossy()]), "{w:?}");
        assert!(!w.contains(&"--unshare-net".to_string()));
        assert!(words(&sb.jail(&job, &[], &agent, false)).contains(&"--unshare-net".to_string()));
        assert_eq!(temp_of(&job), agent.join("jobs/7-1.tmp"));
    }

    #[test]
    fn the_parents_of_a_job_under_tmp_are_made_in_memory_not_in_its_temp_folder() {
        let d = tempfile::tempdir_in("/tmp").unwrap();
        let agent = d.path().join("work");
        let job = agent.join("jobs/7-1");
        std::fs::create_dir_all(&job).unwrap();
        let sb = Sandbox { bwrap: "bwrap".into(), drop_to: None, root_caps: false, hidden: vec![] };
        let w = words(&sb.jail(&job, &[], &agent, true));
        let top = d.path().to_string_lossy().into_owned();
        let tmpfs = w.windows(2).position(|p| p == ["--tmpfs", &*top]).unwrap_or_else(|| panic!("no tmpfs at {top}: {w:?}"));
        let tmp = w.windows(2).position(|p| p[1] == "/tmp").unwrap();
        let bind = w.iter().rposition(|x| *x == job.to_string_lossy()).unwrap();
        assert!(tmp < tmpfs && tmpfs < bind, "after /tmp is the job's temp folder, before the job is bound: {w:?}");
        assert!(w.windows(4).any(|p| p == ["--perms", "0755", "--dir", &*agent.to_string_lossy()]), "{w:?}");
        assert_eq!(w.iter().filter(|x| **x == "--tmpfs").count(), 1, "{w:?}");
        // The mount point a kept folder keeps is that tmpfs's.
        assert_eq!(Path::new("/tmp").join(tmp_mount_point(&agent).unwrap()), d.path());
        assert_eq!(tmp_mount_point(Path::new("/var/lib/kiln/work")), None);
    }
}
