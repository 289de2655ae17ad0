//! Agents as people see them: list, drain.

use crate::auth::Viewer;
use crate::convert;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_wire::api::Agent;

pub async fn list(State(st): State<AppState>, _viewer: Viewer) -> AppResult<Json<Vec<Agent>>> {
    let now = kiln_store::now_ms();
    let mut out = Vec::new();
    for a in st.store.list_agents().await? {
        let jobs = st.store.running_jobs_of_agent(&a.name).await?.iter().map(|j| j.id).collect();
        out.push(convert::agent(&a, jobs, now));
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
