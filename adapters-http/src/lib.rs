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
mod intelligence;
mod notify;
mod orchestration;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tocsin_core::Tocsin;

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
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .merge(console::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Outside the routes, so unknown paths need a key too: no route discovery without one.
        // One layer for the trace id and the key: each `from_fn` layer boxes and moves the
        // request's future once more, a measurable share of a small request's cost.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
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

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("A request handler panicked; answering 500.");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// The request's trace id (see [`TraceId`]) and span, then the API key check inside that span.
async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let given = ["x-trace-id", "x-request-id"]
        .iter()
        .filter_map(|h| req.headers().get(*h))
        .filter_map(|v| v.to_str().ok())
        .find(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(tocsin_core::domain::new_id);
    let header = HeaderValue::from_str(&id);
    let span = tracing::info_span!("request", trace_id = %id, method = %req.method(), path = %req.uri().path());
    req.extensions_mut().insert(TraceId(id));
    let run = async move {
        match auth::refusal(&state, &req) {
            None => next.run(req).await,
            Some(refused) => refused,
        }
    };
    let mut res = tracing::Instrument::instrument(run, span).await;
    if let Ok(v) = header {
        res.headers_mut().insert("x-trace-id", v);
    }
    res
}
