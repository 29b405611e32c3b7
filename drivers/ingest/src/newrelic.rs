//! New Relic alerts: the workflow webhook destination's default payload
//! (<https://docs.newrelic.com/docs/alerts/get-notified/notification-integrations/#webhook>,
//! variables: <https://docs.newrelic.com/docs/alerts/get-notified/custom-variables-incident-workflows/>)
//! and the legacy alert channel webhook (`incident_id`, `current_state`, `condition_name`...,
//! <https://docs.newrelic.com/docs/alerts/classic-alerts/customize-your-webhook-payload/>).
//!
//! # Recognised by
//! - workflow: `issueUrl`, `issuePageUrl` or `issueId`; or a New Relic `state` (`CREATED`,
//!   `ACTIVATED`, `ACKNOWLEDGED`, `CLOSED`) with a New Relic `priority` and one of
//!   `totalIncidents`, `alertPolicyNames`, `alertConditionNames`;
//! - legacy: `incident_id` with `current_state` and `condition_name` or `policy_name`.
//!
//! # Mapping (workflow)
//! - `fingerprint`: `newrelic-issue-<issue id>` (`id` / `issueId`);
//! - `name`: the first of `alertConditionNames`, else `title`; `description`: `title`;
//! - `status`: `state` `CLOSED` -> resolved; `ACTIVATED`, `CREATED` -> firing; `ACKNOWLEDGED` ->
//!   firing and acknowledged;
//! - `severity` from `priority`: `CRITICAL`, `HIGH` -> critical, `MEDIUM` -> warning, `LOW` ->
//!   info, else **warning** (label `newrelic_priority` keeps it);
//! - labels: `instance` (the first of `impactedEntities`, so incidents group per entity),
//!   `policy`, `workflow`, `source`, `newrelic_priority`; tags from `tags`; annotation
//!   `newrelic_state`;
//! - times: `createdAt` (epoch milliseconds) -> `started_at`; `closedAt` or `updatedAt` ->
//!   `ended_at` when closed; annotation `issue_url`.
//!
//! # Mapping (legacy)
//! - `fingerprint`: `newrelic-incident-<incident_id>`; `name`: `condition_name`;
//! - `status`: `current_state` `closed` -> resolved, `acknowledged` -> firing and acknowledged,
//!   `open` -> firing;
//! - `severity`: `CRITICAL` -> critical, `WARNING` -> warning, `INFO` -> info, else **warning**;
//! - `description`: `details`; labels `policy`, `instance` (first target's name),
//!   `condition_id`, `account`; annotations `incident_url`, `runbook_url`, `violation_chart_url`;
//! - time: `timestamp` (epoch milliseconds).

use std::sync::Arc;

use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::plugin::{Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};

use crate::common::{Fields, add_tags, invalid, tag_list};

/// The New Relic driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRelic;

/// Its registered name.
pub const NAME: &str = "newrelic";

const STATES: &[&str] = &["CREATED", "ACTIVATED", "ACKNOWLEDGED", "CLOSED"];
const PRIORITIES: &[&str] = &["CRITICAL", "HIGH", "MEDIUM", "LOW"];

fn is_workflow(m: &Map<String, Value>) -> bool {
    let has = |k: &str| m.get(k).is_some_and(|v| !v.is_null());
    let nr_enum = |k: &str, set: &[&str]| {
        m.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| set.contains(&s))
    };
    has("issueUrl")
        || has("issuePageUrl")
        || has("issueId")
        || (nr_enum("state", STATES)
            && nr_enum("priority", PRIORITIES)
            && (has("totalIncidents") || has("alertPolicyNames") || has("alertConditionNames")))
}

fn is_legacy(m: &Map<String, Value>) -> bool {
    m.contains_key("incident_id")
        && m.get("current_state").is_some_and(Value::is_string)
        && (m.contains_key("condition_name") || m.contains_key("policy_name"))
}

impl Ingestor for NewRelic {
    fn detect(&self, body: &Value) -> bool {
        body.as_object()
            .is_some_and(|m| is_workflow(m) || is_legacy(m))
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        let f = Fields::root(NAME, body)?;
        if is_legacy(f.map) && !is_workflow(f.map) {
            parse_legacy(&f, body)
        } else {
            parse_workflow(&f, body)
        }
    }
}

fn first_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(a) => a
            .iter()
            .find_map(|x| x.as_str().filter(|s| !s.is_empty()).map(str::to_owned)),
        _ => None,
    }
}

