//! Who may do what. Every permission in kiln is decided here, once: the use cases in `app/`
//! ask this module and nothing else, and the adapters (API, console, webhooks, `kiln up`)
//! never decide on their own.
//!
//! ```text
//!  caller ─► standing on the project: admin → maintainer; member → its role; else none
//!         ─► may it see the project?   public: anyone · internal: signed in · private: members
//!              no  ─► 404 (a private name is not even confirmed)
//!         ─► does its role reach the need?  viewer < developer < maintainer
//!              no  ─► 401 (anonymous: sign in) or 403 naming the role that is needed
//! ```
//! Secrets follow from who started a build, not from who can see it: `build_gets_secrets`.

use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use kiln_store::{BuildRow, JobRow, ProjectRow, StoreError};
use kiln_wire::api::{Role, Visibility};
use std::collections::HashMap;

/// What a use case needs on a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Seeing it (anyone who may see the project).
    See,
    /// At least this role (admins have every role).
    Role(Role),
}

/// The caller's role on a project: admins count as maintainers, members have their role.
pub fn standing(viewer: &Viewer, member: Option<Role>) -> Option<Role> {
    match viewer {
        Viewer::User { admin: true, .. } => Some(Role::Maintainer),
        Viewer::User { .. } => member,
        Viewer::Anonymous => None,
    }
}

/// Whether a caller with `role` may see a project of this visibility.
pub fn sees(viewer: &Viewer, visibility: Visibility, role: Option<Role>) -> bool {
    match visibility {
        Visibility::Public => true,
        Visibility::Internal => viewer.signed_in(),
        Visibility::Private => role.is_some(),
    }
}

/// The decision for one project, from facts already looked up (pure; unit-tested below).
pub fn decide(viewer: &Viewer, project: &str, visibility: Visibility, role: Option<Role>, need: Need) -> AppResult<()> {
    if !sees(viewer, visibility, role) {
        return Err(not_found(project));
    }
    let Need::Role(needed) = need else { return Ok(()) };
    if role.is_some_and(|r| r >= needed) {
        return Ok(());
    }
    match viewer {
        Viewer::Anonymous => Err(AppError::Unauthorized(format!(
            "sign in first: this needs the {} role on project {project} (pass an API token: KILN_TOKEN or --token)",
            needed.as_str()
        ))),
        Viewer::User { name, .. } => Err(AppError::Forbidden(format!(
            "this needs the {} role on project {project}; {name} has {} (a maintainer or an admin can grant it: kiln project grant {project} {name} {})",
            needed.as_str(),
            role.map(|r| format!("the {} role", r.as_str())).unwrap_or_else(|| "no role".into()),
            needed.as_str()
        ))),
    }
}

fn not_found(project: &str) -> AppError {
    AppError::NotFound(format!("project {project:?} not found"))
}

/// A project the caller reached, with the caller's role on it.
#[derive(Debug, Clone)]
pub struct Reached {
    pub project: ProjectRow,
    pub role: Option<Role>,
}

/// The caller's role on a project, looked up.
pub async fn role_on(st: &AppState, viewer: &Viewer, project: &ProjectRow) -> AppResult<Option<Role>> {
    Ok(match viewer {
        Viewer::User { name, admin: false } => st.store.role(project.id, name).await?,
        _ => standing(viewer, None),
    })
}

/// The project named `name`, if the caller may do what `need` says with it.
pub async fn project(st: &AppState, viewer: &Viewer, name: &str, need: Need) -> AppResult<Reached> {
    let project = match st.store.project_by_name(name).await {
        Ok(p) => p,
        Err(StoreError::NotFound(_)) => return Err(not_found(name)),
        Err(e) => return Err(e.into()),
    };
    let role = role_on(st, viewer, &project).await?;
    decide(viewer, &project.name, project.visibility, role, need)?;
    Ok(Reached { project, role })
}

