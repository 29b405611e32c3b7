//! Pipelines across processes: `tocsin worker` processes sharing one queue, a worker killed
//! mid-run, and the `run-pipeline` / `definitions` / `monitor-pipeline` commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tocsin_core::domain::{PipelineStatus, StageStatus};
use tocsin_core::engine::{self, Submit};
use tocsin_core::plugin::Plugins;
use tocsin_core::store::{self, testing};
use tocsin_core::{Config, Tocsin};

// Linked so validation in this test process knows the node types.
use tocsin_checkers as _;
use tocsin_ingest as _;
use tocsin_notify as _;
use tocsin_providers as _;

fn tocsin_cmd(db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    c.env("TOCSIN_DATABASE_URL", db_url)
        .env_remove("TOCSIN_API_KEYS")
        .env_remove("TOCSIN_BROKER_URL")
        .env("CHECKERS_SKIP_ALL", "1")
        .env("RUST_LOG", "warn");
    c
}

fn worker(db_url: &str, lease_margin: u64) -> Child {
    tocsin_cmd(db_url)
        .args([
            "worker",
            "--concurrency",
            "1",
            "--lease-margin",
            &lease_margin.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tocsin(db: &testing::TestDb) -> Tocsin {
    Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_run_a_thousand_queued_runs_exactly_once_on_postgres() {
    let Some(db) = testing::postgres().await else {
        return;
    };
    let t = tocsin(&db);
    let def = json!({"version": "1", "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"n": "payload.n"}}}]});
    db.store
        .write(move |c| store::upsert_definition(c, "tiny", "", &def, &[]).map(|_| ()))
        .await
        .unwrap();
    let t2 = t.clone();
    db.store
        .write(move |c| {
            for n in 0..1000 {
                let s = Submit {
                    definition: Some("tiny".into()),
                    payload: json!({"n": n}),
                    source: "test".into(),
                    ..Submit::default()
                };
                engine::enqueue_in(c, &t2, &s)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let workers: Vec<Child> = (0..4).map(|_| worker(&db.url, 30)).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (depth, _) = db.store.run(engine::queue::depth).await.unwrap();
        let processing = db
            .store
            .run(|c| {
                store::list_pipeline_runs(
                    c,
                    &store::RunFilter {
                        status: Some(PipelineStatus::Processing),
                        limit: 10,
                        ..Default::default()
                    },
                )
            })
            .await
            .unwrap()
            .len();
        if depth == 0 && processing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{depth} runs still queued");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for w in workers {
        stop(w);
    }
    let runs = db
        .store
        .run(|c| {
            store::list_pipeline_runs(
                c,
                &store::RunFilter {
                    limit: 1000,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1000);
    for r in &runs {
        assert_eq!(r.status, PipelineStatus::Notified, "{r:?}");
        assert_eq!(
            r.attempts, 1,
            "run {} was claimed {} times",
            r.run_id, r.attempts
        );
    }
    let execs: i64 = db
        .store
        .run(|c| {
            use diesel::prelude::*;
            Ok(tocsin_core::store::schema::stage_executions::table
                .count()
                .get_result(c)?)
        })
        .await
        .unwrap();
    assert_eq!(execs, 1000, "exactly one node execution per run");
}

/// A sink that hangs on its first request (the worker is killed while waiting) and answers the
/// others.
async fn hanging_sink() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_is_replaced_and_finished_nodes_do_not_run_again() {
    for db in testing::all().await {
        let (url, hits) = hanging_sink().await;
        let t = tocsin(&db);
        let def = json!({"version": "1", "defaults": {"timeout_seconds": 3, "max_retries": 3}, "nodes": [
            {"id": "first", "type": "transform", "config": {"mapping": {"x": "payload.x"}}, "next": "send"},
            {"id": "send", "type": "notify", "config": {"driver": "webhook", "config": {"url": url}}}]});
        db.store
            .write(move |c| store::upsert_definition(c, "durable", "", &def, &[]).map(|_| ()))
            .await
            .unwrap();
        let engine = engine::Engine::new(t.clone());
        let run = engine
            .submit(Submit {
                definition: Some("durable".into()),
                payload: json!({"x": 1}),
                source: "test".into(),
                ..Submit::default()
            })
            .await
            .unwrap();

        let mut first = worker(&db.url, 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        while hits.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "{}: the first worker never reached the sink",
                db.label
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        first.kill().unwrap(); // SIGKILL, mid-request
        first.wait().unwrap();

        let second = worker(&db.url, 1);
        let id = run.run_id.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            let id = id.clone();
            let r = db
                .store
                .run(move |c| store::get_pipeline_run(c, &id))
                .await
                .unwrap();
            if r.completed_at.is_some() {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the run was not taken over: {r:?}",
                db.label
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        stop(second);
        assert_eq!(
            done.status,
            PipelineStatus::Notified,
            "{}: {done:?}",
            db.label
        );
        assert_eq!(
            done.attempts, 2,
            "{}: claimed by the killed worker, then by its replacement",
            db.label
        );
        let pk = done.id;
        let execs = db
            .store
            .run(move |c| store::list_stage_executions(c, pk))
            .await
            .unwrap();
        let first_node: Vec<_> = execs.iter().filter(|e| e.node_id == "first").collect();
        assert_eq!(
            first_node.len(),
            1,
            "{}: a succeeded node ran again",
            db.label
        );
        assert_eq!(first_node[0].status, StageStatus::Succeeded);
        let send: Vec<_> = execs
            .iter()
            .filter(|e| e.node_id == "send")
            .map(|e| (e.attempt, e.status, e.error_type.clone()))
            .collect();
        assert_eq!(
            send,
            [
                (1, StageStatus::Failed, Some("abandoned".to_owned())),
                (2, StageStatus::Succeeded, None)
            ],
            "{}",
            db.label
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}

fn run_json(cmd: &mut Command) -> (bool, Value, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.success(), v, format!("{stdout}\n{stderr}"))
}

#[test]
fn run_pipeline_sample_goes_end_to_end_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    // The real checks run here (no skip control): every stage does its work.
    let (ok, v, out) = run_json(tocsin_cmd(&url).env_remove("CHECKERS_SKIP_ALL").args([
        "run-pipeline",
        "--sample",
        "--json",
    ]));
    assert!(ok, "{out}");
    assert_eq!(v["run"]["status"], "notified", "{out}");
    let nodes: Vec<_> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["node_id"].clone(), s["status"].clone()))
        .collect();
    assert_eq!(
        nodes,
        [
            (json!("ingest"), json!("succeeded")),
            (json!("context"), json!("succeeded")),
            (json!("intelligence"), json!("succeeded")),
            (json!("notify"), json!("succeeded"))
        ],
        "{out}"
    );
    // Submitted with no incident: the run is linked to the one its `ingest` node opened.
    let opened = v["stages"][0]["output_snapshot"]["incident_id"].as_i64();
    assert!(opened.is_some(), "{out}");
    assert_eq!(v["run"]["incident_id"].as_i64(), opened, "{out}");
    // The console driver printed the notification (the first run shows what would be sent).
    let (ok, v, out) = run_json(tocsin_cmd(&url).args(["monitor-pipeline", "--json"]));
    assert!(ok, "{out}");
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("never.db");
    let url = format!("sqlite://{}", db_path.display());
    let (ok, v, out) = run_json(tocsin_cmd(&url).args([
        "run-pipeline",
        "--sample",
        "grafana",
        "--dry-run",
        "--json",
    ]));
    assert!(ok, "{out}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["driver"], "grafana");
    let ids: Vec<_> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [
            json!("ingest"),
            json!("context"),
            json!("intelligence"),
            json!("notify")
        ]
    );
    assert!(!db_path.exists(), "--dry-run created the database");
}

#[test]
fn a_failing_run_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let (ok, _, out) = run_json(tocsin_cmd(&url).args([
        "run-pipeline",
        "--payload",
        "{\"nothing\": true}",
        "--json",
    ]));
    assert!(!ok, "an unrecognised payload must fail the run: {out}");
}

#[test]
fn definitions_are_validated_stored_listed_and_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version": "1", "nodes": [{"id": "a", "type": "nope", "next": "ghost"}]}"#,
    )
    .unwrap();
    let out = tocsin_cmd(&url)
        .args(["definitions", "add"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown type \"nope\"") && err.contains("unknown node \"ghost\""),
        "{err}"
    );

    let good = dir.path().join("health.json");
    std::fs::write(&good, r#"{"version": "1", "nodes": [{"id": "metrics", "type": "context", "config": {"include": ["memory"]}}]}"#).unwrap();
    assert!(
        tocsin_cmd(&url)
            .args(["definitions", "add"])
            .arg(&good)
            .status()
            .unwrap()
            .success()
    );
    let (ok, v, out) = run_json(tocsin_cmd(&url).args(["definitions", "list", "--json"]));
    assert!(ok, "{out}");
    assert_eq!(v[0]["name"], "health");
    assert!(
        tocsin_cmd(&url)
            .args(["definitions", "validate", "health"])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        tocsin_cmd(&url)
            .args(["definitions", "disable", "health"])
            .status()
            .unwrap()
            .success()
    );
    let (ok, _, out) =
        run_json(tocsin_cmd(&url).args(["run-pipeline", "--definition", "health", "--json"]));
    assert!(!ok && out.contains("disabled"), "{out}");
}
