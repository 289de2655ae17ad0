//! The files a kiln keeps beside its database, and their copy by `kiln db copy --data-to`:
//! under the files folder (`--files`, by default the data folder) `logs/` (log bytes) and
//! `artifacts/`; under the data folder `packages/` (uploaded runs), `secret-key` (what seals
//! project secrets), `agent-token` and `admin-token` (the generated secrets). `repos/` (the
//! git mirrors) is a cache, fetched again, never copied. Each tree is copied into the new
//! kiln's empty folder, synced, and counted (files and bytes) on both sides; the source is
//! checked against what its rows refer to and the target for emptiness before anything is
//! written, and a copy that fails removes what it made.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kiln_store::FilesNeeded;

/// Log bytes, under the files folder (`kiln_store::LogFiles`).
pub const LOGS: &str = "logs";
/// Kept artifacts, under the files folder (`crate::artifacts`).
pub const ARTIFACTS: &str = "artifacts";
/// Artifact uploads still arriving, at the top of `artifacts/`: never copied.
pub const PARTIAL: &str = ".partial";
/// Uploaded runs' packages, under the data folder (`crate::uploads`).
pub const PACKAGES: &str = "packages";
/// Packages still being received, at the top of `packages/` (`tmp-…`): never copied.
pub const PACKAGE_STAGING: &str = "tmp-";
/// The key that seals project secrets, in the data folder (`crate::at_rest`).
pub const SECRET_KEY: &str = "secret-key";
/// The agents' shared secret and the first admin's token, generated into the data folder.
pub const AGENT_TOKEN: &str = "agent-token";
pub const ADMIN_TOKEN: &str = "admin-token";

/// A kiln's two folders: `data` (`--data`) and `files` (`--files`, often the same).
#[derive(Debug, Clone)]
pub struct Folders {
    pub data: PathBuf,
    pub files: PathBuf,
}

/// One tree (or one kept secret) as copied: files and bytes on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// `logs/`, `artifacts/`, `packages/`, `secret-key`, `agent-token` or `admin-token`.
    pub what: String,
    pub source_files: u64,
    pub source_bytes: u64,
    pub target_files: u64,
    pub target_bytes: u64,
}

/// What a copy made, to take back when the rows cannot follow.
#[derive(Debug, Default)]
pub struct Copied {
    pub counts: Vec<Counted>,
    /// Folders and files this copy made (folders removed whole).
    made: Vec<PathBuf>,
    /// Folders that were there, empty: emptied again.
    filled: Vec<PathBuf>,
}

impl Copied {
    /// Remove everything this copy made.
    pub fn undo(&self) {
        for p in self.made.iter().rev() {
            let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
        }
        for d in &self.filled {
            if let Ok(entries) = std::fs::read_dir(d) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if e.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                }
            }
        }
    }
}

/// A tree: its name, where it is, and which of the files the rows refer to it holds.
struct Tree {
    name: &'static str,
    path: PathBuf,
    /// Entries at its top that are not copied (work in progress).
    skip: fn(&str) -> bool,
}

impl Folders {
    fn trees(&self) -> [Tree; 3] {
        [
            Tree { name: LOGS, path: self.files.join(LOGS), skip: |_| false },
            Tree { name: ARTIFACTS, path: self.files.join(ARTIFACTS), skip: |n| n == PARTIAL },
            Tree { name: PACKAGES, path: self.data.join(PACKAGES), skip: |n| n.starts_with(PACKAGE_STAGING) },
        ]
    }
}

fn needs(needed: &FilesNeeded, tree: &str) -> bool {
    match tree {
        LOGS => needed.logs,
        ARTIFACTS => needed.artifacts,
        _ => needed.packages,
    }
}

