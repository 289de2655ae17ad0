//! Turning a recorded build into jobs: resolve the commit, read the pipeline
//! file from it, validate, expand the matrix and shards, and queue the jobs.
//! A bad pipeline ends the build `errored` with every diagnostic's position.

use crate::events::EventKind;
use crate::git;
use crate::pipeline_meta as meta;
use crate::state::AppState;
use kiln_core::pipeline::Pipeline;
use kiln_core::expand::{expand, PlannedJob};
use kiln_store::{BuildRow, NewJob, ProjectRow};
use kiln_wire::agent::{JobAssignment, TestsAssignment};
use std::time::Instant;

/// What a successful read of the pipeline gives.
pub(crate) struct Prepared {
    pub(crate) commit: String,
    pub(crate) message: String,
    pub(crate) author: String,
    /// The commit is the branch's head as the mirror knows it (not an older one asked for).
    pub(crate) at_branch_head: bool,
    pub(crate) jobs: Vec<NewJob>,
}

/// Why a build did not get jobs.
enum Unrun {
    /// Something is wrong (bad pipeline, unknown commit): the build is `errored`.
    Errored(String, String),
    /// The change does not build (filters, triggers off): recorded as `skipped`.
    Skipped(String, String),
}

/// Whether the caller holds the build's expansion lease already.
pub enum Lease {
    /// Take it here (a build recorded earlier, or by `create_build`).
    Take,
    /// Taken as the build was recorded (`Store::create_build_to_expand`), which read the
    /// project's recorded triggers (`meta::key`) then.
    Held { recorded: Option<String> },
}

/// Expand `build` into jobs (or end it errored or skipped), then wake the agents. The server
/// holds a lease on the expansion while it reads the pipeline; a server that finds another
/// holding it leaves the build alone (the reaper takes it over if that lease runs out).
/// `project` is the build's project when the caller has just read it (it is read otherwise).
pub async fn materialize(st: &AppState, build: BuildRow, project: Option<ProjectRow>, lease: Lease, asked_at: Instant) {
    let lease_ms = st.cfg.lease_ms();
    // Taking the lease reads the project's recorded triggers too (see `meta::record_over`).
    let recorded = match lease {
        Lease::Held { recorded } => recorded,
        Lease::Take => match st.store.take_expansion(build.id, lease_ms, &meta::key(build.project_id)).await {
            Ok(Some(recorded)) => recorded,
            Ok(None) => return,
            Err(e) => return tracing::error!("build {}: cannot take its expansion: {e}", build.id),
        },
    };
    let project = match project {
        Some(p) => p,
        None => match st.store.project_by_id(build.project_id).await {
            Ok(p) => p,
            Err(e) => return tracing::error!("build {}: {e}", build.id),
        },
    };
    let renew = {
        let (st, id) = (st.clone(), build.id);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis((lease_ms / 3) as u64)).await;
                let _ = st.store.renew_expansion(id, lease_ms).await;
            }
        })
    };
    let prepared = prepare(st, &project, &build, recorded, asked_at).await;
    renew.abort();
    let res = match prepared {
        Ok(p) => st.store.materialize_build(build.id, &p.commit, &p.message, &p.author, p.at_branch_head, &p.jobs).await,
        Err(Unrun::Errored(commit, reason)) => {
            tracing::warn!("build {} of {} errored: {reason}", build.id, project.name);
            st.store.error_build(build.id, &commit, &reason).await
        }
        Err(Unrun::Skipped(commit, reason)) => {
            tracing::info!("build {} of {} skipped: {reason}", build.id, project.name);
            st.store.skip_build(build.id, &commit, &reason).await
        }
    };
    let status = match res {
        Ok(Some(status)) => status.as_str(),
        // Expanded or ended already (another server, or a cancel): say what it is now.
        Ok(None) => st.store.build(build.id).await.map(|b| b.status.as_str()).unwrap_or_default(),
        Err(e) => {
            tracing::error!("failed to record build {}: {e}", build.id);
            st.store.build(build.id).await.map(|b| b.status.as_str()).unwrap_or_default()
        }
    };
    st.wake_agents();
    st.emit(EventKind::Build, build.id, None, &project.name, status);
}

