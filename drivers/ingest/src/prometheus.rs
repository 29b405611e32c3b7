//! The Prometheus-style alert object shared by Alertmanager (webhook v4) and Grafana unified
//! alerting: `status`, `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`,
//! `fingerprint`.

use chrono::Utc;
use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Severity};
use tocsin_core::plugin::{NormalizedAlert, ParsedPayload};

use crate::common::{Fields, fallback_fingerprint, invalid, severity_word};

/// Extra string fields of an alert copied into annotations (Grafana's links and values).
const EXTRA_ANNOTATIONS: &[(&str, &str)] = &[
    ("generatorURL", "generator_url"),
    ("silenceURL", "silence_url"),
    ("dashboardURL", "dashboard_url"),
    ("panelURL", "panel_url"),
    ("imageURL", "image_url"),
    ("valueString", "value_string"),
];

/// Parses the `alerts` list and the payload-level facts of an Alertmanager-shaped body.
pub(crate) fn parse_group(driver: &'static str, body: &Value) -> Result<ParsedPayload> {
    let f = Fields::root(driver, body)?;
    let list = f.array("alerts")?;
    let mut meta = Map::new();
    for key in [
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
    ] {
        if let Some(v) = f.get(key) {
            meta.insert(key.to_owned(), v.clone());
        }
    }
    for key in ["groupLabels", "commonLabels", "commonAnnotations"] {
        if let Some(v) = f.opt_obj(key)? {
            meta.insert(key.to_owned(), Value::Object(v.map.clone()));
        }
    }
    let mut alerts = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        alerts.push(parse_alert(driver, &format!("alerts[{i}]"), raw)?);
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

/// One alert object.
pub(crate) fn parse_alert(
    driver: &'static str,
    path: &str,
    raw: &Value,
) -> Result<NormalizedAlert> {
    let a = Fields::element(driver, path.to_owned(), raw)?;
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
        raw_payload: raw.clone(),
        acknowledged: false,
    })
}
