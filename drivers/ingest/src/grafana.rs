//! Grafana alerting webhooks: the unified alerting webhook contact point
//! (<https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/>)
//! and the legacy dashboard alerting notification with `evalMatches`
//! (<https://grafana.com/docs/grafana/v8.5/alerting/old-alerting/notifications/#webhook>).
//!
//! # Recognised by
//! - unified: an `alerts` array with `receiver` and an `orgId` number or `version: "1"` (Grafana adds `orgId`,
//!   `version: "1"`, `state`, `title`; Alertmanager sends none of them and `version: "4"`);
//! - legacy: an `evalMatches` array with `ruleId` or `ruleName`, and a `state` string.
//!
//! # Mapping (unified)
//! As Alertmanager: one alert per element of `alerts` (empty list accepted with zero alerts);
//! `fingerprint` the alert's own (else the fallback hash); `name` label `alertname`; severity from
//! label `severity` (`critical`, `page`, `error`, `high`, `major` -> critical; `warning`,
//! `warn`, `medium`, `minor` -> warning; `info`, `low`, `none` -> info; absent or unknown ->
//! **warning**); description annotation `description`, else `summary`; `startsAt`/`endsAt`
//! (a firing alert has no end); `generatorURL`, `silenceURL`, `dashboardURL`, `panelURL` and
//! `valueString` become annotations `generator_url`, `silence_url`, `dashboard_url`,
//! `panel_url`, `value_string`.
//!
//! # Mapping (legacy)
//! One alert per rule: `fingerprint` `grafana-rule-<orgId>-<ruleId>` (else the fallback hash of
//! source, `ruleName` and `tags`); `name` `ruleName`; `status`: `state` `ok` -> resolved,
//! `alerting`, `no_data`, `pending` -> firing (`paused` is rejected: it is no alert); severity:
//! tag `severity` if it names one, else `alerting` -> critical, `no_data` -> warning, `pending`
//! -> warning; description `message`, else `title`; `tags` become labels, `evalMatches` an
//! annotation `eval_matches` (JSON), `ruleUrl` and `imageUrl` annotations `rule_url`, `image_url`.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Severity};
use tocsin_core::plugin::{Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};

use crate::common::{Fields, fallback_fingerprint, invalid, severity_word};

/// The Grafana driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grafana;

/// Its registered name.
pub const NAME: &str = "grafana";

fn is_unified(body: &Value) -> bool {
    body.get("alerts").is_some_and(Value::is_array)
        && body.get("receiver").is_some_and(Value::is_string)
        && (body.get("orgId").is_some_and(Value::is_number)
            || body.get("version").and_then(Value::as_str) == Some("1"))
}

fn is_legacy(body: &Value) -> bool {
    body.get("evalMatches").is_some_and(Value::is_array)
        && (body.get("ruleId").is_some() || body.get("ruleName").is_some())
        && body.get("state").is_some_and(Value::is_string)
}

impl Ingestor for Grafana {
    fn detect(&self, body: &Value) -> bool {
        is_unified(body) || is_legacy(body)
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        if is_legacy_body(body) {
            parse_legacy(body)
        } else {
            crate::prometheus::parse_group(NAME, body.clone())
        }
    }

    fn parse_owned(&self, body: Value) -> Result<ParsedPayload> {
        if is_legacy_body(&body) {
            parse_legacy(&body)
        } else {
            crate::prometheus::parse_group(NAME, body)
        }
    }

    /// Unified alerting's bodies only: a legacy body has no `alerts` list, which the direct
    /// parse requires, so it goes through `parse_owned`.
    fn parse_text(&self, text: &str) -> Option<ParsedPayload> {
        crate::prometheus::parse_group_text(NAME, text)
    }
}

/// A legacy (pre-unified) alert: evaluation matches and no `alerts` list.
fn is_legacy_body(body: &Value) -> bool {
    body.get("evalMatches").is_some() && body.get("alerts").is_none()
}

fn parse_legacy(body: &Value) -> Result<ParsedPayload> {
    let f = Fields::root(NAME, body)?;
    let state = f.str("state")?;
    let status = match state {
        "ok" => AlertStatus::Resolved,
        "alerting" | "no_data" | "pending" => AlertStatus::Firing,
        other => {
            return Err(invalid(
                NAME,
                format!(
                    "field `state` {other:?} carries no alert; expected \"alerting\", \"ok\", \"no_data\" or \"pending\""
                ),
            ));
        }
    };
    let name = match f.opt_str("ruleName")?.filter(|n| !n.trim().is_empty()) {
        Some(n) => n.to_owned(),
        None => f
            .opt_str("title")?
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| invalid(NAME, "missing field `ruleName`"))?,
    };
    let labels = f.string_map("tags")?;
    let severity = labels
        .get("severity")
        .and_then(|s| severity_word(s))
        .unwrap_or(match state {
            "alerting" => Severity::Critical,
            _ => Severity::Warning,
        });
    let mut annotations =
        tocsin_core::domain::Labels::from([("grafana_state".to_owned(), state.to_owned())]);
    for (from, to) in [
        ("ruleUrl", "rule_url"),
        ("imageUrl", "image_url"),
        ("title", "title"),
    ] {
        if let Some(v) = f.opt_str(from)?.filter(|v| !v.is_empty()) {
            annotations.insert(to.to_owned(), v.to_owned());
        }
    }
    let matches = f.array("evalMatches")?;
    if !matches.is_empty() {
        annotations.insert(
            "eval_matches".to_owned(),
            Value::Array(matches.clone()).to_string(),
        );
    }
    let description = f
        .opt_str("message")?
        .filter(|m| !m.is_empty())
        .or(f.opt_str("title")?)
        .unwrap_or_default()
        .to_owned();
    let rule_id = f.opt_text("ruleId")?;
    let org_id = f.opt_text("orgId")?.unwrap_or_else(|| "1".to_owned());
    let fingerprint = match rule_id {
        Some(id) => format!("grafana-rule-{org_id}-{id}"),
        None => fallback_fingerprint(NAME, &name, &labels),
    };
    let mut meta = Map::new();
    for key in [
        "dashboardId",
        "panelId",
        "orgId",
        "ruleId",
        "ruleUrl",
        "state",
        "title",
    ] {
        if let Some(v) = f.get(key) {
            meta.insert(key.to_owned(), v.clone());
        }
    }
    meta.insert("format".to_owned(), Value::from("legacy"));
    let now = Utc::now();
    Ok(ParsedPayload {
        alerts: vec![NormalizedAlert {
            fingerprint,
            name,
            status,
            severity,
            description,
            labels,
            annotations,
            started_at: None,
            ended_at: (status == AlertStatus::Resolved).then_some(now),
            raw_payload: body.into(),
            acknowledged: false,
        }],
        meta: meta.into(),
        empty_reason: None,
    })
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "Grafana unified alerting webhook contact point, and legacy dashboard alerts (evalMatches).",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(Grafana)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);
