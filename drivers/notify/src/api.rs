//! The library calls: deliver to channels, ad-hoc sends, channel management.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tocsin_core::domain::{Delivery, DeliveryStatus, NotificationChannel, Severity, new_id};
use tocsin_core::plugin::{DeliveryReceipt, Notification, NotifyDriver, NotifyDriverDescriptor};
use tocsin_core::store::{self, NewDelivery};
use tocsin_core::{Error, ErrorKind, Result, Retry, Tocsin};

use crate::guard::OutboundGuard;
use crate::retry::{Attempt, AttemptSink, RetryPolicy, Retrying};

/// The driver name recorded on a delivery that no driver attempted (skipped).
pub const NO_DRIVER: &str = "none";

/// What one notification did across its channels.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifyOutcome {
    /// Every delivery record written, attempt by attempt (skips included), in order.
    pub deliveries: Vec<Delivery>,
    /// Per channel (or ad-hoc driver): the final result.
    pub results: Vec<ChannelResult>,
    /// Channels that received it.
    pub notified: usize,
    /// Channels that failed after their retries.
    pub failed: usize,
    /// Whether nothing was sent on purpose (`NOTIFY_SKIP_ALL`, no channel configured).
    pub skipped: bool,
}

/// The final result for one channel.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelResult {
    /// Channel name (`None` for an ad-hoc driver).
    pub channel: Option<String>,
    /// Driver.
    pub driver: String,
    /// `sent`, `failed` or `skipped`.
    pub status: DeliveryStatus,
    /// Attempts made now.
    pub attempts: u32,
    /// The idempotency key of this channel's delivery.
    pub idempotency_key: String,
    /// Provider message id.
    pub message_id: Option<String>,
    /// Provider answer (HTTP status or SMTP reply).
    pub response: Option<String>,
    /// The error, when it failed.
    pub error: Option<ErrorInfo>,
}

/// A delivery error as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    /// Kind.
    pub kind: ErrorKind,
    /// Message (never holds a secret).
    pub message: String,
    /// Whether a later retry may help.
    pub temporary: bool,
}

impl From<&Error> for ErrorInfo {
    fn from(e: &Error) -> Self {
        Self {
            kind: e.kind(),
            message: e.message().to_owned(),
            temporary: e.is_temporary(),
        }
    }
}

impl NotifyOutcome {
    /// The first failure as an error (temporary when any failure was), if any channel failed.
    pub fn first_error(&self) -> Option<Error> {
        let failed: Vec<_> = self
            .results
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| (r, e)))
            .collect();
        let (r, e) = failed.first()?;
        let temporary = failed.iter().any(|(_, e)| e.temporary);
        let who = r
            .channel
            .as_deref()
            .map(|c| format!("channel {c:?}"))
            .unwrap_or_else(|| format!("driver {:?}", r.driver));
        let msg = if failed.len() > 1 {
            format!(
                "{who}: {} (and {} more channels failed)",
                e.message,
                failed.len() - 1
            )
        } else {
            format!("{who}: {}", e.message)
        };
        Some(Error::new(e.kind, msg).with_retry(if temporary {
            Retry::Temporary
        } else {
            Retry::Permanent
        }))
    }
}

/// How a send is made.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The destination comes from a request body: check it with the outbound guard
    /// (`TOCSIN_OUTBOUND_ALLOW`).
    pub untrusted_destination: bool,
    /// The caller knows that no earlier attempt of this step exists (a run's node on its first
    /// attempt), so no earlier delivery is looked up before sending: one read less on the way
    /// to the receiver.
    pub first_attempt: bool,
}

/// A notification for a test or an ad-hoc send: fresh trace, idempotency and dedup keys.
pub fn adhoc_notification(title: &str, message: &str, severity: Option<Severity>) -> Notification {
    let id = new_id();
    Notification {
        title: title.to_owned(),
        message: message.to_owned(),
        severity,
        trace_id: id.clone(),
        idempotency_key: format!("adhoc-{id}"),
        dedup_key: format!("tocsin-adhoc-{id}"),
        ..Default::default()
    }
}

