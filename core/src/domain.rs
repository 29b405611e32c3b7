//! Domain types: the enums of the state machines and the records tocsin stores.
//!
//! Every timestamp is UTC. JSON-valued fields hold `serde_json::Value`; labels and annotations are
//! sorted string maps so fingerprints and snapshots are stable.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// Declares a string-backed enum with `as_str`, `FromStr`, `Display` and snake_case serde.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* #[doc = concat!("`", $text, "`")] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and serialized spelling.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    other => Err(Error::invalid_input(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        other,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}

string_enum! {
    /// How bad an alert or incident is. Ordered: `Info < Warning < Critical`.
    Severity { Info => "info", Warning => "warning", Critical => "critical" }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Severity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn rank(s: Severity) -> u8 {
            match s {
                Severity::Info => 0,
                Severity::Warning => 1,
                Severity::Critical => 2,
            }
        }
        rank(*self).cmp(&rank(*other))
    }
}

string_enum! {
    /// Whether an alert is still firing.
    AlertStatus { Firing => "firing", Resolved => "resolved" }
}

string_enum! {
    /// The lifecycle of an incident: `open -> acknowledged -> resolved -> closed` (re-opened on re-fire).
    IncidentStatus {
        Open => "open",
        Acknowledged => "acknowledged",
        Resolved => "resolved",
        Closed => "closed",
    }
}

impl IncidentStatus {
    /// Whether an operator may move an incident from `self` to `to`: acknowledge an open one,
    /// resolve an open or acknowledged one, close any that is not closed, re-open a resolved or
    /// closed one. Staying in the same status is not a transition (callers treat it as a no-op).
    ///
    /// The one statement of the lifecycle rule: the ingest service enforces it and the console
    /// offers exactly the actions it allows.
    pub fn can_transition_to(self, to: IncidentStatus) -> bool {
        use IncidentStatus::*;
        matches!(
            (self, to),
            (Open, Acknowledged)
                | (Open | Acknowledged, Resolved)
                | (Open | Acknowledged | Resolved, Closed)
                | (Resolved | Closed, Open)
        )
    }

    /// The statuses an operator may move an incident to from `self`, in [`IncidentStatus::ALL`]
    /// order.
    pub fn allowed_transitions(self) -> impl Iterator<Item = IncidentStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(move |&to| self.can_transition_to(to))
    }
}

string_enum! {
    /// The outcome of one health check.
    CheckStatus { Ok => "ok", Warning => "warning", Critical => "critical", Unknown => "unknown" }
}

string_enum! {
    /// The state machine of a pipeline run.
    PipelineStatus {
        Pending => "pending",
        Processing => "processing",
        Ingested => "ingested",
        Checked => "checked",
        Analyzed => "analyzed",
        Notified => "notified",
        Failed => "failed",
        Retrying => "retrying",
    }
}

string_enum! {
    /// The state of one attempt of one pipeline node.
    StageStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Retrying => "retrying",
        Skipped => "skipped",
    }
}

string_enum! {
    /// The status of an analysis run.
    AnalysisStatus { Pending => "pending", Running => "running", Succeeded => "succeeded", Failed => "failed" }
}

string_enum! {
    /// The outcome of one delivery attempt.
    DeliveryStatus { Pending => "pending", Sent => "sent", Failed => "failed", Retrying => "retrying", Skipped => "skipped" }
}

/// Sorted string labels (`instance=web-1`, `checker=memory`).
pub type Labels = BTreeMap<String, String>;

/// A piece of a vendor body kept as JSON text: an alert's part of it (`raw_payload`) or the
/// body's payload facts (`meta`). Text is what is stored and answered, so a driver that reads the
/// body's text keeps these bytes as sent instead of building a [`Value`] only to write it out
/// again.
///
/// ```
/// use tocsin_core::domain::RawPayload;
/// let from_value = RawPayload::from(serde_json::json!({"b": 1, "a": [true]}));
/// let from_text = RawPayload::from_text(r#"{ "a": [true], "b": 1 }"#.to_owned()).unwrap();
/// assert_eq!(from_value, from_text); // equal as JSON, whatever the spacing and key order
/// assert_eq!(from_text.to_value()["b"], 1);
/// assert!(RawPayload::from_text("{".to_owned()).is_err());
/// ```
#[derive(Clone)]
pub struct RawPayload(Box<serde_json::value::RawValue>);

