//! A build's page: header with status and actions, the jobs as a DAG (one
//! column per stage of `needs`, matrix cells and shards stacked), the test
//! results (`results.rs`), and the selected job's log, streamed live by the
//! script (ANSI colours, line anchors, follow that stops when you scroll up).

use super::views::{build_view, duration, BuildView};
use super::{render, require_user, see_other, Layout, PageResult};
use crate::app::{self, access};
use crate::auth::Page;
use crate::convert::JobPage;
use crate::error::AppError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use kiln_wire::api::Job;
use serde::Deserialize;
use std::collections::HashMap;

pub struct JobCard {
    pub id: i64,
    pub key: String,
    pub status: String,
    pub agent: String,
    pub duration: String,
    /// Epoch ms the job started, while it runs (the script ticks its duration).
    pub since: i64,
    pub attempt: i64,
    pub reason: String,
    pub waiting_for: String,
    pub selected: bool,
}

pub struct Column {
    pub jobs: Vec<JobCard>,
}

#[derive(Template)]
#[template(path = "build_live.html")]
struct BuildLive {
    b: BuildView,
    columns: Vec<Column>,
    /// The caller may cancel and rebuild (developer or more).
    signed_in: bool,
    csrf: String,
    upload: String,
    artifacts: Vec<crate::artifacts::ArtifactLink>,
    /// Shown when the build has more jobs than one page holds.
    pager: Option<Pager>,
}

/// Links between pages of a build's jobs.
pub struct Pager {
    pub first: usize,
    pub last: usize,
    pub total: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    fn of(build: i64, page: JobPage, shown: usize, total: usize) -> Option<Pager> {
        if total <= page.limit && page.offset == 0 {
            return None;
        }
        let link = |offset: usize| format!("/builds/{build}?jobs_offset={offset}");
        Some(Pager {
            first: page.offset + 1,
            last: page.offset + shown,
            total,
            prev: (page.offset > 0).then(|| link(page.offset.saturating_sub(page.limit))),
            next: (page.offset + shown < total).then(|| link(page.offset + page.limit)),
        })
    }
}

/// The selected job's log panel.
pub struct Selected {
    pub id: i64,
    pub key: String,
    pub status: String,
    pub attempt: i64,
    pub attempts: Vec<i64>,
}

#[derive(Template)]
#[template(path = "build.html")]
struct BuildTpl {
    l: Layout,
    b: BuildView,
    live: String,
    live_src: String,
    /// The test results section ("" while the build has none).
    tests: String,
    sel: Option<Selected>,
}

#[derive(Deserialize, Default)]
pub struct BuildQuery {
    job: Option<i64>,
    attempt: Option<i64>,
    partial: Option<u8>,
    jobs_offset: Option<i64>,
}

/// The page of jobs to show: the one asked for, else the one holding the asked job, else the first.
async fn page_of(st: &AppState, row: &kiln_store::BuildRow, q: &BuildQuery) -> PageResult<JobPage> {
    let limit = Some(JobPage::DEFAULT_LIMIT as i64);
    if q.jobs_offset.is_some() {
        return Ok(JobPage::asked(q.jobs_offset, limit));
    }
    let index = match q.job {
        Some(id) => st.store.jobs_of_build(row.id).await?.iter().position(|j| j.id == id).unwrap_or(0),
        None => 0,
    };
    Ok(JobPage::asked(Some((index / JobPage::DEFAULT_LIMIT * JobPage::DEFAULT_LIMIT) as i64), limit))
}

/// Stage of each job name: 0 without needs, else one more than its deepest need.
fn stages(jobs: &[Job]) -> HashMap<String, usize> {
    let needs: HashMap<&str, &Vec<String>> = jobs.iter().map(|j| (j.name.as_str(), &j.needs)).collect();
    fn depth<'a>(n: &'a str, needs: &HashMap<&'a str, &'a Vec<String>>, memo: &mut HashMap<String, usize>, guard: usize) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        let d = match needs.get(n) {
            Some(list) if guard < 64 => list.iter().map(|m| depth(m, needs, memo, guard + 1) + 1).max().unwrap_or(0),
            _ => 0,
        };
        memo.insert(n.to_string(), d);
        d
    }
    let mut memo = HashMap::new();
    for j in jobs {
        depth(&j.name, &needs, &mut memo, 0);
    }
    memo
}

