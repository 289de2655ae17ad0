//! Agents as people act on them: the fleet as the caller may see it, and drain (admins).

use super::access::{self, Sight};
use crate::auth::Viewer;
use crate::error::AppResult;
use crate::state::AppState;
use kiln_store::{AgentRow, RunningJobView};

/// An agent with the running jobs the caller may see, and the ids of those it may not
/// (their reported status is hidden).
pub struct AgentSeen {
    pub agent: AgentRow,
    pub jobs: Vec<RunningJobView>,
    pub hidden: Vec<i64>,
}

pub async fn list(st: &AppState, viewer: &Viewer) -> AppResult<Vec<AgentSeen>> {
    let sight = Sight::of(st, viewer).await?;
    let running = st.store.running_jobs().await?;
    let mut out = Vec::new();
    for agent in st.store.list_agents().await? {
        let (jobs, hidden): (Vec<_>, Vec<_>) = running.iter().filter(|j| j.agent == agent.name).cloned().partition(|j| sight.sees(&j.project));
        out.push(AgentSeen { agent, jobs, hidden: hidden.iter().map(|j| j.job_id).collect() });
    }
    Ok(out)
}

/// Let an agent finish its jobs and take no more (admins). Its claims and control poll are
/// woken so it hears at once, from whichever adapter asked.
pub async fn drain(st: &AppState, viewer: &Viewer, name: &str) -> AppResult<AgentRow> {
    access::admin(viewer)?;
    st.store.set_draining(name, true).await?;
    st.emit(crate::events::EventKind::Agent, 0, None, "", "draining");
    st.wake_agent(name);
    st.wake_control();
    Ok(st.store.agent_by_name(name).await?)
}
