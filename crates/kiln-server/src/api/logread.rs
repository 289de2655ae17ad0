//! Reading a job's log at any size in bounded memory: a slice from an offset,
//! the tail, the part before an offset (the console scrolling up), the line
//! where line N starts, a search with exact counts, the raw bytes streamed
//! (with HTTP `Range`), a server-sent event stream that resumes from a
//! byte offset (`Last-Event-ID`), and the live tail of a log past its head.
//! Every route checks the build's visibility.

use crate::app::access::{self, Need};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use kiln_store::JobRow;
use kiln_wire::api::{LiveTail, LogSearch, LogSearchMatch, LogSlice};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// The most one slice carries.
const SLICE_MAX: usize = 8 << 20;
/// How far back before a slice that starts mid-log its style (colours) is looked for.
const STYLE_LOOKBACK: u64 = 1 << 20;

/// The job, if the viewer may see its build, and the attempt asked for (default: the current one).
async fn job_for(st: &AppState, viewer: &Viewer, job_id: i64, attempt: Option<i64>) -> AppResult<(JobRow, i64)> {
    let (job, _) = access::job(st, viewer, job_id, Need::See).await?;
    let attempt = attempt.unwrap_or(job.attempt);
    Ok((job, attempt))
}

/// No more bytes will come for this attempt.
fn attempt_over(job: &JobRow, attempt: i64) -> bool {
    let final_ = job.status.is_final();
    attempt < job.attempt || final_ || (job.status == kiln_core::state::JobStatus::Queued && job.attempt > 0)
}

fn io_err(e: std::io::Error) -> AppError {
    AppError::Internal(format!("failed to read the log: {e}"))
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> AppResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| AppError::Internal(e.to_string()))?.map_err(io_err)
}

#[derive(Deserialize, Default)]
pub struct SliceQuery {
    attempt: Option<i64>,
    /// Start here (bytes).
    offset: Option<u64>,
    /// At most this many bytes [default 1 MiB, at most 8 MiB].
    max: Option<usize>,
    /// The last `tail` bytes, starting at a line.
    tail: Option<u64>,
    /// The `max` bytes before this offset, starting at a line (scrolling up).
    before: Option<u64>,
    /// From the start of this 1-based line.
    line: Option<u64>,
}

/// `GET /api/v1/jobs/{id}/log`: one slice of an attempt's log as UTF-8 text, with
/// the line it starts in and the attempt's length.
pub async fn slice(st: &AppState, viewer: &Viewer, job_id: i64, q: SliceQuery) -> AppResult<LogSlice> {
    let (job, attempt) = job_for(st, viewer, job_id, q.attempt).await?;
    let len = st.store.log_len(job_id, attempt).await?;
    let max = q.max.unwrap_or(1 << 20).clamp(1, SLICE_MAX);
    let files = st.store.log_files().clone();
    // Where the reader starts fresh (not reading on from where it was), it needs the style.
    let fresh = q.tail.is_some() || q.before.is_some() || q.line.is_some();
    let (offset, until, align) = if let Some(t) = q.tail {
        (len.saturating_sub(t.min(SLICE_MAX as u64)), len, true)
    } else if let Some(b) = q.before {
        let b = b.min(len);
        (b.saturating_sub(max as u64), b, true)
    } else if let Some(n) = q.line {
        let f = files.clone();
        let at = blocking(move || f.offset_of_line(job_id, attempt, n, len)).await?;
        let at = at.ok_or_else(|| AppError::NotFound(format!("job {job_id} attempt {attempt} has no line {n}")))?;
        (at, len, false)
    } else {
        let o = q.offset.unwrap_or(0);
        (o, len, false)
    };
    let want = ((until.saturating_sub(offset)) as usize).min(if q.tail.is_some() { SLICE_MAX } else { max });
    let f = files.clone();
    let (data, line) = blocking(move || {
        let data = f.read(job_id, attempt, offset, want, until)?;
        let line = f.line_at(job_id, attempt, offset, until)?;
        Ok((data, line))
    })
    .await?;
    // A tail or a part before an offset starts at a line's beginning.
    let (start, skip, line) = match data.iter().position(|&b| b == b'\n') {
        Some(i) if align && offset > 0 && i + 1 < data.len() => (offset + i as u64 + 1, i + 1, line + 1),
        _ => (offset, 0, line),
    };
    let body = &data[skip..];
    let keep = utf8_complete_prefix(body);
    let next_offset = start + keep as u64;
    let style = if fresh && start > 0 {
        let from = start.saturating_sub(STYLE_LOOKBACK);
        let f = files.clone();
        let before = blocking(move || f.read(job_id, attempt, from, (start - from) as usize, start)).await?;
        kiln_core::ansi::style_after(&before)
    } else {
        String::new()
    };
    Ok(LogSlice {
        job_id,
        attempt,
        offset: start,
        next_offset,
        done: attempt_over(&job, attempt) && next_offset >= len,
        text: String::from_utf8_lossy(&body[..keep]).into_owned(),
        len,
        line,
        style,
    })
}

