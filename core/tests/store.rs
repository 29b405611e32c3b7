//! The store suite: every test runs on SQLite and, when `TOCSIN_TEST_POSTGRES_URL` is set, on
//! PostgreSQL too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tocsin_core::ErrorKind;
use tocsin_core::domain::*;
use tocsin_core::store::{
    self, NewAlert, NewIncident, NewPipelineRun, NewStageExecution, Snapshot, testing,
};

fn incident(title: &str, severity: Severity) -> NewIncident {
    NewIncident {
        title: title.into(),
        severity,
        description: "d".into(),
        group_key: format!("{title}|web-1"),
        metadata: json!({"k": 1}),
    }
}

fn alert(fp: &str, incident_id: Option<i64>) -> NewAlert {
    NewAlert {
        fingerprint: fp.into(),
        source: "alertmanager".into(),
        name: "HighMemory".into(),
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        description: "memory above 90%".into(),
        labels: [("instance".to_string(), "web-1".to_string())].into(),
        annotations: Labels::new(),
        raw_payload: json!({"fingerprint": fp}).into(),
        trace_id: "t-1".into(),
        started_at: chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00.123456Z")
            .unwrap()
            .to_utc(),
        ended_at: None,
        incident_id,
    }
}

#[tokio::test]
async fn incidents_and_alerts_round_trip_with_typed_fields() {
    for db in testing::all().await {
        let (inc, a, again) = db
            .store
            .write(|c| {
                let inc = store::insert_incident(c, incident("HighMemory", Severity::Critical))?;
                let a = store::insert_alert(c, alert("fp-1", Some(inc.id)))?;
                let again = store::find_alert(c, "alertmanager", "fp-1")?;
                Ok((inc, a, again))
            })
            .await
            .unwrap();
        assert_eq!(inc.status, IncidentStatus::Open, "{}", db.label);
        assert_eq!(inc.severity, Severity::Critical);
        assert_eq!(inc.metadata, json!({"k": 1}));
        assert_eq!(a.labels.get("instance").map(String::as_str), Some("web-1"));
        assert_eq!(
            a.started_at.to_rfc3339(),
            "2026-11-27T10:00:00.123456+00:00",
            "{}",
            db.label
        );
        assert_eq!(again.as_ref(), Some(&a), "{}", db.label);
        assert_eq!(a.incident_id, Some(inc.id));
    }
}

#[tokio::test]
async fn an_alert_state_is_the_stored_alert_s_compared_fields_and_none_for_an_unknown_identity() {
    use store::ingest::{AlertMatch, AlertState, find_alert_match, find_alert_state};
    for db in testing::all().await {
        let ((a, state, other_source, unknown), (matched, match_other, match_unknown)) = db
            .store
            .write(|c| {
                let inc = store::insert_incident(c, incident("HighMemory", Severity::Critical))?;
                let mut new = alert("fp-state", Some(inc.id));
                new.status = AlertStatus::Resolved;
                new.ended_at = Some(new.started_at + chrono::Duration::milliseconds(1500));
                new.annotations = [("summary".to_string(), "disk full".to_string())].into();
                let a = store::insert_alert(c, new)?;
                let state = find_alert_state(c, "alertmanager", "fp-state")?;
                let other_source = find_alert_state(c, "grafana", "fp-state")?;
                let unknown = find_alert_state(c, "alertmanager", "fp-none")?;
                let matches = (
                    find_alert_match(c, "alertmanager", "fp-state")?,
                    find_alert_match(c, "grafana", "fp-state")?,
                    find_alert_match(c, "alertmanager", "fp-none")?,
                );
                Ok(((a, state, other_source, unknown), matches))
            })
            .await
            .unwrap();
        let expected = AlertState {
            id: a.id,
            severity: a.severity,
            status: a.status,
            description: a.description.clone(),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            started_at: a.started_at,
            ended_at: a.ended_at,
            incident_id: a.incident_id,
        };
        assert_eq!(state, Some(expected), "{}", db.label);
        // The re-send's read: the same fields, labels and annotations as the text a re-send's
        // own maps serialise to.
        let expected = AlertMatch {
            id: a.id,
            severity: Severity::Warning,
            status: AlertStatus::Resolved,
            description: a.description.clone(),
            labels_json: r#"{"instance":"web-1"}"#.to_owned(),
            annotations_json: r#"{"summary":"disk full"}"#.to_owned(),
            incident_id: a.incident_id,
        };
        assert_eq!(matched, Some(expected), "{}", db.label);
        assert_eq!((match_other, match_unknown), (None, None), "{}", db.label);
        let state = state.unwrap();
        assert_eq!(state.status, AlertStatus::Resolved, "{}", db.label);
        assert_eq!(
            state.ended_at.map(|t| t.to_rfc3339()),
            Some("2026-11-27T10:00:01.623456+00:00".to_string()),
            "{}",
            db.label
        );
        assert_eq!(
            state.annotations.get("summary").map(String::as_str),
            Some("disk full")
        );
        assert_eq!(other_source, None, "{}", db.label);
        assert_eq!(unknown, None, "{}", db.label);
    }
}

