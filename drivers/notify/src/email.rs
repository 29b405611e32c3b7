//! Email over SMTP ([RFC 5321](https://www.rfc-editor.org/rfc/rfc5321)) with
//! [lettre](https://docs.rs/lettre/0.11): a `multipart/alternative` message with a text and an
//! HTML part ([RFC 2046 §5.1.4](https://www.rfc-editor.org/rfc/rfc2046#section-5.1.4)), subject
//! `[SEVERITY] title`.
//!
//! Config: `smtp_host` (required), `smtp_port` (default 587, or 465 with `tls: implicit`), `tls`
//! (`starttls` default, `implicit`, or `none` for a relay on loopback), `username`, `password`
//! (secret), `from` (required), `to` (required, list or comma-separated), `timeout_secs`
//! (default 10), `ca_file` (extra trusted CA certificates, PEM), `templates` (`subject`, `text`,
//! `html`).
//!
//! SMTP replies map to errors: 4xx temporary, 5xx permanent (535 and friends are
//! [`ErrorKind::Unauthorized`]); refused connections and timeouts temporary.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::Value;
use tocsin_core::plugin::{
    BuildContext, DeliveryReceipt, Notification, NotifyDriver, NotifyDriverDescriptor,
};
use tocsin_core::{Error, ErrorKind, Result, Retry, Secret};

use crate::template::{TemplateContext, TemplateOverrides, Templates, overrides_from};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain connection upgraded with `STARTTLS`, required (the default).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS: only for a relay on loopback (credentials are refused elsewhere).
    None,
}

/// A list given as a JSON list or as one comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The email driver's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailConfig {
    /// SMTP server. Required.
    smtp_host: String,
    /// Port. Default 587 (465 with `tls: implicit`).
    #[serde(default)]
    smtp_port: Option<u16>,
    /// Default `starttls`.
    #[serde(default)]
    tls: TlsMode,
    /// Login. Default none (no authentication).
    #[serde(default)]
    username: Option<String>,
    /// Password (secret). Required with `username`.
    #[serde(default)]
    password: Option<Secret>,
    /// Sender mailbox. Required.
    from: String,
    /// Recipients. Required, at least one.
    to: OneOrMany,
    /// Whole-send timeout in seconds. Default 10.
    #[serde(default)]
    timeout_secs: Option<f64>,
    /// A PEM file of extra trusted CA certificates (a private relay's CA), read when the first
    /// message is sent. Default none: the system's roots only.
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    /// Template overrides (`subject`, `text`, `html`).
    #[serde(default)]
    #[allow(dead_code)]
    templates: Option<Value>,
}

/// Built-in templates.
pub const DEFAULT_TEMPLATES: &[(&str, &str)] = &[
    ("subject", "[{{ severity_upper }}] {{ title }}"),
    ("text", include_str!("templates/email.txt")),
    ("html", include_str!("templates/email.html")),
];

/// The email driver.
pub struct EmailDriver {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<(String, Secret)>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    ca_file: Option<std::path::PathBuf>,
    templates: Templates,
    transport: tokio::sync::OnceCell<AsyncSmtpTransport<Tokio1Executor>>,
}

impl std::fmt::Debug for EmailDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailDriver")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn mailbox(field: &str, s: &str) -> Result<Mailbox> {
    s.trim().parse::<Mailbox>().map_err(|e| {
        Error::invalid_config(format!(
            "{field}: {:?} is not a valid mailbox: {e}",
            s.trim()
        ))
    })
}

impl EmailDriver {
    /// Validates the config (no I/O) and builds the driver.
    pub fn from_config(config: &Value, ctx: &BuildContext) -> Result<Self> {
        let c: EmailConfig = crate::parse_config("email", config)?;
        let overrides: TemplateOverrides = overrides_from(config)?;
        let host = c.smtp_host.trim().to_owned();
        if host.is_empty() || host.contains(['/', ' ', ':']) && !host.starts_with('[') {
            return Err(Error::invalid_config(
                "smtp_host: expected a host name or address",
            ));
        }
        let port = c
            .smtp_port
            .unwrap_or(if c.tls == TlsMode::Implicit { 465 } else { 587 });
        if port == 0 {
            return Err(Error::invalid_config("smtp_port: must be 1 to 65535"));
        }
        let credentials = match (c.username, c.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
            (Some(_), None) => {
                return Err(Error::invalid_config(
                    "password: required when username is set",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid_config(
                    "username: required when password is set",
                ));
            }
            _ => None,
        };
        if credentials.is_some() && c.tls == TlsMode::None && !is_loopback_host(&host) {
            return Err(Error::invalid_config(
                "tls: \"none\" would send the password in clear to a remote host; use starttls or implicit",
            ));
        }
        let from = mailbox("from", &c.from)?;
        let to_raw: Vec<String> = match c.to {
            OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
            OneOrMany::Many(v) => v,
        };
        let to = to_raw
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| mailbox("to", s))
            .collect::<Result<Vec<_>>>()?;
        if to.is_empty() {
            return Err(Error::invalid_config(
                "to: at least one recipient is required",
            ));
        }
        let timeout = crate::timeout_secs(c.timeout_secs)?;
        let templates =
            Templates::new(DEFAULT_TEMPLATES, &overrides, ctx.templates_dir.as_deref())?;
        Ok(Self {
            host,
            port,
            tls: c.tls,
            credentials,
            from,
            to,
            timeout,
            ca_file: c.ca_file,
            templates,
            transport: tokio::sync::OnceCell::new(),
        })
    }

