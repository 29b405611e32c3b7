//! Every fixture through detection and its driver, with the field values asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tocsin_core::ErrorKind;
use tocsin_core::domain::{AlertStatus, Severity};
use tocsin_core::plugin::{NormalizedAlert, ParsedPayload, Plugins};
use tocsin_ingest as _;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn body(rel: &str) -> Value {
    let raw = std::fs::read(fixtures_dir().join(rel)).unwrap();
    tocsin_ingest::body::decode(&raw).unwrap()
}

/// Detects the driver (it must be the fixture's folder) and parses.
fn parse(rel: &str) -> ParsedPayload {
    let plugins = Plugins::from_inventory();
    let b = body(rel);
    let driver = rel.split('/').next().unwrap();
    let d = tocsin_ingest::detect(&plugins, &b).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(d.name, driver, "{rel} detected as {}", d.name);
    tocsin_ingest::parse_with(d, &b).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn one(rel: &str) -> NormalizedAlert {
    let p = parse(rel);
    assert_eq!(p.alerts.len(), 1, "{rel}");
    p.alerts.into_iter().next().unwrap()
}

fn t(s: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

fn label<'a>(a: &'a NormalizedAlert, k: &str) -> &'a str {
    a.labels
        .get(k)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no label {k} in {:?}", a.labels))
}

#[test]
fn every_fixture_is_detected_as_its_own_driver_and_every_driver_has_three() {
    let plugins = Plugins::from_inventory();
    assert!(plugins.ingestors.duplicates().is_empty());
    let names = plugins.ingestors.names();
    for d in [
        "alertmanager",
        "datadog",
        "generic",
        "grafana",
        "newrelic",
        "opsgenie",
        "pagerduty",
        "zabbix",
    ] {
        assert!(names.contains(&d), "{d} is not registered: {names:?}");
        let n = std::fs::read_dir(fixtures_dir().join(d)).unwrap().count();
        assert!(n >= 3, "{d} has {n} fixtures");
    }
    for dir in std::fs::read_dir(fixtures_dir()).unwrap() {
        let dir = dir.unwrap();
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap();
            let rel = format!(
                "{}/{}",
                dir.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            parse(&rel);
        }
    }
}

#[test]
fn register_all_adds_every_driver_and_the_stage_to_an_empty_registry_once() {
    let mut p = Plugins::empty();
    tocsin_ingest::register_all(&mut p);
    tocsin_ingest::register_all(&mut p);
    assert_eq!(p.ingestors.names().len(), 8);
    assert!(p.stages.get("ingest").is_ok());
    let mut q = Plugins::from_inventory();
    tocsin_ingest::register_all(&mut q);
    assert!(q.ingestors.duplicates().is_empty());
}

#[test]
fn unrecognised_and_ambiguous_bodies_name_the_drivers() {
    let plugins = Plugins::from_inventory();
    let err = tocsin_ingest::detect(
        &plugins,
        &serde_json::json!({"title": "x", "state": "alerting"}),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::UnrecognizedPayload);
    assert!(
        err.message().contains("alertmanager, datadog, generic"),
        "{err}"
    );
    assert!(err.message().contains("/alerts/webhook/<driver>/"), "{err}");
    // A Grafana body that also carries Alertmanager's signature.
    let mut both = body("grafana/unified-firing.json");
    both["version"] = "4".into();
    let err = tocsin_ingest::detect(&plugins, &both).err().unwrap();
    assert!(
        err.message().contains("ambiguous") && err.message().contains("alertmanager and grafana"),
        "{err}"
    );
    let err = tocsin_ingest::detect(&plugins, &serde_json::json!({}))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::UnrecognizedPayload);
}

// ------------------------------------------------------------------------------------------
// Alertmanager

