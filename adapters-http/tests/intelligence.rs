//! The `/intelligence/` endpoints: status codes, bodies, the roots guard, the fallback path and
//! the `AnalysisRun` records (SQLite, and PostgreSQL when `TOCSIN_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures fail loudly

use std::io::Write;
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tocsin_core::domain::{AnalysisStatus, Severity};
use tocsin_core::plugin::Plugins;
use tocsin_core::store::{self, NewIncident, testing};
use tocsin_core::{Config, Tocsin};
use tocsin_http::AppState;
use tocsin_providers::OperatorConfig;
use tower::ServiceExt;

fn app(db: &testing::TestDb, operator: Option<OperatorConfig>) -> axum::Router {
    let tocsin = Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    );
    let mut state = AppState::new(tocsin);
    if let Some(op) = operator {
        state = state.with_extension(op);
    }
    tocsin_http::router(state)
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

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// A stand-in for the OpenAI API on 127.0.0.1 that always answers `status` with `body`.
async fn fake_openai(status: u16, body: Value) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (StatusCode::from_u16(status).unwrap(), axum::Json(body)) }
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

async fn incident(db: &testing::TestDb) -> i64 {
    db.store
        .write(|c| {
            store::insert_incident(
                c,
                NewIncident {
                    title: "HostOutOfMemory on web-1".into(),
                    severity: Severity::Critical,
                    description: String::new(),
                    group_key: "HostOutOfMemory|web-1".into(),
                    metadata: json!({}),
                },
            )
        })
        .await
        .unwrap()
        .id
}

