//! A job's log on its way to the server: masked, capped (head and tail kept, `logtail.rs`), written to a spool
//! file first, and uploaded from there by byte offset: whole 1 MiB frames (starting at
//! multiples of 1 MiB) compressed with zstd, which the server keeps as they come, and the
//! bytes around them as they are. If the server is down
//! the bytes wait on disk and go when it is back; a retried chunk is never
//! stored twice (the server skips bytes it already holds).

use crate::client::{backoff, CallError, Client};
use crate::logtail::Tail;
use kiln_core::mask::Masker;
use kiln_wire::agent::{FINISH_LOG_MAX, LOG_FRAMES_MAX};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Bytes per upload request: big enough that a chatty step costs few requests
/// (the server accepts up to `kiln_wire::agent::LOG_CHUNK_MAX`).
const CHUNK: usize = 4 << 20;
/// Below this, a chunk waits a little for more output (see `upload`).
const BATCH: usize = 1 << 20;
/// Raw bytes per compressed frame; frames start at multiples of it (`kiln_wire::agent::LOG_FRAME`).
const FRAME: usize = kiln_wire::agent::LOG_FRAME;
/// zstd level of uploaded frames: fast, and what the server would have used.
const LEVEL: i32 = 1;
/// The most of a log held back past its limit (the tail written after the marker when the job
/// ends): enough lines to find a failure, and little left to send once the step is over.
pub const TAIL_MAX: u64 = 64 << 20;

/// Bytes of a log under `limit` that go out as they come (its head): all but its tail, which is
/// half the limit at most and `TAIL_MAX` at most.
pub fn head_of(limit: u64) -> u64 {
    limit - (limit / 2).min(TAIL_MAX)
}

/// Compress `raw` (whole frames) into back-to-back zstd frames, one per `FRAME` bytes.
fn compress_frames(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 8);
    let mut c = zstd::bulk::Compressor::new(LEVEL)?;
    for frame in raw.chunks(FRAME) {
        out.extend_from_slice(&c.compress(frame)?);
    }
    Ok(out)
}

/// The writing side: takes raw output, masks secrets, enforces the limit, spools.
pub struct LogWriter {
    file: std::fs::File,
    masker: Masker,
    /// No secret to mask: output goes to the spool as it comes, not copied by the masker.
    plain: bool,
    limit: u64,
    /// Past the head (`head_of`), output goes to the tail ring until the job ends.
    tail: Option<Tail>,
    shared: Arc<Shared>,
}

/// What the writer and the uploader share.
pub struct Shared {
    pub path: PathBuf,
    /// Bytes written to the spool.
    pub written: AtomicU64,
    /// Bytes the server acknowledged.
    pub delivered: AtomicU64,
    pub closed: AtomicBool,
    /// The server refused this attempt: stop the job.
    pub stale: AtomicBool,
    pub wake: Notify,
    /// Fires once when the writer closes: the rest goes out at once.
    pub done: Notify,
    /// Bytes pushed into the tail ring (past the head) while the job runs; 0 when there is none.
    pub tail_total: AtomicU64,
    /// The ring's size.
    pub tail_cap: AtomicU64,
}

impl LogWriter {
    pub fn create(path: PathBuf, secrets: &[String], limit: u64) -> std::io::Result<(LogWriter, Arc<Shared>)> {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
        let shared = Arc::new(Shared {
            path,
            written: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            wake: Notify::new(),
            done: Notify::new(),
            tail_total: AtomicU64::new(0),
            tail_cap: AtomicU64::new(0),
        });
        let masker = Masker::new(secrets);
        let plain = secrets.iter().all(|s| kiln_core::mask::forms(s).is_empty());
        Ok((LogWriter { file, masker, plain, limit: if limit == 0 { u64::MAX } else { limit }, tail: None, shared: shared.clone() }, shared))
    }