/// The provider's answer inside an error message (`HTTP 500 ...`, `SMTP 550 ...`), for the record.
fn answer_in(message: &str) -> Option<String> {
    for marker in ["HTTP ", "SMTP "] {
        for (i, _) in message.match_indices(marker) {
            let rest = &message[i..];
            if rest
                .as_bytes()
                .get(5..8)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            {
                return Some(crate::template::cut(rest, 1024, "…"));
            }
        }
    }
    None
}

/// Records each attempt of one channel's delivery.
struct Recorder {
    tocsin: Tocsin,
    channel: Option<String>,
    driver: String,
    key: String,
    trace_id: String,
    run_id: Option<String>,
    incident_id: Option<i64>,
    attempt_offset: i32,
    records: tokio::sync::Mutex<Vec<Delivery>>,
}

#[async_trait]
impl AttemptSink for Recorder {
    async fn attempt(&self, a: &Attempt) {
        let (status, message_id, response, error) = match &a.result {
            Ok(r) => (
                DeliveryStatus::Sent,
                r.message_id.clone(),
                r.response.clone(),
                None,
            ),
            Err(e) => (
                if a.next_delay.is_some() {
                    DeliveryStatus::Retrying
                } else {
                    DeliveryStatus::Failed
                },
                None,
                answer_in(e.message()),
                Some(e.to_string()),
            ),
        };
        let new = NewDelivery {
            channel_name: self.channel.clone(),
            driver: self.driver.clone(),
            status,
            attempt: self.attempt_offset + a.number as i32,
            idempotency_key: self.key.clone(),
            message_id,
            response,
            error,
            trace_id: self.trace_id.clone(),
            run_id: self.run_id.clone(),
            incident_id: self.incident_id,
            duration_ms: Some(a.duration.as_secs_f64() * 1000.0),
        };
        log_attempt(&new);
        match insert_record(&self.tocsin, new).await {
            Ok(d) => self.records.lock().await.push(d),
            Err(e) => tracing::error!(error = %e, "Could not record a delivery attempt."),
        }
    }
}

fn log_attempt(d: &NewDelivery) {
    let channel = d.channel_name.as_deref().unwrap_or("-");
    match d.status {
        DeliveryStatus::Sent => tracing::info!(channel, driver = %d.driver, attempt = d.attempt,
            key = %d.idempotency_key, trace_id = %d.trace_id, "Notification delivered."),
        DeliveryStatus::Skipped => {
            tracing::warn!(channel, reason = d.error.as_deref().unwrap_or(""),
            trace_id = %d.trace_id, "Notification skipped.")
        }
        _ => tracing::warn!(channel, driver = %d.driver, attempt = d.attempt, status = %d.status,
            error = d.error.as_deref().unwrap_or(""), trace_id = %d.trace_id, "Notification delivery failed."),
    }
}

fn incident_id(n: &Notification) -> Option<i64> {
    n.incident.as_ref().map(|i| i.id)
}

async fn record_skip(
    tocsin: &Tocsin,
    n: &Notification,
    channel: Option<&str>,
    driver: &str,
    key: &str,
    reason: &str,
) -> Result<Delivery> {
    let new = NewDelivery {
        channel_name: channel.map(str::to_owned),
        driver: driver.to_owned(),
        status: DeliveryStatus::Skipped,
        attempt: 0,
        idempotency_key: key.to_owned(),
        message_id: None,
        response: None,
        error: Some(reason.to_owned()),
        trace_id: n.trace_id.clone(),
        run_id: n.run_id.clone(),
        incident_id: incident_id(n),
        duration_ms: None,
    };
    log_attempt(&new);
    insert_record(tocsin, new).await
}

/// Inserts a delivery record. A notification may name an incident that is not stored (an API
/// caller's context, an incident deleted meanwhile): the attempt is then recorded without it
/// rather than lost.
async fn insert_record(tocsin: &Tocsin, new: NewDelivery) -> Result<Delivery> {
    let first = new.clone();
    match tocsin
        .store()
        .write(move |c| store::insert_delivery(c, &first))
        .await
    {
        Ok(d) => Ok(d),
        Err(e) if new.incident_id.is_some() && e.kind() == ErrorKind::Storage => {
            tracing::warn!(incident_id = new.incident_id, error = %e,
                "Could not link the delivery record to its incident; recording it without.");
            let mut without = new;
            without.incident_id = None;
            tocsin
                .store()
                .write(move |c| store::insert_delivery(c, &without))
                .await
        }
        Err(e) => Err(e),
    }
}

