//! The files a kiln keeps beside its database, and their copy by `kiln db copy --data-to`:
//! under the files folder (`--files`, by default the data folder) `logs/` (log bytes) and
//! `artifacts/`; under the data folder `packages/` (uploaded runs) and `secret-key` (what
//! seals project secrets). Each tree is copied into the new kiln's empty folder and counted
//! (files and bytes) on both sides; the target is checked before anything is written.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Log bytes, under the files folder (`kiln_store::LogFiles`).
pub const LOGS: &str = "logs";
/// Kept artifacts, under the files folder (`crate::artifacts`).
pub const ARTIFACTS: &str = "artifacts";
/// Artifact uploads still arriving, under `artifacts/`: never copied.
pub const PARTIAL: &str = ".partial";
/// Uploaded runs' packages, under the data folder (`crate::uploads`).
pub const PACKAGES: &str = "packages";
/// The key that seals project secrets, in the data folder (`crate::at_rest`).
pub const SECRET_KEY: &str = "secret-key";

/// A kiln's two folders: `data` (`--data`) and `files` (`--files`, often the same).
#[derive(Debug, Clone)]
pub struct Folders {
    pub data: PathBuf,
    pub files: PathBuf,
}

/// One tree (or the key) as copied: files and bytes on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// `logs/`, `artifacts/`, `packages/` or `secret-key`.
    pub what: String,
    pub source_files: u64,
    pub source_bytes: u64,
    pub target_files: u64,
    pub target_bytes: u64,
}

impl Folders {
    fn trees(&self) -> [(&'static str, PathBuf); 3] {
        [(LOGS, self.files.join(LOGS)), (ARTIFACTS, self.files.join(ARTIFACTS)), (PACKAGES, self.data.join(PACKAGES))]
    }
    fn key(&self) -> PathBuf {
        self.data.join(SECRET_KEY)
    }
}

/// Why the files cannot be copied from `from` into `to`; checked before any row or file is
/// written. Each target tree must be missing or empty, and a secret key already there must be
/// the source's own (another one could not open the copied secrets).
pub fn check_target(from: &Folders, to: &Folders) -> Result<(), String> {
    if !from.data.is_dir() {
        return Err(format!("the source's data folder {} is not a folder (name it with --data-from)", from.data.display()));
    }
    for ((name, src), (_, dst)) in from.trees().into_iter().zip(to.trees()) {
        if same_place(&src, &dst) {
            return Err(format!("{name}/ would be copied onto itself ({}): name another --data-to or --files-to", dst.display()));
        }
        if has_entries(&dst) {
            return Err(format!(
                "{} is not empty: the copy goes into empty folders (name a new --data-to or --files-to, or empty it with its servers stopped)",
                dst.display()
            ));
        }
    }
    let (src_key, dst_key) = (from.key(), to.key());
    if src_key.is_file() && dst_key.exists() && std::fs::read(&src_key).ok() != std::fs::read(&dst_key).ok() {
        return Err(format!(
            "{} is another key than the source's {}: the copied project secrets could not be opened with it (name a new --data-to, or remove that key if no kiln uses it)",
            dst_key.display(),
            src_key.display()
        ));
    }
    Ok(())
}

/// Copy every tree and the secret key from `from` into `to` (call [`check_target`] first),
/// then count both sides; a difference is an error. Symbolic links are neither copied nor
/// counted (kiln makes none), nor are half-received artifacts.
pub fn copy(from: &Folders, to: &Folders) -> Result<Vec<Counted>, String> {
    let mut out = Vec::new();
    for ((name, src), (_, dst)) in from.trees().into_iter().zip(to.trees()) {
        if src.is_dir() {
            copy_tree(&src, &dst).map_err(|e| format!("failed to copy {}/ into {}: {e}", name, dst.display()))?;
        }
        let (sf, sb) = count_tree(&src);
        let (tf, tb) = count_tree(&dst);
        out.push(Counted { what: format!("{name}/"), source_files: sf, source_bytes: sb, target_files: tf, target_bytes: tb });
    }
    let (src_key, dst_key) = (from.key(), to.key());
    let mut key = Counted { what: SECRET_KEY.into(), source_files: 0, source_bytes: 0, target_files: 0, target_bytes: 0 };
    if let Ok(bytes) = std::fs::read(&src_key) {
        if !dst_key.exists() {
            make_dir(&to.data).map_err(|e| format!("failed to make {}: {e}", to.data.display()))?;
            write_private(&dst_key, &bytes).map_err(|e| format!("failed to write {}: {e}", dst_key.display()))?;
        }
        key.source_files = 1;
        key.source_bytes = bytes.len() as u64;
        if std::fs::read(&dst_key).ok().as_deref() == Some(&bytes[..]) {
            key.target_files = 1;
            key.target_bytes = bytes.len() as u64;
        }
    }
    out.push(key);
    if let Some(c) = out.iter().find(|c| (c.source_files, c.source_bytes) != (c.target_files, c.target_bytes)) {
        return Err(format!(
            "{} differs after the copy: {} files ({} bytes) in the source, {} files ({} bytes) in the target",
            c.what, c.source_files, c.source_bytes, c.target_files, c.target_bytes
        ));
    }
    Ok(out)
}

fn same_place(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false)
}

