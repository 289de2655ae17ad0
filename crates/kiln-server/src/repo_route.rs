//! Where a network repository's URL points (its transport, host and port), and the git
//! settings that hold a clone or fetch to the addresses the server has already checked
//! (`private_net`): `http.curloptResolve` for https, ssh's `HostName` (its known hosts still
//! looked up by the name) for ssh, an `insteadOf` to the address for git://. And no redirect,
//! since a public server could send git on to an inside one.

use std::net::{IpAddr, SocketAddr};

/// A network repository's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Ssh,
    Git,
}

/// Where a network repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// As written, without an IPv6 address's brackets.
    pub host: String,
    pub port: u16,
    /// `git://` URLs: the URL up to and including the `/` after its host (what `insteadOf` replaces).
    prefix: String,
}

/// `host[:port]` (or `[v6][:port]`) → host and port.
fn host_port(hp: &str, default: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("an IPv6 address without its closing ]")?;
        (h, after.strip_prefix(':'))
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    let port = match port {
        None | Some("") => default,
        Some(p) => p.parse().map_err(|_| format!("{p:?} is not a port"))?,
    };
    if host.is_empty() {
        return Err("no host in it".into());
    }
    Ok((host.to_string(), port))
}

/// Where the network repository `repo` points: `https://`, `ssh://` (`git+ssh://`),
/// `git://`, or scp-like `[user@]host:path`.
pub fn endpoint(repo: &str) -> Result<Endpoint, String> {
    if let Some((scheme, rest)) = repo.split_once("://") {
        let (scheme, default) = match scheme.to_ascii_lowercase().as_str() {
            "https" => (Scheme::Https, 443),
            "ssh" | "git+ssh" | "ssh+git" => (Scheme::Ssh, 22),
            "git" => (Scheme::Git, 9418),
            other => return Err(format!("{other}:// is not a network transport kiln reads")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let hp = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = host_port(hp, default)?;
        let prefix = format!("{}://{authority}/", &repo[..repo.find("://").unwrap_or(0)]);
        return Ok(Endpoint { scheme, host, port, prefix });
    }
    // scp-like: everything before the first ':' (or the ']:' closing an IPv6 address).
    let at = repo.find('@').map_or(0, |i| i + 1);
    let rest = &repo[at..];
    let hp = if rest.starts_with('[') { rest.split_once("]:").map(|(h, _)| format!("{h}]")) } else { rest.split_once(':').map(|(h, _)| h.to_string()) };
    let hp = hp.ok_or("no host in it")?;
    let (host, _) = host_port(&hp, 22)?;
    Ok(Endpoint { scheme: Scheme::Ssh, host, port: 22, prefix: String::new() })
}

/// What a git call adds to reach a repository: `-c` settings and ssh options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// `name=value` settings, each given to git with `-c`.
    pub config: Vec<String>,
    /// Options after `ssh -o BatchMode=yes`.
    pub ssh: Vec<String>,
}

impl Route {
    /// No redirect followed, nothing pinned (an admin allowed the host).
    pub fn no_redirects() -> Route {
        Route { config: vec!["http.followRedirects=false".into()], ssh: vec![] }
    }

    /// `GIT_SSH_COMMAND` (git runs it through the shell: every word added is checked first).
    pub fn ssh_command(&self) -> String {
        let mut c = String::from("ssh -o BatchMode=yes");
        for o in &self.ssh {
            c.push(' ');
            c.push_str(o);
        }
        c
    }
}

/// An address as a URL or curl writes it.
fn url_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Hold git to `addrs`, the checked addresses of `end`'s host.
pub fn pinned(end: &Endpoint, addrs: &[SocketAddr]) -> Result<Route, String> {
    let mut route = Route::no_redirects();
    if end.host.parse::<IpAddr>().is_ok() {
        return Ok(route); // nothing is looked up
    }
    let first = addrs.first().ok_or("no address to connect to")?.ip();
    match end.scheme {
        Scheme::Https => {
            let list: Vec<String> = addrs.iter().map(|a| url_ip(a.ip())).collect();
            route.config.push(format!("http.curloptResolve={}:{}:{}", end.host, end.port, list.join(",")));
        }
        Scheme::Git => route.config.push(format!("url.git://{}:{}/.insteadOf={}", url_ip(first), end.port, end.prefix)),
        Scheme::Ssh => {
            if !end.host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                return Err(format!("the host name {:?} has characters no host name has", end.host));
            }
            let alias = if end.port == 22 { end.host.clone() } else { format!("[{}]:{}", end.host, end.port) };
            route.ssh = vec![format!("-o 'HostKeyAlias={alias}'"), format!("-o HostName={first}")];
        }
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(repo: &str) -> (Scheme, String, u16) {
        let e = endpoint(repo).unwrap();
        (e.scheme, e.host, e.port)
    }

    #[test]
    fn every_way_of_writing_a_repository_names_its_host_and_port() {
        assert_eq!(end("https://u:p@git.example.com/o/r.git"), (Scheme::Https, "git.example.com".into(), 443));
        assert_eq!(end("https://git.example.com:8443/o/r"), (Scheme::Https, "git.example.com".into(), 8443));
        assert_eq!(end("ssh://git@[fd00::1]:2222/o/r"), (Scheme::Ssh, "fd00::1".into(), 2222));
        assert_eq!(end("git+ssh://host/o/r"), (Scheme::Ssh, "host".into(), 22));
        assert_eq!(end("git://10.0.0.1/o/r"), (Scheme::Git, "10.0.0.1".into(), 9418));
        assert_eq!(end("git@github.com:o/r.git"), (Scheme::Ssh, "github.com".into(), 22));
        assert_eq!(end("host:o/r.git"), (Scheme::Ssh, "host".into(), 22));
        assert_eq!(end("git@[::1]:o/r.git"), (Scheme::Ssh, "::1".into(), 22));
        for bad in ["https:///o/r", "https://h:x/o", "git@:o/r", "https://[::1/x"] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_resolved_name_is_pinned_for_each_transport() {
        let a: Vec<SocketAddr> = vec!["93.184.215.14:0".parse().unwrap(), "[2606:2800::1]:0".parse().unwrap()];
        let https = pinned(&endpoint("https://u@git.example.com/o/r").unwrap(), &a).unwrap();
        assert_eq!(https.config, ["http.followRedirects=false", "http.curloptResolve=git.example.com:443:93.184.215.14,[2606:2800::1]"]);
        let git = pinned(&endpoint("git://git.example.com:9000/o/r").unwrap(), &a).unwrap();
        assert_eq!(git.config[1], "url.git://93.184.215.14:9000/.insteadOf=git://git.example.com:9000/");
        let ssh = pinned(&endpoint("ssh://git@git.example.com:2222/o/r").unwrap(), &a).unwrap();
        assert_eq!(ssh.ssh_command(), "ssh -o BatchMode=yes -o 'HostKeyAlias=[git.example.com]:2222' -o HostName=93.184.215.14");
        assert_eq!(pinned(&endpoint("https://10.1.1.1/o").unwrap(), &a).unwrap(), Route::no_redirects(), "a literal address is not looked up");
        assert!(pinned(&endpoint("ev;il$(x):o/r").unwrap(), &a).is_err(), "nothing odd reaches the shell git runs ssh with");
    }
}
