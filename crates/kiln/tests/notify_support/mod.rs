//! Receivers for the notification tests: an HTTP server that records every
//! request and answers what the test says, and a real SMTP server (Python's
//! aiosmtpd, from the venv `ci/setup-notify.sh` makes) writing a maildir.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port that was free a moment ago (nothing listens on it now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One recorded HTTP request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The status this request was answered with.
    pub answered: u16,
}

impl Req {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body of {} is not JSON ({e}): {}", self.path, String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

type Answer = dyn Fn(&Req, usize) -> u16 + Send + Sync;

/// An HTTP server on 127.0.0.1 recording requests; `answer(req, n)` picks the
/// status for the n-th request (0-based).
pub struct Recorder {
    pub port: u16,
    pub reqs: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    pub fn start(answer: impl Fn(&Req, usize) -> u16 + Send + Sync + 'static) -> Recorder {
        Recorder::start_on(0, answer)
    }

    /// Listen on `port` (0: any free port).
    pub fn start_on(port: u16, answer: impl Fn(&Req, usize) -> u16 + Send + Sync + 'static) -> Recorder {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => panic!("cannot listen on 127.0.0.1:{port}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let port = listener.local_addr().unwrap().port();
        let reqs: Arc<Mutex<Vec<Req>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        let (r, s) = (reqs.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = conn {
                    serve(c, &r, &*answer);
                }
            }
        });
        Recorder { port, reqs, stop, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    /// Wait until `n` requests satisfy `f`; return every request.
    pub fn wait_for(&self, what: &str, secs: u64, n: usize, f: impl Fn(&Req) -> bool) -> Vec<Req> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let all = self.requests();
            if all.iter().filter(|r| f(r)).count() >= n {
                return all;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; got {} request(s): {:#?}", all.len(), summary(&all));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop listening (later connections are refused).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn summary(reqs: &[Req]) -> Vec<String> {
    reqs.iter().map(|r| format!("{} {} -> {}: {}", r.method, r.path, r.answered, String::from_utf8_lossy(&r.body))).collect()
}

fn serve(c: TcpStream, reqs: &Mutex<Vec<Req>>, answer: &Answer) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut rd = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    if rd.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if rd.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    if rd.read_exact(&mut body).is_err() {
        return;
    }
    let mut req = Req { method, path, headers, body, answered: 0 };
    let mut all = reqs.lock().unwrap();
    req.answered = answer(&req, all.len());
    all.push(req.clone());
    drop(all);
    let mut w = c;
    let _ = write!(w, "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}", req.answered);
    let _ = w.flush();
}

/// The venv with aiosmtpd: `$KILN_CI_VENV`, else `${XDG_CACHE_HOME:-~/.cache}/kiln-ci/notify-venv`.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("KILN_CI_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"));
        cache.join("kiln-ci/notify-venv")
    });
    let py = venv.join("bin/python");
    let ok = Command::new(&py).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "no aiosmtpd at {}: run ci/setup-notify.sh first (it makes that venv; KILN_CI_VENV picks another folder)", py.display());
    py
}

/// A real SMTP server on 127.0.0.1 delivering into a maildir.
pub struct Smtp {
    pub port: u16,
    pub maildir: PathBuf,
    child: Child,
}

impl Smtp {
    pub fn start(dir: &Path) -> Smtp {
        let py = venv_python();
        let port = free_port();
        let maildir = dir.join("maildir");
        let log = std::fs::File::create(dir.join("smtp.log")).unwrap();
        let child = Command::new(py)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on {port}: {}", std::fs::read_to_string(dir.join("smtp.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        Smtp { port, maildir, child }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(self.maildir.join("new")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
    }

    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {n} mail(s); got {}", m.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HMAC-SHA256 as hex, computed here independently of kiln (by Python's hmac module).
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut c = Command::new("python3")
        .args(["-c", "import hmac,hashlib,sys;print(hmac.new(sys.argv[1].encode(),sys.stdin.buffer.read(),hashlib.sha256).hexdigest())", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 for HMAC");
    c.stdin.take().unwrap().write_all(body).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A raw mail's plain-text and HTML parts, decoded (quoted-printable, base64) by Python's
/// `email` package, so a test reads what a mail client shows.
pub fn mail_parts(raw: &str) -> (String, String) {
    let script = "import email,sys,json\nfrom email import policy\nm=email.message_from_string(sys.stdin.read(),policy=policy.default)\n\
                  t=m.get_body(('plain',));h=m.get_body(('html',))\n\
                  print(json.dumps([t.get_content() if t else '',h.get_content() if h else '']))";
    let mut c = Command::new("python3").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python3 to read a mail");
    c.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 could not parse the mail:\n{raw}");
    let v: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    (v[0].clone(), v[1].clone())
}
