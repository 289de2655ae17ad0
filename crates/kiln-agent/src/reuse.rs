//! Job folders kept across jobs, as Buildkite and GitLab runners keep their working copies:
//! making and deleting a whole folder per job (a checkout, `.git`, the job's own folders) costs
//! dozens of inode creations and deletions, which dominate a short job. A git job
//! takes a kept folder of its repository (never one another running job holds), and
//! [`sync_tree`] makes it exactly like a fresh one before any step sees it: every file, folder
//! and link the pristine checkout (or the empty job layout) has, byte for byte and mode for
//! mode; everything else a previous job left — build outputs, ignored files, a changed `.git` —
//! removed, as `git clean -ffdx` and a reset would. No git runs in a folder a step could write,
//! so a planted hook or config never runs outside the sandbox.
//!
//! ```text
//!  reuse/<n> (+ <n>.tmp) ──take (same repo)──► jobs/<id>-<attempt>  sync: layout + src = pristine/<commit>
//!        ▲                                            │ job ends
//!        └──────────────put (the newest KEPT)─────────┘
//! ```

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Kept job folders per agent (the most recently used; older ones are removed).
pub const KEPT: usize = 8;

/// The folders a finished job leaves for the next job of its repository.
#[derive(Default)]
pub struct Kept {
    /// (repository, folder), oldest first.
    folders: Mutex<Vec<(String, PathBuf)>>,
    next: AtomicU64,
    /// Folders kept by an earlier run of the agent are removed at the first take.
    swept: std::sync::OnceLock<()>,
}

impl Kept {
    /// A kept folder of `repo` moved to `dir` (its temp folder to `temp`), or `None`: the job
    /// then makes a fresh one. Nobody else holds the folder once it is returned.
    pub fn take(&self, work_dir: &Path, repo: &str, dir: &Path, temp: &Path) -> Option<()> {
        self.swept.get_or_init(|| {
            let _ = remove_any(&work_dir.join("reuse"));
        });
        let found = {
            let mut all = self.folders.lock().unwrap();
            let i = all.iter().rposition(|(r, _)| r == repo)?;
            all.remove(i).1
        };
        for d in [dir, temp] {
            let _ = remove_any(d);
        }
        let moved = std::fs::rename(&found, dir).and_then(|_| std::fs::rename(crate::sandbox::temp_of(&found), temp));
        match moved {
            Ok(()) => Some(()),
            Err(e) => {
                tracing::warn!("failed to reuse the job folder {}: {e}; making a fresh one", found.display());
                for d in [found.clone(), crate::sandbox::temp_of(&found), dir.to_path_buf(), temp.to_path_buf()] {
                    let _ = remove_any(&d);
                }
                None
            }
        }
    }

    /// Keep the folder of a finished job of `repo` (and its temp folder) for the next job, or
    /// remove it when that fails; the oldest kept folder beyond [`KEPT`] goes.
    pub fn put(&self, work_dir: &Path, repo: &str, dir: &Path, temp: &Path) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let to = work_dir.join("reuse").join(n.to_string());
        let kept = std::fs::create_dir_all(work_dir.join("reuse"))
            .and_then(|_| std::fs::rename(dir, &to))
            .and_then(|_| std::fs::rename(temp, crate::sandbox::temp_of(&to)));
        if kept.is_err() {
            for d in [dir.to_path_buf(), temp.to_path_buf(), to.clone(), crate::sandbox::temp_of(&to)] {
                let _ = remove_any(&d);
            }
            return;
        }
        let old = {
            let mut all = self.folders.lock().unwrap();
            all.push((repo.to_string(), to));
            let over = all.len().saturating_sub(KEPT);
            all.drain(..over).collect::<Vec<_>>()
        };
        for (_, d) in old {
            let _ = remove_any(&d);
            let _ = remove_any(&crate::sandbox::temp_of(&d));
        }
    }
}

/// Remove a file, link or folder without following links, opening closed folders first (a
/// step may have made one unreadable). Nothing there is fine.
pub fn remove_any(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    for e in std::fs::read_dir(path)? {
        remove_any(&e?.path())?;
    }
    std::fs::remove_dir(path)
}

