//! The INGEST write path: deduplicate alerts on (source, fingerprint), group them into incidents,
//! record material changes only, and run it all in one transaction per request.
//!
//! # Rules
//! - **Deduplication**: an alert is identified by its source (driver) and fingerprint. A re-send
//!   with nothing material changed only stamps `updated_at` (no history row). When every alert
//!   of a request is such a re-send of an alert this process stored, the request is answered from
//!   a read with no write transaction, and the stamps follow in a batch within
//!   `store::SEEN_FLUSH_EVERY` (a killed process loses the last-seen times of that moment, never
//!   an alert).
//! - **History** records material changes with old and new values: `created`, `resolved`,
//!   `refired`, `severity_changed`, `description_changed`, `labels_changed`, `acknowledged`.
//!   A resolution keeps the severity the alert fired with.
//! - **Grouping**: a firing alert joins the open (or acknowledged) incident with the same alert
//!   name and instance (the first of labels `instance_id`, `instance`, `hostname`, `host`);
//!   group key `name|instance`, or `name` without an instance. Otherwise it opens one.
//! - **Severity** of an incident only escalates while it is open or acknowledged (`escalated`
//!   event with old and new values).
//! - **Re-fire**: a resolved alert that fires again joins its incident if that is still active,
//!   else an active sibling incident of its group, else re-opens its resolved incident
//!   (`reopened` event); a closed incident stays closed and a new one opens.
//! - **Resolution** is incremental: when an alert resolves, its incident resolves if no other
//!   alert of it is firing (an indexed count of that incident's alerts, no scan of incidents).
//! - **Acknowledgement** (PagerDuty `incident.acknowledged`, Opsgenie `Acknowledge`...)
//!   acknowledges the incident; the alert keeps firing.
//! - **Notes**: a new value of the annotation `note` (Opsgenie `AddNote`) becomes a `note` event
//!   on the incident.
//! - **Atomicity**: every alert of one request, the incident changes and the [`TxHook`] run in
//!   one transaction: all of it is stored, or nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tocsin_core::domain::{
    AlertStatus, Incident, IncidentEvent, IncidentStatus, Labels, RawPayload, Severity, new_id,
};
use tocsin_core::plugin::{Headers, Ingestor, IngestorDescriptor, NormalizedAlert, ParsedPayload};
use tocsin_core::store::ingest::{
    AlertMatch, AlertState, AlertUpdate, count_firing_alerts, find_active_incident_by_group,
    find_alert_match, find_alert_state, set_incident_severity, touch_alert, touch_incident,
    update_alert,
};
use tocsin_core::store::{
    AnyConnection, NewAlert, NewIncident, add_alert_history, add_incident_event, get_incident,
    insert_alert_id, insert_incident, json_to, set_incident_status,
};
use tocsin_core::{Error, ErrorKind, Result, Secret, Tocsin};

/// A webhook body: raw bytes as received (decoded strictly, signatures checked) or an already
/// decoded JSON value (a pipeline state, an in-process caller: trusted, no signature check).
#[derive(Debug, Clone)]
pub enum IngestBody {
    /// The bytes as received.
    Raw(Vec<u8>),
    /// A decoded JSON value.
    Json(Value),
}

impl From<Vec<u8>> for IngestBody {
    fn from(v: Vec<u8>) -> Self {
        Self::Raw(v)
    }
}

impl From<&[u8]> for IngestBody {
    fn from(v: &[u8]) -> Self {
        Self::Raw(v.to_vec())
    }
}

impl From<Value> for IngestBody {
    fn from(v: Value) -> Self {
        Self::Json(v)
    }
}

/// One webhook to ingest.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// The driver named by the caller (`/alerts/webhook/<driver>/`), or `None` to detect it.
    pub driver: Option<String>,
    /// The body.
    pub body: IngestBody,
    /// Request headers, names lower-cased (for signatures).
    pub headers: Headers,
    /// The correlation id to record; a new one is made when `None`.
    pub trace_id: Option<String>,
}

/// What happened to an incident, as the hook and the outcome report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentChangeKind {
    /// A new incident was opened.
    Created,
    /// Its severity rose.
    Escalated,
    /// An alert of it fired again (it was re-opened, or a re-fired alert joined it).
    Refired,
    /// Its last firing alert resolved, so it resolved.
    Resolved,
    /// The vendor reported an acknowledgement.
    Acknowledged,
}

/// An incident that materially changed in one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentChange {
    /// The incident.
    pub incident_id: i64,
    /// What happened.
    pub kind: IncidentChangeKind,
    /// Its severity after the change.
    pub severity: Severity,
    /// Its status after the change.
    pub status: IncidentStatus,
    /// The alerts that caused it.
    pub alert_ids: Vec<i64>,
    /// The source (driver) of the request.
    pub source: String,
    /// The request's trace id.
    pub trace_id: String,
}

/// Called inside the write transaction after the alerts are written, with the incidents that
/// materially changed (possibly none); returns pipeline run ids for [`IngestOutcome::run_ids`].
/// An error rolls the whole request back. A request whose every alert is an identical re-send of
/// what is stored has no write transaction, and its hook is dropped uncalled (it would see no
/// change).
pub type TxHook =
    Box<dyn FnOnce(&mut AnyConnection, &[IncidentChange]) -> Result<Vec<String>> + Send>;