/// Folders are made private (0700), as the server makes its own.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn skipped(name: &std::ffi::OsStr) -> bool {
    name == PARTIAL
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    make_dir(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        if skipped(&entry.file_name()) {
            continue;
        }
        let kind = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Regular files and their bytes under `dir` (none when it is missing).
fn count_tree(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    let mut n = (0, 0);
    for entry in entries.flatten() {
        if skipped(&entry.file_name()) {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let (f, b) = count_tree(&entry.path());
            n = (n.0 + f, n.1 + b);
        } else if kind.is_file() {
            n = (n.0 + 1, n.1 + entry.metadata().map_or(0, |m| m.len()));
        }
    }
    n
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

    #[test]
    fn every_tree_and_the_key_are_copied_and_counted_but_not_half_uploads() {
        let t = tempfile::tempdir().unwrap();
        let from = kiln(&t.path().join("old"));
        put(from.files.join("logs/7/1.sealed"), "log bytes");
        put(from.files.join("logs/7/1.index"), "ix");
        put(from.files.join("artifacts/7/out/a.bin"), "artifact");
        put(from.files.join("artifacts/.partial/x"), "half");
        put(from.data.join("packages/p.tar.gz"), "pkg");
        put(from.data.join("secret-key"), "0123456789abcdef");
        let to = kiln(&t.path().join("new"));
        check_target(&from, &to).unwrap();
        let counts = copy(&from, &to).unwrap();
        let by = |w: &str| counts.iter().find(|c| c.what == w).unwrap().clone();
        assert_eq!((by("logs/").target_files, by("logs/").target_bytes), (2, 11));
        assert_eq!((by("artifacts/").target_files, by("artifacts/").target_bytes), (1, 8));
        assert_eq!(by("packages/").target_files, 1);
        assert_eq!(by("secret-key").target_files, 1);
        assert_eq!(std::fs::read_to_string(to.files.join("artifacts/7/out/a.bin")).unwrap(), "artifact");
        assert!(!to.files.join("artifacts/.partial").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(to.data.join("secret-key")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(to.files.join("logs")).unwrap().permissions().mode() & 0o777, 0o700);
        // Copying again into the same folders is refused: they are not empty.
        let again = check_target(&from, &to).unwrap_err();
        assert!(again.contains("is not empty"), "{again}");
    }

    #[test]
    fn another_key_in_the_target_is_refused_before_anything_is_copied() {
        let t = tempfile::tempdir().unwrap();
        let from = kiln(&t.path().join("old"));
        put(from.data.join("secret-key"), "the source's key");
        put(from.files.join("logs/1/1.sealed"), "x");
        let to = kiln(&t.path().join("new"));
        put(to.data.join("secret-key"), "another key");
        let e = check_target(&from, &to).unwrap_err();
        assert!(e.contains("another key") && e.contains("--data-to"), "{e}");
        // The same key already there is fine.
        put(to.data.join("secret-key"), "the source's key");
        check_target(&from, &to).unwrap();
        // A folder onto itself is refused.
        let e = check_target(&from, &Folders { data: t.path().join("elsewhere"), files: from.files.clone() }).unwrap_err();
        assert!(e.contains("onto itself"), "{e}");
    }
}
