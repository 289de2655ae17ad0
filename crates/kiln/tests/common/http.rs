//! A tiny HTTP/1.1 client over std's TcpStream for tests that look at statuses,
//! headers and cookies (the CLI hides those). One request per connection.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// `name=value` of every Set-Cookie.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.split(';').next().unwrap_or("").to_string()).collect()
    }
    /// A cookie's value from Set-Cookie.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = nl + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}

/// Send one request to `base` (http://host:port). `headers_only` stops after the
/// response head (for streams such as server-sent events).
pub fn send(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], headers_only: bool) -> Resp {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).expect("connect to kiln");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before it reads the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A signal to the test process (a child's exit) interrupted the read: read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if headers_only && !raw.is_empty() && e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading {method} {path}: {e}"),
        }
        if headers_only && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("{method} {path}: no response head"));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) && !headers_only {
        body = dechunk(&body);
    }
    Resp { status, headers, body }
}

pub fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(base, "GET", path, headers, b"", false)
}

/// A multipart/form-data body: (field, file name, data) per part. Returns (content type, body).
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "kilnTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The value of the first `name="_csrf" value="…"` in a page.
pub fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"_csrf\" value=\"").expect("page has a CSRF field") + 20;
    html[i..].split('"').next().unwrap().to_string()
}

/// Sign in through the login form; returns (session cookie, CSRF token of the session).
pub fn sign_in(base: &str, name: &str, password: &str) -> (String, String) {
    let form = get(base, "/login", &[]);
    assert_eq!(form.status, 200);
    let pre = form.cookie("kiln_csrf").expect("login form sets its CSRF cookie");
    let csrf = csrf_of(&form.text());
    let body = format!("_csrf={csrf}&name={name}&password={password}&next=%2Faccount");
    let r = send(
        base,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &format!("kiln_csrf={pre}"))],
        body.as_bytes(),
        false,
    );
    assert_eq!(r.status, 303, "sign-in failed: {}", r.text());
    let session = r.cookie("kiln_session").expect("sign-in sets the session cookie");
    let cookie = format!("kiln_session={session}");
    let account = get(base, "/account", &[("Cookie", &cookie)]);
    assert_eq!(account.status, 200);
    (cookie, csrf_of(&account.text()))
}