/// Makes one [`TxHook`] per request; adapters find it in their state (an axum extension).
#[derive(Clone)]
pub struct HookFactory(pub Arc<dyn Fn() -> TxHook + Send + Sync>);

impl std::fmt::Debug for HookFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookFactory")
    }
}

/// What happened to one alert of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertOutcome {
    /// First seen.
    Created,
    /// Materially changed (re-fired, severity, description, labels, acknowledged, annotations).
    Updated,
    /// Went from firing to resolved.
    Resolved,
    /// An identical re-send.
    Unchanged,
}

/// One stored alert of the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestedAlert {
    /// Database id.
    pub id: i64,
    /// Fingerprint.
    pub fingerprint: String,
    /// Name.
    pub name: String,
    /// Status after the request.
    pub status: AlertStatus,
    /// Its incident.
    pub incident_id: Option<i64>,
    /// What happened to it.
    pub outcome: AlertOutcome,
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// The driver (source) used.
    pub driver: String,
    /// The correlation id.
    pub trace_id: String,
    /// Alerts seen for the first time.
    pub created: usize,
    /// Alerts materially changed (not counting resolutions).
    pub updated: usize,
    /// Alerts that went from firing to resolved.
    pub resolved: usize,
    /// Identical re-sends.
    pub unchanged: usize,
    /// The incidents of the request's alerts, in order, without repeats.
    pub incident_ids: Vec<i64>,
    /// The incidents that materially changed.
    pub changes: Vec<IncidentChange>,
    /// Run ids returned by the hook.
    pub run_ids: Vec<String>,
    /// The stored alerts.
    pub alerts: Vec<IngestedAlert>,
    /// Why an accepted body carried no alert.
    pub empty_reason: Option<String>,
    /// Payload-level facts the driver reported.
    #[serde(default, serialize_with = "RawPayload::serialize_text")]
    pub meta: RawPayload,
}

impl IngestOutcome {
    /// Counts one alert of the request and lists it (and its incident, once).
    fn record(
        &mut self,
        id: i64,
        a: &NormalizedAlert,
        incident_id: Option<i64>,
        outcome: AlertOutcome,
    ) {
        match outcome {
            AlertOutcome::Created => self.created += 1,
            AlertOutcome::Updated => self.updated += 1,
            AlertOutcome::Resolved => self.resolved += 1,
            AlertOutcome::Unchanged => self.unchanged += 1,
        }
        if let Some(i) = incident_id.filter(|i| !self.incident_ids.contains(i)) {
            self.incident_ids.push(i);
        }
        self.alerts.push(IngestedAlert {
            id,
            fingerprint: a.fingerprint.clone(),
            name: a.name.clone(),
            status: a.status,
            incident_id,
            outcome,
        });
    }

    fn empty(driver: &str, trace_id: String) -> Self {
        Self {
            driver: driver.to_owned(),
            trace_id,
            created: 0,
            updated: 0,
            resolved: 0,
            unchanged: 0,
            incident_ids: Vec::new(),
            changes: Vec::new(),
            run_ids: Vec::new(),
            alerts: Vec::new(),
            empty_reason: None,
            meta: Default::default(),
        }
    }
}

/// Per-source shared secrets for signature verification.
#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets(BTreeMap<String, Secret>);

/// The environment variable prefix of the per-source secrets: `TOCSIN_WEBHOOK_SECRET_PAGERDUTY`,
/// `TOCSIN_WEBHOOK_SECRET_GENERIC`...
pub const SECRET_ENV_PREFIX: &str = "TOCSIN_WEBHOOK_SECRET_";

impl WebhookSecrets {
    /// No secrets: no signature is checked.
    pub fn none() -> Self {
        Self::default()
    }

    /// Secrets from `TOCSIN_WEBHOOK_SECRET_<DRIVER>` variables (empty values ignored).
    pub fn from_env() -> Self {
        let mut map = BTreeMap::new();
        for (k, v) in std::env::vars() {
            if let Some(name) = k.strip_prefix(SECRET_ENV_PREFIX)
                && !v.is_empty()
            {
                map.insert(name.to_ascii_lowercase(), Secret::new(v));
            }
        }
        Self(map)
    }

    /// Adds a secret for a driver.
    pub fn with(mut self, driver: &str, secret: Secret) -> Self {
        self.0.insert(driver.to_owned(), secret);
        self
    }

    /// The secret of a driver, if configured.
    pub fn get(&self, driver: &str) -> Option<&Secret> {
        self.0.get(driver)
    }

