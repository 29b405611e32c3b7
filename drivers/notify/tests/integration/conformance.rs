//! Every registered notify driver goes through the same checks.

use serde_json::{Value, json};
use tocsin_core::ErrorKind;
use tocsin_core::plugin::{BuildContext, Plugins};

use tocsin_notify as _;

const EXPECTED: &[&str] = &["console", "email", "pagerduty", "slack", "webhook"];

#[test]
fn every_driver_is_registered_once_with_the_notify_stage() {
    let p = Plugins::from_inventory();
    assert_eq!(p.notifiers.names(), EXPECTED);
    assert!(p.notifiers.duplicates().is_empty());
    assert!(p.stages.get("notify").is_ok());
    // register_all on top of the inventory adds nothing twice.
    let mut p2 = Plugins::from_inventory();
    tocsin_notify::register_all(&mut p2);
    assert_eq!(p2.notifiers.names(), EXPECTED);
    assert!(p2.stages.duplicates().is_empty());
    // and on an empty registry it registers everything.
    let mut empty = Plugins::empty();
    tocsin_notify::register_all(&mut empty);
    assert_eq!(empty.notifiers.names(), EXPECTED);
    assert_eq!(empty.stages.names(), vec!["notify"]);
}

#[test]
fn every_example_config_builds_and_lists_only_known_keys() {
    let p = Plugins::from_inventory();
    for name in p.notifiers.names() {
        let d = p.notifiers.get(name).unwrap();
        let example: Value =
            serde_json::from_str(d.config_example).unwrap_or_else(|e| panic!("{name}: {e}"));
        (d.build)(&example, &BuildContext::default())
            .unwrap_or_else(|e| panic!("{name}: example does not build: {e}"));
        for key in example.as_object().unwrap().keys() {
            assert!(
                d.required.contains(&key.as_str()) || d.optional.contains(&key.as_str()),
                "{name}: {key} undocumented"
            );
        }
        for key in d.required {
            let mut missing = example.clone();
            missing.as_object_mut().unwrap().remove(*key);
            let err = (d.build)(&missing, &BuildContext::default())
                .err()
                .unwrap_or_else(|| panic!("{name} without {key} built"));
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{name}: {err}");
            assert!(
                err.message().contains(key),
                "{name}: error does not name {key}: {err}"
            );
        }
    }
}

#[test]
fn bad_configs_are_typed_errors_never_panics() {
    let p = Plugins::from_inventory();
    let bad = [
        json!(null),
        json!([]),
        json!("x"),
        json!({"unknown_key": 1}),
        json!({"templates": "not a map"}),
        json!({"templates": {"nope": "x"}}),
        json!({"timeout_secs": -1}),
    ];
    for name in p.notifiers.names() {
        let d = p.notifiers.get(name).unwrap();
        let example: Value = serde_json::from_str(d.config_example).unwrap();
        for b in &bad {
            let config = match b {
                Value::Object(extra) => {
                    let mut c = example.clone();
                    c.as_object_mut().unwrap().extend(extra.clone());
                    c
                }
                other => other.clone(),
            };
            if name == "console" && config.is_null() {
                continue; // console accepts "no config"
            }
            match (d.build)(&config, &BuildContext::default()) {
                Ok(_) => panic!("{name} accepted {config}"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{name} {config}: {e}"),
            }
        }
    }
}

#[test]
fn secrets_never_appear_in_config_errors() {
    let p = Plugins::from_inventory();
    let cases = [
        (
            "slack",
            json!({"webhook_url": "ftp://hooks.slack.com/services/T0SECRET"}),
        ),
        ("slack", json!({"webhook_url": "::T0SECRET"})),
        (
            "pagerduty",
            json!({"routing_key": "T0SECRET", "severity": {"critical": "loud"}}),
        ),
        (
            "email",
            json!({"smtp_host": "mx", "from": "a@b.c", "to": ["x"], "username": "u", "password": "T0SECRET"}),
        ),
        (
            "webhook",
            json!({"url": "https://x", "headers": {"Authorization": "T0SECRET\n"}}),
        ),
    ];
    for (name, config) in cases {
        let err = (p.notifiers.get(name).unwrap().build)(&config, &BuildContext::default())
            .err()
            .unwrap();
        assert!(!err.to_string().contains("T0SECRET"), "{name}: {err}");
    }
}
