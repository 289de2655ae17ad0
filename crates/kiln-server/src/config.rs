//! Server settings: flags and `kiln.toml` alike, with the defaults a new user needs.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The commented default configuration, printed by `kiln server --print-config`.
pub const DEFAULT_CONFIG: &str = include_str!("../kiln.example.toml");

/// A session ends after this long without a request, unless `session_idle_secs` says otherwise.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 12 * 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Folder for the SQLite database, repository mirrors and generated secrets.
    pub data: PathBuf,
    /// Database URL; default `sqlite:DATA/kiln.db`. `postgres://…` for several servers.
    pub database: Option<String>,
    /// Folder for logs and artifacts; default DATA. Servers sharing a PostgreSQL database share it too.
    pub files: Option<PathBuf>,
    /// Secret agents register with; generated into DATA/agent-token when unset.
    pub agent_token: Option<String>,
    /// An admin API token to seed at start (for automation).
    pub admin_token: Option<String>,
    /// A file holding the key that seals project secrets (64 hex digits); default DATA/secret-key.
    pub secret_key_file: Option<PathBuf>,
    /// The key itself (from the environment, `KILN_SECRET_KEY`; never from a file or flag).
    #[serde(skip)]
    pub secret_key: Option<String>,
    /// HTTPS on `listen`: the certificate chain (PEM), with `tls_key`. Without both, plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Bearer token a scrape of `/metrics` must carry when `listen` is not a loopback address.
    pub metrics_token: Option<String>,
    /// How long a claimed job is held without a heartbeat before it is run again.
    pub lease_secs: u64,
    /// The heartbeat interval agents are told to use.
    pub heartbeat_secs: u64,
    /// Per-job log limit in bytes; past it the log keeps its head and tail with a marker between.
    pub log_limit: u64,
    /// The URL people reach the console at (for links in notifications).
    pub public_url: Option<String>,
    /// Time zone of cron schedules, from the system's tz database (e.g. "Europe/Paris"); default UTC.
    pub timezone: Option<String>,
    /// Password of the first admin user, created at first start (generated and printed once when unset).
    pub admin_password: Option<String>,
    /// Largest upload (test-run package) in bytes; bigger requests get 413. Unpacked archives may hold 4× this.
    pub upload_limit: u64,
    /// Largest artifact file in bytes (0: no limit); past it 413.
    pub artifact_file_limit: u64,
    /// Most artifact bytes one job may keep (0: no limit); past it 413.
    pub artifact_job_limit: u64,
    /// Server-wide retention (`[retention]`); a project's own limits win, limit by limit.
    pub retention: kiln_wire::api::Retention,
    /// Seconds between retention passes (0: only `kiln gc`).
    pub gc_every_secs: u64,
    /// A console session ends after this many seconds without a request (14 days after sign-in at the latest).
    pub session_idle_secs: u64,
    /// Projects to create (or update) at start.
    #[serde(rename = "project")]
    pub projects: Vec<ProjectConfig>,
    /// The SMTP server for email notifications (`[smtp]`).
    pub smtp: Option<SmtpConfig>,
    /// When flaky tests are quarantined and released (`[quarantine]`).
    pub quarantine: QuarantineConfig,
    /// Attempts per notification delivery before it is recorded as failed (backoff 1 s, doubling).
    pub notify_attempts: u32,
    /// Hosts that projects may send commit status to, besides github.com's API and each
    /// project repository's own host (an admin's list: `--forge-host`, `forge_hosts`).
    pub forge_hosts: Vec<String>,
    /// Jobs one build may have (jobs × matrix cells × shards); a build over it ends errored.
    pub max_jobs_per_build: usize,
    /// JUnit reports one job attempt may upload; past it the upload gets 413 and the job errors.
    pub max_junit_reports_per_job: u64,
    /// Test cases one job attempt may report over all its reports; past it, as above.
    pub max_test_cases_per_job: u64,
    /// Let projects use repositories on the server's own disk (paths and `file://`).
    pub allow_local_repos: bool,
    /// Let repositories, notifications and commit statuses be fetched from or sent to any
    /// loopback, private or link-local address.
    pub allow_private_targets: bool,
    /// Hosts the server may reach although they are private (an internal git server, say).
    pub allow_private_hosts: Vec<String>,
    /// Local repositories allowed even without `allow_local_repos` (the ones `kiln up` is given).
    #[serde(skip)]
    pub local_repos: Vec<PathBuf>,
}

/// `[smtp]`: where email notifications go out.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://HOST[:PORT]` (STARTTLS, port 587) or `smtps://HOST[:PORT]` (TLS, port 465);
    /// user and password may be given in the URL.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `starttls`, `tls` or `none` (plain: allowed only to localhost). Default: from the URL;
    /// `smtp://` to localhost is plain.
    pub tls: Option<String>,
    /// The From address [default: kiln@localhost].
    pub from: Option<String>,
}

/// `[quarantine]`: when a flaky test is quarantined and released (`kiln_core::quarantine`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// Flaky runs ÷ runs over the window at which a test is quarantined.
    pub flaky_rate: f64,
    /// How many of a test's most recent runs count.
    pub window: usize,
    /// Runs a test needs in the window before it can be quarantined.
    pub min_runs: usize,
    /// Clean runs in a row that release it.
    pub release_after: usize,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        let r = kiln_core::quarantine::Rules::default();
        QuarantineConfig { flaky_rate: r.flaky_rate, window: r.window, min_runs: r.min_runs, release_after: r.release_after }
    }
}

