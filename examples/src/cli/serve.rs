//! `tocsin serve`: the HTTP API, with a clean shutdown on SIGINT and SIGTERM.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;

use crate::App;

/// Options of `tocsin serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen address (overrides TOCSIN_BIND).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
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

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs, app: &App) -> anyhow::Result<ExitCode> {
    let tocsin = app.tocsin().await?;
    let (bind, downgraded) = effective_bind(app, args.bind.unwrap_or(app.config.bind));
    if let Some(why) = downgraded {
        tracing::warn!("{why}");
    } else if app.config.api_keys.is_empty() {
        tracing::warn!(%bind, "No API keys are configured: the API is open to anyone who can reach {bind}.");
    }
    let state = tocsin_http::AppState::new(tocsin.clone());
    let router = tocsin_http::router(state);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = listener.local_addr().unwrap_or(bind);
    tracing::info!(
        addr = %local,
        database = %tocsin_core::config::redact_url(&app.config.database_url),
        version = tocsin_core::VERSION,
        "tocsin is serving on http://{local}/"
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
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
