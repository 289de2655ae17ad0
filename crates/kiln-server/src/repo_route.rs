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
///
/// The host must be the one git (and curl, and ssh) will connect to, so what they would read
/// differently is refused rather than guessed: git decodes `%XX` in ssh:// and git:// URLs
/// before it looks for the host, and ends the host only at `/`; ssh takes the host after the
/// last `@`. So the part before the path may hold no `%` (but in https credentials), `?`, `#`,
/// `\`, blank or control character, and at most one `@`.
pub fn endpoint(repo: &str) -> Result<Endpoint, String> {
    if let Some((scheme, rest)) = repo.split_once("://") {
        let (scheme, default) = match scheme.to_ascii_lowercase().as_str() {
            "https" => (Scheme::Https, 443),
            "ssh" | "git+ssh" | "ssh+git" => (Scheme::Ssh, 22),
            "git" => (Scheme::Git, 9418),
            other => return Err(format!("{other}:// is not a network transport kiln reads")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (user, hp) = match authority.split_once('@') {
            Some((user, hp)) => (user, hp),
            None => ("", authority),
        };
        // https credentials may be percent-encoded (curl does not decode the host); nowhere else.
        let plain_user = scheme == Scheme::Https || !user.contains('%');
        if !plain_user || hp.contains(['%', '@']) || authority.contains(['?', '#', '\\']) || authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("its host part holds characters git, curl and ssh read differently (%, ?, #, \\, a blank, or a second @): write the plain host".into());
        }
        let (host, port) = host_port(hp, default)?;
        let prefix = format!("{}://{authority}/", &repo[..repo.find("://").unwrap_or(0)]);
        return Ok(Endpoint { scheme, host, port, prefix });
    }
    // scp-like: git passes everything before the first ':' to ssh, which connects to what
    // follows its last '@' (an IPv6 address in brackets: `[::1]:path`).
    let pre = if repo.contains('[') {
        let (pre, _) = repo.split_once("]:").ok_or("an IPv6 address in brackets must be followed by ]:path")?;
        format!("{pre}]")
    } else {
        repo.split_once(':').ok_or("no host in it")?.0.to_string()
    };
    if pre.contains(['%', '?', '#', '\\']) || pre.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("its host part holds characters git and ssh read differently (%, ?, #, \\ or a blank): write the plain host".into());
    }
    let hp = pre.rsplit_once('@').map_or(pre.as_str(), |(_, h)| h);
    if hp.starts_with('[') != hp.ends_with(']') || (hp.starts_with('[') && hp[1..hp.len() - 1].parse::<std::net::Ipv6Addr>().is_err()) {
        return Err("in user@host:path, brackets hold only an IPv6 address; write ssh://user@host:port/path for a port".into());
    }
    let (host, _) = host_port(hp, 22)?;
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
/// A literal address is held too (git:// and ssh), so nothing git or ssh reads differently
/// from [`endpoint`] can send it elsewhere.
pub fn pinned(end: &Endpoint, addrs: &[SocketAddr]) -> Result<Route, String> {
    let mut route = Route::no_redirects();
    let literal = end.host.parse::<IpAddr>().ok();
    // ssh and git:// take one address: an IPv4 one when there is one (a service on a name with
    // both kinds listens on IPv4 more often than on IPv6 alone).
    let one = addrs.iter().map(|a| a.ip()).find(IpAddr::is_ipv4).or(addrs.first().map(|a| a.ip()));
    let first = literal.or(one).ok_or("no address to connect to")?;
    match end.scheme {
        // curl looks nothing up for a literal address.
        Scheme::Https if literal.is_some() => {}
        Scheme::Https => {
            let list: Vec<String> = addrs.iter().map(|a| url_ip(a.ip())).collect();
            route.config.push(format!("http.curloptResolve={}:{}:{}", end.host, end.port, list.join(",")));
        }
        Scheme::Git => route.config.push(format!("url.git://{}:{}/.insteadOf={}", url_ip(first), end.port, end.prefix)),
        Scheme::Ssh => {
            if literal.is_none() && !end.host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
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
        // What git, curl or ssh would read as another host than the one checked.
        for sly in [
            "git://127.0.0.1:47125%2F@1.1.1.1/x",
            "ssh://127.0.0.1%2F@1.1.1.1/r",
            "ssh://1.1.1.1#@127.0.0.1/r",
            "ssh://git.internal?@169.254.169.254:2222/r",
            "https://a@b@127.0.0.1/r",
            "git://1.1.1.1\\@127.0.0.1/r",
            "ssh://1.1.1.1 @127.0.0.1/r",
        ] {
            assert!(endpoint(sly).is_err(), "{sly}");
        }
        // scp-like: ssh gets what is before the first ':', and connects after its last '@'.
        assert_eq!(end("127.0.0.1:x@1.1.1.1:r"), (Scheme::Ssh, "127.0.0.1".into(), 22));
        assert_eq!(end("a@b@127.0.0.1:r"), (Scheme::Ssh, "127.0.0.1".into(), 22));
        assert!(endpoint("[127.0.0.1:2222]:r").is_err());
        assert_eq!(end("https://user:p%40ss@git.example.com/r"), (Scheme::Https, "git.example.com".into(), 443), "https credentials may be encoded");
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
        assert_eq!(pinned(&endpoint("https://10.1.1.1/o").unwrap(), &a).unwrap(), Route::no_redirects(), "curl looks up no literal address");
        let literal = pinned(&endpoint("ssh://git@1.1.1.1/o").unwrap(), &[]).unwrap();
        assert!(literal.ssh_command().ends_with("-o HostName=1.1.1.1"), "a literal address is held too: {}", literal.ssh_command());
        assert!(pinned(&endpoint("ev;il$(x):o/r").unwrap(), &a).is_err(), "nothing odd reaches the shell git runs ssh with");
    }
}