/// Build `id`, if the caller may do what `need` says with its project. A build of a project
/// the caller may not see is "not found", like the project.
pub async fn build(st: &AppState, viewer: &Viewer, id: i64, need: Need) -> AppResult<(BuildRow, Reached)> {
    let b = match st.store.build(id).await {
        Ok(b) => b,
        Err(StoreError::NotFound(_)) => return Err(AppError::NotFound(format!("build {id} not found"))),
        Err(e) => return Err(e.into()),
    };
    match project(st, viewer, &b.project, need).await {
        Ok(r) => Ok((b, r)),
        Err(AppError::NotFound(_)) => Err(AppError::NotFound(format!("build {id} not found"))),
        Err(e) => Err(e),
    }
}

/// Job `id` and its build, if the caller may do what `need` says with its project.
pub async fn job(st: &AppState, viewer: &Viewer, id: i64, need: Need) -> AppResult<(JobRow, BuildRow)> {
    let j = match st.store.job(id).await {
        Ok(j) => j,
        Err(StoreError::NotFound(_)) => return Err(AppError::NotFound(format!("job {id} not found"))),
        Err(e) => return Err(e.into()),
    };
    match build(st, viewer, j.build_id, need).await {
        Ok((b, _)) => Ok((j, b)),
        Err(AppError::NotFound(_)) => Err(AppError::NotFound(format!("job {id} not found"))),
        Err(e) => Err(e),
    }
}

/// A project the caller may see (404 otherwise).
pub async fn visible(st: &AppState, viewer: &Viewer, name: &str) -> AppResult<ProjectRow> {
    Ok(project(st, viewer, name, Need::See).await?.project)
}

/// A build the caller may see (404 otherwise).
pub async fn visible_build(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<BuildRow> {
    Ok(build(st, viewer, id, Need::See).await?.0)
}

/// Admins only.
pub fn admin(viewer: &Viewer) -> AppResult<()> {
    match viewer {
        Viewer::User { admin: true, .. } => Ok(()),
        Viewer::User { name, .. } => Err(AppError::Forbidden(format!("only an admin may do this ({name} is not one)"))),
        Viewer::Anonymous => Err(AppError::Unauthorized("sign in as an admin first: pass an admin's API token (KILN_TOKEN or --token)".into())),
    }
}

/// Any signed-in user; answers their name.
pub fn signed_in(viewer: &Viewer) -> AppResult<String> {
    match viewer {
        Viewer::User { name, .. } => Ok(name.clone()),
        Viewer::Anonymous => Err(AppError::Unauthorized("sign in first: pass an API token (KILN_TOKEN or --token)".into())),
    }
}

/// The user `name` themself, or an admin.
pub fn self_or_admin(viewer: &Viewer, name: &str) -> AppResult<()> {
    match viewer {
        Viewer::User { name: me, .. } if me == name => Ok(()),
        _ => admin(viewer),
    }
}

/// Which projects the caller may see, looked up once for a page or stream that shows many
/// (lists, the queue, agents' jobs, the event stream).
#[derive(Debug, Clone, Default)]
pub struct Sight {
    /// Project name → visible.
    seen: HashMap<String, bool>,
}

impl Sight {
    pub async fn of(st: &AppState, viewer: &Viewer) -> AppResult<Sight> {
        let roles: HashMap<i64, Role> = match viewer {
            Viewer::User { name, admin: false } => st.store.roles_of(name).await?.into_iter().collect(),
            _ => HashMap::new(),
        };
        let seen = st
            .store
            .list_projects()
            .await?
            .into_iter()
            .map(|p| {
                let role = standing(viewer, roles.get(&p.id).copied());
                (p.name, sees(viewer, p.visibility, role))
            })
            .collect();
        Ok(Sight { seen })
    }

    /// Sight of one project only (a build's page names the jobs of its own project, which
    /// its viewer may see, and no other).
    pub fn only(project: &str) -> Sight {
        Sight { seen: HashMap::from([(project.to_string(), true)]) }
    }

    /// Whether the sight was taken after project `name` existed.
    pub fn knows(&self, name: &str) -> bool {
        self.seen.contains_key(name)
    }

    /// Whether the caller may see project `name` (an unknown name is not seen).
    pub fn sees(&self, name: &str) -> bool {
        self.seen.get(name).copied().unwrap_or(false)
    }
}

/// Who starts a build, as far as secrets are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starter {
    /// A change of the project's own repository: push, poll, webhook, schedule, downstream.
    Source,
    /// A manual trigger by a user who may trigger (a developer or more).
    Person,
    /// An uploaded run, by a user with this standing, with the project's pipeline or one of its own.
    Upload { role: Option<Role> },
}