    /// Whether no secret is configured: no request's signature is checked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses a webhook (detecting the driver unless named), verifies its signature when the
/// driver's secret is set in `TOCSIN_WEBHOOK_SECRET_<DRIVER>`, and stores its alerts in one
/// transaction with `hook`.
pub async fn ingest(
    tocsin: &Tocsin,
    req: IngestRequest,
    hook: Option<TxHook>,
) -> Result<IngestOutcome> {
    ingest_with_secrets(tocsin, req, hook, &WebhookSecrets::from_env()).await
}

/// [`ingest`] with explicit secrets.
pub async fn ingest_with_secrets(
    tocsin: &Tocsin,
    req: IngestRequest,
    hook: Option<TxHook>,
    secrets: &WebhookSecrets,
) -> Result<IngestOutcome> {
    let IngestRequest {
        driver: name,
        body,
        headers,
        trace_id,
    } = req;
    let trace_id = trace_id.filter(|t| !t.is_empty()).unwrap_or_else(new_id);
    let named = name.as_deref();
    let (descriptor, parsed) = match body {
        IngestBody::Raw(bytes) => {
            let text = crate::body::text(&bytes)?;
            match parse_text(tocsin, named, text) {
                Some((descriptor, driver, parsed)) => {
                    if let Some(secret) = secrets.get(descriptor.name) {
                        driver.verify_signature(&bytes, &headers, secret)?;
                    }
                    (descriptor, parsed)
                }
                None => {
                    let body = crate::body::decode_text(text)?;
                    parse_value(tocsin, named, body, Some((&bytes, &headers)), secrets)?
                }
            }
        }
        IngestBody::Json(v) => {
            crate::body::require_object(&v)?;
            parse_value(tocsin, named, v, None, secrets)?
        }
    };
    if parsed.alerts.is_empty() {
        let Some(reason) = parsed.empty_reason else {
            return Err(Error::new(
                ErrorKind::UnrecognizedPayload,
                format!("{}: the body carries no alert", descriptor.name),
            ));
        };
        tracing::info!(driver = descriptor.name, trace_id = %trace_id, reason = %reason, "Accepted a webhook with no alert.");
        let mut out = IngestOutcome::empty(descriptor.name, trace_id);
        out.empty_reason = Some(reason);
        out.meta = parsed.meta;
        return Ok(out);
    }
    // Shared with the write rather than copied: the answer gives the facts back too.
    let meta = Arc::new(parsed.meta);
    let mut out = store_alerts(
        tocsin,
        descriptor.name,
        parsed.alerts,
        trace_id,
        hook,
        meta.clone(),
    )
    .await?;
    out.meta = Arc::try_unwrap(meta).unwrap_or_else(|shared| (*shared).clone());
    Ok(out)
}

/// The named driver's [`Ingestor::parse_text`] of a body's text, when it takes this body that
/// way: `None` for everything else, a name that is no driver included, whose error the strict
/// decode and [`parse_value`] give in their order.
fn parse_text(
    tocsin: &Tocsin,
    name: Option<&str>,
    text: &str,
) -> Option<(
    &'static IngestorDescriptor,
    Arc<dyn Ingestor>,
    ParsedPayload,
)> {
    let descriptor = tocsin.plugins().ingestors.get(name?).ok()?;
    let driver =
        (descriptor.build)(&Value::Object(Default::default()), &tocsin.build_context()).ok()?;
    let parsed = driver.parse_text(text)?;
    Some((descriptor, driver, parsed))
}

/// A decoded body parsed by the named or detected driver, its signature checked first.
/// `raw`: the body's bytes and the request's headers, for a signature.
fn parse_value(
    tocsin: &Tocsin,
    name: Option<&str>,
    body: Value,
    raw: Option<(&[u8], &Headers)>,
    secrets: &WebhookSecrets,
) -> Result<(&'static IngestorDescriptor, ParsedPayload)> {
    let descriptor = match name {
        Some(name) => tocsin.plugins().ingestors.get(name)?,
        None => crate::detect(tocsin.plugins(), &body)?,
    };
    let driver = (descriptor.build)(&Value::Object(Default::default()), &tocsin.build_context())?;
    if let (Some(secret), Some((raw, headers))) = (secrets.get(descriptor.name), raw) {
        driver.verify_signature(raw, headers, secret)?;
    }
    Ok((descriptor, driver.parse_owned(body)?))
}

/// Stores alerts built in process (the health checkers use source `tocsin-checkers`), with the
/// same deduplication, grouping and transaction as a webhook.
pub async fn ingest_alerts(
    tocsin: &Tocsin,
    source: &str,
    alerts: Vec<NormalizedAlert>,
    trace_id: Option<String>,
    hook: Option<TxHook>,
) -> Result<IngestOutcome> {
    let trace_id = trace_id.filter(|t| !t.is_empty()).unwrap_or_else(new_id);
    if source.trim().is_empty() {
        return Err(Error::invalid_input("the alert source must not be empty"));
    }
    if alerts.is_empty() {
        let mut out = IngestOutcome::empty(source, trace_id);
        out.empty_reason = Some("no alerts were given".to_owned());
        return Ok(out);
    }
    store_alerts(tocsin, source, alerts, trace_id, hook, Arc::default()).await
}

async fn store_alerts(
    tocsin: &Tocsin,
    source: &str,
    alerts: Vec<NormalizedAlert>,
    trace_id: String,
    hook: Option<TxHook>,
    meta: Arc<RawPayload>,
) -> Result<IngestOutcome> {
    for a in &alerts {
        validate(a)?;
    }
    let source = Arc::new(source.to_owned());
    let alerts = Arc::new(alerts);
    let count = alerts.len();
    let started = std::time::Instant::now();
    // The hook is taken out of the cell only when it runs, so an attempt that failed before it
    // (a concurrent writer inserted the same alert first) can be retried with the hook intact.
    let had_hook = hook.is_some();
    let hook = Arc::new(std::sync::Mutex::new(hook));
    let hook_unused = |h: &std::sync::Mutex<Option<TxHook>>| {
        !had_hook || h.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    };
    if let Some(out) = unchanged_resend(tocsin, &source, &alerts, &trace_id).await? {
        tracing::debug!(
            driver = %out.driver,
            trace_id = %out.trace_id,
            alerts = count,
            unchanged = out.unchanged,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "Ingested an identical re-send."
        );
        return Ok(out);
    }
    let mut attempt = 0;
    let out = loop {
        attempt += 1;
        let (source, meta, alerts, cell, trace_id) = (
            source.clone(),
            meta.clone(),
            alerts.clone(),
            hook.clone(),
            trace_id.clone(),
        );
        let result = tocsin
            .store()
            .write(move |conn| {
                let mut w = Writer {
                    conn,
                    source: &source,
                    trace_id: &trace_id,
                    meta: &meta,
                    meta_value: std::cell::OnceCell::new(),
                    out: IngestOutcome::empty(&source, trace_id.clone()),
                };
                for a in alerts.iter() {
                    w.one(a)?;
                }
                let Writer { conn, mut out, .. } = w;
                let hook = cell.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(hook) = hook {
                    out.run_ids = hook(conn, &out.changes)?;
                }
                Ok(out)
            })
            .await;
        match result {
            Ok(out) => break out,
            Err(e) if e.kind() == ErrorKind::Conflict && attempt < 3 && hook_unused(&hook) => {
                tracing::debug!(error = %e, attempt, "A concurrent request stored the same alert first; retrying.");
            }
            Err(e) => return Err(e),
        }
    };
    for a in alerts.iter() {
        tocsin.store().remember_alert(&source, &a.fingerprint);
    }
    // Debug, not info: at thousands of webhooks a second a line each costs more than the webhook,
    // and every alert is recorded with its trace id anyway.
    tracing::debug!(
        driver = %out.driver,
        trace_id = %out.trace_id,
        alerts = count,
        created = out.created,
        updated = out.updated,
        resolved = out.resolved,
        unchanged = out.unchanged,
        incidents = out.incident_ids.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "Ingested alerts."
    );
    Ok(out)
}

/// A request whose every alert this process may have stored is first compared on a read: when
/// each alert is stored and [`identical`] to the stored one, it is answered from that read with
/// no write transaction, and the alerts' `updated_at` is stamped in a later batch (see
/// `Store::stamp_seen_later`). `None`: the request goes through the write path.
async fn unchanged_resend(
    tocsin: &Tocsin,
    source: &Arc<String>,
    alerts: &Arc<Vec<NormalizedAlert>>,
    trace_id: &str,
) -> Result<Option<IngestOutcome>> {
    let store = tocsin.store();
    if !alerts
        .iter()
        .all(|a| store.maybe_stored_alert(source, &a.fingerprint))
    {
        return Ok(None);
    }
    let (src, list) = (source.clone(), alerts.clone());
    let compare = move |conn: &mut AnyConnection| {
        let mut states = Vec::with_capacity(list.len());
        for a in list.iter() {
            match find_alert_match(conn, &src, &a.fingerprint)? {
                Some(old) if identical_to_stored(&old, a)? => states.push(old),
                _ => return Ok(None),
            }
        }
        Ok(Some(states))
    };
    let states = if alerts.len() == 1 {
        store.run_point_read(compare).await?
    } else {
        // Several alerts: one snapshot for all, on the blocking pool.
        store.run_snapshot(compare).await?
    };
    let Some(states) = states else {
        return Ok(None);
    };
    let mut out = IngestOutcome::empty(source, trace_id.to_owned());
    for (a, old) in alerts.iter().zip(&states) {
        out.record(old.id, a, old.incident_id, AlertOutcome::Unchanged);
    }
    let ids: Vec<i64> = states.iter().map(|s| s.id).collect();
    store.stamp_seen_later(&ids, tocsin_core::store::now());
    Ok(Some(out))
}

fn validate(a: &NormalizedAlert) -> Result<()> {
    if a.fingerprint.trim().is_empty() {
        return Err(Error::invalid_input(format!(
            "alert {:?} has an empty fingerprint",
            a.name
        )));
    }
    if a.name.trim().is_empty() {
        return Err(Error::invalid_input(format!(
            "alert {:?} has an empty name",
            a.fingerprint
        )));
    }
    let strings = [&a.fingerprint, &a.name, &a.description]
        .into_iter()
        .chain(a.labels.iter().flat_map(|(k, v)| [k, v]));
    for s in strings.chain(a.annotations.iter().flat_map(|(k, v)| [k, v])) {
        if s.contains('\0') {
            return Err(Error::invalid_input(format!(
                "alert {:?} contains a NUL character, which cannot be stored",
                a.name
            )));
        }
    }
    Ok(())
}

/// The annotation whose new values become `note` events on the incident.
pub const NOTE_ANNOTATION: &str = "note";

/// The labels that name an instance, in order of preference.
pub const INSTANCE_LABELS: &[&str] = &["instance_id", "instance", "hostname", "host"];

/// The instance of an alert: the first of [`INSTANCE_LABELS`] that is set.
pub fn instance_of(labels: &Labels) -> Option<&str> {
    INSTANCE_LABELS
        .iter()
        .find_map(|k| labels.get(*k).map(String::as_str).filter(|v| !v.is_empty()))
}

/// The incident grouping key: `name|instance`, or `name` without an instance.
pub fn group_key(name: &str, labels: &Labels) -> String {
    match instance_of(labels) {
        Some(i) => format!("{name}|{i}"),
        None => name.to_owned(),
    }
}

/// Whether `a` is an identical re-send of the stored alert `old`: the same status, severity
/// (a resolution keeps the severity it fired with), description, labels and annotations, and no
/// acknowledgement to pass on. Such a re-send changes nothing but the alert's `updated_at`.
fn identical(old: &AlertState, a: &NormalizedAlert) -> bool {
    same_outline(old.status, old.severity, &old.description, a)
        && a.labels == old.labels
        && a.annotations == old.annotations
}

/// [`identical`] against the stored text of the labels and annotations ([`AlertMatch`]).
fn identical_to_stored(old: &AlertMatch, a: &NormalizedAlert) -> Result<bool> {
    Ok(same_outline(old.status, old.severity, &old.description, a)
        && json_to(&a.labels)? == old.labels_json
        && json_to(&a.annotations)? == old.annotations_json)
}

/// The comparison's part that is not labels or annotations.
fn same_outline(
    status: AlertStatus,
    severity: Severity,
    description: &str,
    a: &NormalizedAlert,
) -> bool {
    let sent = match a.status {
        AlertStatus::Resolved => severity,
        AlertStatus::Firing => a.severity,
    };
    status == a.status
        && sent == severity
        && !(a.acknowledged && a.status == AlertStatus::Firing)
        && a.description == description
}

fn active(s: IncidentStatus) -> bool {
    matches!(s, IncidentStatus::Open | IncidentStatus::Acknowledged)
}

struct Writer<'c, 'a> {
    conn: &'c mut AnyConnection,
    source: &'a str,
    trace_id: &'a str,
    meta: &'a RawPayload,
    /// `meta` decoded, once a new incident records it (once a request, not once an incident).
    meta_value: std::cell::OnceCell<Value>,
    out: IngestOutcome,
}

impl Writer<'_, '_> {
    fn actor(&self) -> String {
        format!("ingest:{}", self.source)
    }