/// Length of `data` without a trailing, incomplete UTF-8 sequence (it comes with the next read).
pub(crate) fn utf8_complete_prefix(data: &[u8]) -> usize {
    match std::str::from_utf8(data) {
        Ok(_) => data.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => data.len(),
    }
}

#[derive(Deserialize)]
pub struct AttemptQuery {
    attempt: Option<i64>,
}

/// `GET /api/v1/jobs/{id}/log/live`: the last lines of a log past its head while its job runs
/// (the agent holds them back until the job ends, then they follow a marker in the log);
/// `live: false` when there are none.
pub async fn live(State(st): State<AppState>, viewer: Viewer, Path(job_id): Path<i64>, Query(q): Query<AttemptQuery>) -> AppResult<Json<LiveTail>> {
    let (job, attempt) = job_for(&st, &viewer, job_id, q.attempt).await?;
    let files = st.store.log_files().clone();
    let kept = if attempt_over(&job, attempt) { None } else { blocking(move || files.live(job_id, attempt)).await? };
    let (past_head, text) = kept.unwrap_or_default();
    let keep = utf8_complete_prefix(&text);
    Ok(Json(LiveTail { job_id, attempt, live: past_head > 0 || !text.is_empty(), past_head, text: String::from_utf8_lossy(&text[..keep]).into_owned() }))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    attempt: Option<i64>,
    q: String,
    /// Matching lines to return [default 100, at most 1000]; the counts cover the whole log.
    limit: Option<usize>,
}

/// `GET /api/v1/jobs/{id}/log/search?q=TEXT`: exact (case-sensitive) occurrences counted over the whole log.
pub async fn search(State(st): State<AppState>, viewer: Viewer, Path(job_id): Path<i64>, Query(q): Query<SearchQuery>) -> AppResult<Json<LogSearch>> {
    let (_, attempt) = job_for(&st, &viewer, job_id, q.attempt).await?;
    if q.q.is_empty() || q.q.len() > 1024 {
        return Err(AppError::BadRequest("a log search needs q= with 1 to 1024 bytes".into()));
    }
    let len = st.store.log_len(job_id, attempt).await?;
    let files = st.store.log_files().clone();
    let needle = q.q.clone();
    let keep = q.limit.unwrap_or(100).min(1000);
    let r = blocking(move || files.search(job_id, attempt, needle.as_bytes(), keep, len)).await?;
    Ok(Json(LogSearch {
        job_id,
        attempt,
        query: q.q,
        count: r.count,
        lines: r.lines_matched,
        matches: r.matches.into_iter().map(|m| LogSearchMatch { line: m.line, offset: m.offset, text: m.text }).collect(),
    }))
}

#[derive(Deserialize, Default)]
pub struct RawQuery {
    attempt: Option<i64>,
    /// `?download=1` asks the browser to save the file instead of showing it.
    download: Option<u8>,
}

/// A `Range: bytes=…` header over a log of `len` bytes: (start, end exclusive).
fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (len.saturating_sub(n), len)
    } else {
        let s: u64 = a.parse().ok()?;
        let e = if b.is_empty() { len } else { b.parse::<u64>().ok()?.saturating_add(1).min(len) };
        (s, e)
    };
    (start < end || (len == 0 && start == 0)).then_some((start, end))
}

