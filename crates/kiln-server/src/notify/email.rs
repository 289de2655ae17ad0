//! Email over SMTP (lettre, rustls): STARTTLS or TLS, plain only to localhost,
//! optional login. One message per build change to all its recipients, as
//! plain text and HTML.

use super::notice::{duration_text, short, status_words};
use super::SendError;
use crate::config::SmtpConfig;
use kiln_wire::notify::BuildNotice;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: only to this machine.
    Plain,
}

/// `[smtp]` checked: where to connect and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Read and check `[smtp]` (or the `--smtp-*` flags).
pub fn settings(cfg: &SmtpConfig) -> Result<SmtpSettings, String> {
    let url = cfg.url.trim();
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("invalid --smtp-url {url:?}: write smtp://HOST:PORT or smtps://HOST:PORT"))?;
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once(']').ok_or_else(|| format!("invalid --smtp-url {url:?}: unclosed [ in the host"))?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("invalid --smtp-url {url:?}: no host"));
    }
    let url_tls = match scheme {
        "smtp" if is_loopback(&host) => TlsMode::Plain,
        "smtp" => TlsMode::StartTls,
        "smtps" => TlsMode::Tls,
        _ => return Err(format!("invalid --smtp-url {url:?}: the scheme must be smtp:// (STARTTLS) or smtps:// (TLS)")),
    };
    let tls = match cfg.tls.as_deref().map(str::trim) {
        None | Some("") => url_tls,
        Some("starttls") => TlsMode::StartTls,
        Some("tls") => TlsMode::Tls,
        Some("none") => TlsMode::Plain,
        Some(o) => return Err(format!("invalid --smtp-tls {o:?}: use starttls, tls or none")),
    };
    if tls == TlsMode::Plain && !is_loopback(&host) {
        return Err(format!(
            "SMTP to {host} would send mail and passwords in the clear: plain SMTP is allowed only to localhost; use --smtp-tls starttls or tls"
        ));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("invalid --smtp-url {url:?}: bad port {p:?}"))?,
        None if tls == TlsMode::Tls => 465,
        None if tls == TlsMode::StartTls => 587,
        None => 25,
    };
    let (mut user, mut password) = (None, None);
    if let Some(ui) = userinfo {
        let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
        user = Some(pct_decode(u));
        password = (!p.is_empty()).then(|| pct_decode(p));
    }
    if cfg.user.is_some() {
        user = cfg.user.clone();
    }
    if cfg.password.is_some() {
        password = cfg.password.clone();
    }
    if password.is_some() && user.is_none() {
        return Err("an SMTP password needs a user: add --smtp-user".into());
    }
    let from = cfg.from.clone().unwrap_or_else(|| "kiln <kiln@localhost>".into());
    parse_mailbox(&from).map_err(|e| format!("invalid --smtp-from {from:?}: {e}"))?;
    Ok(SmtpSettings { host, port, tls, user, password, from })
}

/// An address as `a@example.com` or `Name <a@example.com>`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    s.trim().parse::<Mailbox>().map_err(|e| format!("not an email address ({e})"))
}

/// A pooled SMTP transport and the From address. Create and drop it inside the runtime.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl Mailer {
    pub fn new(cfg: &SmtpConfig) -> Result<Mailer, String> {
        let s = settings(cfg)?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
            .port(s.port)
            .timeout(Some(Duration::from_secs(30)));
        let tls_params = || TlsParameters::new(s.host.clone()).map_err(|e| format!("failed to set up TLS for SMTP to {}: {e}", s.host));
        b = match s.tls {
            TlsMode::StartTls => b.tls(Tls::Required(tls_params()?)),
            TlsMode::Tls => b.tls(Tls::Wrapper(tls_params()?)),
            TlsMode::Plain => b.tls(Tls::None),
        };
        if let Some(u) = &s.user {
            b = b.credentials(Credentials::new(u.clone(), s.password.clone().unwrap_or_default()));
        }
        let from = parse_mailbox(&s.from)?;
        Ok(Mailer { transport: b.build(), from, server: format!("{}:{}", s.host, s.port) })
    }

    pub async fn send(&self, to: &[String], n: &BuildNotice) -> Result<(), SendError> {
        let (subject, text, html) = render(n);
        let mut m = Message::builder().from(self.from.clone()).subject(subject);
        for a in to {
            m = m.to(parse_mailbox(a).map_err(|e| SendError::Permanent(format!("recipient {a:?}: {e}")))?);
        }
        let msg = m
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| SendError::Permanent(format!("failed to build the email: {e}")))?;
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP server {} refused the mail: {e}", self.server))),
            Err(e) => Err(SendError::Retry(format!("SMTP server {}: {}", self.server, super::webhook_out::error_chain(&e)))),
        }
    }
}