    /// The head (all of the limit but its tail, `head_of`) is spooled (and uploaded) as it
    /// comes; the rest goes to a ring of the tail's size, written after a marker at the end.
    fn put(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(t) = &mut self.tail {
            if let Err(e) = t.push(bytes) {
                tracing::warn!("failed to keep the log's tail: {e}");
            }
            self.shared.tail_total.store(t.total(), Ordering::SeqCst);
            return;
        }
        let written = self.shared.written.load(Ordering::SeqCst);
        let head = head_of(self.limit);
        let take = bytes.len().min(head.saturating_sub(written) as usize);
        self.spool(&bytes[..take]);
        if take < bytes.len() {
            // Readers following the log live see why it stops growing here.
            let note = format!("\n[kiln: the log passed {head} bytes of its {} byte limit: from here only its last {} bytes are kept, and they follow when the job ends]\n", self.limit, self.limit - head);
            self.spool(note.as_bytes());
            let path = self.shared.path.with_extension("tail");
            match Tail::create(path, self.limit - head) {
                Ok(mut t) => {
                    let _ = t.push(&bytes[take..]);
                    self.shared.tail_cap.store(t.cap(), Ordering::SeqCst);
                    self.shared.tail_total.store(t.total(), Ordering::SeqCst);
                    self.tail = Some(t);
                }
                Err(e) => tracing::warn!("failed to keep the log's tail: {e}"),
            }
        }
    }

    fn spool(&mut self, data: &[u8]) {
        if !data.is_empty() && self.file.write_all(data).is_ok() {
            self.shared.written.fetch_add(data.len() as u64, Ordering::SeqCst);
            self.shared.wake.notify_one();
        }
    }

    /// Write the kept tail (after its marker) to the spool.
    fn end_tail(&mut self) {
        if let Some(t) = self.tail.take() {
            // The tail joins the log now: no more live tail.
            self.shared.tail_total.store(0, Ordering::SeqCst);
            match t.finish(&mut self.file, self.limit) {
                Ok(n) => {
                    self.shared.written.fetch_add(n, Ordering::SeqCst);
                    self.shared.wake.notify_one();
                }
                Err(e) => tracing::warn!("failed to write the log's tail: {e}"),
            }
        }
    }

    pub fn write(&mut self, chunk: &[u8]) {
        if self.plain {
            return self.put(chunk);
        }
        let masked = self.masker.push(chunk);
        self.put(&masked);
    }

    /// Write kiln's own note (not masked, not limited away).
    pub fn note(&mut self, text: &str) {
        let rest = self.masker.finish();
        self.put(&rest);
        self.end_tail();
        self.limit = u64::MAX; // kiln's notes are never cut
        self.spool(text.as_bytes());
    }

    pub fn close(mut self) {
        let rest = self.masker.finish();
        self.put(&rest);
        self.end_tail();
        let _ = self.file.flush();
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        self.shared.done.notify_one();
    }
}