#[test]
fn alertmanager_firing_two_alerts() {
    let p = parse("alertmanager/firing-two-alerts.json");
    assert_eq!(p.alerts.len(), 2);
    let a = &p.alerts[0];
    assert_eq!(a.fingerprint, "5b0d3b9f2c1a7e4d");
    assert_eq!(a.name, "HighMemory");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.description, "web-1 uses 97% of its memory");
    assert_eq!(label(a, "instance"), "web-1:9100");
    assert_eq!(a.started_at, t("2024-05-01T10:00:00.123Z"));
    assert_eq!(a.ended_at, None, "0001-01-01 means no end");
    assert!(a.annotations["generator_url"].starts_with("http://prometheus.example.com:9090/graph"));
    let b = &p.alerts[1];
    assert_eq!(b.fingerprint, "8c21e4f0a9b3d612");
    assert_eq!(b.severity, Severity::Warning);
    assert_eq!(b.description, "Memory above 85% on web-2");
    let meta = p.meta.to_value();
    assert_eq!(meta["receiver"], "tocsin");
    assert_eq!(meta["externalURL"], "http://alertmanager.example.com:9093");
}

#[test]
fn alertmanager_resolved() {
    let a = one("alertmanager/resolved.json");
    assert_eq!(a.fingerprint, "5b0d3b9f2c1a7e4d");
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.ended_at, t("2024-05-01T10:25:00Z"));
}

#[test]
fn alertmanager_without_fingerprint_and_with_an_unknown_severity() {
    let a = one("alertmanager/no-fingerprint-unknown-severity.json");
    assert_eq!(
        a.fingerprint,
        tocsin_ingest::fallback_fingerprint("alertmanager", "DiskWillFillIn4Hours", &a.labels)
    );
    assert_eq!(
        a.severity,
        Severity::Warning,
        "unknown severity maps to the documented default"
    );
    assert_eq!(
        label(&a, "severity"),
        "sev2",
        "the original value stays in the labels"
    );
    assert_eq!(
        a.description,
        "Disk /dev/sda1 on db-1 will fill within 4 hours"
    );
    assert_eq!(
        a.started_at,
        t("2024-05-01T10:00:00Z"),
        "offsets become UTC"
    );
    assert_eq!(
        a.ended_at, None,
        "a firing alert's endsAt is a timeout, not an end"
    );
}

#[test]
fn alertmanager_empty_alerts_is_accepted_with_zero_alerts() {
    let p = parse("alertmanager/empty-alerts.json");
    assert!(p.alerts.is_empty());
    assert!(p.empty_reason.unwrap().contains("empty `alerts` list"));
}

// ------------------------------------------------------------------------------------------
// Grafana

#[test]
fn grafana_unified_firing() {
    let a = one("grafana/unified-firing.json");
    assert_eq!(a.fingerprint, "a3f1c4d2e5b60718");
    assert_eq!(a.name, "High CPU");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.description, "CPU usage is 93.4% on api-3");
    assert_eq!(label(&a, "instance"), "api-3");
    assert_eq!(
        a.annotations["dashboard_url"],
        "https://grafana.example.com/d/node01?orgId=1"
    );
    assert!(a.annotations["value_string"].contains("value=93.4"));
    assert_eq!(a.started_at, t("2024-06-10T08:15:00Z"));
    assert_eq!(a.ended_at, None);
}

#[test]
fn grafana_unified_resolved_batch() {
    let p = parse("grafana/unified-resolved-batch.json");
    assert_eq!(p.alerts.len(), 2);
    assert!(p.alerts.iter().all(|a| a.status == AlertStatus::Resolved));
    assert_eq!(p.alerts[1].fingerprint, "0b9e77c15d2a4f83");
    assert_eq!(p.alerts[1].severity, Severity::Warning);
    assert_eq!(p.alerts[1].ended_at, t("2024-06-10T08:41:00Z"));
    assert!(
        !p.alerts[1].annotations.contains_key("dashboard_url"),
        "empty links are dropped"
    );
}

#[test]
fn grafana_legacy_alerting() {
    let a = one("grafana/legacy-alerting.json");
    assert_eq!(a.fingerprint, "grafana-rule-1-7");
    assert_eq!(a.name, "Test notification");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(
        a.description,
        "Someone is testing the alert notification within Grafana."
    );
    assert_eq!(label(&a, "host"), "grafana-test-1");
    assert_eq!(label(&a, "tag name"), "tag value");
    assert!(a.annotations["eval_matches"].contains("Higher Value"));
}