impl RawPayload {
    /// The payload of a text that must be one JSON value.
    pub fn from_text(text: String) -> crate::Result<Self> {
        serde_json::value::RawValue::from_string(text)
            .map(Self)
            .map_err(|e| Error::invalid_input(format!("the raw payload is not JSON: {e}")))
    }

    /// The payload of a piece of a body already read as JSON (serde_json checked it).
    pub fn from_raw(raw: &serde_json::value::RawValue) -> Self {
        Self(raw.to_owned())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// For `#[serde(serialize_with = "RawPayload::serialize_text")]` on a field serialised with
    /// `serde_json` only (to text or to a `Value`): the text goes out as it is, where
    /// [`Serialize`] decodes it first so that any serializer sees the value.
    pub fn serialize_text<S: serde::Serializer>(p: &Self, s: S) -> Result<S::Ok, S::Error> {
        p.0.serialize(s)
    }

    /// The payload as a [`Value`].
    pub fn to_value(&self) -> Value {
        // The text was checked as JSON when the payload was made.
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }
}

impl From<Box<serde_json::value::RawValue>> for RawPayload {
    fn from(raw: Box<serde_json::value::RawValue>) -> Self {
        Self(raw)
    }
}

impl From<&Value> for RawPayload {
    fn from(v: &Value) -> Self {
        // Serialising a `Value` cannot fail: its keys are strings and its numbers finite.
        Self(
            serde_json::value::to_raw_value(v)
                .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
        )
    }
}

impl From<Value> for RawPayload {
    fn from(v: Value) -> Self {
        Self::from(&v)
    }
}

/// An empty object, `{}`.
impl Default for RawPayload {
    fn default() -> Self {
        Self::from(&Value::Object(serde_json::Map::new()))
    }
}

impl From<serde_json::Map<String, Value>> for RawPayload {
    fn from(map: serde_json::Map<String, Value>) -> Self {
        Self::from(&Value::Object(map))
    }
}

/// Equal as JSON: the same text, or texts that decode to the same value.
impl PartialEq for RawPayload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_value() == other.to_value()
    }
}

impl fmt::Debug for RawPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As the JSON value it holds, for any serializer (`serde_json`'s raw value is understood by
/// `serde_json` alone; a template engine would see its private wrapper).
impl Serialize for RawPayload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawPayload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Self::from)
    }
}

/// A normalized alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Database id.
    pub id: i64,
    /// The vendor's stable identity for this alert, unique per source.
    pub fingerprint: String,
    /// The ingest driver that produced it (`alertmanager`, `grafana`...).
    pub source: String,
    /// Alert name.
    pub name: String,
    /// Severity.
    pub severity: Severity,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Human description.
    pub description: String,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// This alert's part of the vendor body.
    pub raw_payload: Value,
    /// Correlation id of the request that last changed it.
    pub trace_id: String,
    /// When the condition started (vendor time).
    pub started_at: DateTime<Utc>,
    /// When the condition ended, if it did.
    pub ended_at: Option<DateTime<Utc>>,
    /// First received by tocsin.
    pub received_at: DateTime<Utc>,
    /// Last touched.
    pub updated_at: DateTime<Utc>,
    /// The incident that groups it.
    pub incident_id: Option<i64>,
}

/// A group of related alerts with a lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Database id.
    pub id: i64,
    /// Title (usually the alert name and instance).
    pub title: String,
    /// Lifecycle status.
    pub status: IncidentStatus,
    /// Highest severity seen while open.
    pub severity: Severity,
    /// Description.
    pub description: String,
    /// Summary (filled by analysis).
    pub summary: String,
    /// Free-form metadata (grouping facts, payload-level facts).
    pub metadata: Value,
    /// The key alerts are grouped by (alert name and instance).
    pub group_key: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Acknowledged, if it was.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Resolved, if it was.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Closed, if it was.
    pub closed_at: Option<DateTime<Utc>>,
}

