//! The write path on every backend (SQLite always, PostgreSQL when `TOCSIN_TEST_POSTGRES_URL` is
//! set): deduplication, history, grouping, escalation, re-fire, resolution, acknowledgement,
//! transactions, lifecycle calls, signatures and the `ingest` stage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::{Value, json};
use tocsin_core::domain::{AlertStatus, IncidentStatus, Severity};
use tocsin_core::plugin::{Headers, NormalizedAlert, Plugins, StageContext};
use tocsin_core::store::{self, AlertFilter, IncidentFilter, testing};
use tocsin_core::{Config, ErrorKind, Secret, Tocsin};
use tocsin_ingest::service::{
    self, AlertOutcome, IncidentChangeKind, IngestBody, IngestOutcome, IngestRequest, TxHook,
    WebhookSecrets,
};

fn tocsin(db: &testing::TestDb) -> Tocsin {
    Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    )
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(rel),
    )
    .unwrap()
}

async fn send_raw(
    t: &Tocsin,
    driver: Option<&str>,
    raw: Vec<u8>,
) -> tocsin_core::Result<IngestOutcome> {
    let req = IngestRequest {
        driver: driver.map(str::to_owned),
        body: IngestBody::Raw(raw),
        headers: Headers::new(),
        trace_id: None,
    };
    service::ingest_with_secrets(t, req, None, &WebhookSecrets::none()).await
}

async fn send(t: &Tocsin, rel: &str) -> IngestOutcome {
    send_raw(t, None, fixture(rel))
        .await
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

async fn generic(t: &Tocsin, body: Value) -> IngestOutcome {
    send_raw(t, Some("generic"), serde_json::to_vec(&body).unwrap())
        .await
        .unwrap()
}

async fn history(t: &Tocsin, alert_id: i64) -> Vec<String> {
    t.store()
        .run(move |c| store::list_alert_history(c, alert_id))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect()
}

async fn events(t: &Tocsin, incident_id: i64) -> Vec<(String, String)> {
    t.store()
        .run(move |c| store::list_incident_events(c, incident_id))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.actor))
        .collect()
}

async fn incident(t: &Tocsin, id: i64) -> tocsin_core::domain::Incident {
    t.store()
        .run(move |c| store::get_incident(c, id))
        .await
        .unwrap()
}

async fn alert_count(t: &Tocsin) -> usize {
    t.store()
        .run(|c| store::list_alerts(c, &AlertFilter::default()))
        .await
        .unwrap()
        .len()
}

async fn incident_count(t: &Tocsin) -> usize {
    t.store()
        .run(|c| store::list_incidents(c, &IncidentFilter::default()))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn an_identical_resend_is_deduplicated_and_writes_no_history() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let first = send(&t, "alertmanager/firing-two-alerts.json").await;
        assert_eq!(
            (first.created, first.updated, first.unchanged),
            (2, 0, 0),
            "{}",
            db.label
        );
        assert_eq!(first.driver, "alertmanager");
        assert_eq!(first.incident_ids.len(), 2, "two instances, two incidents");
        let id = first.alerts[0].id;
        let before = t
            .store()
            .run(move |c| store::get_alert(c, id))
            .await
            .unwrap();
        let again = send(&t, "alertmanager/firing-two-alerts.json").await;
        assert_eq!(
            (again.created, again.updated, again.unchanged),
            (0, 0, 2),
            "{}",
            db.label
        );
        assert!(again.changes.is_empty());
        assert_eq!(again.incident_ids, first.incident_ids);
        let after = t
            .store()
            .run(move |c| store::get_alert(c, id))
            .await
            .unwrap();
        assert!(after.updated_at >= before.updated_at);
        assert_eq!(
            after.trace_id, before.trace_id,
            "only updated_at is touched"
        );
        assert_eq!(history(&t, id).await, vec!["created"], "{}", db.label);
        assert_eq!(alert_count(&t).await, 2);
        assert_eq!(incident_count(&t).await, 2);
    }
}

/// A handle of its own on the same database, as another process has: its own connections,
/// writer and hint of stored alerts.
async fn another_process(db: &testing::TestDb) -> Tocsin {
    Tocsin::new(
        store::Store::open(&db.url, 2).await.unwrap(),
        Plugins::from_inventory(),
        Config::default(),
    )
}

async fn updated_at(t: &Tocsin, id: i64) -> chrono::DateTime<chrono::Utc> {
    t.store()
        .run(move |c| store::get_alert(c, id))
        .await
        .unwrap()
        .updated_at
}