/// The job to show first: the asked one, else the first failed, else the first running, else the first.
fn pick(jobs: &[Job], asked: Option<i64>) -> Option<&Job> {
    asked
        .and_then(|id| jobs.iter().find(|j| j.id == id))
        .or_else(|| jobs.iter().find(|j| matches!(j.status.as_str(), "failed" | "errored")))
        .or_else(|| jobs.iter().find(|j| j.status == "running"))
        .or_else(|| jobs.first())
}

fn job_card(j: &Job, selected: bool) -> JobCard {
    let ms = |s: &Option<String>| s.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.timestamp_millis());
    let (start, end) = (ms(&j.started_at), ms(&j.finished_at));
    JobCard {
        id: j.id,
        key: j.key.clone(),
        status: j.status.clone(),
        agent: j.agent.clone().unwrap_or_default(),
        duration: match (start, end) {
            (Some(s), Some(e)) => duration(e - s),
            _ => String::new(),
        },
        since: if j.status == "running" { start.unwrap_or(0) } else { 0 },
        attempt: j.attempt,
        reason: j.reason.clone().unwrap_or_default(),
        waiting_for: j.waiting.as_ref().map(|w| w.message.clone()).unwrap_or_default(),
        selected,
    }
}

pub async fn page(State(st): State<AppState>, page: Page, Path(id): Path<i64>, Query(q): Query<BuildQuery>) -> PageResult<Response> {
    let (row, reached) = access::build(&st, &page.viewer, id, access::Need::See).await?;
    let may_act = reached.role.is_some_and(|r| r >= kiln_wire::api::Role::Developer);
    let agents = crate::convert::online_agents(&st.store).await?;
    let shown = page_of(&st, &row, &q).await?;
    let (jobs, total) = crate::convert::build_jobs(&st.store, &row, &agents, shown).await?;
    let sel = pick(&jobs, q.job);
    let sel_id = sel.map(|j| j.id);
    let depth = stages(&jobs);
    let mut columns: Vec<Column> = Vec::new();
    for j in &jobs {
        let d = depth.get(&j.name).copied().unwrap_or(0);
        while columns.len() <= d {
            columns.push(Column { jobs: Vec::new() });
        }
        columns[d].jobs.push(job_card(j, Some(j.id) == sel_id));
    }
    columns.retain(|c| !c.jobs.is_empty());
    let upload = match st.store.upload(id).await? {
        Some(u) => format!("{} file{}, {}", u.files, if u.files == 1 { "" } else { "s" }, crate::uploads::human_bytes(u.size)),
        None => String::new(),
    };
    let mut view = build_view(&row);
    if super::views::ended_badly(&view) {
        view.first_failure = super::views::first_failure(st.store.first_failure_ms(id).await?);
    }
    let live = BuildLive {
        b: view,
        columns,
        signed_in: may_act,
        csrf: page.csrf().to_string(),
        upload,
        artifacts: crate::artifacts::links(&st, id).await?,
        pager: Pager::of(id, shown, jobs.len(), total),
    };
    if q.partial.unwrap_or(0) != 0 {
        return render(&live);
    }
    let sel = sel.map(|j| {
        let attempts: Vec<i64> = j.attempts.iter().map(|a| a.attempt).collect();
        Selected {
            id: j.id,
            key: j.key.clone(),
            status: j.status.clone(),
            attempt: q.attempt.filter(|a| attempts.contains(a)).unwrap_or(j.attempt),
            attempts,
        }
    });
    let t = BuildTpl {
        l: Layout::of(&page, "projects"),
        b: build_view(&row),
        live: live.render().map_err(|e| AppError::Internal(e.to_string()))?,
        live_src: format!("/builds/{id}?partial=1&jobs_offset={}", shown.offset),
        tests: super::results::section(&st, id).await?,
        sel,
    };
    render(&t)
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

impl ActionForm {
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn rebuild(State(st): State<AppState>, page: Page, Path(id): Path<i64>, Form(f): Form<ActionForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    let nb = app::builds::rebuild(&st, &page.viewer, id).await?;
    Ok(see_other(&format!("/builds/{}", nb.id)))
}

/// Cancel from the console: the same use case as the API, so running jobs stop at once.
pub async fn cancel(State(st): State<AppState>, page: Page, Path(id): Path<i64>, Form(f): Form<ActionForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    let b = access::visible_build(&st, &page.viewer, id).await?;
    if !b.status.is_final() {
        app::builds::cancel(&st, &page.viewer, id, None).await?;
    }
    Ok(see_other(&format!("/builds/{id}")))
}
