//! Agents as people see them: list, drain.

use crate::auth::Viewer;
use crate::convert;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_wire::api::Agent;

/// Every agent; a stranger sees neither the ids nor the reported status of private projects' jobs.
pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<Agent>>> {
    let now = kiln_store::now_ms();
    let running = st.store.running_jobs().await?;
    let mut out = Vec::new();
    for a in st.store.list_agents().await? {
        let mine = running.iter().filter(|j| j.agent == a.name);
        let (seen, hidden): (Vec<_>, Vec<_>) = mine.partition(|j| j.public || viewer.signed_in());
        let hidden: Vec<i64> = hidden.iter().map(|j| j.job_id).collect();
        let mut wa = convert::agent(&a, seen.iter().map(|j| j.job_id).collect(), now);
        wa.status = convert::status_for(&a.status, &hidden);
        out.push(wa);
    }
    Ok(Json(out))
}

pub async fn drain(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<Agent>> {
    viewer.require_admin()?;
    st.store.set_draining(&name, true).await?;
    st.wake_agents();
    st.wake_control();
    let a = st.store.agent_by_name(&name).await?;
    let jobs = st.store.running_jobs_of_agent(&a.name).await?.iter().map(|j| j.id).collect();
    Ok(Json(convert::agent(&a, jobs, kiln_store::now_ms())))
}
