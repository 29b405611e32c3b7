//! The `/checks/` routes: listing, running (with records and skip controls) and the run history,
//! on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tocsin_core::plugin::Plugins;
use tocsin_core::store::{self, testing};
use tocsin_core::{Config, Tocsin};
use tocsin_http::{AppState, router};
use tower::ServiceExt;

fn state(db: &testing::TestDb, config: Config) -> AppState {
    // Disk paths in request bodies must lie under the operator's roots: here, all of `/`.
    AppState::new(Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        config,
    ))
    .with_extension(tocsin_providers::OperatorConfig::new().with_roots(vec!["/".into()]))
}

async fn call(state: &AppState, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let res = router(state.clone())
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)})),
    )
}

#[tokio::test]
async fn the_checkers_are_listed_with_their_skip_state() {
    let db = testing::sqlite().await;
    let s = state(
        &db,
        Config {
            checkers_skip: vec!["network".into()],
            ..Config::default()
        },
    );
    let (status, v) = call(&s, "GET", "/checks/checkers/", "").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = v["checkers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "disk", "memory", "network", "process"]);
    assert_eq!(v["checkers"][3]["skipped"], true);
    assert_eq!(v["checkers"][0]["skipped"], false);
    assert!(v["checkers"][1]["config_example"]["paths"].is_array());
}

#[tokio::test(flavor = "multi_thread")]
async fn running_checks_records_them_and_reports_skips() {
    for db in testing::all().await {
        let s = state(
            &db,
            Config {
                checkers_skip: vec!["cpu".into()],
                ..Config::default()
            },
        );
        let body = json!({"checkers": ["cpu", "memory", "disk"], "options": {"disk": {"paths": ["/", "/tocsin-no-such-dir"]}}});
        let (status, v) = call(&s, "POST", "/checks/run/", &body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{}: {v}", db.label);
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["checker"], "cpu");
        assert_eq!(results[0]["skipped"], true);
        assert_eq!(results[2]["checker"], "disk");
        assert!(
            results[2]["message"]
                .as_str()
                .unwrap()
                .contains("/tocsin-no-such-dir"),
            "{v}"
        );
        assert_eq!(v["summary"]["skipped"], 1);
        let trace = v["trace_id"].as_str().unwrap().to_owned();

        let (status, v) = call(&s, "GET", "/checks/runs/?checker=memory", "").await;
        assert_eq!(status, StatusCode::OK);
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{}: {v}", db.label);
        assert_eq!(runs[0]["trace_id"], trace.as_str());
        let (_, v) = call(&s, "GET", "/checks/runs/", "").await;
        assert_eq!(
            v["runs"].as_array().unwrap().len(),
            2,
            "{}: skipped cpu is not recorded",
            db.label
        );

        // include_skipped runs it anyway.
        let (_, v) = call(&s, "POST", "/checks/run/", r#"{"checkers": ["cpu"], "include_skipped": true, "options": {"cpu": {"sample_interval": 0.05}}}"#).await;
        assert_eq!(v["results"][0]["skipped"], false, "{v}");
        let recorded = db
            .store
            .run(|c| store::list_check_runs(c, Some("cpu"), 10))
            .await
            .unwrap();
        assert_eq!(recorded.len(), 1, "{}", db.label);
    }
}

#[tokio::test]
async fn an_empty_body_runs_every_checker() {
    let db = testing::sqlite().await;
    let s = state(
        &db,
        Config {
            checkers_skip_all: true,
            ..Config::default()
        },
    );
    let (status, v) = call(&s, "POST", "/checks/run/", "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["summary"]["total"], 5);
    assert_eq!(v["summary"]["skipped"], 5, "CHECKERS_SKIP_ALL");
}

#[tokio::test]
async fn bad_requests_are_clean_errors() {
    let db = testing::sqlite().await;
    let s = state(&db, Config::default());
    let (status, v) = call(&s, "POST", "/checks/run/", r#"{"checkers": ["dsk"]}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cpu, disk, memory, network, process"),
        "{v}"
    );
    let (status, v) = call(
        &s,
        "POST",
        "/checks/run/",
        r#"{"checkers": ["disk"], "options": {"disk": {"paths": ["relative"]}}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("relative"),
        "{v}"
    );
    let (status, v) = call(&s, "POST", "/checks/run/", r#"{"checkerz": []}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, _) = call(&s, "POST", "/checks/run/", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&s, "GET", "/checks/runs/?limit=zero", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&s, "GET", "/checks/runs/?limit=0", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let runs = db
        .store
        .run(|c| store::list_check_runs(c, None, 10))
        .await
        .unwrap();
    assert!(runs.is_empty(), "nothing ran");
}

#[tokio::test]
async fn disk_paths_from_a_request_must_lie_under_the_configured_roots() {
    let db = testing::sqlite().await;
    let s = AppState::new(Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    ))
    .with_extension(tocsin_providers::OperatorConfig::new().with_roots(vec!["/tmp".into()]));
    for path in ["/etc", "/tmp/../etc"] {
        let body = json!({"checkers": ["disk"], "options": {"disk": {"paths": [path]}}});
        let (status, v) = call(&s, "POST", "/checks/run/", &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("TOCSIN_ANALYZE_ROOTS"),
            "{v}"
        );
    }
    let body = json!({"checkers": ["disk"], "options": {"disk": {"paths": ["/tmp"]}}});
    let (status, v) = call(&s, "POST", "/checks/run/", &body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}
