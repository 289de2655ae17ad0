//! What a pristine checkout was when the agent made it, to tell whether anything changed it
//! since. An agent without a sandbox (`--isolation none`) runs steps that can write anywhere
//! it can, its pristine checkouts included; before and after a job's working copy is made
//! from one, the agent checks its seal and makes it again when it no longer holds.
//!
//! A seal lists every entry under the folder (never following a link) with its inode, type
//! and mode, size and change time. The change time (`ctime`) is set by the kernel on every
//! write, chmod, rename or link of an inode, and no system call sets it back, so a step cannot
//! change a file and hide it, even with `touch -r`; a new or removed entry changes the list.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The state of a folder's entries when it was sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal(Vec<Entry>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    path: PathBuf,
    ino: u64,
    mode: u32,
    size: u64,
    ctime: (i64, i64),
}

impl Seal {
    /// Seal `root` as it is now.
    pub fn of(root: &Path) -> std::io::Result<Seal> {
        let mut entries = Vec::new();
        walk(root, Path::new(""), &mut entries)?;
        Ok(Seal(entries))
    }

    /// `root` is exactly as it was sealed (false too when it cannot be read).
    pub fn holds(&self, root: &Path) -> bool {
        Seal::of(root).is_ok_and(|now| now == *self)
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<Entry>) -> std::io::Result<()> {
    let path = root.join(rel);
    let m = std::fs::symlink_metadata(&path)?;
    out.push(Entry { path: rel.to_path_buf(), ino: m.ino(), mode: m.mode(), size: m.size(), ctime: (m.ctime(), m.ctime_nsec()) });
    if m.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&path)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            walk(root, &rel.join(name), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/.git")).unwrap();
        std::fs::write(d.path().join("src/a.txt"), "alpha\n").unwrap();
        std::fs::write(d.path().join("src/.git/config"), "[core]\n").unwrap();
        std::os::unix::fs::symlink("a.txt", d.path().join("src/link")).unwrap();
        d
    }

    #[test]
    fn an_untouched_folder_holds_its_seal_even_after_being_read() {
        let d = tree();
        let seal = Seal::of(d.path()).unwrap();
        let _ = std::fs::read(d.path().join("src/a.txt")).unwrap();
        assert!(seal.holds(d.path()));
    }

    #[test]
    fn every_kind_of_change_breaks_the_seal() {
        type Change = fn(&Path);
        let changes: [(&str, Change); 6] = [
            ("same size, time put back", |p| {
                let f = p.join("src/a.txt");
                let before = std::fs::metadata(&f).unwrap().modified().unwrap();
                std::fs::write(&f, "ALPHA\n").unwrap();
                std::fs::File::options().write(true).open(&f).unwrap().set_modified(before).unwrap();
            }),
            ("a new file", |p| std::fs::write(p.join("src/poison.txt"), "x").unwrap()),
            ("a removed file", |p| std::fs::remove_file(p.join("src/a.txt")).unwrap()),
            ("a chmod", |p| std::fs::set_permissions(p.join("src/a.txt"), std::fs::Permissions::from_mode(0o777)).unwrap()),
            ("a hook in .git", |p| std::fs::write(p.join("src/.git/config"), "[core]\n\tfsmonitor = x\n").unwrap()),
            ("a link pointed elsewhere", |p| {
                std::fs::remove_file(p.join("src/link")).unwrap();
                std::os::unix::fs::symlink("/etc/passwd", p.join("src/link")).unwrap();
            }),
        ];
        for (what, change) in changes {
            let d = tree();
            let seal = Seal::of(d.path()).unwrap();
            // Some file systems keep the change time to the tick: let it move on.
            std::thread::sleep(std::time::Duration::from_millis(20));
            change(d.path());
            assert!(!seal.holds(d.path()), "{what} went unnoticed");
        }
    }

    #[test]
    fn a_hard_link_taken_from_outside_breaks_the_seal() {
        // A step could link a pristine file into its own folder and write through the link
        // later; taking the link already changes the inode (its link count, so its ctime).
        let (d, outside) = (tree(), tempfile::tempdir().unwrap());
        let seal = Seal::of(d.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::hard_link(d.path().join("src/a.txt"), outside.path().join("taken")).unwrap();
        assert!(!seal.holds(d.path()));
    }

    #[test]
    fn a_missing_folder_holds_no_seal() {
        let d = tree();
        let seal = Seal::of(d.path()).unwrap();
        let gone = d.path().to_path_buf();
        drop(d);
        assert!(!seal.holds(&gone));
    }
}