/// Builds a driver by name from an operator's config (a stored channel, the command line),
/// validating it without I/O. Values of the form `${env:NAME}` are replaced by the environment
/// variable `NAME`, so a stored channel need not hold its secret: `{"webhook_url":
/// "${env:SLACK_WEBHOOK_URL}"}`.
pub fn build_driver(
    tocsin: &Tocsin,
    driver: &str,
    config: &Value,
) -> Result<Arc<dyn NotifyDriver>> {
    let d = tocsin.plugins().notifiers.get(driver)?;
    let config = resolve_env_refs(config, "", &|name| std::env::var(name).ok())?;
    (d.build)(&config, &tocsin.build_context())
}

/// Builds a driver from a config that came from a request body: environment references are
/// refused (they would let a caller send the server's variables to a destination of its choice).
pub fn build_untrusted_driver(
    tocsin: &Tocsin,
    driver: &str,
    config: &Value,
) -> Result<Arc<dyn NotifyDriver>> {
    let d = tocsin.plugins().notifiers.get(driver)?;
    // A path on the server is the operator's to give, not a caller's.
    if config.get("ca_file").is_some_and(|v| !v.is_null()) {
        return Err(Error::invalid_input(
            "ca_file: not allowed in a request body (configure a channel instead)",
        ));
    }
    if let Some(field) = find_env_ref(config, "") {
        return Err(Error::invalid_input(format!(
            "{field}: environment references (${{env:...}}) are not allowed in a request body"
        )));
    }
    (d.build)(config, &tocsin.build_context())
}

