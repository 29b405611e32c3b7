//! Pipeline benchmarks: webhook-to-notification latency at a local HTTP sink, and runs per second
//! through the durable queue with 1 and 4 workers, on SQLite (and PostgreSQL when
//! `TOCSIN_TEST_POSTGRES_URL` is set).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tocsin_core::engine::{self, Engine, Submit};
use tocsin_core::plugin::Plugins;
use tocsin_core::store::{self, testing};
use tocsin_core::{Config, Tocsin};
use tokio::sync::{Mutex, mpsc};
use tower::ServiceExt;

use tocsin_checkers as _;
use tocsin_notify as _;
use tocsin_providers as _;

const FIRING: &str =
    include_str!("../../drivers/ingest/fixtures/alertmanager/firing-two-alerts.json");

/// A local HTTP sink that signals every body it receives (a channel, not a `Notify`: two
/// notifications that arrive before anyone waits must count twice).
async fn sink() -> (String, Arc<Mutex<mpsc::UnboundedReceiver<()>>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let got = Arc::new(Mutex::new(rx));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

/// Each iteration posts a webhook whose alerts are new (so every post changes an incident) and
/// waits until the sink received the notification of its first incident.
fn latency(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    label: &str,
    db: &testing::TestDb,
    definition: Option<&str>,
) {
    let (app, got, _workers) = rt.block_on(async {
        let (url, got) = sink().await;
        let config = Config { checkers_skip_all: true, ..Config::default() };
        let t = Tocsin::new(db.store.clone(), Plugins::from_inventory(), config);
        let fast = json!({"version": "1", "nodes": [
            {"id": "ingest", "type": "ingest", "next": "notify"},
            {"id": "notify", "type": "notify", "config": {"driver": "webhook", "config": {"url": url}}}]});
        let full = json!({"version": "1", "nodes": [
            {"id": "ingest", "type": "ingest", "next": "context"},
            {"id": "context", "type": "context", "next": "intelligence"},
            {"id": "intelligence", "type": "intelligence", "next": "notify"},
            {"id": "notify", "type": "notify", "config": {"driver": "webhook", "config": {"url": url}}}]});
        db.store
            .write(move |c| {
                store::upsert_definition(c, "ingest-notify", "", &fast, &[])?;
                store::upsert_definition(c, "default-webhook", "", &full, &[]).map(|_| ())
            })
            .await
            .unwrap();
        let engine = Engine::new(t.clone()).with_poll_interval(Duration::from_millis(200));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let workers = engine.spawn_workers(2, rx);
        let state = tocsin_http::AppState::new(t.clone())
            .with_extension(engine.clone())
            .with_extension(tocsin_ingest::pipeline::hook_factory(t, definition.map(str::to_owned)));
        (tocsin_http::router(state), got, (tx, workers))
    });
    c.bench_function(
        &format!(
            "pipeline/webhook_to_sink/{}/{label}",
            definition.unwrap_or("default")
        ),
        |b| {
            b.to_async(rt).iter(|| {
                // Unique across calls: alerts already stored would be unchanged re-sends (no run).
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                let body = FIRING
                    .replace("5b0d3b9f2c1a7e4d", &format!("a{n}"))
                    .replace("8c21e4f0a9b3d612", &format!("b{n}"))
                    .replace("web-1:9100", &format!("web-1-{n}:9100"))
                    .replace("web-2:9100", &format!("web-2-{n}:9100"));
                let app = app.clone();
                let got = got.clone();
                async move {
                    let req = Request::post("/alerts/webhook/alertmanager/")
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap();
                    let res = app.oneshot(req).await.unwrap();
                    assert_eq!(res.status(), 202);
                    // Two incidents, two notifications.
                    let mut rx = got.lock().await;
                    for _ in 0..2 {
                        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
                        assert!(matches!(got, Ok(Some(()))), "no notification within 30 s");
                    }
                }
            })
        },
    );
}

/// Runs per second: queue `n` one-node runs, time until the workers drained them.
fn throughput(c: &mut Criterion, rt: &tokio::runtime::Runtime, label: &str, db: &testing::TestDb) {
    let t = Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    );
    let def = json!({"version": "1", "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"n": "payload.n"}}}]});
    rt.block_on(
        db.store
            .write(move |c| store::upsert_definition(c, "tiny", "", &def, &[]).map(|_| ())),
    )
    .unwrap();
    let mut g = c.benchmark_group(format!("pipeline/runs/{label}"));
    g.sample_size(10);
    for workers in [1u32, 4] {
        g.bench_function(format!("{workers}_workers_200_runs"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t2 = t.clone();
                    total += rt.block_on(async move {
                        let t3 = t2.clone();
                        t2.store()
                            .write(move |c| {
                                for n in 0..200 {
                                    let s = Submit {
                                        definition: Some("tiny".into()),
                                        payload: json!({"n": n}),
                                        source: "bench".into(),
                                        ..Submit::default()
                                    };
                                    engine::enqueue_in(c, &t3, &s)?;
                                }
                                Ok(())
                            })
                            .await
                            .unwrap();
                        let engine =
                            Engine::new(t2.clone()).with_poll_interval(Duration::from_millis(5));
                        let start = Instant::now();
                        let (tx, rx) = tokio::sync::watch::channel(false);
                        let hs = engine.spawn_workers(workers, rx);
                        loop {
                            let (depth, _) = t2.store().run(engine::queue::depth).await.unwrap();
                            if depth == 0 {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        let took = start.elapsed();
                        tx.send(true).unwrap();
                        for h in hs {
                            h.await.unwrap();
                        }
                        took
                    });
                }
                total
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut dbs = vec![rt.block_on(testing::sqlite())];
    dbs.extend(rt.block_on(testing::postgres()));
    for db in &dbs {
        latency(c, &rt, db.label, db, Some("ingest-notify"));
        latency(c, &rt, db.label, db, Some("default-webhook"));
        throughput(c, &rt, db.label, db);
    }
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(pipeline);
