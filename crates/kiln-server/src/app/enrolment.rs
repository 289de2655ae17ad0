//! Who may be an agent: registration with an enrolment secret (the server's own
//! `--agent-token`, or one an admin created, maybe limited to labels and projects) or with
//! the agent's own saved token (a restart), token rotation, and an admin's view of
//! enrolment secrets. A name online under another token is never handed over.
//!
//! ```text
//!  first start:  Bearer <enrolment secret> ─► enrol_agent ─► new agent token (saved 0600 by the agent)
//!  restart:      Bearer <agent token>      ─► reregister_agent (same token; its old jobs run again)
//!  rotate:       Bearer <agent token>      ─► rotate_agent_token ─► new token, old one refused
//! ```

use super::access;
use crate::auth::{constant_time_eq, Viewer};
use crate::error::{AppError, AppResult};
use crate::events::EventKind;
use crate::state::AppState;
use kiln_store::{hash_token, AgentRow, AgentSpec, EnrolWith, EnrolmentRow};
use kiln_wire::agent::{RegisterRequest, RegisterResponse};
use kiln_wire::enrol::EnrolmentCreate;

/// Register the agent described by `req`, proven by `given` (an enrolment secret or its own token).
pub async fn register(st: &AppState, given: &str, req: &RegisterRequest) -> AppResult<RegisterResponse> {
    if req.protocol != kiln_wire::PROTOCOL_VERSION {
        return Err(AppError::BadRequest(format!(
            "agent speaks protocol {} but this server speaks {}: upgrade the older side",
            req.protocol,
            kiln_wire::PROTOCOL_VERSION
        )));
    }
    if req.name.trim().is_empty() {
        return Err(AppError::BadRequest("an agent needs a name".into()));
    }
    let lease = st.cfg.lease_secs.max(2);
    let hb = req.heartbeat_secs.unwrap_or(st.cfg.heartbeat_secs).min(st.cfg.heartbeat_secs).min(lease / 3).max(1);
    let spec = AgentSpec { name: &req.name, labels: &req.labels, concurrency: req.concurrency.max(1) as i64, heartbeat_secs: hb as i64 };
    let given_hash = hash_token(given);
    let (agent, token) = if let Some(a) = st.store.reregister_agent(&given_hash, &spec).await? {
        (a, given.to_string())
    } else {
        let token = kiln_store::random_token();
        let with = if !st.agent_token.is_empty() && constant_time_eq(given.as_bytes(), st.agent_token.as_bytes()) {
            EnrolWith::ServerSecret
        } else {
            EnrolWith::Secret(&given_hash)
        };
        match st.store.enrol_agent(with, &spec, &hash_token(&token)).await? {
            Some(a) => (a, token),
            None => {
                tracing::warn!("agent {:?} tried to register with an unknown, revoked or used-up secret", req.name);
                return Err(AppError::Unauthorized(
                    "wrong agent registration token: it is not the server's agent token nor a valid enrolment secret (unknown, revoked or used up); \
                     check --token, or ask an admin for one (`kiln enrol create`)"
                        .into(),
                ));
            }
        }
    };
    // A restarted agent holds nothing: what the old process held runs again now, not after its lease.
    let taken = st.store.requeue_agent_jobs(&agent.name, "its agent restarted").await?;
    if !taken.is_empty() {
        st.wake_agents();
        st.wake_control();
    }
    tracing::info!("agent {} registered with labels {:?}", agent.name, agent.labels);
    // The fleet changed (a new agent, or new labels): the console's fleet page re-reads it.
    st.emit(EventKind::Agent, 0, None, "", "registered");
    Ok(RegisterResponse { agent_id: agent.id, token, heartbeat_secs: hb, lease_secs: lease })
}

/// Give the calling agent a new token; the one it used stops working at once.
pub async fn rotate(st: &AppState, agent: &AgentRow, old: &str) -> AppResult<String> {
    let token = kiln_store::random_token();
    st.store.rotate_agent_token(agent.id, &hash_token(old), &hash_token(&token)).await?;
    tracing::info!("agent {} rotated its token", agent.name);
    Ok(token)
}

/// A new enrolment secret (admins), shown once: optionally limited to agents with some labels,
/// to some projects' jobs, or to a number of uses.
pub async fn create(st: &AppState, viewer: &Viewer, req: &EnrolmentCreate) -> AppResult<(EnrolmentRow, String)> {
    access::admin(viewer)?;
    if req.uses.is_some_and(|n| n < 1) {
        return Err(AppError::BadRequest("--uses must be at least 1 (leave it out for no limit)".into()));
    }
    for k in req.labels.keys() {
        kiln_core::labels::parse_label(&format!("{k}=")).map_err(AppError::BadRequest)?;
    }
    if req.projects.iter().any(|p| p.trim().is_empty()) {
        return Err(AppError::BadRequest("an empty project name cannot limit an enrolment".into()));
    }
    let (e, secret) = st.store.create_enrolment(&viewer.name(), &req.labels, &req.projects, req.uses).await?;
    tracing::info!("{} created enrolment {}", viewer.name(), e.id);
    Ok((e, secret))
}

/// Every enrolment secret (admins; the secrets themselves are never shown again).
pub async fn list(st: &AppState, viewer: &Viewer) -> AppResult<Vec<EnrolmentRow>> {
    access::admin(viewer)?;
    Ok(st.store.list_enrolments().await?)
}

/// No agent enrols with this secret any more (admins).
pub async fn revoke(st: &AppState, viewer: &Viewer, id: i64) -> AppResult<()> {
    access::admin(viewer)?;
    st.store.revoke_enrolment(id).await?;
    tracing::info!("{} revoked enrolment {id}", viewer.name());
    Ok(())
}

/// An agent's token stops working and its jobs run again elsewhere (admins); answers how many
/// jobs were taken back.
pub async fn revoke_agent(st: &AppState, viewer: &Viewer, name: &str) -> AppResult<usize> {
    access::admin(viewer)?;
    let taken = st.store.revoke_agent(name).await?;
    st.wake_agent(name);
    st.wake_agents();
    st.wake_control();
    st.emit(EventKind::Agent, 0, None, "", "revoked");
    tracing::info!("{} revoked agent {name}", viewer.name());
    Ok(taken.len())
}