    fn change(&mut self, incident: &Incident, kind: IncidentChangeKind, alert_id: Option<i64>) {
        let existing = self.out.changes.iter_mut().find(|c| {
            c.incident_id == incident.id
                && (c.kind == kind
                    || (c.kind == IncidentChangeKind::Created
                        && kind == IncidentChangeKind::Escalated))
        });
        match existing {
            Some(c) => {
                c.severity = incident.severity;
                c.status = incident.status;
                if let Some(a) = alert_id.filter(|a| !c.alert_ids.contains(a)) {
                    c.alert_ids.push(a);
                }
            }
            None => self.out.changes.push(IncidentChange {
                incident_id: incident.id,
                kind,
                severity: incident.severity,
                status: incident.status,
                alert_ids: alert_id.into_iter().collect(),
                source: self.source.to_owned(),
                trace_id: self.trace_id.to_owned(),
            }),
        }
    }

    /// Adds the alert id to changes recorded before the alert existed.
    fn attach_alert_to_changes(&mut self, incident_id: i64, alert_id: i64) {
        for c in self
            .out
            .changes
            .iter_mut()
            .filter(|c| c.incident_id == incident_id && c.alert_ids.is_empty())
        {
            c.alert_ids.push(alert_id);
        }
    }

    /// The active incident of the group, escalated if needed, or a new one.
    fn attach_or_open(
        &mut self,
        a: &NormalizedAlert,
        key: &str,
        alert_id: Option<i64>,
    ) -> Result<Incident> {
        if let Some(inc) = find_active_incident_by_group(self.conn, key)? {
            return self.join(inc, a, alert_id);
        }
        let title = match instance_of(&a.labels) {
            Some(i) => format!("{} on {i}", a.name),
            None => a.name.clone(),
        };
        let inc = insert_incident(
            self.conn,
            NewIncident {
                title,
                severity: a.severity,
                description: a.description.clone(),
                group_key: key.to_owned(),
                metadata: json!({
                    "source": self.source,
                    "trace_id": self.trace_id,
                    "alert_name": a.name,
                    "instance": instance_of(&a.labels),
                    "payload": self.meta_value.get_or_init(|| self.meta.to_value()),
                }),
            },
        )?;
        add_incident_event(
            self.conn,
            inc.id,
            "opened",
            "",
            IncidentStatus::Open.as_str(),
            &self.actor(),
            json!({"fingerprint": a.fingerprint, "source": self.source, "severity": a.severity, "trace_id": self.trace_id}),
        )?;
        self.change(&inc, IncidentChangeKind::Created, alert_id);
        Ok(inc)
    }

