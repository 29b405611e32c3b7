//! tocsin's own JSON alert shape, for senders without a driver of their own: one alert object, or
//! `{"alerts": [alert, ...]}`.
//!
//! ```json
//! {
//!   "name": "HighCPU",
//!   "status": "firing",
//!   "severity": "critical",
//!   "description": "CPU above 95% for 5 minutes",
//!   "fingerprint": "cpu-web-1",
//!   "labels": {"instance": "web-1"},
//!   "annotations": {"runbook": "https://runbooks.example/cpu"},
//!   "tags": ["env:prod", "canary"],
//!   "started_at": "2024-05-01T10:00:00Z",
//!   "ended_at": null,
//!   "acknowledged": false
//! }
//! ```
//!
//! # Fields
//! - `name` (required, non-empty string);
//! - `status`: `firing` (default) or `resolved`;
//! - `severity`: `critical`, `warning` (default) or `info`, or a common synonym (`error`, `high`,
//!   `page` -> critical; `warn`, `medium` -> warning; `low`, `notice` -> info); anything else is
//!   rejected;
//! - `description`, `fingerprint`: strings; without `fingerprint`, the fallback hash of source,
//!   name and labels;
//! - `labels`, `annotations`: objects of strings (numbers and booleans are turned into text);
//! - `tags`: an array of strings or one comma-separated string (`k:v` -> `k=v`, bare ->
//!   `tag=true`);
//! - `started_at`, `ended_at`: RFC 3339 or epoch seconds / milliseconds (told apart by size);
//!   a resolved alert without `ended_at` ends when received;
//! - `acknowledged`: boolean.
//!
//! Unknown fields are rejected, naming the field, so a typo never silently drops data.
//!
//! # Recognised by
//! Only these fields at the top level and a string `name`; or only `alerts`, a non-empty array
//! whose elements all have a string `name`.
//!
//! # Signature
//! With a shared secret configured, the header `X-Tocsin-Signature` must be
//! `sha256=<hex HMAC-SHA256 of the raw body>`.

use std::sync::Arc;

use serde_json::Value;
use tocsin_core::domain::{AlertStatus, Severity};
use tocsin_core::plugin::{Headers, Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};
use tocsin_core::{Result, Secret};

use crate::common::{Fields, add_tags, fallback_fingerprint, invalid, severity_word, tag_list};

/// The generic driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Generic;

/// Its registered name.
pub const NAME: &str = "generic";

/// The signature header (lower-cased).
pub const SIGNATURE_HEADER: &str = "x-tocsin-signature";

/// The fields of one alert.
pub const FIELDS: &[&str] = &[
    "name",
    "status",
    "severity",
    "description",
    "fingerprint",
    "labels",
    "annotations",
    "tags",
    "started_at",
    "ended_at",
    "acknowledged",
];

fn is_alert(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.get("name").is_some_and(Value::is_string)
            && m.keys().all(|k| FIELDS.contains(&k.as_str()))
    })
}

impl Ingestor for Generic {
    fn detect(&self, body: &Value) -> bool {
        let Some(m) = body.as_object() else {
            return false;
        };
        if m.len() == 1
            && let Some(Value::Array(a)) = m.get("alerts")
        {
            return !a.is_empty() && a.iter().all(is_alert);
        }
        is_alert(body)
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        let f = Fields::root(NAME, body)?;
        let mut alerts = Vec::new();
        if f.get("alerts").is_some() && f.get("name").is_none() {
            if let Some(k) = f.map.keys().find(|k| *k != "alerts") {
                return Err(invalid(
                    NAME,
                    format!("unknown field `{k}` beside `alerts`"),
                ));
            }
            let list = f.array("alerts")?;
            if list.is_empty() {
                return Err(invalid(NAME, "`alerts` is empty: send at least one alert"));
            }
            for (i, a) in list.iter().enumerate() {
                alerts.push(parse_alert(
                    &Fields::element(NAME, format!("alerts[{i}]"), a)?,
                    a,
                )?);
            }
        } else {
            alerts.push(parse_alert(&f, body)?);
        }
        Ok(ParsedPayload {
            alerts,
            meta: Default::default(),
            empty_reason: None,
        })
    }

    fn verify_signature(&self, raw_body: &[u8], headers: &Headers, secret: &Secret) -> Result<()> {
        let header = headers
            .get(SIGNATURE_HEADER)
            .ok_or_else(|| crate::signature::failure("the X-Tocsin-Signature header is missing"))?;
        let sig = header
            .trim()
            .strip_prefix("sha256=")
            .ok_or_else(|| crate::signature::failure("X-Tocsin-Signature must be sha256=<hex>"))?;
        if crate::signature::hmac_sha256_matches(secret, raw_body, sig) {
            Ok(())
        } else {
            Err(crate::signature::failure(
                "X-Tocsin-Signature does not match the body",
            ))
        }
    }
}

fn parse_alert(f: &Fields<'_>, raw: &Value) -> Result<NormalizedAlert> {
    let at = |k: &str| {
        if f.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", f.path)
        }
    };
    if let Some(k) = f.map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            NAME,
            format!(
                "unknown field `{}`; the fields are {}",
                at(k),
                FIELDS.join(", ")
            ),
        ));
    }
    let name = f.str("name")?.trim().to_owned();
    if name.is_empty() {
        return Err(invalid(NAME, format!("field `{}` is empty", at("name"))));
    }
    let status = match f.opt_str("status")? {
        None | Some("firing") => AlertStatus::Firing,
        Some("resolved") => AlertStatus::Resolved,
        Some(other) => {
            return Err(invalid(
                NAME,
                format!(
                    "field `{}` must be \"firing\" or \"resolved\", got {other:?}",
                    at("status")
                ),
            ));
        }
    };
    let severity = match f.opt_str("severity")? {
        None => Severity::Warning,
        Some(s) => severity_word(s).ok_or_else(|| {
            invalid(
                NAME,
                format!(
                    "field `{}` must be critical, warning or info, got {s:?}",
                    at("severity")
                ),
            )
        })?,
    };
    let mut labels = f.string_map("labels")?;
    if let Some(t) = f.get("tags") {
        if !(t.is_array() || t.is_string()) {
            return Err(invalid(
                NAME,
                format!(
                    "field `{}` must be an array of strings or a string",
                    at("tags")
                ),
            ));
        }
        add_tags(&mut labels, tag_list(Some(t)).iter().map(String::as_str));
    }
    let acknowledged = match f.get("acknowledged") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(invalid(
                NAME,
                format!("field `{}` must be a boolean", at("acknowledged")),
            ));
        }
    };
    let fingerprint = match f
        .opt_str("fingerprint")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(fp) => fp.to_owned(),
        None => fallback_fingerprint(NAME, &name, &labels),
    };
    let ended = f.opt_time("ended_at")?;
    let ended_at = match status {
        AlertStatus::Firing => None,
        AlertStatus::Resolved => Some(ended.unwrap_or_else(chrono::Utc::now)),
    };
    Ok(NormalizedAlert {
        fingerprint,
        name,
        status,
        severity,
        description: f.opt_str("description")?.unwrap_or_default().to_owned(),
        labels,
        annotations: f.string_map("annotations")?,
        started_at: f.opt_time("started_at")?,
        ended_at,
        raw_payload: raw.into(),
        acknowledged: acknowledged && status == AlertStatus::Firing,
    })
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "tocsin's generic JSON alert: one alert object or {\"alerts\": [...]}, with an optional X-Tocsin-Signature.",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(Generic)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);