#[test]
fn grafana_legacy_ok_resolves_the_same_rule() {
    let a = one("grafana/legacy-ok.json");
    assert_eq!(a.fingerprint, "grafana-rule-1-7");
    assert_eq!(a.status, AlertStatus::Resolved);
    assert!(a.ended_at.is_some());
    assert_eq!(a.description, "[OK] Test notification");
}

// ------------------------------------------------------------------------------------------
// PagerDuty

#[test]
fn pagerduty_v3_triggered() {
    let a = one("pagerduty/v3-incident-triggered.json");
    assert_eq!(a.fingerprint, "PGR0VU2");
    assert_eq!(a.name, "A little bump in the road");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical, "priority P1");
    assert!(!a.acknowledged);
    assert_eq!(label(&a, "service"), "API Service");
    assert_eq!(label(&a, "incident_number"), "2");
    assert_eq!(label(&a, "pagerduty_priority"), "P1");
    assert_eq!(label(&a, "pagerduty_urgency"), "high");
    assert_eq!(
        a.annotations["html_url"],
        "https://acme.pagerduty.com/incidents/PGR0VU2"
    );
    assert_eq!(a.started_at, t("2024-03-12T14:00:00Z"));
}

#[test]
fn pagerduty_v3_acknowledged_acknowledges_and_does_not_resolve() {
    let a = one("pagerduty/v3-incident-acknowledged.json");
    assert_eq!(a.fingerprint, "PGR0VU2");
    assert_eq!(a.status, AlertStatus::Firing);
    assert!(a.acknowledged);
    assert_eq!(a.ended_at, None);
}

#[test]
fn pagerduty_v3_resolved_with_low_urgency() {
    let a = one("pagerduty/v3-incident-resolved-low-urgency.json");
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.severity, Severity::Warning, "no priority, urgency low");
    assert_eq!(a.ended_at, t("2024-03-12T14:30:00Z"));
    assert!(!a.acknowledged);
}

#[test]
fn pagerduty_ping_is_accepted_with_zero_alerts() {
    let p = parse("pagerduty/v3-pagey-ping.json");
    assert!(p.alerts.is_empty());
    assert!(p.empty_reason.unwrap().contains("pagey.ping"));
}

#[test]
fn pagerduty_v2_messages() {
    let p = parse("pagerduty/v2-messages-trigger-and-resolve.json");
    assert_eq!(p.alerts.len(), 2);
    let (a, b) = (&p.alerts[0], &p.alerts[1]);
    assert_eq!(
        (a.fingerprint.as_str(), a.name.as_str()),
        ("PT4KHLK", "Server is on fire")
    );
    assert_eq!(
        (a.status, a.severity),
        (AlertStatus::Firing, Severity::Critical)
    );
    assert_eq!(label(a, "service"), "My Mail Service");
    assert_eq!(b.fingerprint, "PQ8W3ZT");
    assert_eq!(
        (b.status, b.severity),
        (AlertStatus::Resolved, Severity::Info)
    );
    assert_eq!(b.ended_at, t("2017-12-26T17:40:00Z"));
}

#[test]
fn pagerduty_events_without_an_incident_are_rejected_by_name() {
    let mut b = body("pagerduty/v3-incident-triggered.json");
    b["event"]["event_type"] = "incident.annotated".into();
    b["event"]["data"] = serde_json::json!({"type": "incident_note", "content": "x"});
    let d = Plugins::from_inventory()
        .ingestors
        .get("pagerduty")
        .unwrap();
    let err = tocsin_ingest::parse_with(d, &b).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnrecognizedPayload);
    assert!(err.message().contains("incident.annotated"), "{err}");
}

// ------------------------------------------------------------------------------------------
// Datadog

#[test]
fn datadog_default_payload() {
    let a = one("datadog/default-payload-triggered.json");
    assert_eq!(a.name, "CPU load is high");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(
        a.severity,
        Severity::Critical,
        "Triggered without alert type"
    );
    assert_eq!(label(&a, "host"), "web-1");
    let scope = tocsin_core::domain::Labels::from([("host".to_owned(), "web-1".to_owned())]);
    assert_eq!(
        a.fingerprint,
        tocsin_ingest::fallback_fingerprint("datadog", "CPU load is high", &scope)
    );
    assert_eq!(
        a.started_at,
        t("2024-05-13T10:00:00Z"),
        "date is epoch milliseconds"
    );
    assert!(a.description.contains("CPU load on web-1"));
}

