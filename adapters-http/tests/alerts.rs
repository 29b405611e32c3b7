//! The webhook routes: every fixture through `/alerts/webhook/` and `/alerts/webhook/<driver>/`,
//! the bad-input suite (each a clean 4xx that writes nothing), readiness, signatures and the hook.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tocsin_core::plugin::Plugins;
use tocsin_core::store::{self, AlertFilter, testing};
use tocsin_core::{Config, Secret, Tocsin};
use tocsin_http::{AppState, router};
use tocsin_ingest::service::{HookFactory, TxHook, WebhookSecrets};
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../drivers/ingest/fixtures")
}

fn state(db: &testing::TestDb) -> AppState {
    let t = Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    );
    // No secrets unless a test adds some: the process environment must not change the results.
    AppState::new(t).with_extension(WebhookSecrets::none())
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    ct: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router(state.clone())
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    (status, v)
}

async fn post(state: &AppState, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
    call(state, "POST", uri, Some("application/json"), body, &[]).await
}

async fn alert_count(state: &AppState) -> usize {
    state
        .tocsin
        .store()
        .run(|c| {
            store::list_alerts(
                c,
                &AlertFilter {
                    limit: 1000,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()
        .len()
}

fn all_fixtures() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(fixtures()).unwrap() {
        let d = d.unwrap();
        let driver = d.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(d.path()).unwrap() {
            let f = f.unwrap();
            out.push((
                driver.clone(),
                f.file_name().to_string_lossy().into_owned(),
                std::fs::read(f.path()).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn every_fixture_is_accepted_by_detection_and_by_its_named_route() {
    for db in testing::all().await {
        let s = state(&db);
        for (driver, file, raw) in all_fixtures() {
            for uri in [
                "/alerts/webhook/".to_owned(),
                format!("/alerts/webhook/{driver}/"),
            ] {
                let (status, body) = post(&s, &uri, raw.clone()).await;
                assert!(
                    status == StatusCode::ACCEPTED || status == StatusCode::OK,
                    "{driver}/{file} on {uri}: {status} {body}"
                );
                assert_eq!(body["driver"], driver.as_str(), "{driver}/{file}");
                assert!(body["trace_id"].as_str().is_some_and(|t| !t.is_empty()));
                let n = body["alerts"].as_array().unwrap().len();
                if n == 0 {
                    assert_eq!(status, StatusCode::OK);
                    assert!(body["empty_reason"].is_string(), "{driver}/{file}: {body}");
                } else {
                    assert_eq!(status, StatusCode::ACCEPTED);
                    for k in ["created", "updated", "resolved", "unchanged"] {
                        assert!(body[k].is_u64(), "{k} in {body}");
                    }
                    let sum: u64 = ["created", "updated", "resolved", "unchanged"]
                        .iter()
                        .map(|k| body[*k].as_u64().unwrap())
                        .sum();
                    assert_eq!(sum as usize, n, "{driver}/{file}");
                    assert!(body["incident_ids"].is_array());
                }
            }
        }
        assert!(alert_count(&s).await > 20, "{}", db.label);
    }
}

#[tokio::test]
async fn the_response_carries_counts_incident_ids_and_the_callers_trace_id() {
    let db = testing::sqlite().await;
    let s = state(&db);
    let raw = std::fs::read(fixtures().join("alertmanager/firing-two-alerts.json")).unwrap();
    let (status, body) = call(
        &s,
        "POST",
        "/alerts/webhook/alertmanager/",
        Some("application/json; charset=utf-8"),
        raw.clone(),
        &[("x-trace-id", "trace-abc")],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["trace_id"], "trace-abc");
    assert_eq!(body["created"], 2);
    assert_eq!(body["incident_ids"].as_array().unwrap().len(), 2);
    assert_eq!(body["status"], "accepted");
    // The payload facts come back as a JSON object, the same from the named driver's direct
    // parse and from detection's decode.
    assert_eq!(body["meta"]["receiver"], "tocsin");
    assert_eq!(body["meta"]["commonLabels"]["job"], "node");
    assert_eq!(body["meta"]["version"], "4");
    let (_, again) = post(&s, "/alerts/webhook/", raw).await;
    assert_eq!(
        (again["created"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(again["incident_ids"], body["incident_ids"]);
    assert_eq!(again["meta"], body["meta"]);
    // Without a trailing slash too.
    let raw = std::fs::read(fixtures().join("generic/single-firing.json")).unwrap();
    let (status, _) = post(&s, "/alerts/webhook/generic", raw).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bad_input_is_a_clean_4xx_that_writes_nothing() {
    let db = testing::sqlite().await;
    let s = state(&db);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(5 * 1024 * 1024)).into_bytes();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes();
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes();
    let cases: Vec<(&str, &str, Option<&str>, Vec<u8>, StatusCode)> = vec![
        ("invalid JSON", "/alerts/webhook/", Some("application/json"), b"{\"name\": ".to_vec(), StatusCode::BAD_REQUEST),
        ("invalid JSON, named driver", "/alerts/webhook/alertmanager/", Some("application/json"), b"not json".to_vec(), StatusCode::BAD_REQUEST),
        ("empty body", "/alerts/webhook/", Some("application/json"), Vec::new(), StatusCode::BAD_REQUEST),
        ("top-level array", "/alerts/webhook/", Some("application/json"), b"[{\"name\": \"x\"}]".to_vec(), StatusCode::BAD_REQUEST),
        ("top-level string", "/alerts/webhook/generic/", Some("application/json"), b"\"x\"".to_vec(), StatusCode::BAD_REQUEST),
        ("empty object", "/alerts/webhook/", Some("application/json"), b"{}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("empty object, named driver", "/alerts/webhook/generic/", Some("application/json"), b"{}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("Grafana-looking but not Grafana", "/alerts/webhook/", Some("application/json"), br#"{"title": "x", "state": "alerting"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("wrong type: alerts", "/alerts/webhook/alertmanager/", Some("application/json"), br#"{"version": "4", "groupKey": "g", "alerts": {"a": 1}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("wrong type: severity", "/alerts/webhook/generic/", Some("application/json"), br#"{"name": "x", "severity": 5}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("wrong type: labels", "/alerts/webhook/", Some("application/json"), br#"{"name": "x", "labels": "a=b"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("wrong type: startsAt", "/alerts/webhook/alertmanager/", Some("application/json"), br#"{"version": "4", "groupKey": "g", "alerts": [{"status": "firing", "labels": {"alertname": "a"}, "startsAt": true}]}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("5 MB string", "/alerts/webhook/", Some("application/json"), big, StatusCode::PAYLOAD_TOO_LARGE),
        ("10,000 nested arrays", "/alerts/webhook/", Some("application/json"), deep, StatusCode::BAD_REQUEST),
        ("10,000 nested objects", "/alerts/webhook/generic/", Some("application/json"), deep_obj, StatusCode::BAD_REQUEST),
        ("invalid UTF-8", "/alerts/webhook/", Some("application/json"), b"{\"name\": \"\xff\xfe\"}".to_vec(), StatusCode::BAD_REQUEST),
        ("BOM", "/alerts/webhook/", Some("application/json"), b"\xEF\xBB\xBF{\"name\": \"x\"}".to_vec(), StatusCode::BAD_REQUEST),
        ("NUL escape", "/alerts/webhook/", Some("application/json"), b"{\"name\": \"a\\u0000b\"}".to_vec(), StatusCode::BAD_REQUEST),
        ("raw NUL byte", "/alerts/webhook/", Some("application/json"), b"{\"name\": \"a\"}\x00".to_vec(), StatusCode::BAD_REQUEST),
        ("duplicate keys", "/alerts/webhook/", Some("application/json"), br#"{"name": "a", "name": "b"}"#.to_vec(), StatusCode::BAD_REQUEST),
        ("wrong content type", "/alerts/webhook/", Some("text/plain"), br#"{"name": "x"}"#.to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("form content type", "/alerts/webhook/generic/", Some("application/x-www-form-urlencoded"), b"name=x".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("unknown driver", "/alerts/webhook/nagios/", Some("application/json"), br#"{"name": "x"}"#.to_vec(), StatusCode::NOT_FOUND),
        ("pagerduty event without incident", "/alerts/webhook/pagerduty/", Some("application/json"), br#"{"event": {"event_type": "service.updated", "resource_type": "service", "data": {"type": "service", "id": "P1"}}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (what, uri, ct, body, want) in cases {
        let (status, json) = call(&s, "POST", uri, ct, body, &[]).await;
        assert_eq!(status, want, "{what}: {json}");
        let msg = json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error body: {json}"));
        assert!(
            !msg.is_empty() && json["error"]["kind"].is_string(),
            "{what}: {json}"
        );
    }
    assert_eq!(alert_count(&s).await, 0, "bad input wrote nothing");
    // The messages say what is wrong.
    let (_, j) = post(&s, "/alerts/webhook/", b"{}".to_vec()).await;
    let m = j["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("alertmanager") && m.contains("/alerts/webhook/<driver>/"),
        "{m}"
    );
    let (_, j) = post(
        &s,
        "/alerts/webhook/generic/",
        br#"{"name": "x", "severity": 5}"#.to_vec(),
    )
    .await;
    assert!(
        j["error"]["message"].as_str().unwrap().contains("severity"),
        "{j}"
    );
    let (_, j) = post(
        &s,
        "/alerts/webhook/",
        br#"{"name": "a", "name": "b"}"#.to_vec(),
    )
    .await;
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key"),
        "{j}"
    );
}

#[tokio::test]
async fn get_says_the_endpoint_is_ready_and_which_driver() {
    let db = testing::sqlite().await;
    let s = state(&db);
    let (status, body) = call(&s, "GET", "/alerts/webhook/", None, Vec::new(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["drivers"].as_array().unwrap().len(), 8);
    let (status, body) = call(&s, "GET", "/alerts/webhook/zabbix/", None, Vec::new(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["status"].as_str(), body["driver"].as_str()),
        (Some("ready"), Some("zabbix"))
    );
    let (status, _) = call(&s, "GET", "/alerts/webhook/nagios/", None, Vec::new(), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signatures_are_enforced_when_a_secret_is_configured() {
    let db = testing::sqlite().await;
    let secret = Secret::new("whsec");
    let s = state(&db).with_extension(WebhookSecrets::none().with("pagerduty", secret.clone()));
    let raw = std::fs::read(fixtures().join("pagerduty/v3-incident-triggered.json")).unwrap();
    let (status, body) = post(&s, "/alerts/webhook/pagerduty/", raw.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-PagerDuty-Signature")
    );
    let (ready, _) = call(
        &s,
        "GET",
        "/alerts/webhook/pagerduty/",
        None,
        Vec::new(),
        &[],
    )
    .await;
    assert_eq!(ready, StatusCode::OK);
    let sig = format!(
        "v1={}",
        tocsin_ingest::signature::hmac_sha256_hex(&secret, &raw)
    );
    let (status, body) = call(
        &s,
        "POST",
        "/alerts/webhook/",
        Some("application/json"),
        raw,
        &[("X-PagerDuty-Signature", &sig)],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(alert_count(&s).await, 1);
}

#[tokio::test]
async fn a_hook_factory_in_the_state_runs_in_the_transaction() {
    let db = testing::sqlite().await;
    let factory = HookFactory(Arc::new(|| -> TxHook {
        Box::new(|_conn, changes| {
            Ok(changes
                .iter()
                .map(|c| format!("run-{}-{:?}", c.incident_id, c.kind))
                .collect())
        })
    }));
    let s = state(&db).with_extension(factory);
    let raw = std::fs::read(fixtures().join("generic/single-firing.json")).unwrap();
    let (status, body) = post(&s, "/alerts/webhook/", raw).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["incident_ids"][0].as_i64().unwrap();
    assert_eq!(body["run_ids"], json!([format!("run-{id}-Created")]));
    assert_eq!(body["changes"][0]["kind"], "created");
}
