//! The `notify` pipeline stage, from run state to PagerDuty trigger and resolve.

use serde_json::{Value, json};
use tocsin_core::domain::{AlertStatus, CheckStatus, IncidentStatus, Priority, Severity};
use tocsin_core::plugin::{BuildContext, StageContext};
use tocsin_core::store::{self, NewAlert, NewIncident, testing};
use tocsin_core::{Config, ErrorKind, Tocsin};

use crate::common::*;

async fn seed_incident(t: &Tocsin) -> i64 {
    t.store()
        .write(|c| {
            let i = store::insert_incident(
                c,
                NewIncident {
                    title: "HighMemoryUsage on web-1".into(),
                    severity: Severity::Critical,
                    description: "Memory usage above 90%".into(),
                    group_key: "HighMemoryUsage|web-1".into(),
                    metadata: json!({}),
                },
            )?;
            store::insert_alert(
                c,
                NewAlert {
                    fingerprint: "fp-1".into(),
                    source: "alertmanager".into(),
                    name: "HighMemoryUsage".into(),
                    severity: Severity::Critical,
                    status: AlertStatus::Firing,
                    description: "memory usage above 90%".into(),
                    labels: [("instance".to_owned(), "web-1".to_owned())].into(),
                    annotations: Default::default(),
                    raw_payload: json!({}).into(),
                    trace_id: "trace-stage".into(),
                    started_at: chrono::Utc::now(),
                    ended_at: None,
                    incident_id: Some(i.id),
                },
            )?;
            Ok(i.id)
        })
        .await
        .unwrap()
}

fn stage_ctx(t: &Tocsin, run: &str, attempt: i32, config: Value, state: Value) -> StageContext {
    StageContext::new(
        t.clone(),
        run.into(),
        format!("trace-{run}"),
        "notify".into(),
        attempt,
        config,
        state,
    )
}

async fn run_stage(
    t: &Tocsin,
    run: &str,
    config: Value,
    state: Value,
) -> tocsin_core::Result<Value> {
    run_attempt(t, run, 1, config, state).await
}

