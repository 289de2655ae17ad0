//! Uploading a job's (or a batch's) JUnit reports: every file under its `$KILN_JUNIT_DIR`,
//! plus those matching `tests.reports`.

use crate::executor::OutputTx;
use crate::files::{find_files, walk};
use crate::queue::{QueueError, TestQueue};
use kiln_wire::agent::JUNIT_LIMIT;
use std::path::{Path, PathBuf};

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
///
/// `src` is the working copy, `secrets` are masked in labels and reports, and refusals are
/// said on `out`, the job's log.
pub(crate) async fn upload_reports<Q: TestQueue>(q: &Q, out: &OutputTx, src: &Path, secrets: &[String], batch: Option<i64>, junit_dir: &Path, reports: &[String]) -> Result<Vec<String>, QueueError> {
    let prefix = match batch {
        Some(id) => format!("junit/batch-{id}"),
        None => "junit".to_string(),
    };
    let mut files = files_under(junit_dir, &prefix);
    let mut kept = Vec::new();
    for glob in reports {
        for rel in find_files(src, glob) {
            let label = match batch {
                Some(id) => format!("{rel} (batch {id})"),
                None => rel.clone(),
            };
            kept.push(src.join(&rel));
            files.push((label, src.join(&rel)));
        }
    }
    let mut sent = Vec::new();
    let mut refused: Option<String> = None;
    for (label, path) in files {
        let label = kiln_core::mask::mask_secrets(&label, secrets);
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
            say_line(out, &msg).await;
            refused.get_or_insert(msg);
            continue;
        }
        let data = kiln_core::mask::mask_bytes(&data, secrets);
        match q.report(batch, &label, data).await {
            Ok(_) => sent.push(label),
            Err(QueueError::Refused(e)) => {
                say_line(out, &e).await;
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

/// A line from kiln itself in the job's log (as `Body::say_line` writes it).
async fn say_line(out: &OutputTx, text: &str) {
    let _ = out.send(format!("kiln: {text}\n").into_bytes()).await;
}
