//! Incoming webhooks (`/hooks/{github,gitea,gitlab,generic}/PROJECT`) and the
//! push endpoint behind `kiln notify`. A missing project, one without a secret
//! and a bad or missing signature all get the same 401 (so private names are
//! not confirmed), create nothing, and are logged with the real reason. A
//! delivery seen before is answered 200 "duplicate delivery" (see `replay`).

use super::forge::{self, Event, Push};
use crate::auth::{constant_time_eq, Viewer};
use crate::error::{AppError, AppResult};
use crate::signature;
use crate::state::AppState;
use crate::app::trigger::Origin;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Check the request's signature for this forge against the project's secret.
fn authentic(forge: &str, secret: &str, h: &HeaderMap, body: &[u8]) -> bool {
    match forge {
        "github" => signature::verify(secret, body, header(h, "x-hub-signature-256")),
        "gitea" => {
            let sig = [header(h, "x-gitea-signature"), header(h, "x-forgejo-signature"), header(h, "x-hub-signature-256")]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or("");
            signature::verify(secret, body, sig)
        }
        "gitlab" => constant_time_eq(header(h, "x-gitlab-token").as_bytes(), secret.as_bytes()),
        _ => {
            let sig = [header(h, "x-kiln-signature-256"), header(h, "x-hub-signature-256")].into_iter().find(|s| !s.is_empty()).unwrap_or("");
            signature::verify(secret, body, sig)
        }
    }
}

/// `POST /hooks/{forge}/{project}`.
pub async fn hook(State(st): State<AppState>, Path((forge, name)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> AppResult<(StatusCode, Json<Value>)> {
    if !matches!(forge.as_str(), "github" | "gitea" | "gitlab" | "generic") {
        return Err(AppError::NotFound(format!("no webhook for {forge:?}: use github, gitea, gitlab or generic")));
    }
    let refused = |why: &str| {
        tracing::warn!("{forge} webhook for {name:?} refused: {why}");
        AppError::Unauthorized(format!("no project {name:?} takes {forge} webhooks signed this way (check the project name and its --webhook-secret)"))
    };
    // Only a missing project is a refusal; the store failing is the server's error (500), not
    // a wrong name or signature to tell the sender.
    let project = match st.store.project_by_name(&name).await {
        Ok(p) => p,
        Err(kiln_store::StoreError::NotFound(_)) => return Err(refused("no such project")),
        Err(e) => return Err(e.into()),
    };
    let Some(secret) = project.settings.webhook_secret.clone().filter(|s| !s.is_empty()) else {
        return Err(refused("the project has no webhook secret (kiln project set NAME --webhook-secret S)"));
    };
    if !authentic(&forge, &secret, &headers, &body) {
        return Err(refused("bad or missing signature"));
    }
    if super::replay::seen_before(&st.store, &forge, project.id, &headers).await? {
        tracing::info!("{forge} webhook for {name}: delivery {:?} seen before, ignored", header(&headers, super::replay::header(&forge)));
        return Ok((StatusCode::OK, Json(json!({ "ignored": "duplicate delivery" }))));
    }
    let event = match forge.as_str() {
        "github" => forge::github(header(&headers, "x-github-event"), &body),
        "gitea" => forge::gitea(header(&headers, "x-gitea-event"), &body),
        "gitlab" => forge::gitlab(header(&headers, "x-gitlab-event"), &body),
        _ => forge::generic(&body),
    }
    .map_err(AppError::BadRequest)?;
    match event {
        Event::Ignore(why) => Ok((StatusCode::OK, Json(json!({ "ignored": why })))),
        Event::Push(p) => {
            let by = format!("{forge}:{}", p.pusher.clone().unwrap_or_else(|| "webhook".into()));
            start_push(&st, &project, p, "webhook", by).await
        }
    }
}

async fn start_push(st: &AppState, project: &kiln_store::ProjectRow, p: Push, trigger: &'static str, by: String) -> AppResult<(StatusCode, Json<Value>)> {
    let origin = Origin { trigger, by, before: p.before.clone(), changed_paths: p.changed_paths.clone(), ..Default::default() };
    let commit = (!p.after.is_empty()).then_some(p.after.as_str());
    let b = crate::app::builds::from_source(st, project, Some(&p.branch), commit, origin).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "build": b.id, "project": project.name, "branch": p.branch }))))
}

#[derive(Deserialize)]
pub struct PushRequest {
    #[serde(default)]
    before: String,
    after: String,
    #[serde(rename = "ref")]
    refname: String,
}

/// `POST /api/v1/projects/{name}/push`: what `kiln notify` sends for each
/// `oldrev newrev refname` line a post-receive hook reads.
pub async fn push(State(st): State<AppState>, viewer: Viewer, Path(name): Path<String>, Json(req): Json<PushRequest>) -> AppResult<(StatusCode, Json<Value>)> {
    let who = crate::app::access::signed_in(&viewer)?;
    let project = crate::app::access::project(&st, &viewer, &name, crate::app::Need::Role(kiln_wire::api::Role::Developer)).await?.project;
    let zero = |s: &str| !s.is_empty() && s.bytes().all(|c| c == b'0');
    let Some(branch) = req.refname.strip_prefix("refs/heads/") else {
        return Ok((StatusCode::OK, Json(json!({ "ignored": format!("{} is not a branch", req.refname) }))));
    };
    if zero(&req.after) {
        return Ok((StatusCode::OK, Json(json!({ "ignored": format!("{} was deleted", req.refname) }))));
    }
    let p = Push { branch: branch.to_string(), after: req.after, before: Some(req.before), changed_paths: None, pusher: Some(who.clone()) };
    start_push(&st, &project, p, "hook", format!("post-receive:{who}")).await
}
