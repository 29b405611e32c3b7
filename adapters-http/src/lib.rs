//! A thin axum [`Router`] over the tocsin library: parse the request, call the library, map the
//! result. No business logic lives here.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tocsin_core::{Config, Tocsin, plugin::Plugins, store::Store};
//! use tower::ServiceExt;
//!
//! let store = Store::open("sqlite::memory:", 1).await.unwrap();
//! let tocsin = Tocsin::new(store, Plugins::from_inventory(), Config::default());
//! let app = tocsin_http::router(tocsin_http::AppState::new(tocsin));
//! let req = axum::http::Request::get("/healthz").body(axum::body::Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # });
//! ```
//!
//! Every error is `{"error": {"kind": "...", "message": "..."}}` ([`error::ApiError`]). When API keys
//! are configured, every route but `/healthz` and the console needs one, as
//! `Authorization: Bearer KEY` or `X-API-Key: KEY` (401 without a valid key, 403 for a key not
//! allowed on that path).
//!
//! The operator's web console is served at `/admin/`: HTML pages over the same library calls,
//! behind its own login (an API key allowed on `/admin/` sets a signed session cookie) and CSRF
//! tokens on every form.

pub mod error;

mod alerts;
mod auth;
mod checks;
mod console;
mod context;
mod intelligence;
mod notify;
mod orchestration;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tocsin_core::Tocsin;
use tower::Layer;

pub use error::{ApiError, JsonBody, RawJson};

// Link every plugin crate, so their link-time registrations are present in any binary using this.
use tocsin_checkers as _;
use tocsin_ingest as _;
use tocsin_notify as _;
use tocsin_providers as _;

/// What every handler is given.
#[derive(Clone)]
pub struct AppState {
    /// The library handle.
    pub tocsin: Tocsin,
    /// Extensions other layers (the orchestrator) plug in; see [`AppState::with_extension`].
    pub extensions: Arc<axum::http::Extensions>,
}

impl AppState {
    /// State over a library handle.
    pub fn new(tocsin: Tocsin) -> Self {
        Self {
            tocsin,
            extensions: Arc::new(axum::http::Extensions::new()),
        }
    }

    /// Adds a typed extension (for example the pipeline engine) that handlers can look up.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.extensions).insert(value);
        self
    }

    /// A typed extension, if one was added.
    pub fn extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.extensions.get::<T>().cloned()
    }
}

/// The correlation id of a request: from `X-Trace-Id` (or `X-Request-Id`) when the caller sent a
/// sane one, else generated; echoed back in the `X-Trace-Id` response header.
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// The whole API.
pub fn router(state: AppState) -> Router {
    let limit = state.tocsin.config().body_limit;
    let api = Router::new()
        .merge(alerts::routes())
        .merge(checks::routes())
        .merge(intelligence::routes())
        .merge(notify::routes())
        .merge(orchestration::routes());
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .merge(console::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Around the whole router rather than with `Router::layer`, which boxes every route's
    // future once more per layer (see `context`). Outside the routes, so unknown paths need a
    // key too: no route discovery without one.
    let context = context::RequestContextLayer {
        state,
        body_limit: DefaultBodyLimit::max(limit),
    };
    Router::new().fallback_service(context.layer(routes))
}

async fn healthz(State(state): State<AppState>) -> Response {
    let db = tokio::time::timeout(Duration::from_secs(3), state.tocsin.store().ping()).await;
    let (status, db) = match db {
        Ok(Ok(())) => (StatusCode::OK, "ok"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unreachable"),
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ok" } else { "degraded" },
        "database": db,
        "version": tocsin_core::VERSION,
    });
    (status, Json(body)).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if auth::is_console_path(uri.path()) {
        return console::not_found(uri.path());
    }
    ApiError::not_found(format!("no route for {}", uri.path())).into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
