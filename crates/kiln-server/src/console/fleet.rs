//! The fleet: agents (online, labels, current jobs, last heartbeat, reported
//! status, drain for admins) and the queue (what waits, how long, for which labels).

use super::home::PartialQuery;
use super::{render, require_user, see_other, Layout, PageResult};
use crate::auth::{Page, Viewer};
use crate::error::AppError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use std::collections::BTreeMap;

pub struct JobLink {
    pub job_id: i64,
    pub build_id: i64,
    pub key: String,
    pub project: String,
    pub since: i64,
}

pub struct AgentRowView {
    pub name: String,
    pub online: bool,
    pub draining: bool,
    pub labels: Vec<(String, String)>,
    pub concurrency: i64,
    pub jobs: Vec<JobLink>,
    /// Jobs of private projects the viewer may not see.
    pub hidden_jobs: usize,
    pub last_seen: i64,
    pub seen_ago: String,
    pub status_json: String,
    /// The agent runs jobs without a sandbox (`--isolation none`): its warning.
    pub unsandboxed: Option<String>,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsTpl {
    l: Layout,
    live: String,
}

#[derive(Template)]
#[template(path = "agents_live.html")]
struct AgentsLive {
    agents: Vec<AgentRowView>,
    online: usize,
    admin: bool,
    csrf: String,
}

pub async fn agents(State(st): State<AppState>, page: Page, Query(q): Query<PartialQuery>) -> PageResult<Response> {
    let now = kiln_store::now_ms();
    let mut agents = Vec::new();
    for crate::app::agents::AgentSeen { agent: a, jobs: seen, hidden } in crate::app::agents::list(&st, &page.viewer).await? {
        let status = crate::convert::status_for(&a.status, &hidden);
        agents.push(AgentRowView {
            name: a.name.clone(),
            online: a.online(now),
            draining: a.draining,
            labels: a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            concurrency: a.concurrency,
            hidden_jobs: hidden.len(),
            jobs: seen
                .iter()
                .map(|j| JobLink { job_id: j.job_id, build_id: j.build_id, key: j.key.clone(), project: j.project.clone(), since: j.started_at.unwrap_or(now) })
                .collect(),
            last_seen: a.last_seen.unwrap_or(0),
            seen_ago: a.last_seen.map(|t| super::views::ago(t, now)).unwrap_or_default(),
            unsandboxed: (status["isolation"] == "none").then(|| status["warning"].as_str().unwrap_or("jobs run without a sandbox").to_string()),
            status_json: if status.is_null() || status == serde_json::json!({}) { String::new() } else { serde_json::to_string_pretty(&status).unwrap_or_default() },
        });
    }
    agents.sort_by_key(|a| (!a.online, a.name.clone()));
    let live = AgentsLive {
        online: agents.iter().filter(|a| a.online).count(),
        agents,
        admin: matches!(page.viewer, Viewer::User { admin: true, .. }),
        csrf: page.csrf().to_string(),
    };
    if q.partial.unwrap_or(0) != 0 {
        return render(&live);
    }
    let live = live.render().map_err(|e| AppError::Internal(e.to_string()))?;
    render(&AgentsTpl { l: Layout::of(&page, "agents"), live })
}

#[derive(serde::Deserialize)]
pub struct DrainForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

pub async fn drain(State(st): State<AppState>, page: Page, Path(name): Path<String>, Form(f): Form<DrainForm>) -> PageResult<Response> {
    require_user(&page)?;
    page.check_csrf(&f.csrf)?;
    crate::app::agents::drain(&st, &page.viewer, &name).await?;
    Ok(see_other("/agents"))
}

pub struct Waiting {
    pub job_id: i64,
    pub build_id: i64,
    pub key: String,
    pub project: String,
    pub since: i64,
    pub requires: Vec<String>,
    /// Why it waits (`app::waiting`).
    pub unmet: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueueTpl {
    l: Layout,
    live: String,
}

#[derive(Template)]
#[template(path = "queue_live.html")]
struct QueueLive {
    jobs: Vec<Waiting>,
    hidden: usize,
    blocked: i64,
    unmaterialized: i64,
    online: usize,
    by_labels: Vec<(String, usize)>,
}

pub async fn queue(State(st): State<AppState>, page: Page, Query(q): Query<PartialQuery>) -> PageResult<Response> {
    let now = kiln_store::now_ms();
    let (queued, counts) = st.store.queue_view(500).await?;
    let agents: Vec<_> = st.store.list_agents().await?.into_iter().filter(|a| a.online(now) && !a.draining).collect();
    let mut jobs = Vec::new();
    let mut hidden = 0;
    let mut by_labels: BTreeMap<String, usize> = BTreeMap::new();
    let sight = crate::app::Sight::of(&st, &page.viewer).await?;
    let fleet = crate::app::waiting::fleet(&st.store, &sight).await?;
    for j in queued {
        let requires: Vec<String> = j.requires.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !sight.sees(&j.project) {
            hidden += 1;
            continue;
        }
        *by_labels.entry(if requires.is_empty() { "any agent".into() } else { requires.join(" ") }).or_default() += 1;
        let facts = kiln_core::waiting::JobFacts { requires: j.requires.clone(), ready: true, pending_needs: Vec::new() };
        let why = kiln_core::waiting::why(&facts, &fleet);
        jobs.push(Waiting {
            job_id: j.job_id,
            build_id: j.build_id,
            key: j.key,
            project: j.project,
            since: j.queued_at,
            unmet: why.to_string(),
            requires,
        });
    }
    let live = QueueLive {
        jobs,
        hidden,
        blocked: counts.blocked,
        unmaterialized: counts.unmaterialized,
        online: agents.len(),
        by_labels: by_labels.into_iter().collect(),
    };
    if q.partial.unwrap_or(0) != 0 {
        return render(&live);
    }
    let live = live.render().map_err(|e| AppError::Internal(e.to_string()))?;
    render(&QueueTpl { l: Layout::of(&page, "queue"), live })
}
