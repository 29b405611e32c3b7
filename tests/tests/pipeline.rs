//! From webhook to notification: the real router, the real engine and workers, a real HTTP
//! server on loopback standing in for Slack.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tocsin_core::engine::Engine;
use tocsin_core::plugin::Plugins;
use tocsin_core::store::{self, testing};
use tocsin_core::{Config, Tocsin};
use tower::ServiceExt;

const FIRING: &str =
    include_str!("../../drivers/ingest/fixtures/alertmanager/firing-two-alerts.json");
const RESOLVED: &str = include_str!("../../drivers/ingest/fixtures/alertmanager/resolved.json");

/// A stand-in for Slack's incoming webhook: records every body it receives.
async fn slack_sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/services/T000/B000/XXX",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                g.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/services/T000/B000/XXX"), got)
}

async fn post(app: &axum::Router, body: &str) -> (StatusCode, Value) {
    let req = Request::post("/alerts/webhook/alertmanager/")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn wait_for(got: &Arc<Mutex<Vec<Value>>>, n: usize, label: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label}: {} of {n} notifications arrived",
            got.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn webhook_to_slack_with_no_storms_and_a_resolution() {
    for db in testing::all().await {
        let (url, got) = slack_sink().await;
        // Checks are skipped to keep the test fast; the run records them as skipped.
        let config = Config {
            checkers_skip_all: true,
            ..Config::default()
        };
        let tocsin = Tocsin::new(db.store.clone(), Plugins::from_inventory(), config);
        tocsin
            .store()
            .write(move |c| {
                store::insert_channel(c, "ops-slack", "slack", &json!({"webhook_url": url}), "ops")
            })
            .await
            .unwrap();
        let engine = Engine::new(tocsin.clone()).with_poll_interval(Duration::from_millis(50));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let workers = engine.spawn_workers(2, rx);
        let state = tocsin_http::AppState::new(tocsin.clone())
            .with_extension(engine.clone())
            .with_extension(tocsin_ingest::pipeline::hook_factory(tocsin.clone(), None));
        let app = tocsin_http::router(state);

        let (status, body) = post(&app, FIRING).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {body}", db.label);
        assert_eq!(
            body["run_ids"].as_array().unwrap().len(),
            2,
            "{}: one run per new incident: {body}",
            db.label
        );
        wait_for(&got, 2, db.label).await;
        let texts: Vec<String> = got.lock().unwrap().iter().map(|m| m.to_string()).collect();
        assert!(texts.iter().all(|t| t.contains("HighMemory")), "{texts:?}");
        assert!(
            texts.iter().any(|t| t.contains("web-1")) && texts.iter().any(|t| t.contains("web-2")),
            "{texts:?}"
        );

        // The same alerts again: nothing changed, so no run and no message.
        let (_, body) = post(&app, FIRING).await;
        assert_eq!(body["run_ids"], json!([]), "{}: {body}", db.label);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            got.lock().unwrap().len(),
            2,
            "{}: a re-sent unchanged alert notified",
            db.label
        );

        // web-1 resolves: its incident's run sends the resolution.
        let (_, body) = post(&app, RESOLVED).await;
        assert_eq!(
            body["run_ids"].as_array().unwrap().len(),
            1,
            "{}: {body}",
            db.label
        );
        wait_for(&got, 3, db.label).await;
        let last = got.lock().unwrap()[2].to_string().to_lowercase();
        assert!(
            last.contains("resolved") && last.contains("web-1"),
            "{}: {last}",
            db.label
        );

        // The sink has the message; the run records its completion right after.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let runs = loop {
            let runs = db
                .store
                .run(|c| store::list_pipeline_runs(c, &Default::default()))
                .await
                .unwrap();
            if runs.iter().all(|r| r.completed_at.is_some())
                || tokio::time::Instant::now() > deadline
            {
                break runs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(runs.len(), 3);
        assert!(
            runs.iter()
                .all(|r| r.status == tocsin_core::domain::PipelineStatus::Notified),
            "{runs:?}"
        );
        // The skip control is recorded on the node, with its reason.
        let pk = runs[0].id;
        let execs = db
            .store
            .run(move |c| store::list_stage_executions(c, pk))
            .await
            .unwrap();
        let context = execs.iter().find(|e| e.node_id == "context").unwrap();
        assert_eq!(
            context.status,
            tocsin_core::domain::StageStatus::Skipped,
            "{}",
            db.label
        );
        assert!(
            context
                .skip_reason
                .as_deref()
                .unwrap_or("")
                .contains("CHECKERS_SKIP_ALL"),
            "{context:?}"
        );
        let ingest = execs.iter().find(|e| e.node_id == "ingest").unwrap();
        assert_eq!(ingest.status, tocsin_core::domain::StageStatus::Succeeded);
        // Run in the claim's transaction and recorded in one statement, finished: its output
        // names the run's incident, and the input is the state the run started with.
        assert_eq!(ingest.attempt, 1);
        assert!(
            ingest.started_at.is_some() && ingest.completed_at.is_some(),
            "{ingest:?}"
        );
        assert!(ingest.duration_ms.is_some(), "{ingest:?}");
        assert_eq!(
            ingest.output_snapshot["incident_id"].as_i64(),
            runs[0].incident_id,
            "{}: {ingest:?}",
            db.label
        );
        assert_eq!(
            ingest.input_snapshot["incident_id"].as_i64(),
            runs[0].incident_id,
            "{}: {ingest:?}",
            db.label
        );
        assert!(ingest.error_message.is_none() && ingest.skip_reason.is_none());
        // The run got past it: its last stage is the notify node's.
        assert_eq!(runs[0].current_stage.as_deref(), Some("notify"), "{runs:?}");
        tx.send(true).unwrap();
        for w in workers {
            w.await.unwrap();
        }
    }
}

/// A webhook whose definition is `ingest` alone: the runs end in the webhook's own transaction,
/// so the answer finds them over, each with its one recorded node.
#[tokio::test]
async fn an_ingest_only_definition_s_runs_are_over_when_the_webhook_is_answered() {
    for db in testing::all().await {
        let tocsin = Tocsin::new(
            db.store.clone(),
            Plugins::from_inventory(),
            Config::default(),
        );
        tocsin
            .store()
            .write(|c| {
                let doc = json!({"version": "1", "nodes": [{"id": "ingest", "type": "ingest"}]});
                store::upsert_definition(c, "ingest-only", "", &doc, &[])
            })
            .await
            .unwrap();
        let engine = Engine::new(tocsin.clone()).with_poll_interval(Duration::from_secs(3600));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let workers = engine.spawn_workers(1, rx);
        let state = tocsin_http::AppState::new(tocsin.clone())
            .with_extension(engine.clone())
            .with_extension(tocsin_ingest::pipeline::starting_hook_factory(
                engine.clone(),
                Some("ingest-only".to_owned()),
            ));
        let app = tocsin_http::router(state);

        let (status, body) = post(&app, FIRING).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {body}", db.label);
        let ids: Vec<String> = body["run_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 2, "{}: {body}", db.label);
        for id in ids {
            let (run, execs) = db
                .store
                .run(move |c| {
                    let run = store::get_pipeline_run(c, &id)?;
                    let execs = store::list_stage_executions(c, run.id)?;
                    Ok((run, execs))
                })
                .await
                .unwrap();
            assert_eq!(run.status.as_str(), "ingested", "{}", db.label);
            assert!(run.completed_at.is_some(), "{}: {run:?}", db.label);
            assert_eq!(run.current_stage.as_deref(), Some("ingest"), "{}", db.label);
            assert_eq!(run.lease_owner, None, "{}", db.label);
            assert_eq!(run.definition_name.as_deref(), Some("ingest-only"));
            assert_eq!(execs.len(), 1, "{}: {execs:?}", db.label);
            assert_eq!(execs[0].node_id, "ingest", "{}", db.label);
            assert_eq!(execs[0].status.as_str(), "succeeded", "{}", db.label);
            assert_eq!(
                execs[0].output_snapshot["incident_id"],
                json!(run.incident_id),
                "{}",
                db.label
            );
        }
        tx.send(true).unwrap();
        for w in workers {
            w.await.unwrap();
        }
    }
}