#[tokio::test]
async fn an_identical_resend_is_answered_from_a_read_and_stamped_in_a_later_batch() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let first = send(&t, "alertmanager/firing-two-alerts.json").await;
        let id = first.alerts[1].id;
        let stored = updated_at(&t, id).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let again = send(&t, "alertmanager/firing-two-alerts.json").await;
        assert_eq!((again.created, again.unchanged), (0, 2), "{}", db.label);
        let ids: Vec<_> = again.alerts.iter().map(|a| (a.id, a.incident_id)).collect();
        let first_ids: Vec<_> = first.alerts.iter().map(|a| (a.id, a.incident_id)).collect();
        assert_eq!(ids, first_ids, "the answer reports the stored alerts");
        assert!(
            again
                .alerts
                .iter()
                .all(|a| a.outcome == AlertOutcome::Unchanged)
        );
        assert_eq!(again.incident_ids, first.incident_ids);
        // No write transaction answered it: the last-seen time waits for its batch.
        assert_eq!(updated_at(&t, id).await, stored, "{}", db.label);
        t.store().flush_seen().await.unwrap();
        let seen = updated_at(&t, id).await;
        assert!(seen > stored, "{}: {seen} after {stored}", db.label);
        assert_eq!(history(&t, id).await, vec!["created"], "{}", db.label);

        // Left to itself, the batch is written within its period.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        send(&t, "alertmanager/firing-two-alerts.json").await;
        tokio::time::sleep(store::SEEN_FLUSH_EVERY * 3).await;
        assert!(updated_at(&t, id).await > seen, "{}", db.label);
    }
}

#[tokio::test]
async fn a_resend_is_compared_with_what_another_process_stored_since() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let body = json!({"name": "Load", "fingerprint": "l1", "severity": "warning", "labels": {"host": "h1"}});
        let a = generic(&t, body.clone()).await;
        let id = a.alerts[0].id;
        // Another process (its own store on the same database) resolves the alert.
        let other = another_process(&db).await;
        let mut resolved = body.clone();
        resolved["status"] = "resolved".into();
        assert_eq!(generic(&other, resolved).await.resolved, 1, "{}", db.label);
        // This process stored the alert firing; the re-send of that body is a re-fire now.
        let again = generic(&t, body.clone()).await;
        assert_eq!(
            (again.unchanged, again.alerts[0].outcome),
            (0, AlertOutcome::Updated),
            "{}",
            db.label
        );
        assert_eq!(
            history(&t, id).await,
            vec!["created", "resolved", "refired"],
            "{}",
            db.label
        );
        let mut hotter = body.clone();
        hotter["severity"] = "critical".into();
        generic(&other, hotter).await;
        let b = generic(&t, body).await;
        assert_eq!(b.alerts[0].outcome, AlertOutcome::Updated, "{}", db.label);
        assert_eq!(
            history(&t, id).await.last().map(String::as_str),
            Some("severity_changed"),
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn a_resend_is_unchanged_when_its_stored_labels_are_the_same_map_in_other_text() {
    use diesel::connection::SimpleConnection;
    for db in testing::all().await {
        let t = tocsin(&db);
        let body = json!({"name": "Disk", "fingerprint": "d1", "severity": "warning",
            "labels": {"host": "h1", "mount": "/"}, "annotations": {"summary": "full"}});
        let id = generic(&t, body.clone()).await.alerts[0].id;
        // Another tool rewrote the row: the same maps, other spacing and key order. The re-send's
        // read compares text, finds it different, and the write path's decoded comparison
        // decides: nothing changed.
        t.store()
            .write(move |c| {
                c.batch_execute(&format!(
                    "UPDATE alerts SET labels = '{{ \"mount\": \"/\", \"host\": \"h1\" }}', \
                     annotations = '{{\"summary\" : \"full\"}}' WHERE id = {id}"
                ))?;
                Ok(())
            })
            .await
            .unwrap();
        let again = generic(&t, body.clone()).await;
        assert_eq!(
            (again.unchanged, again.alerts[0].outcome),
            (1, AlertOutcome::Unchanged),
            "{}",
            db.label
        );
        assert_eq!(history(&t, id).await, vec!["created"], "{}", db.label);
        // A label that did change is one, whichever way the row is written.
        let mut moved = body;
        moved["labels"]["mount"] = "/var".into();
        let changed = generic(&t, moved).await;
        assert_eq!(
            changed.alerts[0].outcome,
            AlertOutcome::Updated,
            "{}",
            db.label
        );
        assert_eq!(
            history(&t, id).await,
            vec!["created", "labels_changed"],
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn a_late_stamp_never_moves_updated_at_back_and_an_identical_resend_runs_no_hook() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let body = json!({"name": "Mem", "fingerprint": "m1", "severity": "warning"});
        let id = generic(&t, body.clone()).await.alerts[0].id;
        // A re-send's stamp waits; then a material change is committed with a later time.
        assert_eq!(generic(&t, body.clone()).await.unchanged, 1);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mut changed = body.clone();
        changed["description"] = "now at 95%".into();
        assert_eq!(generic(&t, changed.clone()).await.updated, 1);
        let later = updated_at(&t, id).await;
        t.store().flush_seen().await.unwrap();
        assert_eq!(updated_at(&t, id).await, later, "{}", db.label);

        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = called.clone();
        let hook: TxHook = Box::new(move |_conn, _changes| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(vec!["run".into()])
        });
        let req = IngestRequest {
            driver: Some("generic".into()),
            body: IngestBody::Json(changed),
            headers: Headers::new(),
            trace_id: None,
        };
        let out = service::ingest_with_secrets(&t, req, Some(hook), &WebhookSecrets::none())
            .await
            .unwrap();
        assert_eq!((out.unchanged, out.run_ids.len()), (1, 0), "{}", db.label);
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }
}

#[tokio::test]
async fn material_changes_are_recorded_with_old_and_new_values() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let base = json!({"name": "Disk", "fingerprint": "d1", "severity": "warning", "description": "80%", "labels": {"host": "h1"}});
        let a = generic(&t, base.clone()).await;
        let id = a.alerts[0].id;
        let mut changed = base.clone();
        changed["description"] = "90%".into();
        changed["labels"]["mount"] = "/var".into();
        let b = generic(&t, changed).await;
        assert_eq!((b.updated, b.unchanged), (1, 0));
        assert_eq!(b.alerts[0].outcome, AlertOutcome::Updated);
        let rows = t
            .store()
            .run(move |c| store::list_alert_history(c, id))
            .await
            .unwrap();
        let evs: Vec<_> = rows.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(
            evs,
            vec!["created", "description_changed", "labels_changed"],
            "{}",
            db.label
        );
        assert_eq!(rows[1].details["old"], "80%");
        assert_eq!(rows[1].details["new"], "90%");
        assert_eq!(rows[2].details["new"]["mount"], "/var");
        // Annotations alone are stored but are no material change.
        let mut ann = base.clone();
        ann["description"] = "90%".into();
        ann["labels"]["mount"] = "/var".into();
        ann["annotations"] = json!({"note": "x"});
        let c = generic(&t, ann).await;
        assert_eq!(c.updated, 1);
        assert_eq!(history(&t, id).await.len(), 3, "{}", db.label);
        let stored = t
            .store()
            .run(move |c| store::get_alert(c, id))
            .await
            .unwrap();
        assert_eq!(stored.annotations["note"], "x");
    }
}

