//! The plugin traits, their descriptors, and the registries that find them by name.
//!
//! A plugin is a `const`-constructible descriptor (name, one-line description, example config and
//! a `build` function) registered at link time with one of the `register_*!` macros, or by hand
//! with [`Registry::register`]. `build` validates the config without I/O and returns the plugin.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{
    Alert, AlertStatus, CheckResult, CheckStatus, Incident, Labels, RawPayload, Recommendation,
    Severity,
};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// What every `build` function is given besides the plugin's own config.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildContext {
    /// `TOCSIN_TEMPLATES_DIR`: where notify templates may be read from.
    pub templates_dir: Option<PathBuf>,
    /// `TOCSIN_ENVIRONMENT`.
    pub environment: String,
}

impl BuildContext {
    /// A context with the given templates folder.
    pub fn with_templates_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.templates_dir = dir;
        self
    }
}

/// Request headers, names lower-cased.
pub type Headers = BTreeMap<String, String>;

// ---------------------------------------------------------------------------------------------
// INGEST

/// One alert as a driver normalised it, before storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedAlert {
    /// The vendor's stable identity, or a documented hash of source, name and labels.
    pub fingerprint: String,
    /// Alert name.
    pub name: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Severity.
    pub severity: Severity,
    /// Description.
    pub description: String,
    /// Labels (vendor tags become labels: `k:v` -> `k=v`, a bare tag -> `tag=true`).
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// When the condition started.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it ended.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// This alert's part of the body (`json!({..}).into()` from a [`Value`]).
    pub raw_payload: RawPayload,
    /// The vendor reported an acknowledgement (not a resolution).
    #[serde(default)]
    pub acknowledged: bool,
}

/// What a driver made of one webhook body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParsedPayload {
    /// The alerts, possibly none (see [`ParsedPayload::empty_reason`]).
    pub alerts: Vec<NormalizedAlert>,
    /// Payload-level facts (receiver, group key, external URL...): one JSON object, as text
    /// (`map.into()` from a `serde_json::Map`).
    pub meta: RawPayload,
    /// Why an accepted body carries no alert (`pagey.ping`, an empty `alerts` list).
    pub empty_reason: Option<String>,
}

/// An ingest driver: recognises and parses one vendor's webhook format.
///
/// Unlike the other plugin traits this one is synchronous: parsing is pure CPU work, and it runs
/// inside the storage transaction's blocking task, where an `.await` has no place.
pub trait Ingestor: Send + Sync {
    /// Whether `body` carries this vendor's signature. Must be strict: another vendor's body, or
    /// a body with only generic fields, is `false`.
    fn detect(&self, body: &Value) -> bool;

    /// Parses a body into alerts. Invalid bodies are an [`ErrorKind::UnrecognizedPayload`] or
    /// [`ErrorKind::InvalidInput`] error that names the field.
    fn parse(&self, body: &Value) -> Result<ParsedPayload>;

    /// [`Ingestor::parse`] of a body its caller no longer needs (the webhook path): a driver may
    /// move the body's values into its alerts (each alert's `raw_payload`, the labels it keeps)
    /// instead of copying them. It must answer exactly as `parse` does; the default calls it.
    fn parse_owned(&self, body: Value) -> Result<ParsedPayload> {
        self.parse(&body)
    }

    /// Parses a body straight from its text (checked UTF-8, not empty, no byte order mark),
    /// without a [`Value`] in between: for the plain shape of this vendor's bodies, where the
    /// strict decode and [`Ingestor::parse_owned`] spend most of a small request's work.
    ///
    /// `None`, the default, sends the body through the strict decode and `parse_owned`; a driver
    /// answers `None` for every body it does not take this way, an invalid one included, so that
    /// the error is theirs. `Some` must be what they would give (each `raw_payload` may keep the
    /// alert's text as sent: equal as JSON).
    fn parse_text(&self, _text: &str) -> Option<ParsedPayload> {
        None
    }

    /// Verifies the sender's signature over the raw body, when a shared secret is configured.
    fn verify_signature(
        &self,
        _raw_body: &[u8],
        _headers: &Headers,
        _secret: &Secret,
    ) -> Result<()> {
        Ok(())
    }
}

