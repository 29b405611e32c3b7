//! The proof that a user's own drivers are first-class: listed and callable through the registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tocsin_core::ErrorKind;
use tocsin_core::domain::{AlertStatus, Severity};
use tocsin_core::plugin::{BuildContext, Notification, Plugins};
use tocsin_example_custom_driver as _;

#[test]
fn both_drivers_are_listed_by_the_registry() {
    let plugins = Plugins::from_inventory();
    assert!(
        plugins.ingestors.names().contains(&"acme"),
        "{:?}",
        plugins.ingestors.names()
    );
    assert!(
        plugins.notifiers.names().contains(&"append-file"),
        "{:?}",
        plugins.notifiers.names()
    );
    assert_eq!(
        plugins.notifiers.get("append-file").unwrap().required,
        &["path"]
    );
}

#[test]
fn the_ingest_driver_is_callable_through_the_registry() {
    let plugins = Plugins::from_inventory();
    let d = plugins.ingestors.get("acme").unwrap();
    let driver = (d.build)(&json!({}), &BuildContext::default()).unwrap();
    let body = json!({"acme_alert": {"id": "A-1", "check": "disk-full", "host": "web-1",
                                      "level": "crit", "state": "open", "text": "/ at 97%"}});
    assert!(driver.detect(&body));
    assert!(!driver.detect(&json!({"alerts": []})));
    let parsed = driver.parse(&body).unwrap();
    let a = &parsed.alerts[0];
    assert_eq!(
        (a.fingerprint.as_str(), a.name.as_str()),
        ("A-1", "disk-full")
    );
    assert_eq!(
        (a.severity, a.status),
        (Severity::Critical, AlertStatus::Firing)
    );
    assert_eq!(a.labels["host"], "web-1");
    let err = driver.parse(&json!({"acme_alert": {"id": 7}})).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("acme_alert.id"), "{err}");
}

#[tokio::test]
async fn the_notify_driver_is_callable_through_the_registry() {
    let dir = std::env::temp_dir().join(format!("tocsin-append-{}", std::process::id()));
    let path = dir.with_extension("log");
    let plugins = Plugins::from_inventory();
    let d = plugins.notifiers.get("append-file").unwrap();
    assert_eq!(
        (d.build)(&json!({}), &BuildContext::default())
            .err()
            .unwrap()
            .kind(),
        ErrorKind::InvalidConfig
    );
    let driver = (d.build)(
        &json!({"path": path.to_str().unwrap()}),
        &BuildContext::default(),
    )
    .unwrap();
    let n = Notification {
        title: "Disk full on web-1".into(),
        message: "/ at 97%".into(),
        severity: Some(Severity::Critical),
        ..Notification::default()
    };
    let receipt = driver.send(&n).await.unwrap();
    assert_eq!(receipt.response.as_deref(), Some("appended"));
    let written = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        written.contains("[critical] Disk full on web-1: / at 97%"),
        "{written}"
    );
}
