//! Projects: create, change, members, and the settings rules (what a valid setting is, how a
//! change merges into what is kept). The creator of a project becomes its maintainer; every
//! change of settings, secrets, notifications, commit status, visibility or members needs the
//! maintainer role.

use super::access::{self, Need, Reached, Sight};
use crate::auth::Viewer;
use crate::config::ServerConfig;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use kiln_store::{ProjectRow, Store, StoreError};
use kiln_wire::api::{Member, ProjectCreate, ProjectSettings, ProjectUpdate, Role, Visibility};

pub fn validate_name(name: &str) -> AppResult<()> {
    let ok = !name.is_empty() && name.len() <= 100 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!("invalid project name {name:?}: use letters, digits, '-', '_' and '.'")))
    }
}

/// Check settings that can be wrong (durations, cron expressions, notification targets).
pub fn validate_settings(s: &ProjectSettings) -> AppResult<()> {
    if let Some(p) = &s.poll {
        kiln_core::duration::parse_duration(p).map_err(|e| AppError::BadRequest(format!("invalid --poll {p:?}: {e}")))?;
    }
    for c in s.schedule.iter().flatten() {
        kiln_core::cron::validate_cron(c).map_err(|e| AppError::BadRequest(format!("invalid schedule {c:?}: {e}")))?;
    }
    crate::notify::validate_settings(s).map_err(AppError::BadRequest)?;
    s.secrets.iter().flatten().try_for_each(|(k, v)| kiln_core::mask::check_secret(k, v)).map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(())
}

/// Merge set fields of `new` into `old`.
pub fn merge_settings(old: &mut ProjectSettings, new: ProjectSettings) {
    macro_rules! take {
        ($($f:ident),*) => { $( if new.$f.is_some() { old.$f = new.$f; } )* };
    }
    take!(poll, poll_each_commit, webhook_secret, notify_webhook_secret, cancel_superseded, notify_email, notify_on, notify_webhook, schedule, upload_secrets);
    if let Some(r) = new.retention {
        let o = old.retention.get_or_insert_with(Default::default);
        o.keep_builds = r.keep_builds.or(o.keep_builds);
        o.keep_days = r.keep_days.or(o.keep_days);
        o.artifact_days = r.artifact_days.or(o.artifact_days);
    }
    if let Some(cs) = new.commit_status {
        old.commit_status.get_or_insert_with(Default::default).merge(cs);
    }
    if let Some(s) = new.secrets {
        old.secrets.get_or_insert_with(Default::default).extend(s);
    }
}

/// The visibility a create or update asks for: `visibility`, else `public` (true: public, false: private).
fn asked_visibility(visibility: Option<Visibility>, public: Option<bool>) -> Option<Visibility> {
    visibility.or(public.map(|p| if p { Visibility::Public } else { Visibility::Private }))
}

/// The commit-status API must be on the admins' list of forge hosts.
fn check_forge_host(st: &AppState, repo: &str, settings: &ProjectSettings) -> AppResult<()> {
    let Some(url) = settings.commit_status.as_ref().and_then(|c| c.url.as_deref()) else { return Ok(()) };
    if crate::notify::commit_status::forge_host_allowed(&st.cfg, repo, url) {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "the commit-status URL {url:?} is not on the server's list of forge hosts: an admin can add its host with `kiln server --forge-host HOST` (allowed now: {})",
            crate::notify::commit_status::allowed_forge_hosts(&st.cfg, repo).join(", ")
        )))
    }
}

/// Every project the caller may see.
pub async fn list(st: &AppState, viewer: &Viewer) -> AppResult<Vec<ProjectRow>> {
    let sight = Sight::of(st, viewer).await?;
    Ok(st.store.list_projects().await?.into_iter().filter(|p| sight.sees(&p.name)).collect())
}

/// One project the caller may see, with their role on it.
pub async fn show(st: &AppState, viewer: &Viewer, name: &str) -> AppResult<Reached> {
    access::project(st, viewer, name, Need::See).await
}

/// Add a project (any signed-in user); its creator becomes its maintainer.
pub async fn create(st: &AppState, viewer: &Viewer, req: ProjectCreate) -> AppResult<ProjectRow> {
    let who = access::signed_in(viewer)?;
    validate_name(&req.name)?;
    if req.repo.trim().is_empty() {
        return Err(AppError::BadRequest("a project needs a repository: --repo URL-or-path".into()));
    }
    st.mirrors.check(req.repo.trim()).map_err(AppError::BadRequest)?;
    validate_settings(&req.settings)?;
    check_forge_host(st, req.repo.trim(), &req.settings)?;
    let visibility = asked_visibility(req.visibility, req.public).unwrap_or_default();
    let p = st
        .store
        .create_project(
            &req.name,
            req.repo.trim(),
            req.branch.as_deref().unwrap_or("main"),
            req.pipeline.as_deref().unwrap_or(".kiln.yml"),
            visibility,
            &req.settings,
        )
        .await?;
    st.store.grant(p.id, &who, Role::Maintainer).await?;
    tracing::info!("{who} added project {} ({})", p.name, p.visibility.as_str());
    after_change(st, &p).await;
    Ok(p)
}