/// The registration of an ingest driver.
pub struct IngestorDescriptor {
    /// Unique name (`alertmanager`), also the URL segment of `/alerts/webhook/<name>/`.
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// An example configuration (JSON).
    pub config_example: &'static str,
    /// Builds the driver from its configuration, without I/O.
    pub build: fn(&Value, &BuildContext) -> Result<Arc<dyn Ingestor>>,
}

// ---------------------------------------------------------------------------------------------
// CHECK

/// What a checker measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Outcome.
    pub status: CheckStatus,
    /// One-line message.
    pub message: String,
    /// Measurements.
    pub metrics: Value,
    /// Why it could not measure.
    pub error: Option<String>,
    /// Warning threshold in force.
    pub warning_threshold: Option<f64>,
    /// Critical threshold in force.
    pub critical_threshold: Option<f64>,
}

/// A health checker of the machine tocsin runs on.
#[async_trait]
pub trait Checker: Send + Sync {
    /// Measures. Never panics; a failure to measure is `unknown` with the error.
    async fn check(&self) -> CheckOutcome;
}

/// The registration of a checker.
pub struct CheckerDescriptor {
    /// Unique name (`cpu`).
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// An example configuration (JSON).
    pub config_example: &'static str,
    /// Builds the checker from its options and thresholds, without I/O.
    pub build: fn(&Value, &BuildContext) -> Result<Arc<dyn Checker>>,
}

// ---------------------------------------------------------------------------------------------
// ANALYZE

/// What a provider is asked to analyse.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnalysisInput {
    /// The incident, or `None` for a general scan.
    pub incident: Option<Incident>,
    /// Its alerts.
    pub alerts: Vec<Alert>,
    /// The latest check results.
    pub checks: Vec<CheckResult>,
    /// Per-request options (`top_n`, `path`...).
    pub options: Value,
}

/// Token usage, when the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Total tokens.
    pub total_tokens: i64,
}

/// What a provider produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnalysisOutput {
    /// The recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Model used, if any.
    pub model: Option<String>,
    /// Token usage, if reported.
    pub usage: Option<TokenUsage>,
    /// A short summary, if any.
    pub summary: Option<String>,
}

/// A recommendation provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Analyses. Failures are typed errors, never fake recommendations.
    async fn analyze(&self, input: &AnalysisInput) -> Result<AnalysisOutput>;

    /// The configuration to record with the run, secrets redacted.
    fn redacted_config(&self) -> Value {
        Value::Null
    }
}

/// The registration of a provider.
pub struct ProviderDescriptor {
    /// Unique name (`local`, `openai`).
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// An example configuration (JSON).
    pub config_example: &'static str,
    /// Builds the provider, without I/O.
    pub build: fn(&Value, &BuildContext) -> Result<Arc<dyn Provider>>,
}

// ---------------------------------------------------------------------------------------------
// NOTIFY

/// A notification to deliver: everything a template may use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Notification {
    /// Title.
    pub title: String,
    /// Message body.
    pub message: String,
    /// Severity.
    pub severity: Option<Severity>,
    /// `firing` or `resolved` (a resolution closes what the firing opened).
    pub status: Option<AlertStatus>,
    /// The incident.
    pub incident: Option<Incident>,
    /// Its alerts.
    pub alerts: Vec<Alert>,
    /// Check results.
    pub checks: Vec<CheckResult>,
    /// Recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Tags.
    pub tags: Labels,
    /// Extra context for templates.
    pub context: Value,
    /// Correlation id.
    pub trace_id: String,
    /// Pipeline run id.
    pub run_id: Option<String>,
    /// Stable key of what this notification is about (the incident), for deduplicating receivers.
    pub dedup_key: String,
    /// Same across retries of this one notification.
    pub idempotency_key: String,
}

/// What a successful delivery reported.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeliveryReceipt {
    /// The provider's message id.
    pub message_id: Option<String>,
    /// HTTP status or SMTP reply.
    pub response: Option<String>,
}

/// A notification channel driver.
#[async_trait]
pub trait NotifyDriver: Send + Sync {
    /// Delivers once. Retries are the caller's; errors say whether a retry may help.
    async fn send(&self, notification: &Notification) -> Result<DeliveryReceipt>;
}