/// One material change of an alert (created, resolved, refired, changed...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertHistory {
    /// Database id.
    pub id: i64,
    /// The alert.
    pub alert_id: i64,
    /// What happened (`created`, `resolved`, `refired`, `severity_changed`...).
    pub event: String,
    /// Status before.
    pub old_status: String,
    /// Status after.
    pub new_status: String,
    /// Old and new values of what changed.
    pub details: Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// One transition or note on an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    /// Database id.
    pub id: i64,
    /// The incident.
    pub incident_id: i64,
    /// What happened (`opened`, `acknowledged`, `resolved`, `closed`, `reopened`, `escalated`, `note`).
    pub event: String,
    /// Status before.
    pub old_status: String,
    /// Status after.
    pub new_status: String,
    /// Who did it (`system`, an API key name, a user).
    pub actor: String,
    /// Details (note text, old and new severity...).
    pub details: Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// One health check execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRun {
    /// Database id.
    pub id: i64,
    /// Checker name.
    pub checker_name: String,
    /// Host it ran on.
    pub hostname: String,
    /// Outcome.
    pub status: CheckStatus,
    /// One-line message.
    pub message: String,
    /// Measurements.
    pub metrics: Value,
    /// Why it could not measure, if it could not.
    pub error: Option<String>,
    /// Warning threshold in force.
    pub warning_threshold: Option<f64>,
    /// Critical threshold in force.
    pub critical_threshold: Option<f64>,
    /// How long it took.
    pub duration_ms: f64,
    /// When it ran.
    pub executed_at: DateTime<Utc>,
    /// Correlation id.
    pub trace_id: String,
    /// The pipeline run it belongs to, if any.
    pub run_id: Option<String>,
}

/// One analysis (recommendation) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRun {
    /// Database id.
    pub id: i64,
    /// Correlation id.
    pub trace_id: String,
    /// The pipeline run it belongs to, if any.
    pub run_id: Option<String>,
    /// Provider name.
    pub provider: String,
    /// Provider configuration, secrets redacted.
    pub provider_config: Value,
    /// Model, when the provider has one.
    pub model_name: Option<String>,
    /// Status.
    pub status: AnalysisStatus,
    /// The incident analysed, if any.
    pub incident_id: Option<i64>,
    /// What the provider was given, summarised.
    pub input_summary: String,
    /// The recommendations (JSON list).
    pub recommendations: Value,
    /// How many.
    pub recommendations_count: i32,
    /// Prompt tokens, when reported.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens, when reported.
    pub completion_tokens: Option<i64>,
    /// Total tokens, when reported.
    pub total_tokens: Option<i64>,
    /// Error, if it failed.
    pub error_message: Option<String>,
    /// Whether the local provider stood in for a failed one.
    pub fallback_used: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Duration.
    pub duration_ms: Option<f64>,
}

/// One pipeline run: the durable state machine that carries an event through the stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRun {
    /// Database id.
    pub id: i64,
    /// Unique id of this run.
    pub run_id: String,
    /// Correlation id across stages, logs and records.
    pub trace_id: String,
    /// State.
    pub status: PipelineStatus,
    /// The node being or last executed.
    pub current_stage: Option<String>,
    /// The definition it runs (`None` is the built-in default pipeline).
    pub definition_name: Option<String>,
    /// The incident it concerns.
    pub incident_id: Option<i64>,
    /// Source of the event.
    pub source: String,
    /// Environment name.
    pub environment: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Retries allowed per node.
    pub max_retries: i32,
    /// Last error kind.
    pub last_error_type: Option<String>,
    /// Last error message.
    pub last_error_message: Option<String>,
    /// Whether the last error was temporary.
    pub last_error_retryable: bool,
    /// The inbound payload.
    pub inbound_payload: Value,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Total duration.
    pub total_duration_ms: Option<f64>,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease runs out.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Earliest time a worker may pick it up (retry backoff).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Last resumed; retry budgets count failures since then.
    pub resumed_at: Option<DateTime<Utc>>,
}

/// One attempt of one node of a pipeline run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageExecution {
    /// Database id.
    pub id: i64,
    /// The run (`PipelineRun::id`).
    pub pipeline_run_id: i64,
    /// Node id within the definition.
    pub node_id: String,
    /// Node type (`ingest`, `context`, `intelligence`, `notify`, `transform`).
    pub stage: String,
    /// Attempt number, from 1, continuing across resumes.
    pub attempt: i32,
    /// State.
    pub status: StageStatus,
    /// Stable per node and run, so side effects can be deduplicated across retries.
    pub idempotency_key: String,
    /// Input snapshot (secrets redacted, size bounded).
    pub input_snapshot: Value,
    /// Output snapshot (secrets redacted, size bounded).
    pub output_snapshot: Value,
    /// Error kind.
    pub error_type: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// Whether the error was temporary.
    pub error_retryable: bool,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Duration.
    pub duration_ms: Option<f64>,
}