/// A folder under the target's temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn health_and_providers_list_the_registered_providers() {
    let db = testing::sqlite().await;
    let app = app(&db, Some(OperatorConfig::new()));
    let (status, body) = call(&app, get("/intelligence/health/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["app"], "intelligence");
    assert_eq!(body["providers"], json!(["local", "openai"]));
    assert_eq!(body["disk_scans"], false);

    let (status, body) = call(&app, get("/intelligence/providers/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 2);
    assert_eq!(body["providers"], json!(["local", "openai"]));
    assert_eq!(body["details"][0]["default"], true);
    assert!(body["details"][1]["config_example"].is_object());
}

#[tokio::test]
async fn bad_recommendation_requests_are_4xx_with_a_message() {
    let db = testing::sqlite().await;
    let app = app(&db, Some(OperatorConfig::new()));
    let cases = [
        (
            json!({"incident_id": 9999}),
            StatusCode::NOT_FOUND,
            "incident 9999",
        ),
        (
            json!({"provider": "gemini"}),
            StatusCode::BAD_REQUEST,
            "gemini",
        ),
        (
            json!({"provider": "openai", "config": {"base_url": "http://169.254.169.254"}}),
            StatusCode::BAD_REQUEST,
            "operator",
        ),
        (
            json!({"config": {"api_key": "sk-mine"}}),
            StatusCode::BAD_REQUEST,
            "operator",
        ),
        (
            json!({"incident_id": "seven"}),
            StatusCode::BAD_REQUEST,
            "incident_id",
        ),
        (
            json!({"incident_id": -1}),
            StatusCode::BAD_REQUEST,
            "incident_id",
        ),
        (
            json!({"incidnet_id": 1}),
            StatusCode::BAD_REQUEST,
            "incidnet_id",
        ),
        (
            json!({"config": {"top_n": "many"}}),
            StatusCode::BAD_REQUEST,
            "top_n",
        ),
        (
            json!({"fallback": "maybe"}),
            StatusCode::BAD_REQUEST,
            "fallback",
        ),
    ];
    for (body, want, needle) in cases {
        let (status, res) = call(&app, post("/intelligence/recommendations/", &body)).await;
        assert_eq!(status, want, "{body}: {res}");
        assert!(message(&res).contains(needle), "{body}: {res}");
    }
    let raw = Request::post("/intelligence/recommendations/")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, res) = call(&app, raw).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    let (status, res) = call(&app, get("/intelligence/recommendations/?incident_id=x1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert!(message(&res).contains("incident_id"), "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_is_analysed_falls_back_when_asked_and_every_run_is_recorded() {
    let failing = fake_openai(500, json!({"error": {"message": "overloaded"}})).await;
    for db in testing::all().await {
        let op = OperatorConfig::new().with_provider(
            "openai",
            json!({"base_url": failing, "api_key": "sk-http-test", "timeout": 5}),
        );
        let app = app(&db, Some(op));
        let id = incident(&db).await;

        let (status, body) = call(
            &app,
            post(
                "/intelligence/recommendations/",
                &json!({"incident_id": id}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", db.label);
        assert_eq!(body["provider"], "local");
        assert_eq!(body["incident_id"], id);
        assert_eq!(body["count"], 1);
        assert_eq!(body["recommendations"][0]["type"], "memory");
        assert_eq!(body["recommendations"][0]["incident_id"], id);

        // The AI endpoint fails: without fallback that is a 502 with the provider's message...
        let (status, body) = call(
            &app,
            post(
                "/intelligence/recommendations/",
                &json!({"incident_id": id, "provider": "openai"}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["error"]["kind"], "upstream");
        assert!(message(&body).contains("overloaded"), "{body}");

        // ...and with fallback the local provider stands in, and says so.
        let (status, body) = call(
            &app,
            post(
                "/intelligence/recommendations/",
                &json!({"incident_id": id, "provider": "openai", "fallback": true}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["fallback_used"], true);
        assert_eq!(body["requested_provider"], "openai");
        assert!(body["primary_error"].as_str().unwrap().contains("HTTP 500"));

        let runs = db
            .store
            .run(move |c| store::list_analysis_runs(c, Some(id), 10))
            .await
            .unwrap();
        let summary: Vec<(String, AnalysisStatus, bool)> = runs
            .iter()
            .rev()
            .map(|r| (r.provider.clone(), r.status, r.fallback_used))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("local".into(), AnalysisStatus::Succeeded, false),
                ("openai".into(), AnalysisStatus::Failed, false),
                ("openai".into(), AnalysisStatus::Failed, false),
                ("local".into(), AnalysisStatus::Succeeded, true),
            ],
            "{}",
            db.label
        );
        assert!(
            !serde_json::to_string(&runs)
                .unwrap()
                .contains("sk-http-test")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_analysis_by_post_and_get_and_bad_numbers_are_400() {
    let db = testing::sqlite().await;
    let app = app(&db, Some(OperatorConfig::new()));
    let (status, body) = call(&app, post("/intelligence/memory/", &json!({"top_n": 3}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["type"], "memory");
    assert_eq!(body["top_n"], 3);
    assert_eq!(body["count"], 1);
    let procs = body["recommendations"][0]["details"]["top_processes"]
        .as_array()
        .unwrap();
    assert!(!procs.is_empty() && procs.len() <= 3);
    assert!(body["analysis_run_id"].as_i64().is_some());

    let (status, body) = call(&app, get("/intelligence/memory/?top_n=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["recommendations"][0]["details"]["top_processes"]
            .as_array()
            .unwrap()
            .len()
            <= 2
    );

    for (req, needle) in [
        (get("/intelligence/memory/?top_n=ten"), "top_n"),
        (get("/intelligence/memory/?top_n=-4"), "top_n"),
        (get("/intelligence/memory/?top_n=0"), "top_n"),
        (
            post("/intelligence/memory/", &json!({"top_n": 2.5})),
            "top_n",
        ),
        (
            post("/intelligence/memory/", &json!({"top_n": 1000})),
            "top_n",
        ),
        (
            post("/intelligence/memory/", &json!({"colour": 1})),
            "colour",
        ),
    ] {
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).contains(needle), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_analysis_is_confined_to_the_configured_roots() {
    let db = testing::sqlite().await;
    let root = TempDir::new("http-scan");
    let big = root.path().join("data/big.bin");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(&big).unwrap();
    f.write_all(&vec![1u8; 3 * 1024 * 1024]).unwrap();
    f.sync_all().unwrap();
    let canon = root.path().canonicalize().unwrap();

    let app = app(
        &db,
        Some(OperatorConfig::new().with_roots(vec![root.path().to_path_buf()])),
    );
    let (status, body) = call(
        &app,
        post(
            "/intelligence/disk/",
            &json!({"path": root.path(), "threshold_mb": 2, "old_days": 7}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["type"], "disk");
    assert_eq!(
        (body["threshold_mb"].as_u64(), body["old_days"].as_u64()),
        (Some(2), Some(7))
    );
    let files = &body["recommendations"][0]["details"]["largest_files"];
    assert_eq!(files[0]["path"], json!(canon.join("data/big.bin")));
    assert_eq!(files[0]["size_bytes"], 3 * 1024 * 1024);

    // GET with query parameters, the path defaulting to the first root.
    let (status, body) = call(&app, get("/intelligence/disk/?threshold_mb=1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["path"], json!(root.path()));

    for (req, needle) in [
        (
            post("/intelligence/disk/", &json!({"path": "/etc"})),
            "outside the allowed scan roots",
        ),
        (
            post(
                "/intelligence/disk/",
                &json!({"path": root.path().join("data/../../..")}),
            ),
            "outside the allowed scan roots",
        ),
        (get("/intelligence/disk/?threshold_mb=big"), "threshold_mb"),
        (get("/intelligence/disk/?old_days=1.5"), "old_days"),
        (post("/intelligence/disk/", &json!({"top_n": "x"})), "top_n"),
        (post("/intelligence/disk/", &json!({"path": 7})), "path"),
    ] {
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).contains(needle), "{body}");
    }
}

#[tokio::test]
async fn without_configured_roots_disk_scans_are_refused() {
    if std::env::var("TOCSIN_ANALYZE_ROOTS").is_ok() {
        return; // this test is about the unset variable
    }
    let db = testing::sqlite().await;
    let app = app(&db, None);
    let (status, body) = call(&app, post("/intelligence/disk/", &json!({"path": "/"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("TOCSIN_ANALYZE_ROOTS"), "{body}");
    let (status, body) = call(&app, get("/intelligence/disk/")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = call(&app, get("/intelligence/health/")).await;
    assert_eq!(body["disk_scans"], false);
}
