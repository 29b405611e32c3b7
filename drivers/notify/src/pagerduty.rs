//! PagerDuty [Events API v2](https://developer.pagerduty.com/docs/events-api-v2/trigger-events/)
//! (`POST https://events.pagerduty.com/v2/enqueue`).
//!
//! `dedup_key` is the notification's stable key (`tocsin-incident-<id>` for an incident), so the
//! resolution of an incident sends `event_action: resolve` with the same key and closes the
//! PagerDuty incident that the trigger opened. `payload.summary` is at most 1024 characters (cut
//! with a visible marker); `custom_details` carries the analysis (alerts, checks,
//! recommendations). PagerDuty answers `202 Accepted` with `{"status": "success", "dedup_key"}`;
//! 400 is a permanent error, 429 and 5xx temporary.
//!
//! Config: `routing_key` (required, secret: the integration key), `events_url` (default the
//! Events API v2 enqueue endpoint; EU-region accounts use `https://events.eu.pagerduty.com/v2/enqueue`),
//! `severity` (map of tocsin severity to PagerDuty severity, default `info`->`info`,
//! `warning`->`warning`, `critical`->`critical`), `source` (default the first alert's `instance`
//! label, else `tocsin`), `component`, `group`, `class`, `timeout_secs`, `templates` (`summary`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::domain::{AlertStatus, Severity};
use tocsin_core::plugin::{
    BuildContext, DeliveryReceipt, Notification, NotifyDriver, NotifyDriverDescriptor,
};
use tocsin_core::{Error, Result, Secret};

use crate::template::{TemplateContext, Templates, cut, effective_severity, overrides_from};

/// The Events API v2 endpoint.
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit on `payload.summary`.
pub const MAX_SUMMARY: usize = 1024;
/// PagerDuty's limit on `dedup_key`.
pub const MAX_DEDUP_KEY: usize = 255;
/// PagerDuty's limit on the whole event (512 KB); we stay well below.
pub const MAX_EVENT_BYTES: usize = 400 * 1024;
/// Appended to every text that was cut.
pub const CUT_MARKER: &str = " … (truncated)";
/// The severities PagerDuty accepts.
pub const PD_SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagerDutyConfig {
    /// Integration (routing) key (secret). Required.
    routing_key: Secret,
    /// Default [`DEFAULT_EVENTS_URL`].
    #[serde(default)]
    events_url: Option<String>,
    /// tocsin severity -> PagerDuty severity. Default identity.
    #[serde(default)]
    severity: BTreeMap<String, String>,
    /// `payload.source`. Default the first alert's instance, else `tocsin`.
    #[serde(default)]
    source: Option<String>,
    /// `payload.component`. Default none.
    #[serde(default)]
    component: Option<String>,
    /// `payload.group`. Default none.
    #[serde(default)]
    group: Option<String>,
    /// `payload.class`. Default the first alert's name.
    #[serde(default)]
    class: Option<String>,
    /// Request timeout in seconds. Default 10.
    #[serde(default)]
    timeout_secs: Option<f64>,
    /// Template overrides (`summary`).
    #[serde(default)]
    #[allow(dead_code)]
    templates: Option<Value>,
}

/// Built-in templates.
pub const DEFAULT_TEMPLATES: &[(&str, &str)] = &[(
    "summary",
    "[{{ severity_upper }}] {{ title }}{% if message %}: {{ message }}{% endif %}",
)];

/// The PagerDuty driver.
pub struct PagerDutyDriver {
    routing_key: Secret,
    url: reqwest::Url,
    severity: BTreeMap<Severity, String>,
    source: Option<String>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    client: reqwest::Client,
    templates: Templates,
}