#[test]
fn datadog_custom_multi_host_is_one_alert_per_scope() {
    let a = one("datadog/custom-multi-host-triggered.json");
    assert_eq!(a.fingerprint, "datadog-1234567-env:prod,host:db-2");
    assert_eq!(a.name, "Disk usage above 90%");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(label(&a, "host"), "db-2");
    assert_eq!(label(&a, "env"), "prod");
    assert_eq!(label(&a, "role"), "database");
    assert_eq!(label(&a, "monitored"), "true");
    assert_eq!(label(&a, "monitor_id"), "1234567");
    assert_eq!(label(&a, "datadog_priority"), "P2");
    assert_eq!(a.description, "Disk usage on db-2 is 93%.");
    assert_eq!(
        a.started_at,
        t("2024-05-13T10:01:00Z"),
        "date_posix is epoch seconds"
    );
}

#[test]
fn datadog_recovered_resolves_the_same_scope() {
    let a = one("datadog/custom-recovered.json");
    assert_eq!(
        a.fingerprint, "datadog-1234567-env:prod,host:db-2",
        "scope order does not matter"
    );
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.ended_at, t("2024-05-13T10:31:00Z"));
}

#[test]
fn datadog_warn_with_millisecond_dates_and_tag_array() {
    let a = one("datadog/custom-warn-milliseconds.json");
    assert_eq!(a.fingerprint, "datadog-7654321");
    assert_eq!(a.name, "Checkout latency p95 above 800ms");
    assert_eq!(a.severity, Severity::Warning);
    assert_eq!(label(&a, "service"), "checkout");
    assert_eq!(a.started_at, t("2024-05-13T10:00:00Z"));
    assert_eq!(a.description, "p95 latency of checkout is 850ms");
}

// ------------------------------------------------------------------------------------------
// New Relic

#[test]
fn newrelic_workflow_activated() {
    let a = one("newrelic/workflow-activated.json");
    assert_eq!(
        a.fingerprint,
        "newrelic-issue-d1b1f3fd-995a-4066-88ab-8ce4f6960654"
    );
    assert_eq!(a.name, "Memory high");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(label(&a, "instance"), "checkout-7f9c");
    assert_eq!(label(&a, "policy"), "Golden signals - checkout");
    assert_eq!(label(&a, "newrelic_priority"), "CRITICAL");
    assert_eq!(
        a.description,
        "Memory Used % > 90 for at least 2 minutes on 'checkout-7f9c'"
    );
    assert_eq!(a.started_at, t("2024-05-13T10:00:00.123Z"));
}

#[test]
fn newrelic_workflow_closed() {
    let a = one("newrelic/workflow-closed.json");
    assert_eq!(
        a.fingerprint,
        "newrelic-issue-d1b1f3fd-995a-4066-88ab-8ce4f6960654"
    );
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.ended_at, t("2024-05-13T10:10:00.789Z"));
}

#[test]
fn newrelic_workflow_acknowledged() {
    let a = one("newrelic/workflow-acknowledged.json");
    assert_eq!(a.name, "Error rate");
    assert_eq!(a.status, AlertStatus::Firing);
    assert!(a.acknowledged);
    assert_eq!(a.severity, Severity::Warning, "MEDIUM");
}

#[test]
fn newrelic_legacy_channel() {
    let a = one("newrelic/legacy-channel-open.json");
    assert_eq!(a.fingerprint, "newrelic-incident-555444");
    assert_eq!(a.name, "Apdex below 0.7");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(label(&a, "instance"), "storefront");
    assert_eq!(label(&a, "policy"), "Storefront");
    assert_eq!(
        a.description,
        "Apdex < 0.7 for at least 5 minutes on 'storefront'"
    );
    assert_eq!(a.started_at, t("2024-05-13T10:00:00Z"));
}

// ------------------------------------------------------------------------------------------
// Opsgenie

