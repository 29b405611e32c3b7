//! Datadog Webhooks integration (<https://docs.datadoghq.com/integrations/webhooks/>): its default
//! payload (`body`, `last_updated`, `event_type`, `title`, `date`, `org`, `id`) and the common
//! custom payloads built from its `$VARIABLES` (`alert_id`, `alert_title`, `alert_transition`,
//! `alert_type`, `alert_scope`, `alert_priority`, `tags`, `hostname`, `date_posix`...).
//!
//! # Recognised by
//! One of `alert_transition`, `alert_cycle_key`, `aggreg_key`; or `alert_id` with `alert_type`,
//! `alert_title` or `alert_status`; or the default payload's `title`, `body`, `event_type`,
//! `last_updated` and an `org` object.
//!
//! # Mapping
//! - `name`: `alert_title` / `title` / `event_title` without the leading `[Triggered on {..}]`,
//!   `[P1]`... brackets;
//! - transition: `alert_transition`, else the title's leading word (`[Triggered`, `[Recovered`,
//!   `[Warn`, `[No Data`, `[Re-Triggered`...);
//! - `status`: transition `Recovered` / `Resolved` or `alert_type` `success` -> resolved, else
//!   firing;
//! - `severity` from `alert_type`: `error` -> critical, `warning` -> warning, `info`, `success`
//!   -> info; without it from the transition: `Triggered` -> critical, `Warn`, `No Data` ->
//!   warning; else **warning**. Label `datadog_alert_type` keeps the original;
//! - scope: `alert_scope`, else the `{...}` of the title (`on {host:web-1,env:prod}`); its tags
//!   become labels;
//! - `fingerprint`: `datadog-<alert_id>` for a monitor without scope, `datadog-<alert_id>-<scope>`
//!   (scope tags sorted) otherwise, so a multi-host monitor is one alert per host; without
//!   `alert_id` (the default payload) the fallback hash of source, name and scope labels;
//! - labels: scope and `tags` (`k:v` -> `k=v`, bare -> `tag=true`), `host` from `hostname`,
//!   `monitor_id`, `alert_metric`, `datadog_priority`, `event_type`;
//! - `description`: `text_only_msg`, `event_msg`, `body`, `message`;
//! - times: `date_posix` (epoch seconds), `date` / `last_updated` (epoch milliseconds): the size
//!   of the number tells them apart; `ended_at` is that time when resolved;
//! - annotations: `link`, `snapshot`, `alert_query`, `alert_status`, `aggreg_key`,
//!   `alert_cycle_key`, `org`.

use std::sync::Arc;

use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::plugin::{Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};

use crate::common::{Fields, add_tags, fallback_fingerprint, invalid, present, tag_list};

/// The Datadog driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Datadog;

/// Its registered name.
pub const NAME: &str = "datadog";