impl std::fmt::Debug for PagerDutyDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyDriver")
            .field("routing_key", &self.routing_key)
            .field("events_url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl PagerDutyDriver {
    /// Validates the config (no I/O) and builds the driver.
    pub fn from_config(config: &Value, ctx: &BuildContext) -> Result<Self> {
        let c: PagerDutyConfig = crate::parse_config("pagerduty", config)?;
        if c.routing_key.expose().trim().is_empty() {
            return Err(Error::invalid_config(
                "routing_key: required (the integration key of an Events API v2 integration)",
            ));
        }
        let url = crate::http::url_from(
            &json!({"events_url": c.events_url.as_deref().unwrap_or(DEFAULT_EVENTS_URL)}),
            "events_url",
            false,
        )?;
        let mut severity: BTreeMap<Severity, String> = Severity::ALL
            .iter()
            .map(|s| (*s, s.as_str().to_owned()))
            .collect();
        for (from, to) in &c.severity {
            let from: Severity = from
                .parse()
                .map_err(|e: Error| Error::invalid_config(format!("severity: {}", e.message())))?;
            if !PD_SEVERITIES.contains(&to.as_str()) {
                return Err(Error::invalid_config(format!(
                    "severity.{from}: {to:?} is not a PagerDuty severity; expected one of: {}",
                    PD_SEVERITIES.join(", ")
                )));
            }
            severity.insert(from, to.clone());
        }
        let timeout = crate::timeout_secs(c.timeout_secs)?;
        let templates = Templates::new(
            DEFAULT_TEMPLATES,
            &overrides_from(config)?,
            ctx.templates_dir.as_deref(),
        )?;
        Ok(Self {
            routing_key: c.routing_key,
            url,
            severity,
            source: c.source,
            component: c.component,
            group: c.group,
            class: c.class,
            client: crate::http::client(timeout)?,
            templates,
        })
    }

    /// The event for a notification: `trigger`, or `resolve` when the notification is resolved.
    /// The routing key is a placeholder here; [`NotifyDriver::send`] puts the real one in.
    pub fn event(&self, n: &Notification) -> Result<Value> {
        let dedup_key = n.dedup_key.trim();
        if dedup_key.chars().count() > MAX_DEDUP_KEY {
            return Err(Error::invalid_input(format!(
                "dedup_key: longer than PagerDuty's {MAX_DEDUP_KEY} characters"
            )));
        }
        if n.status == Some(AlertStatus::Resolved) {
            if dedup_key.is_empty() {
                return Err(Error::invalid_input(
                    "dedup_key: a resolve event needs the key of the incident it resolves",
                ));
            }
            return Ok(json!({
                "routing_key": tocsin_core::secret::REDACTED,
                "event_action": "resolve",
                "dedup_key": dedup_key,
            }));
        }
        let ctx = TemplateContext::build(n);
        let summary = self.templates.render("summary", &ctx)?;
        let summary = summary.split_whitespace().collect::<Vec<_>>().join(" ");
        let severity = effective_severity(n);
        let source = self
            .source
            .clone()
            .or_else(|| {
                n.alerts
                    .iter()
                    .find_map(|a| a.labels.get("instance").cloned())
            })
            .unwrap_or_else(|| "tocsin".to_owned());
        let timestamp = n
            .alerts
            .iter()
            .map(|a| a.started_at)
            .min()
            .or(n.incident.as_ref().map(|i| i.created_at))
            .unwrap_or_else(chrono::Utc::now)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut payload = json!({
            "summary": cut(&summary, MAX_SUMMARY, CUT_MARKER),
            "source": cut(&source, 255, CUT_MARKER),
            "severity": self.severity.get(&severity).map(String::as_str).unwrap_or("warning"),
            "timestamp": timestamp,
            "custom_details": custom_details(n, &ctx),
        });
        for (key, v) in [
            ("component", &self.component),
            ("group", &self.group),
            (
                "class",
                &self
                    .class
                    .clone()
                    .or_else(|| n.alerts.first().map(|a| a.name.clone())),
            ),
        ] {
            if let Some(v) = v {
                payload[key] = json!(v);
            }
        }
        let mut event = json!({
            "routing_key": tocsin_core::secret::REDACTED,
            "event_action": "trigger",
            "payload": payload,
            "client": "tocsin",
        });
        if !dedup_key.is_empty() {
            event["dedup_key"] = json!(dedup_key);
        }
        let links: Vec<Value> = ctx["links"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                v.as_str()
                    .filter(|u| u.starts_with("http"))
                    .map(|u| json!({"href": u, "text": k}))
            })
            .collect();
        if let Some(first) = links.first() {
            event["client_url"] = first["href"].clone();
            event["links"] = json!(links);
        }
        // Stay below PagerDuty's event size limit: the details go first, then the lists in them.
        if serde_json::to_vec(&event).map(|b| b.len()).unwrap_or(0) > MAX_EVENT_BYTES {
            event["payload"]["custom_details"] = json!({"truncated": "custom details exceeded the event size limit", "message": cut(&n.message, 4000, CUT_MARKER)});
        }
        Ok(event)
    }
}

