//! A job's artifacts on the agent: before the steps, the artifacts of the jobs it
//! needs are fetched into `$KILN_ARTIFACTS_IN/<job>/<name>`; after them, the files
//! matching its `artifacts:` globs (in the working copy, symlinks skipped) are
//! uploaded one by one, streamed, when `when` says so. A failed upload is retried
//! with backoff; a refused one (too big, a bad name) is noted in the log.

use crate::client::{backoff, CallError, Client};
use crate::executor::{Outcome, OutputTx};
use kiln_wire::agent::{ArtifactsAssignment, ArtifactsWhen, JobAssignment};
use std::path::Path;

const TRIES: u32 = 6;

/// Whether artifacts go up after steps that ended so.
pub(crate) fn wanted(when: ArtifactsWhen, outcome: &Outcome) -> bool {
    let passed = matches!(outcome, Outcome::Passed);
    match (when, outcome) {
        (_, Outcome::Cancelled) => false,
        (ArtifactsWhen::Always, _) => true,
        (ArtifactsWhen::OnSuccess, _) => passed,
        (ArtifactsWhen::OnFailure, _) => !passed,
    }
}

async fn say(out: &OutputTx, text: String) {
    let _ = out.send(text.into_bytes()).await;
}

/// Call `f` until it succeeds, is refused, or the tries are spent.
async fn retrying<T, F, Fut>(mut f: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut failures = 0;
    loop {
        match f().await {
            Err(CallError::Unreachable(e)) if failures + 1 < TRIES => {
                failures += 1;
                tracing::warn!("artifact transfer failed ({e}); retrying");
                tokio::time::sleep(backoff(failures)).await;
            }
            other => return other,
        }
    }
}

/// Upload the files `spec` names from `src`. Returns false if the server took the attempt back.
pub async fn upload(client: &Client, job: &JobAssignment, spec: &ArtifactsAssignment, src: &Path, outcome: &Outcome, out: &OutputTx) -> bool {
    if !wanted(spec.when, outcome) {
        return true;
    }
    let mut names: Vec<String> = spec.paths.iter().flat_map(|g| crate::files::find_files(src, g)).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        say(out, format!("kiln: no files match the artifacts {:?}\n", spec.paths)).await;
        return true;
    }
    for name in names {
        let path = src.join(&name);
        match retrying(|| client.put_artifact(job.job_id, job.attempt, &name, &path)).await {
            Ok(_) => say(out, format!("kiln: kept artifact {name} ({} bytes)\n", std::fs::metadata(&path).map_or(0, |m| m.len()))).await,
            Err(CallError::Stale(_)) => return false,
            Err(e) => say(out, format!("kiln: artifact {name} not kept: {e}\n")).await,
        }
    }
    true
}

/// Fetch the artifacts of the jobs this one needs into `dest/<job>/<name>`.
pub async fn fetch_inputs(client: &Client, job: &JobAssignment, dest: &Path, out: &OutputTx) -> Result<(), String> {
    let list = retrying(|| client.inputs(job.job_id, job.attempt)).await.map_err(|e| format!("failed to list the artifacts this job needs: {e}"))?;
    for a in list {
        let rel = kiln_core::paths::safe_relative(&a.job).zip(kiln_core::paths::safe_relative(&a.name));
        let Some((folder, name)) = rel else {
            return Err(format!("artifact {:?} of job {:?} has an unsafe name", a.name, a.job));
        };
        let path = dest.join(folder).join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("failed to make {}: {e}", parent.display()))?;
        }
        let n = retrying(|| client.download_to(&a.url, &path)).await.map_err(|e| format!("failed to fetch artifact {} of {}: {e}", a.name, a.job))?;
        say(out, format!("kiln: fetched artifact {}/{} ({n} bytes) into $KILN_ARTIFACTS_IN\n", a.job, a.name)).await;
    }
    Ok(())
}