#[tokio::test]
async fn resolving_the_last_firing_alert_resolves_the_incident_and_only_that_one() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let fired = send(&t, "alertmanager/firing-two-alerts.json").await;
        let (web1, web2) = (
            fired.alerts[0].incident_id.unwrap(),
            fired.alerts[1].incident_id.unwrap(),
        );
        assert_ne!(web1, web2);
        assert_eq!(
            fired
                .changes
                .iter()
                .filter(|c| c.kind == IncidentChangeKind::Created)
                .count(),
            2
        );
        let out = send(&t, "alertmanager/resolved.json").await;
        assert_eq!((out.resolved, out.created), (1, 0), "{}", db.label);
        assert_eq!(out.changes.len(), 1);
        assert_eq!(out.changes[0].kind, IncidentChangeKind::Resolved);
        assert_eq!(out.changes[0].incident_id, web1);
        assert_eq!(incident(&t, web1).await.status, IncidentStatus::Resolved);
        assert!(incident(&t, web1).await.resolved_at.is_some());
        assert_eq!(
            incident(&t, web2).await.status,
            IncidentStatus::Open,
            "{}",
            db.label
        );
        let alert = t
            .store()
            .run(|c| store::find_alert(c, "alertmanager", "5b0d3b9f2c1a7e4d"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alert.status, AlertStatus::Resolved);
        assert_eq!(
            alert.severity,
            Severity::Critical,
            "a resolution keeps the fired severity"
        );
        assert_eq!(
            alert.ended_at.unwrap().to_rfc3339(),
            "2024-05-01T10:25:00+00:00"
        );
        assert_eq!(history(&t, alert.id).await, vec!["created", "resolved"]);
        let evs = events(&t, web1).await;
        assert_eq!(
            evs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            vec!["opened", "resolved"]
        );
        assert_eq!(evs[1].1, "ingest:alertmanager");
    }
}

