//! The event stream (`GET /api/v1/events`) as a test reads it: its lines on a channel, opened
//! only once the server has answered (so it has subscribed), and a wait for one event.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Open `GET /api/v1/events` on a server with `token`; returns once the response's headers
/// came (the server subscribed before answering), every later line arriving on the channel.
pub fn event_lines(base: &str, token: &str) -> mpsc::Receiver<String> {
    let host = base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(s, "GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut head = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("the event stream at {base} did not answer: {head:#?}"));
        if line.trim().is_empty() {
            assert!(head.first().is_some_and(|s: &String| s.contains(" 200")), "the event stream at {base} answered {head:#?}");
            return rx;
        }
        head.push(line);
    }
}

/// Wait up to `secs` for an event of `kind` whose data line contains `needle`; panics naming
/// what came instead.
pub fn wait_event(events: &mpsc::Receiver<String>, kind: &str, needle: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    let mut this_kind = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = events.recv_timeout(left).unwrap_or_else(|_| panic!("no {kind} event with {needle:?} within {secs} s; the stream sent: {seen:#?}"));
        if let Some(k) = line.strip_prefix("event:") {
            this_kind = k.trim() == kind;
        } else if line.starts_with("data:") && this_kind && line.contains(needle) {
            return;
        }
        seen.push(line);
    }
}