/// `recorded`: the project's triggers as recorded when the expansion was taken.
async fn prepare(st: &AppState, project: &ProjectRow, build: &BuildRow, recorded: Option<String>, asked_at: Instant) -> Result<Prepared, Unrun> {
    let err = |commit: &str, reason: String| Unrun::Errored(commit.to_string(), reason);
    if let Some(up) = crate::uploads::of_build(st, build).await {
        return prepare_upload(st, project, build, up, asked_at).await.map_err(|(c, r)| Unrun::Errored(c, r));
    }
    let known = match &build.requested_commit {
        Some(c) => st.mirrors.has_commit(project.id, c).await,
        None => false,
    };
    // A commit asked for on the default branch is compared with the branch's head as the
    // repository has it now (only a build at the head is quarantine evidence), so the mirror
    // is brought up to date first there.
    let mirror = if known && build.branch != project.branch {
        st.mirrors.path(project.id)
    } else {
        st.mirrors.refresh(project.id, &project.repo, asked_at).await.map_err(|e| err("", e))?
    };
    let head = st.mirrors.branch_head(project.id, &build.branch).await;
    let commit = match &build.requested_commit {
        Some(c) => git::resolve(&mirror, c).await,
        None => head.clone(),
    }
    .map_err(|e| err("", e))?;
    let at_branch_head = head.as_deref() == Ok(commit.as_str());
    let file = &project.pipeline;
    let facts = st.mirrors.commit_facts(project.id, &commit, file).await.map_err(|e| err(&commit, format!("failed to read {file}: {e}")))?;
    let (message, author) = (facts.subject, facts.author);
    let text = facts
        .pipeline
        .ok_or_else(|| err(&commit, format!("{file}:1:1: no pipeline file {file} in commit {}; add one (see `kiln check`)", &commit[..12.min(commit.len())])))?;
    let pipeline = kiln_core::pipeline::parse(file, &text).map_err(|diags| {
        let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        err(&commit, lines.join("\n"))
    })?;
    if build.branch == project.branch {
        if !pipeline.on.after.is_empty() {
            meta::check_after(st, &project.name, &pipeline.on.after).await.map_err(|e| err(&commit, format!("{file}: {e}")))?;
        }
        meta::record_over(st, project.id, &pipeline, recorded.as_deref()).await;
    }
    if let Some(reason) = skip_reason(&pipeline, build, &mirror, &commit).await {
        return Err(Unrun::Skipped(commit, reason));
    }
    crate::caps::check_jobs(file, &pipeline, st.cfg.max_jobs_per_build).map_err(|e| err(&commit, e))?;
    let jobs = expand(&pipeline)
        .into_iter()
        .map(|pj| new_job(project, build, &commit, pj, None))
        .collect();
    Ok(Prepared { commit, message, author, at_branch_head, jobs })
}

/// Materialize an uploaded run: the pipeline comes from the upload, else from
/// the project's repository (its branch head); every job gets the package.
async fn prepare_upload(st: &AppState, project: &ProjectRow, build: &BuildRow, up: kiln_store::UploadRow, asked_at: Instant) -> Result<Prepared, (String, String)> {
    let file = &project.pipeline;
    let (commit, text) = match up.pipeline {
        Some(text) => (String::new(), text),
        None => {
            let mirror = st.mirrors.refresh(project.id, &project.repo, asked_at).await.map_err(|e| (String::new(), e))?;
            let commit = git::resolve(&mirror, &format!("refs/heads/{}", build.branch)).await.map_err(|e| (String::new(), e))?;
            let text = git::read_file(&mirror, &commit, file)
                .await
                .map_err(|e| (commit.clone(), format!("failed to read {file}: {e}")))?
                .ok_or_else(|| (commit.clone(), format!("{file}:1:1: the upload has no pipeline and {} has none on {}; upload one", project.name, build.branch)))?;
            (commit, text)
        }
    };
    let pipeline = kiln_core::pipeline::parse(file, &text).map_err(|diags| {
        let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        (commit.clone(), lines.join("\n"))
    })?;
    crate::caps::check_jobs(file, &pipeline, st.cfg.max_jobs_per_build).map_err(|e| (commit.clone(), e))?;
    let url = crate::uploads::package_url(build.id);
    let jobs = kiln_core::expand::expand(&pipeline).into_iter().map(|pj| new_job(project, build, &commit, pj, Some(&url))).collect();
    let message = format!("uploaded test run: {} file{}, {}", up.files, if up.files == 1 { "" } else { "s" }, crate::uploads::human_bytes(up.size));
    Ok(Prepared { commit, message, author: build.triggered_by.clone(), at_branch_head: false, jobs })
}

