//! Outgoing HTTP (notifications, commit statuses) that the admin controls: no
//! redirects, short timeouts, and no loopback, private or link-local address
//! unless the server runs with `--allow-private-targets`. The address is checked
//! after DNS resolution (a resolver that filters), and literal IPs before
//! connecting, so a name that points inside the network is refused too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The refusal, naming the flag.
fn refused(host: &str, ip: IpAddr) -> String {
    format!("{host} is a loopback, private or link-local address ({ip}): refused unless the server runs with --allow-private-targets (allow_private_targets in kiln.toml)")
}

/// Loopback, private, link-local, unspecified, shared (CGNAT), multicast or
/// broadcast: addresses inside a network rather than on the internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// A DNS resolver that drops private addresses (unless allowed).
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = all.iter().copied().filter(|a| allow || !is_private(a.ip())).collect();
            match (kept.is_empty(), all.first()) {
                (true, Some(first)) => Err(refused(&host, first.ip()).into()),
                _ => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The client notifications go out through.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    pub fn new(allow_private: bool) -> Result<Outbound, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("failed to build the HTTP client for notifications: {e}"))?;
        Ok(Outbound { client, allow_private })
    }

    /// Whether `url` may be called: http(s), and a literal IP must not be private
    /// (names are checked when they are resolved).
    pub fn check(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("{}: {e}", crate::redact::origin_only(url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{}: only http:// and https:// targets are allowed", crate::redact::origin_only(url)));
        }
        let host = u.host_str().unwrap_or_default();
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        if let Some(ip) = ip.filter(|ip| !self.allow_private && is_private(*ip)) {
            return Err(refused(host, ip));
        }
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

    #[test]
    fn inside_addresses_are_private() {
        for a in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1"] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_private_targets_are_refused_unless_allowed() {
        let o = Outbound::new(false).unwrap();
        assert!(o.check("http://169.254.169.254/latest/meta-data").unwrap_err().contains("--allow-private-targets"));
        assert!(o.check("http://[::1]:8080/x").is_err());
        assert!(o.check("ftp://example.com/x").is_err());
        assert!(o.check("https://example.com/x").is_ok());
        let e = o.post("http://localhost:9/x").unwrap().send().await.unwrap_err();
        assert!(failure(&e).contains("--allow-private-targets"), "{}", failure(&e));
        assert!(Outbound::new(true).unwrap().check("http://127.0.0.1:9/").is_ok());
    }
}