#[tokio::test]
async fn an_incident_stays_open_while_another_of_its_alerts_fires() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let a = generic(
            &t,
            json!({"name": "Load", "fingerprint": "a", "labels": {"instance": "i1", "core": "0"}}),
        )
        .await;
        let b = generic(
            &t,
            json!({"name": "Load", "fingerprint": "b", "labels": {"instance": "i1", "core": "1"}}),
        )
        .await;
        let inc = a.incident_ids[0];
        assert_eq!(
            b.incident_ids,
            vec![inc],
            "same name and instance group together"
        );
        let r = generic(&t, json!({"name": "Load", "fingerprint": "a", "status": "resolved", "labels": {"instance": "i1", "core": "0"}})).await;
        assert!(r.changes.is_empty(), "{}", db.label);
        assert_eq!(incident(&t, inc).await.status, IncidentStatus::Open);
        let r = generic(&t, json!({"name": "Load", "fingerprint": "b", "status": "resolved", "labels": {"instance": "i1", "core": "1"}})).await;
        assert_eq!(r.changes[0].kind, IncidentChangeKind::Resolved);
        assert_eq!(
            incident(&t, inc).await.status,
            IncidentStatus::Resolved,
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn grouping_is_by_name_and_first_instance_label() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let out = generic(
            &t,
            json!({"alerts": [
                {"name": "CPU", "fingerprint": "1", "labels": {"instance_id": "i-1", "host": "ignored"}},
                {"name": "CPU", "fingerprint": "2", "labels": {"instance_id": "i-1", "host": "other"}},
                {"name": "CPU", "fingerprint": "3", "labels": {"host": "i-1"}},
                {"name": "CPU", "fingerprint": "4", "labels": {"hostname": "web-2"}},
                {"name": "Memory", "fingerprint": "5", "labels": {"instance_id": "i-1"}},
                {"name": "Memory", "fingerprint": "6"}
            ]}),
        )
        .await;
        let ids: Vec<i64> = out.alerts.iter().map(|a| a.incident_id.unwrap()).collect();
        assert_eq!(ids[0], ids[1], "{}", db.label);
        assert_eq!(
            ids[0], ids[2],
            "host i-1 is the same instance as instance_id i-1"
        );
        assert_ne!(ids[0], ids[3]);
        assert_ne!(ids[0], ids[4], "another name is another incident");
        assert_ne!(ids[4], ids[5]);
        assert_eq!(out.incident_ids.len(), 4);
        assert_eq!(
            out.changes
                .iter()
                .filter(|c| c.kind == IncidentChangeKind::Created)
                .count(),
            4
        );
        let first = incident(&t, ids[0]).await;
        assert_eq!(first.group_key, "CPU|i-1");
        assert_eq!(first.title, "CPU on i-1");
        assert_eq!(incident(&t, ids[5]).await.group_key, "Memory");
        let created = out
            .changes
            .iter()
            .find(|c| c.incident_id == ids[0])
            .unwrap();
        assert_eq!(
            created.alert_ids,
            vec![out.alerts[0].id],
            "the alert that opened it"
        );
    }
}

