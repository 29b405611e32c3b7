//! The Prometheus-style alert object shared by Alertmanager (webhook v4) and Grafana unified
//! alerting: `status`, `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`,
//! `fingerprint`.

use chrono::Utc;
use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Severity};
use tocsin_core::plugin::{NormalizedAlert, ParsedPayload};

use crate::common::{Fields, fallback_fingerprint, into_object, invalid, severity_word};

/// Extra string fields of an alert copied into annotations (Grafana's links and values).
const EXTRA_ANNOTATIONS: &[(&str, &str)] = &[
    ("generatorURL", "generator_url"),
    ("silenceURL", "silence_url"),
    ("dashboardURL", "dashboard_url"),
    ("panelURL", "panel_url"),
    ("imageURL", "image_url"),
    ("valueString", "value_string"),
];

/// Payload-level facts kept as they are sent.
const META_VALUES: &[&str] = &[
    "receiver",
    "status",
    "groupKey",
    "externalURL",
    "version",
    "truncatedAlerts",
    "orgId",
    "title",
    "state",
    "message",
];

/// Payload-level facts that must be objects when sent.
const META_OBJECTS: &[&str] = &["groupLabels", "commonLabels", "commonAnnotations"];

/// Parses the `alerts` list and the payload-level facts of an Alertmanager-shaped body. The body
/// is taken whole so that its values move into the alerts and facts rather than being copied.
pub(crate) fn parse_group(driver: &'static str, body: Value) -> Result<ParsedPayload> {
    let map = into_object(driver, body)?;
    // Every check first, in the order the fields are read, so the first fault is the one named.
    let f = Fields {
        driver,
        path: String::new(),
        map: &map,
    };
    f.array("alerts")?;
    for key in META_OBJECTS {
        f.opt_map(key)?;
    }
    // One pass over the body's keys, in order: each kept value and its key move as they are.
    let mut list = Vec::new();
    let mut meta = Map::new();
    for (key, v) in map {
        if key == "alerts"
            && let Value::Array(a) = v
        {
            list = a;
        } else if !v.is_null()
            && (META_VALUES.contains(&key.as_str()) || META_OBJECTS.contains(&key.as_str()))
        {
            meta.insert(key, v);
        }
    }
    let mut alerts = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        alerts.push(parse_alert(driver, i, raw)?);
    }
    let empty_reason = alerts
        .is_empty()
        .then(|| format!("the {driver} body has an empty `alerts` list"));
    Ok(ParsedPayload {
        alerts,
        meta,
        empty_reason,
    })
}

/// Alert `index` of the `alerts` list, moved into the alert's `raw_payload`.
pub(crate) fn parse_alert(
    driver: &'static str,
    index: usize,
    raw: Value,
) -> Result<NormalizedAlert> {
    let a = Fields::element(driver, format!("alerts[{index}]"), &raw)?;
    let path = a.path.as_str();
    let status = match a.str("status")? {
        "firing" => AlertStatus::Firing,
        "resolved" => AlertStatus::Resolved,
        other => {
            return Err(invalid(
                driver,
                format!("field `{path}.status` must be \"firing\" or \"resolved\", got {other:?}"),
            ));
        }
    };
    let labels = a.string_map("labels")?;
    let mut annotations = a.string_map("annotations")?;
    let name = labels
        .get("alertname")
        .filter(|n| !n.trim().is_empty())
        .cloned()
        .ok_or_else(|| invalid(driver, format!("missing label `{path}.labels.alertname`")))?;
    let severity = labels
        .get("severity")
        .and_then(|s| severity_word(s))
        .unwrap_or(Severity::Warning);
    let description = ["description", "summary", "message"]
        .iter()
        .find_map(|k| annotations.get(*k).filter(|v| !v.is_empty()).cloned())
        .unwrap_or_default();
    for (from, to) in EXTRA_ANNOTATIONS {
        if let Some(v) = a.opt_str(from)?.filter(|v| !v.is_empty()) {
            annotations
                .entry((*to).to_owned())
                .or_insert_with(|| v.to_owned());
        }
    }
    let started_at = a.opt_time("startsAt")?;
    let ends_at = a.opt_time("endsAt")?;
    // A firing alert's `endsAt` is either Go's zero time (no end) or Alertmanager's resolve
    // timeout, a guess about the future: neither is an end.
    let ended_at = match status {
        AlertStatus::Firing => None,
        AlertStatus::Resolved => Some(ends_at.unwrap_or_else(Utc::now)),
    };
    let fingerprint = match a.opt_str("fingerprint")?.filter(|f| !f.trim().is_empty()) {
        Some(f) => f.to_owned(),
        None => fallback_fingerprint(driver, &name, &labels),
    };
    drop(a);
    Ok(NormalizedAlert {
        fingerprint,
        name,
        status,
        severity,
        description,
        labels,
        annotations,
        started_at,
        ended_at,
        raw_payload: raw,
        acknowledged: false,
    })
}
