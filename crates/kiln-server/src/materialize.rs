//! Turning a recorded build into jobs: resolve the commit, read the pipeline
//! file from it, validate, expand the matrix and shards, and queue the jobs.
//! A bad pipeline ends the build `errored` with every diagnostic's position.

use crate::git;
use crate::state::AppState;
use kiln_core::expand::{expand, PlannedJob};
use kiln_store::{BuildRow, NewJob, ProjectRow};
use kiln_wire::agent::{JobAssignment, TestsAssignment};
use std::time::Instant;

/// What a successful read of the pipeline gives.
struct Prepared {
    commit: String,
    message: String,
    author: String,
    jobs: Vec<NewJob>,
}

/// Expand `build` into jobs (or end it errored), then wake the agents.
pub async fn materialize(st: &AppState, build: BuildRow, asked_at: Instant) {
    let project = match st.store.project_by_id(build.project_id).await {
        Ok(p) => p,
        Err(e) => return tracing::error!("build {}: {e}", build.id),
    };
    let res = match prepare(st, &project, &build, asked_at).await {
        Ok(p) => st.store.materialize_build(build.id, &p.commit, &p.message, &p.author, &p.jobs).await,
        Err((commit, reason)) => {
            tracing::warn!("build {} of {} errored: {reason}", build.id, project.name);
            st.store.error_build(build.id, &commit, &reason).await
        }
    };
    if let Err(e) = res {
        tracing::error!("failed to record build {}: {e}", build.id);
    }
    st.wake_agents();
    let status = st.store.build(build.id).await.map(|b| b.status).unwrap_or_default();
    st.emit("build", build.id, None, &project.name, &status);
}

async fn prepare(st: &AppState, project: &ProjectRow, build: &BuildRow, asked_at: Instant) -> Result<Prepared, (String, String)> {
    let rev = build.requested_commit.clone().unwrap_or_else(|| format!("refs/heads/{}", build.branch));
    let known = match &build.requested_commit {
        Some(c) => st.mirrors.has_commit(project.id, c).await,
        None => false,
    };
    let mirror = if known {
        st.mirrors.path(project.id)
    } else {
        st.mirrors.refresh(project.id, &project.repo, asked_at).await.map_err(|e| (String::new(), e))?
    };
    let commit = git::resolve(&mirror, &rev).await.map_err(|e| (String::new(), e))?;
    let (message, author) = git::commit_info(&mirror, &commit).await;
    let file = &project.pipeline;
    let text = git::read_file(&mirror, &commit, file)
        .await
        .map_err(|e| (commit.clone(), format!("failed to read {file}: {e}")))?
        .ok_or_else(|| (commit.clone(), format!("{file}:1:1: no pipeline file {file} in commit {}; add one (see `kiln check`)", &commit[..12.min(commit.len())])))?;
    let pipeline = kiln_core::pipeline::parse(file, &text).map_err(|diags| {
        let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        (commit.clone(), lines.join("\n"))
    })?;
    let jobs = expand(&pipeline)
        .into_iter()
        .map(|pj| new_job(project, build, &commit, pj))
        .collect();
    Ok(Prepared { commit, message, author, jobs })
}

fn new_job(project: &ProjectRow, build: &BuildRow, commit: &str, pj: PlannedJob) -> NewJob {
    let spec = JobAssignment {
        job_id: 0,
        attempt: 0,
        build_id: build.id,
        project: project.name.clone(),
        repo: project.repo.clone(),
        branch: build.branch.clone(),
        commit: commit.to_string(),
        key: pj.key.clone(),
        name: pj.name.clone(),
        steps: pj.steps.clone(),
        env: pj.env.clone(),
        timeout_secs: pj.timeout.map(|t| t.as_secs().max(1)),
        shard_index: pj.shard_index,
        shard_count: pj.shard_count,
        secrets: Vec::new(),
        log_limit: 0,
        tests: pj.tests.as_ref().map(|t| TestsAssignment {
            list: t.list.clone(),
            run: t.run.clone(),
            split_files: t.split_files.clone(),
            reports: t.reports.clone(),
            retries: t.retries,
            flaky_fails_build: t.flaky_fails_build,
        }),
    };
    NewJob {
        key: pj.key,
        name: pj.name,
        spec: serde_json::to_string(&spec).expect("plain data serialises"),
        requires: pj.requires,
        needs: pj.needs,
        max_attempts: 1 + pj.retries as i64,
    }
}