/// Check the source against what its rows refer to (`needed`) and the target for emptiness,
/// before any row or file is written. Returns notes for the user (a key kept outside the data
/// folder, which cannot be copied).
pub fn check(from: &Folders, to: &Folders, needed: &FilesNeeded) -> Result<Vec<String>, String> {
    if !from.data.is_dir() {
        return Err(format!("the source's data folder {} is not a folder: name it with --data-from", from.data.display()));
    }
    for (src, dst) in from.trees().into_iter().zip(to.trees()) {
        match std::fs::read_dir(&src.path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound && !needs(needed, src.name) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let flag = if src.name == PACKAGES { "--data-from" } else { "--files-from" };
                return Err(format!(
                    "the source's database has {} but {} is missing: name the old servers' {} with {flag}",
                    src.name,
                    src.path.display(),
                    if src.name == PACKAGES { "data folder" } else { "files folder (their --files)" }
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e} (run the copy as the user the servers ran as)", src.path.display())),
        }
        if overlaps(&src.path, &dst.path) {
            return Err(format!(
                "{}/ would be copied onto or into itself ({} and {}): name another --data-to or --files-to (or, to keep using these folders, copy the rows only, without --data-to)",
                src.name,
                src.path.display(),
                dst.path.display()
            ));
        }
        match std::fs::read_dir(&dst.path).map(|mut entries| entries.next().is_some()) {
            Ok(true) => {
                return Err(format!("{} is not empty: the copy goes into empty folders (name a new --data-to or --files-to, or empty it with its servers stopped)", dst.path.display()));
            }
            Ok(false) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot use {} as the target: {e}", dst.path.display())),
        }
    }
    let mut notes = Vec::new();
    for name in [SECRET_KEY, AGENT_TOKEN, ADMIN_TOKEN] {
        let (src, dst) = (from.data.join(name), to.data.join(name));
        let theirs = read_kept(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        let ours = read_kept(&dst).map_err(|e| format!("cannot read {}: {e}", dst.display()))?;
        if let (Some(a), Some(b)) = (&theirs, &ours) {
            if a != b {
                return Err(format!(
                    "{} holds another {name} than the source's {}: the copy would not work with it (name a new --data-to, or remove that file if no kiln uses it)",
                    dst.display(),
                    src.display()
                ));
            }
        }
        if name == SECRET_KEY && theirs.is_none() && needed.sealed_secrets {
            notes.push(format!(
                "the project secrets are sealed with a key that is not in {} (KILN_SECRET_KEY or --secret-key-file): give the new servers the same key",
                from.data.display()
            ));
        }
    }
    Ok(notes)
}

/// A kept secret's text (trimmed, as the server reads it), or None when there is none.
fn read_kept(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copy every tree and kept secret from `from` into `to` (after [`check`]), sync them, and
/// count both sides; a difference, or any error, removes what was made and is an error.
pub fn copy(from: &Folders, to: &Folders) -> Result<Copied, String> {
    let mut done = Copied::default();
    match copy_all(from, to, &mut done) {
        Ok(()) => Ok(done),
        Err(e) => {
            done.undo();
            Err(e)
        }
    }
}

fn copy_all(from: &Folders, to: &Folders, done: &mut Copied) -> Result<(), String> {
    for (src, dst) in from.trees().into_iter().zip(to.trees()) {
        if src.path.is_dir() {
            if dst.path.exists() {
                done.filled.push(dst.path.clone());
            } else {
                make_dir(&dst.path).map_err(|e| format!("failed to make {}: {e}", dst.path.display()))?;
                done.made.push(dst.path.clone());
            }
            copy_tree(&src.path, &dst.path, src.skip).map_err(|e| format!("failed to copy {}/ into {}: {e}", src.name, dst.path.display()))?;
        }
        let (sf, sb) = count_tree(&src.path, src.skip).map_err(|e| format!("failed to count {}: {e}", src.path.display()))?;
        let (tf, tb) = count_tree(&dst.path, dst.skip).map_err(|e| format!("failed to count {}: {e}", dst.path.display()))?;
        done.counts.push(Counted { what: format!("{}/", src.name), source_files: sf, source_bytes: sb, target_files: tf, target_bytes: tb });
    }
    for name in [SECRET_KEY, AGENT_TOKEN, ADMIN_TOKEN] {
        let (src, dst) = (from.data.join(name), to.data.join(name));
        let mut c = Counted { what: name.into(), source_files: 0, source_bytes: 0, target_files: 0, target_bytes: 0 };
        if let Ok(bytes) = std::fs::read(&src) {
            if !dst.exists() {
                if !to.data.exists() {
                    make_dir(&to.data).map_err(|e| format!("failed to make {}: {e}", to.data.display()))?;
                    done.made.push(to.data.clone());
                }
                write_private(&dst, &bytes).map_err(|e| format!("failed to write {}: {e}", dst.display()))?;
                done.made.push(dst.clone());
            }
            // The file is the server's own: private, whoever made it.
            std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(|e| format!("failed to make {} private: {e}", dst.display()))?;
            (c.source_files, c.source_bytes) = (1, bytes.len() as u64);
            if read_kept(&dst).ok().flatten() == read_kept(&src).ok().flatten() {
                (c.target_files, c.target_bytes) = (1, std::fs::metadata(&dst).map_or(0, |m| m.len()));
            }
        }
        done.counts.push(c);
    }
    if let Some(c) = done.counts.iter().find(|c| c.source_files != c.target_files || (c.what.ends_with('/') && c.source_bytes != c.target_bytes)) {
        return Err(format!(
            "{} differs after the copy: {} files ({} bytes) in the source, {} files ({} bytes) in the target",
            c.what, c.source_files, c.source_bytes, c.target_files, c.target_bytes
        ));
    }
    Ok(())
}

/// Whether one path is the other or inside it (compared where they resolve to).
fn overlaps(a: &Path, b: &Path) -> bool {
    let (a, b) = (resolved(a), resolved(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// `path` with its nearest existing ancestor resolved (links and `..`), the rest appended.
fn resolved(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut at = path.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return path,
        }
    }
}

/// Make a folder (and its parents) private (0700), as the server makes its own.
pub fn make_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Copy `src` into the existing folder `dst`, each file synced, then the folder. A symbolic
/// link (kiln makes none) is refused rather than followed or left out unsaid.
fn copy_tree(src: &Path, dst: &Path, skip_top: fn(&str) -> bool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        if skip_top(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if kind.is_dir() {
            make_dir(&to)?;
            copy_tree(&entry.path(), &to, |_| false)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to)?;
            std::fs::File::open(&to)?.sync_all()?;
        } else {
            return Err(std::io::Error::other(format!("{} is not a file or a folder (a link?): kiln makes none there; remove it, or copy it by hand", entry.path().display())));
        }
    }
    std::fs::File::open(dst)?.sync_all()
}

/// Regular files and their bytes under `dir` (none when it is missing).
fn count_tree(dir: &Path, skip_top: fn(&str) -> bool) -> std::io::Result<(u64, u64)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let mut n = (0, 0);
    for entry in entries {
        let entry = entry?;
        if skip_top(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let (f, b) = count_tree(&entry.path(), |_| false)?;
            n = (n.0 + f, n.1 + b);
        } else {
            n = (n.0 + 1, n.1 + entry.metadata()?.len());
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kiln(dir: &Path) -> Folders {
        Folders { data: dir.join("data"), files: dir.join("files") }
    }

    fn put(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const ALL: FilesNeeded = FilesNeeded { logs: true, artifacts: true, packages: true, sealed_secrets: true };

    #[test]
    fn every_tree_and_kept_secret_is_copied_and_counted_but_not_work_in_progress() {
        let t = tempfile::tempdir().unwrap();
        let from = kiln(&t.path().join("old"));
        put(from.files.join("logs/7/1.sealed"), "log bytes");
        put(from.files.join("logs/7/1.index"), "ix");
        put(from.files.join("artifacts/7/out/a.bin"), "artifact");
        put(from.files.join("artifacts/7/.partial/named-so"), "an artifact named .partial");
        put(from.files.join("artifacts/.partial/x"), "half");
        put(from.data.join("packages/p.tar.gz"), "pkg");
        put(from.data.join("packages/tmp-1234/part"), "half a package");
        put(from.data.join("secret-key"), "0123456789abcdef\n");
        put(from.data.join("agent-token"), "agent-secret");
        put(from.data.join("repos/1.git/HEAD"), "a cache");
        let to = kiln(&t.path().join("new"));
        assert_eq!(check(&from, &to, &ALL).unwrap(), Vec::<String>::new());
        let counts = copy(&from, &to).unwrap().counts;
        let by = |w: &str| counts.iter().find(|c| c.what == w).unwrap().clone();
        assert_eq!((by("logs/").target_files, by("logs/").target_bytes), (2, 11));
        assert_eq!((by("artifacts/").target_files, by("artifacts/").target_bytes), (2, 34));
        assert_eq!(by("packages/").target_files, 1);
        assert_eq!((by("secret-key").target_files, by("agent-token").target_files, by("admin-token").source_files), (1, 1, 0));
        assert_eq!(std::fs::read_to_string(to.files.join("artifacts/7/out/a.bin")).unwrap(), "artifact");
        assert!(!to.files.join("artifacts/.partial").exists() && !to.data.join("packages/tmp-1234").exists() && !to.data.join("repos").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(to.data.join("secret-key")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(to.files.join("logs/7")).unwrap().permissions().mode() & 0o777, 0o700);
        // Copying again into the same folders is refused: they are not empty.
        let again = check(&from, &to, &ALL).unwrap_err();
        assert!(again.contains("is not empty"), "{again}");
    }

    #[test]
    fn the_target_and_the_source_are_checked_before_anything_is_written() {
        let t = tempfile::tempdir().unwrap();
        let from = kiln(&t.path().join("old"));
        put(from.data.join("secret-key"), "the source's key");
        put(from.files.join("logs/1/1.sealed"), "x");
        let to = kiln(&t.path().join("new"));
        put(to.data.join("secret-key"), "another key");
        let e = check(&from, &to, &FilesNeeded::default()).unwrap_err();
        assert!(e.contains("another secret-key") && e.contains("--data-to"), "{e}");
        // The same key already there is fine (as the server reads it: a line end aside).
        put(to.data.join("secret-key"), "the source's key\n");
        check(&from, &to, &FilesNeeded::default()).unwrap();
        // A folder onto or into itself is refused.
        for files in [from.files.clone(), from.files.join("logs/1/below")] {
            let e = check(&from, &Folders { data: t.path().join("elsewhere"), files }, &FilesNeeded::default()).unwrap_err();
            assert!(e.contains("onto or into itself"), "{e}");
        }
        // Rows that refer to artifacts, with no artifacts folder in the source: its files
        // folder was not named.
        let e = check(&from, &to, &FilesNeeded { artifacts: true, ..FilesNeeded::default() }).unwrap_err();
        assert!(e.contains("has artifacts") && e.contains("--files-from"), "{e}");
        // A key kept outside the data folder is named in a note.
        std::fs::remove_file(from.data.join("secret-key")).unwrap();
        let notes = check(&from, &to, &FilesNeeded { sealed_secrets: true, ..FilesNeeded::default() }).unwrap();
        assert!(notes.iter().any(|n| n.contains("KILN_SECRET_KEY")), "{notes:?}");
    }

    #[test]
    fn a_copy_that_fails_removes_what_it_made() {
        let t = tempfile::tempdir().unwrap();
        let from = kiln(&t.path().join("old"));
        put(from.files.join("logs/1/1.sealed"), "x");
        put(from.data.join("secret-key"), "k");
        std::os::unix::fs::symlink("/etc/passwd", from.files.join("logs/1/2.sealed")).unwrap();
        let to = kiln(&t.path().join("new"));
        std::fs::create_dir_all(to.files.join("logs")).unwrap(); // there and empty: emptied again
        check(&from, &to, &FilesNeeded { logs: true, ..FilesNeeded::default() }).unwrap();
        let e = copy(&from, &to).unwrap_err();
        assert!(e.contains("2.sealed") && e.contains("link"), "{e}");
        assert_eq!(std::fs::read_dir(to.files.join("logs")).unwrap().count(), 0);
        assert!(!to.data.join("secret-key").exists());
    }
}
