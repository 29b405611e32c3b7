//! The `/notify/` endpoints, through the router, against a real HTTP server on 127.0.0.1
//! standing in for Slack.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tocsin_core::plugin::Plugins;
use tocsin_core::store::testing::{self, TestDb};
use tocsin_core::{Config, Tocsin};
use tower::ServiceExt;

/// A receiver on 127.0.0.1 answering `status`/`body` after `delay`, counting requests in flight.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    max_in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receiver(status: u16, body: &'static str, delay: Duration) -> Receiver {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let (b, i, m) = (bodies.clone(), in_flight.clone(), max_in_flight.clone());
    let app = axum::Router::new().fallback(move |bytes: Bytes| {
        let (b, i, m) = (b.clone(), i.clone(), m.clone());
        async move {
            let now = i.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            b.lock()
                .unwrap()
                .push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
            tokio::time::sleep(delay).await;
            i.fetch_sub(1, Ordering::SeqCst);
            (StatusCode::from_u16(status).unwrap(), body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/services/T000/B000/XXXX",
        listener.local_addr().unwrap()
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver {
        url,
        bodies,
        max_in_flight,
        task,
    }
}

fn app_for(db: &TestDb) -> (axum::Router, Tocsin) {
    let tocsin = Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    );
    (
        tocsin_http::router(tocsin_http::AppState::new(tocsin.clone())),
        tocsin,
    )
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

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn drivers_are_listed_with_their_config_and_unknown_ones_are_404() {
    let db = testing::sqlite().await;
    let (app, _) = app_for(&db);
    let (status, body) = call(&app, get("/notify/drivers/")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = body["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["console", "email", "pagerduty", "slack", "webhook"]
    );
    let (status, body) = call(&app, get("/notify/drivers/pagerduty/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["driver"]["required"], json!(["routing_key"]));
    assert!(
        body["driver"]["optional"]
            .as_array()
            .unwrap()
            .contains(&json!("events_url"))
    );
    assert!(body["driver"]["example"]["routing_key"].is_string());
    let (status, body) = call(&app, get("/notify/drivers/carrier-pigeon/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["kind"], "not_found");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("slack"),
        "lists the available: {body}"
    );
    let (status, body) = call(&app, get("/notify/send/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["available_drivers"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bodies_and_configs_are_400_naming_the_field_and_unknown_drivers_404() {
    let db = testing::sqlite().await;
    let (app, _) = app_for(&db);
    for (path, body, field) in [
        ("/notify/send/", json!({"message": "no title"}), "title"),
        (
            "/notify/send/",
            json!({"title": "t", "severity": "loud"}),
            "severity",
        ),
        (
            "/notify/send/",
            json!({"title": "t", "colour": "red"}),
            "colour",
        ),
        (
            "/notify/send/slack/",
            json!({"title": "t", "config": {}}),
            "webhook_url",
        ),
        (
            "/notify/send/pagerduty/",
            json!({"title": "t", "config": {"routing_key": "k", "severity": {"warning": "meh"}}}),
            "severity",
        ),
        (
            "/notify/send/email/",
            json!({"title": "t", "config": {"smtp_host": "mx.example.com", "from": "a@example.com", "to": ["x"]}}),
            "to",
        ),
    ] {
        let (status, resp) = call(&app, post(path, body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {resp}");
        assert!(
            resp["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {resp}"
        );
    }
    let (status, resp) = call(
        &app,
        post("/notify/send/carrier-pigeon/", json!({"title": "t"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{resp}");
    let (status, _) = call(&app, get("/notify/send/carrier-pigeon/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn urls_from_the_body_may_not_reach_private_addresses() {
    let db = testing::sqlite().await;
    let (app, _) = app_for(&db);
    let r = receiver(200, "ok", Duration::ZERO).await;
    for (path, config, field) in [
        (
            "/notify/send/slack/",
            json!({"webhook_url": r.url}),
            "webhook_url",
        ),
        (
            "/notify/send/webhook/",
            json!({"url": "http://169.254.169.254/latest/meta-data/"}),
            "url",
        ),
    ] {
        let (status, resp) = call(&app, post(path, json!({"title": "t", "config": config}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{resp}"
        );
    }
    assert!(r.bodies.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_to_a_stored_channel_and_reports_the_provider_answer() {
    for db in testing::all().await {
        let (app, tocsin) = app_for(&db);
        let ok = receiver(200, "ok", Duration::ZERO).await;
        let bad = receiver(400, "invalid_payload", Duration::ZERO).await;
        tocsin_notify::create_channel(&tocsin, "ops", "slack", &json!({"webhook_url": ok.url}), "")
            .await
            .unwrap();
        tocsin_notify::create_channel(
            &tocsin,
            "broken",
            "slack",
            &json!({"webhook_url": bad.url}),
            "",
        )
        .await
        .unwrap();

        let (status, resp) = call(&app, post("/notify/send/", json!({"title": "Disk full on db-1", "message": "97%", "severity": "critical", "channel": "ops"}))).await;
        assert_eq!(status, StatusCode::OK, "{}: {resp}", db.label);
        assert_eq!(resp["status"], "sent");
        assert_eq!(resp["results"][0]["channel"], "ops");
        assert_eq!(resp["results"][0]["response"], "HTTP 200 OK: ok");
        assert_eq!(resp["deliveries"][0]["status"], "sent");
        let received = ok.bodies.lock().unwrap().clone();
        assert_eq!(received.len(), 1);
        assert!(
            received[0]["text"]
                .as_str()
                .unwrap()
                .contains("[CRITICAL] Disk full on db-1")
        );

        // The path segment may name a channel too.
        let (status, _) = call(&app, post("/notify/send/ops/", json!({"title": "again"}))).await;
        assert_eq!(status, StatusCode::OK);

        let (status, resp) = call(
            &app,
            post("/notify/send/", json!({"title": "t", "channel": "broken"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{resp}");
        assert_eq!(resp["error"]["kind"], "upstream");
        assert!(
            resp["error"]["message"]
                .as_str()
                .unwrap()
                .contains("HTTP 400 Bad Request: invalid_payload"),
            "{resp}"
        );

        let (status, _) = call(
            &app,
            post("/notify/send/", json!({"title": "t", "channel": "ghost"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A temporary failure is retried (interactive policy: 3 attempts), each attempt recorded.
        let down = receiver(503, "down", Duration::ZERO).await;
        tocsin_notify::create_channel(
            &tocsin,
            "down",
            "slack",
            &json!({"webhook_url": down.url}),
            "",
        )
        .await
        .unwrap();
        let (status, resp) = call(
            &app,
            post("/notify/send/", json!({"title": "t", "channel": "down"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .unwrap()
                .contains("HTTP 503"),
            "{resp}"
        );
        assert_eq!(down.bodies.lock().unwrap().len(), 3);
        let records = tocsin
            .store()
            .run(|c| tocsin_core::store::list_deliveries(c, None, 100))
            .await
            .unwrap();
        let mut attempts: Vec<(i32, String)> = records
            .iter()
            .filter(|d| d.channel_name.as_deref() == Some("down"))
            .map(|d| (d.attempt, d.status.to_string()))
            .collect();
        attempts.sort();
        assert_eq!(
            attempts,
            vec![
                (1, "retrying".to_owned()),
                (2, "retrying".to_owned()),
                (3, "failed".to_owned())
            ]
        );

        // An ad-hoc driver with no destination works from a body.
        let (status, resp) = call(
            &app,
            post("/notify/send/console/", json!({"title": "hello"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        assert_eq!(resp["results"][0]["driver"], "console");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_channel_the_send_is_recorded_as_skipped() {
    let db = testing::sqlite().await;
    let (app, _) = app_for(&db);
    let (status, resp) = call(&app, post("/notify/send/", json!({"title": "t"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["status"], "skipped");
    assert_eq!(resp["deliveries"][0]["error"], "no channel configured");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_sent_concurrently_with_a_bound_and_report_per_item() {
    let db = testing::sqlite().await;
    let (app, tocsin) = app_for(&db);
    let slow = receiver(200, "ok", Duration::from_millis(250)).await;
    let bad = receiver(403, "invalid_token", Duration::ZERO).await;
    tocsin_notify::create_channel(
        &tocsin,
        "slow",
        "slack",
        &json!({"webhook_url": slow.url}),
        "",
    )
    .await
    .unwrap();
    tocsin_notify::create_channel(
        &tocsin,
        "bad",
        "slack",
        &json!({"webhook_url": bad.url}),
        "",
    )
    .await
    .unwrap();

    let items: Vec<Value> = (0..10)
        .map(|i| json!({"title": format!("item {i}"), "channel": "slow"}))
        .collect();
    let started = std::time::Instant::now();
    let (status, resp) = call(
        &app,
        post("/notify/batch/", json!({"notifications": items})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["status"], "success");
    assert_eq!(resp["success_count"], 10);
    let max = slow.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max > 1 && max <= tocsin_notify::request::BATCH_CONCURRENCY,
        "in flight at most {max}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(250 * 10),
        "sent concurrently"
    );

    let (status, resp) = call(
        &app,
        post(
            "/notify/batch/",
            json!({"notifications": [
                {"title": "fine", "channel": "slow"},
                {"title": "refused", "channel": "bad"},
                {"message": "no title"},
            ]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["status"], "partial");
    assert_eq!(
        (resp["success_count"].as_u64(), resp["error_count"].as_u64()),
        (Some(1), Some(2))
    );
    let results = resp["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(results[0]["status"], "sent");
    assert_eq!(results[1]["error"]["kind"], "unauthorized");
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert!(
        results[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("title")
    );

    for bad_batch in [
        json!({}),
        json!({"notifications": []}),
        json!({"notifications": "x"}),
        json!({"notifications": vec![json!({"title": "t"}); 101]}),
    ] {
        let (status, resp) = call(&app, post("/notify/batch/", bad_batch)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("notifications"),
            "{resp}"
        );
    }
}
