//! `GET /api/v1/events`: the event stream as server-sent events, filtered to
//! what the viewer may see. With `?build=ID`: every event of that build (logs
//! included), after checking the viewer may see it. Without: build and job
//! events of visible projects. A reader that falls behind gets `resync`.

use super::builds::visible_build;
use crate::auth::Viewer;
use crate::error::AppResult;
use crate::events::Event;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    build: Option<i64>,
}

struct Reader {
    rx: tokio::sync::broadcast::Receiver<Event>,
    st: AppState,
    viewer: Viewer,
    build: Option<i64>,
    /// project → public, looked up once per stream.
    public: HashMap<String, bool>,
}

impl Reader {
    async fn passes(&mut self, ev: &Event) -> bool {
        if let Some(b) = self.build {
            return ev.build_id == b;
        }
        if ev.kind == "log" {
            return false;
        }
        if self.viewer.signed_in() {
            return true;
        }
        if let Some(p) = self.public.get(&ev.project) {
            return *p;
        }
        let public = self.st.store.project_by_name(&ev.project).await.map(|p| p.public).unwrap_or(false);
        self.public.insert(ev.project.clone(), public);
        public
    }
}

pub async fn events(State(st): State<AppState>, viewer: Viewer, Query(q): Query<EventsQuery>) -> AppResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    if let Some(b) = q.build {
        visible_build(&st, &viewer, b).await?;
    }
    let reader = Reader { rx: st.events.subscribe(), st: st.clone(), viewer, build: q.build, public: HashMap::new() };
    let stop = st.stop.clone();
    let stream = futures::stream::unfold(reader, move |mut r| {
        let stop = stop.clone();
        async move {
            loop {
                let got = tokio::select! {
                    got = r.rx.recv() => got,
                    _ = stop.cancelled() => return None,
                };
                match got {
                    Ok(ev) => {
                        if r.passes(&ev).await {
                            let e = SseEvent::default().event(ev.kind).json_data(&ev).unwrap_or_default();
                            return Some((Ok(e), r));
                        }
                    }
                    Err(RecvError::Lagged(_)) => return Some((Ok(SseEvent::default().event("resync").data("{}")), r)),
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
