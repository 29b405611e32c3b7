//! `tocsin serve`: the HTTP API, pipeline workers, the CPU sampler and scheduled checks, with a
//! clean shutdown on SIGINT and SIGTERM.

use std::future::IntoFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tocsin_core::Tocsin;
use tocsin_core::engine::Engine;

use crate::App;

/// Options of `tocsin serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen address (overrides TOCSIN_BIND).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Pipeline workers in this process (overrides TOCSIN_WORKERS).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Run no pipeline worker here (runs wait for `tocsin worker` processes).
    #[arg(long)]
    pub no_worker: bool,
}

/// Where to listen: without API keys, only loopback unless the operator allowed a public bind.
pub fn effective_bind(app: &App, requested: SocketAddr) -> (SocketAddr, Option<String>) {
    let cfg = &app.config;
    if cfg.api_keys.is_empty() && !requested.ip().is_loopback() && !cfg.allow_public_bind {
        let fallback = SocketAddr::from((Ipv4Addr::LOCALHOST, requested.port()));
        let why = format!(
            "no API keys are configured (TOCSIN_API_KEYS), so tocsin listens on {fallback} instead of {requested}; \
             set TOCSIN_API_KEYS, or TOCSIN_ALLOW_PUBLIC_BIND=1 to serve {requested} without authentication"
        );
        return (fallback, Some(why));
    }
    (requested, None)
}

/// The pipeline engine of this process, with the Redis broker when `TOCSIN_BROKER_URL` is set.
pub async fn engine(app: &App, tocsin: Tocsin) -> anyhow::Result<Engine> {
    let engine = Engine::new(tocsin);
    match &app.config.broker_url {
        Some(url) => {
            let broker = tocsin_core::engine::broker::Broker::connect(url)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            tracing::info!(
                "Run ids are also delivered over the Redis stream {}.",
                tocsin_core::engine::broker::STREAM
            );
            Ok(engine.with_broker(broker))
        }
        None => Ok(engine),
    }
}

/// The stored definition that webhook-ingested incidents run (`TOCSIN_WEBHOOK_DEFINITION`);
/// unset or empty: the default pipeline.
fn webhook_definition() -> Option<String> {
    std::env::var("TOCSIN_WEBHOOK_DEFINITION")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs, app: &App) -> anyhow::Result<ExitCode> {
    let tocsin = app.tocsin().await?;
    let (bind, downgraded) = effective_bind(app, args.bind.unwrap_or(app.config.bind));
    if let Some(why) = downgraded {
        tracing::warn!("{why}");
    } else if app.config.api_keys.is_empty() {
        tracing::warn!(%bind, "No API keys are configured: the API is open to anyone who can reach {bind}.");
    }
    let engine = engine(app, tocsin.clone()).await?;
    let state = tocsin_http::AppState::new(tocsin.clone())
        .with_extension(engine.clone())
        .with_extension(tocsin_ingest::pipeline::starting_hook_factory(
            engine.clone(),
            webhook_definition(),
        ))
        // Read once at start-up rather than from the environment on every webhook.
        .with_extension(tocsin_ingest::service::WebhookSecrets::from_env());
    let router = tocsin_http::router(state);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = listener.local_addr().unwrap_or(bind);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = if args.no_worker || app.config.tasks_eager {
        Vec::new()
    } else {
        engine.spawn_workers(args.workers.unwrap_or(app.config.workers), stop_rx)
    };
    // The CPU sampler, and scheduled checks when TOCSIN_CHECK_INTERVAL is set.
    let _checks = crate::cli::checks::start_background(&engine)?;
    tracing::info!(
        addr = %local,
        database = %tocsin_core::config::redact_url(&app.config.database_url),
        workers = workers.len(),
        version = tocsin_core::VERSION,
        "tocsin is serving on http://{local}/"
    );
    // On a worker thread, not on the thread that blocks on this function: a connection the
    // accept loop spawns then starts on the worker that accepted it, without waking another.
    tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .into_future(),
    )
    .await
    .context("the server task failed")?
    .context("server failed")?;
    let _ = stop_tx.send(true);
    for w in workers {
        // A worker finishes the node it is running; a slow one is left to its lease.
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    // Re-sent alerts' last-seen times wait for a batch; write the last one before exiting.
    if let Err(e) = tocsin.store().flush_seen().await {
        tracing::warn!(error = %e, "Could not write the last-seen times of re-sent alerts.");
    }
    tracing::info!("tocsin stopped cleanly.");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Received SIGINT; shutting down."),
        () = term => tracing::info!("Received SIGTERM; shutting down."),
    }
}
