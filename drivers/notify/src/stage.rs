//! The `notify` pipeline stage: builds the notification from the run state and delivers it.
//!
//! Node config: `{"channels"?: ["name", ...], "driver"?: "console", "config"?: {...},
//! "fallback_driver"?: "console"}`.
//! - `channels`: notify these stored channels; neither `channels` nor `driver`: every enabled one.
//! - `driver` (+ `config`, default `{}`): send through this driver directly, recorded with no
//!   channel name.
//! - `fallback_driver`: with no channel configured, the skip is recorded and this driver (with
//!   an empty config) is used instead; the sample pipeline uses `console`, so a first run shows
//!   what would be sent.
//!
//! The notification: the incident of `state.incident_id` with its alerts, `state.checks` and
//! `state.recommendations`; status `resolved` when the incident is resolved or closed (PagerDuty
//! then resolves what the trigger opened); `dedup_key` `tocsin-incident-<id>`; the idempotency
//! key of the node (same across the engine's retries: a channel already delivered is not sent
//! again). Output: `{"deliveries": [...], "notified": n, "failed": n, "skipped": bool}`. The
//! step fails when a channel failed (temporary when a retry may help).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::domain::{
    Alert, AlertStatus, CheckResult, Incident, IncidentStatus, Recommendation, Severity,
};
use tocsin_core::plugin::{
    BuildContext, Notification, Prefetched, ReadAhead, Stage, StageContext, StageDescriptor,
};
use tocsin_core::store::{self, AnyConnection};
use tocsin_core::{Error, Result, Tocsin};

use crate::api::{NotifyOutcome, SendOptions};

/// The node config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyNodeConfig {
    /// Channel names. Default: every enabled channel.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// A driver to use directly instead of channels. Default none.
    #[serde(default)]
    pub driver: Option<String>,
    /// The driver's config. Default `{}`.
    #[serde(default)]
    pub config: Option<Value>,
    /// A driver used (with an empty config) when no channel is configured, after recording the
    /// skip: the sample pipeline uses `console`, so a first run shows what would be sent.
    /// Default none.
    #[serde(default)]
    pub fallback_driver: Option<String>,
}

/// The stage.
#[derive(Debug, Clone)]
pub struct NotifyStage {
    config: NotifyNodeConfig,
}

impl NotifyStage {
    /// Validates the node config (no I/O).
    pub fn from_config(config: &Value) -> Result<Self> {
        let config: NotifyNodeConfig = if config.is_null() {
            NotifyNodeConfig::default()
        } else {
            serde_json::from_value(config.clone())
                .map_err(|e| Error::invalid_config(format!("notify: {e}")))?
        };
        if config.driver.is_some() && config.channels.is_some() {
            return Err(Error::invalid_config(
                "notify: give either channels or driver, not both",
            ));
        }
        if config.fallback_driver.is_some() && config.driver.is_some() {
            return Err(Error::invalid_config(
                "notify: fallback_driver applies to channels, not with driver",
            ));
        }
        if config.config.is_some() && config.driver.is_none() {
            return Err(Error::invalid_config("notify: config given without driver"));
        }
        if config.config.as_ref().is_some_and(|c| !c.is_object()) {
            return Err(Error::invalid_config(
                "notify: config must be a JSON object",
            ));
        }
        Ok(Self { config })
    }
}

/// The incident a notification is about, with its alerts (at most [`MAX_ALERTS`]), as read by
/// [`Stage::read_ahead`] or by the stage itself.
#[derive(Debug)]
struct IncidentView {
    incident_id: i64,
    incident: Incident,
    alerts: Vec<Alert>,
}

/// Alerts of the incident a notification carries at most.
const MAX_ALERTS: u32 = 200;

fn read_incident(c: &mut AnyConnection, id: i64) -> Result<IncidentView> {
    let incident = store::get_incident(c, id)?;
    let alerts = store::latest_alerts_of_incident(c, id, MAX_ALERTS)?;
    Ok(IncidentView {
        incident_id: id,
        incident,
        alerts,
    })
}

fn incident_of(ctx: &StageContext) -> Option<i64> {
    ctx.state.get("incident_id").and_then(Value::as_i64)
}