/// Lines of a failure's message the plain-text mail shows (the HTML part shows it all).
const MESSAGE_LINES: usize = 6;

/// `25 passed (1 flaky), 1 failed, 3 skipped`.
fn tests_line(t: &kiln_wire::api::TestSummary) -> String {
    kiln_core::testrun::Counts { total: t.total, passed: t.passed, failed: t.failed, errored: t.errored, skipped: t.skipped, flaky: t.flaky }.line()
}

/// `Failed tests` or `Failed tests (first 10 of 37)`.
fn failed_heading(n: &BuildNotice) -> String {
    let total = n.tests.as_ref().map_or(0, |t| t.failed + t.errored) as usize;
    if total > n.failed_tests.len() {
        format!("Failed tests (first {} of {total})", n.failed_tests.len())
    } else {
        "Failed tests".to_string()
    }
}

/// A failed test's id (older notices have only suite and name).
fn test_name(t: &kiln_wire::notify::FailedTest) -> String {
    if !t.id.is_empty() {
        t.id.clone()
    } else {
        format!("{} {}", t.suite, t.name).trim().to_string()
    }
}

fn job_of(t: &kiln_wire::notify::FailedTest) -> String {
    if t.job.is_empty() {
        String::new()
    } else {
        format!(" (job {})", t.job)
    }
}

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// (subject, plain text, HTML) of a build notice.
pub fn render(n: &BuildNotice) -> (String, String, String) {
    let b = &n.build;
    let status = status_words(n);
    let subject = format!(
        "[kiln] {} #{} {} on {}{}",
        n.project,
        b.id,
        status,
        b.branch,
        if b.commit.is_empty() { String::new() } else { format!(" ({})", short(&b.commit)) }
    );
    let mut rows: Vec<(&str, String)> = vec![
        ("Project", n.project.clone()),
        ("Branch", b.branch.clone()),
        ("Commit", format!("{}{}", b.commit, b.message.as_deref().map(|m| format!(" {}", m.lines().next().unwrap_or(""))).unwrap_or_default())),
        ("Author", b.author.clone().unwrap_or_else(|| "-".into())),
        ("Trigger", format!("{} by {}", b.trigger, b.triggered_by)),
        (
            "Status",
            format!("{}{}", b.status, b.previous_status.as_deref().map(|p| format!(" (previous build on {}: {p})", b.branch)).unwrap_or_default()),
        ),
        ("Duration", duration_text(n).unwrap_or_else(|| "-".into())),
    ];
    if let Some(t) = &n.tests {
        rows.push(("Tests", tests_line(t)));
    }
    if let Some(ms) = b.first_failure_ms {
        rows.push(("Failed", format!("first failure after {:.1} s", ms as f64 / 1000.0)));
    }
    if let Some(e) = &b.error {
        rows.push(("Error", e.clone()));
    }
    let mut text = format!("{} build #{} {}.\n\n", n.project, b.id, status);
    for (k, v) in &rows {
        text.push_str(&format!("{:<9} {v}\n", format!("{k}:")));
    }
    text.push_str("\nJobs:\n");
    for j in &b.jobs {
        let extra = match (&j.exit_code, &j.reason) {
            (_, Some(r)) => format!(" ({r})"),
            (Some(c), None) if *c != 0 => format!(" (exit {c})"),
            _ => String::new(),
        };
        text.push_str(&format!("  {:<8} {}{extra}\n", j.status, j.key));
    }
    if !n.failed_tests.is_empty() {
        text.push_str(&format!("\n{}:\n", failed_heading(n)));
        for t in &n.failed_tests {
            text.push_str(&format!("  {} {}{}\n", t.outcome.to_uppercase(), test_name(t), job_of(t)));
            let lines: Vec<&str> = t.message.lines().filter(|l| !l.trim().is_empty()).collect();
            for l in lines.iter().take(MESSAGE_LINES) {
                text.push_str(&format!("    {l}\n"));
            }
            if lines.len() > MESSAGE_LINES {
                text.push_str(&format!("    … {} more lines\n", lines.len() - MESSAGE_LINES));
            }
        }
    }
    text.push_str(&format!("\nBuild:   {}\nProject: {}\n", b.url, n.project_url));

    let color = match b.status.as_str() {
        "passed" => "#1a7f37",
        "failed" | "errored" => "#cf222e",
        _ => "#6e7781",
    };
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2 style=\"color:{color}\">{} build <a href=\"{}\">#{}</a> {}</h2><table>",
        esc(&n.project),
        esc(&b.url),
        b.id,
        esc(&status)
    );
    for (k, v) in &rows {
        html.push_str(&format!("<tr><th align=\"left\">{k}</th><td>{}</td></tr>", esc(v)));
    }
    html.push_str("</table><h3>Jobs</h3><ul>");
    for j in &b.jobs {
        html.push_str(&format!("<li><b>{}</b> {}{}</li>", esc(&j.status), esc(&j.key), j.reason.as_deref().map(|r| format!(" — {}", esc(r))).unwrap_or_default()));
    }
    html.push_str("</ul>");
    if !n.failed_tests.is_empty() {
        html.push_str(&format!("<h3>{}</h3><ul>", esc(&failed_heading(n))));
        for t in &n.failed_tests {
            html.push_str(&format!(
                "<li><b>{}</b> {}{}<pre style=\"white-space:pre-wrap\">{}</pre></li>",
                esc(&t.outcome),
                esc(&test_name(t)),
                esc(&job_of(t)),
                esc(&t.message)
            ));
        }
        html.push_str("</ul>");
    }
    html.push_str(&format!(
        "<p><a href=\"{}\">Open the build</a> · <a href=\"{}\">Project {}</a></p></body></html>",
        esc(&b.url),
        esc(&n.project_url),
        esc(&n.project)
    ));
    (subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, tls: Option<&str>) -> SmtpConfig {
        SmtpConfig { url: url.into(), tls: tls.map(String::from), ..Default::default() }
    }

    #[test]
    fn tls_mode_follows_the_url_and_plain_stays_local() {
        let s = settings(&cfg("smtp://127.0.0.1:2525", None)).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("127.0.0.1", 2525, TlsMode::Plain));
        let s = settings(&cfg("smtp://mail.example.com", None)).unwrap();
        assert_eq!((s.port, s.tls), (587, TlsMode::StartTls));
        let s = settings(&cfg("smtps://u%40x:p%3Aw@mail.example.com", None)).unwrap();
        assert_eq!((s.port, s.tls, s.user.as_deref(), s.password.as_deref()), (465, TlsMode::Tls, Some("u@x"), Some("p:w")));
        let e = settings(&cfg("smtp://mail.example.com:25", Some("none"))).unwrap_err();
        assert!(e.contains("only to localhost"), "{e}");
        let s = settings(&cfg("smtp://[::1]:25", Some("none"))).unwrap();
        assert_eq!((s.host.as_str(), s.tls), ("::1", TlsMode::Plain));
        assert!(settings(&cfg("http://x", None)).is_err());
        assert!(settings(&cfg("smtp://localhost", Some("ssl"))).unwrap_err().contains("--smtp-tls"));
    }
}