async fn run_attempt(
    t: &Tocsin,
    run: &str,
    attempt: i32,
    config: Value,
    state: Value,
) -> tocsin_core::Result<Value> {
    let d = t.plugins().stages.get("notify").unwrap();
    let stage = (d.build)(&config, &BuildContext::default())?;
    stage
        .execute(&stage_ctx(t, run, attempt, config, state))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_attempt_of_the_node_sends_only_what_the_first_did_not_deliver() {
    for db in testing::all().await {
        let good = HttpServer::start(vec![Reply::new(200, "ok")]).await;
        let bad = HttpServer::start(vec![Reply::new(400, "no")]).await;
        let t = tocsin(&db, Config::default());
        for (name, server) in [("good", &good), ("bad", &bad)] {
            tocsin_notify::create_channel(
                &t,
                name,
                "slack",
                &json!({"webhook_url": server.url("/h")}),
                "",
            )
            .await
            .unwrap();
        }
        let state = json!({"checks": [], "nodes": {}});
        let first = run_attempt(&t, "run-a", 1, json!({}), state.clone()).await;
        assert!(
            first.is_err(),
            "{}: the failed channel fails attempt 1",
            db.label
        );
        assert_eq!((good.requests().len(), bad.requests().len()), (1, 1));

        bad.set_replies(vec![Reply::new(200, "ok")]);
        let second = run_attempt(&t, "run-a", 2, json!({}), state).await.unwrap();
        assert_eq!(second["notified"], 2, "{}: {second}", db.label);
        assert_eq!(good.requests().len(), 1, "{}: not sent twice", db.label);
        assert_eq!(bad.requests().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incident_triggers_then_its_resolution_resolves_the_same_pagerduty_incident() {
    for db in testing::all().await {
        let server =
            HttpServer::start(vec![Reply::new(202, fixture("pagerduty/accepted.json"))]).await;
        let t = tocsin(&db, Config::default());
        tocsin_notify::create_channel(&t, "oncall", "pagerduty",
            &json!({"routing_key": "R0UT1NGKEY0000000000000000000000", "events_url": server.url("/v2/enqueue")}), "").await.unwrap();
        let id = seed_incident(&t).await;
        let state = json!({
            "incident_id": id,
            "checks": [check("memory", CheckStatus::Critical, "94% used")],
            "recommendations": [recommendation(Priority::High, "Restart the leaking java process")],
            "nodes": {},
        });
        let out = run_stage(&t, "run-1", json!({"channels": ["oncall"]}), state.clone())
            .await
            .unwrap();
        assert_eq!(out["notified"], 1, "{}: {out}", db.label);
        assert_eq!(out["deliveries"][0]["status"], "sent");
        assert_eq!(out["deliveries"][0]["run_id"], "run-1");
        assert_eq!(
            out["deliveries"][0]["idempotency_key"],
            "run-1:notify:oncall"
        );

        t.store()
            .write(move |c| {
                store::set_incident_status(c, id, IncidentStatus::Resolved, "system", json!({}))
            })
            .await
            .unwrap();
        let out = run_stage(&t, "run-2", json!({}), state).await.unwrap();
        assert_eq!(out["notified"], 1);

        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        let (trigger, resolve) = (reqs[0].json(), reqs[1].json());
        let key = format!("tocsin-incident-{id}");
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], key.as_str());
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], key.as_str());
        let details = &trigger["payload"]["custom_details"];
        assert_eq!(details["incident"]["id"], id);
        assert_eq!(details["alerts"][0]["instance"], "web-1");
        assert_eq!(details["checks"][0]["status"], "critical");
        assert_eq!(
            details["recommendations"][0]["title"],
            "Restart the leaking java process"
        );
        assert_eq!(trigger["payload"]["source"], "web-1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_node_sends_directly_and_failures_fail_the_step() {
    for db in testing::all().await {
        let t = tocsin(&db, Config::default());
        let out = run_stage(
            &t,
            "run-c",
            json!({"driver": "console"}),
            json!({"checks": [], "nodes": {}}),
        )
        .await
        .unwrap();
        assert_eq!(out["notified"], 1);
        assert_eq!(out["deliveries"][0]["driver"], "console");

        let url = format!("http://127.0.0.1:{}/h", closed_port());
        let err = run_stage(
            &t,
            "run-f",
            json!({"driver": "slack", "config": {"webhook_url": url, "timeout_secs": 0.5}}),
            json!({}),
        )
        .await
        .unwrap_err();
        assert!(err.is_temporary(), "the engine may retry: {err}");

        // With nothing configured and a fallback, the skip is recorded and the console prints.
        let out = run_stage(
            &t,
            "run-fb",
            json!({"fallback_driver": "console"}),
            json!({}),
        )
        .await
        .unwrap();
        assert_eq!(out["skipped"], true);
        assert_eq!(out["notified"], 1);
        let statuses: Vec<_> = out["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["driver"].clone(), d["status"].clone()))
            .collect();
        assert_eq!(
            statuses,
            vec![
                (json!("none"), json!("skipped")),
                (json!("console"), json!("sent"))
            ]
        );

        // With nothing configured the step succeeds but says so.
        let out = run_stage(&t, "run-n", json!({}), json!({})).await.unwrap();
        assert_eq!(out["notified"], 0);
        assert_eq!(out["skipped"], true);
        assert_eq!(out["deliveries"][0]["error"], "no channel configured");
    }
}

#[test]
fn node_configs_are_validated_without_io() {
    let p = tocsin_core::plugin::Plugins::from_inventory();
    let d = p.stages.get("notify").unwrap();
    let example: Value = serde_json::from_str(d.config_example).unwrap();
    assert!((d.build)(&example, &BuildContext::default()).is_ok());
    for bad in [
        json!({"channels": "ops"}),
        json!({"channels": ["a"], "driver": "console"}),
        json!({"config": {}}),
        json!({"driver": "console", "config": []}),
        json!({"chanels": ["typo"]}),
        json!({"driver": "console", "fallback_driver": "console"}),
    ] {
        let err = (d.build)(&bad, &BuildContext::default())
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    }
}

#[tokio::test]
async fn what_the_claim_read_ahead_is_used_only_for_its_own_incident() {
    let db = testing::sqlite().await;
    let t = tocsin(&db, Config::default());
    let id = seed_incident(&t).await;
    let other = t
        .store()
        .write(|c| {
            store::insert_incident(
                c,
                NewIncident {
                    title: "DiskFull on db-1".into(),
                    severity: Severity::Warning,
                    description: String::new(),
                    group_key: "DiskFull|db-1".into(),
                    metadata: json!({}),
                },
            )
        })
        .await
        .unwrap()
        .id;
    let d = t.plugins().stages.get("notify").unwrap();
    let config = json!({"driver": "console"});
    let stage = (d.build)(&config, &BuildContext::default()).unwrap();
    let ahead = |incident: i64| {
        let (stage, ctx) = (
            stage.clone(),
            stage_ctx(
                &t,
                "r-ahead",
                1,
                config.clone(),
                json!({"incident_id": incident}),
            ),
        );
        t.store().write(move |c| match stage.read_ahead(&ctx) {
            Some(read) => read(c).map(Some),
            None => Ok(None),
        })
    };
    let read_ahead = ahead(id)
        .await
        .unwrap()
        .expect("the stage reads its incident ahead");
    let stale_other = ahead(other).await.unwrap();
    // The incident changes after the read ahead: a stage that reads for itself sees the change.
    t.store()
        .write(move |c| {
            store::set_incident_status(
                c,
                id,
                IncidentStatus::Resolved,
                "test",
                json!({"reason": "fixed"}),
            )
        })
        .await
        .unwrap();
    let built = |prefetch: Option<tocsin_core::plugin::Prefetched>| {
        let mut ctx = stage_ctx(&t, "r-ahead", 1, config.clone(), json!({"incident_id": id}));
        ctx.prefetch = prefetch;
        let t = t.clone();
        async move {
            tocsin_notify::stage::notification_from_state(&t, &ctx)
                .await
                .unwrap()
        }
    };
    let from_ahead = built(Some(read_ahead)).await;
    assert_eq!(from_ahead.title, "HighMemoryUsage on web-1");
    assert_eq!(from_ahead.status, Some(AlertStatus::Firing));
    assert_eq!(from_ahead.alerts.len(), 1);
    assert_eq!(from_ahead.incident.as_ref().map(|i| i.id), Some(id));
    // Read ahead for another incident: ignored, the stage reads its own.
    let from_other = built(stale_other).await;
    assert_eq!(from_other.title, "Resolved: HighMemoryUsage on web-1");
    assert_eq!(from_other.incident.as_ref().map(|i| i.id), Some(id));
    let read_now = built(None).await;
    assert_eq!(read_now.title, "Resolved: HighMemoryUsage on web-1");
    assert_eq!(read_now.alerts.len(), 1);
}
