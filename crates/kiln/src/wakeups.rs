//! Wake-ups from the server's event stream (`GET /api/v1/events`, server-sent events) for a
//! client that follows a build: it re-reads the build when one of its events arrives, so it
//! sees the build end as soon as the server records it instead of at its next look.
//!
//! Only the `event:` lines are read: the follower re-reads the build through the API, which
//! also applies who may see what. Several events before a re-read make one wake-up.

use tokio::sync::mpsc;

/// The `event:` kinds of a server-sent event stream, from its bytes as they arrive (a line
/// may be split across chunks).
#[derive(Default)]
pub struct EventKinds {
    partial: Vec<u8>,
}

impl EventKinds {
    /// The kinds of the events whose `event:` line ends in `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut kinds = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                // A line longer than any event name is data: only its start is kept.
                if self.partial.len() < 64 {
                    self.partial.push(b);
                }
                continue;
            }
            let line = std::mem::take(&mut self.partial);
            let line = String::from_utf8_lossy(&line);
            if let Some(kind) = line.trim_end_matches('\r').strip_prefix("event:") {
                kinds.push(kind.trim().to_string());
            }
        }
        kinds
    }
}

/// Open the event stream at `path` and return a receiver that gets one `()` whenever an event
/// of one of `kinds` (or a `resync`: events were missed) arrived since the last one was taken.
/// `None` when the stream cannot be opened (an older server, a refusal): the caller then looks
/// at intervals. The receiver ends when the stream does.
pub async fn open(http: &reqwest::Client, url: String, token: Option<&str>, kinds: &'static [&'static str]) -> Option<mpsc::Receiver<()>> {
    let mut req = http.get(url).header("accept", "text/event-stream").timeout(std::time::Duration::from_secs(24 * 3600));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.ok().filter(|r| r.status().is_success())?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut lines = EventKinds::default();
        while let Ok(Some(chunk)) = resp.chunk().await {
            if lines.feed(&chunk).iter().any(|k| k == kiln_wire::events::RESYNC || kinds.contains(&k.as_str())) {
                match tx.try_send(()) {
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    // Full: a wake-up is already waiting, which covers this event too.
                    _ => {}
                }
            }
        }
    });
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_from_event_lines_split_across_chunks() {
        let mut k = EventKinds::default();
        assert_eq!(k.feed(b": keep-alive\n\nevent: bu"), Vec::<String>::new());
        assert_eq!(k.feed(b"ild\ndata: {\"kind\":\"job\"}\n\nevent:log\r\n"), vec!["build".to_string(), "log".to_string()]);
        assert_eq!(k.feed(b"data: event: job\n\nevent: job\n"), vec!["job".to_string()], "a data line naming a kind is not an event line");
    }

    #[test]
    fn a_long_data_line_is_cut_not_kept_whole() {
        let mut k = EventKinds::default();
        let mut big = b"data: ".to_vec();
        big.extend(std::iter::repeat_n(b'x', 1 << 20));
        assert!(k.feed(&big).is_empty());
        assert!(k.partial.len() <= 64);
        assert_eq!(k.feed(b"\nevent: build\n"), vec!["build".to_string()]);
    }
}