/// Builds the notification of a run from its state.
pub async fn notification_from_state(tocsin: &Tocsin, ctx: &StageContext) -> Result<Notification> {
    let state = &ctx.state;
    let incident_id = incident_of(ctx);
    let ahead = ctx
        .prefetched::<IncidentView>()
        .filter(|v| Some(v.incident_id) == incident_id);
    let (incident, alerts) = match (incident_id, ahead) {
        (Some(_), Some(v)) => (Some(v.incident.clone()), v.alerts.clone()),
        (Some(id), None) => {
            let v = tocsin.store().run(move |c| read_incident(c, id)).await?;
            (Some(v.incident), v.alerts)
        }
        (None, _) => (None, Vec::new()),
    };
    let checks: Vec<CheckResult> = match state.get("checks") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| {
            Error::invalid_input(format!("state.checks: not a list of check results: {e}"))
        })?,
        _ => Vec::new(),
    };
    let recommendations: Vec<Recommendation> = match state.get("recommendations") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| {
            Error::invalid_input(format!(
                "state.recommendations: not a list of recommendations: {e}"
            ))
        })?,
        _ => Vec::new(),
    };
    let resolved = incident
        .as_ref()
        .is_some_and(|i| matches!(i.status, IncidentStatus::Resolved | IncidentStatus::Closed));
    let severity = incident
        .as_ref()
        .map(|i| i.severity)
        .or_else(|| alerts.iter().map(|a| a.severity).max())
        .or_else(|| {
            checks
                .iter()
                .map(|c| c.status.as_str())
                .find_map(|s| match s {
                    "critical" => Some(Severity::Critical),
                    "warning" => Some(Severity::Warning),
                    _ => None,
                })
        });
    let title = match &incident {
        Some(i) if resolved => format!("Resolved: {}", i.title),
        Some(i) => i.title.clone(),
        None => "tocsin health report".to_owned(),
    };
    let message = incident
        .as_ref()
        .map(|i| {
            if i.summary.is_empty() {
                i.description.clone()
            } else {
                i.summary.clone()
            }
        })
        .filter(|m| !m.is_empty())
        .or_else(|| {
            alerts
                .iter()
                .map(|a| a.description.clone())
                .find(|d| !d.is_empty())
        })
        .unwrap_or_default();
    let dedup_key = match incident_id {
        Some(id) => format!("tocsin-incident-{id}"),
        None => format!("tocsin-run-{}", ctx.run_id),
    };
    Ok(Notification {
        title,
        message,
        severity,
        status: Some(if resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        }),
        incident,
        alerts,
        checks,
        recommendations,
        tags: Default::default(),
        context: json!({"node": ctx.node_id, "environment": tocsin.config().environment}),
        trace_id: ctx.trace_id.clone(),
        run_id: Some(ctx.run_id.clone()),
        dedup_key,
        idempotency_key: ctx.idempotency_key(),
    })
}

#[async_trait]
impl Stage for NotifyStage {
    /// The incident and its alerts, read where the webhook just wrote them.
    fn read_ahead(&self, ctx: &StageContext) -> Option<ReadAhead> {
        let id = incident_of(ctx)?;
        Some(Box::new(move |c| {
            Ok(Arc::new(read_incident(c, id)?) as Prefetched)
        }))
    }

    async fn execute(&self, ctx: &StageContext) -> Result<Value> {
        let tocsin = &ctx.tocsin;
        let n = notification_from_state(tocsin, ctx).await?;
        // Attempt numbers count every attempt started, one that died midway included, so on
        // attempt 1 no delivery of this step can exist yet.
        let options = SendOptions {
            first_attempt: ctx.attempt <= 1,
            ..SendOptions::default()
        };
        let outcome: NotifyOutcome = match &self.config.driver {
            Some(driver) => {
                let config = self.config.config.clone().unwrap_or_else(|| json!({}));
                crate::api::send_with_outcome(tocsin, driver, &config, &n, &options).await?
            }
            None => {
                let mut outcome = crate::api::notify_with_options(
                    tocsin,
                    &n,
                    self.config.channels.as_deref(),
                    &options,
                )
                .await?;
                let none_configured = outcome.skipped
                    && outcome.results.is_empty()
                    && !tocsin.config().notify_skip_all;
                if let (true, Some(fallback)) = (none_configured, &self.config.fallback_driver) {
                    let more =
                        crate::api::send_with_outcome(tocsin, fallback, &json!({}), &n, &options)
                            .await?;
                    outcome.notified += more.notified;
                    outcome.failed += more.failed;
                    outcome.deliveries.extend(more.deliveries);
                    outcome.results.extend(more.results);
                }
                outcome
            }
        };
        if let Some(e) = outcome.first_error() {
            return Err(e);
        }
        let mut out = json!({
            "deliveries": outcome.deliveries,
            "notified": outcome.notified,
            "failed": outcome.failed,
            "skipped": outcome.skipped,
        });
        // Nothing was sent because of a skip control or a missing channel: the engine records
        // the node as skipped with this reason (the skipped delivery is recorded too).
        if outcome.skipped && outcome.notified == 0 && outcome.failed == 0 {
            out["skip_reason"] = json!(if tocsin.config().notify_skip_all {
                "NOTIFY_SKIP_ALL is set"
            } else {
                "no notification channel is configured"
            });
        }
        Ok(out)
    }
}

fn build(config: &Value, _ctx: &BuildContext) -> Result<Arc<dyn Stage>> {
    Ok(Arc::new(NotifyStage::from_config(config)?))
}

/// The registration of the `notify` stage.
pub const DESCRIPTOR: StageDescriptor = StageDescriptor {
    name: "notify",
    description: "Delivers the run's notification to channels (or one driver), recording every attempt.",
    config_example: r#"{"channels": ["ops-slack", "oncall-pagerduty"]}"#,
    build,
};

tocsin_core::register_stage!(DESCRIPTOR);
