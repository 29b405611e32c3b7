//! The one layer around the whole API: the request's trace id and span, the API key check, the
//! body limit and the panic guard.
//!
//! It is a hand-written [`Service`] over the inner [`Router`](axum::Router) rather than
//! `Router::layer` calls: every `Router::layer` wraps each route in a new boxed service, and each
//! of those boxes moves the request's whole future into a new allocation once per request
//! (`tower`'s `MapFuture`, a `memcpy` of the future's size). With the four concerns in one
//! service whose future holds only the inner future, the span and the header, a small request
//! pays for one box instead of four (docs/performance.md, eighteenth session).

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::{ApiError, AppState, TraceId};

/// The headers a caller may name its own trace id with, in order of preference.
const TRACE_HEADERS: [&str; 2] = ["x-trace-id", "x-request-id"];

/// The trace id a caller sent, when it is sane (1 to 64 characters of `[A-Za-z0-9_-]`).
fn given_trace_id(req: &Request) -> Option<String> {
    TRACE_HEADERS
        .iter()
        .filter_map(|h| req.headers().get(*h))
        .filter_map(|v| v.to_str().ok())
        .find(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
}

/// The 500 answer to a handler's panic.
fn panic_response() -> Response {
    tracing::error!("A request handler panicked; answering 500.");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// Builds [`RequestContext`] over a service.
#[derive(Clone)]
pub(crate) struct RequestContextLayer {
    pub state: AppState,
    pub body_limit: DefaultBodyLimit,
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext {
            inner: self.body_limit.layer(inner),
            state: self.state.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct RequestContext<S> {
    inner: <DefaultBodyLimit as Layer<S>>::Service,
    state: AppState,
}

impl<S> Service<Request> for RequestContext<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = given_trace_id(&req).unwrap_or_else(tocsin_core::domain::new_id);
        let header = HeaderValue::from_str(&id).ok();
        let span = tracing::info_span!("request", trace_id = %id, method = %req.method(), path = %req.uri().path());
        req.extensions_mut().insert(TraceId(id));
        let _in = span.enter();
        let (inner, answer) = match crate::auth::refusal(&self.state, &req) {
            Some(refused) => (None, Some(refused)),
            None => match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
                Ok(f) => (Some(f), None),
                Err(_) => (None, Some(panic_response())),
            },
        };
        drop(_in);
        ContextFuture {
            inner,
            answer,
            span,
            header,
        }
    }
}

/// The future of [`RequestContext`]: the route's future polled inside the request's span, a panic
/// while polling answered with a 500, and `X-Trace-Id` set on whatever answers.
pub(crate) struct ContextFuture<F> {
    /// The routes' future, until it answers.
    inner: Option<F>,
    /// The answer given without the routes (a refusal, or a panic in their `call`).
    answer: Option<Response>,
    span: tracing::Span,
    header: Option<HeaderValue>,
}

impl<F> Future for ContextFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let _in = this.span.enter();
        let mut res = match this.inner.as_mut() {
            Some(f) => match catch_unwind(AssertUnwindSafe(|| Pin::new(f).poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(Ok(res))) => res,
                Ok(Poll::Ready(Err(never))) => match never {},
                Err(_) => panic_response(),
            },
            // Polled again after it answered (a caller's bug): answered, not a panic.
            None => this.answer.take().unwrap_or_else(panic_response),
        };
        this.inner = None;
        if let Some(v) = this.header.take() {
            res.headers_mut().insert("x-trace-id", v);
        }
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::body::Body;
    use axum::routing::get;
    use tocsin_core::{Config, Tocsin, plugin::Plugins, store::Store};
    use tower::ServiceExt;

    use super::*;

    async fn app(config: Config) -> axum::Router {
        let store = Store::open("sqlite::memory:", 1).await.unwrap();
        let state = AppState::new(Tocsin::new(store, Plugins::default(), config));
        let routes = axum::Router::new().route("/boom", get(boom)).route(
            "/sized",
            axum::routing::post(|b: axum::body::Bytes| async move { b.len().to_string() }),
        );
        let layer = RequestContextLayer {
            state,
            body_limit: DefaultBodyLimit::max(8),
        };
        axum::Router::new().fallback_service(layer.layer(routes))
    }

    async fn boom() -> &'static str {
        panic!("a handler's bug")
    }

    async fn body(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_with_the_trace_id() {
        let req = Request::get("/boom")
            .header("x-trace-id", "boom-1")
            .body(Body::empty())
            .unwrap();
        let res = app(Config::default()).await.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["x-trace-id"], "boom-1");
        let v: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
        assert_eq!(v["error"]["kind"], "internal");
    }

    #[tokio::test]
    async fn a_panic_in_the_inner_call_is_a_500() {
        let svc = tower::service_fn(
            |_: Request| -> std::future::Ready<Result<Response, Infallible>> {
                panic!("a service's bug in call")
            },
        );
        let store = Store::open("sqlite::memory:", 1).await.unwrap();
        let layer = RequestContextLayer {
            state: AppState::new(Tocsin::new(store, Plugins::default(), Config::default())),
            body_limit: DefaultBodyLimit::max(8),
        };
        let res = layer
            .layer(svc)
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().contains_key("x-trace-id"));
    }

    #[tokio::test]
    async fn the_body_limit_reaches_the_routes() {
        let post = |b: &'static str| Request::post("/sized").body(Body::from(b)).unwrap();
        let res = app(Config::default())
            .await
            .oneshot(post("1234"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body(res).await, "4");
        let res = app(Config::default())
            .await
            .oneshot(post("123456789"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(res.headers().contains_key("x-trace-id"));
    }
}