#[tokio::test]
async fn severity_only_escalates_while_open() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let a = generic(
            &t,
            json!({"name": "Q", "fingerprint": "a", "severity": "info", "labels": {"host": "h"}}),
        )
        .await;
        let inc = a.incident_ids[0];
        let b = generic(&t, json!({"name": "Q", "fingerprint": "b", "severity": "critical", "labels": {"host": "h"}})).await;
        assert_eq!(b.changes.len(), 1);
        assert_eq!(b.changes[0].kind, IncidentChangeKind::Escalated);
        assert_eq!(b.changes[0].severity, Severity::Critical);
        assert_eq!(
            incident(&t, inc).await.severity,
            Severity::Critical,
            "{}",
            db.label
        );
        let c = generic(&t, json!({"name": "Q", "fingerprint": "c", "severity": "warning", "labels": {"host": "h"}})).await;
        assert!(c.changes.is_empty());
        assert_eq!(
            incident(&t, inc).await.severity,
            Severity::Critical,
            "never de-escalates"
        );
        // An existing alert whose severity rises escalates too.
        let d = generic(
            &t,
            json!({"name": "R", "fingerprint": "d", "severity": "warning"}),
        )
        .await;
        let e = generic(
            &t,
            json!({"name": "R", "fingerprint": "d", "severity": "critical"}),
        )
        .await;
        assert_eq!(e.changes[0].kind, IncidentChangeKind::Escalated);
        assert_eq!(
            incident(&t, d.incident_ids[0]).await.severity,
            Severity::Critical
        );
        assert_eq!(
            history(&t, d.alerts[0].id).await,
            vec!["created", "severity_changed"]
        );
        let evs = events(&t, inc).await;
        assert_eq!(
            evs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            vec!["opened", "escalated"],
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn a_refire_reopens_its_resolved_incident_and_is_recorded() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let fire = json!({"name": "Disk", "fingerprint": "x", "severity": "warning", "labels": {"host": "h"}});
        let a = generic(&t, fire.clone()).await;
        let inc = a.incident_ids[0];
        let mut resolved = fire.clone();
        resolved["status"] = "resolved".into();
        generic(&t, resolved).await;
        assert_eq!(incident(&t, inc).await.status, IncidentStatus::Resolved);
        let mut worse = fire.clone();
        worse["severity"] = "critical".into();
        let r = generic(&t, worse).await;
        assert_eq!(r.alerts[0].outcome, AlertOutcome::Updated);
        assert_eq!(r.incident_ids, vec![inc], "{}", db.label);
        assert_eq!(r.changes[0].kind, IncidentChangeKind::Refired);
        let i = incident(&t, inc).await;
        assert_eq!(
            i.status,
            IncidentStatus::Open,
            "an all-clear must not follow a live alert"
        );
        assert_eq!(i.severity, Severity::Critical);
        assert!(i.resolved_at.is_none());
        let alert = t
            .store()
            .run(|c| store::find_alert(c, "generic", "x"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alert.status, AlertStatus::Firing);
        assert!(alert.ended_at.is_none());
        let h = t
            .store()
            .run(move |c| store::list_alert_history(c, alert.id))
            .await
            .unwrap();
        assert_eq!(
            h.iter().map(|r| r.event.as_str()).collect::<Vec<_>>(),
            vec!["created", "resolved", "refired"]
        );
        assert_eq!(
            h[2].details["severity_changed"]["new"], "critical",
            "the refire row carries the changes"
        );
        let evs = events(&t, inc).await;
        assert_eq!(
            evs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            vec!["opened", "resolved", "reopened"],
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn a_refire_joins_an_open_sibling_and_a_closed_incident_stays_closed() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let a = json!({"name": "Net", "fingerprint": "a", "labels": {"host": "h"}});
        let first = generic(&t, a.clone()).await.incident_ids[0];
        let mut ar = a.clone();
        ar["status"] = "resolved".into();
        generic(&t, ar.clone()).await;
        let sibling = generic(
            &t,
            json!({"name": "Net", "fingerprint": "b", "labels": {"host": "h"}}),
        )
        .await
        .incident_ids[0];
        assert_ne!(
            first, sibling,
            "a resolved incident is not joined by a new alert"
        );
        let back = generic(&t, a.clone()).await;
        assert_eq!(back.incident_ids, vec![sibling], "{}", db.label);
        assert_eq!(back.changes[0].kind, IncidentChangeKind::Refired);
        assert_eq!(incident(&t, first).await.status, IncidentStatus::Resolved);
        // Close everything, then re-fire: a new incident.
        generic(&t, json!({"alerts": [{"name": "Net", "fingerprint": "a", "status": "resolved", "labels": {"host": "h"}},
                                     {"name": "Net", "fingerprint": "b", "status": "resolved", "labels": {"host": "h"}}]}))
        .await;
        assert_eq!(
            incident(&t, sibling).await.status,
            IncidentStatus::Resolved,
            "{}",
            db.label
        );
        service::close_incident(&t, sibling, "jane").await.unwrap();
        let again = generic(&t, a).await;
        assert_eq!(again.changes[0].kind, IncidentChangeKind::Created);
        assert!(
            ![first, sibling].contains(&again.incident_ids[0]),
            "{}",
            db.label
        );
        assert_eq!(incident(&t, sibling).await.status, IncidentStatus::Closed);
    }
}

#[tokio::test]
async fn an_acknowledgement_acknowledges_the_incident_and_does_not_resolve() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let a = send(&t, "pagerduty/v3-incident-triggered.json").await;
        let inc = a.incident_ids[0];
        let ack = send(&t, "pagerduty/v3-incident-acknowledged.json").await;
        assert_eq!(ack.changes.len(), 1, "{}", db.label);
        assert_eq!(ack.changes[0].kind, IncidentChangeKind::Acknowledged);
        assert_eq!(ack.resolved, 0);
        let i = incident(&t, inc).await;
        assert_eq!(i.status, IncidentStatus::Acknowledged);
        assert!(i.acknowledged_at.is_some());
        let alert = t
            .store()
            .run(|c| store::find_alert(c, "pagerduty", "PGR0VU2"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alert.status, AlertStatus::Firing);
        let again = send(&t, "pagerduty/v3-incident-acknowledged.json").await;
        assert!(
            again.changes.is_empty(),
            "acknowledging twice changes nothing"
        );
        let res = send(&t, "pagerduty/v3-incident-resolved-low-urgency.json").await;
        assert_eq!(res.resolved, 1);
        assert_eq!(
            incident(&t, inc).await.status,
            IncidentStatus::Resolved,
            "{}",
            db.label
        );
        let evs = events(&t, inc).await;
        assert_eq!(
            evs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            vec!["opened", "acknowledged", "resolved"]
        );
        let h = t
            .store()
            .run(move |c| store::list_alert_history(c, alert.id))
            .await
            .unwrap();
        assert_eq!(
            h.iter().map(|r| r.event.as_str()).collect::<Vec<_>>(),
            vec!["created", "acknowledged", "resolved"]
        );
        assert_eq!(
            h[2].details["labels_changed"]["new"]["pagerduty_urgency"], "low",
            "changes ride on the resolved row"
        );
    }
}

