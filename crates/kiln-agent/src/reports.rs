//! Finding files by glob in a working copy, and uploading a job's (or a batch's) JUnit
//! reports: every file under its `$KILN_JUNIT_DIR`, plus those matching `tests.reports`.

use crate::testloop::{Body, QueueError, TestQueue};
use kiln_wire::agent::JUNIT_LIMIT;
use std::path::{Path, PathBuf};

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

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&str)) {
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

/// Every file under `dir`, as (label, path); the label is `prefix/relative-path`. A `dir` that
/// is a link (a step's, pointing elsewhere) holds nothing.
fn files_under(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return out;
    }
    walk(dir, dir, &mut |rel| out.push((format!("{prefix}/{rel}"), dir.join(rel))));
    out
}

/// Upload the reports of a batch (or of a plain job when `batch` is `None`): the files under
/// `junit_dir`, then the files the `reports` globs match in the working copy (removed once
/// sent, so the next batch does not send them again). Returns the labels sent; a report
/// refused (malformed, too large) is logged, the others still go, and the first refusal is
/// returned.
pub(crate) async fn upload_reports<Q: TestQueue>(q: &Q, b: &Body<'_>, batch: Option<i64>, junit_dir: &Path, reports: &[String]) -> Result<Vec<String>, QueueError> {
    let prefix = match batch {
        Some(id) => format!("junit/batch-{id}"),
        None => "junit".to_string(),
    };
    let mut files = files_under(junit_dir, &prefix);
    let mut kept = Vec::new();
    for glob in reports {
        for rel in find_files(b.src, glob) {
            let label = match batch {
                Some(id) => format!("{rel} (batch {id})"),
                None => rel.clone(),
            };
            kept.push(b.src.join(&rel));
            files.push((label, b.src.join(&rel)));
        }
    }
    let mut sent = Vec::new();
    let mut refused: Option<String> = None;
    for (label, path) in files {
        let label = kiln_core::mask::mask_secrets(&label, b.secrets);
        let data = match crate::sandbox::read_own_file(&path, JUNIT_LIMIT as u64 + 1) {
            Ok(d) => d,
            Err(e) => {
                refused.get_or_insert(format!("failed to read JUnit report {label}: {e}"));
                continue;
            }
        };
        if data.len() > JUNIT_LIMIT {
            let size = std::fs::symlink_metadata(&path).map_or(data.len() as u64, |m| m.len());
            let msg = format!("JUnit report {label} is {size} bytes, over the server's limit of {JUNIT_LIMIT} bytes: split it or keep less output in it");
            b.say_line(&msg).await;
            refused.get_or_insert(msg);
            continue;
        }
        let data = kiln_core::mask::mask_bytes(&data, b.secrets);
        match q.report(batch, &label, data).await {
            Ok(_) => sent.push(label),
            Err(QueueError::Refused(e)) => {
                b.say_line(&e).await;
                refused.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    for p in kept {
        let _ = std::fs::remove_file(p);
    }
    match refused {
        Some(e) => Err(QueueError::Refused(e)),
        None => Ok(sent),
    }
}
