//! Slack [incoming webhooks](https://api.slack.com/messaging/webhooks) with a
//! [Block Kit](https://api.slack.com/reference/block-kit/blocks) message.
//!
//! The message stays within Slack's documented limits: header text 150 characters, section text
//! 3000, section fields 10 of 2000 each, context elements 10, 50 blocks; longer text is cut with a
//! visible marker ([`CUT_MARKER`]). The top-level `text` is the notification fallback (shown in
//! push notifications and by clients without Block Kit). Severity, status, incident, source and
//! the top recommendations are visible at a glance.
//!
//! Config: `webhook_url` (required, secret: it carries the token), `timeout_secs` (default 10),
//! `max_recommendations` (default 3, at most 10), `templates` (`text`: the main section,
//! `fallback`: the top-level text). Rendered text is mrkdwn-escaped (`&`, `<`, `>`).
//!
//! Slack answers `200 ok`; errors are plain-text codes (`invalid_payload` 400, `invalid_token`
//! 403, `channel_not_found` 404, `channel_is_archived` 410) and 429 with `Retry-After`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::plugin::{
    BuildContext, DeliveryReceipt, Notification, NotifyDriver, NotifyDriverDescriptor,
};
use tocsin_core::{Error, Result, Secret};

use crate::template::{TemplateContext, Templates, cut, effective_severity, overrides_from};

/// Slack's limit on a header block's text.
pub const MAX_HEADER: usize = 150;
/// Slack's limit on a section's text.
pub const MAX_SECTION: usize = 3000;
/// Slack's limit on one section field.
pub const MAX_FIELD: usize = 2000;
/// Slack's limit on the fields of a section.
pub const MAX_FIELDS: usize = 10;
/// Slack's limit on the elements of a context block.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack rejects messages whose blocks hold too much text in all (`msg_blocks_too_long`, well
/// below the 50 × 3000 the per-block limits would allow); we keep the blocks' text under this.
pub const MAX_TOTAL_TEXT: usize = 12_000;
/// What a summary field (incident, source, instance) shows at most: a glance, not a page.
pub const FIELD_SHOWN: usize = 300;
/// Appended to every text that was cut.
pub const CUT_MARKER: &str = " … (truncated)";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackConfig {
    /// Incoming webhook URL (secret). Required.
    webhook_url: Secret,
    /// Request timeout in seconds. Default 10.
    #[serde(default)]
    timeout_secs: Option<f64>,
    /// Recommendations shown. Default 3.
    #[serde(default)]
    max_recommendations: Option<usize>,
    /// Template overrides (`text`, `fallback`).
    #[serde(default)]
    #[allow(dead_code)]
    templates: Option<Value>,
}

/// Built-in templates.
pub const DEFAULT_TEMPLATES: &[(&str, &str)] = &[
    (
        "fallback",
        "[{{ severity_upper }}] {{ title }}{% if status == 'resolved' %} (resolved){% endif %}",
    ),
    ("text", include_str!("templates/slack.txt")),
];

/// The Slack driver.
pub struct SlackDriver {
    url: Secret,
    client: reqwest::Client,
    max_recommendations: usize,
    templates: Templates,
}

impl std::fmt::Debug for SlackDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackDriver")
            .field("webhook_url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Characters of text in a list of blocks (header, section text and fields, context elements).
pub fn text_len(blocks: &[Value]) -> usize {
    fn count(v: &Value) -> usize {
        match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, x)| {
                    if k == "text" {
                        x.as_str().map_or_else(|| count(x), |t| t.chars().count())
                    } else {
                        count(x)
                    }
                })
                .sum(),
            Value::Array(items) => items.iter().map(count).sum(),
            _ => 0,
        }
    }
    blocks.iter().map(count).sum()
}

/// Escapes the three characters mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn mrkdwn(text: String, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": cut(&text, max, CUT_MARKER)})
}

