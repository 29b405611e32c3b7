//! Opsgenie outgoing webhook integration
//! (<https://support.atlassian.com/opsgenie/docs/integrate-opsgenie-with-outgoing-webhooks/>):
//! `{"action", "alert": {...}, "source", "integrationName", "integrationType"}` for the alert
//! actions Create, Close, Acknowledge, UnAcknowledge, AddNote, Delete, Escalate, AssignOwnership,
//! TakeOwnership, AddRecipient, AddTeam, AddTags, RemoveTags, UpdatePriority, UpdateMessage,
//! UpdateDescription, Snooze, CustomAction...
//!
//! # Recognised by
//! A string `action` and an `alert` object with `alertId`, plus one of `integrationType`,
//! `integrationName`, `integrationId` or a `source` object.
//!
//! # Mapping
//! - `fingerprint`: the alert's `alias` (Opsgenie's own de-duplication key, which it sets to the
//!   alert id when the sender gave none), else `alertId`;
//! - `name`: `message`; `description`: `description`, else `message`;
//! - `status`: `Close` and `Delete` -> resolved; every other action -> firing, except that an
//!   action on an alert whose `status` is `closed` keeps it resolved (a note added to a closed
//!   alert does not re-fire it);
//! - `acknowledged`: `Acknowledge` (or `acknowledged: true` on the alert) acknowledges the
//!   incident; it does **not** resolve the alert;
//! - `severity` from `priority`: `P1`, `P2` -> critical, `P3` -> warning, `P4`, `P5` -> info,
//!   absent or unknown -> **warning** (label `opsgenie_priority` keeps the original);
//! - labels: `tags` (`k:v` -> `k=v`, bare -> `tag=true`), `details` (string values), `entity`,
//!   `team`, `opsgenie_priority`; annotations: `action`, `tiny_id`, `source`, `note` (AddNote),
//!   `username`;
//! - times: `createdAt` (epoch milliseconds) -> `started_at`; `updatedAt` when resolved.

use std::sync::Arc;

use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::plugin::{Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};

use crate::common::{Fields, add_tags, invalid, tag_list};

/// The Opsgenie driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opsgenie;

/// Its registered name.
pub const NAME: &str = "opsgenie";

impl Ingestor for Opsgenie {
    fn detect(&self, body: &Value) -> bool {
        let Some(m) = body.as_object() else {
            return false;
        };
        m.get("action").is_some_and(Value::is_string)
            && m.get("alert").and_then(|a| a.get("alertId")).is_some()
            && (m.contains_key("integrationType")
                || m.contains_key("integrationName")
                || m.contains_key("integrationId")
                || m.get("source").is_some_and(Value::is_object))
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        let f = Fields::root(NAME, body)?;
        let action = f.str("action")?;
        let a = f.obj("alert")?;
        let alert_id = a.text("alertId")?;
        let fingerprint = a
            .opt_text("alias")?
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(alert_id.clone());
        let message = a
            .opt_str("message")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| invalid(NAME, "missing field `alert.message`"))?;
        let closed = a
            .opt_str("status")?
            .is_some_and(|s| s.eq_ignore_ascii_case("closed"));
        let status = match action {
            "Close" | "Delete" => AlertStatus::Resolved,
            _ if closed => AlertStatus::Resolved,
            _ => AlertStatus::Firing,
        };
        let acked_flag = matches!(a.get("acknowledged"), Some(Value::Bool(true)));
        let acknowledged = status == AlertStatus::Firing
            && (action == "Acknowledge" || (acked_flag && action != "UnAcknowledge"));
        let priority = a.opt_str("priority")?.map(str::to_owned);
        let severity = match priority
            .as_deref()
            .map(str::trim)
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("P1" | "P2") => Severity::Critical,
            Some("P3") => Severity::Warning,
            Some("P4" | "P5") => Severity::Info,
            _ => Severity::Warning,
        };
        let mut labels = Labels::new();
        for (key, label) in [("entity", "entity"), ("team", "team")] {
            if let Some(v) = a.opt_text(key)?.filter(|v| !v.is_empty()) {
                labels.insert(label.into(), v);
            }
        }
        if let Some(p) = &priority {
            labels.insert("opsgenie_priority".into(), p.clone());
        }
        if let Some(d) = a.opt_obj("details")? {
            for (k, v) in d.map {
                if let Some(s) = v.as_str() {
                    labels.entry(k.clone()).or_insert_with(|| s.to_owned());
                }
            }
        }
        add_tags(
            &mut labels,
            tag_list(a.get("tags")).iter().map(String::as_str),
        );
        let mut annotations = Labels::from([("action".to_owned(), action.to_owned())]);
        for (key, ann) in [
            ("tinyId", "tiny_id"),
            ("source", "source"),
            ("username", "username"),
            ("note", "note"),
        ] {
            if let Some(v) = a.opt_text(key)?.filter(|v| !v.is_empty()) {
                annotations.insert(ann.into(), v);
            }
        }
        if let Some(n) = f.opt_text("note")? {
            annotations.insert("note".into(), n);
        }
        let description = a
            .opt_str("description")?
            .filter(|d| !d.is_empty())
            .unwrap_or(message)
            .to_owned();
        let mut meta = Map::new();
        for key in [
            "action",
            "integrationName",
            "integrationType",
            "integrationId",
        ] {
            if let Some(v) = f.get(key) {
                meta.insert(key.to_owned(), v.clone());
            }
        }
        if let Some(s) = f.opt_obj("source")? {
            meta.insert("source".into(), Value::Object(s.map.clone()));
        }
        meta.insert("alertId".into(), Value::from(alert_id));
        let updated = a.opt_time("updatedAt")?;
        Ok(ParsedPayload {
            alerts: vec![NormalizedAlert {
                fingerprint,
                name: message.to_owned(),
                status,
                severity,
                description,
                labels,
                annotations,
                started_at: a.opt_time("createdAt")?,
                ended_at: (status == AlertStatus::Resolved)
                    .then(|| updated.unwrap_or_else(chrono::Utc::now)),
                raw_payload: body.into(),
                acknowledged,
            }],
            meta: meta.into(),
            empty_reason: None,
        })
    }
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "Opsgenie outgoing webhook (Create, Close, Acknowledge, AddNote and the other alert actions).",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(Opsgenie)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);
