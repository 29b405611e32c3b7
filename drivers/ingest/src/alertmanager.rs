//! Prometheus Alertmanager webhook v4
//! (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>).
//!
//! # Recognised by
//! `"version": "4"`, an `alerts` array and a `groupKey` string.
//!
//! # Mapping
//! - one alert per element of `alerts`; an empty list is accepted with zero alerts;
//! - `fingerprint`: the alert's own `fingerprint`, else the fallback hash of source, name and labels;
//! - `name`: label `alertname` (required);
//! - `status`: `firing` / `resolved`;
//! - `severity`: label `severity`: `critical`, `page`, `error`, `high`, `major` -> critical;
//!   `warning`, `warn`, `medium`, `minor` -> warning; `info`, `low`, `none`, `notice` -> info;
//!   absent or unknown -> **warning** (the label keeps the original value);
//! - `description`: annotation `description`, else `summary`, else `message`;
//! - `started_at`: `startsAt`; `ended_at`: `endsAt` of a resolved alert. A firing alert has no
//!   end: its `endsAt` is Go's zero time `0001-01-01T00:00:00Z` or the resolve timeout;
//! - `generatorURL` is kept as annotation `generator_url`;
//! - payload facts (`meta`): `receiver`, `status`, `groupKey`, `externalURL`, `version`,
//!   `truncatedAlerts`, `groupLabels`, `commonLabels`, `commonAnnotations`.

use std::sync::Arc;

use serde_json::Value;
use tocsin_core::Result;
use tocsin_core::plugin::{Ingestor, IngestorDescriptor, ParsedPayload};

/// The Alertmanager driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alertmanager;

/// Its registered name.
pub const NAME: &str = "alertmanager";

impl Ingestor for Alertmanager {
    fn detect(&self, body: &Value) -> bool {
        body.get("version").and_then(Value::as_str) == Some("4")
            && body.get("alerts").is_some_and(Value::is_array)
            && body.get("groupKey").is_some_and(Value::is_string)
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        crate::prometheus::parse_group(NAME, body.clone())
    }

    fn parse_owned(&self, body: Value) -> Result<ParsedPayload> {
        crate::prometheus::parse_group(NAME, body)
    }

    fn parse_text(&self, text: &str) -> Option<ParsedPayload> {
        crate::prometheus::parse_group_text(NAME, text)
    }
}

/// The descriptor registered for this driver.
pub const DESCRIPTOR: IngestorDescriptor = IngestorDescriptor {
    name: NAME,
    description: "Prometheus Alertmanager webhook (version 4).",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(Alertmanager)),
};

tocsin_core::register_ingestor!(DESCRIPTOR);
