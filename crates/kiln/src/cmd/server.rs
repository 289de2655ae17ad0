//! `kiln server`: the HTTP server alone, from flags and/or `kiln.toml`.

use clap::Args;
use kiln_server::config::{ServerConfig, DEFAULT_CONFIG};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ServerArgs {
    /// A kiln.toml with the settings below (flags win over the file).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Data folder (SQLite database, mirrors, secrets) [default: ./kiln-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Database URL: sqlite:PATH or postgres://… [default: sqlite:DATA/kiln.db].
    #[arg(long, env = "KILN_DATABASE_URL")]
    database: Option<String>,
    /// Folder for logs and artifacts; servers sharing a PostgreSQL database share it too [default: DATA].
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
    /// Secret agents register with [default: generated into DATA/agent-token].
    #[arg(long, env = "KILN_AGENT_TOKEN", hide_env_values = true)]
    agent_token: Option<String>,
    /// A file with the key that seals project secrets [default: DATA/secret-key, made at first start; KILN_SECRET_KEY wins].
    #[arg(long, value_name = "FILE")]
    secret_key_file: Option<PathBuf>,
    /// Seed an admin API token (for automation).
    #[arg(long, env = "KILN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serve HTTPS: the certificate chain, a PEM file (with --tls-key).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key, a PEM file (with --tls-cert).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Bearer token a scrape of /metrics must carry when the server does not listen on loopback.
    #[arg(long, env = "KILN_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Seconds without a heartbeat before a job runs again elsewhere [default: 30].
    #[arg(long)]
    lease: Option<u64>,
    /// Heartbeat interval agents are told to use, in seconds [default: 10].
    #[arg(long)]
    heartbeat: Option<u64>,
    /// Per-job log limit in bytes; past it the head and tail are kept [default: 1 GiB].
    #[arg(long)]
    log_limit: Option<u64>,
    /// The URL people reach the console at (for links).
    #[arg(long)]
    public_url: Option<String>,
    /// Time zone of cron schedules, e.g. Europe/Paris [default: UTC].
    #[arg(long)]
    timezone: Option<String>,
    /// SMTP server for email notifications: smtp://HOST:PORT (STARTTLS; plain to localhost) or smtps://HOST:PORT (TLS).
    #[arg(long, value_name = "URL")]
    smtp_url: Option<String>,
    /// SMTP login user.
    #[arg(long)]
    smtp_user: Option<String>,
    /// SMTP login password.
    #[arg(long, env = "KILN_SMTP_PASSWORD", hide_env_values = true)]
    smtp_password: Option<String>,
    /// SMTP encryption: starttls, tls, or none (only to localhost) [default: from the URL].
    #[arg(long, value_name = "MODE")]
    smtp_tls: Option<String>,
    /// The From address of notification mail [default: kiln@localhost].
    #[arg(long, value_name = "ADDRESS")]
    smtp_from: Option<String>,
    /// Attempts per notification delivery before it is recorded as failed [default: 10].
    #[arg(long)]
    notify_attempts: Option<u32>,
    /// Password of the first admin user "admin", made at first start [default: generated and printed once].
    #[arg(long, env = "KILN_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Largest upload (test-run files or archive) in bytes; past it 413 [default: 100 MiB].
    #[arg(long)]
    upload_limit: Option<u64>,
    /// Largest artifact file in bytes, 0 for no limit; past it 413 [default: 1 GiB].
    #[arg(long)]
    artifact_file_limit: Option<u64>,
    /// Most artifact bytes one job may keep, 0 for no limit; past it 413 [default: 4 GiB].
    #[arg(long)]
    artifact_job_limit: Option<u64>,
    /// Retention, server-wide: keep the newest N finished builds per branch (a project's own limit wins).
    #[arg(long, value_name = "N")]
    keep_builds: Option<u32>,
    /// Retention, server-wide: keep builds younger than D days.
    #[arg(long, value_name = "D")]
    keep_days: Option<u32>,
    /// Retention, server-wide: keep artifacts younger than D days (the build stays).
    #[arg(long, value_name = "D")]
    artifact_days: Option<u32>,
    /// Seconds between retention passes, 0 for only `kiln gc` [default: 3600].
    #[arg(long, value_name = "SECS")]
    gc_every: Option<u64>,
    /// A console session ends after this many seconds without a request [default: 43200, 12 hours].
    #[arg(long, value_name = "SECS")]
    session_idle: Option<u64>,
    /// A host projects may send commit status to, besides api.github.com and each project
    /// repository's own host (repeatable; HOST or HOST:PORT).
    #[arg(long = "forge-host")]
    forge_hosts: Vec<String>,
    /// Jobs one build may have (jobs × matrix cells × shards); more ends the build errored [default: 1000].
    #[arg(long, value_name = "N")]
    max_jobs_per_build: Option<usize>,
    /// JUnit reports one job may upload; more ends the job errored [default: 1000].
    #[arg(long, value_name = "N")]
    max_junit_reports_per_job: Option<u64>,
    /// Test cases one job may report over all its JUnit reports; more ends the job errored [default: 100000].
    #[arg(long, value_name = "N")]
    max_test_cases_per_job: Option<u64>,
    /// Let projects use repositories on this machine's disk (paths and file://).
    #[arg(long)]
    allow_local_repos: bool,
    /// Let repositories, notifications and commit statuses use any loopback, private or link-local address.
    #[arg(long)]
    allow_private_targets: bool,
    /// A host the server may reach although its address is private (an internal git server); repeat for more.
    #[arg(long = "allow-private-host", value_name = "HOST")]
    allow_private_hosts: Vec<String>,
    /// Quarantine a test flaky in at least this share of its recent runs [default: 0.2].
    #[arg(long, value_name = "RATE")]
    quarantine_flaky_rate: Option<f64>,
    /// How many of a test's most recent runs the flaky rate counts [default: 20].
    #[arg(long, value_name = "N")]
    quarantine_window: Option<usize>,
    /// Runs a test needs in the window before it is quarantined [default: 5].
    #[arg(long, value_name = "N")]
    quarantine_min_runs: Option<usize>,
    /// Clean runs in a row that release a quarantined test [default: 10].
    #[arg(long, value_name = "N")]
    quarantine_release_after: Option<usize>,
    /// Print the commented default kiln.toml and exit.
    #[arg(long)]
    print_config: bool,
}