/// `GET /api/v1/jobs/{id}/raw`: the attempt's log as plain text, streamed a segment at a time; `Range` honoured.
pub async fn raw(State(st): State<AppState>, viewer: Viewer, Path(job_id): Path<i64>, Query(q): Query<RawQuery>, headers: HeaderMap) -> AppResult<Response> {
    let (job, attempt) = job_for(&st, &viewer, job_id, q.attempt).await?;
    let len = st.store.log_len(job_id, attempt).await?;
    let (start, end, partial) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => (0, len, false),
        Some(h) => match parse_range(h, len) {
            Some((s, e)) => (s, e, true),
            None => {
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{len}"))], "").into_response());
            }
        },
    };
    let safe_key: String = job.key.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let disposition = format!(
        "{}; filename=\"build-{}-{safe_key}-{attempt}.log\"",
        if q.download.unwrap_or(0) != 0 { "attachment" } else { "inline" },
        job.build_id
    );
    let body = stream_bytes(st.store.log_files().clone(), job_id, attempt, start, end);
    let mut resp = Response::builder()
        .status(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, end - start);
    if partial {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end.max(1) - 1));
    }
    resp.body(body).map_err(|e| AppError::Internal(e.to_string()))
}

/// Bytes `start..end` of a log as a body, read a segment at a time on a blocking thread.
fn stream_bytes(files: kiln_store::LogFiles, job_id: i64, attempt: i64, start: u64, end: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        let mut r = match files.reader(job_id, attempt, end) {
            Ok(r) => r,
            Err(e) => return drop(tx.blocking_send(Err(e))),
        };
        let mut at = start;
        while at < end {
            match r.piece(at) {
                Ok([]) => return,
                Ok(p) => {
                    at += p.len() as u64;
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(p))).is_err() {
                        return; // the reader went away
                    }
                }
                Err(e) => return drop(tx.blocking_send(Err(e))),
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }))
}

#[derive(Deserialize, Default)]
pub struct StreamQuery {
    attempt: Option<i64>,
    offset: Option<u64>,
}

/// `GET /api/v1/jobs/{id}/log/events`: the log as server-sent events (`log`, with
/// `id` = the byte offset after it; `end` when the attempt is over). A reconnecting
/// client's `Last-Event-ID` (or `?offset=`) resumes where it stopped.
pub async fn events(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(job_id): Path<i64>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> AppResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let (_, attempt) = job_for(&st, &viewer, job_id, q.attempt).await?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let offset = resume.or(q.offset).unwrap_or(0);
    let rx = st.events.subscribe();
    let stop = st.stop.clone();
    let state = (st, rx, offset, false);
    let stream = futures::stream::unfold(state, move |(st, mut rx, offset, ended)| {
        let stop = stop.clone();
        async move {
            if ended {
                return None;
            }
            loop {
                let job = st.store.job(job_id).await.ok()?;
                let read = st.store.read_log(job_id, attempt, offset, 256 << 10).await.ok()?;
                let keep = utf8_complete_prefix(&read.data);
                if keep > 0 {
                    let next = offset + keep as u64;
                    let data = serde_json::json!({ "offset": offset, "next_offset": next, "text": String::from_utf8_lossy(&read.data[..keep]) });
                    let e = SseEvent::default().event("log").id(next.to_string()).json_data(&data).unwrap_or_default();
                    return Some((Ok(e), (st, rx, next, false)));
                }
                if attempt_over(&job, attempt) {
                    let e = SseEvent::default().event("end").id(offset.to_string()).data("{}");
                    return Some((Ok(e), (st, rx, offset, true)));
                }
                // Wait for more: a log event of this job, or a moment (an event may be missed).
                let wait = async {
                    loop {
                        match rx.recv().await {
                            Ok(ev) if ev.job_id == Some(job_id) => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(_) => std::future::pending::<()>().await,
                        }
                    }
                };
                tokio::select! {
                    _ = wait => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return None,
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-5", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("lines=1-2", 100), None);
    }
}
