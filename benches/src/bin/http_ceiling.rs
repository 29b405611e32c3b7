//! The HTTP ceiling of issue 8's load harness: what a server on tocsin's HTTP stack (tokio's
//! multi-threaded runtime with its default threads, hyper through axum, serde_json) takes when it
//! stores nothing. It answers `POST /alerts/webhook/alertmanager/` as `tocsin serve` does on the
//! wire: it decodes the Alertmanager v4 body into typed alerts (labels and annotations as maps,
//! unknown status refused) and answers 200 with a JSON outcome per alert; no database, no queue,
//! no pipeline, and none of tocsin's middleware (trace ids, the API key check, the panic guard),
//! so it is an upper bound. `benches/load/run.sh` drives it in every load workload with the same
//! wrk script and load as tocsin and Alertmanager: tocsin's rate over the ceiling's is the share
//! its storage leaves, and the ceiling over Alertmanager's is the most any storage design could
//! reach on that machine (see `docs/performance.md`).
//!
//! ```text
//! http_ceiling --bind 127.0.0.1:PORT
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

/// `tocsin serve`'s allocator, so that the two differ only in what tocsin does with an alert.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The fields of an Alertmanager v4 webhook that tocsin's driver reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: Status,
    labels: BTreeMap<String, String>,
    // Decoded as tocsin decodes them, though nothing here reads them.
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
    #[allow(dead_code)]
    starts_at: String,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Status {
    Firing,
    Resolved,
}

#[derive(Serialize)]
struct Outcome<'a> {
    fingerprint: &'a str,
    name: &'a str,
    status: Status,
    outcome: &'static str,
}

async fn receive(body: Bytes) -> Response {
    let hook: Webhook = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            let body = serde_json::json!({"error": "invalid_payload", "message": e.to_string()});
            return (StatusCode::BAD_REQUEST, body.to_string()).into_response();
        }
    };
    if hook.version != "4" {
        return (StatusCode::BAD_REQUEST, "version").into_response();
    }
    let mut out = Vec::with_capacity(hook.alerts.len());
    for a in &hook.alerts {
        out.push(Outcome {
            fingerprint: a.fingerprint.as_deref().unwrap_or(""),
            name: a.labels.get("alertname").map_or("", String::as_str),
            status: a.status,
            outcome: "created",
        });
    }
    let json = serde_json::to_vec(&serde_json::json!({"status": "ok", "alerts": out})).unwrap();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

fn main() {
    let mut bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--bind" => {
                bind = args
                    .next()
                    .expect("--bind HOST:PORT")
                    .parse()
                    .expect("HOST:PORT")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    // The same runtime as `tocsin serve`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new()
            .route("/alerts/webhook/alertmanager/", post(receive))
            .route("/healthz", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}
