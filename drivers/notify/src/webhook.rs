//! A generic HTTP webhook: a JSON document (or a body template) sent to any URL, optionally signed
//! with HMAC-SHA256 ([RFC 2104](https://www.rfc-editor.org/rfc/rfc2104)) so the receiver can
//! verify us.
//!
//! Config: `url` (required), `method` (`POST` default, `PUT`, `PATCH`), `headers` (map; values
//! never logged), `content_type` (default `application/json`), `hmac_secret` (secret; enables the
//! signature), `signature_header` (default `X-Tocsin-Signature`), `timeout_secs` (default 10),
//! `templates` (`body`).
//!
//! # The default body
//! ```json
//! {"version": "1", "title": "...", "message": "...", "severity": "critical", "status": "firing",
//!  "incident": {...} | null, "alerts": [...], "check_summary": {"ok": 1, ...}, "checks": [...],
//!  "recommendations": [...], "tags": {...}, "context": {...}, "trace_id": "...",
//!  "run_id": "..." | null, "dedup_key": "...", "idempotency_key": "...", "links": {...}}
//! ```
//! (the records are those of the template context, see [`crate::template`]). A `body` template
//! sees the template context plus `document`, this default body as a value
//! (`{{ document|tojson }}`). With a JSON content type the body template is JSON-escaped
//! (`{"text": {{ title }}}`, not `"{{ title }}"`) and its output must parse as JSON.
//!
//! # Headers and signature
//! Every request carries `Idempotency-Key` (same across retries) and `X-Tocsin-Timestamp` (Unix
//! seconds). With `hmac_secret`, the signature header is
//! `sha256=<hex(HMAC-SHA256(secret, "<timestamp>.<body>"))>`: the receiver recomputes it over the
//! timestamp header, a dot and the raw body, compares in constant time, and rejects old timestamps.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tocsin_core::plugin::{
    BuildContext, DeliveryReceipt, Notification, NotifyDriver, NotifyDriverDescriptor,
};
use tocsin_core::{Error, Result, Secret};

use crate::template::{TemplateContext, Templates, overrides_from};

/// The default signature header.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Tocsin-Signature";
/// The timestamp header covered by the signature.
pub const TIMESTAMP_HEADER: &str = "X-Tocsin-Timestamp";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookConfig {
    /// Destination. Required.
    url: String,
    /// Default `POST`.
    #[serde(default)]
    method: Option<String>,
    /// Extra headers. Default none.
    #[serde(default)]
    headers: BTreeMap<String, Secret>,
    /// Default `application/json`.
    #[serde(default)]
    content_type: Option<String>,
    /// Signing key (secret). Default none: unsigned.
    #[serde(default)]
    hmac_secret: Option<Secret>,
    /// Default [`DEFAULT_SIGNATURE_HEADER`].
    #[serde(default)]
    signature_header: Option<String>,
    /// Request timeout in seconds. Default 10.
    #[serde(default)]
    timeout_secs: Option<f64>,
    /// Template overrides (`body`).
    #[serde(default)]
    #[allow(dead_code)]
    templates: Option<Value>,
}

/// Built-in templates (the default body is built without a template; this one is used only when
/// a `body` override exists, so it is never rendered otherwise).
pub const DEFAULT_TEMPLATES: &[(&str, &str)] = &[("body", "{{ document|tojson }}")];

/// The webhook driver.
pub struct WebhookDriver {
    url: reqwest::Url,
    method: Method,
    headers: HeaderMap,
    content_type: String,
    secret: Option<Secret>,
    signature_header: HeaderName,
    custom_body: bool,
    json_body: bool,
    client: reqwest::Client,
    templates: Templates,
}

impl std::fmt::Debug for WebhookDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDriver")
            .field("url", &crate::redacted_url(self.url.as_str()))
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// The signature of `body` sent at `timestamp`: `sha256=<hex>`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| Error::internal(format!("HMAC key rejected: {e}")))?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