impl SlackDriver {
    /// Validates the config (no I/O) and builds the driver.
    pub fn from_config(config: &Value, ctx: &BuildContext) -> Result<Self> {
        let c: SlackConfig = crate::parse_config("slack", config)?;
        crate::http::url_from(
            &json!({"webhook_url": c.webhook_url.expose()}),
            "webhook_url",
            true,
        )?;
        let max_recommendations = c.max_recommendations.unwrap_or(3);
        if max_recommendations > 10 {
            return Err(Error::invalid_config("max_recommendations: at most 10"));
        }
        let timeout = crate::timeout_secs(c.timeout_secs)?;
        let templates = Templates::new(
            DEFAULT_TEMPLATES,
            &overrides_from(config)?,
            ctx.templates_dir.as_deref(),
        )?;
        Ok(Self {
            url: c.webhook_url,
            client: crate::http::client(timeout)?,
            max_recommendations,
            templates,
        })
    }

    /// The Block Kit message for a notification, within Slack's limits.
    pub fn payload(&self, n: &Notification) -> Result<Value> {
        let ctx = TemplateContext::build(n);
        let severity = effective_severity(n);
        let resolved = ctx["status"] == "resolved";
        let icon = match (resolved, severity.as_str()) {
            (true, _) => ":large_green_circle:",
            (_, "critical") => ":red_circle:",
            (_, "warning") => ":large_orange_circle:",
            _ => ":large_blue_circle:",
        };
        let mut blocks = Vec::new();
        let header = format!(
            "{icon} [{}] {}",
            severity.as_str().to_ascii_uppercase(),
            n.title.replace('\n', " ")
        );
        blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": cut(&header, MAX_HEADER, CUT_MARKER), "emoji": true}}));

        let mut fields = vec![
            mrkdwn(
                format!("*Severity*\n{}", severity.as_str().to_ascii_uppercase()),
                MAX_FIELD,
            ),
            mrkdwn(
                format!("*Status*\n{}", ctx["status"].as_str().unwrap_or("firing")),
                MAX_FIELD,
            ),
        ];
        if let Some(i) = &n.incident {
            fields.push(mrkdwn(
                format!("*Incident*\n#{} {} ({})", i.id, escape(&i.title), i.status),
                FIELD_SHOWN,
            ));
        }
        let sources: Vec<String> = ctx["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(escape)
            .collect();
        if !sources.is_empty() {
            fields.push(mrkdwn(
                format!("*Source*\n{}", sources.join(", ")),
                FIELD_SHOWN,
            ));
        }
        if !n.alerts.is_empty() {
            fields.push(mrkdwn(format!("*Alerts*\n{}", n.alerts.len()), MAX_FIELD));
        }
        if let Some(host) = n.alerts.iter().find_map(|a| a.labels.get("instance")) {
            fields.push(mrkdwn(format!("*Instance*\n{}", escape(host)), FIELD_SHOWN));
        }
        fields.truncate(MAX_FIELDS);
        blocks.push(json!({"type": "section", "fields": fields}));

        let text = escape(self.templates.render("text", &ctx)?.trim());
        if !text.is_empty() {
            blocks.push(json!({"type": "section", "text": mrkdwn(text, MAX_SECTION)}));
        }

        if !n.checks.is_empty() {
            let s = &ctx["check_summary"];
            let mut t = format!(
                "*Checks* — {} ok · {} warning · {} critical · {} unknown",
                s["ok"], s["warning"], s["critical"], s["unknown"]
            );
            for c in &n.checks {
                t.push_str(&format!("\n• `{}` *{}*", escape(&c.checker), c.status));
                if !c.message.is_empty() {
                    t.push_str(&format!(" — {}", escape(&c.message)));
                }
            }
            blocks.push(json!({"type": "section", "text": mrkdwn(t, MAX_SECTION)}));
        }

        let recs: Vec<&Value> = ctx["top_recommendations"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let shown = recs.len().min(self.max_recommendations);
        if shown > 0 {
            blocks.push(json!({"type": "divider"}));
            blocks.push(json!({"type": "section", "text": mrkdwn(format!("*Top recommendations* ({shown} of {})", n.recommendations.len()), MAX_SECTION)}));
            // The context's list is already capped at three; more may be asked for.
            let mut all: Vec<_> = n.recommendations.iter().collect();
            all.sort_by_key(|r| crate::template::priority_rank(r.priority));
            let wanted = all.len().min(self.max_recommendations);
            for (i, r) in all.into_iter().take(self.max_recommendations).enumerate() {
                // What is left of the message's text budget, keeping room for the context line.
                let left = MAX_TOTAL_TEXT.saturating_sub(text_len(&blocks) + 600);
                if left < 300 {
                    blocks.push(json!({"type": "context", "elements": [mrkdwn(
                        format!("… {} more recommendations not shown (message size limit)", wanted - i),
                        MAX_SECTION,
                    )]}));
                    break;
                }
                let mut t = format!(
                    "*{}. [{}] {}*",
                    i + 1,
                    r.priority.as_str().to_ascii_uppercase(),
                    escape(&r.title)
                );
                if !r.description.is_empty() {
                    t.push('\n');
                    t.push_str(&escape(&r.description));
                }
                for a in r.actions.iter().take(5) {
                    t.push_str("\n• ");
                    t.push_str(&escape(a));
                }
                blocks.push(json!({"type": "section", "text": mrkdwn(t, MAX_SECTION.min(left))}));
            }
        }

        let mut ctx_elems = Vec::new();
        if let Some(link) = ctx["links"]["incident"]
            .as_str()
            .filter(|l| l.starts_with("http"))
        {
            ctx_elems.push(mrkdwn(
                format!("<{}|Incident>", link.replace(['<', '>', '|'], "")),
                MAX_SECTION,
            ));
        }
        for (label, key) in [
            ("trace", "trace_id"),
            ("run", "run_id"),
            ("key", "dedup_key"),
        ] {
            if let Some(v) = ctx[key].as_str().filter(|v| !v.is_empty()) {
                ctx_elems.push(mrkdwn(format!("{label} `{}`", escape(v)), MAX_SECTION));
            }
        }
        ctx_elems.truncate(MAX_CONTEXT_ELEMENTS);
        if !ctx_elems.is_empty() {
            blocks.push(json!({"type": "context", "elements": ctx_elems}));
        }

        if blocks.len() > MAX_BLOCKS {
            let dropped = blocks.len() - (MAX_BLOCKS - 1);
            blocks.truncate(MAX_BLOCKS - 1);
            blocks.push(json!({"type": "context", "elements": [mrkdwn(format!("… {dropped} more blocks truncated"), MAX_SECTION)]}));
        }
        let fallback = escape(self.templates.render("fallback", &ctx)?.trim());
        Ok(json!({"text": cut(&fallback, MAX_SECTION, CUT_MARKER), "blocks": blocks}))
    }
}

#[async_trait]
impl NotifyDriver for SlackDriver {
    async fn send(&self, n: &Notification) -> Result<DeliveryReceipt> {
        let payload = self.payload(n)?;
        let body = serde_json::to_vec(&payload)
            .map_err(|e| Error::internal(format!("cannot encode the message: {e}")))?;
        let req = self
            .client
            .post(self.url.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body);
        let (status, _, text) = crate::http::execute("Slack", req).await?;
        Ok(DeliveryReceipt {
            message_id: None,
            response: Some(crate::http::answer(status, &text)),
        })
    }
}

fn build(config: &Value, ctx: &BuildContext) -> Result<Arc<dyn NotifyDriver>> {
    Ok(Arc::new(SlackDriver::from_config(config, ctx)?))
}

/// The registration of the Slack driver.
pub const DESCRIPTOR: NotifyDriverDescriptor = NotifyDriverDescriptor {
    name: "slack",
    description: "Slack incoming webhook with a Block Kit message.",
    required: &["webhook_url"],
    optional: &["timeout_secs", "max_recommendations", "templates"],
    config_example: r#"{"webhook_url": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"}"#,
    build,
};

tocsin_core::register_notify_driver!(DESCRIPTOR);
