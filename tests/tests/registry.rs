//! Every plugin of every enabled feature is registered, under a unique name. This also guards the
//! linking pitfall: a plugin crate no code names is not linked and its registrations vanish.

use tocsin_core::plugin::{Descriptor, Plugins, Registry};

// Named on purpose: without these lines the crates would not be linked into this test binary.
use tocsin_checkers as _;
use tocsin_example_custom_driver as _;
use tocsin_ingest as _;
use tocsin_notify as _;
use tocsin_providers as _;

fn assert_unique<D: Descriptor>(r: &Registry<D>) {
    assert!(
        r.duplicates().is_empty(),
        "{} names registered twice: {:?}",
        D::KIND,
        r.duplicates()
    );
    for d in r.list() {
        assert!(
            !d.name().is_empty() && !d.description().is_empty(),
            "{} {:?} lacks a description",
            D::KIND,
            d.name()
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(d.config_example()).is_ok(),
            "the example config of {} {:?} is not JSON",
            D::KIND,
            d.name()
        );
    }
}

#[test]
fn every_registry_has_unique_described_plugins() {
    let p = Plugins::from_inventory();
    assert_unique(&p.ingestors);
    assert_unique(&p.checkers);
    assert_unique(&p.providers);
    assert_unique(&p.notifiers);
    assert_unique(&p.stages);
}

#[test]
fn a_users_own_drivers_sit_beside_the_built_in_ones() {
    let p = Plugins::from_inventory();
    assert!(p.ingestors.get("acme").is_ok());
    assert!(p.notifiers.get("append-file").is_ok());
}

#[test]
fn every_driver_of_every_default_feature_is_registered() {
    let p = Plugins::from_inventory();
    let has = |names: Vec<&str>, want: &[&str], kind: &str| {
        for w in want {
            assert!(
                names.contains(w),
                "{kind} {w:?} is not registered; registered: {names:?}"
            );
        }
    };
    has(
        p.ingestors.names(),
        &[
            "alertmanager",
            "datadog",
            "generic",
            "grafana",
            "newrelic",
            "opsgenie",
            "pagerduty",
            "zabbix",
        ],
        "ingest driver",
    );
    has(
        p.checkers.names(),
        &["cpu", "disk", "memory", "network", "process"],
        "checker",
    );
    has(p.providers.names(), &["local", "openai"], "provider");
    has(
        p.notifiers.names(),
        &["console", "email", "pagerduty", "slack", "webhook"],
        "notify driver",
    );
    has(
        p.stages.names(),
        &["context", "ingest", "intelligence", "notify"],
        "stage",
    );
}

#[test]
fn register_all_builds_the_same_registry_by_hand() {
    let mut by_hand = Plugins::empty();
    tocsin_ingest::register_all(&mut by_hand);
    tocsin_checkers::register_all(&mut by_hand);
    tocsin_providers::register_all(&mut by_hand);
    tocsin_notify::register_all(&mut by_hand);
    let linked = Plugins::from_inventory();
    for name in by_hand.ingestors.names() {
        assert!(linked.ingestors.get(name).is_ok(), "{name}");
    }
    assert_eq!(by_hand.ingestors.names().len(), 8);
    assert_eq!(by_hand.checkers.names().len(), 5);
    assert_eq!(by_hand.providers.names().len(), 2);
    assert_eq!(by_hand.notifiers.names().len(), 5);
    assert!(by_hand.ingestors.duplicates().is_empty() && by_hand.notifiers.duplicates().is_empty());
}