impl WebhookDriver {
    /// Validates the config (no I/O) and builds the driver.
    pub fn from_config(config: &Value, ctx: &BuildContext) -> Result<Self> {
        let c: WebhookConfig = crate::parse_config("webhook", config)?;
        let url = crate::http::url_from(&json!({"url": c.url}), "url", false)?;
        let method = match c.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("POST") => Method::POST,
            Some("PUT") => Method::PUT,
            Some("PATCH") => Method::PATCH,
            Some(other) => {
                return Err(Error::invalid_config(format!(
                    "method: {other:?} is not one of POST, PUT, PATCH"
                )));
            }
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &c.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                Error::invalid_config(format!("headers: {k:?} is not a valid header name"))
            })?;
            let mut value = HeaderValue::from_str(v.expose()).map_err(|_| {
                Error::invalid_config(format!("headers.{k}: not a valid header value"))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let signature_header = c
            .signature_header
            .as_deref()
            .unwrap_or(DEFAULT_SIGNATURE_HEADER);
        let signature_header =
            HeaderName::from_bytes(signature_header.as_bytes()).map_err(|_| {
                Error::invalid_config(format!(
                    "signature_header: {signature_header:?} is not a valid header name"
                ))
            })?;
        if c.hmac_secret.as_ref().is_some_and(Secret::is_empty) {
            return Err(Error::invalid_config(
                "hmac_secret: empty; leave it out to send unsigned",
            ));
        }
        let content_type = c
            .content_type
            .unwrap_or_else(|| "application/json".to_owned());
        HeaderValue::from_str(&content_type)
            .map_err(|_| Error::invalid_config("content_type: not a valid header value"))?;
        let overrides = overrides_from(config)?;
        let custom_body = overrides.contains_key("body");
        let timeout = crate::timeout_secs(c.timeout_secs)?;
        // A JSON body template is JSON-escaped, so values can never break the document.
        let json_body = content_type.to_ascii_lowercase().contains("json");
        let templates = Templates::with_json_parts(
            DEFAULT_TEMPLATES,
            &overrides,
            ctx.templates_dir.as_deref(),
            if json_body { &["body"] } else { &[] },
        )?;
        Ok(Self {
            url,
            method,
            headers,
            content_type,
            secret: c.hmac_secret,
            signature_header,
            custom_body,
            json_body,
            client: crate::http::client(timeout)?,
            templates,
        })
    }

    /// The documented default body of a notification.
    pub fn document(n: &Notification) -> Value {
        let ctx = TemplateContext::build(n);
        let mut doc = serde_json::Map::new();
        doc.insert("version".into(), json!("1"));
        for key in [
            "title",
            "message",
            "severity",
            "status",
            "incident",
            "alerts",
            "check_summary",
            "checks",
            "recommendations",
            "tags",
            "context",
            "trace_id",
            "run_id",
            "dedup_key",
            "idempotency_key",
            "links",
        ] {
            doc.insert(key.into(), ctx[key].clone());
        }
        Value::Object(doc)
    }

    /// The body as sent.
    pub fn body(&self, n: &Notification) -> Result<Vec<u8>> {
        let doc = Self::document(n);
        if !self.custom_body {
            return serde_json::to_vec(&doc)
                .map_err(|e| Error::internal(format!("cannot encode the body: {e}")));
        }
        let mut ctx = TemplateContext::build(n);
        ctx["document"] = doc;
        let body = self.templates.render("body", &ctx)?;
        if self.json_body
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&body)
        {
            return Err(Error::new(
                tocsin_core::ErrorKind::Template,
                format!(
                    "template \"body\" did not render valid JSON (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ),
            ));
        }
        Ok(body.into_bytes())
    }
}

#[async_trait]
impl NotifyDriver for WebhookDriver {
    async fn send(&self, n: &Notification) -> Result<DeliveryReceipt> {
        let body = self.body(n)?;
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut req = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, &self.content_type)
            .header(TIMESTAMP_HEADER, &timestamp);
        if !n.idempotency_key.is_empty() {
            req = req.header("Idempotency-Key", &n.idempotency_key);
        }
        if let Some(secret) = &self.secret {
            let mut sig = HeaderValue::from_str(&signature(secret.expose(), &timestamp, &body)?)
                .map_err(|e| Error::internal(format!("bad signature header: {e}")))?;
            sig.set_sensitive(true);
            req = req.header(self.signature_header.clone(), sig);
        }
        let (status, headers, text) = crate::http::execute("the webhook", req.body(body)).await?;
        let message_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                serde_json::from_str::<Value>(&text)
                    .ok()?
                    .get("id")
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
            });
        Ok(DeliveryReceipt {
            message_id,
            response: Some(crate::http::answer(status, &text)),
        })
    }
}

fn build(config: &Value, ctx: &BuildContext) -> Result<Arc<dyn NotifyDriver>> {
    Ok(Arc::new(WebhookDriver::from_config(config, ctx)?))
}

/// The registration of the webhook driver.
pub const DESCRIPTOR: NotifyDriverDescriptor = NotifyDriverDescriptor {
    name: "webhook",
    description: "Generic HTTP webhook: a documented JSON document or a body template, optionally HMAC-SHA256 signed.",
    required: &["url"],
    optional: &[
        "method",
        "headers",
        "content_type",
        "hmac_secret",
        "signature_header",
        "timeout_secs",
        "templates",
    ],
    config_example: r#"{"url": "https://hooks.example.com/tocsin", "method": "POST", "headers": {"X-Team": "sre"}, "hmac_secret": "change-me"}"#,
    build,
};

tocsin_core::register_notify_driver!(DESCRIPTOR);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_dot_body() {
        // Computed independently: python3 hmac.new(b"Jefe", b'1700000000.{"a":1}', sha256).
        let sig = signature("Jefe", "1700000000", br#"{"a":1}"#).unwrap();
        assert_eq!(
            sig,
            "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }
}
