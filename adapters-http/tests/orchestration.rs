//! The `/orchestration/` endpoints and `/metrics`, through the router without a socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tocsin_core::engine::Engine;
use tocsin_core::plugin::Plugins;
use tocsin_core::store::testing;
use tocsin_core::{Config, Tocsin};
use tower::ServiceExt;

fn app(db: &testing::TestDb, eager: bool) -> axum::Router {
    let config = Config {
        checkers_skip_all: true,
        tasks_eager: eager,
        ..Config::default()
    };
    let t = Tocsin::new(db.store.clone(), Plugins::from_inventory(), config);
    let state = tocsin_http::AppState::new(t.clone()).with_extension(Engine::new(t));
    tocsin_http::router(state)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

const DEF: &str = r#"{"version": "1", "description": "tiny", "nodes": [
    {"id": "t", "type": "transform", "config": {"mapping": {"n": "payload.n"}}}]}"#;

#[tokio::test]
async fn definitions_are_created_validated_listed_and_bad_ones_rejected_with_every_problem() {
    for db in testing::all().await {
        let app = app(&db, false);
        let bad = json!({"version": "1", "nodes": [{"id": "a", "type": "nope", "next": "ghost"}, {"id": "a", "type": "transform"}]});
        let (status, body, _) =
            call(&app, "PUT", "/orchestration/definitions/bad/", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", db.label);
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("duplicate node id")
                && msg.contains("unknown type")
                && msg.contains("ghost"),
            "{msg}"
        );

        let def: Value = serde_json::from_str(DEF).unwrap();
        let (status, body, _) = call(
            &app,
            "PUT",
            "/orchestration/definitions/tiny/",
            Some(def.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", db.label);
        let (status, body, _) =
            call(&app, "PUT", "/orchestration/definitions/tiny/", Some(def)).await;
        assert_eq!(
            (status, body["version"].clone()),
            (StatusCode::OK, json!(2))
        );
        let (_, body, _) = call(&app, "GET", "/orchestration/definitions/", None).await;
        assert_eq!(body["definitions"][0]["name"], "tiny");
        let (status, body, _) = call(
            &app,
            "POST",
            "/orchestration/definitions/tiny/validate/",
            None,
        )
        .await;
        assert_eq!(
            (status, body["valid"].clone()),
            (StatusCode::OK, json!(true))
        );
        let (status, _, _) = call(&app, "GET", "/orchestration/definitions/missing/", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(
            &app,
            "PUT",
            "/orchestration/definitions/default/",
            Some(json!({})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "built-in names cannot be replaced"
        );
    }
}

#[tokio::test]
async fn sync_execution_returns_the_run_with_its_stages_and_async_answers_202() {
    for db in testing::all().await {
        let app = app(&db, false);
        let def: Value = serde_json::from_str(DEF).unwrap();
        call(&app, "PUT", "/orchestration/definitions/tiny/", Some(def)).await;
        let (status, body, _) = call(
            &app,
            "POST",
            "/orchestration/definitions/tiny/execute/?sync=true",
            Some(json!({"payload": {"n": 7}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", db.label);
        assert_eq!(body["run"]["status"], "notified");
        assert_eq!(body["stages"][0]["output_snapshot"]["n"], 7);
        let run_id = body["run"]["run_id"].as_str().unwrap().to_owned();

        let (status, body, _) = call(
            &app,
            "GET",
            &format!("/orchestration/pipeline/{run_id}/"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["run"]["run_id"].clone()),
            (StatusCode::OK, json!(run_id))
        );
        let (status, _, _) = call(&app, "GET", "/orchestration/pipeline/nope/", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body, _) = call(
            &app,
            "POST",
            &format!("/orchestration/pipeline/{run_id}/resume/"),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "a finished run is not resumable: {body}"
        );

        let (status, body, _) = call(
            &app,
            "POST",
            "/orchestration/pipeline/",
            Some(json!({"definition": "tiny", "payload": {}})),
        )
        .await;
        assert_eq!(
            (status, body["status"].clone()),
            (StatusCode::ACCEPTED, json!("pending")),
            "{body}"
        );
        let (status, body, _) = call(
            &app,
            "GET",
            "/orchestration/pipelines/?status=pending&limit=5",
            None,
        )
        .await;
        assert_eq!(
            (status, body["count"].clone()),
            (StatusCode::OK, json!(1)),
            "{}: {body}",
            db.label
        );
    }
}

#[tokio::test]
async fn the_default_pipeline_runs_synchronously_from_a_webhook_payload() {
    let db = testing::sqlite().await;
    let app = app(&db, false);
    let payload: Value = serde_json::from_str(include_str!(
        "../../drivers/ingest/fixtures/generic/single-firing.json"
    ))
    .unwrap();
    let (status, body, _) = call(
        &app,
        "POST",
        "/orchestration/pipeline/sync/",
        Some(json!({"payload": payload, "driver": "generic"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nodes: Vec<_> = body["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["node_id"].clone(), s["status"].clone()))
        .collect();
    assert_eq!(nodes[0], (json!("ingest"), json!("succeeded")));
    assert_eq!(
        nodes[1],
        (json!("context"), json!("skipped")),
        "checks are skipped in this test: {nodes:?}"
    );
    assert!(body["run"]["incident_id"].is_i64(), "{body}");
}

#[tokio::test]
async fn bad_requests_are_4xx_with_the_json_error_body() {
    let db = testing::sqlite().await;
    let app = app(&db, false);
    let (status, body, _) = call(&app, "GET", "/orchestration/pipelines/?limit=lots", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"));
    let (status, _, _) = call(
        &app,
        "GET",
        "/orchestration/pipelines/?status=sleeping",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call(
        &app,
        "POST",
        "/orchestration/pipeline/",
        Some(json!({"definition": "missing"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &app,
        "POST",
        "/orchestration/pipeline/",
        Some(json!({"unknown_field": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let req = Request::post("/orchestration/pipeline/")
        .header("content-type", "text/plain")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn metrics_expose_runs_alerts_and_the_queue_in_prometheus_text() {
    for db in testing::all().await {
        let app = app(&db, true);
        let payload: Value = serde_json::from_str(include_str!(
            "../../drivers/ingest/fixtures/generic/single-firing.json"
        ))
        .unwrap();
        call(
            &app,
            "POST",
            "/orchestration/pipeline/",
            Some(json!({"payload": payload, "driver": "generic"})),
        )
        .await;
        let (status, _, text) = call(&app, "GET", "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("# TYPE tocsin_pipeline_runs gauge"), "{text}");
        assert!(
            text.contains("tocsin_pipeline_runs{status=\"notified\"} 1"),
            "{}: {text}",
            db.label
        );
        assert!(
            text.contains("tocsin_alerts{source=\"generic\",status=\"firing\"} 1"),
            "{text}"
        );
        assert!(text.contains("tocsin_queue_depth 0"), "{text}");
        assert!(
            text.contains(
                "tocsin_stage_duration_seconds_count{stage=\"ingest\",status=\"succeeded\"} 1"
            ),
            "{text}"
        );
    }
}