    /// A firing alert joins an active incident: escalate it if the alert is worse.
    fn join(
        &mut self,
        inc: Incident,
        a: &NormalizedAlert,
        alert_id: Option<i64>,
    ) -> Result<Incident> {
        if a.severity > inc.severity && active(inc.status) {
            set_incident_severity(self.conn, inc.id, a.severity)?;
            add_incident_event(
                self.conn,
                inc.id,
                "escalated",
                inc.status.as_str(),
                inc.status.as_str(),
                &self.actor(),
                json!({"old_severity": inc.severity, "new_severity": a.severity, "fingerprint": a.fingerprint, "trace_id": self.trace_id}),
            )?;
            let inc = get_incident(self.conn, inc.id)?;
            self.change(&inc, IncidentChangeKind::Escalated, alert_id);
            return Ok(inc);
        }
        touch_incident(self.conn, inc.id)?;
        Ok(inc)
    }

    fn acknowledge(
        &mut self,
        incident_id: i64,
        alert_id: i64,
        a: &NormalizedAlert,
    ) -> Result<bool> {
        let inc = get_incident(self.conn, incident_id)?;
        if inc.status != IncidentStatus::Open {
            return Ok(false);
        }
        let inc = set_incident_status(
            self.conn,
            incident_id,
            IncidentStatus::Acknowledged,
            &self.actor(),
            json!({"fingerprint": a.fingerprint, "reason": "the source reported an acknowledgement", "trace_id": self.trace_id}),
        )?;
        add_alert_history(
            self.conn,
            alert_id,
            "acknowledged",
            a.status.as_str(),
            a.status.as_str(),
            json!({"incident_id": incident_id}),
        )?;
        self.change(&inc, IncidentChangeKind::Acknowledged, Some(alert_id));
        Ok(true)
    }