/// The first field holding a `${env:NAME}` value.
fn find_env_ref(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) => env_ref(s).map(|_| path.to_owned()),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            find_env_ref(
                x,
                &if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                },
            )
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| find_env_ref(x, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The variable name of a `${env:NAME}` value.
fn env_ref(s: &str) -> Option<&str> {
    let name = s.strip_prefix("${env:")?.strip_suffix('}')?;
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    ok.then_some(name)
}

/// Replaces `${env:NAME}` values (at any depth) by `lookup(NAME)`; an unset one is an
/// [`ErrorKind::InvalidConfig`] error naming the field and the variable.
fn resolve_env_refs(
    v: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Value> {
    let field = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    Ok(match v {
        Value::String(s) => match env_ref(s) {
            Some(name) => Value::String(lookup(name).ok_or_else(|| {
                Error::invalid_config(format!("{path}: environment variable {name} is not set"))
            })?),
            None => v.clone(),
        },
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), resolve_env_refs(x, &field(k), lookup)?)))
                .collect::<Result<_>>()?,
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| resolve_env_refs(x, &format!("{path}[{i}]"), lookup))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// Sends through one driver with retries, recording every attempt.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    tocsin: &Tocsin,
    n: &Notification,
    channel: Option<&str>,
    driver_name: &str,
    built: Result<Arc<dyn NotifyDriver>>,
    key: String,
    policy: RetryPolicy,
    first_attempt: bool,
) -> (ChannelResult, Vec<Delivery>) {
    // Attempts of earlier runs of the same step (an engine retry) continue the numbering.
    let earlier: Vec<Delivery> = match &n.run_id {
        Some(run) if !first_attempt => {
            let run = run.clone();
            tocsin
                .store()
                .run(move |c| store::list_deliveries(c, Some(&run), 1000))
                .await
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mine: Vec<&Delivery> = earlier
        .iter()
        .filter(|d| d.idempotency_key == key)
        .collect();
    if let Some(sent) = mine.iter().find(|d| d.status == DeliveryStatus::Sent) {
        tracing::info!(channel = channel.unwrap_or("-"), key = %key, "Already delivered by an earlier attempt of this step; not sending again.");
        let result = ChannelResult {
            channel: channel.map(str::to_owned),
            driver: driver_name.to_owned(),
            status: DeliveryStatus::Sent,
            attempts: 0,
            idempotency_key: key,
            message_id: sent.message_id.clone(),
            response: sent.response.clone(),
            error: None,
        };
        return (result, vec![(*sent).clone()]);
    }
    let recorder = Recorder {
        tocsin: tocsin.clone(),
        channel: channel.map(str::to_owned),
        driver: driver_name.to_owned(),
        key: key.clone(),
        trace_id: n.trace_id.clone(),
        run_id: n.run_id.clone(),
        incident_id: incident_id(n),
        attempt_offset: mine.iter().map(|d| d.attempt).max().unwrap_or(0),
        records: tokio::sync::Mutex::new(Vec::new()),
    };
    let mut keyed = n.clone();
    keyed.idempotency_key = key.clone();
    let (result, attempts) = match built {
        Ok(driver) => {
            let r = Retrying::new(driver, policy)
                .send_recorded(&keyed, &recorder)
                .await;
            (r, recorder.records.lock().await.len() as u32)
        }
        Err(e) => {
            // An invalid stored config is recorded like a failed attempt: the run shows why.
            recorder
                .attempt(&Attempt {
                    number: 1,
                    result: Err(e.clone()),
                    duration: Duration::ZERO,
                    next_delay: None,
                })
                .await;
            (Err(e), 1)
        }
    };
    let records = recorder.records.into_inner();
    let result = match result {
        Ok(DeliveryReceipt {
            message_id,
            response,
        }) => ChannelResult {
            channel: channel.map(str::to_owned),
            driver: driver_name.to_owned(),
            status: DeliveryStatus::Sent,
            attempts,
            idempotency_key: key,
            message_id,
            response,
            error: None,
        },
        Err(e) => ChannelResult {
            channel: channel.map(str::to_owned),
            driver: driver_name.to_owned(),
            status: DeliveryStatus::Failed,
            attempts,
            idempotency_key: key,
            message_id: None,
            response: answer_in(e.message()),
            error: Some(ErrorInfo::from(&e)),
        },
    };
    (result, records)
}

fn base_key(n: &Notification) -> String {
    if n.idempotency_key.is_empty() {
        new_id()
    } else {
        n.idempotency_key.clone()
    }
}

/// Delivers `notification` to channels: the ones named, else every enabled channel.
///
/// - `NOTIFY_SKIP_ALL`: nothing is sent; one skipped delivery is recorded.
/// - No channel configured: one skipped delivery "no channel configured" is recorded and a
///   warning logged (never a silent success).
/// - A named channel that does not exist is a [`ErrorKind::NotFound`] error; a named channel that
///   is disabled is recorded as skipped.
/// - Each channel is sent to concurrently, with retries of temporary errors
///   ([`RetryPolicy::default`]); every attempt is recorded with the idempotency key
///   `<notification key>:<channel>`, the same across retries. A channel already delivered under
///   that key in the same run (an engine retry of the step) is not sent again.
///
/// Failures of channels are in the outcome ([`NotifyOutcome::first_error`]), not an `Err`.
pub async fn notify(
    tocsin: &Tocsin,
    notification: &Notification,
    channels: Option<&[String]>,
) -> Result<NotifyOutcome> {
    notify_with(tocsin, notification, channels, RetryPolicy::default()).await
}

/// [`notify`] with a given retry policy.
pub async fn notify_with(
    tocsin: &Tocsin,
    notification: &Notification,
    channels: Option<&[String]>,
    policy: RetryPolicy,
) -> Result<NotifyOutcome> {
    let options = SendOptions {
        retry: policy,
        ..SendOptions::default()
    };
    notify_with_options(tocsin, notification, channels, &options).await
}

/// [`notify`] with options: the retry policy, and whether this is the first attempt of its
/// step. The outbound guard does not apply: channels are stored configuration.
pub async fn notify_with_options(
    tocsin: &Tocsin,
    notification: &Notification,
    channels: Option<&[String]>,
    options: &SendOptions,
) -> Result<NotifyOutcome> {
    let (policy, first_attempt) = (options.retry, options.first_attempt);
    let n = notification;
    let base = base_key(n);
    let mut outcome = NotifyOutcome::default();
    if tocsin.config().notify_skip_all {
        let d = record_skip(
            tocsin,
            n,
            None,
            NO_DRIVER,
            &base,
            "NOTIFY_SKIP_ALL is set: delivery skipped",
        )
        .await?;
        outcome.deliveries.push(d);
        outcome.skipped = true;
        return Ok(outcome);
    }
    let selected: Vec<NotificationChannel> = match channels {
        Some(names) if !names.is_empty() => {
            let names = names.to_vec();
            tocsin
                .store()
                .run(move |c| {
                    names
                        .iter()
                        .map(|name| store::get_channel(c, name))
                        .collect::<Result<Vec<_>>>()
                })
                .await?
        }
        _ => {
            tocsin
                .store()
                .run(|c| store::list_channels(c, true))
                .await?
        }
    };
    if selected.is_empty() {
        let d = record_skip(tocsin, n, None, NO_DRIVER, &base, "no channel configured").await?;
        tracing::warn!(trace_id = %n.trace_id, "No notification channel is configured: nothing was sent. Add one with `tocsin channels add`.");
        outcome.deliveries.push(d);
        outcome.skipped = true;
        return Ok(outcome);
    }
    let mut jobs = Vec::new();
    for ch in &selected {
        let key = format!("{base}:{}", ch.name);
        if !ch.enabled {
            let d = record_skip(
                tocsin,
                n,
                Some(&ch.name),
                &ch.driver,
                &key,
                "channel disabled",
            )
            .await?;
            outcome.results.push(ChannelResult {
                channel: Some(ch.name.clone()),
                driver: ch.driver.clone(),
                status: DeliveryStatus::Skipped,
                attempts: 0,
                idempotency_key: key,
                message_id: None,
                response: None,
                error: None,
            });
            outcome.deliveries.push(d);
            continue;
        }
        let built = build_driver(tocsin, &ch.driver, &ch.config)
            .map_err(|e| Error::new(e.kind(), format!("channel {:?}: {}", ch.name, e.message())));
        jobs.push(deliver(
            tocsin,
            n,
            Some(&ch.name),
            &ch.driver,
            built,
            key,
            policy,
            first_attempt,
        ));
    }
    for (result, records) in futures::future::join_all(jobs).await {
        match result.status {
            DeliveryStatus::Sent => outcome.notified += 1,
            DeliveryStatus::Failed => outcome.failed += 1,
            _ => {}
        }
        outcome.results.push(result);
        outcome.deliveries.extend(records);
    }
    Ok(outcome)
}

/// The result of an ad-hoc send that succeeded.
#[derive(Debug, Clone, Serialize)]
pub struct SendOutcome {
    /// The final result.
    pub result: ChannelResult,
    /// Every attempt recorded.
    pub deliveries: Vec<Delivery>,
}

/// Sends `notification` through `driver_name` with an ad-hoc `config` (test-notify, the send
/// endpoint), retrying and recording like [`notify`] (with no channel name).
///
/// Errors: unknown driver [`ErrorKind::NotFound`]; invalid config [`ErrorKind::InvalidConfig`]
/// naming the field; a failed delivery the driver's error (provider's answer in the message).
pub async fn send_with(
    tocsin: &Tocsin,
    driver_name: &str,
    config: &Value,
    notification: &Notification,
) -> Result<SendOutcome> {
    send_with_options(
        tocsin,
        driver_name,
        config,
        notification,
        &SendOptions::default(),
    )
    .await
}

/// [`send_with`] with options: retry policy, and the outbound guard for configs that come from a
/// request body.
pub async fn send_with_options(
    tocsin: &Tocsin,
    driver_name: &str,
    config: &Value,
    notification: &Notification,
    options: &SendOptions,
) -> Result<SendOutcome> {
    single(send_with_outcome(tocsin, driver_name, config, notification, options).await?)
}

/// Like [`send_with_options`], but a failed delivery is reported in the outcome (with its
/// attempts) rather than as an `Err`; `Err` is kept for an unknown driver, an invalid config or a
/// destination the guard refuses.
pub async fn send_with_outcome(
    tocsin: &Tocsin,
    driver_name: &str,
    config: &Value,
    notification: &Notification,
    options: &SendOptions,
) -> Result<NotifyOutcome> {
    let driver = if options.untrusted_destination {
        build_untrusted_driver(tocsin, driver_name, config)?
    } else {
        build_driver(tocsin, driver_name, config)?
    };
    if options.untrusted_destination {
        OutboundGuard::from_env()?
            .check_config(driver_name, config)
            .await?;
    }
    let key = base_key(notification);
    let mut outcome = NotifyOutcome::default();
    if tocsin.config().notify_skip_all {
        let d = record_skip(
            tocsin,
            notification,
            None,
            driver_name,
            &key,
            "NOTIFY_SKIP_ALL is set: delivery skipped",
        )
        .await?;
        outcome.results.push(ChannelResult {
            channel: None,
            driver: driver_name.to_owned(),
            status: DeliveryStatus::Skipped,
            attempts: 0,
            idempotency_key: key,
            message_id: None,
            response: None,
            error: None,
        });
        outcome.deliveries.push(d);
        outcome.skipped = true;
        return Ok(outcome);
    }
    let (result, deliveries) = deliver(
        tocsin,
        notification,
        None,
        driver_name,
        Ok(driver),
        key,
        options.retry,
        options.first_attempt,
    )
    .await;
    match result.status {
        DeliveryStatus::Sent => outcome.notified += 1,
        DeliveryStatus::Failed => outcome.failed += 1,
        _ => {}
    }
    outcome.results.push(result);
    outcome.deliveries = deliveries;
    Ok(outcome)
}

/// Sends to one stored channel by name (test-notify with a channel, `/notify/send/` with `channel`).
pub async fn send_to_channel(
    tocsin: &Tocsin,
    channel: &str,
    notification: &Notification,
    policy: RetryPolicy,
) -> Result<SendOutcome> {
    let names = [channel.to_owned()];
    single(notify_with(tocsin, notification, Some(&names), policy).await?)
}

/// The one delivery of a single-destination send, or its error.
fn single(outcome: NotifyOutcome) -> Result<SendOutcome> {
    if let Some(e) = outcome.first_error() {
        return Err(e);
    }
    let result = outcome
        .results
        .into_iter()
        .next()
        .ok_or_else(|| Error::internal("no delivery result"))?;
    Ok(SendOutcome {
        result,
        deliveries: outcome.deliveries,
    })
}

// ---------------------------------------------------------------------------------------------
// Channels

fn check_channel_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "name: {name:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Validates a driver config without I/O: the driver must exist and build.
pub fn validate_config(tocsin: &Tocsin, driver: &str, config: &Value) -> Result<()> {
    build_driver(tocsin, driver, config).map(|_| ())
}

/// Creates a channel after validating its driver and config.
pub async fn create_channel(
    tocsin: &Tocsin,
    name: &str,
    driver: &str,
    config: &Value,
    description: &str,
) -> Result<NotificationChannel> {
    check_channel_name(name)?;
    validate_config(tocsin, driver, config)?;
    let (name, driver, config, description) = (
        name.to_owned(),
        driver.to_owned(),
        config.clone(),
        description.to_owned(),
    );
    tocsin
        .store()
        .write(move |c| store::insert_channel(c, &name, &driver, &config, &description))
        .await
}

/// Replaces a channel's config and/or description (the config is validated against its driver).
pub async fn update_channel(
    tocsin: &Tocsin,
    name: &str,
    config: Option<&Value>,
    description: Option<&str>,
) -> Result<NotificationChannel> {
    let current = get_channel(tocsin, name).await?;
    let config = config.cloned().unwrap_or(current.config);
    validate_config(tocsin, &current.driver, &config)?;
    let description = description
        .map(str::to_owned)
        .unwrap_or(current.description);
    let name = name.to_owned();
    tocsin
        .store()
        .write(move |c| store::update_channel(c, &name, &config, &description))
        .await
}

/// One channel (config as stored: use [`redacted_channel`] before showing it).
pub async fn get_channel(tocsin: &Tocsin, name: &str) -> Result<NotificationChannel> {
    let name = name.to_owned();
    tocsin
        .store()
        .run(move |c| store::get_channel(c, &name))
        .await
}

/// Channels by name.
pub async fn list_channels(
    tocsin: &Tocsin,
    only_enabled: bool,
) -> Result<Vec<NotificationChannel>> {
    tocsin
        .store()
        .run(move |c| store::list_channels(c, only_enabled))
        .await
}

/// Disables a channel (runs stop notifying it).
pub async fn disable_channel(tocsin: &Tocsin, name: &str) -> Result<NotificationChannel> {
    let name = name.to_owned();
    tocsin
        .store()
        .write(move |c| store::set_channel_enabled(c, &name, false))
        .await
}

/// Enables a channel.
pub async fn enable_channel(tocsin: &Tocsin, name: &str) -> Result<NotificationChannel> {
    let name = name.to_owned();
    tocsin
        .store()
        .write(move |c| store::set_channel_enabled(c, &name, true))
        .await
}

/// Deletes a channel.
pub async fn remove_channel(tocsin: &Tocsin, name: &str) -> Result<()> {
    let name = name.to_owned();
    tocsin
        .store()
        .write(move |c| store::delete_channel(c, &name))
        .await
}

/// A driver config with its secrets replaced by `**REDACTED**`: secret-named fields (the whole
/// Slack webhook URL among them), every webhook header value, and the query of any URL.
pub fn redact_config(config: &Value) -> Value {
    let mut v = tocsin_core::secret::redact(config);
    // A URL's query often carries a token (`?token=...`): show the URL without it.
    if let Value::Object(m) = &mut v {
        for (k, val) in m.iter_mut() {
            if k.ends_with("url")
                && let Some(u) = val.as_str()
                && let Some((base, _)) = u.split_once('?')
            {
                *val = Value::String(format!("{base}?{}", tocsin_core::secret::REDACTED));
            }
        }
    }
    if let Some(Value::Object(h)) = v.get_mut("headers") {
        for value in h.values_mut() {
            *value = Value::String(tocsin_core::secret::REDACTED.to_owned());
        }
    }
    v
}

/// A channel ready to show: config redacted.
pub fn redacted_channel(mut channel: NotificationChannel) -> NotificationChannel {
    channel.config = redact_config(&channel.config);
    channel
}

/// A driver's description for listings (`list-notify-drivers`, `/notify/drivers/`).
#[derive(Debug, Clone, Serialize)]
pub struct DriverInfo {
    /// Name.
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// Required config keys.
    pub required: &'static [&'static str],
    /// Optional config keys.
    pub optional: &'static [&'static str],
    /// Example config.
    pub example: Value,
}

