//! Agents as people see them: list, drain. Decode, call `app::agents`, encode.

use crate::app;
use crate::auth::Viewer;
use crate::convert;
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use kiln_wire::api::Agent;

/// Every agent; a caller sees neither the ids nor the reported status of jobs of projects it may not see.
pub async fn list(State(st): State<AppState>, viewer: Viewer) -> AppResult<Json<Vec<Agent>>> {
    let now = kiln_store::now_ms();
    let mut out = Vec::new();
    for a in app::agents::list(&st, &viewer).await? {
        let mut wa = convert::agent(&a.agent, a.jobs.iter().map(|j| j.job_id).collect(), now);
        wa.status = convert::status_for(&a.agent.status, &a.hidden);
        out.push(wa);
    }
    Ok(Json(out))
}

pub async fn drain(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>) -> AppResult<Json<Agent>> {
    let a = app::agents::drain(&st, &viewer, &name).await?;
    let jobs = st.store.running_jobs_of_agent(&a.name).await?.iter().map(|j| j.id).collect();
    Ok(Json(convert::agent(&a, jobs, kiln_store::now_ms())))
}