#[tokio::test]
async fn the_same_source_and_fingerprint_is_a_conflict_and_the_transaction_writes_nothing() {
    for db in testing::all().await {
        db.store
            .write(|c| store::insert_alert(c, alert("dup", None)))
            .await
            .unwrap();
        let err = db
            .store
            .write(|c| {
                store::insert_incident(c, incident("Other", Severity::Info))?;
                store::insert_alert(c, alert("dup", None))
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{}: {err}", db.label);
        let incidents = db
            .store
            .run(|c| store::list_incidents(c, &Default::default()))
            .await
            .unwrap();
        assert!(
            incidents.is_empty(),
            "{}: the failed transaction left an incident behind",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_commit_and_a_failing_one_rolls_back_alone() {
    for db in testing::all().await {
        db.store
            .write(|c| store::insert_alert(c, alert("dup", None)))
            .await
            .unwrap();
        // Sent together, so that on SQLite they share group transactions (each in a savepoint).
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..40 {
            let s = db.store.clone();
            writes.spawn(async move {
                let fp = if i % 5 == 0 {
                    "dup".to_owned()
                } else {
                    format!("fp-{i}")
                };
                let r = s
                    .write(move |c| {
                        let inc =
                            store::insert_incident(c, incident(&format!("I{i}"), Severity::Info))?;
                        let a = store::insert_alert(c, alert(&fp, Some(inc.id)))?;
                        let h =
                            store::add_alert_history(c, a.id, "created", "", "firing", json!({}))?;
                        Ok((a, h))
                    })
                    .await;
                (i, r)
            });
        }
        let mut failed = 0;
        let mut returned = Vec::new();
        while let Some(done) = writes.join_next().await {
            let (i, r) = done.unwrap();
            if i % 5 == 0 {
                assert_eq!(r.unwrap_err().kind(), ErrorKind::Conflict, "{}", db.label);
                failed += 1;
            } else {
                let (a, h) = r.unwrap();
                assert_eq!(a.fingerprint, format!("fp-{i}"), "{}", db.label);
                returned.push((a, h));
            }
        }
        assert_eq!(failed, 8);
        // The ids the inserts returned name the rows they wrote, whatever else the group wrote
        // or rolled back around them.
        for (a, h) in returned {
            let (stored, history) = db
                .store
                .run(move |c| {
                    Ok((
                        store::find_alert(c, "alertmanager", &a.fingerprint)?,
                        store::list_alert_history(c, a.id)?,
                    ))
                })
                .await
                .unwrap();
            assert_eq!(stored.map(|s| s.id), Some(a.id), "{}", db.label);
            assert_eq!(
                history.iter().map(|x| x.id).collect::<Vec<_>>(),
                vec![h.id],
                "{}",
                db.label
            );
        }
        let (alerts, incidents) = db
            .store
            .run(|c| {
                let a = store::list_alerts(
                    c,
                    &store::AlertFilter {
                        limit: 500,
                        ..Default::default()
                    },
                )?;
                let i = store::list_incidents(
                    c,
                    &store::IncidentFilter {
                        limit: 500,
                        ..Default::default()
                    },
                )?;
                Ok((a, i))
            })
            .await
            .unwrap();
        assert_eq!(
            alerts.len(),
            33,
            "{}: 32 new alerts and the first dup",
            db.label
        );
        // A failed write's incident was rolled back with it; every committed alert has its own.
        assert_eq!(incidents.len(), 32, "{}", db.label);
        for a in alerts.iter().filter(|a| a.fingerprint != "dup") {
            let inc = incidents
                .iter()
                .find(|i| Some(i.id) == a.incident_id)
                .unwrap();
            assert_eq!(
                inc.title,
                format!("I{}", &a.fingerprint[3..]),
                "{}",
                db.label
            );
        }
    }
}

/// A write that fails first in its group had the transaction to itself (no savepoint): it is
/// rolled back alone, and the writes queued behind it still commit, in a new transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_fail_first_in_a_group_roll_back_alone() {
    for db in testing::all().await {
        db.store
            .write(|c| store::insert_alert(c, alert("dup", None)))
            .await
            .unwrap();
        // Hold the writer, so that the four writes below wait together and form its next group,
        // in the order they were sent.
        let (started, wait_started) = std::sync::mpsc::channel();
        let blocker = {
            let s = db.store.clone();
            tokio::spawn(async move {
                s.write(move |_| {
                    let _ = started.send(());
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok(())
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || wait_started.recv())
            .await
            .unwrap()
            .unwrap();
        let write = |title: &'static str, fp: &'static str| {
            db.store.write(move |c| {
                let inc = store::insert_incident(c, incident(title, Severity::Info))?;
                store::insert_alert(c, alert(fp, Some(inc.id)))
            })
        };
        let (f1, f2, s1, f3, s2) = tokio::join!(
            write("F1", "dup"),
            write("F2", "dup"),
            write("S1", "fp-s1"),
            write("F3", "dup"),
            write("S2", "fp-s2"),
        );
        blocker.await.unwrap().unwrap();
        for (name, r) in [("F1", &f1), ("F2", &f2), ("F3", &f3)] {
            let e = r.as_ref().map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Conflict, "{}: {name}: {e}", db.label);
        }
        let (s1, s2) = (s1.unwrap(), s2.unwrap());
        let (incidents, stored) = db
            .store
            .run(|c| {
                Ok((
                    store::list_incidents(c, &Default::default())?,
                    (
                        store::find_alert(c, "alertmanager", "fp-s1")?,
                        store::find_alert(c, "alertmanager", "fp-s2")?,
                    ),
                ))
            })
            .await
            .unwrap();
        let mut titles: Vec<_> = incidents.iter().map(|i| i.title.as_str()).collect();
        titles.sort_unstable();
        assert_eq!(
            titles,
            ["S1", "S2"],
            "{}: the failed writes' incidents were rolled back, the others committed",
            db.label
        );
        assert_eq!(stored.0.map(|a| a.id), Some(s1.id), "{}", db.label);
        assert_eq!(stored.1.map(|a| a.id), Some(s2.id), "{}", db.label);
    }
}

#[tokio::test]
async fn a_panicking_write_fails_alone_and_writes_go_on() {
    for db in testing::all().await {
        let err = db
            .store
            .write(|c| -> tocsin_core::Result<()> {
                store::insert_incident(c, incident("Half", Severity::Info))?;
                panic!("a bug in a write");
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{}: {err}", db.label);
        let inc = db
            .store
            .write(|c| store::insert_incident(c, incident("After", Severity::Info)))
            .await
            .unwrap();
        let all = db
            .store
            .run(|c| store::list_incidents(c, &Default::default()))
            .await
            .unwrap();
        assert_eq!(
            all.len(),
            1,
            "{}: the panicked write left its incident behind",
            db.label
        );
        assert_eq!(all[0].id, inc.id);
    }
}

#[tokio::test]
async fn incident_transitions_are_stamped_and_recorded() {
    for db in testing::all().await {
        let (acked, resolved, reopened, events) = db
            .store
            .write(|c| {
                let inc = store::insert_incident(c, incident("Disk", Severity::Warning))?;
                let acked = store::set_incident_status(
                    c,
                    inc.id,
                    IncidentStatus::Acknowledged,
                    "ops",
                    json!({}),
                )?;
                let resolved = store::set_incident_status(
                    c,
                    inc.id,
                    IncidentStatus::Resolved,
                    "system",
                    json!({}),
                )?;
                let reopened = store::set_incident_status(
                    c,
                    inc.id,
                    IncidentStatus::Open,
                    "system",
                    json!({}),
                )?;
                let events = store::list_incident_events(c, inc.id)?;
                Ok((acked, resolved, reopened, events))
            })
            .await
            .unwrap();
        assert!(acked.acknowledged_at.is_some(), "{}", db.label);
        assert!(resolved.resolved_at.is_some());
        assert_eq!(reopened.status, IncidentStatus::Open);
        assert!(reopened.resolved_at.is_none());
        let names: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            names,
            ["acknowledged", "resolved", "reopened"],
            "{}",
            db.label
        );
        assert_eq!(events[0].actor, "ops");
    }
}

#[tokio::test]
async fn listing_filters_orders_newest_first_and_clamps() {
    for db in testing::all().await {
        db.store
            .write(|c| {
                for i in 0..5 {
                    let sev = if i % 2 == 0 {
                        Severity::Critical
                    } else {
                        Severity::Info
                    };
                    store::insert_incident(c, incident(&format!("I{i}"), sev))?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let crit = db
            .store
            .run(|c| {
                store::list_incidents(
                    c,
                    &store::IncidentFilter {
                        severity: Some(Severity::Critical),
                        ..Default::default()
                    },
                )
            })
            .await
            .unwrap();
        let titles: Vec<_> = crit.iter().map(|i| i.title.as_str()).collect();
        assert_eq!(titles, ["I4", "I2", "I0"], "{}", db.label);
        let one = db
            .store
            .run(|c| {
                store::list_incidents(
                    c,
                    &store::IncidentFilter {
                        limit: 1,
                        offset: 1,
                        ..Default::default()
                    },
                )
            })
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].title, "I3");
    }
}

#[tokio::test]
async fn runs_and_stage_executions_enforce_one_row_per_attempt() {
    for db in testing::all().await {
        let run_id = new_id();
        let rid = run_id.clone();
        let run = db
            .store
            .write(move |c| {
                store::insert_pipeline_run(
                    c,
                    &NewPipelineRun {
                        run_id: rid,
                        trace_id: "trace-9".into(),
                        definition_name: None,
                        incident_id: None,
                        source: "alertmanager".into(),
                        environment: "test".into(),
                        max_retries: 3,
                        inbound_payload: json!({"alerts": []}),
                    },
                )
            })
            .await
            .unwrap();
        assert_eq!(run.status, PipelineStatus::Pending);
        let exec = NewStageExecution {
            pipeline_run_id: run.id,
            node_id: "ingest".into(),
            stage: "ingest".into(),
            attempt: 1,
            status: StageStatus::Running,
            idempotency_key: format!("{run_id}:ingest"),
            input_snapshot: Snapshot::redacted(&json!({"password": "hunter2", "x": 1})),
        };
        let e2 = exec.clone();
        let first = db
            .store
            .write(move |c| store::insert_stage_execution(c, &e2))
            .await
            .unwrap();
        let err = db
            .store
            .write(move |c| store::insert_stage_execution(c, &exec))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{}", db.label);
        let got = db
            .store
            .run(move |c| store::get_pipeline_run(c, &run_id))
            .await
            .unwrap();
        assert_eq!(got.trace_id, "trace-9");
        let listed = db
            .store
            .run(move |c| store::list_stage_executions(c, got.id))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        let stored = &listed[0];
        assert_eq!(stored.id, first, "{}", db.label);
        assert_eq!(
            (stored.node_id.as_str(), stored.attempt, stored.status),
            ("ingest", 1, StageStatus::Running)
        );
        assert_eq!(
            stored.input_snapshot,
            json!({"password": "**REDACTED**", "x": 1}),
            "{}",
            db.label
        );
        assert_eq!(stored.output_snapshot, json!({}));
    }
}

#[tokio::test]
async fn channels_definitions_checks_analyses_and_deliveries_round_trip() {
    for db in testing::all().await {
        let out = db
            .store
            .write(|c| {
                store::insert_channel(
                    c,
                    "ops-slack",
                    "slack",
                    &json!({"webhook_url": "https://x"}),
                    "ops",
                )?;
                let dup = store::insert_channel(c, "ops-slack", "slack", &json!({}), "");
                assert_eq!(dup.unwrap_err().kind(), ErrorKind::Conflict);
                Ok(())
            })
            .await;
        // The conflict above aborts that transaction on PostgreSQL, so nothing of it is kept.
        assert!(out.is_ok() || db.label == "postgres");
        db.store
            .write(|c| {
                store::insert_channel(c, "mail", "email", &json!({"to": ["a@b"]}), "").map(|_| ())
            })
            .await
            .unwrap();
        let disabled = db
            .store
            .write(|c| store::set_channel_enabled(c, "mail", false))
            .await
            .unwrap();
        assert!(!disabled.enabled);
        let enabled = db
            .store
            .run(|c| store::list_channels(c, true))
            .await
            .unwrap();
        assert!(enabled.iter().all(|ch| ch.enabled), "{}", db.label);

        let d1 = db
            .store
            .write(|c| {
                store::upsert_definition(
                    c,
                    "p",
                    "first",
                    &json!({"version": "1", "nodes": []}),
                    &["a".into()],
                )
            })
            .await
            .unwrap();
        let d2 = db
            .store
            .write(|c| store::upsert_definition(c, "p", "second", &json!({"version": "1"}), &[]))
            .await
            .unwrap();
        assert_eq!((d1.version, d2.version), (1, 2), "{}", db.label);
        assert_eq!(d2.description, "second");
        assert_eq!(d1.tags, vec!["a".to_string()]);

        let check = CheckResult {
            checker: "memory".into(),
            status: CheckStatus::Warning,
            message: "75% used".into(),
            metrics: json!({"percent": 75.0}),
            error: None,
            warning_threshold: Some(70.0),
            critical_threshold: Some(90.0),
            duration_ms: 1.5,
            skipped: false,
        };
        let run = db
            .store
            .write(move |c| store::insert_check_run(c, &check, "host-a", "t", None))
            .await
            .unwrap();
        assert_eq!(run.status, CheckStatus::Warning);
        assert_eq!(run.warning_threshold, Some(70.0));

        let now = chrono::Utc::now();
        let analysis = store::NewAnalysisRun {
            trace_id: "t".into(),
            run_id: None,
            provider: "openai".into(),
            provider_config: json!({"api_key": "sk-secret", "model": "m"}),
            model_name: Some("m".into()),
            status: AnalysisStatus::Succeeded,
            incident_id: None,
            input_summary: "none".into(),
            recommendations: vec![],
            usage: Some(tocsin_core::plugin::TokenUsage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
            }),
            error_message: None,
            fallback_used: true,
            started_at: now,
            completed_at: Some(now),
        };
        let a = db
            .store
            .write(move |c| store::insert_analysis_run(c, &analysis))
            .await
            .unwrap();
        assert_eq!(a.provider_config["api_key"], "**REDACTED**", "{}", db.label);
        assert_eq!(a.total_tokens, Some(3));
        assert!(a.fallback_used);

        let delivery = store::NewDelivery {
            channel_name: Some("ops-slack".into()),
            driver: "slack".into(),
            status: DeliveryStatus::Sent,
            attempt: 1,
            idempotency_key: "run-1:notify:ops-slack".into(),
            message_id: Some("m-1".into()),
            response: Some("ok".into()),
            error: None,
            trace_id: "t".into(),
            run_id: Some("run-1".into()),
            incident_id: None,
            duration_ms: Some(12.5),
        };
        let d = db
            .store
            .write(move |c| store::insert_delivery(c, &delivery))
            .await
            .unwrap();
        // The records the inserts return are built from what they wrote (nothing is read back):
        // they must be what a read finds.
        let (checks, analyses, deliveries) = db
            .store
            .run(|c| {
                Ok((
                    store::list_check_runs(c, None, 10)?,
                    store::list_analysis_runs(c, None, 10)?,
                    store::list_deliveries(c, None, 10)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(checks, vec![run], "{}", db.label);
        assert_eq!(analyses, vec![a], "{}", db.label);
        assert_eq!(deliveries, vec![d], "{}", db.label);
    }
}

#[tokio::test]
async fn a_bad_url_or_a_server_that_is_down_is_a_clear_error() {
    let err = tocsin_core::store::Store::connect("mysql://x", 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let err = tocsin_core::store::Store::connect("postgres://nobody:pw@127.0.0.1:1/db", 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(err.message().contains("127.0.0.1"), "{err}");
    assert!(!err.message().contains("pw@"), "password leaked: {err}");
}

#[tokio::test]
async fn the_sqlite_writer_checkpoints_its_log_itself_only_when_the_checkpointer_fell_behind() {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        wal_autocheckpoint: i64,
    }
    let db = testing::sqlite().await;
    let pages = |c: &mut store::AnyConnection| -> tocsin_core::Result<i64> {
        let store::AnyConnection::Sqlite(c) = c else {
            panic!("a SQLite store gave another connection");
        };
        let s: Setting = diesel::sql_query("PRAGMA wal_autocheckpoint").get_result(c)?;
        Ok(s.wal_autocheckpoint)
    };
    // Writes run on the writer thread's connection; reads on pooled ones, which never commit.
    let writer = db.store.write(pages).await.unwrap();
    assert_eq!(
        writer, 10_000,
        "the writer's own checkpoint is the backstop, ten times SQLite's default"
    );
    let reader = db.store.run(pages).await.unwrap();
    assert_eq!(reader, 1_000, "pooled connections keep SQLite's default");
}

/// `.cargo/config.toml` builds the bundled SQLite for a connection used by one thread at a time,
/// without memory statistics (issue 8: a global lock on every allocation, contended between the
/// writer and the pipeline's readers); a build that lost those flags would only be slower, so
/// this says so.
#[tokio::test]
async fn the_bundled_sqlite_takes_no_lock_per_call_and_keeps_no_memory_statistics() {
    use diesel::prelude::*;
    use diesel::sql_types::{Integer, Text};
    let db = testing::sqlite().await;
    let used = |option: &'static str| {
        db.store.run(move |c| {
            let store::AnyConnection::Sqlite(c) = c else {
                panic!("a SQLite store gave another connection");
            };
            let on = diesel::select(
                diesel::dsl::sql::<Integer>("sqlite_compileoption_used(")
                    .bind::<Text, _>(option)
                    .sql(")"),
            )
            .get_result::<i32>(c)?;
            Ok(on == 1)
        })
    };
    assert!(used("THREADSAFE=2").await.unwrap(), "multi-thread mode");
    assert!(!used("THREADSAFE=1").await.unwrap(), "not serialized");
    assert!(
        used("DEFAULT_MEMSTATUS=0").await.unwrap(),
        "no memory statistics"
    );
}

/// Whether the connection the store hands out is encrypted, and whether the server offers TLS.
async fn tls_of(store: &store::Store) -> (bool, bool) {
    use diesel::prelude::*;
    use diesel::sql_types::{Bool, Text};
    store
        .run(|c| {
            let store::AnyConnection::Postgres(pg) = c else {
                panic!("not PostgreSQL");
            };
            let encrypted = diesel::select(diesel::dsl::sql::<Bool>(
                "(SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
            ))
            .get_result::<bool>(pg)?;
            let offered = diesel::select(diesel::dsl::sql::<Text>("current_setting('ssl')"))
                .get_result::<String>(pg)?;
            Ok((encrypted, offered == "on"))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_postgres_server_on_this_machine_is_reached_without_tls_unless_the_url_asks() {
    let Some(db) = testing::postgres().await else {
        return;
    };
    if std::env::var_os("PGSSLMODE").is_some() || !db.url.contains("127.0.0.1") {
        panic!(
            "this test expects {} to name 127.0.0.1 and PGSSLMODE unset",
            testing::POSTGRES_ENV
        );
    }
    let (encrypted, offered) = tls_of(&db.store).await;
    assert!(!encrypted, "a loopback connection negotiated TLS");
    if !offered {
        println!("[tocsin test] the server offers no TLS; sslmode=require is not checked");
        return;
    }
    let asked = store::Store::connect(&format!("{}&sslmode=require", db.url), 1)
        .await
        .unwrap();
    assert_eq!(
        tls_of(&asked).await,
        (true, true),
        "sslmode=require was not honoured"
    );
}

/// The backend pid of the connection the store hands out next.
async fn backend_pid(store: &store::Store) -> tocsin_core::Result<i32> {
    use diesel::prelude::*;
    store
        .run(|c| {
            let store::AnyConnection::Postgres(pg) = c else {
                panic!("not PostgreSQL");
            };
            Ok(
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                    "pg_backend_pid()",
                ))
                .get_result::<i32>(pg)?,
            )
        })
        .await
}

#[tokio::test]
async fn a_pooled_connection_is_tested_again_once_idle_or_after_an_error() {
    let Some(db) = testing::postgres().await else {
        return;
    };
    let store = store::Store::connect(&db.url, 1).await.unwrap();
    let other = store::Store::connect(&db.url, 1).await.unwrap();
    let terminate = |pid: i32| {
        other.run(move |c| {
            use diesel::connection::SimpleConnection;
            Ok(c.batch_execute(&format!("SELECT pg_terminate_backend({pid})"))?)
        })
    };

    // Idle past the trust: the check-out test finds the connection dead and opens another.
    let pid = backend_pid(&store).await.unwrap();
    terminate(pid).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let replaced = backend_pid(&store).await.unwrap();
    assert_ne!(replaced, pid);

    // Just used, it is handed out untested: the caller gets the error, and the connection is
    // tested (and replaced) before anyone gets it again.
    terminate(replaced).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let err = backend_pid(&store).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let again = backend_pid(&store).await.unwrap();
    assert_ne!(again, replaced);
}