/// A configured notification channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationChannel {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Notify driver name.
    pub driver: String,
    /// Driver configuration (may hold secrets: never render it back).
    pub config: Value,
    /// Whether runs notify it.
    pub enabled: bool,
    /// Description.
    pub description: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// One delivery attempt of a notification through a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Database id.
    pub id: i64,
    /// Channel name, when sent through a stored channel.
    pub channel_name: Option<String>,
    /// Driver name.
    pub driver: String,
    /// Outcome.
    pub status: DeliveryStatus,
    /// Attempt number, from 1.
    pub attempt: i32,
    /// Same across the retries of one notification.
    pub idempotency_key: String,
    /// The provider's message id.
    pub message_id: Option<String>,
    /// HTTP status or SMTP reply.
    pub response: Option<String>,
    /// Error, if it failed or was skipped.
    pub error: Option<String>,
    /// Correlation id.
    pub trace_id: String,
    /// Pipeline run, if any.
    pub run_id: Option<String>,
    /// Incident, if any.
    pub incident_id: Option<i64>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Duration.
    pub duration_ms: Option<f64>,
}

/// A stored pipeline definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineDefinition {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Version number, bumped on every replace.
    pub version: i32,
    /// The definition document (`{"version", "nodes": [...]}`).
    pub config: Value,
    /// Whether it may run.
    pub active: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A fresh random id for runs and traces (UUID v7: time-ordered, so indexes stay compact).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_orders_critical_above_warning_above_info() {
        assert!(Severity::Critical > Severity::Warning);
        assert!(Severity::Warning > Severity::Info);
        assert_eq!(Severity::ALL.iter().max(), Some(&Severity::Critical));
    }

    #[test]
    fn enums_round_trip_through_text_and_reject_unknown_values() {
        for s in PipelineStatus::ALL {
            assert_eq!(s.as_str().parse::<PipelineStatus>().unwrap(), *s);
        }
        let err = "sleeping".parse::<StageStatus>().unwrap_err();
        assert!(err.message().contains("sleeping"), "{err}");
        assert!(err.message().contains("succeeded"), "{err}");
        assert_eq!(
            serde_json::to_string(&IncidentStatus::Acknowledged).unwrap(),
            "\"acknowledged\""
        );
    }

    #[test]
    fn incident_lifecycle_allows_exactly_the_documented_transitions() {
        use IncidentStatus::*;
        let allowed = |from: IncidentStatus| from.allowed_transitions().collect::<Vec<_>>();
        assert_eq!(allowed(Open), [Acknowledged, Resolved, Closed]);
        assert_eq!(allowed(Acknowledged), [Resolved, Closed]);
        assert_eq!(allowed(Resolved), [Open, Closed]);
        assert_eq!(allowed(Closed), [Open]);
        for s in IncidentStatus::ALL {
            assert!(!s.can_transition_to(*s), "{s} -> {s} is a no-op");
        }
    }
}

string_enum! {
    /// What a recommendation is about.
    RecommendationType {
        Memory => "memory",
        Disk => "disk",
        Cpu => "cpu",
        Process => "process",
        Network => "network",
        General => "general",
    }
}

string_enum! {
    /// How urgent a recommendation is.
    Priority { Low => "low", Medium => "medium", High => "high", Critical => "critical" }
}

/// One recommendation of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// What it is about.
    #[serde(rename = "type")]
    pub kind: RecommendationType,
    /// How urgent.
    pub priority: Priority,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Evidence (real measurements).
    #[serde(default)]
    pub details: Value,
    /// Concrete steps.
    #[serde(default)]
    pub actions: Vec<String>,
    /// The incident it concerns.
    #[serde(default)]
    pub incident_id: Option<i64>,
}

/// The outcome of one checker execution, as the library and the pipeline pass it around.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Checker name.
    pub checker: String,
    /// Outcome.
    pub status: CheckStatus,
    /// One-line message.
    pub message: String,
    /// Measurements.
    pub metrics: Value,
    /// Why it could not measure, if it could not.
    pub error: Option<String>,
    /// Warning threshold in force.
    pub warning_threshold: Option<f64>,
    /// Critical threshold in force.
    pub critical_threshold: Option<f64>,
    /// How long it took.
    pub duration_ms: f64,
    /// Whether it was skipped by a skip control (then `status` is `unknown`).
    #[serde(default)]
    pub skipped: bool,
}