#[test]
fn opsgenie_create() {
    let a = one("opsgenie/create.json");
    assert_eq!(a.fingerprint, "pg-replica-lag-pg-replica-2", "the alias");
    assert_eq!(a.name, "Database replica lag above 30s");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical, "P2");
    assert_eq!(
        a.description,
        "Replica pg-replica-2 is 47s behind the primary."
    );
    assert_eq!(label(&a, "host"), "pg-replica-2");
    assert_eq!(label(&a, "db"), "true");
    assert_eq!(label(&a, "cluster"), "orders");
    assert_eq!(label(&a, "opsgenie_priority"), "P2");
    assert_eq!(a.started_at, t("2024-05-13T10:00:00Z"));
}

#[test]
fn opsgenie_acknowledge_is_not_a_resolution() {
    let a = one("opsgenie/acknowledge.json");
    assert_eq!(a.status, AlertStatus::Firing);
    assert!(a.acknowledged);
}

#[test]
fn opsgenie_close() {
    let a = one("opsgenie/close.json");
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(
        a.ended_at,
        t("2024-05-13T10:20:00Z"),
        "updatedAt is in nanoseconds"
    );
}

#[test]
fn opsgenie_add_note_without_alias() {
    let a = one("opsgenie/add-note-no-alias-p5.json");
    assert_eq!(
        a.fingerprint, "9a1c7e55-7e2b-41f9-8a75-2f3c9c0d4b77",
        "alertId without alias"
    );
    assert_eq!(a.severity, Severity::Info, "P5");
    assert_eq!(a.annotations["note"], "Failover started by on-call");
    assert_eq!(a.description, "Backup job took longer than usual");
}

// ------------------------------------------------------------------------------------------
// Zabbix

#[test]
fn zabbix_problem_with_macro_names() {
    let a = one("zabbix/problem-macro-names.json");
    assert_eq!(a.fingerprint, "zabbix-54321");
    assert_eq!(a.name, "High CPU utilization (over 90% for 5m)");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical, "High");
    assert_eq!(label(&a, "host"), "app-server-01");
    assert_eq!(label(&a, "host_ip"), "10.0.4.21");
    assert_eq!(label(&a, "component"), "cpu");
    assert_eq!(label(&a, "prod"), "true");
    assert_eq!(
        a.description,
        "CPU utilization is too high. The system might be slow to respond."
    );
    assert_eq!(a.started_at, t("2024-05-13T10:00:00Z"));
    assert!(
        !a.annotations.contains_key("event_recovery_id"),
        "unexpanded macros are absent"
    );
}

#[test]
fn zabbix_resolved_snake_case() {
    let a = one("zabbix/resolved-snake-case.json");
    assert_eq!(a.fingerprint, "zabbix-54321");
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.ended_at, t("2024-05-13T10:42:10Z"));
    assert_eq!(label(&a, "zabbix_severity"), "High");
}

#[test]
fn zabbix_disaster_with_braces_and_tags_json() {
    let a = one("zabbix/disaster-braces-tagsjson.json");
    assert_eq!(a.fingerprint, "zabbix-778899");
    assert_eq!(a.name, "MySQL: Service is down");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(label(&a, "host"), "db-primary");
    assert_eq!(label(&a, "service"), "mysql");
    assert_eq!(label(&a, "critical-path"), "true");
    assert_eq!(a.started_at, t("2024-05-13T10:00:00Z"));
}

#[test]
fn zabbix_acknowledged_with_numeric_severity() {
    let a = one("zabbix/acknowledged-numeric-severity.json");
    assert_eq!(a.fingerprint, "zabbix-1200345");
    assert_eq!(a.severity, Severity::Warning, "2 is Warning");
    assert!(a.acknowledged);
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(label(&a, "host"), "web-7");
}

// ------------------------------------------------------------------------------------------
// Generic

#[test]
fn generic_single_firing() {
    let a = one("generic/single-firing.json");
    assert_eq!(a.fingerprint, "cpu-web-1");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(label(&a, "env"), "prod");
    assert_eq!(label(&a, "canary"), "true");
    assert_eq!(a.annotations["runbook"], "https://runbooks.example.com/cpu");
    assert_eq!(a.started_at, t("2024-05-01T10:00:00Z"));
}