    fn make_transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
        let host = self.host.trim_matches(['[', ']']);
        let builder = match self.tls {
            TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            TlsMode::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            TlsMode::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|e| {
            Error::invalid_config(format!("smtp_host: cannot set up TLS for {host:?}: {e}"))
        })?;
        let mut builder = builder.port(self.port).timeout(Some(self.timeout));
        if let (Some(ca_file), TlsMode::Starttls | TlsMode::Implicit) = (&self.ca_file, self.tls) {
            let pem = std::fs::read(ca_file).map_err(|e| {
                Error::invalid_config(format!("ca_file: cannot read {}: {e}", ca_file.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                Error::invalid_config(format!(
                    "ca_file: {} is not a PEM certificate: {e}",
                    ca_file.display()
                ))
            })?;
            let params = TlsParameters::builder(host.to_owned())
                .add_root_certificate(cert)
                .build()
                .map_err(|e| Error::invalid_config(format!("ca_file: cannot set up TLS: {e}")))?;
            builder = builder.tls(if self.tls == TlsMode::Implicit {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            });
        }
        if let Some((u, p)) = &self.credentials {
            builder = builder.credentials(Credentials::new(u.clone(), p.expose().to_owned()));
        }
        Ok(builder.build())
    }

    /// Renders the message (subject, text, HTML) without sending it.
    pub fn render(&self, n: &Notification) -> Result<(String, String, String)> {
        let ctx = TemplateContext::build(n);
        let subject = self.templates.render("subject", &ctx)?;
        // A header cannot hold a line break; a long subject is folded by lettre.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let subject = crate::template::cut(&subject, 250, "…");
        Ok((
            subject,
            self.templates.render("text", &ctx)?,
            self.templates.render("html", &ctx)?,
        ))
    }

    /// The `Message-ID` of a notification: stable across retries so receivers can deduplicate.
    pub fn message_id(&self, n: &Notification) -> String {
        let key: String = if n.idempotency_key.is_empty() {
            tocsin_core::domain::new_id()
        } else {
            n.idempotency_key.clone()
        };
        let local: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._".contains(c) {
                    c
                } else {
                    '.'
                }
            })
            .collect();
        let domain = self.from.email.domain().to_owned();
        format!("<tocsin.{local}@{domain}>")
    }
}

fn smtp_error(err: lettre::transport::smtp::Error) -> Error {
    let code = err.status().map(|c| c.to_string());
    let text = source_text(&err);
    if err.is_timeout() {
        return Error::new(
            ErrorKind::Timeout,
            format!("SMTP server did not answer in time: {text}"),
        );
    }
    if let Some(code) = code {
        let msg = format!("SMTP server answered SMTP {code}: {text}");
        if err.is_transient() {
            return Error::new(ErrorKind::Upstream, msg).with_retry(Retry::Temporary);
        }
        if matches!(code.as_str(), "530" | "534" | "535" | "538") {
            return Error::new(ErrorKind::Unauthorized, msg).with_retry(Retry::Permanent);
        }
        return Error::new(ErrorKind::Upstream, msg).with_retry(Retry::Permanent);
    }
    // A certificate the client cannot trust will not become trusted by retrying.
    if err.is_tls() || text.contains("certificate") {
        return Error::new(ErrorKind::Upstream, format!("SMTP TLS failed: {text}"))
            .with_retry(Retry::Permanent);
    }
    if err.is_client() {
        // lettre refuses locally, e.g. credentials with no mechanism the server offers.
        return Error::new(ErrorKind::Upstream, format!("SMTP client error: {text}"))
            .with_retry(Retry::Permanent);
    }
    Error::new(
        ErrorKind::Upstream,
        format!("cannot talk to the SMTP server: {text}"),
    )
    .with_retry(Retry::Temporary)
}

fn source_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let t = e.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = e.source();
    }
    s
}

#[async_trait]
impl NotifyDriver for EmailDriver {
    async fn send(&self, n: &Notification) -> Result<DeliveryReceipt> {
        let (subject, text, html) = self.render(n)?;
        let message_id = self.message_id(n);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id.clone()))
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")).to_owned())
            .date_now();
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| Error::invalid_input(format!("cannot build the email: {e}")))?;
        let transport = self
            .transport
            .get_or_try_init(|| async { self.make_transport() })
            .await?;
        let started = std::time::Instant::now();
        let resp = tokio::time::timeout(
            self.timeout + Duration::from_secs(1),
            transport.send(message),
        )
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "SMTP server did not answer in time"))?
        .map_err(smtp_error)?;
        let reply = format!(
            "SMTP {} {}",
            resp.code(),
            resp.message().collect::<Vec<_>>().join(" ")
        );
        tracing::debug!(host = %self.host, recipients = self.to.len(), elapsed_ms = started.elapsed().as_millis() as u64,
            "Email accepted by the SMTP server.");
        Ok(DeliveryReceipt {
            message_id: Some(message_id),
            response: Some(reply.trim_end().to_owned()),
        })
    }
}

fn build(config: &Value, ctx: &BuildContext) -> Result<Arc<dyn NotifyDriver>> {
    Ok(Arc::new(EmailDriver::from_config(config, ctx)?))
}

/// The registration of the email driver.
pub const DESCRIPTOR: NotifyDriverDescriptor = NotifyDriverDescriptor {
    name: "email",
    description: "Email over SMTP (lettre): multipart text + HTML, subject \"[SEVERITY] title\".",
    required: &["smtp_host", "from", "to"],
    optional: &[
        "smtp_port",
        "tls",
        "username",
        "password",
        "timeout_secs",
        "ca_file",
        "templates",
    ],
    config_example: r#"{"smtp_host": "smtp.example.com", "smtp_port": 587, "tls": "starttls", "username": "tocsin", "password": "app-password", "from": "tocsin <tocsin@example.com>", "to": ["oncall@example.com"]}"#,
    build,
};

tocsin_core::register_notify_driver!(DESCRIPTOR);
