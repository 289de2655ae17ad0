//! Sign-in throttling: every attempt counts against the client's address and
//! the user name before the password is hashed, so a flood is refused (429 with
//! `Retry-After`) without costing a hash. Too many attempts from one address in
//! a window are refused until the window ends; too many failures for one user
//! name lock that name for a while (logged). A successful sign-in clears both.
//! The counts live in memory (per server) and never hold more than `MAX_KEYS`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts one address may make in `WINDOW` without a success.
pub const ADDR_ATTEMPTS: u32 = 20;
/// Attempts one user name may fail before it is locked for `LOCKOUT`.
pub const USER_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(300);
pub const LOCKOUT: Duration = Duration::from_secs(900);
/// Keys remembered at most (expired ones are dropped first, then the oldest).
const MAX_KEYS: usize = 50_000;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    User(String),
}

struct Entry {
    attempts: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct SignInThrottle {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// The address a request came from (the TCP peer, `ConnectInfo`; 0.0.0.0 when the
/// router runs without it). Behind a proxy every client shares the proxy's address.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

impl SignInThrottle {
    /// Count an attempt, or say how long to wait before the next one may be made.
    pub fn begin(&self, ip: IpAddr, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap();
        if map.len() >= MAX_KEYS {
            map.retain(|_, e| e.locked_until.is_some_and(|t| t > now) || now.duration_since(e.since) < WINDOW);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let (addr, name) = (Key::Addr(ip), Key::User(user.to_lowercase()));
        for k in [&addr, &name] {
            if let Some(e) = map.get_mut(k) {
                if let Some(until) = e.locked_until {
                    if until > now {
                        return Err(until - now);
                    }
                    e.locked_until = None;
                    e.attempts = 0;
                    e.since = now;
                }
                if now.duration_since(e.since) >= WINDOW {
                    e.attempts = 0;
                    e.since = now;
                }
            }
        }
        if let Some(e) = map.get(&addr) {
            if e.attempts >= ADDR_ATTEMPTS {
                return Err(WINDOW.saturating_sub(now.duration_since(e.since)));
            }
        }
        for k in [addr, name.clone()] {
            map.entry(k).or_insert(Entry { attempts: 0, since: now, locked_until: None }).attempts += 1;
        }
        let e = map.get_mut(&name).expect("just inserted");
        if e.attempts >= USER_FAILURES {
            e.locked_until = Some(now + LOCKOUT);
            tracing::warn!("user {user:?} locked out of sign-in for {} s after {USER_FAILURES} failed attempts (last from {ip})", LOCKOUT.as_secs());
        }
        Ok(())
    }

    /// A successful sign-in: forget the address's and the name's attempts.
    pub fn success(&self, ip: IpAddr, user: &str) {
        let mut map = self.entries.lock().unwrap();
        map.remove(&Key::Addr(ip));
        map.remove(&Key::User(user.to_lowercase()));
    }
}

/// Seconds for a `Retry-After` header (at least 1).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs().max(1) + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_attempts_and_a_success_clears_it() {
        let t = SignInThrottle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..ADDR_ATTEMPTS {
            assert!(t.begin(ip, &format!("u{i}")).is_ok(), "attempt {i}");
        }
        let wait = t.begin(ip, "another").unwrap_err();
        assert!(wait > Duration::from_secs(200), "{wait:?}");
        t.success(ip, "u0");
        assert!(t.begin(ip, "u1").is_ok());
    }

    #[test]
    fn a_user_name_is_locked_after_repeated_failures_from_many_addresses() {
        let t = SignInThrottle::default();
        for i in 0..USER_FAILURES {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8));
            assert!(t.begin(ip, "Admin").is_ok());
        }
        let wait = t.begin("10.9.9.9".parse().unwrap(), "admin").unwrap_err();
        assert!(wait > Duration::from_secs(800), "{wait:?}");
        assert!(t.begin("10.9.9.9".parse().unwrap(), "bob").is_ok(), "other names are not locked");
    }
}
