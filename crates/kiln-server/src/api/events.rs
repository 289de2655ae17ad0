//! `GET /api/v1/events`: the event stream as server-sent events, filtered to
//! what the viewer may see. With `?build=ID`: every event of that build (logs
//! included), after checking the viewer may see it. Without: build and job
//! events of visible projects. A reader that falls behind gets `resync`.

use crate::app::access::{self, Sight};
use crate::auth::Viewer;
use crate::error::AppResult;
use crate::events::{Event, EventKind};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
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
    /// The projects the viewer may see, looked up once per stream (and again for a project
    /// it has not heard of, one made after the stream opened).
    sight: Sight,
}

impl Reader {
    async fn passes(&mut self, ev: &Event) -> bool {
        if let Some(b) = self.build {
            return ev.build_id == b;
        }
        match ev.kind {
            EventKind::Log | EventKind::Notification => return false,
            // Says only that the fleet changed (no name), for the fleet page to re-read.
            EventKind::Agent => return true,
            _ => {}
        }
        if !self.sight.knows(&ev.project) {
            if let Ok(s) = Sight::of(&self.st, &self.viewer).await {
                self.sight = s;
            }
        }
        self.sight.sees(&ev.project)
    }
}

pub async fn events(State(st): State<AppState>, viewer: Viewer, Query(q): Query<EventsQuery>) -> AppResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    if let Some(b) = q.build {
        access::visible_build(&st, &viewer, b).await?;
    }
    let sight = Sight::of(&st, &viewer).await?;
    let reader = Reader { rx: st.events.subscribe(), st: st.clone(), viewer, build: q.build, sight };
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
                            let e = SseEvent::default().event(ev.kind.as_str()).json_data(&ev).unwrap_or_default();
                            return Some((Ok(e), r));
                        }
                    }
                    Err(RecvError::Lagged(_)) => return Some((Ok(SseEvent::default().event(kiln_wire::events::RESYNC).data("{}")), r)),
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
