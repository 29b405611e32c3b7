//! Property tests: no input makes the decoder, detection or any driver panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use tocsin_core::plugin::{BuildContext, ParsedPayload, Plugins};

/// Keys the drivers look at, so generated objects reach deep into the parsers.
const KEYS: &[&str] = &[
    "version",
    "groupKey",
    "alerts",
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "fingerprint",
    "alertname",
    "receiver",
    "orgId",
    "evalMatches",
    "ruleId",
    "ruleName",
    "state",
    "event",
    "event_type",
    "resource_type",
    "data",
    "id",
    "type",
    "title",
    "priority",
    "urgency",
    "messages",
    "incident",
    "alert_id",
    "alert_title",
    "alert_transition",
    "alert_type",
    "alert_scope",
    "tags",
    "date",
    "date_posix",
    "body",
    "last_updated",
    "org",
    "issueUrl",
    "issueId",
    "totalIncidents",
    "alertConditionNames",
    "incident_id",
    "current_state",
    "condition_name",
    "action",
    "alert",
    "alertId",
    "alias",
    "message",
    "integrationType",
    "createdAt",
    "EVENT.ID",
    "event_id",
    "event_value",
    "TRIGGER.NAME",
    "event_name",
    "EVENT.NSEVERITY",
    "host_name",
    "event_tags",
    "name",
    "severity",
    "started_at",
    "ended_at",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("firing".to_owned()),
            Just("resolved".to_owned()),
            Just("4".to_owned()),
            Just("0001-01-01T00:00:00Z".to_owned()),
            Just("[Triggered on {host:a}] x".to_owned()),
            Just("P1".to_owned()),
            Just("incident.triggered".to_owned()),
            Just("incident".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn run_all(body: &Value) {
    let plugins = Plugins::from_inventory();
    let _ = tocsin_ingest::detect(&plugins, body);
    for d in plugins.ingestors.list() {
        let driver = (d.build)(&Value::Null, &BuildContext::default()).unwrap();
        let _ = driver.detect(body);
        let borrowed = driver.parse(body);
        assert_same(d.name, body, borrowed, driver.parse_owned(body.clone()));
        let _ = driver.verify_signature(
            body.to_string().as_bytes(),
            &Default::default(),
            &tocsin_core::Secret::new("k"),
        );
    }
}

/// `parse_owned` (the webhook path) must answer exactly as `parse`: the same alerts, or the same
/// error. A resolved alert without an end is stamped with the time of parsing, so those two
/// stamps may differ by the time between the calls.
fn assert_same(
    driver: &str,
    body: &Value,
    borrowed: tocsin_core::Result<ParsedPayload>,
    owned: tocsin_core::Result<ParsedPayload>,
) {
    match (borrowed, owned) {
        (Ok(mut b), Ok(o)) => {
            assert_eq!(b.alerts.len(), o.alerts.len(), "{driver}: {body}");
            for (x, y) in b.alerts.iter_mut().zip(&o.alerts) {
                if let (Some(bx), Some(oy)) = (x.ended_at, y.ended_at)
                    && (oy - bx).num_seconds().abs() < 5
                {
                    x.ended_at = y.ended_at;
                }
            }
            assert_eq!(b, o, "{driver}: {body}");
        }
        (Err(b), Err(o)) => {
            assert_eq!(
                (b.kind(), b.message()),
                (o.kind(), o.message()),
                "{driver}: {body}"
            );
        }
        (b, o) => panic!("{driver}: {body}: parse gave {b:?}, parse_owned {o:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(raw in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = tocsin_ingest::body::decode(&raw) {
            run_all(&v);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_a_driver(v in value()) {
        run_all(&v);
        let wrapped = serde_json::json!({"alerts": [v.clone()], "version": "4", "groupKey": "g", "event": v.clone()});
        run_all(&wrapped);
    }
}

#[test]
fn fixture_mutations_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for d in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let body: Value =
                serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
            let Value::Object(m) = &body else { continue };
            for key in m.keys() {
                for replacement in [
                    Value::Null,
                    Value::from(1),
                    Value::from(""),
                    Value::Array(vec![]),
                    Value::Object(Map::new()),
                ] {
                    let mut b = body.clone();
                    b[key] = replacement;
                    run_all(&b);
                }
            }
        }
    }
}
