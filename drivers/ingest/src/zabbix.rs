//! Zabbix webhook media types
//! (<https://www.zabbix.com/documentation/current/en/manual/config/notifications/media/webhook>,
//! macros: <https://www.zabbix.com/documentation/current/en/manual/appendix/macros/supported_by_location>).
//!
//! Zabbix has no fixed body: a media type's script posts whatever JSON its author built from
//! macros. This driver accepts the spellings real media types use, compared after folding case,
//! dropping `{}` and turning `.` and `-` into `_`: `event_id`, `eventid`, `EVENT.ID` and
//! `{EVENT.ID}` are one field. A value that is still an unexpanded macro (`{EVENT.RECOVERY.ID}`)
//! counts as absent.
//!
//! # Recognised by
//! An event id (`event_id`, `eventid`) plus one Zabbix-specific field: `trigger_name`,
//! `trigger_id`, `trigger_severity`, `trigger_nseverity`, `trigger_status`, `event_value`,
//! `event_status`, `event_severity`, `event_nseverity`, `event_name` or `host_name`.
//!
//! # Mapping
//! - `fingerprint`: `zabbix-<event id>` (a recovery message carries the problem's `EVENT.ID`,
//!   so it resolves the same alert);
//! - `name`: `event_name`, `trigger_name`, `alert_subject`, `subject`;
//! - `status`: `event_value` `1` -> firing, `0` -> resolved; else `event_status` /
//!   `trigger_status` `PROBLEM` -> firing, `RESOLVED` / `OK` -> resolved; else an expanded
//!   `event_recovery_id` -> resolved; else firing;
//! - `acknowledged`: `event_update_status` `1` with an `event_update_action` mentioning
//!   "acknowledged", or `event_ack_status` `Yes`;
//! - `severity`: numeric (`event_nseverity`, `trigger_nseverity`, or a number in
//!   `event_severity` / `trigger_severity` / `severity`) or named: `5` Disaster, `4` High ->
//!   critical; `3` Average, `2` Warning -> warning; `1` Information, `0` Not classified -> info;
//!   anything else -> **warning** (label `zabbix_severity` keeps the original);
//! - labels: `host` (`host_name`, `host_host`, `hostname`, `host`), `host_ip`, `trigger_id`,
//!   `zabbix_severity`, and the event tags (`event_tags` `k:v, k2:v2`, `event_tagsjson` /
//!   `tags` as `[{"tag", "value"}]` or strings);
//! - `description`: `trigger_description`, `event_opdata`, `alert_message`, `message`;
//! - times: `event_date` + `event_time` (`2024.01.31` `12:00:00`, taken as UTC) or
//!   `event_timestamp` (epoch); the recovery date and time when resolved.

use std::sync::Arc;

use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::plugin::{Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};

use crate::common::{TimeValue, add_tags, date_and_time, invalid, object, parse_time, present};

/// The Zabbix driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Zabbix;

/// Its registered name.
pub const NAME: &str = "zabbix";

const SPECIFIC: &[&str] = &[
    "trigger_name",
    "trigger_id",
    "trigger_severity",
    "trigger_nseverity",
    "trigger_status",
    "event_value",
    "event_status",
    "event_severity",
    "event_nseverity",
    "event_name",
    "host_name",
];

/// Folds a key: lower case, no braces, `.` and `-` as `_`.
fn fold(key: &str) -> String {
    key.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase()
        .replace(['.', '-'], "_")
}

/// The body's present fields under folded keys (the first spelling wins).
fn folded(m: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in m {
        if present(v) {
            out.entry(fold(k)).or_insert_with(|| v.clone());
        }
    }
    // `eventid` and `event_id` are the same field.
    for (short, long) in [
        ("eventid", "event_id"),
        ("triggerid", "trigger_id"),
        ("triggername", "trigger_name"),
        ("eventname", "event_name"),
        ("hostname", "host_hostname"),
    ] {
        if let Some(v) = out.get(short).cloned() {
            out.entry(long.to_owned()).or_insert(v);
        }
    }
    out
}