impl From<&NotifyDriverDescriptor> for DriverInfo {
    fn from(d: &NotifyDriverDescriptor) -> Self {
        Self {
            name: d.name,
            description: d.description,
            required: d.required,
            optional: d.optional,
            example: serde_json::from_str(d.config_example).unwrap_or(Value::Null),
        }
    }
}

/// Every registered notify driver, sorted by name.
pub fn list_drivers(tocsin: &Tocsin) -> Vec<DriverInfo> {
    let reg = &tocsin.plugins().notifiers;
    reg.names()
        .into_iter()
        .filter_map(|n| reg.get(n).ok())
        .map(DriverInfo::from)
        .collect()
}

/// One driver by name ([`ErrorKind::NotFound`] listing the available ones).
pub fn driver_info(tocsin: &Tocsin, name: &str) -> Result<DriverInfo> {
    tocsin.plugins().notifiers.get(name).map(DriverInfo::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_resolved_and_unset_ones_named() {
        let lookup = |n: &str| (n == "HOOK").then(|| "https://hooks.example.com/T0".to_owned());
        let v = serde_json::json!({"webhook_url": "${env:HOOK}", "headers": {"A": "${env:NOPE}"}, "x": "${env:}"});
        let err = resolve_env_refs(&v, "", &lookup).unwrap_err();
        assert!(
            err.message().contains("headers.A") && err.message().contains("NOPE"),
            "{err}"
        );
        let v = serde_json::json!({"webhook_url": "${env:HOOK}", "keep": "${env:}", "n": 1});
        let r = resolve_env_refs(&v, "", &lookup).unwrap();
        assert_eq!(r["webhook_url"], "https://hooks.example.com/T0");
        assert_eq!(r["keep"], "${env:}");
    }

    #[test]
    fn provider_answers_are_found_in_messages() {
        assert_eq!(
            answer_in("Slack answered HTTP 500 Internal Server Error: boom").as_deref(),
            Some("HTTP 500 Internal Server Error: boom")
        );
        assert_eq!(
            answer_in("SMTP server answered SMTP 550: no such user").as_deref(),
            Some("SMTP 550: no such user")
        );
        assert_eq!(answer_in("cannot connect to Slack"), None);
    }
}