    /// A vendor note (annotation `note`, such as Opsgenie's AddNote) that is new becomes a
    /// `note` event on the incident.
    fn note(
        &mut self,
        incident_id: i64,
        a: &NormalizedAlert,
        previous: Option<&String>,
    ) -> Result<()> {
        let Some(text) = a
            .annotations
            .get(NOTE_ANNOTATION)
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(());
        };
        if previous == Some(text) {
            return Ok(());
        }
        let inc = get_incident(self.conn, incident_id)?;
        let by = a.annotations.get("username").cloned();
        add_incident_event(
            self.conn,
            incident_id,
            "note",
            inc.status.as_str(),
            inc.status.as_str(),
            &self.actor(),
            json!({"text": text, "by": by, "fingerprint": a.fingerprint, "trace_id": self.trace_id}),
        )?;
        Ok(())
    }

    fn one(&mut self, a: &NormalizedAlert) -> Result<()> {
        let key = group_key(&a.name, &a.labels);
        match find_alert_state(self.conn, self.source, &a.fingerprint)? {
            None => self.create(a, &key),
            Some(old) => self.update(old, a, &key),
        }
    }

    fn create(&mut self, a: &NormalizedAlert, key: &str) -> Result<()> {
        let incident = match a.status {
            AlertStatus::Firing => Some(self.attach_or_open(a, key, None)?),
            // A resolution we never saw fire: keep it beside an active sibling, open nothing.
            AlertStatus::Resolved => find_active_incident_by_group(self.conn, key)?,
        };
        let now = chrono::Utc::now();
        let incident_id = incident.as_ref().map(|i| i.id);
        let id = insert_alert_id(
            self.conn,
            &NewAlert {
                fingerprint: a.fingerprint.clone(),
                source: self.source.to_owned(),
                name: a.name.clone(),
                severity: a.severity,
                status: a.status,
                description: a.description.clone(),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                raw_payload: a.raw_payload.clone(),
                trace_id: self.trace_id.to_owned(),
                started_at: a.started_at.unwrap_or(now),
                ended_at: match a.status {
                    AlertStatus::Firing => None,
                    AlertStatus::Resolved => Some(a.ended_at.unwrap_or(now)),
                },
                incident_id,
            },
        )?;
        if let Some(inc) = &incident {
            self.attach_alert_to_changes(inc.id, id);
        }
        add_alert_history(
            self.conn,
            id,
            "created",
            "",
            a.status.as_str(),
            json!({"severity": a.severity, "incident_id": incident_id, "trace_id": self.trace_id}),
        )?;
        if a.acknowledged
            && a.status == AlertStatus::Firing
            && let Some(inc) = &incident
        {
            self.acknowledge(inc.id, id, a)?;
        }
        if let Some(iid) = incident_id {
            self.note(iid, a, None)?;
        }
        self.out.record(id, a, incident_id, AlertOutcome::Created);
        Ok(())
    }