/// A job row for `pj`; `package` is set for uploaded runs (see `uploads`).
pub(crate) fn new_job(project: &ProjectRow, build: &BuildRow, commit: &str, pj: PlannedJob, package: Option<&str>) -> NewJob {
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
        package: package.map(str::to_string),
        artifacts: artifacts_assignment(&pj.artifacts, pj.artifacts_when),
        has_needs: !pj.needs.is_empty(),
        network: pj.network == kiln_core::pipeline::Network::On,
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

/// Why this change should not build, from the pipeline's `on:` block (None: build it).
async fn skip_reason(p: &Pipeline, build: &BuildRow, mirror: &std::path::Path, commit: &str) -> Option<String> {
    match build.trigger.as_str() {
        "manual" if !p.on.manual => Some("manual triggers are off for this pipeline (on.manual: false)".into()),
        "poll" | "webhook" | "hook" => {
            let Some(push) = &p.on.push else {
                return Some("the pipeline's `on:` has no push trigger".into());
            };
            if !kiln_core::labels::branch_matches(&push.branches, &build.branch) {
                return Some(format!("branch {} does not match on.push.branches {:?}", build.branch, push.branches));
            }
            if !push.paths.is_empty() {
                let changed = match &build.changed_paths {
                    Some(c) => c.clone(),
                    None => changed_paths(mirror, build.before_commit.as_deref(), commit).await,
                };
                if !kiln_core::labels::paths_match(&push.paths, &changed) {
                    return Some(format!("no changed path matches on.push.paths {:?} (changed: {})", push.paths, summarize(&changed)));
                }
            }
            None
        }
        _ => None,
    }
}

fn summarize(paths: &[String]) -> String {
    match paths.len() {
        0 => "nothing".into(),
        n if n <= 5 => paths.join(", "),
        n => format!("{} and {} more", paths[..5].join(", "), n - 5),
    }
}

/// Paths a push changed: from `before` when the mirror has it, else the commit's own change.
async fn changed_paths(mirror: &std::path::Path, before: Option<&str>, commit: &str) -> Vec<String> {
    let out = match before {
        Some(b) if git::git(Some(mirror), &["cat-file", "-e", &format!("{b}^{{commit}}")]).await.is_ok() => {
            git::git(Some(mirror), &["diff", "--name-only", b, commit]).await
        }
        _ => git::git(Some(mirror), &["diff-tree", "--no-commit-id", "--name-only", "-r", "--root", commit]).await,
    };
    out.unwrap_or_default().lines().map(str::to_string).collect()
}

/// The pipeline's `artifacts:` as the agent gets it (None when the job keeps nothing).
fn artifacts_assignment(paths: &[String], when: kiln_core::pipeline::ArtifactsWhen) -> Option<kiln_wire::agent::ArtifactsAssignment> {
    use kiln_core::pipeline::ArtifactsWhen as W;
    (!paths.is_empty()).then(|| kiln_wire::agent::ArtifactsAssignment {
        paths: paths.to_vec(),
        when: match when {
            W::Always => kiln_wire::agent::ArtifactsWhen::Always,
            W::OnSuccess => kiln_wire::agent::ArtifactsWhen::OnSuccess,
            W::OnFailure => kiln_wire::agent::ArtifactsWhen::OnFailure,
        },
    })
}