/// `n` bytes of the spool from `at`.
fn read_at(file: &mut std::fs::File, at: u64, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    file.seek(SeekFrom::Start(at))?;
    file.take(n as u64).read_to_end(&mut buf)?;
    if buf.len() < n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// How often the live tail of a log past its head is sent, at most.
const LIVE_EVERY: Duration = Duration::from_secs(1);

/// The live tail last sent: how much had been pushed into the ring, and when.
struct LiveSent {
    total: u64,
    at: std::time::Instant,
}

impl LiveSent {
    /// Past its head the log waits in the tail ring until the job ends: now and then its last
    /// lines go to the server as the log's live tail (best effort; the whole tail follows anyway).
    async fn send_if_due(&mut self, shared: &Shared, client: &Client, job_id: i64, attempt: i64) {
        let (total, cap) = (shared.tail_total.load(Ordering::SeqCst), shared.tail_cap.load(Ordering::SeqCst));
        if total == 0 || total == self.total || self.at.elapsed() < LIVE_EVERY {
            return;
        }
        self.at = std::time::Instant::now();
        let n = kiln_wire::agent::LIVE_TAIL_MAX.min(cap as usize);
        let path = shared.path.with_extension("tail");
        let Ok(Ok(text)) = tokio::task::spawn_blocking(move || crate::logtail::window(&path, cap, total, n)).await else { return };
        // The writer came round to the bytes read while they were read: next time.
        if shared.tail_total.load(Ordering::SeqCst).saturating_sub(total) + n as u64 > cap {
            return;
        }
        match client.log_live(job_id, attempt, total, text).await {
            Ok(_) => self.total = total,
            Err(e) => tracing::debug!("job {job_id}: the live tail was not sent ({e})"),
        }
    }
}

/// The bytes of the spool the server does not hold yet, when the writer has closed and they
/// are at most `FINISH_LOG_MAX`: they go with the job's finish ([`upload`] leaves them).
pub fn rest(shared: &Shared) -> Option<(u64, Vec<u8>)> {
    let closed = shared.closed.load(Ordering::SeqCst);
    let (written, delivered) = (shared.written.load(Ordering::SeqCst), shared.delivered.load(Ordering::SeqCst));
    if !closed || written.saturating_sub(delivered) > FINISH_LOG_MAX as u64 {
        return None;
    }
    let mut file = std::fs::File::open(&shared.path).ok()?;
    read_at(&mut file, delivered, (written - delivered) as usize).ok().map(|b| (delivered, b))
}

/// Upload the spool until it is closed and fully delivered, or the attempt is stale. Once it
/// is closed, at most `leave` bytes are left for the finish to carry ([`rest`]).
pub async fn upload(shared: Arc<Shared>, client: Client, job_id: i64, attempt: i64, leave: u64) {
    let mut live = LiveSent { total: 0, at: std::time::Instant::now() - LIVE_EVERY };
    let mut failures = 0u32;
    let mut compress = true;
    let mut ready: Option<(u64, usize, Vec<u8>)> = None;
    let mut since_send = std::time::Instant::now() - Duration::from_secs(1);
    let mut file = match std::fs::File::open(&shared.path) {
        Ok(f) => f,
        Err(e) => return tracing::error!("job {job_id}: failed to open the log spool: {e}"),
    };
    loop {
        // Closed first: once it is, `written` is final.
        let closed = shared.closed.load(Ordering::SeqCst);
        let written = shared.written.load(Ordering::SeqCst);
        let delivered = shared.delivered.load(Ordering::SeqCst);
        if closed && written.saturating_sub(delivered) <= leave.min(FINISH_LOG_MAX as u64) {
            return;
        }
        if delivered >= written {
            if shared.closed.load(Ordering::SeqCst) && shared.written.load(Ordering::SeqCst) == delivered {
                return;
            }
            live.send_if_due(&shared, &client, job_id, attempt).await;
            // Batch output a little (a line shows within ~50 ms, without one request
            // per line), but once the job is over, send the rest at once.
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if !shared.closed.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = shared.done.notified() => {}
                }
            }
            continue;
        }
        // A chatty step: let a little more gather (at most 100 ms) rather than send many small chunks.
        if written - delivered < BATCH as u64 && !shared.closed.load(Ordering::SeqCst) && since_send.elapsed() < Duration::from_millis(100) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100).saturating_sub(since_send.elapsed())) => {}
                _ = shared.done.notified() => {}
            }
            continue;
        }
        since_send = std::time::Instant::now();
        let written = shared.written.load(Ordering::SeqCst);
        // Whole frames go compressed; bytes before the next frame boundary, and a last part
        // smaller than a frame, go as they are (the server then seals them itself).
        // Frames compressed ahead, while the last upload was on its way, go first.
        let ahead = ready.take().filter(|(at, _, _)| compress && *at == delivered);
        let frames = match &ahead {
            Some((_, len, _)) => len / FRAME,
            None if compress && delivered % FRAME as u64 == 0 => ((written - delivered) / FRAME as u64).min(LOG_FRAMES_MAX as u64 / 2) as usize,
            None => 0,
        };
        let to_boundary = FRAME - (delivered % FRAME as u64) as usize;
        let n = if frames > 0 { frames * FRAME } else if compress { ((written - delivered) as usize).min(to_boundary) } else { ((written - delivered) as usize).min(CHUNK) };
        let buf = match ahead {
            Some(_) => Vec::new(),
            None => match read_at(&mut file, delivered, n) {
                Ok(b) => b,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let sent = if frames > 0 {
            let body = match ahead {
                Some((_, _, body)) => body,
                None => match tokio::task::spawn_blocking(move || compress_frames(&buf)).await {
                    Ok(Ok(b)) => b,
                    _ => {
                        compress = false;
                        continue;
                    }
                },
            };
            // The next whole frames, if written already, are compressed while this upload goes.
            let next_at = delivered + n as u64;
            let next = ((written - next_at) / FRAME as u64).min(LOG_FRAMES_MAX as u64 / 2) as usize;
            let next_raw = if next > 0 { read_at(&mut file, next_at, next * FRAME).ok() } else { None };
            let compress_next = async move {
                let raw = next_raw?;
                let body = tokio::task::spawn_blocking(move || compress_frames(&raw)).await.ok()?.ok()?;
                Some((next_at, next * FRAME, body))
            };
            let (sent, next) = tokio::join!(client.log_frames(job_id, attempt, delivered, body), compress_next);
            ready = next;
            match sent {
                Err(CallError::Refused(e)) => {
                    tracing::info!("job {job_id}: sending the log uncompressed ({e})");
                    compress = false;
                    ready = None;
                    continue;
                }
                other => other,
            }
        } else {
            client.log(job_id, attempt, delivered, buf).await
        };
        match sent {
            Ok(ack) => {
                failures = 0;
                shared.delivered.store(ack.len.max(delivered), Ordering::SeqCst);
            }
            Err(CallError::Gap(held)) => shared.delivered.store(held, Ordering::SeqCst),
            Err(CallError::Stale(_)) => {
                shared.stale.store(true, Ordering::SeqCst);
                return;
            }
            Err(e @ (CallError::Refused(_) | CallError::Unauthorized(_))) => {
                // Retrying will not change the answer: stop, and let the job's lease decide.
                tracing::error!("job {job_id}: the server refused its log ({e}); giving up on this attempt");
                shared.stale.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                failures += 1;
                if crate::client::worth_logging(failures) {
                    tracing::warn!("job {job_id}: log upload failed ({e}); keeping it on disk and retrying");
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_held_back_is_half_the_limit_and_tail_max_at_most() {
        assert_eq!(head_of(200_000), 100_000);
        assert_eq!(head_of(1 << 30), (1 << 30) - TAIL_MAX);
        assert_eq!(head_of(u64::MAX), u64::MAX - TAIL_MAX, "no limit: no tail");
    }

    #[test]
    fn past_the_head_the_log_waits_in_the_ring_behind_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, shared) = LogWriter::create(dir.path().join("spool"), &[], 100).unwrap();
        w.write(&[b'a'; 70]);
        let note = "\n[kiln: the log passed 50 bytes of its 100 byte limit: from here only its last 50 bytes are kept, and they follow when the job ends]\n";
        assert_eq!(shared.written.load(Ordering::SeqCst) as usize, 50 + note.len(), "the head, then the note; the rest waits");
        w.write(&[b'b'; 70]);
        w.close();
        let log = String::from_utf8(std::fs::read(dir.path().join("spool")).unwrap()).unwrap();
        assert!(log.starts_with(&format!("{}{note}", "a".repeat(50))), "{log}");
        assert!(log.contains("[kiln: 40 bytes dropped here") && log.ends_with(&"b".repeat(50)), "{log}");
    }
}
