//! PagerDuty webhooks: V3 webhook subscriptions, an `event` envelope
//! (<https://developer.pagerduty.com/docs/webhooks-overview>,
//! <https://developer.pagerduty.com/docs/verifying-signatures>), and the older V2 webhook
//! extensions, a `messages` list (<https://support.pagerduty.com/main/docs/v1v2-webhook-extensions>).
//!
//! # Recognised by
//! - V3: an `event` object with string `event_type` and `resource_type`;
//! - V2: a non-empty `messages` array whose first element has a string `event` and an
//!   `incident` object.
//!
//! # Mapping
//! One alert per incident event (V2: per message).
//! - `fingerprint`: the PagerDuty incident id (`PT4KHLK`), so every event of one incident updates
//!   one alert;
//! - `name`: the incident `title` (V2 also `summary`, `trigger_summary_data.subject`);
//! - `status`: `incident.resolved` / `incident.resolve` or incident status `resolved` ->
//!   resolved, anything else firing;
//! - `acknowledged`: `incident.acknowledged` / `incident.acknowledge` or status `acknowledged`
//!   acknowledges the incident; it does **not** resolve the alert;
//! - `severity`: the incident priority when set: `P1`, `P2` -> critical, `P3` -> warning, `P4`,
//!   `P5` -> info; otherwise urgency `high` -> critical, `low` -> warning; none of these ->
//!   **warning**. Labels `pagerduty_priority` and `pagerduty_urgency` keep the originals;
//! - labels: `service`, `incident_number`, `escalation_policy`, `pagerduty_priority`,
//!   `pagerduty_urgency`; annotations: `html_url`, `incident_key`, `agent`, `event_type`;
//! - `started_at`: incident `created_at`; `ended_at`: the event's `occurred_at` when resolved.
//!
//! A `pagey.ping` (sent when a subscription is tested) is accepted with zero alerts. Other
//! events that carry no incident (`incident.annotated`, `service.updated`...) are rejected.
//!
//! # Signature
//! With a shared secret configured, the `X-PagerDuty-Signature` header must hold at least one
//! `v1=<hex HMAC-SHA256 of the raw body>` (several, comma-separated, while a secret rotates).

use std::sync::Arc;

use serde_json::{Map, Value};
use tocsin_core::domain::{AlertStatus, Labels, RawPayload, Severity};
use tocsin_core::plugin::{Headers, Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};
use tocsin_core::{Result, Secret};

use crate::common::{Fields, invalid};

/// The PagerDuty driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct PagerDuty;

/// Its registered name.
pub const NAME: &str = "pagerduty";

/// The signature header (lower-cased, as [`Headers`] holds names).
pub const SIGNATURE_HEADER: &str = "x-pagerduty-signature";

impl Ingestor for PagerDuty {
    fn detect(&self, body: &Value) -> bool {
        let v3 = body.get("event").is_some_and(|e| {
            e.get("event_type").is_some_and(Value::is_string)
                && e.get("resource_type").is_some_and(Value::is_string)
        });
        let v2 = body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.first())
            .is_some_and(|m| {
                m.get("event").is_some_and(Value::is_string)
                    && m.get("incident").is_some_and(Value::is_object)
            });
        v3 || v2
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        let f = Fields::root(NAME, body)?;
        if f.get("messages").is_some() && f.get("event").is_none() {
            return parse_v2(&f);
        }
        let event = f.obj("event")?;
        let event_type = event.str("event_type")?;
        let mut meta = Map::new();
        meta.insert("webhook_version".into(), Value::from("v3"));
        for key in ["id", "event_type", "resource_type", "occurred_at"] {
            if let Some(v) = event.get(key) {
                meta.insert(key.to_owned(), v.clone());
            }
        }
        if event_type == "pagey.ping" {
            return Ok(ParsedPayload {
                alerts: Vec::new(),
                meta: meta.into(),
                empty_reason: Some(
                    "pagey.ping: PagerDuty tested the webhook subscription".to_owned(),
                ),
            });
        }
        let data = event.obj("data")?;
        if event.str("resource_type")? != "incident" || data.opt_str("type")? != Some("incident") {
            return Err(invalid(
                NAME,
                format!(
                    "event type {event_type:?} carries no incident; send incident.triggered, incident.acknowledged, \
                     incident.unacknowledged, incident.escalated, incident.reassigned, incident.priority_updated, \
                     incident.reopened or incident.resolved (or pagey.ping)"
                ),
            ));
        }
        let agent = event
            .opt_obj("agent")?
            .and_then(|a| a.opt_str("summary").ok().flatten())
            .map(str::to_owned);
        let occurred = event.opt_time("occurred_at")?;
        let alert = incident_alert(
            &data,
            event_type,
            "resolved",
            "acknowledged",
            agent,
            occurred,
            event.map,
        )?;
        Ok(ParsedPayload {
            alerts: vec![alert],
            meta: meta.into(),
            empty_reason: None,
        })
    }

    fn verify_signature(&self, raw_body: &[u8], headers: &Headers, secret: &Secret) -> Result<()> {
        let header = headers.get(SIGNATURE_HEADER).ok_or_else(|| {
            crate::signature::failure("the X-PagerDuty-Signature header is missing")
        })?;
        let ok = header
            .split(',')
            .filter_map(|s| s.trim().strip_prefix("v1="))
            .any(|sig| crate::signature::hmac_sha256_matches(secret, raw_body, sig));
        if ok {
            Ok(())
        } else {
            Err(crate::signature::failure(
                "no v1 signature in X-PagerDuty-Signature matches the body",
            ))
        }
    }
}