/// Change a project (maintainers): repository, branch, pipeline, visibility, settings, secrets.
pub async fn update(st: &AppState, viewer: &Viewer, name: &str, req: ProjectUpdate) -> AppResult<ProjectRow> {
    let Reached { project: mut p, .. } = access::project(st, viewer, name, Need::Role(Role::Maintainer)).await?;
    validate_settings(&req.settings)?;
    if let Some(r) = req.repo {
        st.mirrors.check(&r).map_err(AppError::BadRequest)?;
        p.repo = r;
    }
    if let Some(b) = req.branch {
        p.branch = b;
    }
    if let Some(x) = req.pipeline {
        p.pipeline = x;
    }
    if let Some(v) = asked_visibility(req.visibility, req.public) {
        p.visibility = v;
    }
    merge_settings(&mut p.settings, req.settings);
    if let Some(s) = p.settings.secrets.as_mut() {
        for name in &req.remove_secrets {
            if s.remove(name).is_none() {
                return Err(AppError::NotFound(format!("project {} has no secret {name:?}", p.name)));
            }
        }
    } else if let Some(name) = req.remove_secrets.first() {
        return Err(AppError::NotFound(format!("project {} has no secret {name:?}", p.name)));
    }
    check_forge_host(st, &p.repo, &p.settings)?;
    st.store.update_project(&p).await?;
    tracing::info!("{} changed project {}", viewer.name(), p.name);
    after_change(st, &p).await;
    Ok(p)
}

/// Give a user a role on a project (maintainers).
pub async fn grant(st: &AppState, viewer: &Viewer, project: &str, user: &str, role: Role) -> AppResult<Vec<Member>> {
    let Reached { project: p, .. } = access::project(st, viewer, project, Need::Role(Role::Maintainer)).await?;
    if st.store.user(user).await?.is_none() {
        return Err(AppError::NotFound(format!("user {user:?} not found: an admin adds users with `kiln user add {user}`")));
    }
    st.store.grant(p.id, user, role).await?;
    tracing::info!("{} gave {user} the {} role on {}", viewer.name(), role.as_str(), p.name);
    members_of(st, &p).await
}

/// Take a user's role on a project away (maintainers).
pub async fn revoke(st: &AppState, viewer: &Viewer, project: &str, user: &str) -> AppResult<Vec<Member>> {
    let Reached { project: p, .. } = access::project(st, viewer, project, Need::Role(Role::Maintainer)).await?;
    if !st.store.revoke(p.id, user).await? {
        return Err(AppError::NotFound(format!("{user} has no role on project {}", p.name)));
    }
    tracing::info!("{} took {user}'s role on {} away", viewer.name(), p.name);
    members_of(st, &p).await
}

/// A project's members (anyone who may see the project).
pub async fn members(st: &AppState, viewer: &Viewer, project: &str) -> AppResult<Vec<Member>> {
    let Reached { project: p, .. } = access::project(st, viewer, project, Need::See).await?;
    members_of(st, &p).await
}

async fn members_of(st: &AppState, p: &ProjectRow) -> AppResult<Vec<Member>> {
    Ok(st.store.members(p.id).await?.into_iter().map(|(user, role)| Member { user, role }).collect())
}

/// Apply `[[project]]` tables of kiln.toml at start-up: create what is missing, update what
/// exists. The server's own configuration is trusted as an admin's.
pub async fn apply_config(store: &Store, cfg: &ServerConfig) -> anyhow::Result<()> {
    for pc in &cfg.projects {
        let settings = ProjectSettings {
            poll: pc.poll.clone(),
            webhook_secret: pc.webhook_secret.clone(),
            notify_webhook_secret: pc.notify_webhook_secret.clone(),
            schedule: pc.schedule.clone(),
            notify_email: pc.notify_email.clone(),
            notify_on: pc.notify_on.clone(),
            notify_webhook: pc.notify_webhook.clone(),
            cancel_superseded: pc.cancel_superseded,
            secrets: pc.secrets.clone(),
            poll_each_commit: pc.poll_each_commit,
            commit_status: crate::notify::commit_status::from_project_config(pc),
            retention: pc.retention,
            upload_secrets: None,
        };
        validate_settings(&settings).map_err(|e| anyhow::anyhow!("[[project]] {}: {e}", pc.name))?;
        let visibility = asked_visibility(None, pc.public);
        match store.project_by_name(&pc.name).await {
            Ok(mut p) => {
                p.repo = pc.repo.clone();
                if let Some(b) = &pc.branch {
                    p.branch = b.clone();
                }
                if let Some(x) = &pc.pipeline {
                    p.pipeline = x.clone();
                }
                if let Some(v) = visibility {
                    p.visibility = v;
                }
                merge_settings(&mut p.settings, settings);
                store.update_project(&p).await?;
            }
            Err(StoreError::NotFound(_)) => {
                store
                    .create_project(
                        &pc.name,
                        &pc.repo,
                        pc.branch.as_deref().unwrap_or("main"),
                        pc.pipeline.as_deref().unwrap_or(".kiln.yml"),
                        visibility.unwrap_or_default(),
                        &settings,
                    )
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// After a project is added or changed: start polling from the current heads (so a commit
/// made right after `project add` builds), and read its triggers.
pub async fn after_change(st: &AppState, p: &ProjectRow) {
    if p.settings.poll.is_some() {
        crate::branch_heads::baseline_soon(st, p).await;
    }
    let (st, p) = (st.clone(), p.clone());
    tokio::spawn(async move { crate::pipeline_meta::refresh(&st, &p).await });
}