impl QuarantineConfig {
    pub fn rules(&self) -> kiln_core::quarantine::Rules {
        kiln_core::quarantine::Rules { flaky_rate: self.flaky_rate, window: self.window, min_runs: self.min_runs, release_after: self.release_after }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: String,
    pub repo: String,
    pub branch: Option<String>,
    pub pipeline: Option<String>,
    pub public: Option<bool>,
    pub poll: Option<String>,
    /// With `poll`: build every new commit, not only the newest.
    pub poll_each_commit: Option<bool>,
    pub webhook_secret: Option<String>,
    /// Signs outgoing webhooks; separate from `webhook_secret`, which checks incoming ones.
    pub notify_webhook_secret: Option<String>,
    pub schedule: Option<Vec<String>>,
    pub notify_email: Option<Vec<String>>,
    pub notify_on: Option<Vec<String>>,
    pub notify_webhook: Option<Vec<String>>,
    pub cancel_superseded: Option<bool>,
    pub secrets: Option<std::collections::BTreeMap<String, String>>,
    /// Commit status: `github`, `gitea` or `off`, with the forge's API base, `owner/name`,
    /// the secret holding the token, and the status context.
    pub commit_status: Option<String>,
    pub forge_url: Option<String>,
    pub forge_repo: Option<String>,
    pub forge_token_secret: Option<String>,
    pub status_context: Option<String>,
    /// `[project.retention]`: keep_builds, keep_days, artifact_days.
    pub retention: Option<kiln_wire::api::Retention>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data: PathBuf::from("kiln-data"),
            database: None,
            files: None,
            agent_token: None,
            admin_token: None,
            secret_key_file: None,
            secret_key: None,
            metrics_token: None,
            tls_cert: None,
            tls_key: None,
            lease_secs: 30,
            heartbeat_secs: 10,
            log_limit: 1 << 30,
            public_url: None,
            timezone: None,
            admin_password: None,
            upload_limit: 100 * 1024 * 1024,
            artifact_file_limit: 1 << 30,
            artifact_job_limit: 4 << 30,
            retention: Default::default(),
            gc_every_secs: 3600,
            session_idle_secs: DEFAULT_SESSION_IDLE_SECS,
            projects: Vec::new(),
            smtp: None,
            quarantine: QuarantineConfig::default(),
            notify_attempts: 10,
            forge_hosts: Vec::new(),
            max_jobs_per_build: crate::caps::DEFAULT_MAX_JOBS_PER_BUILD,
            max_junit_reports_per_job: crate::caps::DEFAULT_MAX_REPORTS_PER_JOB,
            max_test_cases_per_job: crate::caps::DEFAULT_MAX_CASES_PER_JOB,
            allow_local_repos: false,
            allow_private_targets: false,
            allow_private_hosts: vec![],
            local_repos: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Which private addresses the server may reach (`private_net`).
    pub fn reach(&self) -> crate::private_net::Reach {
        crate::private_net::Reach { allow_all: self.allow_private_targets, hosts: self.allow_private_hosts.clone() }
    }

    /// How long a lease (a claimed job's, a build's expansion, a duty) lasts: `lease_secs`, at
    /// least 2 s.
    pub fn lease_ms(&self) -> i64 {
        self.lease_secs.max(2) as i64 * 1000
    }

    /// Read a `kiln.toml`; unknown keys are an error naming the key.
    pub fn from_file(path: &Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// `session_idle_secs` in milliseconds, for the session store.
    pub fn session_idle_ms(&self) -> i64 {
        (self.session_idle_secs.max(1) as i64).saturating_mul(1000)
    }

    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| format!("sqlite:{}", self.data.join("kiln.db").display()))
    }

    /// Where logs and artifacts live.
    pub fn files_dir(&self) -> PathBuf {
        self.files.clone().unwrap_or_else(|| self.data.clone())
    }

    pub fn base_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_the_idle_period_are_read_from_kiln_toml() {
        let cfg: ServerConfig = toml::from_str("max_junit_reports_per_job = 3\nmax_test_cases_per_job = 40\nsession_idle_secs = 60\n").unwrap();
        assert_eq!((cfg.max_junit_reports_per_job, cfg.max_test_cases_per_job, cfg.session_idle_ms()), (3, 40, 60_000));
        let cfg: ServerConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!((cfg.max_junit_reports_per_job, cfg.max_test_cases_per_job, cfg.session_idle_secs), (1000, 100_000, 43_200));
    }

    #[test]
    fn quarantine_table_sets_the_rules_and_defaults_fill_the_rest() {
        let cfg: ServerConfig = toml::from_str("[quarantine]\nflaky_rate = 0.5\nwindow = 8\nmin_runs = 2\nrelease_after = 3\n").unwrap();
        assert_eq!(cfg.quarantine.rules(), kiln_core::quarantine::Rules { flaky_rate: 0.5, window: 8, min_runs: 2, release_after: 3 });
        let cfg: ServerConfig = toml::from_str("[quarantine]\nwindow = 30\n").unwrap();
        assert_eq!(cfg.quarantine.rules(), kiln_core::quarantine::Rules { window: 30, ..Default::default() });
        let e = toml::from_str::<ServerConfig>("[quarantine]\nthreshold = 0.5\n").unwrap_err().to_string();
        assert!(e.contains("threshold"), "{e}");
        // The commented default kiln.toml holds the defaults.
        let cfg: ServerConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(cfg.quarantine.rules(), kiln_core::quarantine::Rules::default());
    }

    #[test]
    fn private_hosts_are_read_from_kiln_toml() {
        let cfg: ServerConfig = toml::from_str("allow_private_hosts = [\"git.internal.example\"]\n").unwrap();
        let reach = cfg.reach();
        assert!(reach.allows("GIT.internal.example") && !reach.allows("other.example") && !reach.allow_all);
        let cfg: ServerConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert!(cfg.allow_private_hosts.is_empty() && !cfg.allow_private_targets, "nothing private is reached by default");
    }
}
