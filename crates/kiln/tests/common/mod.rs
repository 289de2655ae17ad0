//! Test harness: the real `kiln` binary (and the lean `kiln-agent`) as separate processes — a server on a
//! free 127.0.0.1 port with a temp data folder, agents, CLI calls — and real
//! git repositories in temp folders.
#![allow(dead_code, clippy::zombie_processes)]

pub mod events;
pub mod http;
pub mod pg;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kiln");
pub const AGENT_TOKEN: &str = "test-agent-secret";
pub const ADMIN: &str = "test-admin-token";

/// The lean agent binary, beside `kiln` (the kiln-agent package's tests make cargo build it).
/// One older than the agent's sources is refused rather than tested.
pub fn lean_agent_bin() -> PathBuf {
    let p = Path::new(BIN).with_file_name("kiln-agent");
    let hint = "build it with cargo build -p kiln-agent (cargo test --workspace does)";
    let built = std::fs::metadata(&p).and_then(|m| m.modified()).unwrap_or_else(|_| panic!("{} is missing: {hint}", p.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for krate in ["kiln-agent", "kiln-core", "kiln-wire"] {
        if let Some(newer) = newer_than(&root.join(krate).join("src"), built) {
            panic!("{} is older than {}: {hint}", p.display(), newer.display());
        }
    }
    p
}

/// A file under `dir` changed after `t`.
fn newer_than(dir: &Path, t: std::time::SystemTime) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let path = e.path();
        let meta = e.metadata().ok()?;
        if meta.is_dir() {
            if let Some(p) = newer_than(&path, t) {
                return Some(p);
            }
        } else if meta.modified().ok()? > t {
            return Some(path);
        }
    }
    None
}

pub struct Kiln {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub server: Option<Child>,
    pub agents: Vec<(String, Child)>,
    pub server_args: Vec<String>,
    listen: String,
}

/// Start the server with `args`, wait until it listens, return (child, url).
/// Test repositories are in temp folders and receivers on loopback: the server allows both.
pub fn spawn_server(data: &Path, listen: &str, args: &[String]) -> (Child, String) {
    let mut all = vec!["--allow-local-repos".to_string(), "--allow-private-targets".to_string()];
    all.extend_from_slice(args);
    spawn_server_with(data, listen, &all, &[])
}

/// Start the server with exactly `args` (plus the tokens) and extra environment variables.
pub fn spawn_server_with(data: &Path, listen: &str, args: &[String], env: &[(&str, &str)]) -> (Child, String) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["server", "--listen", listen, "--data"])
        .arg(data)
        .args(["--agent-token", AGENT_TOKEN, "--admin-token", ADMIN])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start kiln server");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("kiln server exited before listening; see {}", data.with_extension("log").display());
        }
        if let Some(url) = line.trim().strip_prefix("kiln server listening on ") {
            let url = url.to_string();
            std::thread::spawn(move || for _ in out.lines() {});
            return (child, url);
        }
    }
}