#[test]
fn generic_batch_mixed() {
    let p = parse("generic/batch-mixed.json");
    assert_eq!(p.alerts.len(), 3);
    assert_eq!(
        (p.alerts[0].severity, p.alerts[0].status),
        (Severity::Warning, AlertStatus::Firing)
    );
    assert_eq!(
        p.alerts[0].started_at,
        t("2024-05-01T10:00:00Z"),
        "epoch seconds"
    );
    assert_eq!(
        p.alerts[1].started_at,
        t("2024-05-01T10:00:00Z"),
        "epoch milliseconds"
    );
    assert_eq!(p.alerts[1].ended_at, t("2024-05-01T09:00:00Z"));
    assert_eq!(p.alerts[1].status, AlertStatus::Resolved);
    assert_ne!(
        p.alerts[0].fingerprint, p.alerts[1].fingerprint,
        "different hosts, different alerts"
    );
    assert_eq!(label(&p.alerts[2], "tls"), "true");
    assert_eq!(p.alerts[2].severity, Severity::Info);
}

#[test]
fn generic_resolved_with_epoch_seconds() {
    let a = one("generic/resolved-epoch-seconds.json");
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.ended_at, t("2024-05-01T10:30:00Z"));
}

#[test]
fn wrong_types_for_known_fields_name_the_field() {
    let plugins = Plugins::from_inventory();
    let cases = [
        (
            "alertmanager",
            r#"{"version": "4", "groupKey": "x", "alerts": "nope"}"#,
            "alerts",
        ),
        (
            "alertmanager",
            r#"{"version": "4", "groupKey": "x", "alerts": [{"status": "firing", "labels": {"alertname": 5}, "startsAt": "soon"}]}"#,
            "startsAt",
        ),
        ("generic", r#"{"name": "x", "severity": 3}"#, "severity"),
        (
            "generic",
            r#"{"name": "x", "severity": "apocalyptic"}"#,
            "severity",
        ),
        ("generic", r#"{"name": "x", "labels": ["a"]}"#, "labels"),
        ("generic", r#"{"name": "x", "colour": "red"}"#, "colour"),
        (
            "opsgenie",
            r#"{"action": "Create", "alert": {"alertId": "1", "message": ["x"]}}"#,
            "alert.message",
        ),
        (
            "pagerduty",
            r#"{"event": {"event_type": 1}}"#,
            "event.event_type",
        ),
        (
            "zabbix",
            r#"{"event_id": "1", "event_name": "x", "event_value": "7"}"#,
            "event_value",
        ),
        (
            "newrelic",
            r#"{"issueId": "1", "state": "MAYBE", "title": "x"}"#,
            "state",
        ),
        (
            "datadog",
            r#"{"alert_id": "1", "alert_type": "error"}"#,
            "alert_title",
        ),
        (
            "grafana",
            r#"{"evalMatches": [], "ruleId": 1, "state": "paused", "ruleName": "r"}"#,
            "state",
        ),
    ];
    for (driver, raw, field) in cases {
        let b = tocsin_ingest::body::decode(raw.as_bytes()).unwrap();
        let d = plugins.ingestors.get(driver).unwrap();
        let err = tocsin_ingest::parse_with(d, &b).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::UnrecognizedPayload,
            "{driver}: {err}"
        );
        assert!(
            err.message().contains(field),
            "{driver}: {err} should name {field}"
        );
        assert!(
            err.message().starts_with(driver),
            "{driver}: {err} should name the driver"
        );
    }
}

#[test]
fn every_driver_builds_from_its_example_config() {
    for d in Plugins::from_inventory().ingestors.list() {
        let cfg: Value = serde_json::from_str(d.config_example).unwrap();
        assert!((d.build)(&cfg, &Default::default()).is_ok(), "{}", d.name);
        assert!(!d.description.is_empty());
    }
    let stage = &tocsin_ingest::stage::DESCRIPTOR;
    let cfg: Value = serde_json::from_str(stage.config_example).unwrap();
    assert!((stage.build)(&cfg, &Default::default()).is_ok());
}
