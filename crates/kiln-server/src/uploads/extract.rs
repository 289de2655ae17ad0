//! Unpacking uploaded archives (zip, tar, tar.gz) into a folder, and packing a
//! folder into the .tar.gz agents receive. Every entry's path is checked with
//! `kiln_core::paths::safe_relative` before anything is written: an entry that
//! would leave the folder (zip-slip), a link, or a device rejects the whole
//! upload. Sizes are counted while copying, never trusted from headers.

use kiln_core::paths::safe_relative;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("archive entry {0:?} would be written outside the upload's folder; archives may hold only relative paths without '..'")]
    Unsafe(String),
    #[error("archive entry {0:?} is a {1}; only regular files and folders are accepted")]
    NotAFile(String, &'static str),
    #[error("the unpacked upload passes its limit of {0}")]
    TooLarge(String),
    #[error("failed to read {0}")]
    Bad(String),
}

/// How much an upload may still unpack.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub bytes: u64,
    /// Entries of every kind: files, folders and metadata entries.
    pub files: u64,
}

impl Budget {
    /// Count one entry of any kind (file, folder, metadata) against the cap.
    fn take_entry(&mut self, name: &str) -> Result<(), ExtractError> {
        if self.files == 0 {
            return Err(ExtractError::TooLarge(format!("entries: files and folders alike (at {name:?})")));
        }
        self.files -= 1;
        Ok(())
    }
}

/// The archive formats an upload may use, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zip,
    Tar,
    TarGz,
}

impl Kind {
    pub fn from_name(name: &str) -> Option<Kind> {
        let n = name.to_ascii_lowercase();
        if n.ends_with(".zip") {
            Some(Kind::Zip)
        } else if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Some(Kind::TarGz)
        } else if n.ends_with(".tar") {
            Some(Kind::Tar)
        } else {
            None
        }
    }
}

/// Copy at most `budget.bytes` from `r` into a new file at `dest/rel`.
fn write_entry(dest: &Path, name: &str, r: &mut dyn Read, budget: &mut Budget) -> Result<(), ExtractError> {
    let rel = safe_relative(name).ok_or_else(|| ExtractError::Unsafe(name.to_string()))?;
    budget.take_entry(name)?;
    let path = dest.join(&rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ExtractError::Bad(format!("{name}: {e}")))?;
    }
    let mut out = File::create(&path).map_err(|e| ExtractError::Bad(format!("{name}: {e}")))?;
    let copied = std::io::copy(&mut r.take(budget.bytes + 1), &mut out).map_err(|e| ExtractError::Bad(format!("{name}: {e}")))?;
    if copied > budget.bytes {
        return Err(ExtractError::TooLarge(format!("bytes (at {name:?})")));
    }
    budget.bytes -= copied;
    Ok(())
}

fn make_dir(dest: &Path, name: &str, budget: &mut Budget) -> Result<(), ExtractError> {
    let rel = safe_relative(name).ok_or_else(|| ExtractError::Unsafe(name.to_string()))?;
    budget.take_entry(name)?;
    std::fs::create_dir_all(dest.join(rel)).map_err(|e| ExtractError::Bad(format!("{name}: {e}")))
}

/// Unpack `archive` into `dest`, spending `budget`.
pub fn unpack(archive: &Path, kind: Kind, dest: &Path, budget: &mut Budget) -> Result<(), ExtractError> {
    let f = File::open(archive).map_err(|e| ExtractError::Bad(format!("the archive: {e}")))?;
    match kind {
        Kind::Zip => unpack_zip(f, dest, budget),
        Kind::Tar => unpack_tar(BufReader::new(f), dest, budget),
        Kind::TarGz => unpack_tar(flate2::read::GzDecoder::new(BufReader::new(f)), dest, budget),
    }
}

fn unpack_zip(f: File, dest: &Path, budget: &mut Budget) -> Result<(), ExtractError> {
    let mut z = zip::ZipArchive::new(f).map_err(|e| ExtractError::Bad(format!("the zip archive: {e}")))?;
    // Check every name before writing anything.
    for i in 0..z.len() {
        let e = z.by_index_raw(i).map_err(|e| ExtractError::Bad(format!("zip entry {i}: {e}")))?;
        let name = String::from_utf8_lossy(e.name_raw()).into_owned();
        if safe_relative(&name).is_none() {
            return Err(ExtractError::Unsafe(name));
        }
        if e.is_symlink() {
            return Err(ExtractError::NotAFile(name, "symbolic link"));
        }
    }
    for i in 0..z.len() {
        let mut e = z.by_index(i).map_err(|e| ExtractError::Bad(format!("zip entry {i}: {e}")))?;
        let name = String::from_utf8_lossy(e.name_raw()).into_owned();
        if e.is_dir() {
            make_dir(dest, &name, budget)?;
        } else {
            write_entry(dest, &name, &mut e, budget)?;
        }
    }
    Ok(())
}