/// The registration of a notify driver.
pub struct NotifyDriverDescriptor {
    /// Unique name (`slack`).
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// Required config keys.
    pub required: &'static [&'static str],
    /// Optional config keys.
    pub optional: &'static [&'static str],
    /// An example configuration (JSON).
    pub config_example: &'static str,
    /// Builds the driver from its configuration, without I/O.
    pub build: fn(&Value, &BuildContext) -> Result<Arc<dyn NotifyDriver>>,
}

// ---------------------------------------------------------------------------------------------
// STAGES

/// What a pipeline node is given.
///
/// `state` is the run's state so far, one JSON object the engine keeps and passes along:
/// `{"payload": <inbound body>, "driver": <ingest driver or null>, "incident_id": <id or null>,
/// "incident_ids": [..], "checks": [CheckResult..], "recommendations": [Recommendation..],
/// "nodes": {"<node id>": <that node's output>}}`. The engine lifts the keys `incident_id`,
/// `incident_ids`, `checks` and `recommendations` of a node's output into the state, so later
/// nodes find them whatever the earlier node was called.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StageContext {
    /// Run id.
    pub run_id: String,
    /// Trace id.
    pub trace_id: String,
    /// Node id.
    pub node_id: String,
    /// Attempt number, from 1.
    pub attempt: i32,
    /// The node's own config.
    pub config: Value,
    /// The run's state so far (see above).
    pub state: Value,
    /// Storage, plugins and settings.
    pub tocsin: crate::Tocsin,
    /// What [`Stage::read_ahead`] read for this attempt in the transaction that claimed the run,
    /// when this node was the first to run after the claim; see [`StageContext::prefetched`].
    pub prefetch: Option<Prefetched>,
}

/// What a stage read ahead in a claim's transaction ([`Stage::read_ahead`]), handed to its
/// `execute`.
pub type Prefetched = Arc<dyn std::any::Any + Send + Sync>;

/// A read [`Stage::read_ahead`] asks the engine to run in a claim's transaction.
pub type ReadAhead = Box<dyn FnOnce(&mut crate::store::AnyConnection) -> Result<Prefetched> + Send>;

impl StageContext {
    /// A context for one node attempt.
    pub fn new(
        tocsin: crate::Tocsin,
        run_id: String,
        trace_id: String,
        node_id: String,
        attempt: i32,
        config: Value,
        state: Value,
    ) -> Self {
        Self {
            run_id,
            trace_id,
            node_id,
            attempt,
            config,
            state,
            tocsin,
            prefetch: None,
        }
    }

    /// What this stage's [`Stage::read_ahead`] read for this attempt, if it did and it is a `T`.
    pub fn prefetched<T: 'static>(&self) -> Option<&T> {
        self.prefetch.as_deref()?.downcast_ref::<T>()
    }

    /// A stable key for side effects of this node in this run (same across retries).
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.run_id, self.node_id)
    }
}

/// A pipeline node type (`ingest`, `context`, `intelligence`, `notify`, `transform`).
#[async_trait]
pub trait Stage: Send + Sync {
    /// Runs the node; the output (a JSON object) is stored as its snapshot and merged into the
    /// run's state. Temporary errors are retried by the engine; permanent ones fail the node.
    async fn execute(&self, ctx: &StageContext) -> Result<Value>;

    /// The output, when this stage can tell it from the run state alone, without I/O and without
    /// waiting (the `ingest` stage of a run whose webhook already stored the alerts). The engine
    /// then runs the node inside the transaction that claims the run and records it there, which
    /// saves a commit before the next node. `None` (the default): the node runs by `execute`.
    fn execute_inline(&self, ctx: &StageContext) -> Option<Value> {
        let _ = ctx;
        None
    }

    /// A read of what `execute` will need from the database, which the engine runs inside the
    /// transaction that claims the run when this node is the first to run after a claim made as
    /// its run was queued (the webhook path). That connection has just written those rows, so the
    /// read costs little there, and `execute` starts without waiting for a pooled connection whose
    /// cache the write emptied. The engine hands the result to `execute` as
    /// [`StageContext::prefetched`]; if the read fails, `execute` finds nothing there and reads
    /// for itself. Read only, and quick: it holds the write lock. `None` (the default): nothing
    /// to read ahead, and the engine does nothing.
    fn read_ahead(&self, ctx: &StageContext) -> Option<ReadAhead> {
        let _ = ctx;
        None
    }
}