fn parse_v2(f: &Fields<'_>) -> Result<ParsedPayload> {
    let messages = f.array("messages")?;
    let mut alerts = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let m = Fields::element(NAME, format!("messages[{i}]"), m)?;
        let event = m.str("event")?;
        let incident = m.obj("incident")?;
        let occurred = m.opt_time("created_on")?;
        let event_type = event.replace("incident.trigger", "incident.triggered");
        alerts.push(incident_alert(
            &incident,
            &event_type,
            "resolve",
            "acknowledge",
            None,
            occurred,
            m.map,
        )?);
    }
    if alerts.is_empty() {
        return Err(invalid(NAME, "`messages` is empty"));
    }
    let mut meta = Map::new();
    meta.insert("webhook_version".into(), Value::from("v2"));
    Ok(ParsedPayload {
        alerts,
        meta: meta.into(),
        empty_reason: None,
    })
}

fn incident_alert(
    data: &Fields<'_>,
    event_type: &str,
    resolve_suffix: &str,
    ack_suffix: &str,
    agent: Option<String>,
    occurred: Option<chrono::DateTime<chrono::Utc>>,
    raw: &Map<String, Value>,
) -> Result<NormalizedAlert> {
    let id = data.text("id")?;
    let name = ["title", "summary", "description"]
        .iter()
        .find_map(|k| {
            data.opt_str(k)
                .ok()
                .flatten()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        })
        .or_else(|| {
            data.opt_obj("trigger_summary_data")
                .ok()
                .flatten()
                .and_then(|t| t.opt_str("subject").ok().flatten().map(str::to_owned))
        })
        .ok_or_else(|| invalid(NAME, format!("field `{}.title` is missing", data.path)))?;
    let incident_status = data.opt_str("status")?.unwrap_or("triggered");
    let action = event_type.rsplit('.').next().unwrap_or_default();
    let status = if action == resolve_suffix || incident_status == "resolved" {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    let acknowledged = status == AlertStatus::Firing
        && (action == ack_suffix || incident_status == "acknowledged");
    let priority = match data.get("priority") {
        Some(Value::Object(p)) => p
            .get("summary")
            .or_else(|| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let urgency = data.opt_str("urgency")?.map(str::to_owned);
    let severity = priority
        .as_deref()
        .and_then(|p| match p.trim().to_ascii_uppercase().as_str() {
            "P1" | "P2" => Some(Severity::Critical),
            "P3" => Some(Severity::Warning),
            "P4" | "P5" => Some(Severity::Info),
            _ => None,
        })
        .or(match urgency.as_deref() {
            Some("high") => Some(Severity::Critical),
            Some("low") => Some(Severity::Warning),
            _ => None,
        })
        .unwrap_or(Severity::Warning);
    let mut labels = Labels::new();
    let summary = |key: &str| -> Option<String> {
        data.opt_obj(key).ok().flatten().and_then(|o| {
            o.opt_str("summary")
                .ok()
                .flatten()
                .or(o.opt_str("name").ok().flatten())
                .map(str::to_owned)
        })
    };
    if let Some(s) = summary("service") {
        labels.insert("service".into(), s);
    }
    if let Some(s) = summary("escalation_policy") {
        labels.insert("escalation_policy".into(), s);
    }
    if let Some(n) = data
        .opt_text("number")?
        .or(data.opt_text("incident_number")?)
    {
        labels.insert("incident_number".into(), n);
    }
    if let Some(p) = priority {
        labels.insert("pagerduty_priority".into(), p);
    }
    if let Some(u) = urgency {
        labels.insert("pagerduty_urgency".into(), u);
    }
    let mut annotations = Labels::from([("event_type".to_owned(), event_type.to_owned())]);
    for key in ["html_url", "incident_key"] {
        if let Some(v) = data.opt_str(key)? {
            annotations.insert(key.to_owned(), v.to_owned());
        }
    }
    if let Some(a) = agent {
        annotations.insert("agent".into(), a);
    }
    let description = data
        .opt_str("description")?
        .filter(|d| !d.is_empty() && *d != name)
        .unwrap_or(&name)
        .to_owned();
    Ok(NormalizedAlert {
        fingerprint: id,
        name,
        status,
        severity,
        description,
        labels,
        annotations,
        started_at: data.opt_time("created_at")?,
        ended_at: (status == AlertStatus::Resolved)
            .then(|| occurred.unwrap_or_else(chrono::Utc::now)),
        raw_payload: RawPayload::from(&Value::Object(raw.clone())),
        acknowledged,
    })
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "PagerDuty webhooks V3 (event envelope) and V2 (messages), with X-PagerDuty-Signature verification.",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(PagerDuty)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);