impl Kiln {
    pub fn start() -> Kiln {
        Kiln::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Kiln {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (server, url) = spawn_server(&dir.path().join("data"), "127.0.0.1:0", &args);
        let listen = url.trim_start_matches("http://").to_string();
        Kiln { dir, url, server: Some(server), agents: Vec::new(), server_args: args, listen }
    }

    /// A server without the test allowances (local repositories, private targets),
    /// with exactly `args` and extra environment variables.
    pub fn start_plain(args: &[&str], env: &[(&str, &str)]) -> Kiln {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (server, url) = spawn_server_with(&dir.path().join("data"), "127.0.0.1:0", &args, env);
        let listen = url.trim_start_matches("http://").to_string();
        Kiln { dir, url, server: Some(server), agents: Vec::new(), server_args: args, listen }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Kill the server hard (like a crash).
    pub fn kill_server(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }

    /// Start the server again on the same port and data folder.
    pub fn restart_server(&mut self) {
        self.kill_server();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpListener::bind(&self.listen).is_ok() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (s, _) = spawn_server(&self.path("data"), &self.listen, &self.server_args);
        self.server = Some(s);
    }

    /// Start an agent with extra args (e.g. "--label", "python=3.12").
    pub fn agent(&mut self, name: &str, args: &[&str]) -> u32 {
        self.agent_from(Command::new(BIN).arg("agent"), name, args)
    }

    /// Start the lean `kiln-agent` binary (built beside `kiln` by `cargo test --workspace`).
    pub fn lean_agent(&mut self, name: &str, args: &[&str]) -> u32 {
        self.agent_from(&mut Command::new(lean_agent_bin()), name, args)
    }

    fn agent_from(&mut self, cmd: &mut Command, name: &str, args: &[&str]) -> u32 {
        let log = std::fs::File::create(self.path(&format!("agent-{name}.log"))).unwrap();
        let child = cmd
            .args(["--server", &self.url, "--token", AGENT_TOKEN, "--name", name, "--work-dir"])
            .arg(self.path(&format!("work-{name}")))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kiln agent");
        let pid = child.id();
        self.agents.push((name.to_string(), child));
        pid
    }

    pub fn agent_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("agent-{name}.log"))).unwrap_or_default()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("data.log")).unwrap_or_default()
    }

    /// Run a client command.
    pub fn kiln(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).env("KILN_SERVER", &self.url).env("KILN_TOKEN", ADMIN).output().expect("run kiln")
    }

    /// Run a client command with `--json` and parse its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.kiln(&a);
        assert!(out.status.success(), "kiln {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("kiln {args:?}: bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Make a git repository with `.kiln.yml` = `pipeline` and one commit.
    pub fn repo(&self, name: &str, pipeline: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join(".kiln.yml"), pipeline).unwrap();
        commit_all(&dir, "init");
        dir
    }

    /// `user add NAME --password-stdin` with `password`, as the admin.
    pub fn add_user_with_password(&self, name: &str, password: &str) {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(["user", "add", name, "--password-stdin"])
            .env("KILN_SERVER", &self.url)
            .env("KILN_TOKEN", ADMIN)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "user add {name} failed");
    }

    /// `project add NAME --repo DIR` plus extra flags.
    pub fn add_project(&self, name: &str, repo: &Path, extra: &[&str]) {
        let mut a = vec!["project", "add", name, "--repo", repo.to_str().unwrap()];
        a.extend_from_slice(extra);
        let out = self.kiln(&a);
        assert!(out.status.success(), "project add failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Trigger a build (no wait) and return its id.
    pub fn trigger(&self, project: &str) -> i64 {
        self.json(&["trigger", project])["id"].as_i64().unwrap()
    }

    pub fn build(&self, id: i64) -> Value {
        self.json(&["show", &id.to_string()])
    }

    /// Poll until the build is final; return it.
    pub fn wait_build(&self, id: i64, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let b = self.build(id);
            if matches!(b["status"].as_str(), Some("passed" | "failed" | "errored" | "cancelled" | "skipped")) {
                return b;
            }
            assert!(Instant::now() < deadline, "build {id} not final after {secs}s: {b:#}\nserver log:\n{}", self.server_log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Poll until `f` holds (or panic after `secs`).
    pub fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self, id: i64) -> String {
        let out = self.kiln(&["logs", &id.to_string()]);
        assert!(out.status.success(), "logs failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Find a job of a build JSON by key (JSON null while the build has no such job).
    pub fn job<'a>(build: &'a Value, key: &str) -> &'a Value {
        static NULL: Value = Value::Null;
        build["jobs"].as_array().and_then(|js| js.iter().find(|j| j["key"] == key)).unwrap_or(&NULL)
    }
}

impl Drop for Kiln {
    fn drop(&mut self) {
        for (_, a) in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        self.kill_server();
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git").arg("-C").arg(dir).args(args).stdout(Stdio::null()).status().unwrap();
    assert!(st.success(), "git {args:?} failed");
}

pub fn commit_all(dir: &Path, msg: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["-c", "user.email=t@kiln.test", "-c", "user.name=tester", "commit", "-qm", msg]);
    let out = Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A plain HTTP/1.1 request to a full URL: returns (status, body as text).
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let r = http::send(&format!("http://{host}"), method, &path, headers, body, false);
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// The builds of a project, newest first (JSON objects).
pub fn builds(k: &Kiln, project: &str) -> Vec<Value> {
    k.json(&["builds", project]).as_array().cloned().unwrap_or_default()
}

/// Send a signal (`-9`, `-STOP`, `-CONT`, `-TERM`) to a process.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill").arg(sig).arg(pid.to_string()).status().unwrap();
    assert!(st.success(), "kill {sig} {pid} failed");
}

impl Kiln {
    /// Wait for an agent process to exit; its exit code.
    pub fn agent_exit(&mut self, name: &str, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let (_, child) = self.agents.iter_mut().find(|(n, _)| n == name).expect("no such agent");
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub fn server_pid(&self) -> u32 {
        self.server.as_ref().unwrap().id()
    }
}