fn custom_details(n: &Notification, ctx: &Value) -> Value {
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .take(20)
        .map(|a| {
            json!({"name": a.name, "source": a.source, "severity": a.severity, "status": a.status,
                   "instance": a.labels.get("instance"), "description": cut(&a.description, 1000, CUT_MARKER),
                   "started_at": a.started_at})
        })
        .collect();
    let recs: Vec<Value> = n
        .recommendations
        .iter()
        .take(10)
        .map(|r| {
            json!({"type": r.kind, "priority": r.priority, "title": r.title,
                   "description": cut(&r.description, 2000, CUT_MARKER), "actions": r.actions})
        })
        .collect();
    let checks: Vec<Value> = n
        .checks
        .iter()
        .map(|c| json!({"checker": c.checker, "status": c.status, "message": cut(&c.message, 500, CUT_MARKER)}))
        .collect();
    let mut d = json!({
        "message": cut(&n.message, 4000, CUT_MARKER),
        "status": ctx["status"],
        "alerts": alerts,
        "alerts_total": n.alerts.len(),
        "check_summary": ctx["check_summary"],
        "checks": checks,
        "recommendations": recs,
        "recommendations_total": n.recommendations.len(),
    });
    if let Some(i) = &n.incident {
        d["incident"] = json!({"id": i.id, "title": i.title, "status": i.status, "severity": i.severity, "group_key": i.group_key, "summary": i.summary});
    }
    if !n.tags.is_empty() {
        d["tags"] = json!(n.tags);
    }
    for key in ["trace_id", "run_id"] {
        if ctx[key].as_str().is_some_and(|v| !v.is_empty()) {
            d[key] = ctx[key].clone();
        }
    }
    d
}

#[async_trait]
impl NotifyDriver for PagerDutyDriver {
    async fn send(&self, n: &Notification) -> Result<DeliveryReceipt> {
        let mut event = self.event(n)?;
        event["routing_key"] = json!(self.routing_key.expose());
        let body = serde_json::to_vec(&event)
            .map_err(|e| Error::internal(format!("cannot encode the event: {e}")))?;
        let req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let (status, _, text) = crate::http::execute("PagerDuty", req).await?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message_id = answer
            .get("dedup_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| (!n.dedup_key.is_empty()).then(|| n.dedup_key.clone()));
        if status.as_u16() != 202 {
            tracing::warn!(
                status = status.as_u16(),
                "PagerDuty answered a success other than 202 Accepted."
            );
        }
        Ok(DeliveryReceipt {
            message_id,
            response: Some(crate::http::answer(status, &text)),
        })
    }
}

fn build(config: &Value, ctx: &BuildContext) -> Result<Arc<dyn NotifyDriver>> {
    Ok(Arc::new(PagerDutyDriver::from_config(config, ctx)?))
}

/// The registration of the PagerDuty driver.
pub const DESCRIPTOR: NotifyDriverDescriptor = NotifyDriverDescriptor {
    name: "pagerduty",
    description: "PagerDuty Events API v2: trigger, and resolve with the same dedup key.",
    required: &["routing_key"],
    optional: &[
        "events_url",
        "severity",
        "source",
        "component",
        "group",
        "class",
        "timeout_secs",
        "templates",
    ],
    config_example: r#"{"routing_key": "R0UT1NGKEY0000000000000000000000", "events_url": "https://events.pagerduty.com/v2/enqueue", "severity": {"warning": "warning", "critical": "critical"}, "component": "web", "group": "prod"}"#,
    build,
};

tocsin_core::register_notify_driver!(DESCRIPTOR);
