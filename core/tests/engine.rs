//! The pipeline engine on both backends: definitions, retries, skips, resume, the queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tocsin_core::domain::{PipelineStatus, StageStatus};
use tocsin_core::engine::{Definition, Engine, Submit};
use tocsin_core::plugin::{Plugins, Stage, StageContext, StageDescriptor};
use tocsin_core::store::{self, testing};
use tocsin_core::{Config, Error, ErrorKind, Retry, Tocsin};

/// Calls per (run, node): lets a stage fail a given number of times and lets tests count runs.
fn calls() -> &'static Mutex<HashMap<String, u32>> {
    static CALLS: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    CALLS.get_or_init(Default::default)
}

fn bump(ctx: &StageContext) -> u32 {
    let mut m = calls().lock().unwrap();
    let n = m
        .entry(format!("{}:{}", ctx.run_id, ctx.node_id))
        .or_default();
    *n += 1;
    *n
}

fn count(run_id: &str, node: &str) -> u32 {
    calls()
        .lock()
        .unwrap()
        .get(&format!("{run_id}:{node}"))
        .copied()
        .unwrap_or(0)
}

/// Outputs `{"seen": <node ids in state.nodes>, "echo": config}`; fails as configured:
/// `{"fail_times": n}` temporary failures first, `{"fail": "permanent"}` until the run's
/// `payload.fixed` is true.
struct TestStage;

#[async_trait]
impl Stage for TestStage {
    async fn execute(&self, ctx: &StageContext) -> tocsin_core::Result<Value> {
        let n = bump(ctx);
        let fail_times = ctx
            .config
            .get("fail_times")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        if n <= fail_times {
            return Err(
                Error::new(ErrorKind::Upstream, format!("flaky failure {n}"))
                    .with_retry(Retry::Temporary),
            );
        }
        if ctx.config.get("fail") == Some(&json!("permanent")) && !fixed(&ctx.run_id) {
            return Err(Error::invalid_input("permanent failure"));
        }
        let seen: Vec<String> = ctx.state["nodes"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        Ok(
            json!({"seen": seen, "echo": ctx.config, "recommendations": ctx.config.get("recs").cloned().unwrap_or(json!([])), "prefetched": ctx.prefetched::<String>()}),
        )
    }

    /// The run's status as the claim's transaction sees it.
    fn read_ahead(&self, ctx: &StageContext) -> Option<tocsin_core::plugin::ReadAhead> {
        let (run_id, node_id) = (ctx.run_id.clone(), ctx.node_id.clone());
        Some(Box::new(move |c| {
            let run = store::get_pipeline_run(c, &run_id)?;
            Ok(Arc::new(format!("{node_id}:{}", run.status.as_str()))
                as tocsin_core::plugin::Prefetched)
        }))
    }
}

/// Tells its output without I/O (`{"inline": <state.payload.value>}`), like the webhook's
/// `ingest` node; `execute` (never expected) counts its calls.
struct InlineStage;

#[async_trait]
impl Stage for InlineStage {
    async fn execute(&self, ctx: &StageContext) -> tocsin_core::Result<Value> {
        bump(ctx);
        Ok(json!({"inline": false}))
    }

    fn execute_inline(&self, ctx: &StageContext) -> Option<Value> {
        Some(json!({"inline": ctx.state["payload"]["value"].clone()}))
    }
}

tocsin_core::register_stage!(StageDescriptor {
    name: "inline",
    description: "A test stage that runs inline.",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(InlineStage)),
});

fn fixed_runs() -> &'static Mutex<Vec<String>> {
    static F: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    F.get_or_init(Default::default)
}

fn fixed(run_id: &str) -> bool {
    fixed_runs().lock().unwrap().iter().any(|r| r == run_id)
}

fn build_test_stage(
    config: &Value,
    _: &tocsin_core::plugin::BuildContext,
) -> tocsin_core::Result<Arc<dyn Stage>> {
    if config.get("invalid").is_some() {
        return Err(Error::invalid_config("`invalid` is not a valid option"));
    }
    Ok(Arc::new(TestStage))
}

