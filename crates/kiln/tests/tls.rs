//! HTTPS on the server's own port (`--tls-cert`, `--tls-key`): agents, the CLI and browsers
//! reach it over TLS, trusting a private CA through `SSL_CERT_FILE`; a client that does not
//! trust it refuses it; plain HTTP gets no answer; cookies are Secure; bad files are named.

mod common;
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private CA and a certificate for `localhost` and `127.0.0.1` it signed: (ca, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "kiln test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn agents_the_cli_and_browsers_reach_the_server_over_https() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    // Every client this test starts (agent, CLI) trusts the private CA.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let mut k = Kiln::start_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(k.url.starts_with("https://127.0.0.1:"), "{}", k.url);
    k.agent("a1", &[]);
    let repo = k.repo("r", "jobs:\n  j:\n    steps: [\"echo built-over-tls\"]\n");
    k.add_project("r", &repo, &[]);
    let id = k.trigger("r");
    assert_eq!(k.wait_build(id, 60)["status"], "passed", "{}", k.agent_log("a1"));
    assert!(k.logs(id).contains("built-over-tls"));

    // A client that does not trust the CA refuses the server and says why.
    let elsewhere = certs.path().join("other");
    std::fs::create_dir(&elsewhere).unwrap();
    let (other, _, _) = certificates(&elsewhere);
    let out = Command::new(BIN).args(["builds", "r"]).env("KILN_SERVER", &k.url).env("KILN_TOKEN", ADMIN).env("SSL_CERT_FILE", &other).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success() && err.contains("certificate"), "{err}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let port: u16 = k.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /login HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1 200"), "plain HTTP was answered");

    // A browser's cookies are Secure.
    kiln_agent::client::install_crypto();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cookie = rt.block_on(async {
        let r = reqwest::Client::new().get(format!("{}/login", k.url)).send().await.unwrap();
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join("\n")
    });
    assert!(!cookie.is_empty() && cookie.lines().all(|c| c.contains("; Secure")), "{cookie}");
}

#[test]
fn bad_certificate_files_are_named_and_the_server_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificates(dir.path());
    let server = |args: &[&str]| {
        let out = Command::new(BIN).args(["server", "--listen", "127.0.0.1:0", "--data"]).arg(dir.path().join("data")).args(args).output().unwrap();
        assert!(!out.status.success(), "the server started with {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = server(&["--tls-cert", cert.to_str().unwrap()]);
    assert!(e.contains("needs both --tls-cert and --tls-key"), "{e}");
    let e = server(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", cert.to_str().unwrap()]);
    assert!(e.contains(&format!("--tls-key {}", cert.display())), "{e}");
    let missing = dir.path().join("missing.pem");
    let e = server(&["--tls-cert", missing.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(e.contains(&format!("--tls-cert {}", missing.display())), "{e}");
}
