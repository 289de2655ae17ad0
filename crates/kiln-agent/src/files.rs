//! Finding files by glob in a working copy (not in `.git`): JUnit reports, artifacts, the
//! files of a `split: files` list.

use std::path::Path;

/// Files under `root` (not in `.git`) whose path relative to it matches `glob` (`**` crosses
/// folders), sorted.
pub fn find_files(root: &Path, glob: &str) -> Vec<String> {
    let glob = glob.trim_start_matches("./");
    let mut out = Vec::new();
    walk(root, root, &mut |rel| {
        if kiln_core::labels::path_glob_match(glob, rel) {
            out.push(rel.to_string());
        }
    });
    out.sort();
    out
}

/// Call `f` with the path relative to `root` of every file under `dir`, in name order, not
/// descending into `.git`.
pub(crate) fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&str)) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if e.file_name() != ".git" {
                walk(root, &path, f);
            }
        } else if ft.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                f(&rel.to_string_lossy());
            }
        }
    }
}