/// The registration of a stage (node type).
pub struct StageDescriptor {
    /// Unique node type name.
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// An example configuration (JSON).
    pub config_example: &'static str,
    /// Builds the stage from the node's config, without I/O.
    pub build: fn(&Value, &BuildContext) -> Result<Arc<dyn Stage>>,
}

inventory::collect!(IngestorDescriptor);
inventory::collect!(CheckerDescriptor);
inventory::collect!(ProviderDescriptor);
inventory::collect!(NotifyDriverDescriptor);
inventory::collect!(StageDescriptor);

// ---------------------------------------------------------------------------------------------
// REGISTRY

/// What the registry needs of a descriptor.
pub trait Descriptor: Sync + 'static {
    /// What the registry calls this kind of plugin in messages.
    const KIND: &'static str;
    /// The unique name.
    fn name(&self) -> &'static str;
    /// One line.
    fn description(&self) -> &'static str;
    /// Example config (JSON).
    fn config_example(&self) -> &'static str;
}

macro_rules! impl_descriptor {
    ($($ty:ty => $kind:literal),+ $(,)?) => {$(
        impl Descriptor for $ty {
            const KIND: &'static str = $kind;
            fn name(&self) -> &'static str { self.name }
            fn description(&self) -> &'static str { self.description }
            fn config_example(&self) -> &'static str { self.config_example }
        }
    )+};
}

impl_descriptor! {
    IngestorDescriptor => "ingest driver",
    CheckerDescriptor => "checker",
    ProviderDescriptor => "provider",
    NotifyDriverDescriptor => "notify driver",
    StageDescriptor => "stage",
}

/// Plugins of one kind, found by name.
pub struct Registry<D: Descriptor> {
    entries: Vec<&'static D>,
}

impl<D: Descriptor> Clone for Registry<D> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
        }
    }
}

impl<D: Descriptor> Default for Registry<D> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<D: Descriptor> std::fmt::Debug for Registry<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|d| d.name()))
            .finish()
    }
}

impl<D: Descriptor> Registry<D> {
    /// An empty registry, for embedders who register by hand.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a descriptor. Adding the same descriptor twice is a no-op; adding another with a name
    /// already taken is allowed here and reported at lookup, so one bad plugin cannot hide the rest.
    pub fn register(&mut self, descriptor: &'static D) -> &mut Self {
        if !self.entries.iter().any(|d| std::ptr::eq(*d, descriptor)) {
            self.entries.push(descriptor);
            self.entries.sort_by_key(|d| d.name());
        }
        self
    }

    /// The descriptor registered under `name`.
    pub fn get(&self, name: &str) -> Result<&'static D> {
        let mut found = self.entries.iter().filter(|d| d.name() == name);
        match (found.next(), found.next()) {
            (Some(d), None) => Ok(*d),
            (Some(_), Some(_)) => Err(Error::new(
                ErrorKind::DuplicatePlugin,
                format!(
                    "{} {name:?} is registered more than once; each plugin name must be unique",
                    D::KIND
                ),
            )),
            (None, _) => Err(Error::not_found(format!(
                "unknown {} {name:?}; available: {}",
                D::KIND,
                self.names().join(", ")
            ))),
        }
    }

    /// Every descriptor, sorted by name.
    pub fn list(&self) -> &[&'static D] {
        &self.entries
    }

    /// Every name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|d| d.name()).collect()
    }

    /// Names registered more than once.
    pub fn duplicates(&self) -> Vec<&'static str> {
        let mut dups: Vec<_> = self
            .entries
            .windows(2)
            .filter(|w| w[0].name() == w[1].name())
            .map(|w| w[0].name())
            .collect();
        dups.dedup();
        dups
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// All plugins of all kinds.
#[derive(Debug, Clone, Default)]
pub struct Plugins {
    /// Ingest drivers.
    pub ingestors: Registry<IngestorDescriptor>,
    /// Checkers.
    pub checkers: Registry<CheckerDescriptor>,
    /// Providers.
    pub providers: Registry<ProviderDescriptor>,
    /// Notify drivers.
    pub notifiers: Registry<NotifyDriverDescriptor>,
    /// Pipeline stages.
    pub stages: Registry<StageDescriptor>,
}

