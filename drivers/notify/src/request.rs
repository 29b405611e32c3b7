//! Sends described by a request body (the `/notify/send/` and `/notify/batch/` endpoints): parse,
//! pick the destination, send, report. Destinations that come from the body are checked by the
//! outbound [`guard`](crate::guard).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tocsin_core::domain::{AlertStatus, DeliveryStatus, Labels, Severity, new_id};
use tocsin_core::plugin::Notification;
use tocsin_core::{Error, Result, Tocsin};

use crate::api::{
    ChannelResult, ErrorInfo, NotifyOutcome, SendOptions, notify_with, send_with_outcome,
};
use crate::retry::RetryPolicy;

/// Most items in one batch.
pub const MAX_BATCH: usize = 100;
/// Items of a batch sent at once.
pub const BATCH_CONCURRENCY: usize = 4;

/// One send, as a request body describes it.
///
/// `driver` (or the `{driver}` of the path) names a driver, used with `config`, or a stored
/// channel; `channel` names a stored channel; with neither, every enabled channel is notified.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Title. Required.
    pub title: Option<String>,
    /// Message. Default empty.
    #[serde(default)]
    pub message: Option<String>,
    /// `info`, `warning` or `critical`. Default `info`.
    #[serde(default)]
    pub severity: Option<String>,
    /// `firing` (default) or `resolved` (PagerDuty resolves the same `dedup_key`).
    #[serde(default)]
    pub status: Option<String>,
    /// A stored channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// A driver (with `config`) or a stored channel name.
    #[serde(default)]
    pub driver: Option<String>,
    /// Tags: a map, or a list of `k:v` / `k=v` / bare strings.
    #[serde(default)]
    pub tags: Option<Value>,
    /// Extra template context.
    #[serde(default)]
    pub context: Option<Value>,
    /// The driver's config, with `driver`.
    #[serde(default)]
    pub config: Option<Value>,
    /// Stable key of what the notification is about. Default a fresh one.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// Idempotency key. Default a fresh one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

fn tags_from(v: &Value) -> Result<Labels> {
    let mut tags = Labels::new();
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(_) | Value::Number(_) => v.to_string(),
                    _ => return Err(Error::invalid_input(format!("tags.{k}: expected a string"))),
                };
                tags.insert(k.clone(), v);
            }
        }
        Value::Array(items) => {
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| Error::invalid_input("tags: expected strings"))?;
                match s.split_once([':', '=']) {
                    Some((k, v)) => tags.insert(k.trim().to_owned(), v.trim().to_owned()),
                    None => tags.insert(s.trim().to_owned(), "true".to_owned()),
                };
            }
        }
        _ => {
            return Err(Error::invalid_input(
                "tags: expected a map or a list of strings",
            ));
        }
    }
    Ok(tags)
}

impl SendRequest {
    /// Parses a body; a bad field is an [`tocsin_core::ErrorKind::InvalidInput`] error naming it.
    pub fn from_value(body: &Value) -> Result<Self> {
        if !body.is_object() {
            return Err(Error::invalid_input("the body must be a JSON object"));
        }
        serde_json::from_value(body.clone()).map_err(|e| {
            let msg = e.to_string();
            let field = body
                .as_object()
                .and_then(|m| {
                    m.keys().find(|k| {
                        let mut without = m.clone();
                        without.remove(*k);
                        serde_json::from_value::<Self>(Value::Object(without))
                            .err()
                            .map(|e| e.to_string())
                            != Some(msg.clone())
                    })
                })
                .filter(|_| !msg.contains("field `"));
            match field {
                Some(f) => Error::invalid_input(format!("{f}: {msg}")),
                None => Error::invalid_input(msg),
            }
        })
    }