#[tokio::test]
async fn all_alerts_of_a_request_and_the_hook_are_one_transaction() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let hook: TxHook = Box::new(|_c, changes| {
            assert_eq!(changes.len(), 2);
            Err(tocsin_core::Error::storage("the hook failed"))
        });
        let req = IngestRequest {
            driver: None,
            body: IngestBody::Raw(fixture("alertmanager/firing-two-alerts.json")),
            headers: Headers::new(),
            trace_id: Some("t-1".into()),
        };
        let err = service::ingest_with_secrets(&t, req, Some(hook), &WebhookSecrets::none())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
        assert_eq!(
            alert_count(&t).await,
            0,
            "nothing was written ({})",
            db.label
        );
        assert_eq!(incident_count(&t).await, 0);
        // The same request with a hook that writes and returns run ids.
        let hook: TxHook = Box::new(|c, changes| {
            let ids: Vec<i64> = changes.iter().map(|ch| ch.incident_id).collect();
            for id in &ids {
                store::add_incident_event(c, *id, "note", "open", "open", "hook", json!({}))?;
            }
            Ok(ids.iter().map(|i| format!("run-{i}")).collect())
        });
        let req = IngestRequest {
            driver: None,
            body: IngestBody::Raw(fixture("alertmanager/firing-two-alerts.json")),
            headers: Headers::new(),
            trace_id: Some("t-2".into()),
        };
        let out = service::ingest_with_secrets(&t, req, Some(hook), &WebhookSecrets::none())
            .await
            .unwrap();
        assert_eq!(out.trace_id, "t-2");
        assert_eq!(out.run_ids.len(), 2);
        assert_eq!(out.run_ids[0], format!("run-{}", out.incident_ids[0]));
        assert_eq!(
            events(&t, out.incident_ids[0]).await.last().unwrap().1,
            "hook"
        );
        assert!(
            out.changes
                .iter()
                .all(|c| c.trace_id == "t-2" && c.source == "alertmanager")
        );
        let a = t
            .store()
            .run(|c| store::find_alert(c, "alertmanager", "5b0d3b9f2c1a7e4d"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.trace_id, "t-2");
    }
}

#[tokio::test]
async fn zero_alert_bodies_write_nothing_and_say_why() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let out = send(&t, "pagerduty/v3-pagey-ping.json").await;
        assert!(out.empty_reason.unwrap().contains("pagey.ping"));
        let out = send(&t, "alertmanager/empty-alerts.json").await;
        assert!(out.alerts.is_empty() && out.empty_reason.is_some());
        assert_eq!(alert_count(&t).await, 0, "{}", db.label);
    }
}

#[tokio::test]
async fn bad_bodies_are_typed_errors_that_write_nothing() {
    let db = testing::sqlite().await;
    let t = tocsin(&db);
    let cases: Vec<(Option<&str>, Vec<u8>, ErrorKind)> = vec![
        (None, b"{not json".to_vec(), ErrorKind::InvalidInput),
        (None, b"[1,2]".to_vec(), ErrorKind::InvalidInput),
        (None, b"{}".to_vec(), ErrorKind::UnrecognizedPayload),
        (
            Some("generic"),
            b"{}".to_vec(),
            ErrorKind::UnrecognizedPayload,
        ),
        (Some("nope"), b"{}".to_vec(), ErrorKind::NotFound),
        (
            None,
            b"{\"name\": \"a\", \"name\": \"b\"}".to_vec(),
            ErrorKind::InvalidInput,
        ),
        (
            Some("generic"),
            b"{\"name\": \"a\\u0000\"}".to_vec(),
            ErrorKind::InvalidInput,
        ),
        (
            None,
            b"\xEF\xBB\xBF{\"name\": \"a\"}".to_vec(),
            ErrorKind::InvalidInput,
        ),
        (
            None,
            b"{\"name\": \"\xC3\x28\"}".to_vec(),
            ErrorKind::InvalidInput,
        ),
        (
            None,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            ErrorKind::InvalidInput,
        ),
    ];
    for (driver, raw, kind) in cases {
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(40)]).into_owned();
        let err = send_raw(&t, driver, raw).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{shown}: {err}");
    }
    assert_eq!(alert_count(&t).await, 0);
}

