//! kiln's HTTP server: the agent API, the user API, webhooks, the console, and
//! the background services (lease reaper, pollers, cron, notifier).
//!
//! ```text
//!  change sources ─► app::trigger::start_build ─► materialize (git + pipeline) ─► jobs queued
//!  agents ─► agent_api::claim (long poll, woken by AppState::wake) ─► logs / finish
//!  every change ─► AppState::events ─► console (SSE), `kiln up` summary, notifier
//! ```

pub mod agent_api;
pub mod at_rest;
mod api;
pub mod artifacts;
pub mod app;
pub mod auth;
mod branch_heads;
mod badge;
pub mod caps;
pub mod config;
mod duties;
mod console;
pub mod convert;
pub mod datafiles;
pub mod error;
pub mod events;
pub mod git;
mod headers;
mod hashpool;
pub(crate) mod materialize;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub(crate) mod pipeline_meta;
pub mod private_net;
pub mod redact;
pub mod repo_route;
pub mod routes;
mod services;
pub mod signature;
pub mod sources;
pub mod state;
mod streams;
pub mod tests_api;
pub mod throttle;
pub mod tls;
pub mod uploads;
pub mod users;
pub mod waiters;
pub mod wireform;

use anyhow::Context;
use axum::Router;
use config::ServerConfig;
use kiln_store::Store;
use routes::Routes;
use state::{AppState, Inner};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A server that is listening.
pub struct RunningServer {
    pub url: String,
    pub state: AppState,
    /// The admin token generated at first start, if one was (printed once).
    pub generated_admin_token: Option<String>,
    /// The first admin user's password, when it was generated at first start (print it once).
    pub generated_admin_password: Option<String>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Every route the server serves, each added once through `Routes`.
fn routes() -> Routes {
    Routes::new()
        .get("/badge/{file}", badge::badge)
        .get("/metrics", api::metrics::scrape)
        .post("/hooks/{forge}/{project}", sources::hooks::hook)
        .post("/api/v1/projects/{name}/push", sources::hooks::push)
        .merge(console::routes())
        .merge(api::routes())
        .merge(agent_api::routes())
        .merge(artifacts::routes())
        .merge(services::retention::routes())
        .merge(tests_api::routes())
}

/// The route table (method, path) of the real router, for the access-matrix test.
pub fn route_table() -> Vec<routes::Route> {
    routes().table().to_vec()
}

/// The whole router.
pub fn router(st: AppState) -> Router {
    routes()
        .into_router()
        .layer(axum::middleware::from_fn_with_state(st.clone(), api::metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(2 << 20))
        .layer(axum::middleware::map_response(headers::add))
        .with_state(st)
}

/// Open the store, seed secrets and projects, start the services, and listen.
pub async fn start(cfg: ServerConfig, stop: CancellationToken) -> anyhow::Result<RunningServer> {
    at_rest::private_data_folder(&cfg.data)?;
    at_rest::private_database(&cfg.database_url())?;
    let store = Store::open(&cfg.database_url()).await?.with_log_dir(cfg.files_dir().join(datafiles::LOGS));
    // Logs kept a folder per attempt move to files in their job's folder, once.
    let upgraded = store.log_files().upgrade_layout().map_err(|e| anyhow::anyhow!("failed to move the logs in {} to the layout of a file per attempt: {e} (fix the folder's permissions or free space and start again)", cfg.files_dir().join(datafiles::LOGS).display()))?;
    if upgraded > 0 {
        tracing::info!("moved the logs of {upgraded} job attempts to a file per attempt in {}", cfg.files_dir().join(datafiles::LOGS).display());
    }
    // Logs an older kiln kept in the database move into the log files, once.
    let old = store.move_old_logs().await?;
    if old.moved > 0 {
        tracing::info!("moved the logs of {} job attempts from the database into {}", old.moved, cfg.files_dir().join(datafiles::LOGS).display());
    }
    at_rest::seal_secrets(&cfg, &store).await?;
    let agent_token = match &cfg.agent_token {
        Some(t) => t.clone(),
        None => at_rest::kept_secret(&cfg.data.join(datafiles::AGENT_TOKEN))?.0,
    };
    // A token seeded by an earlier --admin-token stops working once the flag changes or goes.
    let seeded = app::users::SEEDED_ADMIN_TOKEN;
    let forgotten = store.forget_seeded_tokens(seeded, cfg.admin_token.as_deref()).await?;
    if forgotten > 0 {
        tracing::warn!("{forgotten} admin token(s) seeded by an earlier --admin-token no longer work (the flag changed or is gone)");
    }
    if let Some(t) = &cfg.admin_token {
        store.add_token(t, "admin", true, seeded).await?;
    }
    let mut generated_admin_token = None;
    if store.count_tokens().await? == 0 {
        let (t, _) = at_rest::kept_secret(&cfg.data.join(datafiles::ADMIN_TOKEN))?;
        store.add_token(&t, "admin", true, "generated at first start").await?;
        generated_admin_token = Some(t);
    }
    if let Some(smtp) = &cfg.smtp {
        notify::email::settings(smtp).map_err(anyhow::Error::msg)?;
    }
    let generated_admin_password = users::seed_first_admin(&store, cfg.admin_password.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("failed to create the first admin user: {e}"))?;
    app::projects::apply_config(&store, &cfg).await?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(anyhow::Error::msg)?),
        (None, None) => None,
        _ => anyhow::bail!("HTTPS needs both --tls-cert and --tls-key (tls_cert and tls_key in kiln.toml)"),
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("failed to listen on {}", cfg.listen))?;
    let url = format!("{}://{}", if tls.is_some() { "https" } else { "http" }, listener.local_addr()?);
    let (events, _) = tokio::sync::broadcast::channel(4096);
    let access = git::Access { allow_local: cfg.allow_local_repos, local_repos: cfg.local_repos.clone(), reach: cfg.reach() };
    let mirrors = git::Mirrors::new(cfg.data.join("repos"), access);
    // Agents keep running while the server is down: give them a lease's time to report back.
    let grace = store.extend_running_leases(cfg.lease_ms()).await?;
    if grace > 0 {
        tracing::info!("{grace} running job(s) found: their agents have {} s to report back", cfg.lease_secs);
    }
    let timezone = match &cfg.timezone {
        None => None,
        Some(name) if name == "UTC" => None,
        Some(name) => Some(tzfile::ArcTz::named(name).map_err(|e| anyhow::anyhow!("unknown time zone {name:?} ({e}): use a name from /usr/share/zoneinfo, like Europe/Paris"))?),
    };
    let store_backend = store.backend();
    if store_backend == kiln_store::Backend::Sqlite {
        // One server: the builds it was expanding when it stopped are resumed below at once.
        store.release_expansions().await?;
    }
    let st = AppState(Arc::new(Inner {
        store,
        cfg,
        agent_token,
        waiters: Default::default(),
        control: Default::default(),
        test_queues: Default::default(),
        claims: Default::default(),
        events,
        metrics: metrics::Metrics::new(),
        duties: duties::Duties::new(store_backend != kiln_store::Backend::Postgres),
        mirrors,
        timezone,
        stop: stop.clone(),
        throttle: Default::default(),
    }));
    if store_backend == kiln_store::Backend::Postgres {
        services::duties::renew(&st).await;
    }
    tokio::spawn(services::duties::run(st.clone(), stop.clone()));
    tokio::spawn({
        let (st, stop) = (st.clone(), stop.clone());
        async move { metrics::run(st.events.subscribe(), &st.metrics, stop).await }
    });
    tokio::spawn(services::reaper::run(st.clone(), stop.clone()));
    tokio::spawn(services::replicas::run(st.clone(), stop.clone()));
    tokio::spawn({
        let (st, stop) = (st.clone(), stop.clone());
        async move { waiters::run(&st.store, &st.waiters, stop).await }
    });
    tokio::spawn(services::retention::run(st.clone(), stop.clone()));
    // Polling counts from the heads present now, before anyone can push: a commit
    // made right after start-up is new, not part of the baseline.
    for p in st.store.list_projects().await? {
        if p.settings.poll.is_some() {
            if let Err(e) = branch_heads::ensure_baseline(&st, &p).await {
                tracing::warn!("project {}: cannot read the repository yet ({e}); the poller will retry", p.name);
            }
        }
    }
    tokio::spawn(sources::poller::run(st.clone(), stop.clone()));
    tokio::spawn(sources::schedule::run(st.clone(), stop.clone()));
    let base_url = st.cfg.public_url.clone().unwrap_or_else(|| url.clone());
    let notifier = tokio::spawn(services::notifier::run(st.clone(), stop.clone(), base_url));
    {
        let st = st.clone();
        tokio::spawn(async move {
            app::trigger::resume_unmaterialized(&st).await;
            for p in st.store.list_projects().await.unwrap_or_default() {
                pipeline_meta::refresh(&st, &p).await;
            }
            app::downstream::catch_up(&st).await;
        });
    }
    let app = router(st.clone());
    let stop2 = stop.clone();
    let task = tokio::spawn(async move {
        let stopped = async move { stop2.cancelled().await };
        let served = match tls {
            None => axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(stopped).await,
            Some(tls) => {
                use axum::serve::ListenerExt;
                // `tap_io` makes the listener's peer address the requests' ConnectInfo.
                let listener = tls::TlsListener::new(listener, tls).map(|l| l.tap_io(|_| {}));
                match listener {
                    Ok(l) => axum::serve(l, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(stopped).await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = served {
            tracing::error!("server stopped: {e}");
        }
        // The notifier drops its SMTP transport inside the runtime before the server is done.
        let _ = notifier.await;
    });
    Ok(RunningServer { url, state: st, generated_admin_token, generated_admin_password, task })
}
