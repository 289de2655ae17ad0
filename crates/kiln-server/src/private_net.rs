//! Which addresses the server may reach when it fetches a project's repository or sends a
//! notification or commit status: loopback, private and link-local addresses only when an
//! admin allows them, for every host (`--allow-private-targets`) or for named hosts
//! (`--allow-private-host HOST`). A name is checked after it is resolved, so a public-looking
//! name that points inside the network is refused too.

use std::net::{IpAddr, SocketAddr};

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

/// The admin's word on private addresses.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// Every host may be private (`--allow-private-targets`).
    pub allow_all: bool,
    /// These hosts may be private (`--allow-private-host`), compared without case.
    pub hosts: Vec<String>,
}

/// A host as written in a URL, without the brackets of an IPv6 address.
fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Reach {
    /// Everything may be reached (`kiln up`, tests).
    pub fn anywhere() -> Reach {
        Reach { allow_all: true, hosts: vec![] }
    }

    /// May `host` be reached whatever it resolves to?
    pub fn allows(&self, host: &str) -> bool {
        self.allow_all || self.hosts.iter().any(|h| bare(h).eq_ignore_ascii_case(bare(host)))
    }

    /// Why `host`, at `ip`, may not be reached: the refusal names both ways to allow it.
    pub fn refusal(host: &str, ip: IpAddr) -> String {
        format!(
            "{host} is a loopback, private or link-local address ({ip}): the server reaches such addresses only when an admin allows them, for this host with --allow-private-host {} (allow_private_hosts in kiln.toml) or for all with --allow-private-targets",
            bare(host)
        )
    }

    /// Refuse a literal private address before anything is resolved; names are checked when
    /// they are resolved ([`Reach::resolve`]).
    pub fn check_literal(&self, host: &str) -> Result<(), String> {
        if self.allows(host) {
            return Ok(());
        }
        match bare(host).parse::<IpAddr>() {
            Ok(ip) if is_private(ip) => Err(Reach::refusal(host, ip)),
            _ => Ok(()),
        }
    }

    /// The addresses of `host` the server may connect to: all of them when the host is
    /// allowed, else the public ones, or the refusal when there are none.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let all: Vec<SocketAddr> = tokio::net::lookup_host((bare(host), port)).await.map_err(|e| format!("cannot resolve {}: {e}", bare(host)))?.collect();
        if self.allows(host) {
            return Ok(all);
        }
        let kept: Vec<SocketAddr> = all.iter().copied().filter(|a| !is_private(a.ip())).collect();
        match (kept.is_empty(), all.first()) {
            (true, Some(first)) => Err(Reach::refusal(host, first.ip())),
            (true, None) => Err(format!("cannot resolve {}: no address", bare(host))),
            _ => Ok(kept),
        }
    }
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
    async fn a_private_host_is_reached_only_when_allowed_for_it_or_for_all() {
        let none = Reach::default();
        for h in ["127.0.0.1", "[::1]", "169.254.169.254"] {
            let e = none.check_literal(h).unwrap_err();
            assert!(e.contains("--allow-private-host") && e.contains("--allow-private-targets"), "{e}");
        }
        assert!(none.check_literal("1.1.1.1").is_ok() && none.check_literal("example.com").is_ok(), "names wait for their lookup");
        assert!(none.resolve("localhost", 80).await.unwrap_err().contains("--allow-private-host localhost"));
        let one = Reach { allow_all: false, hosts: vec!["LocalHost".into(), "[::1]".into()] };
        assert!(one.check_literal("::1").is_ok());
        assert!(!one.resolve("localhost", 80).await.unwrap().is_empty());
        assert!(one.check_literal("127.0.0.1").is_err(), "another name for the same address is not the allowed host");
        assert!(Reach::anywhere().resolve("127.0.0.1", 80).await.is_ok());
    }
}