#[tokio::test]
async fn signatures_are_checked_when_a_secret_is_configured() {
    let db = testing::sqlite().await;
    let t = tocsin(&db);
    let secret = Secret::new("s3cret");
    let secrets = WebhookSecrets::none()
        .with("pagerduty", secret.clone())
        .with("generic", secret.clone());
    let raw = fixture("pagerduty/v3-incident-triggered.json");
    let req = |headers: Headers| IngestRequest {
        driver: Some("pagerduty".into()),
        body: IngestBody::Raw(raw.clone()),
        headers,
        trace_id: None,
    };
    let err = service::ingest_with_secrets(&t, req(Headers::new()), None, &secrets)
        .await
        .unwrap_err();
    assert!(
        tocsin_ingest::signature::is_signature_failure(&err),
        "{err}"
    );
    let bad = Headers::from([("x-pagerduty-signature".to_owned(), "v1=00ff".to_owned())]);
    assert!(
        service::ingest_with_secrets(&t, req(bad), None, &secrets)
            .await
            .is_err()
    );
    assert_eq!(alert_count(&t).await, 0);
    let good = format!(
        "v1=deadbeef,v1={}",
        tocsin_ingest::signature::hmac_sha256_hex(&secret, &raw)
    );
    let ok = Headers::from([("x-pagerduty-signature".to_owned(), good)]);
    assert_eq!(
        service::ingest_with_secrets(&t, req(ok), None, &secrets)
            .await
            .unwrap()
            .created,
        1
    );
    // generic: our own header.
    let body = br#"{"name": "Signed"}"#.to_vec();
    let greq = |h: Headers| IngestRequest {
        driver: None,
        body: IngestBody::Raw(body.clone()),
        headers: h,
        trace_id: None,
    };
    assert!(
        service::ingest_with_secrets(&t, greq(Headers::new()), None, &secrets)
            .await
            .is_err()
    );
    let h = Headers::from([(
        "x-tocsin-signature".to_owned(),
        format!(
            "sha256={}",
            tocsin_ingest::signature::hmac_sha256_hex(&secret, &body)
        ),
    )]);
    assert_eq!(
        service::ingest_with_secrets(&t, greq(h), None, &secrets)
            .await
            .unwrap()
            .created,
        1
    );
}

#[tokio::test]
async fn in_process_alerts_use_the_same_path() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let alert = NormalizedAlert {
            fingerprint: "checker-memory-host1".into(),
            name: "memory".into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            description: "memory 97%".into(),
            labels: [
                ("host".to_owned(), "host1".to_owned()),
                ("checker".to_owned(), "memory".to_owned()),
            ]
            .into(),
            annotations: Default::default(),
            started_at: None,
            ended_at: None,
            raw_payload: json!({"metrics": {"percent": 97}}).into(),
            acknowledged: false,
        };
        let out = service::ingest_alerts(
            &t,
            "tocsin-checkers",
            vec![alert.clone()],
            Some("tr".into()),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            (out.driver.as_str(), out.created, out.trace_id.as_str()),
            ("tocsin-checkers", 1, "tr")
        );
        let again = service::ingest_alerts(&t, "tocsin-checkers", vec![alert], None, None)
            .await
            .unwrap();
        assert_eq!(again.unchanged, 1, "{}", db.label);
        let empty = service::ingest_alerts(&t, "tocsin-checkers", vec![], None, None)
            .await
            .unwrap();
        assert!(empty.empty_reason.is_some());
    }
}

#[tokio::test]
async fn lifecycle_calls_record_transitions_and_refuse_impossible_ones() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let id = generic(&t, json!({"name": "L"})).await.incident_ids[0];
        assert_eq!(
            service::acknowledge_incident(&t, id, "jane")
                .await
                .unwrap()
                .status,
            IncidentStatus::Acknowledged
        );
        assert_eq!(
            service::acknowledge_incident(&t, id, "jane")
                .await
                .unwrap()
                .status,
            IncidentStatus::Acknowledged,
            "idempotent"
        );
        let note = service::add_incident_note(&t, id, "jane", "  looking  ")
            .await
            .unwrap();
        assert_eq!(
            (note.event.as_str(), note.details["text"].as_str()),
            ("note", Some("looking"))
        );
        assert_eq!(
            service::resolve_incident(&t, id, "jane")
                .await
                .unwrap()
                .status,
            IncidentStatus::Resolved
        );
        let err = service::acknowledge_incident(&t, id, "jane")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert_eq!(
            service::close_incident(&t, id, "bob").await.unwrap().status,
            IncidentStatus::Closed
        );
        assert_eq!(
            service::resolve_incident(&t, id, "bob")
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Conflict
        );
        let reopened = service::reopen_incident(&t, id, "bob").await.unwrap();
        assert_eq!(reopened.status, IncidentStatus::Open);
        assert!(reopened.closed_at.is_none());
        assert_eq!(
            service::add_incident_note(&t, id, "jane", " ")
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            service::add_incident_note(&t, id, "", "x")
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            service::resolve_incident(&t, 999_999, "x")
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        let evs = events(&t, id).await;
        let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "opened",
                "acknowledged",
                "note",
                "resolved",
                "closed",
                "reopened"
            ],
            "{}",
            db.label
        );
        assert_eq!(evs[4].1, "bob");
    }
}