/// Make the folder `to` exactly like `from` (files' bytes and modes, folders, links), touching
/// only what differs, except the entries of `to` named in `skip` (left as they are). `from` is
/// trusted (the agent's own); `to` may hold anything a step left, links included, and is never
/// followed through a link. `to` must be a folder (not a link), or not exist.
pub fn sync_tree(from: &Path, to: &Path, skip: &[&str]) -> std::io::Result<()> {
    let have = match std::fs::symlink_metadata(to) {
        Ok(m) if m.is_dir() => Some(m.permissions().mode() & 0o7777),
        Ok(_) => {
            remove_any(to)?;
            std::fs::create_dir(to)?;
            None
        }
        Err(_) => {
            std::fs::create_dir(to)?;
            None
        }
    };
    let mode = std::fs::metadata(from)?.permissions().mode() & 0o7777;
    // A chmod to the same mode still rewrites the inode (its ctime): skipped.
    if have != Some(mode) {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    }
    let mut want: HashMap<OsString, std::fs::DirEntry> = HashMap::new();
    for e in std::fs::read_dir(from)? {
        let e = e?;
        want.insert(e.file_name(), e);
    }
    for e in std::fs::read_dir(to)? {
        let name = e?.file_name();
        if !want.contains_key(&name) && !skip.iter().any(|s| *s == name) {
            remove_any(&to.join(&name))?;
        }
    }
    for (name, e) in want {
        if skip.iter().any(|s| *s == name) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let ty = e.file_type()?;
        let have = std::fs::symlink_metadata(&dst).ok();
        if ty.is_symlink() {
            let target = std::fs::read_link(&src)?;
            if have.as_ref().is_some_and(|m| m.file_type().is_symlink()) && std::fs::read_link(&dst).ok().as_ref() == Some(&target) {
                continue;
            }
            remove_any(&dst)?;
            std::os::unix::fs::symlink(&target, &dst)?;
        } else if ty.is_dir() {
            sync_tree(&src, &dst, &[])?;
        } else {
            let meta = e.metadata()?;
            // A file with another link (a step linked it elsewhere, where a process it left
            // could write it later) is replaced, never kept, whatever its bytes.
            if let Some(h) = have.filter(|h| h.is_file() && h.len() == meta.len() && h.nlink() == 1) {
                if same_bytes(&src, &dst).unwrap_or(false) {
                    if h.permissions().mode() & 0o7777 != meta.permissions().mode() & 0o7777 {
                        std::fs::set_permissions(&dst, meta.permissions())?;
                    }
                    continue;
                }
            }
            remove_any(&dst)?;
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Whether two regular files hold the same bytes (`b` opened without following a link).
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32).open(b)?;
    if !fb.metadata()?.is_file() {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut x)?;
        let m = read_full(&mut fb, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, p: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if m.file_type().is_symlink() {
                    out.push(format!("{rel} -> {}", std::fs::read_link(e.path()).unwrap().display()));
                } else if m.is_dir() {
                    out.push(format!("{rel}/ {:o}", m.permissions().mode() & 0o777));
                    walk(root, &e.path(), out);
                } else {
                    out.push(format!("{rel} {:o} {:?}", m.permissions().mode() & 0o777, std::fs::read(e.path()).unwrap()));
                }
            }
        }
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn pristine(d: &Path) -> PathBuf {
        let a = d.join("pristine");
        std::fs::create_dir_all(a.join(".git/refs")).unwrap();
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join(".git/HEAD"), "abc\n").unwrap();
        std::fs::write(a.join(".git/config"), "[core]\n").unwrap();
        std::fs::write(a.join("sub/f.txt"), "hello").unwrap();
        std::fs::write(a.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(a.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("sub/f.txt", a.join("link")).unwrap();
        a
    }

    #[test]
    fn a_synced_folder_is_exactly_the_pristine_one_whatever_a_job_left() {
        let d = tempfile::tempdir().unwrap();
        let a = pristine(d.path());
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "agent's").unwrap();
        let b = d.path().join("copy");
        crate::checkout::copy_tree(&a, &b).unwrap();
        // What a job may leave: changed bytes (same length too), modes, new and ignored files, a
        // planted git hook and config, a folder made a link out, a file made a folder, a closed folder.
        std::fs::write(b.join("sub/f.txt"), "HELLO").unwrap();
        std::fs::set_permissions(b.join("run.sh"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir_all(b.join("target/debug")).unwrap();
        std::fs::write(b.join("target/debug/out.o"), "x").unwrap();
        std::fs::write(b.join(".env"), "ignored").unwrap();
        std::fs::create_dir_all(b.join(".git/hooks")).unwrap();
        std::fs::write(b.join(".git/hooks/post-checkout"), "#!/bin/sh\nevil\n").unwrap();
        std::fs::write(b.join(".git/config"), "[core]\nfsmonitor = evil\n").unwrap();
        std::fs::remove_dir_all(b.join(".git/refs")).unwrap();
        std::os::unix::fs::symlink(&outside, b.join(".git/refs")).unwrap();
        std::fs::remove_file(b.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), b.join("link")).unwrap();
        std::fs::remove_file(b.join("run.sh")).unwrap();
        std::fs::create_dir_all(b.join("run.sh/inner")).unwrap();
        std::fs::set_permissions(b.join("run.sh/inner"), std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(b.join("sub"), std::fs::Permissions::from_mode(0o500)).unwrap();
        sync_tree(&a, &b, &[]).unwrap();
        assert_eq!(listing(&b), listing(&a));
        // Nothing outside was followed or touched.
        assert_eq!(listing(&outside), vec!["secret 644 [97, 103, 101, 110, 116, 39, 115]".to_string()]);
    }

    #[test]
    fn unchanged_files_keep_their_inode_and_skipped_entries_stay() {
        let d = tempfile::tempdir().unwrap();
        let a = pristine(d.path());
        let b = d.path().join("copy");
        crate::checkout::copy_tree(&a, &b).unwrap();
        std::fs::write(b.join("keep-me"), "x").unwrap();
        let ino = std::fs::metadata(b.join("sub/f.txt")).unwrap().ino();
        sync_tree(&a, &b, &["keep-me"]).unwrap();
        assert_eq!(std::fs::metadata(b.join("sub/f.txt")).unwrap().ino(), ino, "an unchanged file is not copied again");
        assert!(b.join("keep-me").exists());
        // A folder that is a link, or missing, becomes a real one.
        let c = d.path().join("c");
        std::os::unix::fs::symlink(d.path(), &c).unwrap();
        sync_tree(&a, &c, &[]).unwrap();
        assert!(std::fs::symlink_metadata(&c).unwrap().is_dir());
        assert_eq!(listing(&c), listing(&a));
        assert!(d.path().join("pristine").exists(), "the link's target is left alone");
    }

    #[test]
    fn a_file_linked_elsewhere_is_replaced_even_when_its_bytes_match() {
        // A step (or a process it left) could write it later through the other link.
        let d = tempfile::tempdir().unwrap();
        let a = pristine(d.path());
        let b = d.path().join("copy");
        crate::checkout::copy_tree(&a, &b).unwrap();
        let outside = d.path().join("outside-link");
        std::fs::hard_link(b.join("sub/f.txt"), &outside).unwrap();
        sync_tree(&a, &b, &[]).unwrap();
        assert_eq!(std::fs::metadata(b.join("sub/f.txt")).unwrap().nlink(), 1);
        std::fs::write(&outside, "poison").unwrap();
        assert_eq!(std::fs::read(b.join("sub/f.txt")).unwrap(), std::fs::read(a.join("sub/f.txt")).unwrap());
    }

    #[test]
    fn a_kept_folder_goes_only_to_a_job_of_its_repository_and_only_once() {
        let d = tempfile::tempdir().unwrap();
        let work = d.path().join("work");
        let jobs = work.join("jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        let kept = Kept::default();
        let (j1, t1) = (jobs.join("1-1"), jobs.join("1-1.tmp"));
        assert!(kept.take(&work, "repo-a", &j1, &t1).is_none(), "nothing kept yet");
        std::fs::create_dir_all(j1.join("src")).unwrap();
        std::fs::create_dir_all(&t1).unwrap();
        std::fs::write(j1.join("src/mark"), "from job 1").unwrap();
        kept.put(&work, "repo-a", &j1, &t1);
        assert!(!j1.exists() && !t1.exists());
        let (j2, t2) = (jobs.join("2-1"), jobs.join("2-1.tmp"));
        assert!(kept.take(&work, "repo-b", &j2, &t2).is_none(), "another repository's folder is not handed out");
        assert!(kept.take(&work, "repo-a", &j2, &t2).is_some());
        assert_eq!(std::fs::read_to_string(j2.join("src/mark")).unwrap(), "from job 1");
        assert!(t2.is_dir());
        let (j3, t3) = (jobs.join("3-1"), jobs.join("3-1.tmp"));
        assert!(kept.take(&work, "repo-a", &j3, &t3).is_none(), "a folder in use is not handed out twice");
        // Beyond KEPT, the oldest go from the disk too.
        for i in 0..KEPT + 2 {
            let (j, t) = (jobs.join(format!("x{i}")), jobs.join(format!("x{i}.tmp")));
            std::fs::create_dir_all(&j).unwrap();
            std::fs::create_dir_all(&t).unwrap();
            kept.put(&work, "repo-c", &j, &t);
        }
        assert_eq!(std::fs::read_dir(work.join("reuse")).unwrap().count(), 2 * KEPT);
    }
}