impl Ingestor for Datadog {
    fn detect(&self, body: &Value) -> bool {
        let Some(m) = body.as_object() else {
            return false;
        };
        let has = |k: &str| m.get(k).is_some_and(|v| !v.is_null());
        let custom = has("alert_transition")
            || has("alert_cycle_key")
            || has("aggreg_key")
            || (has("alert_id")
                && (has("alert_type") || has("alert_title") || has("alert_status")));
        let default = has("title")
            && has("body")
            && has("event_type")
            && has("last_updated")
            && m.get("org").is_some_and(Value::is_object);
        custom || default
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        let f = Fields::root(NAME, body)?;
        let text = |k: &str| -> Result<Option<String>> {
            Ok(f.opt_text(k)?.filter(|v| present(&Value::from(v.as_str()))))
        };
        let raw_title = ["alert_title", "title", "event_title"]
            .iter()
            .map(|k| text(k))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .next()
            .ok_or_else(|| invalid(NAME, "missing field `alert_title` (or `title`)"))?;
        let (prefixes, name) = split_title(&raw_title);
        if name.is_empty() {
            return Err(invalid(
                NAME,
                format!("the title {raw_title:?} has no alert name after its [..] prefixes"),
            ));
        }
        let transition = text("alert_transition")?.unwrap_or_else(|| {
            prefixes
                .iter()
                .map(|p| p.split(" on ").next().unwrap_or_default().trim().to_owned())
                .find(|p| is_transition(p))
                .unwrap_or_default()
        });
        let alert_type = text("alert_type")?.map(|t| t.to_ascii_lowercase());
        let t = transition.to_ascii_lowercase();
        let status =
            if t == "recovered" || t == "resolved" || alert_type.as_deref() == Some("success") {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            };
        let severity = match alert_type.as_deref() {
            Some("error") => Severity::Critical,
            Some("warning") => Severity::Warning,
            Some("info" | "success") => Severity::Info,
            _ => match t.trim_start_matches("re-") {
                "triggered" => Severity::Critical,
                "warn" | "no data" => Severity::Warning,
                _ => Severity::Warning,
            },
        };
        let scope = match text("alert_scope")? {
            Some(s) => s,
            None => prefixes
                .iter()
                .find_map(|p| {
                    p.split_once('{')
                        .and_then(|(_, r)| r.split_once('}'))
                        .map(|(s, _)| s.to_owned())
                })
                .unwrap_or_default(),
        };
        let mut scope_tags: Vec<String> = scope
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s != "*")
            .collect();
        scope_tags.sort();
        let mut scope_labels = Labels::new();
        add_tags(&mut scope_labels, scope_tags.iter().map(String::as_str));
        let mut labels = scope_labels.clone();
        add_tags(
            &mut labels,
            tag_list(f.get("tags")).iter().map(String::as_str),
        );
        if let Some(h) = text("hostname")? {
            labels.entry("host".into()).or_insert(h);
        }
        for (from, to) in [
            ("alert_id", "monitor_id"),
            ("alert_metric", "alert_metric"),
            ("alert_priority", "datadog_priority"),
            ("event_type", "event_type"),
        ] {
            if let Some(v) = text(from)? {
                labels.insert(to.to_owned(), v);
            }
        }
        if let Some(a) = &alert_type {
            labels.insert("datadog_alert_type".into(), a.clone());
        }
        let fingerprint = match text("alert_id")? {
            Some(id) if scope_tags.is_empty() => format!("datadog-{id}"),
            Some(id) => format!("datadog-{id}-{}", scope_tags.join(",")),
            None => fallback_fingerprint(NAME, &name, &scope_labels),
        };
        let description = ["text_only_msg", "event_msg", "body", "message"]
            .iter()
            .map(|k| text(k))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
        let mut at = None;
        for k in ["date_posix", "date", "last_updated"] {
            if f.get(k).is_some_and(present) {
                at = f.opt_time(k)?;
                if at.is_some() {
                    break;
                }
            }
        }
        let mut annotations = Labels::from([("title".to_owned(), raw_title.clone())]);
        if !transition.is_empty() {
            annotations.insert("transition".into(), transition.clone());
        }
        for key in [
            "link",
            "snapshot",
            "alert_query",
            "alert_status",
            "aggreg_key",
            "alert_cycle_key",
            "id",
            "event_id",
        ] {
            if let Some(v) = text(key)? {
                annotations.insert(key.to_owned(), v);
            }
        }
        if let Some(org) = f.opt_obj("org")?
            && let Some(n) = org.opt_text("name")?
        {
            annotations.insert("org".into(), n);
        }
        let mut meta = Map::new();
        meta.insert(
            "format".into(),
            Value::from(
                if f.get("alert_id").is_some() || f.get("alert_transition").is_some() {
                    "custom"
                } else {
                    "default"
                },
            ),
        );
        Ok(ParsedPayload {
            alerts: vec![NormalizedAlert {
                fingerprint,
                name,
                status,
                severity,
                description,
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
                acknowledged: false,
            }],
            meta: meta.into(),
            empty_reason: None,
        })
    }
}

fn is_transition(p: &str) -> bool {
    let p = p.to_ascii_lowercase();
    let p = p.trim_start_matches("re-");
    matches!(
        p,
        "triggered" | "recovered" | "resolved" | "warn" | "no data" | "renotify"
    )
}

/// Splits `[P1] [Triggered on {host:a}] CPU high` into its bracketed prefixes and the rest.
fn split_title(title: &str) -> (Vec<String>, String) {
    let mut rest = title.trim();
    let mut prefixes = Vec::new();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else { break };
        prefixes.push(inner[..end].to_owned());
        rest = inner[end + 1..].trim_start();
    }
    (prefixes, rest.trim().to_owned())
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "Datadog Webhooks integration: default payload and custom $VARIABLE payloads.",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(Datadog)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_lose_their_prefixes() {
        let (p, n) = split_title("[P1] [Triggered on {host:a,env:b}] CPU high");
        assert_eq!(p, vec!["P1", "Triggered on {host:a,env:b}"]);
        assert_eq!(n, "CPU high");
    }
}