impl Plugins {
    /// Nothing registered: the starting point of a hand-built registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Everything registered at link time with the `register_*!` macros. Only crates that are
    /// linked contribute: name each plugin crate somewhere (`use tocsin_ingest as _;`).
    pub fn from_inventory() -> Self {
        let mut p = Self::empty();
        for d in inventory::iter::<IngestorDescriptor> {
            p.ingestors.register(d);
        }
        for d in inventory::iter::<CheckerDescriptor> {
            p.checkers.register(d);
        }
        for d in inventory::iter::<ProviderDescriptor> {
            p.providers.register(d);
        }
        for d in inventory::iter::<NotifyDriverDescriptor> {
            p.notifiers.register(d);
        }
        for d in inventory::iter::<StageDescriptor> {
            p.stages.register(d);
        }
        p
    }
}

/// Registers an [`IngestorDescriptor`] at link time.
///
/// ```
/// use std::sync::Arc;
/// use tocsin_core::plugin::{Ingestor, IngestorDescriptor, ParsedPayload};
///
/// struct Mine;
/// impl Ingestor for Mine {
///     fn detect(&self, body: &serde_json::Value) -> bool { body.get("mine").is_some() }
///     fn parse(&self, _body: &serde_json::Value) -> tocsin_core::Result<ParsedPayload> {
///         Ok(ParsedPayload::default())
///     }
/// }
///
/// tocsin_core::register_ingestor!(IngestorDescriptor {
///     name: "mine",
///     description: "My in-house format.",
///     config_example: "{}",
///     build: |_, _| Ok(Arc::new(Mine)),
/// });
/// ```
#[macro_export]
macro_rules! register_ingestor {
    ($descriptor:expr $(,)?) => {
        $crate::__inventory::submit! { $descriptor }
    };
}

/// Registers a [`CheckerDescriptor`] at link time.
#[macro_export]
macro_rules! register_checker {
    ($descriptor:expr $(,)?) => {
        $crate::__inventory::submit! { $descriptor }
    };
}

/// Registers a [`ProviderDescriptor`] at link time.
#[macro_export]
macro_rules! register_provider {
    ($descriptor:expr $(,)?) => {
        $crate::__inventory::submit! { $descriptor }
    };
}

/// Registers a [`NotifyDriverDescriptor`] at link time.
#[macro_export]
macro_rules! register_notify_driver {
    ($descriptor:expr $(,)?) => {
        $crate::__inventory::submit! { $descriptor }
    };
}

/// Registers a [`StageDescriptor`] at link time.
#[macro_export]
macro_rules! register_stage {
    ($descriptor:expr $(,)?) => {
        $crate::__inventory::submit! { $descriptor }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Ingestor for Nop {
        fn detect(&self, _: &Value) -> bool {
            false
        }
        fn parse(&self, _: &Value) -> Result<ParsedPayload> {
            Ok(ParsedPayload::default())
        }
    }

    fn build_nop(_: &Value, _: &BuildContext) -> Result<Arc<dyn Ingestor>> {
        Ok(Arc::new(Nop))
    }

    static A: IngestorDescriptor = IngestorDescriptor {
        name: "b-one",
        description: "",
        config_example: "{}",
        build: build_nop,
    };
    static B: IngestorDescriptor = IngestorDescriptor {
        name: "a-one",
        description: "",
        config_example: "{}",
        build: build_nop,
    };
    static B2: IngestorDescriptor = IngestorDescriptor {
        name: "a-one",
        description: "",
        config_example: "{}",
        build: build_nop,
    };

    #[test]
    fn listing_is_sorted_and_registering_twice_is_a_no_op() {
        let mut r = Registry::new();
        r.register(&A).register(&B).register(&A);
        assert_eq!(r.names(), vec!["a-one", "b-one"]);
        assert!(r.get("b-one").is_ok());
    }

    #[test]
    fn duplicate_names_are_an_error_at_lookup_and_unknown_names_list_the_available() {
        let mut r = Registry::new();
        r.register(&A).register(&B).register(&B2);
        let err = r.get("a-one").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::DuplicatePlugin);
        assert!(err.message().contains("\"a-one\""), "{err}");
        assert_eq!(r.duplicates(), vec!["a-one"]);
        assert!(
            r.get("b-one").is_ok(),
            "one duplicate must not hide the others"
        );
        let err = r.get("nope").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("a-one, a-one, b-one"), "{err}");
    }
}
