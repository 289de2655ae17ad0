//! Outgoing webhooks: the build notice as JSON, signed with HMAC-SHA256 of the
//! body under the project's webhook secret (`X-Kiln-Signature-256: sha256=HEX`,
//! the same scheme kiln checks on incoming GitHub-style hooks), or a chat
//! message `{"text": …}` for Slack and Mattermost (`slack+https://…`).

use super::SendError;
use crate::outbound::{self, Outbound};
use kiln_wire::notify::BuildNotice;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Kiln-Signature-256";

/// A configured webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// POST the build notice as JSON.
    Json(&'a str),
    /// POST `{"text": summary}` (written `slack+https://…` or `mattermost+https://…`).
    Chat(&'a str),
}

impl Target<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Json(_) => "webhook",
            Target::Chat(_) => "chat",
        }
    }
    pub fn url(&self) -> &str {
        match self {
            Target::Json(u) | Target::Chat(u) => u,
        }
    }
}

/// Read a `--notify-webhook` value.
pub fn parse_target(s: &str) -> Result<Target<'_>, String> {
    let s = s.trim();
    let (chat, url) = match s.split_once('+') {
        Some(("slack" | "mattermost" | "chat", rest)) => (true, rest),
        _ => (false, s),
    };
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "https://".len();
    if !ok {
        return Err("expected an http:// or https:// URL, or slack+https://… for a chat message".into());
    }
    Ok(if chat { Target::Chat(url) } else { Target::Json(url) })
}

/// `sha256=HEX` of HMAC-SHA256(secret, body).
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", crate::signature::sign(secret, body))
}

/// The exact bytes a target receives.
pub fn body(target: &Target<'_>, notice: &BuildNotice) -> Vec<u8> {
    match target {
        Target::Json(_) => serde_json::to_vec(notice),
        Target::Chat(_) => serde_json::to_vec(&serde_json::json!({ "text": format!("kiln: {}", notice.text) })),
    }
    .expect("plain data serialises")
}

/// POST one delivery. Any answer but 2xx is an error to retry.
pub async fn post(http: &Outbound, target: &str, delivery: i64, notice: &BuildNotice, secret: Option<&str>) -> Result<(), SendError> {
    let t = parse_target(target).map_err(|e| SendError::Permanent(format!("webhook {target:?}: {e}")))?;
    let body = body(&t, notice);
    let shown = crate::redact::shown_target(t.kind(), target);
    let mut req = http
        .post(t.url())
        .map_err(|e| SendError::Permanent(format!("webhook {shown}: {e}")))?
        .header("content-type", "application/json")
        .header("x-kiln-event", notice.event.as_str())
        .header("x-kiln-delivery", delivery.to_string());
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        req = req.header(SIGNATURE_HEADER, sign(s, &body));
    }
    let resp = req.body(body).send().await.map_err(|e| SendError::Retry(format!("webhook {shown} unreachable: {}", outbound::failure(&e))))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    Err(SendError::Retry(format!("webhook {shown} answered {}", outbound::status_line(status))))
}

/// An error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("https://x.test/h").unwrap(), Target::Json("https://x.test/h"));
        assert_eq!(parse_target("slack+https://hooks.slack.com/services/a").unwrap(), Target::Chat("https://hooks.slack.com/services/a"));
        assert_eq!(parse_target("mattermost+http://mm.test/hooks/x").unwrap().kind(), "chat");
        assert!(parse_target("ftp://x").is_err());
        assert!(parse_target("slack+ftp://x").is_err());
        assert!(parse_target("https://").is_err());
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let s = sign("Jefe", b"what do ya want for nothing?");
        assert_eq!(s, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
