//! Property tests: no input makes the decoder, detection or any driver panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use tocsin_core::plugin::{BuildContext, Ingestor, ParsedPayload, Plugins};

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
        direct_as_decoded(&*driver, d.name, &body.to_string());
        direct_as_decoded(
            &*driver,
            d.name,
            &serde_json::to_string_pretty(body).unwrap(),
        );
        let _ = driver.verify_signature(
            body.to_string().as_bytes(),
            &Default::default(),
            &tocsin_core::Secret::new("k"),
        );
    }
}

/// A driver's direct parse of a body's text, when it takes the body, must give what the strict
/// decode and `parse_owned` give; returns whether it took it.
fn direct_as_decoded(driver: &dyn Ingestor, name: &str, text: &str) -> bool {
    let Some(direct) = driver.parse_text(text) else {
        return false;
    };
    let decoded = tocsin_ingest::body::decode(text.as_bytes()).and_then(|v| driver.parse_owned(v));
    let body: Value = serde_json::from_str(text).unwrap();
    assert!(
        decoded.is_ok(),
        "{name}: parse_text took a body the strict path refuses: {text}: {decoded:?}"
    );
    assert_same(name, &body, decoded, Ok(direct));
    true
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
        if let Ok(text) = tocsin_ingest::body::text(&raw) {
            direct_never_takes_what_the_decoder_refuses(text);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_a_driver(v in value()) {
        run_all(&v);
        let wrapped = serde_json::json!({"alerts": [v.clone()], "version": "4", "groupKey": "g", "event": v.clone()});
        run_all(&wrapped);
    }
}

/// Every driver's direct parse refuses (`None`) a text the strict decode refuses.
fn direct_never_takes_what_the_decoder_refuses(text: &str) {
    let plugins = Plugins::from_inventory();
    let refused = tocsin_ingest::body::decode_text(text).is_err();
    for d in plugins.ingestors.list() {
        let driver = (d.build)(&Value::Null, &BuildContext::default()).unwrap();
        let direct = driver.parse_text(text);
        assert!(
            !(refused && direct.is_some()),
            "{}: parse_text took a body the strict decode refuses: {text}",
            d.name
        );
    }
}

/// Texts the strict decode refuses, in an Alertmanager body: the direct parse must refuse them too.
#[test]
fn the_direct_parse_refuses_what_the_strict_decode_refuses() {
    let alert = r#"{"status":"firing","labels":{"alertname":"A"},"annotations":{},"startsAt":"2026-11-30T00:00:00Z","fingerprint":"f"}"#;
    let body = |alerts: &str, extra: &str| {
        format!(
            r#"{{"version":"4","groupKey":"g","receiver":"r","status":"firing"{extra},"alerts":[{alerts}]}}"#
        )
    };
    let plugins = Plugins::from_inventory();
    let am = (plugins.ingestors.get("alertmanager").unwrap().build)(
        &Value::Null,
        &BuildContext::default(),
    )
    .unwrap();
    assert!(
        direct_as_decoded(&*am, "alertmanager", &body(alert, "")),
        "the plain shape is taken directly"
    );
    for bad in [
        body(alert, r#","receiver":"twice""#),
        body(alert, r#","extra":{"a":1,"a":2}"#),
        body(alert, r#","extra":"nul \u0000""#),
        body(alert, r#","commonLabels":{"a":"1","a":"2"}"#),
        body(alert, r#","commonLabels":{"a":"\u0000"}"#),
        body(alert, r#","externalURL":"nul \u0000""#),
        body(
            &alert.replace(
                r#""fingerprint":"f""#,
                r#""fingerprint":"f","status":"resolved""#,
            ),
            "",
        ),
        body(
            &alert.replace(r#""annotations":{}"#, r#""annotations":{"x":"1","x":"2"}"#),
            "",
        ),
        body(
            &alert.replace(r#""annotations":{}"#, r#""annotations":{"x":"\u0000"}"#),
            "",
        ),
        body(
            &alert.replace(
                r#""annotations":{}"#,
                r#""annotations":{},"other":{"deep":{"k":1,"k":1}}"#,
            ),
            "",
        ),
        format!("{}{}", body(alert, ""), " {}"),
    ] {
        assert!(tocsin_ingest::body::decode_text(&bad).is_err(), "{bad}");
        assert!(am.parse_text(&bad).is_none(), "{bad}");
    }
    // Valid, but not the plain shape: left to the strict path, which answers the same way.
    for other in [
        body(alert, r#","commonLabels":{"a":1}"#),
        body(alert, r#","commonLabels":"x""#),
        body(alert, r#","title":{"name":"r"}"#),
        body(
            &alert.replace(r#""fingerprint":"f""#, r#""fingerprint":7"#),
            "",
        ),
        body(
            &alert.replace(
                r#""labels":{"alertname":"A"}"#,
                r#""labels":{"alertname":"A","n":1}"#,
            ),
            "",
        ),
        body(
            &alert.replace(r#""status":"firing""#, r#""st\u0061tus":"firing""#),
            "",
        ),
        body(
            &alert.replace(r#""status":"firing""#, r#""status":"pending""#),
            "",
        ),
        body(
            &alert.replace(
                r#""startsAt":"2026-11-30T00:00:00Z""#,
                r#""startsAt":1796083200"#,
            ),
            "",
        ),
    ] {
        assert!(am.parse_text(&other).is_none(), "{other}");
    }
}

#[test]
fn fixture_mutations_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut taken = Vec::new();
    for d in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let body: Value = serde_json::from_str(&text).unwrap();
            // The fixture as its vendor's documentation wrote it, spacing included.
            for d in Plugins::from_inventory().ingestors.list() {
                let driver = (d.build)(&Value::Null, &BuildContext::default()).unwrap();
                if direct_as_decoded(&*driver, d.name, &text) {
                    taken.push(format!("{}:{}", d.name, path.display()));
                }
            }
            if let Some(alerts) = body.get("alerts").and_then(Value::as_array) {
                for (i, alert) in alerts.iter().enumerate() {
                    let Value::Object(fields) = alert else {
                        continue;
                    };
                    for key in fields.keys() {
                        for replacement in [
                            Value::Null,
                            Value::from(1),
                            Value::from(""),
                            Value::from("resolved"),
                            Value::Object(Map::new()),
                        ] {
                            let mut b = body.clone();
                            b["alerts"][i][key] = replacement;
                            run_all(&b);
                        }
                    }
                }
            }
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
    // The vendors' documented bodies of the two drivers that read text directly are taken so by
    // their own driver (each also checked above against the strict path); Grafana's legacy ones
    // are not, nor any other driver's.
    let mut own: Vec<&str> = taken
        .iter()
        .filter_map(|t| {
            let (driver, path) = t.split_once(':')?;
            path.contains(&format!("/{driver}/"))
                .then(|| path.rsplit('/').next())
                .flatten()
        })
        .collect();
    own.sort();
    assert_eq!(
        own,
        [
            "empty-alerts.json",
            "firing-two-alerts.json",
            "no-fingerprint-unknown-severity.json",
            "resolved.json",
            "unified-firing.json",
            "unified-resolved-batch.json",
        ],
        "{taken:?}"
    );
}
