//! Outgoing HTTP (notifications, commit statuses) that the admin controls: no
//! redirects, short timeouts, and no loopback, private or link-local address
//! unless an admin allows it (`private_net`). The address is checked after DNS
//! resolution (a resolver that filters), and literal IPs before connecting, so a
//! name that points inside the network is refused too.

use crate::private_net::Reach;
use std::sync::Arc;
use std::time::Duration;

/// A DNS resolver that drops the private addresses the admin has not allowed.
struct PublicOnly {
    reach: Reach,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let reach = self.reach.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let kept = reach.resolve(&host, 0).await?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client notifications go out through.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    reach: Reach,
}

impl Outbound {
    pub fn new(reach: Reach) -> Result<Outbound, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly { reach: reach.clone() }))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("failed to build the HTTP client for notifications: {e}"))?;
        Ok(Outbound { client, reach })
    }

    /// Whether `url` may be called: http(s), and a literal IP must not be private
    /// (names are checked when they are resolved).
    pub fn check(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("{}: {e}", crate::redact::origin_only(url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{}: only http:// and https:// targets are allowed", crate::redact::origin_only(url)));
        }
        self.reach.check_literal(u.host_str().unwrap_or_default())?;
        Ok(u)
    }

    /// A POST to `url`, or why it may not be sent.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, String> {
        Ok(self.client.post(self.check(url)?))
    }
}

/// What a target answered, in one short line: the status only, never the body
/// (which could carry whatever an internal service says).
pub fn status_line(status: reqwest::StatusCode) -> String {
    status.to_string()
}

/// Why a call failed, in a few words ("connection refused", "timed out", or the refusal).
pub fn failure(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut root: &dyn std::error::Error = e;
    while let Some(c) = root.source() {
        root = c;
    }
    root.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_and_resolved_private_targets_are_refused_unless_allowed() {
        let o = Outbound::new(Reach::default()).unwrap();
        assert!(o.check("http://169.254.169.254/latest/meta-data").unwrap_err().contains("--allow-private-targets"));
        assert!(o.check("http://[::1]:8080/x").is_err());
        assert!(o.check("ftp://example.com/x").is_err());
        assert!(o.check("https://example.com/x").is_ok());
        let e = o.post("http://localhost:9/x").unwrap().send().await.unwrap_err();
        assert!(failure(&e).contains("--allow-private-targets"), "{}", failure(&e));
        assert!(Outbound::new(Reach::anywhere()).unwrap().check("http://127.0.0.1:9/").is_ok());
        let named = Outbound::new(Reach { allow_all: false, hosts: vec!["localhost".into()] }).unwrap();
        let e = named.post("http://localhost:9/x").unwrap().send().await.unwrap_err();
        assert!(!failure(&e).contains("--allow-private"), "an allowed host is connected to: {}", failure(&e));
    }
}