tocsin_core::register_stage!(StageDescriptor {
    name: "test",
    description: "A test stage.",
    config_example: "{}",
    build: build_test_stage,
});

fn engine(db: &testing::TestDb) -> Engine {
    let tocsin = Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    );
    Engine::new(tocsin)
        .with_backoff_base(Duration::from_millis(10))
        .with_poll_interval(Duration::from_millis(20))
}

fn def(doc: Value) -> Definition {
    Definition::parse(&doc).unwrap()
}

fn submit(d: Definition) -> Submit {
    Submit {
        inline_definition: Some(d),
        payload: json!({}),
        source: "test".into(),
        ..Submit::default()
    }
}

/// The run once it completed; fails the test if it does not within 20 s.
async fn finished(db: &testing::TestDb, run_id: &str) -> tocsin_core::domain::PipelineRun {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let i = run_id.to_owned();
        let run = db
            .store
            .run(move |c| store::get_pipeline_run(c, &i))
            .await
            .unwrap();
        if run.completed_at.is_some() {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: the committed run never ran ({:?})",
            db.label,
            run.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A run whose write rolled back: never executed, and not stored.
async fn assert_never_ran(db: &testing::TestDb, run_id: &str) {
    assert_eq!(count(run_id, "only"), 0, "{}", db.label);
    let rb = run_id.to_owned();
    let gone = db
        .store
        .run(move |c| store::get_pipeline_run(c, &rb))
        .await
        .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{}", db.label);
}

/// Queues and starts a run of `s` in a write that then fails; returns the run's id.
async fn started_and_rolled_back(db: &testing::TestDb, e: Engine, s: Submit) -> String {
    db.store
        .write(move |c| {
            let run = e.enqueue_and_start(c, &s)?;
            Err::<(), _>(Error::invalid_input(run.run_id))
        })
        .await
        .unwrap_err()
        .message()
        .to_owned()
}

async fn executions(
    db: &testing::TestDb,
    run_id: &str,
) -> Vec<tocsin_core::domain::StageExecution> {
    let id = run_id.to_owned();
    db.store
        .run(move |c| {
            let run = store::get_pipeline_run(c, &id)?;
            store::list_stage_executions(c, run.id)
        })
        .await
        .unwrap()
}

#[test]
fn validation_reports_every_problem_at_once_naming_the_node() {
    let plugins = Plugins::from_inventory();
    let problems = Definition::parse(&json!({"nodes": []})).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    let d = def(json!({"version": "1", "nodes": [
        {"id": "a", "type": "test", "next": "b"},
        {"id": "b", "type": "test", "next": "a"},
        {"id": "b", "type": "nope"},
        {"id": "c", "type": "test", "next": "ghost"},
        {"id": "d", "type": "test", "config": {"invalid": 1}},
        {"id": "t", "type": "transform", "config": {"filter_priority": "urgent"}}
    ]}));
    let problems = d.validate(&plugins);
    let text = tocsin_core::engine::definition::describe(&problems);
    for needle in [
        "node \"b\": duplicate node id",
        "node \"b\": unknown type \"nope\"",
        "node \"c\": \"next\" names unknown node \"ghost\"",
        "cycle: a -> b -> a",
        "node \"c\": unreachable",
        "node \"d\": invalid config",
        "node \"t\":",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
    assert!(
        Definition::default_pipeline()
            .validate(&Plugins::empty())
            .iter()
            .all(|p| p.message.contains("unknown type"))
    );
}

#[test]
fn execution_follows_next_not_list_order_and_joins_after_all_predecessors() {
    let d = def(json!({"version": "1", "nodes": [
        {"id": "start", "type": "test", "next": ["left", "right"]},
        {"id": "join", "type": "test"},
        {"id": "right", "type": "test", "next": "join"},
        {"id": "left", "type": "test", "next": "join"}
    ]}));
    assert!(d.validate(&Plugins::from_inventory()).is_empty());
    let order: Vec<_> = d.execution_order().iter().map(|n| n.id.as_str()).collect();
    assert_eq!(order, ["start", "right", "left", "join"]);
}

#[tokio::test]
async fn a_node_that_fails_twice_then_succeeds_is_retried_through_the_queue() {
    for db in testing::all().await {
        let e = engine(&db);
        let d = def(
            json!({"version": "1", "defaults": {"max_retries": 3}, "nodes": [
            {"id": "a", "type": "test", "next": "b"},
            {"id": "b", "type": "test", "config": {"fail_times": 2}}]}),
        );
        let run = e.run_sync(submit(d)).await.unwrap();
        assert_eq!(
            run.status,
            PipelineStatus::Notified,
            "{}: {run:?}",
            db.label
        );
        assert!(run.completed_at.is_some());
        let ex = executions(&db, &run.run_id).await;
        let b: Vec<_> = ex
            .iter()
            .filter(|x| x.node_id == "b")
            .map(|x| (x.attempt, x.status))
            .collect();
        assert_eq!(
            b,
            [
                (1, StageStatus::Failed),
                (2, StageStatus::Failed),
                (3, StageStatus::Succeeded)
            ],
            "{}",
            db.label
        );
        assert!(
            ex.iter()
                .filter(|x| x.status == StageStatus::Failed)
                .all(|x| x.error_retryable)
        );
        assert_eq!(
            count(&run.run_id, "a"),
            1,
            "a succeeded node never runs again"
        );
        assert_eq!(ex[0].idempotency_key, format!("{}:a", run.run_id));
    }
}

#[tokio::test]
async fn retries_stop_at_max_retries() {
    for db in testing::all().await {
        let e = engine(&db);
        let d = def(
            json!({"version": "1", "defaults": {"max_retries": 1}, "nodes": [
            {"id": "a", "type": "test", "config": {"fail_times": 5}}]}),
        );
        let run = e.run_sync(submit(d)).await.unwrap();
        assert_eq!(run.status, PipelineStatus::Failed, "{}", db.label);
        assert_eq!(run.last_error_type.as_deref(), Some("upstream"));
        assert_eq!(
            count(&run.run_id, "a"),
            2,
            "{}: first attempt plus one retry",
            db.label
        );
    }
}

#[tokio::test]
async fn a_permanent_failure_fails_the_run_and_resume_continues_from_the_failed_node() {
    for db in testing::all().await {
        let e = engine(&db);
        let d = def(json!({"version": "1", "nodes": [
            {"id": "a", "type": "test", "next": "b"},
            {"id": "b", "type": "test", "config": {"fail": "permanent"}, "next": "c"},
            {"id": "c", "type": "test"}]}));
        let run = e.run_sync(submit(d)).await.unwrap();
        assert_eq!(run.status, PipelineStatus::Failed, "{}", db.label);
        assert_eq!(
            count(&run.run_id, "b"),
            1,
            "permanent errors are not retried"
        );
        assert_eq!(run.last_error_message.as_deref(), Some("permanent failure"));

        // Resuming twice at once: exactly one wins.
        fixed_runs().lock().unwrap().push(run.run_id.clone());
        let (r1, r2) = tokio::join!(e.resume(&run.run_id), e.resume(&run.run_id));
        assert_eq!(
            r1.is_ok() as u8 + r2.is_ok() as u8,
            1,
            "{}: {r1:?} {r2:?}",
            db.label
        );
        let loser = r1.err().or(r2.err()).unwrap();
        assert_eq!(loser.kind(), ErrorKind::InvalidInput);

        let done = e.drive(&run.run_id).await.unwrap();
        assert_eq!(done.status, PipelineStatus::Notified, "{}", db.label);
        assert_eq!(
            count(&run.run_id, "a"),
            1,
            "{}: the succeeded node did not run again",
            db.label
        );
        let ex = executions(&db, &run.run_id).await;
        let b: Vec<_> = ex
            .iter()
            .filter(|x| x.node_id == "b")
            .map(|x| (x.attempt, x.status))
            .collect();
        assert_eq!(
            b,
            [(1, StageStatus::Failed), (2, StageStatus::Succeeded)],
            "{}: attempts continue",
            db.label
        );
        assert_eq!(
            e.resume(&run.run_id).await.unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "a finished run is not resumable"
        );
    }
}

#[tokio::test]
async fn optional_failures_and_skip_if_errors_are_recorded_as_skipped_with_the_reason() {
    for db in testing::all().await {
        let e = engine(&db);
        let d = def(json!({"version": "1", "nodes": [
            {"id": "a", "type": "test", "config": {"fail": "permanent"}, "required": false, "next": "b"},
            {"id": "b", "type": "test", "skip_if_errors": true, "next": "c"},
            {"id": "c", "type": "test"}]}));
        let run = e.run_sync(submit(d)).await.unwrap();
        assert_eq!(run.status, PipelineStatus::Notified, "{}", db.label);
        let ex = executions(&db, &run.run_id).await;
        let by: HashMap<_, _> = ex.iter().map(|x| (x.node_id.as_str(), x)).collect();
        assert_eq!(by["a"].status, StageStatus::Skipped);
        assert!(
            by["a"]
                .skip_reason
                .as_deref()
                .unwrap()
                .contains("optional node failed: permanent failure")
        );
        assert_eq!(by["b"].status, StageStatus::Skipped);
        assert!(
            by["b"]
                .skip_reason
                .as_deref()
                .unwrap()
                .contains("skip_if_errors")
        );
        assert_eq!(by["c"].status, StageStatus::Succeeded);
        assert_eq!(count(&run.run_id, "b"), 0);
    }
}

#[tokio::test]
async fn transform_filters_what_later_nodes_see() {
    for db in testing::all().await {
        let e = engine(&db);
        let d = def(json!({"version": "1", "nodes": [
            {"id": "a", "type": "test", "config": {"recs": [{"priority": "low"}, {"priority": "critical"}]}, "next": "t"},
            {"id": "t", "type": "transform", "config": {"filter_priority": "high"}, "next": "b"},
            {"id": "b", "type": "test"}]}));
        let run = e.run_sync(submit(d)).await.unwrap();
        let ex = executions(&db, &run.run_id).await;
        let b = ex.iter().find(|x| x.node_id == "b").unwrap();
        assert_eq!(
            b.input_snapshot["recommendations"],
            json!([{"priority": "critical"}]),
            "{}",
            db.label
        );
        assert_eq!(b.output_snapshot["seen"], json!(["a", "t"]));
    }
}

#[tokio::test]
async fn many_workers_run_every_queued_run_exactly_once() {
    for db in testing::all().await {
        let base = engine(&db);
        let d = def(json!({"version": "1", "nodes": [{"id": "only", "type": "test"}]}));
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(base.submit(submit(d.clone())).await.unwrap().run_id);
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handles = base.spawn_workers(4, rx);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let pending = db
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
                .unwrap()
                .iter()
                .filter(|r| r.completed_at.is_none())
                .count();
            if pending == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: {pending} runs left",
                db.label
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tx.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
        for id in &ids {
            assert_eq!(
                count(id, "only"),
                1,
                "{}: run {id} executed {} times",
                db.label,
                count(id, "only")
            );
        }
    }
}

fn redis_url() -> Option<String> {
    match std::env::var("TOCSIN_TEST_REDIS_URL") {
        Ok(u) => Some(u),
        Err(_) if std::env::var("TOCSIN_TEST_REQUIRE_REDIS").is_ok_and(|v| v == "1") => {
            panic!("TOCSIN_TEST_REQUIRE_REDIS=1 but TOCSIN_TEST_REDIS_URL is not set")
        }
        Err(_) => None,
    }
}

#[tokio::test]
async fn redis_broker_delivers_runs_to_workers_and_reclaims_stale_entries() {
    use tocsin_core::engine::broker::Broker;
    let Some(url) = redis_url() else { return };
    let suffix = tocsin_core::domain::new_id();
    let (stream, group) = (format!("tocsin-test:{suffix}"), format!("g-{suffix}"));
    for db in testing::all().await {
        let broker = Broker::connect_to(&url, &stream, &group)
            .await
            .unwrap()
            .with_stale_after(Duration::from_millis(1000));
        // A long poll interval: runs must arrive through the stream, not the database poll.
        let e = engine(&db)
            .with_poll_interval(Duration::from_secs(30))
            .with_broker(broker.clone());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handles = e.spawn_workers(2, rx);
        let d = def(json!({"version": "1", "nodes": [{"id": "only", "type": "test"}]}));
        let mut ids = Vec::new();
        for _ in 0..6 {
            ids.push(e.submit(submit(d.clone())).await.unwrap().run_id);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while ids.iter().any(|id| count(id, "only") == 0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: runs did not arrive through the broker",
                db.label
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(ids.iter().all(|id| count(id, "only") == 1), "{}", db.label);
        assert_eq!(
            broker.pending().await.unwrap(),
            0,
            "{}: every delivery acknowledged",
            db.label
        );
        tx.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }

        // A consumer that read an entry and died: a live one takes it over once it is stale.
        // (A stream of its own: the stopped workers' last blocking reads may still be pending
        // on the server for a moment and would take the entry.)
        let broker = Broker::connect_to(&url, &format!("{stream}-stale-{}", db.label), &group)
            .await
            .unwrap()
            .with_stale_after(Duration::from_millis(1000));
        let entry = broker.publish("some-run").await.unwrap();
        let dead = broker
            .next("dead-consumer", Duration::from_millis(100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dead.entry_id, entry);
        assert!(
            broker
                .next("live-consumer", Duration::from_millis(10))
                .await
                .unwrap()
                .is_none()
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let taken = broker
            .next("live-consumer", Duration::from_millis(10))
            .await
            .unwrap();
        let taken =
            taken.unwrap_or_else(|| panic!("{}: the stale entry was not re-claimed", db.label));
        assert_eq!(
            (taken.entry_id.as_str(), taken.run_id.as_str()),
            (entry.as_str(), "some-run")
        );
        broker.ack(&taken).await.unwrap();
    }
}

#[tokio::test]
async fn workers_stop_when_their_shutdown_sender_is_dropped_instead_of_spinning() {
    let db = testing::sqlite().await;
    let e = engine(&db);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handles = e.spawn_workers(2, rx);
    drop(tx);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("a worker kept running after its shutdown sender was dropped")
            .unwrap();
    }
}

#[tokio::test]
async fn a_run_queued_in_a_write_starts_here_once_it_commits_and_never_if_it_rolls_back() {
    for db in testing::all().await {
        // Workers that would not look at the queue again within the test: only a start after
        // the commit can execute these runs.
        let e = engine(&db).with_poll_interval(Duration::from_secs(3600));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handles = e.spawn_workers(1, rx);
        // Let the workers' first look at the (empty) queue pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = def(json!({"version": "1", "nodes": [{"id": "only", "type": "test"}]}));

        let (e1, s1) = (e.clone(), submit(d.clone()));
        let rolled_back = db
            .store
            .write(move |c| {
                let run = tocsin_core::engine::enqueue_in(c, e1.tocsin(), &s1)?;
                assert!(e1.start_after_commit(c, &run)?, "workers have room");
                Err::<(), _>(Error::invalid_input(run.run_id))
            })
            .await
            .unwrap_err()
            .message()
            .to_owned();

        let (e2, s2) = (e.clone(), submit(d.clone()));
        let id = db
            .store
            .write(move |c| {
                let run = tocsin_core::engine::enqueue_in(c, e2.tocsin(), &s2)?;
                assert!(e2.start_after_commit(c, &run)?);
                Ok(run.run_id)
            })
            .await
            .unwrap();

        // Outside a write (here a read) nothing is claimed: the run stays queued for a worker.
        let (e3, s3) = (e.clone(), submit(d.clone()));
        let queued = e.submit(s3).await.unwrap();
        let q = queued.clone();
        let claimed = db
            .store
            .run(move |c| e3.start_after_commit(c, &q))
            .await
            .unwrap();
        assert!(!claimed, "{}", db.label);

        let run = finished(&db, &id).await;
        assert_eq!(run.status, PipelineStatus::Notified, "{}", db.label);
        assert_eq!(count(&id, "only"), 1, "{}", db.label);
        // Claimed from the queue, not as it was queued: nothing was read ahead.
        let execs = executions(&db, &id).await;
        assert_eq!(
            execs[0].output_snapshot["prefetched"],
            Value::Null,
            "{}",
            db.label
        );
        assert_never_ran(&db, &rolled_back).await;
        tx.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_run_queued_and_started_in_one_write_is_stored_claimed_and_runs_once_it_commits() {
    for db in testing::all().await {
        let e = engine(&db).with_poll_interval(Duration::from_secs(3600));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handles = e.spawn_workers(1, rx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = def(json!({"version": "1", "nodes": [
            {"id": "only", "type": "test", "next": "then"},
            {"id": "then", "type": "test"}]}));

        // Stored claimed at once: the row a claim leaves, and what the caller gets is that row.
        let (e1, s1) = (e.clone(), submit(d.clone()));
        let (returned, stored) = db
            .store
            .write(move |c| {
                let run = e1.enqueue_and_start(c, &s1)?;
                let stored = store::get_pipeline_run(c, &run.run_id)?;
                Ok((run, stored))
            })
            .await
            .unwrap();
        assert_eq!(returned.status, PipelineStatus::Processing, "{}", db.label);
        assert_eq!(returned.attempts, 1, "{}", db.label);
        assert!(returned.started_at.is_some(), "{}", db.label);
        assert!(
            returned
                .lease_owner
                .as_deref()
                .is_some_and(|o| o.ends_with(&format!("#local#{}", returned.run_id))),
            "{}: {:?}",
            db.label,
            returned.lease_owner
        );
        assert_eq!(stored.status, returned.status, "{}", db.label);
        assert_eq!(stored.attempts, returned.attempts, "{}", db.label);
        assert_eq!(stored.lease_owner, returned.lease_owner, "{}", db.label);
        assert!(stored.lease_expires_at.is_some(), "{}", db.label);

        // Rolled back: nothing is stored and nothing runs.
        let (e2, s2) = (e.clone(), submit(d.clone()));
        let rolled_back = started_and_rolled_back(&db, e2, s2).await;

        // An engine without workers here only queues it, as `enqueue_in` would.
        let idle = engine(&db);
        let s3 = submit(d.clone());
        let queued = db
            .store
            .write(move |c| idle.enqueue_and_start(c, &s3))
            .await
            .unwrap();
        assert_eq!(queued.status, PipelineStatus::Pending, "{}", db.label);
        assert_eq!(queued.attempts, 0, "{}", db.label);
        assert_eq!(queued.lease_owner, None, "{}", db.label);

        let id = returned.run_id.clone();
        let run = finished(&db, &id).await;
        assert_eq!(run.status, PipelineStatus::Notified, "{}", db.label);
        assert_eq!(count(&id, "only"), 1, "{}", db.label);
        let execs = executions(&db, &id).await;
        assert_eq!(execs.len(), 2, "{}: {execs:?}", db.label);
        assert!(execs.iter().all(|e| e.attempt == 1), "{}", db.label);
        // The node started in the claim's transaction got what its stage read there (the run
        // as that transaction saw it); the next one reads for itself.
        let prefetched = |node: &str| {
            execs
                .iter()
                .find(|e| e.node_id == node)
                .map(|e| e.output_snapshot["prefetched"].clone())
        };
        assert_eq!(
            prefetched("only"),
            Some(json!("only:processing")),
            "{}",
            db.label
        );
        assert_eq!(prefetched("then"), Some(Value::Null), "{}", db.label);
        assert_never_ran(&db, &rolled_back).await;
        let q = queued.run_id.clone();
        let still = db
            .store
            .run(move |c| store::get_pipeline_run(c, &q))
            .await
            .unwrap();
        assert_eq!(still.status, PipelineStatus::Pending, "{}", db.label);
        tx.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_run_whose_every_node_runs_inline_ends_in_the_write_that_queued_it() {
    for db in testing::all().await {
        // One slot: the run that ends inline must give it back.
        let e = engine(&db)
            .with_poll_interval(Duration::from_secs(3600))
            .with_runs_per_worker(1);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handles = e.spawn_workers(1, rx);
        let d = def(json!({"version": "1", "nodes": [
            {"id": "first", "type": "inline", "next": "second"},
            {"id": "second", "type": "inline"}]}));
        let mut s = submit(d.clone());
        s.payload = json!({"value": 7});

        // Seen from inside the write: the run is over before it commits, in one transaction
        // with whatever queued it, and what the caller gets is the row as stored.
        let e1 = e.clone();
        let (returned, stored, execs) = db
            .store
            .write(move |c| {
                let run = e1.enqueue_and_start(c, &s)?;
                let stored = store::get_pipeline_run(c, &run.run_id)?;
                let execs = store::list_stage_executions(c, stored.id)?;
                Ok((run, stored, execs))
            })
            .await
            .unwrap();
        assert_eq!(stored.status, PipelineStatus::Notified, "{}", db.label);
        assert!(stored.completed_at.is_some(), "{}", db.label);
        assert!(stored.total_duration_ms.is_some(), "{}", db.label);
        assert_eq!(
            stored.current_stage.as_deref(),
            Some("second"),
            "{}",
            db.label
        );
        assert_eq!(stored.lease_owner, None, "{}", db.label);
        assert_eq!(stored.lease_expires_at, None, "{}", db.label);
        assert_eq!(stored.next_attempt_at, None, "{}", db.label);
        assert_eq!(stored.attempts, 1, "{}", db.label);
        assert_eq!(returned.status, stored.status, "{}", db.label);
        assert_eq!(returned.completed_at, stored.completed_at, "{}", db.label);
        assert_eq!(returned.current_stage, stored.current_stage, "{}", db.label);
        assert_eq!(returned.lease_owner, None, "{}", db.label);
        let got: Vec<_> = execs
            .iter()
            .map(|e| (e.node_id.as_str(), e.status, e.output_snapshot.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("first", StageStatus::Succeeded, json!({"inline": 7})),
                ("second", StageStatus::Succeeded, json!({"inline": 7}))
            ],
            "{}",
            db.label
        );

        // Rolled back with its write: no run, no attempt.
        let (e2, s2) = (e.clone(), submit(d.clone()));
        let rolled_back = started_and_rolled_back(&db, e2, s2).await;
        assert_never_ran(&db, &rolled_back).await;

        // Nothing was left for a worker, and the slot it took is free again: a run whose node
        // needs the runtime still starts here and finishes.
        let (e3, s3) = (
            e.clone(),
            submit(def(json!({"version": "1", "nodes": [
            {"id": "first", "type": "inline", "next": "then"},
            {"id": "then", "type": "test"}]}))),
        );
        let started = db
            .store
            .write(move |c| e3.enqueue_and_start(c, &s3))
            .await
            .unwrap();
        assert_eq!(started.status, PipelineStatus::Processing, "{}", db.label);
        let run = finished(&db, &started.run_id).await;
        assert_eq!(run.status, PipelineStatus::Notified, "{}", db.label);
        assert_eq!(count(&returned.run_id, "first"), 0, "{}", db.label);
        assert_eq!(count(&returned.run_id, "second"), 0, "{}", db.label);
        assert_eq!(count(&started.run_id, "then"), 1, "{}", db.label);
        tx.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
    }
}