/// Secrets go only to builds the maintainers vouch for: builds of the project's own repository
/// started by a change source or a developer, and uploads by maintainers when the project opts in.
pub fn build_gets_secrets(project: &ProjectRow, starter: Starter) -> bool {
    match starter {
        Starter::Source | Starter::Person => true,
        Starter::Upload { role } => project.settings.upload_secrets == Some(true) && role == Some(Role::Maintainer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> Viewer {
        Viewer::User { name: "bob".into(), admin }
    }

    #[test]
    fn visibility_decides_who_sees() {
        use Visibility::*;
        let (anon, bob, admin) = (Viewer::Anonymous, user(false), user(true));
        for (viewer, vis, member, seen) in [
            (&anon, Public, None, true),
            (&anon, Internal, None, false),
            (&anon, Private, None, false),
            (&bob, Internal, None, true),
            (&bob, Private, None, false),
            (&bob, Private, Some(Role::Viewer), true),
            (&admin, Private, None, true),
        ] {
            let role = standing(viewer, member);
            assert_eq!(sees(viewer, vis, role), seen, "{viewer:?} {vis:?} {member:?}");
        }
    }

    #[test]
    fn roles_are_ordered_and_refusals_name_the_role() {
        let bob = user(false);
        let d = Some(Role::Developer);
        assert!(decide(&bob, "p", Visibility::Private, d, Need::Role(Role::Developer)).is_ok());
        assert!(decide(&bob, "p", Visibility::Private, d, Need::Role(Role::Viewer)).is_ok());
        let e = decide(&bob, "p", Visibility::Private, d, Need::Role(Role::Maintainer)).unwrap_err();
        assert!(matches!(e, AppError::Forbidden(_)));
        assert!(e.to_string().contains("maintainer role on project p"), "{e}");
        assert!(e.to_string().contains("has the developer role"), "{e}");
        // a stranger to a private project learns nothing
        let e = decide(&bob, "p", Visibility::Private, None, Need::Role(Role::Maintainer)).unwrap_err();
        assert!(matches!(e, AppError::NotFound(_)));
        // anonymous on a public project is asked to sign in
        let e = decide(&Viewer::Anonymous, "p", Visibility::Public, None, Need::Role(Role::Developer)).unwrap_err();
        assert!(matches!(e, AppError::Unauthorized(_)));
        // admins are maintainers everywhere
        assert!(decide(&user(true), "p", Visibility::Private, standing(&user(true), None), Need::Role(Role::Maintainer)).is_ok());
    }

    #[test]
    fn uploads_get_secrets_only_from_maintainers_of_projects_that_opt_in() {
        let mut p = ProjectRow {
            id: 1,
            name: "p".into(),
            repo: "r".into(),
            branch: "main".into(),
            pipeline: ".kiln.yml".into(),
            visibility: Visibility::Private,
            settings: Default::default(),
            created_at: 0,
        };
        assert!(build_gets_secrets(&p, Starter::Source));
        assert!(build_gets_secrets(&p, Starter::Person));
        assert!(!build_gets_secrets(&p, Starter::Upload { role: Some(Role::Maintainer) }));
        p.settings.upload_secrets = Some(true);
        assert!(build_gets_secrets(&p, Starter::Upload { role: Some(Role::Maintainer) }));
        assert!(!build_gets_secrets(&p, Starter::Upload { role: Some(Role::Developer) }));
    }
}