#[tokio::test]
async fn the_ingest_stage_ingests_the_payload_or_passes_incidents_through() {
    let db = testing::sqlite().await;
    let t = tocsin(&db);
    let stage = (tocsin_ingest::stage::DESCRIPTOR.build)(
        &json!({"driver": "generic"}),
        &Default::default(),
    )
    .unwrap();
    let state = json!({"payload": {"name": "StageAlert", "labels": {"host": "s"}}, "driver": null});
    let ctx = StageContext::new(
        t.clone(),
        "run-1".into(),
        "trace-9".into(),
        "ingest".into(),
        1,
        json!({"driver": "generic"}),
        state,
    );
    let out = stage.execute(&ctx).await.unwrap();
    let id = out["incident_id"].as_i64().unwrap();
    assert_eq!(out["incident_ids"], json!([id]));
    assert_eq!(out["ingest"]["created"], 1);
    assert_eq!(out["ingest"]["trace_id"], "trace-9");
    let state =
        json!({"payload": {"name": "ignored"}, "incident_id": 42, "incident_ids": [42, 43]});
    let ctx = StageContext::new(
        t.clone(),
        "run-2".into(),
        "trace".into(),
        "ingest".into(),
        1,
        json!({}),
        state,
    );
    let out = stage.execute(&ctx).await.unwrap();
    assert_eq!(out["incident_ids"], json!([42, 43]));
    assert_eq!(out["incident_id"], 42);
    assert!(out["ingest"].is_null());
    assert_eq!(alert_count(&t).await, 1, "the pass-through wrote nothing");
    assert!(
        (tocsin_ingest::stage::DESCRIPTOR.build)(&json!({"drvier": "x"}), &Default::default())
            .is_err()
    );
    let ctx = StageContext::new(
        t.clone(),
        "r".into(),
        "t".into(),
        "n".into(),
        1,
        json!({}),
        json!({}),
    );
    assert_eq!(
        stage.execute(&ctx).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn concurrent_requests_for_the_same_new_alert_store_it_once() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let mut tasks = Vec::new();
        for i in 0..8 {
            // A store each, as eight processes would have: a store that stored the alert itself
            // answers an identical re-send from a read, without its hook, while these all write.
            let t = another_process(&db).await;
            tasks.push(tokio::spawn(async move {
                let hook: TxHook = Box::new(move |_c, _changes| Ok(vec![format!("run-{i}")]));
                let body = serde_json::to_vec(
                    &json!({"name": "Race", "fingerprint": "same", "labels": {"host": "r"}}),
                )
                .unwrap();
                let req = IngestRequest {
                    driver: Some("generic".into()),
                    body: IngestBody::Raw(body),
                    headers: Headers::new(),
                    trace_id: None,
                };
                service::ingest_with_secrets(&t, req, Some(hook), &WebhookSecrets::none()).await
            }));
        }
        let mut created = 0;
        for task in tasks {
            let out = task
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e}", db.label));
            created += out.created;
            assert_eq!(out.run_ids.len(), 1, "the hook ran once per request");
        }
        assert_eq!(created, 1, "{}", db.label);
        assert_eq!(alert_count(&t).await, 1);
    }
}

#[tokio::test]
async fn an_opsgenie_note_becomes_an_incident_note_once() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let mut create: Value = serde_json::from_slice(&fixture("opsgenie/create.json")).unwrap();
        let inc = generic_like(&t, &create).await.incident_ids[0];
        create["action"] = "AddNote".into();
        create["alert"]["note"] = "Failover started".into();
        create["alert"]["username"] = "jane@example.com".into();
        let out = generic_like(&t, &create).await;
        assert_eq!(out.incident_ids, vec![inc]);
        generic_like(&t, &create).await;
        let evs = t
            .store()
            .run(move |c| store::list_incident_events(c, inc))
            .await
            .unwrap();
        let notes: Vec<_> = evs.iter().filter(|e| e.event == "note").collect();
        assert_eq!(notes.len(), 1, "{}", db.label);
        assert_eq!(notes[0].details["text"], "Failover started");
        assert_eq!(notes[0].details["by"], "jane@example.com");
    }
}

async fn generic_like(t: &Tocsin, body: &Value) -> IngestOutcome {
    send_raw(t, None, serde_json::to_vec(body).unwrap())
        .await
        .unwrap()
}