fn unpack_tar(r: impl Read, dest: &Path, budget: &mut Budget) -> Result<(), ExtractError> {
    use tar::EntryType;
    let mut a = tar::Archive::new(r);
    let entries = a.entries().map_err(|e| ExtractError::Bad(format!("the tar archive: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| ExtractError::Bad(format!("the tar archive: {e}")))?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => write_entry(dest, &name, &mut e, budget)?,
            EntryType::Directory => make_dir(dest, &name, budget)?,
            EntryType::Symlink => return Err(ExtractError::NotAFile(name, "symbolic link")),
            EntryType::Link => return Err(ExtractError::NotAFile(name, "hard link")),
            EntryType::Char | EntryType::Block | EntryType::Fifo => return Err(ExtractError::NotAFile(name, "device or pipe")),
            // Metadata entries (pax headers, GNU long names) carry no file of their own, but count.
            _ => budget.take_entry(&name)?,
        }
    }
    Ok(())
}

/// Every regular file under `dir`, as paths relative to it, sorted.
pub fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let t = entry.file_type()?;
            let r = rel.join(entry.file_name());
            if t.is_dir() {
                stack.push(r);
            } else if t.is_file() {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Pack the regular files under `dir` into a .tar.gz at `out`.
pub fn pack(dir: &Path, out: &Path) -> std::io::Result<()> {
    let f = File::create(out)?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    b.mode(tar::HeaderMode::Deterministic);
    for rel in walk(dir)? {
        b.append_path_with_name(dir.join(&rel), &rel)?;
    }
    let mut gz = b.into_inner()?;
    gz.flush()?;
    gz.finish()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_with(names: &[&str]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut z = zip::ZipWriter::new(f.reopen().unwrap());
        for n in names {
            z.start_file(*n, zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(b"data").unwrap();
        }
        z.finish().unwrap();
        f
    }

    #[test]
    fn folder_entries_count_toward_the_cap() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut z = zip::ZipWriter::new(f.reopen().unwrap());
        for i in 0..50 {
            z.add_directory(format!("d{i}/"), zip::write::SimpleFileOptions::default()).unwrap();
        }
        z.finish().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let mut budget = Budget { bytes: 1 << 20, files: 10 };
        let err = unpack(f.path(), Kind::Zip, dest.path(), &mut budget).unwrap_err();
        assert!(err.to_string().contains("entries: files and folders alike"), "{err}");
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 10);
    }

    #[test]
    fn zip_slip_is_refused_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let z = zip_with(&["ok.txt", "../evil.txt"]);
        let mut budget = Budget { bytes: 1 << 20, files: 100 };
        let err = unpack(z.path(), Kind::Zip, &dest, &mut budget).unwrap_err();
        assert!(matches!(err, ExtractError::Unsafe(ref n) if n == "../evil.txt"), "{err}");
        assert!(!root.path().join("evil.txt").exists());
        assert!(!dest.join("ok.txt").exists(), "nothing is written when an entry is unsafe");
    }

    #[test]
    fn tar_gz_round_trip_and_limits() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("tests/unit")).unwrap();
        std::fs::write(src.path().join("tests/unit/a.py"), "print(1)\n").unwrap();
        std::fs::write(src.path().join("b.txt"), "x".repeat(1000)).unwrap();
        let out = tempfile::tempdir().unwrap();
        let pkg = out.path().join("p.tar.gz");
        pack(src.path(), &pkg).unwrap();
        let dest = out.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let mut budget = Budget { bytes: 1 << 20, files: 100 };
        unpack(&pkg, Kind::TarGz, &dest, &mut budget).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("tests/unit/a.py")).unwrap(), "print(1)\n");
        assert_eq!(walk(&dest).unwrap().len(), 2);
        let mut small = Budget { bytes: 500, files: 100 };
        let dest2 = out.path().join("dest2");
        assert!(matches!(unpack(&pkg, Kind::TarGz, &dest2, &mut small), Err(ExtractError::TooLarge(_))));
        let mut few = Budget { bytes: 1 << 20, files: 1 };
        let dest3 = out.path().join("dest3");
        assert!(matches!(unpack(&pkg, Kind::TarGz, &dest3, &mut few), Err(ExtractError::TooLarge(_))));
    }

    #[test]
    fn tar_with_parent_path_or_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        // A header whose name is written raw (the tar crate's builder refuses '..' itself).
        let mut data = Vec::new();
        {
            let mut b = tar::Builder::new(&mut data);
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..10].copy_from_slice(b"../evil.sh");
            h.set_size(4);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, &b"evil"[..]).unwrap();
            b.finish().unwrap();
        }
        let t = root.path().join("a.tar");
        std::fs::write(&t, &data).unwrap();
        let mut budget = Budget { bytes: 1 << 20, files: 100 };
        assert!(matches!(unpack(&t, Kind::Tar, &dest, &mut budget), Err(ExtractError::Unsafe(_))));
        assert!(!root.path().join("evil.sh").exists());

        let mut data = Vec::new();
        {
            let mut b = tar::Builder::new(&mut data);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "link", "/etc").unwrap();
            b.finish().unwrap();
        }
        std::fs::write(&t, &data).unwrap();
        assert!(matches!(unpack(&t, Kind::Tar, &dest, &mut budget), Err(ExtractError::NotAFile(_, _))));
    }
}