    /// The notification it describes.
    pub fn notification(&self, trace_id: &str) -> Result<Notification> {
        let title = self.title.as_deref().map(str::trim).unwrap_or("");
        if title.is_empty() {
            return Err(Error::invalid_input("title: required"));
        }
        let severity = match self.severity.as_deref() {
            None | Some("") => Severity::Info,
            Some(s) => s
                .to_ascii_lowercase()
                .parse()
                .map_err(|e: Error| Error::invalid_input(format!("severity: {}", e.message())))?,
        };
        let status = match self.status.as_deref() {
            None | Some("") => AlertStatus::Firing,
            Some(s) => s
                .parse()
                .map_err(|e: Error| Error::invalid_input(format!("status: {}", e.message())))?,
        };
        let id = new_id();
        let trace_id = if trace_id.is_empty() {
            id.clone()
        } else {
            trace_id.to_owned()
        };
        Ok(Notification {
            title: title.to_owned(),
            message: self.message.clone().unwrap_or_default(),
            severity: Some(severity),
            status: Some(status),
            tags: tags_from(self.tags.as_ref().unwrap_or(&Value::Null))?,
            context: self
                .context
                .clone()
                .unwrap_or(Value::Object(Default::default())),
            trace_id,
            dedup_key: self
                .dedup_key
                .clone()
                .unwrap_or_else(|| format!("tocsin-adhoc-{id}")),
            idempotency_key: self
                .idempotency_key
                .clone()
                .unwrap_or_else(|| format!("adhoc-{id}")),
            ..Default::default()
        })
    }
}

