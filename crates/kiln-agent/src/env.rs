//! The environment a step starts from: nothing of the agent's but an allow-list (so its token,
//! `KILN_AGENT_TOKEN`, `KILN_TOKEN` or anything else it was started with never reaches a
//! step), then kiln's own variables, then the job's (`env:` of the pipeline, matrix values,
//! the secrets the build may have).

use kiln_wire::agent::JobAssignment;
use std::collections::BTreeMap;
use std::path::Path;

/// The only variables a step inherits from the agent's environment.
pub const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "TERM", "USER", "TZ"];

/// `PATH` when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment every step of `job` sees (docs/pipeline.md): the allow-list, CI, KILN_*, the
/// job's own. `dir` is the job's folder; `home` replaces HOME in a sandbox, whose /tmp is
/// the job's own.
pub fn job_env(job: &JobAssignment, agent_name: &str, dir: &Path, home: Option<&Path>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = INHERITED.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    if let Some(h) = home {
        env.insert("HOME".into(), h.to_string_lossy().into_owned());
        env.insert("TMPDIR".into(), "/tmp".into());
    }
    let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
    for (k, v) in [
        ("CI", "true".to_string()),
        ("KILN", "true".to_string()),
        ("KILN_BUILD_ID", job.build_id.to_string()),
        ("KILN_JOB_ID", job.job_id.to_string()),
        ("KILN_JOB_NAME", job.name.clone()),
        ("KILN_ATTEMPT", job.attempt.to_string()),
        ("KILN_PROJECT", job.project.clone()),
        ("KILN_BRANCH", job.branch.clone()),
        ("KILN_COMMIT", job.commit.clone()),
        ("KILN_AGENT_NAME", agent_name.to_string()),
        ("KILN_SHARD_INDEX", job.shard_index.to_string()),
        ("KILN_SHARD_COUNT", job.shard_count.to_string()),
        ("KILN_JUNIT_DIR", d("junit")),
        ("KILN_ARTIFACTS_DIR", d("artifacts")),
        ("KILN_ARTIFACTS_IN", d("artifacts-in")),
        ("KILN_STATUS_FILE", d("status.json")),
    ] {
        env.insert(k.to_string(), v);
    }
    env.extend(job.env.clone());
    env
}

/// Make a job's folder: `junit`, `artifacts`, `artifacts-in` (what the jobs it needs
/// kept, `KILN_ARTIFACTS_IN`), `home` and the files steps write
/// (`status.json`, `kiln-test-list.txt`), and its temp folder beside it (`/tmp` in the
/// sandbox, see `sandbox::temp_of`), handed to the step's user by `give`.
pub fn make_job_dir(dir: &Path, give: impl Fn(&Path)) -> std::io::Result<()> {
    let tmp = crate::sandbox::temp_of(dir);
    for d in [dir, tmp.as_path()] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)?;
    }
    give(&tmp);
    for sub in ["junit", "artifacts", "artifacts-in", "home"] {
        std::fs::create_dir_all(dir.join(sub))?;
        give(&dir.join(sub));
    }
    for f in ["status.json", "kiln-test-list.txt"] {
        std::fs::write(dir.join(f), "")?;
        give(&dir.join(f));
    }
    Ok(())
}