    fn update(&mut self, old: AlertState, a: &NormalizedAlert, key: &str) -> Result<()> {
        if identical(&old, a) {
            touch_alert(self.conn, old.id)?;
            self.out
                .record(old.id, a, old.incident_id, AlertOutcome::Unchanged);
            return Ok(());
        }
        let now = chrono::Utc::now();
        let mut incident_id = old.incident_id;
        let mut outcome = AlertOutcome::Unchanged;
        let mut severity = a.severity;
        let mut started_at = a.started_at.unwrap_or(old.started_at);
        let mut ended_at = old.ended_at;
        // Field changes, with old and new values.
        let mut diffs: Vec<(&str, Value)> = Vec::new();
        match (old.status, a.status) {
            (AlertStatus::Firing, AlertStatus::Resolved)
            | (AlertStatus::Resolved, AlertStatus::Resolved) => {
                // A resolution keeps the severity the alert fired with.
                severity = old.severity;
            }
            _ => {}
        }
        if severity != old.severity {
            diffs.push((
                "severity_changed",
                json!({"old": old.severity, "new": severity}),
            ));
        }
        if a.description != old.description {
            diffs.push((
                "description_changed",
                json!({"old": old.description, "new": a.description}),
            ));
        }
        if a.labels != old.labels {
            diffs.push((
                "labels_changed",
                json!({"old": old.labels, "new": a.labels}),
            ));
        }
        let status_event = match (old.status, a.status) {
            (AlertStatus::Firing, AlertStatus::Resolved) => {
                ended_at = Some(a.ended_at.unwrap_or(now));
                started_at = old.started_at;
                outcome = AlertOutcome::Resolved;
                Some("resolved")
            }
            (AlertStatus::Resolved, AlertStatus::Firing) => {
                ended_at = None;
                started_at = a.started_at.unwrap_or(now);
                outcome = AlertOutcome::Updated;
                Some("refired")
            }
            _ => None,
        };
        if !diffs.is_empty() && outcome == AlertOutcome::Unchanged {
            outcome = AlertOutcome::Updated;
        }
        let annotations_changed = a.annotations != old.annotations;
        let nothing_else = status_event.is_none() && diffs.is_empty() && !annotations_changed;
        let wants_ack = a.acknowledged && a.status == AlertStatus::Firing;

        // Incident side of a re-fire, before the alert row is written.
        if status_event == Some("refired") {
            incident_id = Some(self.refire_incident(&old, a, key)?.id);
        } else if a.status == AlertStatus::Firing
            && severity > old.severity
            && let Some(iid) = incident_id
        {
            let inc = get_incident(self.conn, iid)?;
            if active(inc.status) {
                self.join(inc, a, Some(old.id))?;
            }
        }

        if !nothing_else {
            update_alert(
                self.conn,
                old.id,
                &AlertUpdate {
                    name: a.name.clone(),
                    severity,
                    status: a.status,
                    description: a.description.clone(),
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    raw_payload: a.raw_payload.clone(),
                    trace_id: self.trace_id.to_owned(),
                    started_at,
                    ended_at,
                    incident_id,
                },
            )?;
            if outcome == AlertOutcome::Unchanged {
                outcome = AlertOutcome::Updated;
            }
        }
        if let Some(event) = status_event {
            let mut details = json!({"trace_id": self.trace_id, "incident_id": incident_id});
            if let Some(m) = details.as_object_mut() {
                for (k, v) in &diffs {
                    m.insert((*k).to_owned(), v.clone());
                }
            }
            add_alert_history(
                self.conn,
                old.id,
                event,
                old.status.as_str(),
                a.status.as_str(),
                details,
            )?;
        } else {
            for (event, details) in &diffs {
                add_alert_history(
                    self.conn,
                    old.id,
                    event,
                    old.status.as_str(),
                    a.status.as_str(),
                    details.clone(),
                )?;
            }
        }
        if status_event == Some("resolved")
            && let Some(iid) = incident_id
        {
            self.maybe_resolve(iid, old.id, a)?;
        }
        if wants_ack {
            if let Some(iid) = incident_id
                && self.acknowledge(iid, old.id, a)?
                && outcome == AlertOutcome::Unchanged
            {
                outcome = AlertOutcome::Updated;
            }
            if nothing_else {
                touch_alert(self.conn, old.id)?;
            }
        }
        if let Some(iid) = incident_id {
            self.note(iid, a, old.annotations.get(NOTE_ANNOTATION))?;
        }
        self.out.record(old.id, a, incident_id, outcome);
        Ok(())
    }