fn parse_workflow(f: &Fields<'_>, body: &Value) -> Result<ParsedPayload> {
    let id = match f.opt_text("issueId")? {
        Some(id) => id,
        None => f.text("id")?,
    };
    let state = f.str("state")?;
    let (status, acknowledged) = match state.to_ascii_uppercase().as_str() {
        "CLOSED" => (AlertStatus::Resolved, false),
        "ACKNOWLEDGED" => (AlertStatus::Firing, true),
        "ACTIVATED" | "CREATED" => (AlertStatus::Firing, false),
        other => {
            return Err(invalid(
                NAME,
                format!(
                    "field `state` must be one of {}, got {other:?}",
                    STATES.join(", ")
                ),
            ));
        }
    };
    let title = f.opt_str("title")?.unwrap_or_default().to_owned();
    let name = first_string(f.get("alertConditionNames"))
        .or_else(|| (!title.is_empty()).then(|| title.clone()))
        .ok_or_else(|| invalid(NAME, "missing field `alertConditionNames` (or `title`)"))?;
    let priority = f.opt_str("priority")?.map(str::to_owned);
    let severity = match priority.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("CRITICAL" | "HIGH") => Severity::Critical,
        Some("MEDIUM") => Severity::Warning,
        Some("LOW") => Severity::Info,
        _ => Severity::Warning,
    };
    let mut labels = Labels::new();
    if let Some(e) = first_string(f.get("impactedEntities"))
        .or_else(|| first_string(f.get("entitiesData.names")))
    {
        labels.insert("instance".into(), e);
    }
    for (key, label) in [
        ("alertPolicyNames", "policy"),
        ("workflowName", "workflow"),
        ("sources", "source"),
    ] {
        if let Some(v) = first_string(f.get(key)) {
            labels.insert(label.into(), v);
        }
    }
    if let Some(p) = &priority {
        labels.insert("newrelic_priority".into(), p.clone());
    }
    add_tags(
        &mut labels,
        tag_list(f.get("tags")).iter().map(String::as_str),
    );
    let mut annotations = Labels::from([("newrelic_state".to_owned(), state.to_owned())]);
    if let Some(u) = f.opt_str("issueUrl")?.or(f.opt_str("issuePageUrl")?) {
        annotations.insert("issue_url".into(), u.to_owned());
    }
    if let Some(t) = f.opt_text("trigger")? {
        annotations.insert("trigger".into(), t);
    }
    let ended = match f.opt_time("closedAt")? {
        Some(t) => Some(t),
        None => f.opt_time("updatedAt")?,
    };
    let mut meta = Map::new();
    meta.insert("format".into(), Value::from("workflow"));
    if let Some(n) = f.get("totalIncidents") {
        meta.insert("totalIncidents".into(), n.clone());
    }
    Ok(ParsedPayload {
        alerts: vec![NormalizedAlert {
            fingerprint: format!("newrelic-issue-{id}"),
            name,
            status,
            severity,
            description: title,
            labels,
            annotations,
            started_at: f.opt_time("createdAt")?,
            ended_at: (status == AlertStatus::Resolved)
                .then(|| ended.unwrap_or_else(chrono::Utc::now)),
            raw_payload: body.into(),
            acknowledged,
        }],
        meta: meta.into(),
        empty_reason: None,
    })
}

fn parse_legacy(f: &Fields<'_>, body: &Value) -> Result<ParsedPayload> {
    let id = f.text("incident_id")?;
    let state = f.str("current_state")?;
    let (status, acknowledged) = match state.to_ascii_lowercase().as_str() {
        "closed" => (AlertStatus::Resolved, false),
        "acknowledged" => (AlertStatus::Firing, true),
        "open" => (AlertStatus::Firing, false),
        other => {
            return Err(invalid(
                NAME,
                format!(
                    "field `current_state` must be open, acknowledged or closed, got {other:?}"
                ),
            ));
        }
    };
    let name = match f.opt_str("condition_name")?.filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => f.str("policy_name")?.to_owned(),
    };
    let sev = f.opt_str("severity")?.map(str::to_owned);
    let severity = match sev.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("CRITICAL") => Severity::Critical,
        Some("WARNING") => Severity::Warning,
        Some("INFO") => Severity::Info,
        _ => Severity::Warning,
    };
    let mut labels = Labels::new();
    if let Some(p) = f.opt_str("policy_name")? {
        labels.insert("policy".into(), p.to_owned());
    }
    if let Some(c) = f.opt_text("condition_id")? {
        labels.insert("condition_id".into(), c);
    }
    if let Some(a) = f.opt_text("account_name")? {
        labels.insert("account".into(), a);
    }
    if let Some(s) = sev {
        labels.insert("newrelic_severity".into(), s);
    }
    if let Some(targets) = f.opt_array("targets")?
        && let Some(first) = targets.first()
    {
        let t = Fields::element(NAME, "targets[0]".into(), first)?;
        if let Some(n) = t.opt_text("name")? {
            labels.insert("instance".into(), n);
        }
        if let Some(p) = t.opt_text("product")? {
            labels.insert("product".into(), p);
        }
    }
    let mut annotations = Labels::new();
    for key in [
        "incident_url",
        "runbook_url",
        "violation_chart_url",
        "incident_acknowledge_url",
    ] {
        if let Some(v) = f.opt_str(key)?.filter(|v| !v.is_empty()) {
            annotations.insert(key.to_owned(), v.to_owned());
        }
    }
    let at = f.opt_time("timestamp")?;
    let mut meta = Map::new();
    meta.insert("format".into(), Value::from("legacy"));
    Ok(ParsedPayload {
        alerts: vec![NormalizedAlert {
            fingerprint: format!("newrelic-incident-{id}"),
            name,
            status,
            severity,
            description: f.opt_str("details")?.unwrap_or_default().to_owned(),
            labels,
            annotations,
            started_at: if status == AlertStatus::Firing {
                at
            } else {
                None
            },
            ended_at: (status == AlertStatus::Resolved)
                .then(|| at.unwrap_or_else(chrono::Utc::now)),
            raw_payload: body.into(),
            acknowledged,
        }],
        meta: meta.into(),
        empty_reason: None,
    })
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "New Relic workflow webhook (default payload) and legacy alert channel webhook.",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(NewRelic)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);
