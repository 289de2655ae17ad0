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

/// How long to wait before opening a stream again after it ended (a server restart): at
/// first, and at most (the pause doubles while streams end at once).
const REOPEN_MIN: std::time::Duration = std::time::Duration::from_millis(200);
const REOPEN_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Open the event stream at `url` and return a receiver that gets one `()` whenever an event
/// of one of `kinds` (or a `resync`: events were missed) arrived since the last one was taken.
/// `None` when the stream cannot be opened (an older server, a refusal): the caller then looks
/// at intervals. When the stream ends (the server restarted), it is opened again, after a
/// wake-up (what happened meanwhile was not heard), waiting longer each time it fails, up to
/// [`REOPEN_MAX`]; the receiver ends only when the caller drops it.
pub async fn open(http: &reqwest::Client, url: String, token: Option<&str>, kinds: &'static [&'static str]) -> Option<mpsc::Receiver<()>> {
    let (http, token) = (http.clone(), token.map(str::to_string));
    let connect = move || {
        let mut req = http.get(&url).header("accept", "text/event-stream").timeout(std::time::Duration::from_secs(24 * 3600));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.ok().filter(|r| r.status().is_success()) }
    };
    let mut resp = connect().await?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut pause = REOPEN_MIN;
        loop {
            let mut lines = EventKinds::default();
            let opened = std::time::Instant::now();
            loop {
                // The caller dropped its receiver: stop, and let the server's stream go.
                let chunk = tokio::select! {
                    _ = tx.closed() => return,
                    c = resp.chunk() => c,
                };
                let Ok(Some(chunk)) = chunk else { break };
                if lines.feed(&chunk).iter().any(|k| k == kiln_wire::events::RESYNC || kinds.contains(&k.as_str())) && wake(&tx).is_err() {
                    return;
                }
            }
            // A stream that stayed open a while starts the pauses over; one that ends at once
            // (a proxy hanging up) makes them grow.
            if opened.elapsed() >= REOPEN_MAX {
                pause = REOPEN_MIN;
            }
            // The stream ended: open it again until the caller stops listening.
            resp = loop {
                if wake(&tx).is_err() {
                    return;
                }
                let again = tokio::select! {
                    _ = tx.closed() => return,
                    r = async {
                        tokio::time::sleep(pause).await;
                        connect().await
                    } => r,
                };
                pause = (pause * 2).min(REOPEN_MAX);
                if let Some(r) = again {
                    break r;
                }
            };
        }
    });
    Some(rx)
}

/// One wake-up; `Err` once the caller dropped its receiver. A full channel already holds a
/// wake-up that covers this one.
fn wake(tx: &mpsc::Sender<()>) -> Result<(), ()> {
    match tx.try_send(()) {
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        _ => Ok(()),
    }
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

    /// A server that answers each request for its stream with `event: build` and hangs up.
    async fn short_streams() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/events", listener.local_addr().unwrap());
        let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = opened.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: build\ndata: {}\n\n").await;
            }
        });
        (url, opened)
    }

    #[tokio::test]
    async fn a_stream_that_ends_is_opened_again_and_keeps_waking_its_follower() {
        let (url, opened) = short_streams().await;
        kiln_agent::client::install_crypto();
        let mut rx = open(&reqwest::Client::new(), url, None, &["build"]).await.expect("the stream opens");
        for _ in 0..4 {
            let woke = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.expect("a wake-up within 10 s");
            assert_eq!(woke, Some(()), "the receiver ended with its stream");
        }
        let t0 = std::time::Instant::now();
        while opened.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(t0.elapsed() < std::time::Duration::from_secs(15), "the stream was not opened again");
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await;
        }
    }

    #[tokio::test]
    async fn a_follower_that_stops_listening_lets_a_silent_stream_go() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/events", listener.local_addr().unwrap());
        let (gone_tx, gone) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            // Say nothing more; wait for the client to hang up.
            while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            let _ = gone_tx.send(());
        });
        kiln_agent::client::install_crypto();
        let rx = open(&reqwest::Client::new(), url, None, &["build"]).await.expect("the stream opens");
        drop(rx);
        tokio::time::timeout(std::time::Duration::from_secs(10), gone).await.expect("the stream was let go").unwrap();
    }
}
