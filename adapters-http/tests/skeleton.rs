//! The cross-cutting behaviour of the router: health, JSON errors, authentication, trace ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tocsin_core::plugin::Plugins;
use tocsin_core::{ApiKey, Config, Tocsin};
use tower::ServiceExt;

async fn app(keys: &[&str]) -> (axum::Router, tocsin_core::store::testing::TestDb) {
    let db = tocsin_core::store::testing::sqlite().await;
    let config = Config {
        api_keys: keys.iter().map(|k| ApiKey::parse(k)).collect(),
        ..Config::default()
    };
    let tocsin = Tocsin::new(db.store.clone(), Plugins::from_inventory(), config);
    (tocsin_http::router(tocsin_http::AppState::new(tocsin)), db)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn healthz_reports_the_database_and_the_version() {
    let (app, _db) = app(&[]).await;
    let (status, body) = call(&app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], "ok");
    assert_eq!(body["version"], tocsin_core::VERSION);
}

#[tokio::test]
async fn unknown_routes_get_the_json_error_body() {
    let (app, _db) = app(&[]).await;
    let (status, body) = call(&app, get("/no/such/route")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["kind"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/route")
    );
}

#[tokio::test]
async fn api_keys_guard_every_route_but_healthz() {
    let (app, _db) = app(&["s3cret", "ingest-only@/alerts/"]).await;
    assert_eq!(
        call(&app, get("/healthz")).await.0,
        StatusCode::OK,
        "healthz stays open"
    );

    let (status, body) = call(&app, get("/orchestration/pipelines/")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["kind"], "unauthorized");

    let wrong = Request::get("/orchestration/pipelines/")
        .header("x-api-key", "nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, wrong).await.0, StatusCode::UNAUTHORIZED);

    let scoped = Request::get("/orchestration/pipelines/")
        .header("x-api-key", "ingest-only")
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(&app, scoped).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["kind"], "forbidden");

    // A valid key passes authentication (what answers next is the route's business).
    let ok = Request::get("/orchestration/pipelines/")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    let (status, _) = call(&app, ok).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
    assert_ne!(status, StatusCode::FORBIDDEN);

    // A refusal is answered inside the request's context: it echoes the trace id too.
    let traced = Request::get("/orchestration/pipelines/")
        .header("x-trace-id", "refused-1")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(traced).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["x-trace-id"], "refused-1");
}

#[tokio::test]
async fn a_trace_id_is_echoed_or_generated() {
    let (app, _db) = app(&[]).await;
    let req = Request::get("/healthz")
        .header("x-trace-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-trace-id"], "abc-123");
    let bad = Request::get("/healthz")
        .header("x-trace-id", "has spaces;and<junk>")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(bad).await.unwrap();
    let id = res.headers()["x-trace-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "a generated id replaces an unsafe one: {id}");
}