impl ServerArgs {
    /// The configuration: file first, then flags over it.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut cfg = match &self.config {
            Some(p) => ServerConfig::from_file(p)?,
            None => ServerConfig::default(),
        };
        macro_rules! over {
            ($($f:ident => $t:ident),*) => { $( if let Some(v) = &self.$f { cfg.$t = v.clone().into(); } )* };
        }
        over!(listen => listen, data => data, lease => lease_secs, heartbeat => heartbeat_secs, log_limit => log_limit);
        if self.database.is_some() {
            cfg.database = self.database.clone();
        }
        if self.files.is_some() {
            cfg.files = self.files.clone();
        }
        if self.agent_token.is_some() {
            cfg.agent_token = self.agent_token.clone();
        }
        if self.admin_token.is_some() {
            cfg.admin_token = self.admin_token.clone();
        }
        if self.secret_key_file.is_some() {
            cfg.secret_key_file = self.secret_key_file.clone();
        }
        cfg.secret_key = std::env::var("KILN_SECRET_KEY").ok().filter(|k| !k.trim().is_empty());
        if self.metrics_token.is_some() {
            cfg.metrics_token = self.metrics_token.clone();
        }
        if self.tls_cert.is_some() {
            cfg.tls_cert = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            cfg.tls_key = self.tls_key.clone();
        }
        if self.admin_password.is_some() {
            cfg.admin_password = self.admin_password.clone();
        }
        if let Some(n) = self.upload_limit {
            cfg.upload_limit = n;
        }
        if self.keep_builds.is_some() {
            cfg.retention.keep_builds = self.keep_builds;
        }
        if self.keep_days.is_some() {
            cfg.retention.keep_days = self.keep_days;
        }
        if self.artifact_days.is_some() {
            cfg.retention.artifact_days = self.artifact_days;
        }
        if let Some(n) = self.gc_every {
            cfg.gc_every_secs = n;
        }
        if let Some(n) = self.session_idle {
            cfg.session_idle_secs = n.max(1);
        }
        if let Some(n) = self.artifact_file_limit {
            cfg.artifact_file_limit = n;
        }
        if let Some(n) = self.artifact_job_limit {
            cfg.artifact_job_limit = n;
        }
        if self.public_url.is_some() {
            cfg.public_url = self.public_url.clone();
        }
        if self.timezone.is_some() {
            cfg.timezone = self.timezone.clone();
        }
        if let Some(n) = self.notify_attempts {
            cfg.notify_attempts = n;
        }
        cfg.forge_hosts.extend(self.forge_hosts.iter().cloned());
        cfg.allow_local_repos |= self.allow_local_repos;
        cfg.allow_private_targets |= self.allow_private_targets;
        cfg.allow_private_hosts.extend(self.allow_private_hosts.iter().cloned());
        if let Some(n) = self.max_jobs_per_build {
            cfg.max_jobs_per_build = n;
        }
        if let Some(n) = self.max_junit_reports_per_job {
            cfg.max_junit_reports_per_job = n;
        }
        if let Some(n) = self.max_test_cases_per_job {
            cfg.max_test_cases_per_job = n;
        }
        if let Some(v) = self.quarantine_flaky_rate {
            cfg.quarantine.flaky_rate = v;
        }
        if let Some(v) = self.quarantine_window {
            cfg.quarantine.window = v;
        }
        if let Some(v) = self.quarantine_min_runs {
            cfg.quarantine.min_runs = v;
        }
        if let Some(v) = self.quarantine_release_after {
            cfg.quarantine.release_after = v;
        }
        cfg.quarantine.rules().check().map_err(|e| anyhow::anyhow!("{e} (kiln.toml [quarantine] or --quarantine-* flags)"))?;
        self.smtp_over(&mut cfg)?;
        Ok(cfg)
    }

    /// `--smtp-*` flags over the `[smtp]` table.
    fn smtp_over(&self, cfg: &mut ServerConfig) -> anyhow::Result<()> {
        let any = self.smtp_user.is_some() || self.smtp_password.is_some() || self.smtp_tls.is_some() || self.smtp_from.is_some();
        if self.smtp_url.is_none() && cfg.smtp.is_none() {
            if any {
                anyhow::bail!("the --smtp-* settings need --smtp-url smtp://HOST:PORT (or an [smtp] table with url)");
            }
            return Ok(());
        }
        let smtp = cfg.smtp.get_or_insert_with(Default::default);
        if let Some(u) = &self.smtp_url {
            smtp.url = u.clone();
        }
        macro_rules! over {
            ($($f:ident => $t:ident),*) => { $( if self.$f.is_some() { smtp.$t = self.$f.clone(); } )* };
        }
        over!(smtp_user => user, smtp_password => password, smtp_tls => tls, smtp_from => from);
        Ok(())
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<i32> {
    if args.print_config {
        print!("{DEFAULT_CONFIG}");
        return Ok(0);
    }
    let cfg = args.config()?;
    let stop = CancellationToken::new();
    let data = cfg.data.clone();
    let srv = kiln_server::start(cfg, stop.clone()).await?;
    println!("kiln server listening on {}", srv.url);
    if srv.generated_admin_token.is_some() {
        println!("an admin API token was generated: it is in {}/admin-token (export KILN_TOKEN=$(cat {}/admin-token))", data.display(), data.display());
    }
    if let Some(p) = &srv.generated_admin_password {
        println!("first start: created the admin user \"admin\" with password {p}");
        println!("  (shown only this once: sign in at {}/login and change it on your account page)", srv.url);
    }
    let sig = super::shutdown_signal().await;
    tracing::info!("{sig}: stopping the server");
    stop.cancel();
    let _ = srv.task.await;
    Ok(0)
}
