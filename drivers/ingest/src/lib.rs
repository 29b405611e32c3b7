//! tocsin's INGEST stage: eight webhook drivers that turn a vendor's body into normalized alerts,
//! and the write path that deduplicates them, groups them into incidents and records every
//! material change.
//!
//! ```
//! use tocsin_core::plugin::Plugins;
//!
//! let plugins = Plugins::from_inventory();
//! let body = serde_json::json!({"name": "HighCPU", "severity": "critical", "labels": {"instance": "web-1"}});
//! let driver = tocsin_ingest::detect(&plugins, &body).unwrap();
//! assert_eq!(driver.name, "generic");
//! let parsed = tocsin_ingest::parse_with(driver, &body).unwrap();
//! assert_eq!(parsed.alerts[0].name, "HighCPU");
//! ```
//!
//! Storing goes through [`service::ingest`] (a webhook body) or [`service::ingest_alerts`]
//! (alerts built in process); incidents are handled with [`service::acknowledge_incident`],
//! [`service::resolve_incident`], [`service::close_incident`], [`service::reopen_incident`] and
//! [`service::add_incident_note`]. The `ingest` pipeline stage is registered by [`stage`].
//!
//! # Features
//! One per driver, all on by default: `alertmanager`, `grafana`, `pagerduty`, `datadog`,
//! `newrelic`, `opsgenie`, `zabbix`, `generic`. Each registers itself at link time; embedders who
//! cannot rely on that call [`register_all`].

use serde_json::Value;
use tocsin_core::plugin::{IngestorDescriptor, ParsedPayload, Plugins};
use tocsin_core::{Error, ErrorKind, Result};

pub mod body;
pub(crate) mod common;
pub mod pipeline;
pub mod service;
pub mod signature;
pub mod stage;

#[cfg(any(feature = "alertmanager", feature = "grafana"))]
mod prometheus;

#[cfg(feature = "alertmanager")]
pub mod alertmanager;
#[cfg(feature = "datadog")]
pub mod datadog;
#[cfg(feature = "generic")]
pub mod generic;
#[cfg(feature = "grafana")]
pub mod grafana;
#[cfg(feature = "newrelic")]
pub mod newrelic;
#[cfg(feature = "opsgenie")]
pub mod opsgenie;
#[cfg(feature = "pagerduty")]
pub mod pagerduty;
#[cfg(feature = "zabbix")]
pub mod zabbix;

pub use common::fallback_fingerprint;
pub use service::{IncidentChange, IncidentChangeKind, IngestOutcome, IngestRequest, TxHook};

/// Every driver descriptor compiled into this crate (by the enabled features).
#[allow(clippy::vec_init_then_push)]
pub fn descriptors() -> Vec<&'static IngestorDescriptor> {
    #[allow(unused_mut)]
    let mut v: Vec<&'static IngestorDescriptor> = Vec::new();
    #[cfg(feature = "alertmanager")]
    v.push(&alertmanager::DESCRIPTOR);
    #[cfg(feature = "datadog")]
    v.push(&datadog::DESCRIPTOR);
    #[cfg(feature = "generic")]
    v.push(&generic::DESCRIPTOR);
    #[cfg(feature = "grafana")]
    v.push(&grafana::DESCRIPTOR);
    #[cfg(feature = "newrelic")]
    v.push(&newrelic::DESCRIPTOR);
    #[cfg(feature = "opsgenie")]
    v.push(&opsgenie::DESCRIPTOR);
    #[cfg(feature = "pagerduty")]
    v.push(&pagerduty::DESCRIPTOR);
    #[cfg(feature = "zabbix")]
    v.push(&zabbix::DESCRIPTOR);
    v
}

/// Registers every enabled driver and the `ingest` stage by hand, for embedders who cannot rely
/// on link-time registration. Names already present (from [`Plugins::from_inventory`]) are
/// skipped, so calling it on a registry from inventory adds nothing twice.
pub fn register_all(plugins: &mut Plugins) {
    for d in descriptors() {
        if plugins.ingestors.get(d.name).is_err() {
            plugins.ingestors.register(d);
        }
    }
    if plugins.stages.get(stage::STAGE_NAME).is_err() {
        plugins.stages.register(&stage::DESCRIPTOR);
    }
}

/// The one driver whose signature `body` carries.
///
/// Zero or several matches are an [`ErrorKind::UnrecognizedPayload`] error that names the
/// drivers and says to post to `/alerts/webhook/<driver>/` instead.
pub fn detect(plugins: &Plugins, body: &Value) -> Result<&'static IngestorDescriptor> {
    body::require_object(body)?;
    let ctx = tocsin_core::plugin::BuildContext::default();
    let mut matched = Vec::new();
    for d in plugins.ingestors.list() {
        match (d.build)(&Value::Object(Default::default()), &ctx) {
            Ok(driver) if driver.detect(body) => matched.push(*d),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(driver = d.name, error = %e, "An ingest driver failed to build; it is left out of detection.")
            }
        }
    }
    let names = plugins.ingestors.names().join(", ");
    match matched.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::new(
            ErrorKind::UnrecognizedPayload,
            format!(
                "no driver recognises this body (drivers: {names}); post it to /alerts/webhook/<driver>/ to name the format"
            ),
        )),
        many => Err(Error::new(
            ErrorKind::UnrecognizedPayload,
            format!(
                "the body is ambiguous: it matches {}; post it to /alerts/webhook/<driver>/ to name the format",
                many.iter()
                    .map(|d| d.name)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )),
    }
}

/// Builds a driver (default configuration) and parses `body` with it. A body that yields no
/// alert without saying why is an error.
pub fn parse_with(descriptor: &IngestorDescriptor, body: &Value) -> Result<ParsedPayload> {
    body::require_object(body)?;
    let driver = (descriptor.build)(
        &Value::Object(Default::default()),
        &tocsin_core::plugin::BuildContext::default(),
    )?;
    let parsed = driver.parse(body)?;
    if parsed.alerts.is_empty() && parsed.empty_reason.is_none() {
        return Err(Error::new(
            ErrorKind::UnrecognizedPayload,
            format!("{}: the body carries no alert", descriptor.name),
        ));
    }
    Ok(parsed)
}