fn text(m: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match m.get(*k)? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

impl Ingestor for Zabbix {
    fn detect(&self, body: &Value) -> bool {
        let Some(m) = body.as_object() else {
            return false;
        };
        let f = folded(m);
        f.contains_key("event_id") && SPECIFIC.iter().any(|k| f.contains_key(*k))
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        let m = folded(object(NAME, body)?);
        let event_id = text(&m, &["event_id"])
            .ok_or_else(|| invalid(NAME, "missing field `event_id` (or `EVENT.ID`)"))?;
        let name = text(
            &m,
            &["event_name", "trigger_name", "alert_subject", "subject"],
        )
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            invalid(
                NAME,
                "missing field `event_name` (or `trigger_name`, `TRIGGER.NAME`)",
            )
        })?;
        let status = match text(&m, &["event_value"]).as_deref() {
            Some("1") => AlertStatus::Firing,
            Some("0") => AlertStatus::Resolved,
            Some(other) => {
                return Err(invalid(
                    NAME,
                    format!("field `event_value` must be 0 or 1, got {other:?}"),
                ));
            }
            None => match text(&m, &["event_status", "trigger_status"])
                .map(|s| s.to_ascii_uppercase())
                .as_deref()
            {
                Some("PROBLEM") => AlertStatus::Firing,
                Some("RESOLVED" | "OK") => AlertStatus::Resolved,
                Some(other) => {
                    return Err(invalid(
                        NAME,
                        format!("field `event_status` must be PROBLEM or RESOLVED, got {other:?}"),
                    ));
                }
                None if m.contains_key("event_recovery_id") => AlertStatus::Resolved,
                None => AlertStatus::Firing,
            },
        };
        let update = text(&m, &["event_update_status"]).as_deref() == Some("1");
        let action = text(&m, &["event_update_action"])
            .unwrap_or_default()
            .to_ascii_lowercase();
        let acknowledged = status == AlertStatus::Firing
            && ((update && action.contains("acknowledged") && !action.contains("unacknowledged"))
                || text(&m, &["event_ack_status"]).is_some_and(|s| s.eq_ignore_ascii_case("yes")));
        let raw_sev = text(
            &m,
            &[
                "event_nseverity",
                "trigger_nseverity",
                "event_severity",
                "trigger_severity",
                "severity",
            ],
        );
        let severity = match raw_sev.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("5" | "4" | "disaster" | "high") => Severity::Critical,
            Some("3" | "2" | "average" | "warning") => Severity::Warning,
            Some("1" | "0" | "information" | "info" | "not classified" | "not_classified") => {
                Severity::Info
            }
            _ => Severity::Warning,
        };
        let mut labels = Labels::new();
        if let Some(h) = text(&m, &["host_name", "host_host", "host_hostname", "host"]) {
            labels.insert("host".into(), h);
        }
        for (keys, label) in [
            (&["host_ip", "host_conn"][..], "host_ip"),
            (&["trigger_id"][..], "trigger_id"),
        ] {
            if let Some(v) = text(&m, keys) {
                labels.insert(label.into(), v);
            }
        }
        if let Some(s) = raw_sev {
            labels.insert("zabbix_severity".into(), s);
        }
        for key in ["event_tagsjson", "event_tags", "tags"] {
            match m.get(key) {
                Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                    if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(s) {
                        add_tag_objects(&mut labels, &a);
                    }
                }
                Some(Value::String(s)) => add_tags(&mut labels, s.split(',')),
                Some(Value::Array(a)) => add_tag_objects(&mut labels, a),
                _ => {}
            }
        }
        let description = text(
            &m,
            &[
                "trigger_description",
                "event_opdata",
                "alert_message",
                "message",
            ],
        )
        .unwrap_or_default();
        let started_at = event_time(&m, "event_date", "event_time", "event_timestamp");
        let ended_at = match status {
            AlertStatus::Resolved => Some(
                event_time(
                    &m,
                    "event_recovery_date",
                    "event_recovery_time",
                    "event_recovery_timestamp",
                )
                .unwrap_or_else(chrono::Utc::now),
            ),
            AlertStatus::Firing => None,
        };
        let mut annotations = Labels::new();
        for key in [
            "trigger_url",
            "event_opdata",
            "event_update_message",
            "event_recovery_id",
            "zabbix_url",
        ] {
            if let Some(v) = text(&m, &[key]) {
                annotations.insert(key.into(), v);
            }
        }
        Ok(ParsedPayload {
            alerts: vec![NormalizedAlert {
                fingerprint: format!("zabbix-{event_id}"),
                name,
                status,
                severity,
                description,
                labels,
                annotations,
                started_at,
                ended_at,
                raw_payload: body.into(),
                acknowledged,
            }],
            meta: Default::default(),
            empty_reason: None,
        })
    }
}

fn add_tag_objects(labels: &mut Labels, tags: &[Value]) {
    for t in tags {
        match t {
            Value::Object(o) => {
                if let Some(k) = o
                    .get("tag")
                    .and_then(Value::as_str)
                    .filter(|k| !k.is_empty())
                {
                    let v = o
                        .get("value")
                        .and_then(Value::as_str)
                        .filter(|v| !v.is_empty())
                        .unwrap_or("true");
                    labels.entry(k.to_owned()).or_insert_with(|| v.to_owned());
                }
            }
            Value::String(s) => add_tags(labels, [s.as_str()]),
            _ => {}
        }
    }
}

fn event_time(
    m: &Map<String, Value>,
    date: &str,
    time: &str,
    stamp: &str,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if let (Some(Value::String(d)), Some(Value::String(t))) = (m.get(date), m.get(time))
        && let Some(at) = date_and_time(d, t)
    {
        return Some(at);
    }
    match m.get(stamp).map(parse_time) {
        Some(TimeValue::Time(t)) => Some(t),
        _ => None,
    }
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "Zabbix webhook media types (event id/value/status, trigger name/severity, host, tags; macro spellings too).",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(Zabbix)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);