/// Sends what `request` describes; `path_driver` is the `{driver}` of `/notify/send/{driver}/`.
///
/// Errors: a bad body [`tocsin_core::ErrorKind::InvalidInput`] naming the field; an unknown
/// driver or channel `NotFound`; a bad config `InvalidConfig` naming the field; a destination
/// the guard refuses `InvalidInput`; a failed delivery the driver's error (`Upstream`,
/// `Unauthorized`, `Timeout`) with the provider's answer.
pub async fn send_request(
    tocsin: &Tocsin,
    request: &SendRequest,
    path_driver: Option<&str>,
    trace_id: &str,
    policy: RetryPolicy,
) -> Result<NotifyOutcome> {
    let n = request.notification(trace_id)?;
    let target = match (path_driver, request.driver.as_deref()) {
        (Some(p), Some(b)) if p != b => {
            return Err(Error::invalid_input(format!(
                "driver: {b:?} contradicts the path's driver {p:?}"
            )));
        }
        (Some(p), _) => Some(p),
        (None, b) => b,
    };
    if target.is_some() && request.channel.is_some() {
        return Err(Error::invalid_input(
            "channel: give a driver or a channel, not both",
        ));
    }
    let outcome = match target {
        Some(name) if tocsin.plugins().notifiers.get(name).is_ok() => {
            let config = request
                .config
                .clone()
                .unwrap_or_else(|| Value::Object(Default::default()));
            let options = SendOptions {
                retry: policy,
                untrusted_destination: true,
                ..SendOptions::default()
            };
            send_with_outcome(tocsin, name, &config, &n, &options).await?
        }
        Some(name) => {
            // Not a driver: a stored channel of that name, as the original allowed.
            let is_channel = crate::api::get_channel(tocsin, name).await.is_ok();
            if !is_channel {
                let available = tocsin.plugins().notifiers.names().join(", ");
                return Err(Error::not_found(format!(
                    "unknown notify driver or channel {name:?}; drivers: {available}"
                )));
            }
            if request.config.is_some() {
                return Err(Error::invalid_input(format!(
                    "config: {name:?} is a stored channel, which has its own config"
                )));
            }
            notify_with(tocsin, &n, Some(&[name.to_owned()]), policy).await?
        }
        None => {
            if request.config.is_some() {
                return Err(Error::invalid_input("config: given without a driver"));
            }
            let names = request.channel.clone().map(|c| vec![c]);
            notify_with(tocsin, &n, names.as_deref(), policy).await?
        }
    };
    match outcome.first_error() {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// One item's result in a batch.
#[derive(Debug, Clone, Serialize)]
pub struct BatchItem {
    /// Position in the request.
    pub index: usize,
    /// `sent`, `skipped` or `failed`.
    pub status: DeliveryStatus,
    /// Per channel (or driver) results, when it got that far.
    pub results: Vec<ChannelResult>,
    /// The error, when it failed.
    pub error: Option<ErrorInfo>,
}

/// A batch's results.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOutcome {
    /// `success` (all sent or skipped), `partial` or `error` (none sent).
    pub status: &'static str,
    /// Items.
    pub total: usize,
    /// Items sent or skipped.
    pub success_count: usize,
    /// Items failed.
    pub error_count: usize,
    /// Per item, in request order.
    pub results: Vec<BatchItem>,
}

async fn batch_item(
    tocsin: &Tocsin,
    index: usize,
    item: &Value,
    trace_id: &str,
    policy: RetryPolicy,
) -> BatchItem {
    let outcome = match SendRequest::from_value(item) {
        Ok(req) => send_request(tocsin, &req, None, trace_id, policy).await,
        Err(e) => Err(Error::new(
            e.kind(),
            format!("notifications[{index}]: {}", e.message()),
        )),
    };
    match outcome {
        Ok(o) => BatchItem {
            index,
            status: if o.skipped {
                DeliveryStatus::Skipped
            } else {
                DeliveryStatus::Sent
            },
            results: o.results,
            error: None,
        },
        Err(e) => BatchItem {
            index,
            status: DeliveryStatus::Failed,
            results: Vec::new(),
            error: Some(ErrorInfo::from(&e)),
        },
    }
}

/// Sends every item, at most [`BATCH_CONCURRENCY`] at once, each with its own result. An empty
/// list or more than [`MAX_BATCH`] items is an `InvalidInput` error.
pub async fn send_batch(
    tocsin: &Tocsin,
    items: &[Value],
    trace_id: &str,
    policy: RetryPolicy,
) -> Result<BatchOutcome> {
    use futures::StreamExt;
    if items.is_empty() {
        return Err(Error::invalid_input("notifications: no notification given"));
    }
    if items.len() > MAX_BATCH {
        return Err(Error::invalid_input(format!(
            "notifications: {} items, at most {MAX_BATCH} per batch",
            items.len()
        )));
    }
    let tocsin = tocsin.clone();
    let trace_id = trace_id.to_owned();
    let results: Vec<BatchItem> = futures::stream::iter(items.iter().cloned().enumerate())
        .map(move |(index, item)| {
            let (tocsin, trace_id) = (tocsin.clone(), trace_id.clone());
            async move { batch_item(&tocsin, index, &item, &trace_id, policy).await }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let error_count = results.iter().filter(|r| r.error.is_some()).count();
    let total = results.len();
    Ok(BatchOutcome {
        status: match error_count {
            0 => "success",
            n if n == total => "error",
            _ => "partial",
        },
        total,
        success_count: total - error_count,
        error_count,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_parsed_with_errors_naming_the_field() {
        let err = SendRequest::from_value(&json!({"title": 5})).unwrap_err();
        assert!(err.message().starts_with("title: "), "{err}");
        let err = SendRequest::from_value(&json!({"title": "x", "sevrity": "info"})).unwrap_err();
        assert!(err.message().contains("sevrity"), "{err}");
        let r = SendRequest::from_value(
            &json!({"title": "x", "severity": "CRITICAL", "tags": ["team:sre", "urgent"]}),
        )
        .unwrap();
        let n = r.notification("t-1").unwrap();
        assert_eq!(n.severity, Some(Severity::Critical));
        assert_eq!(n.tags.get("team").map(String::as_str), Some("sre"));
        assert_eq!(n.tags.get("urgent").map(String::as_str), Some("true"));
        assert_eq!(n.trace_id, "t-1");
        let err = SendRequest::from_value(&json!({"title": "x", "severity": "loud"}))
            .unwrap()
            .notification("")
            .unwrap_err();
        assert!(err.message().starts_with("severity: "), "{err}");
        let err = SendRequest::from_value(&json!({"message": "x"}))
            .unwrap()
            .notification("")
            .unwrap_err();
        assert!(err.message().starts_with("title: "), "{err}");
    }
}
