//! A plugin crate of the kind a tocsin user writes: an ingest driver for an in-house alert format
//! ("acme") and a notify driver that appends each notification to a file, both registered with
//! the macros `tocsin-core` exports. Nothing in tocsin knows about this crate; linking it is
//! enough (name it once: `use tocsin_example_custom_driver as _;`).
//!
//! ```
//! use tocsin_core::plugin::Plugins;
//! use tocsin_example_custom_driver as _;
//!
//! let plugins = Plugins::from_inventory();
//! assert!(plugins.ingestors.get("acme").is_ok());
//! assert!(plugins.notifiers.get("append-file").is_ok());
//! ```
//!
//! The acme format: `{"acme_alert": {"id": "A-1", "check": "disk-full", "host": "web-1",
//! "level": "crit" | "warn" | "info", "state": "open" | "closed", "text": "..."}}`.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::plugin::{
    BuildContext, DeliveryReceipt, Ingestor, IngestorDescriptor, NormalizedAlert, Notification,
    NotifyDriver, NotifyDriverDescriptor, ParsedPayload,
};
use tocsin_core::{Error, ErrorKind, Result};

/// Parses the acme in-house format.
#[derive(Debug, Default)]
pub struct AcmeIngestor;

impl Ingestor for AcmeIngestor {
    fn detect(&self, body: &Value) -> bool {
        body.get("acme_alert").is_some_and(Value::is_object)
    }

    fn parse(&self, body: &Value) -> Result<ParsedPayload> {
        let a = body
            .get("acme_alert")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::UnrecognizedPayload,
                    "acme: missing the `acme_alert` object",
                )
            })?;
        let field = |name: &str| -> Result<String> {
            a.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::invalid_input(format!("acme: `acme_alert.{name}` must be a string"))
                })
        };
        // Identity first, so an alert without one is reported for that before anything else.
        let (id, check, host) = (field("id")?, field("check")?, field("host")?);
        let severity = match field("level")?.as_str() {
            "crit" => Severity::Critical,
            "warn" => Severity::Warning,
            _ => Severity::Info,
        };
        let status = if field("state")? == "closed" {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        };
        let mut labels = Labels::new();
        labels.insert("host".into(), host);
        Ok(ParsedPayload {
            alerts: vec![NormalizedAlert {
                fingerprint: id,
                name: check,
                status,
                severity,
                description: a
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                labels,
                annotations: Labels::new(),
                started_at: None,
                ended_at: None,
                raw_payload: Value::Object(a.clone()).into(),
                acknowledged: false,
            }],
            ..ParsedPayload::default()
        })
    }
}

tocsin_core::register_ingestor!(IngestorDescriptor {
    name: "acme",
    description: "The acme in-house alert format (an example of a user's own driver).",
    config_example: "{}",
    build: |_, _| Ok(Arc::new(AcmeIngestor)),
});

/// Appends one line per notification to a file.
#[derive(Debug)]
pub struct AppendFile {
    path: std::path::PathBuf,
}

#[async_trait]
impl NotifyDriver for AppendFile {
    async fn send(&self, n: &Notification) -> Result<DeliveryReceipt> {
        let line = format!(
            "{} [{}] {}: {}\n",
            chrono::Utc::now().to_rfc3339(),
            n.severity.map(|s| s.as_str()).unwrap_or("info"),
            n.title,
            n.message
        );
        let path = self.path.clone();
        // File I/O is blocking: keep it off the async executor.
        let written = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(line.as_bytes())
        })
        .await
        .map_err(|e| Error::internal(format!("append-file: {e}")))?;
        written.map_err(|e| Error::new(ErrorKind::Upstream, format!("append-file: {e}")))?;
        Ok(DeliveryReceipt {
            message_id: None,
            response: Some("appended".into()),
        })
    }
}

fn build_append_file(config: &Value, _: &BuildContext) -> Result<Arc<dyn NotifyDriver>> {
    let path = config
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::invalid_config("append-file: `path` (a file path) is required"))?;
    Ok(Arc::new(AppendFile { path: path.into() }))
}

tocsin_core::register_notify_driver!(NotifyDriverDescriptor {
    name: "append-file",
    description: "Appends each notification to a file (an example of a user's own driver).",
    required: &["path"],
    optional: &[],
    config_example: r#"{"path": "/var/log/tocsin-notifications.log"}"#,
    build: build_append_file,
});
