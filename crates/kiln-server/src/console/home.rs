//! The projects page (status per branch, badge, duration chart), one project's
//! builds (filters, pages), adding a project, and triggering a build.

use super::views::{build_view, duration_chart, BuildView};
use super::{render, require_user, see_other, urlencode, Layout, PageResult};
use crate::app;
use kiln_wire::api::Role;
use crate::auth::Page;
use crate::error::AppError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use kiln_store::BuildFilter;
use serde::Deserialize;

/// Builds per page on a project's page.
const PER_PAGE: i64 = 50;

pub struct ProjectCard {
    pub name: String,
    pub repo: String,
    pub public: bool,
    pub branches: Vec<BuildView>,
    pub chart: String,
    /// Disk use: "logs 12.0 MiB · artifacts 3.0 MiB · packages 1.0 MiB" (`services::retention::disk_label`).
    pub disk: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomeTpl {
    l: Layout,
    live: String,
}

#[derive(Template)]
#[template(path = "home_live.html")]
struct HomeLive {
    projects: Vec<ProjectCard>,
    signed_in: bool,
}

#[derive(Deserialize, Default)]
pub struct PartialQuery {
    pub partial: Option<u8>,
}

pub async fn home(State(st): State<AppState>, page: Page, Query(q): Query<PartialQuery>) -> PageResult<Response> {
    let mut projects = Vec::new();
    let disk = st.store.disk_use().await?;
    for p in app::projects::list(&st, &page.viewer).await? {
        let recent = st.store.recent_builds(p.id, 24).await?;
        let branches = st.store.latest_per_branch(p.id, 4).await?;
        projects.push(ProjectCard {
            name: p.name.clone(),
            repo: crate::redact::without_credentials(&p.repo),
            public: p.public(),
            branches: branches.iter().map(build_view).collect(),
            chart: duration_chart(&recent),
            disk: crate::services::retention::disk_label(disk.get(&p.id)),
        });
    }
    let live = HomeLive { projects, signed_in: page.viewer.signed_in() };
    if q.partial.unwrap_or(0) != 0 {
        return render(&live);
    }
    let live = live.render().map_err(|e| AppError::Internal(e.to_string()))?;
    render(&HomeTpl { l: Layout::of(&page, "projects"), live })
}

#[derive(Deserialize, Default)]
pub struct BuildsQuery {
    branch: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    page: Option<i64>,
    partial: Option<u8>,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectTpl {
    l: Layout,
    name: String,
    repo: String,
    default_branch: String,
    pipeline: String,
    visibility: &'static str,
    /// The caller may trigger and upload (developer or more).
    can_build: bool,
    /// The caller may change members (maintainer or admin).
    can_manage: bool,
    members: Vec<(String, &'static str)>,
    branches: Vec<String>,
    branch: String,
    status: String,
    trigger: String,
    live_src: String,
    live: String,
}

#[derive(Template)]
#[template(path = "project_live.html")]
struct ProjectLive {
    builds: Vec<BuildView>,
    total: i64,
    first: i64,
    last: i64,
    newer: String,
    older: String,
    page: i64,
    pages: i64,
}

fn filter_query(q: &BuildsQuery, page: i64) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("branch", &q.branch), ("status", &q.status), ("trigger", &q.trigger)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", urlencode(v)));
        }
    }
    if page > 1 {
        parts.push(format!("page={page}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub async fn project(State(st): State<AppState>, page: Page, Path(name): Path<String>, Query(q): Query<BuildsQuery>) -> PageResult<Response> {
    let app::Reached { project: p, role } = app::projects::show(&st, &page.viewer, &name).await?;
    let f = BuildFilter { branch: q.branch.clone(), status: q.status.clone(), trigger: q.trigger.clone() };
    let n = q.page.unwrap_or(1).max(1);
    let (rows, total) = st.store.builds_page(p.id, &f, PER_PAGE, (n - 1) * PER_PAGE).await?;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let base = format!("/projects/{}", urlencode(&p.name));
    let mut builds: Vec<BuildView> = rows.iter().map(build_view).collect();
    for b in builds.iter_mut().filter(|b| super::views::ended_badly(b)) {
        b.first_failure = super::views::first_failure(st.store.first_failure_ms(b.id).await?);
    }
    let live = ProjectLive {
        first: if rows.is_empty() { 0 } else { (n - 1) * PER_PAGE + 1 },
        last: (n - 1) * PER_PAGE + rows.len() as i64,
        builds,
        total,
        newer: if n > 1 { format!("{base}{}", filter_query(&q, n - 1)) } else { String::new() },
        older: if n < pages { format!("{base}{}", filter_query(&q, n + 1)) } else { String::new() },
        page: n,
        pages,
    };
    if q.partial.unwrap_or(0) != 0 {
        return render(&live);
    }
    let live_src = {
        let fq = filter_query(&q, n);
        format!("{base}{}{}partial=1", fq, if fq.is_empty() { "?" } else { "&" })
    };
    let t = ProjectTpl {
        l: Layout::of(&page, "projects"),
        name: p.name.clone(),
        repo: crate::redact::without_credentials(&p.repo),
        default_branch: p.branch.clone(),
        pipeline: p.pipeline.clone(),
        visibility: p.visibility.as_str(),
        can_build: role.is_some_and(|r| r >= Role::Developer),
        can_manage: role == Some(Role::Maintainer),
        members: st.store.members(p.id).await?.into_iter().map(|(u, r)| (u, r.as_str())).collect(),
        branches: st.store.build_branches(p.id).await?,
        branch: q.branch.clone().unwrap_or_default(),
        status: q.status.clone().unwrap_or_default(),
        trigger: q.trigger.clone().unwrap_or_default(),
        live_src,
        live: live.render().map_err(|e| AppError::Internal(e.to_string()))?,
    };
    render(&t)
}

#[derive(Template)]
#[template(path = "project_new.html")]
struct NewProjectTpl {
    l: Layout,
    error: String,
    name: String,
    repo: String,
    branch: String,
    pipeline: String,
    visibility: &'static str,
}

pub async fn new_project_form(page: Page) -> PageResult<Response> {
    require_user(&page)?;
    render(&NewProjectTpl {
        l: Layout::of(&page, "projects"),
        error: String::new(),
        name: String::new(),
        repo: String::new(),
        branch: "main".into(),
        pipeline: ".kiln.yml".into(),
        visibility: "private",
    })
}

#[derive(Deserialize)]
pub struct NewProjectForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    name: String,
    repo: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    pipeline: String,
    #[serde(default)]
    visibility: String,
}

pub async fn new_project(State(st): State<AppState>, page: Page, Form(f): Form<NewProjectForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    let branch = if f.branch.trim().is_empty() { "main" } else { f.branch.trim() };
    let pipeline = if f.pipeline.trim().is_empty() { ".kiln.yml" } else { f.pipeline.trim() };
    let visibility = kiln_wire::api::Visibility::parse(&f.visibility).unwrap_or_default();
    let name = f.name.trim();
    let req = kiln_wire::api::ProjectCreate {
        name: name.to_string(),
        repo: f.repo.trim().to_string(),
        branch: Some(branch.to_string()),
        pipeline: Some(pipeline.to_string()),
        visibility: Some(visibility),
        ..Default::default()
    };
    let res = app::projects::create(&st, &page.viewer, req).await;
    match res {
        Ok(p) => Ok(see_other(&format!("/projects/{}", urlencode(&p.name)))),
        Err(e) => {
            let mut r = render(&NewProjectTpl {
                l: Layout::of(&page, "projects"),
                error: e.to_string(),
                name: name.to_string(),
                repo: f.repo.clone(),
                branch: branch.to_string(),
                pipeline: pipeline.to_string(),
                visibility: visibility.as_str(),
            })?;
            *r.status_mut() = e.status();
            Ok(r)
        }
    }
}

#[derive(Deserialize)]
pub struct TriggerForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    branch: String,
}

pub async fn trigger(State(st): State<AppState>, page: Page, Path(name): Path<String>, Form(f): Form<TriggerForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    let req = kiln_wire::api::TriggerRequest { branch: Some(f.branch.clone()), commit: None };
    let b = app::builds::trigger(&st, &page.viewer, &name, &req).await?;
    Ok(see_other(&format!("/builds/{}", b.id)))
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    role: String,
}

/// The members form: give a user a role (maintainers).
pub async fn grant(State(st): State<AppState>, page: Page, Path(name): Path<String>, Form(f): Form<GrantForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    let role = Role::parse(&f.role).ok_or_else(|| AppError::BadRequest(format!("unknown role {:?}: use viewer, developer or maintainer", f.role)))?;
    app::projects::grant(&st, &page.viewer, &name, f.user.trim(), role).await?;
    Ok(see_other(&format!("/projects/{}", urlencode(&name))))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// The members form: take a user's role away (maintainers).
pub async fn revoke(State(st): State<AppState>, page: Page, Path((name, user)): Path<(String, String)>, Form(f): Form<CsrfOnly>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    app::projects::revoke(&st, &page.viewer, &name, &user).await?;
    Ok(see_other(&format!("/projects/{}", urlencode(&name))))
}