    /// Where a re-fired alert belongs: its incident if still active, else an active sibling,
    /// else its resolved incident re-opened, else a new incident.
    fn refire_incident(
        &mut self,
        old: &AlertState,
        a: &NormalizedAlert,
        key: &str,
    ) -> Result<Incident> {
        let own = match old.incident_id {
            Some(iid) => Some(get_incident(self.conn, iid)?),
            None => None,
        };
        if let Some(inc) = own.as_ref().filter(|i| active(i.status)) {
            let inc = self.join(inc.clone(), a, Some(old.id))?;
            self.change(&inc, IncidentChangeKind::Refired, Some(old.id));
            return Ok(inc);
        }
        if let Some(sibling) = find_active_incident_by_group(self.conn, key)? {
            let inc = self.join(sibling, a, Some(old.id))?;
            self.change(&inc, IncidentChangeKind::Refired, Some(old.id));
            return Ok(inc);
        }
        if let Some(inc) = own.filter(|i| i.status == IncidentStatus::Resolved) {
            let mut inc = set_incident_status(
                self.conn,
                inc.id,
                IncidentStatus::Open,
                &self.actor(),
                json!({"reason": "an alert fired again", "fingerprint": a.fingerprint, "trace_id": self.trace_id,
                       "old_severity": inc.severity, "new_severity": a.severity}),
            )?;
            if inc.severity != a.severity {
                set_incident_severity(self.conn, inc.id, a.severity)?;
                inc = get_incident(self.conn, inc.id)?;
            }
            self.change(&inc, IncidentChangeKind::Refired, Some(old.id));
            return Ok(inc);
        }
        self.attach_or_open(a, key, Some(old.id))
    }

    /// Resolves an incident when the alert that just resolved was its last firing one.
    fn maybe_resolve(
        &mut self,
        incident_id: i64,
        alert_id: i64,
        a: &NormalizedAlert,
    ) -> Result<()> {
        let inc = get_incident(self.conn, incident_id)?;
        if !active(inc.status) || count_firing_alerts(self.conn, incident_id, Some(alert_id))? > 0 {
            return Ok(());
        }
        let inc = set_incident_status(
            self.conn,
            incident_id,
            IncidentStatus::Resolved,
            &self.actor(),
            json!({"reason": "its last firing alert resolved", "fingerprint": a.fingerprint, "trace_id": self.trace_id}),
        )?;
        self.change(&inc, IncidentChangeKind::Resolved, Some(alert_id));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Incident lifecycle calls

fn conflict(id: i64, from: IncidentStatus, what: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("incident {id} is {from}; it cannot be {what}"),
    )
}

fn check_actor(actor: &str) -> Result<()> {
    if actor.trim().is_empty() {
        return Err(Error::invalid_input("the actor must not be empty"));
    }
    Ok(())
}

async fn transition(
    tocsin: &Tocsin,
    id: i64,
    actor: &str,
    to: IncidentStatus,
    what: &'static str,
    details: Value,
) -> Result<Incident> {
    check_actor(actor)?;
    let actor = actor.to_owned();
    tocsin
        .store()
        .write(move |c| {
            let inc = get_incident(c, id)?;
            if inc.status == to {
                return Ok(inc);
            }
            if !inc.status.can_transition_to(to) {
                return Err(conflict(id, inc.status, what));
            }
            set_incident_status(c, id, to, &actor, details)
        })
        .await
}

/// Acknowledges an open incident (recorded as an `acknowledged` event by `actor`). Already
/// acknowledged is a no-op; a resolved or closed incident is a `Conflict`.
pub async fn acknowledge_incident(tocsin: &Tocsin, id: i64, actor: &str) -> Result<Incident> {
    transition(
        tocsin,
        id,
        actor,
        IncidentStatus::Acknowledged,
        "acknowledged",
        json!({}),
    )
    .await
}

/// Resolves an open or acknowledged incident. Already resolved is a no-op; closed is a `Conflict`.
pub async fn resolve_incident(tocsin: &Tocsin, id: i64, actor: &str) -> Result<Incident> {
    transition(
        tocsin,
        id,
        actor,
        IncidentStatus::Resolved,
        "resolved",
        json!({"reason": "resolved by hand"}),
    )
    .await
}

/// Closes an incident in any state (the end of its lifecycle). Already closed is a no-op.
pub async fn close_incident(tocsin: &Tocsin, id: i64, actor: &str) -> Result<Incident> {
    transition(
        tocsin,
        id,
        actor,
        IncidentStatus::Closed,
        "closed",
        json!({}),
    )
    .await
}

/// Re-opens a resolved or closed incident. Already open is a no-op; acknowledged is a `Conflict`.
pub async fn reopen_incident(tocsin: &Tocsin, id: i64, actor: &str) -> Result<Incident> {
    transition(
        tocsin,
        id,
        actor,
        IncidentStatus::Open,
        "re-opened",
        json!({"reason": "re-opened by hand"}),
    )
    .await
}

/// The longest note accepted, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;

/// Adds a note to an incident (a `note` event by `actor`, status unchanged).
pub async fn add_incident_note(
    tocsin: &Tocsin,
    id: i64,
    actor: &str,
    text: &str,
) -> Result<IncidentEvent> {
    check_actor(actor)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid_input("the note is empty"));
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(Error::invalid_input(format!(
            "the note is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    if text.contains('\0') {
        return Err(Error::invalid_input("the note contains a NUL character"));
    }
    let (actor, text) = (actor.to_owned(), text.to_owned());
    tocsin
        .store()
        .write(move |c| {
            let inc = get_incident(c, id)?;
            touch_incident(c, id)?;
            add_incident_event(
                c,
                id,
                "note",
                inc.status.as_str(),
                inc.status.as_str(),
                &actor,
                json!({"text": text}),
            )
        })
        .await
}
