//! Quarantine of flaky tests, the use cases: judge finished builds (record each test's run,
//! quarantine a test flaky enough over its recent runs, release one after enough clean runs
//! in a row, by `kiln_core::quarantine`'s rules and the server's `[quarantine]` settings); a
//! maintainer quarantines or releases a test by hand; anyone who sees the project reads the
//! quarantine. A quarantined test still runs and is reported; the test queue's verdict keeps
//! its failure from failing the job (`kiln_store` snapshots the quarantine when a build lists
//! its tests).
//!
//! ```text
//!  finished builds ─► catch_up ─► runs ─► Rules::quarantine / Rules::release ─► change (auto)
//!  kiln tests quarantine|release ─► mark (maintainer) ─────────────────────────► change (manual)
//! ```

use super::access::{self, Need};
use crate::auth::Viewer;
use crate::wireform::ts;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use kiln_core::quarantine::{Cause, Change, RunOutcome};
use kiln_store::{ProjectRow, QuarantineChangeRow};
use kiln_wire::api::{Quarantine, QuarantineChange, Role};

/// Changes shown with a project's quarantine.
pub const CHANGES_SHOWN: usize = 50;

/// Judge a project's finished builds not judged yet, oldest first: record their tests' runs,
/// then quarantine or release each test they ran as the rules say.
pub async fn catch_up(st: &AppState, project_id: i64) -> AppResult<()> {
    let rules = st.cfg.quarantine.rules();
    let project = st.store.project_by_id(project_id).await?;
    loop {
        let builds = st.store.unjudged_builds(project_id).await?;
        if builds.is_empty() {
            return Ok(());
        }
        for b in builds {
            if !is_evidence(st, &project, b).await? {
                st.store.judge_without_runs(b).await?;
                continue;
            }
            let Some(keys) = st.store.record_test_runs(b).await? else { continue };
            let held: std::collections::HashMap<String, i64> =
                st.store.quarantined_tests(project_id).await?.into_iter().map(|q| (q.test_key, q.after_build)).collect();
            for key in keys {
                match held.get(&key) {
                    Some(&after) => {
                        let runs = st.store.test_runs(project_id, &key, Some(after)).await?;
                        if let Some((evidence, why)) = rules.release(&runs) {
                            st.store.change_quarantine(project_id, &key, Change::Released, Cause::Auto, None, &why, &evidence).await?;
                        }
                    }
                    None => {
                        let runs = st.store.test_runs(project_id, &key, None).await?;
                        if let Some((evidence, why)) = rules.quarantine(&runs) {
                            st.store.change_quarantine(project_id, &key, Change::Quarantined, Cause::Auto, None, &why, &evidence).await?;
                        }
                    }
                }
            }
        }
    }
}

/// Whether a finished build's runs are evidence: only what the project has accepted may change
/// the quarantine every branch gets. A developer can push any branch, trigger the default branch
/// at a commit of theirs or at an old one (`--commit`), and upload runs; none of those counts, so
/// no one below maintainer can get a test quarantined (or released) by making it wobble (or pass)
/// on purpose. Evidence is a build of the project's default branch, not an uploaded run, whose
/// commit was that branch's head when the build read its pipeline (`BuildRow::at_branch_head`).
async fn is_evidence(st: &AppState, project: &ProjectRow, build_id: i64) -> AppResult<bool> {
    let b = st.store.build(build_id).await?;
    Ok(!crate::uploads::is_upload(&b) && b.branch == project.branch && !b.commit.is_empty() && b.at_branch_head)
}

/// A maintainer quarantines (or releases) a test of a project by hand. The change records who,
/// why, and the test's recent runs that were not clean. Quarantining a quarantined test (or
/// releasing one that is not) is a 409 saying so.
pub async fn mark(st: &AppState, viewer: &Viewer, project: &str, test: &str, change: Change, reason: Option<&str>) -> AppResult<QuarantineChange> {
    let reached = access::project(st, viewer, project, Need::Role(Role::Maintainer))
        .await
        .map_err(|e| match e {
            AppError::Forbidden(m) => AppError::Forbidden(format!("{} a test: {m}", if change == Change::Quarantined { "quarantining" } else { "releasing" })),
            e => e,
        })?;
    let who = access::signed_in(viewer)?;
    let test = test.trim();
    if test.is_empty() {
        return Err(AppError::BadRequest("name the test to quarantine (its id as `kiln tests PROJECT` shows it)".into()));
    }
    let p = reached.project;
    catch_up(st, p.id).await?;
    let evidence: Vec<_> = st
        .store
        .test_runs(p.id, test, None)
        .await?
        .into_iter()
        .take(st.cfg.quarantine.rules().window)
        .filter(|r| r.outcome != RunOutcome::Clean)
        .collect();
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).unwrap_or("by hand").to_string();
    match st.store.change_quarantine(p.id, test, change, Cause::Manual, Some(&who), &reason, &evidence).await? {
        Some(id) => changes_of(st, p.id).await?.into_iter().find(|c| c.id == id).ok_or_else(|| AppError::Internal(format!("quarantine change {id} vanished"))),
        None => Err(AppError::Conflict(match change {
            Change::Quarantined => format!("{test} is already quarantined in {}", p.name),
            Change::Released => format!("{test} is not quarantined in {}; `kiln tests {} --flakiest` lists the quarantine", p.name, p.name),
        })),
    }
}

/// A project's quarantine (after judging its finished builds).
pub async fn of_project(st: &AppState, p: &ProjectRow) -> AppResult<Quarantine> {
    catch_up(st, p.id).await?;
    Ok(Quarantine {
        quarantined: st.store.quarantined_tests(p.id).await?.into_iter().map(|q| q.test_key).collect(),
        changes: changes_of(st, p.id).await?,
    })
}

/// A project's quarantine, for anyone who may see it.
pub async fn show(st: &AppState, viewer: &Viewer, project: &str) -> AppResult<(ProjectRow, Quarantine)> {
    let p = access::visible(st, viewer, project).await?;
    let q = of_project(st, &p).await?;
    Ok((p, q))
}

/// A project's latest changes, each naming which of its builds retention has deleted since.
async fn changes_of(st: &AppState, project_id: i64) -> AppResult<Vec<QuarantineChange>> {
    let rows = st.store.quarantine_changes(project_id, CHANGES_SHOWN).await?;
    let ids: Vec<i64> = rows.iter().flat_map(|c| c.builds.iter().copied()).collect();
    let gone = st.store.deleted_builds(&ids).await?;
    Ok(rows.iter().map(|c| change_of(c, &gone)).collect())
}

fn change_of(c: &QuarantineChangeRow, gone: &std::collections::HashSet<i64>) -> QuarantineChange {
    QuarantineChange {
        id: c.id,
        test: c.test_key.clone(),
        change: c.change.as_str().into(),
        cause: c.cause.as_str().into(),
        by: c.by.clone(),
        reason: c.reason.clone(),
        builds: c.builds.clone(),
        jobs: c.jobs.clone(),
        deleted: c.builds.iter().copied().filter(|b| gone.contains(b)).collect(),
        at: ts(c.created_at),
    }
}
