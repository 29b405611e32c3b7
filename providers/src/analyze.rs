//! The library call of the ANALYZE stage: pick a provider, give it the incident, its alerts and
//! the latest checks, record an `AnalysisRun`, and fall back to `local` when asked to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Utc;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tocsin_core::domain::{AnalysisRun, AnalysisStatus, CheckResult, Recommendation, new_id};
use tocsin_core::plugin::{AnalysisInput, AnalysisOutput, ProviderDescriptor, TokenUsage};
use tocsin_core::store::{self, AlertFilter, NewAnalysisRun, Store};
use tocsin_core::{Error, ErrorKind, Result, Tocsin};

use crate::options::RequestOptions;
use crate::text::cut;

/// What to analyse, and how.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnalyzeRequest {
    /// The incident to analyse; `None` runs a general scan.
    #[serde(default)]
    pub incident_id: Option<i64>,
    /// The provider's registered name; `None` is `local`.
    #[serde(default)]
    pub provider: Option<String>,
    /// Request-level tuning only ([`RequestOptions`]); `null` or an object.
    #[serde(default)]
    pub config: Value,
    /// The latest check results. Empty: the latest stored check run of each checker from the
    /// last hour.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Correlation id; empty gets a fresh one.
    #[serde(default)]
    pub trace_id: String,
    /// The pipeline run this analysis belongs to.
    #[serde(default)]
    pub run_id: Option<String>,
    /// When the chosen provider fails, run `local` instead and record `fallback_used`.
    #[serde(default)]
    pub fallback: bool,
}

/// What an analysis produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeOutcome {
    /// The recommendations, each carrying the incident id.
    pub recommendations: Vec<Recommendation>,
    /// The `AnalysisRun` that recorded them.
    pub analysis_run_id: i64,
    /// Whether `local` stood in for the requested provider.
    pub fallback_used: bool,
    /// The provider that produced the recommendations.
    pub provider: String,
    /// The provider that was asked for.
    pub requested_provider: String,
    /// The model, when the provider has one.
    pub model: Option<String>,
    /// Token usage, when the provider reported it.
    pub usage: Option<TokenUsage>,
    /// The incident analysed.
    pub incident_id: Option<i64>,
    /// Why the requested provider failed, when `fallback_used`.
    pub primary_error: Option<String>,
    /// The failed run of the requested provider, when `fallback_used`.
    pub failed_run_id: Option<i64>,
}

/// The operator's provider settings: endpoints, keys and scan roots, which a request can never
/// set. Each provider's `build` receives its entry (or `{}`).
#[derive(Debug, Clone, Default)]
pub struct OperatorConfig {
    providers: BTreeMap<String, Value>,
}

/// The variable naming the folders a disk scan may read.
pub const ROOTS_ENV: &str = "TOCSIN_ANALYZE_ROOTS";

impl OperatorConfig {
    /// Nothing configured: providers use their defaults (the `openai` provider still reads
    /// `OPENAI_*` variables when it is built).
    pub fn new() -> Self {
        Self::default()
    }

    /// For operators (command line, pipelines): disk scans may read `TOCSIN_ANALYZE_ROOTS`, or
    /// `/` when it is unset.
    pub fn from_env() -> Self {
        let roots = roots_from_env().unwrap_or_else(|| vec![PathBuf::from("/")]);
        Self::new().with_roots(roots)
    }

    /// For callers over the network: disk scans may read only `TOCSIN_ANALYZE_ROOTS`, and
    /// nothing when it is unset.
    pub fn strict_from_env() -> Self {
        Self::new().with_roots(roots_from_env().unwrap_or_default())
    }

    /// Sets the folders a `local` disk scan may read.
    pub fn with_roots(mut self, roots: Vec<PathBuf>) -> Self {
        let entry = self
            .providers
            .entry("local".to_owned())
            .or_insert_with(|| json!({}));
        if let Value::Object(map) = entry {
            map.insert("roots".to_owned(), json!(roots));
        }
        self
    }

    /// Sets a provider's whole operator configuration (for example the `openai` endpoint).
    pub fn with_provider(mut self, name: &str, config: Value) -> Self {
        self.providers.insert(name.to_owned(), config);
        self
    }

    /// The configuration `build` gets for `name`.
    pub fn config_for(&self, name: &str) -> Value {
        self.providers
            .get(name)
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// The roots a `local` disk scan may read.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.providers
            .get("local")
            .and_then(|v| v.get("roots"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

fn roots_from_env() -> Option<Vec<PathBuf>> {
    let v = std::env::var(ROOTS_ENV).ok()?;
    Some(
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
    )
}

/// Runs an analysis with the operator settings of [`OperatorConfig::from_env`] and records it.
///
/// Errors: an unknown incident is `NotFound`; an unknown provider or a bad `config` is
/// `InvalidInput`; a provider failure (without fallback, or when `local` fails too) is the
/// provider's typed error, after its failed `AnalysisRun` is recorded.
pub async fn analyze(tocsin: &Tocsin, req: AnalyzeRequest) -> Result<AnalyzeOutcome> {
    analyze_with(tocsin, req, &OperatorConfig::from_env()).await
}

/// [`analyze`] with explicit operator settings (the HTTP adapter passes
/// [`OperatorConfig::strict_from_env`]; tests point `openai` at a local server).
pub async fn analyze_with(
    tocsin: &Tocsin,
    req: AnalyzeRequest,
    operator: &OperatorConfig,
) -> Result<AnalyzeOutcome> {
    let options = RequestOptions::from_value(&req.config)?;
    let requested = req
        .provider
        .clone()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| crate::DEFAULT_PROVIDER.to_owned());
    let descriptor = provider_descriptor(tocsin, &requested)?;
    let trace_id = if req.trace_id.is_empty() {
        new_id()
    } else {
        req.trace_id.clone()
    };

    let (incident, alerts) = match req.incident_id {
        Some(id) => {
            tocsin
                .store()
                .run(move |c| {
                    let incident = store::get_incident(c, id)?;
                    let alerts = store::list_alerts(
                        c,
                        &AlertFilter {
                            incident_id: Some(id),
                            limit: 50,
                            ..Default::default()
                        },
                    )?;
                    Ok((Some(incident), alerts))
                })
                .await?
        }
        None => (None, Vec::new()),
    };
    let checks = if req.checks.is_empty() {
        latest_checks(tocsin.store()).await?
    } else {
        req.checks.clone()
    };
    let input = AnalysisInput {
        incident,
        alerts,
        checks,
        options: options.to_value(),
    };
    let summary = input_summary(&input, &options);
    let ctx = RunContext {
        tocsin,
        trace_id: &trace_id,
        run_id: req.run_id.as_deref(),
        incident_id: req.incident_id,
        summary: &summary,
    };

    let started = Utc::now();
    let primary = run_provider(tocsin, descriptor, operator, &input).await;
    match primary {
        Ok((output, config)) => {
            let recs = finish(output.recommendations.clone(), req.incident_id);
            let run = ctx
                .record(&requested, config, Ok(&output), &recs, false, None, started)
                .await?;
            ctx.update_summary(&recs).await;
            Ok(AnalyzeOutcome {
                recommendations: recs,
                analysis_run_id: run.id,
                fallback_used: false,
                provider: requested.clone(),
                requested_provider: requested,
                model: output.model,
                usage: output.usage,
                incident_id: req.incident_id,
                primary_error: None,
                failed_run_id: None,
            })
        }
        Err((err, config)) => {
            if err.kind() == ErrorKind::InvalidInput {
                tracing::info!(provider = %requested, trace_id = %trace_id, error = %err, "Analysis refused its input.");
            } else {
                tracing::warn!(provider = %requested, trace_id = %trace_id, error = %err, "Analysis provider failed.");
            }
            let failed = ctx
                .record(&requested, config, Err(&err), &[], false, None, started)
                .await?;
            if !req.fallback || requested == crate::DEFAULT_PROVIDER {
                return Err(err);
            }
            let local = provider_descriptor(tocsin, crate::DEFAULT_PROVIDER).map_err(|_| {
                Error::new(
                    err.kind(),
                    format!(
                        "{}; no `local` provider is registered to fall back to",
                        err.message()
                    ),
                )
                .with_retry(err.retry())
            })?;
            let note = format!("{requested} failed ({err}); the local provider stood in");
            let started = Utc::now();
            match run_provider(tocsin, local, operator, &input).await {
                Ok((output, config)) => {
                    let recs = finish(output.recommendations.clone(), req.incident_id);
                    let run = ctx
                        .record(
                            crate::DEFAULT_PROVIDER,
                            config,
                            Ok(&output),
                            &recs,
                            true,
                            Some(note),
                            started,
                        )
                        .await?;
                    ctx.update_summary(&recs).await;
                    tracing::info!(provider = %requested, trace_id = %trace_id, analysis_run_id = run.id, "Fell back to the local provider.");
                    Ok(AnalyzeOutcome {
                        recommendations: recs,
                        analysis_run_id: run.id,
                        fallback_used: true,
                        provider: crate::DEFAULT_PROVIDER.to_owned(),
                        requested_provider: requested,
                        model: output.model,
                        usage: output.usage,
                        incident_id: req.incident_id,
                        primary_error: Some(err.to_string()),
                        failed_run_id: Some(failed.id),
                    })
                }
                Err((local_err, config)) => {
                    ctx.record(
                        crate::DEFAULT_PROVIDER,
                        config,
                        Err(&local_err),
                        &[],
                        true,
                        Some(note),
                        started,
                    )
                    .await?;
                    Err(Error::new(
                        err.kind(),
                        format!(
                            "{}; the local fallback failed too: {local_err}",
                            err.message()
                        ),
                    )
                    .with_retry(err.retry()))
                }
            }
        }
    }
}

/// One stored analysis run.
pub async fn get_analysis_run(store: &Store, id: i64) -> Result<AnalysisRun> {
    use tocsin_core::store::rows::AnalysisRunRow;
    use tocsin_core::store::schema::analysis_runs;
    store
        .run(move |c| {
            analysis_runs::table
                .find(id)
                .select(analysis_runs::all_columns)
                .first::<AnalysisRunRow>(c)
                .optional()?
                .ok_or_else(|| Error::not_found(format!("analysis run {id} not found")))?
                .try_into()
        })
        .await
}

fn provider_descriptor(tocsin: &Tocsin, name: &str) -> Result<&'static ProviderDescriptor> {
    tocsin.plugins().providers.get(name).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            Error::invalid_input(e.message().to_owned())
        } else {
            e
        }
    })
}

/// Builds and runs one provider; on failure also returns what configuration it had.
async fn run_provider(
    tocsin: &Tocsin,
    descriptor: &'static ProviderDescriptor,
    operator: &OperatorConfig,
    input: &AnalysisInput,
) -> std::result::Result<(AnalysisOutput, Value), (Error, Value)> {
    let build_config = operator.config_for(descriptor.name);
    // What is recorded: the provider's own view of its settings (secrets redacted), plus the
    // request's tuning.
    let with_request = |mut config: Value| {
        let request = input.options.clone();
        if request.as_object().is_some_and(|m| !m.is_empty()) {
            match &mut config {
                Value::Object(map) => {
                    map.insert("request".to_owned(), request);
                }
                _ => config = json!({"request": request}),
            }
        }
        tocsin_core::secret::redact(&config)
    };
    let provider = match (descriptor.build)(&build_config, &tocsin.build_context()) {
        Ok(p) => p,
        Err(e) => return Err((e, with_request(build_config))),
    };
    let config = with_request(provider.redacted_config());
    match provider.analyze(input).await {
        Ok(out) => Ok((out, config)),
        Err(e) => Err((e, config)),
    }
}

/// At most this many recommendations are kept and stored.
const MAX_RECOMMENDATIONS: usize = 50;

/// Stamps the incident id, sorts by priority (most urgent first, stable) and bounds the list.
fn finish(mut recs: Vec<Recommendation>, incident_id: Option<i64>) -> Vec<Recommendation> {
    for r in &mut recs {
        r.incident_id = incident_id;
    }
    recs.sort_by_key(|r| std::cmp::Reverse(priority_rank(r.priority)));
    recs.truncate(MAX_RECOMMENDATIONS);
    recs
}

pub(crate) fn priority_rank(p: tocsin_core::domain::Priority) -> u8 {
    use tocsin_core::domain::Priority::*;
    match p {
        Low => 0,
        Medium => 1,
        High => 2,
        Critical => 3,
    }
}

struct RunContext<'a> {
    tocsin: &'a Tocsin,
    trace_id: &'a str,
    run_id: Option<&'a str>,
    incident_id: Option<i64>,
    summary: &'a str,
}

impl RunContext<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        provider: &str,
        config: Value,
        result: std::result::Result<&AnalysisOutput, &Error>,
        recs: &[Recommendation],
        fallback_used: bool,
        note: Option<String>,
        started: chrono::DateTime<Utc>,
    ) -> Result<AnalysisRun> {
        let (status, model, usage, error) = match result {
            Ok(out) => (
                AnalysisStatus::Succeeded,
                out.model.clone(),
                out.usage,
                note,
            ),
            Err(e) => {
                let msg = match note {
                    Some(n) => format!("{e} (after: {n})"),
                    None => e.to_string(),
                };
                (AnalysisStatus::Failed, None, None, Some(cut(&msg, 2000)))
            }
        };
        let new = NewAnalysisRun {
            trace_id: self.trace_id.to_owned(),
            run_id: self.run_id.map(str::to_owned),
            provider: provider.to_owned(),
            provider_config: config,
            model_name: model,
            status,
            incident_id: self.incident_id,
            input_summary: self.summary.to_owned(),
            recommendations: recs.to_vec(),
            usage,
            error_message: error,
            fallback_used,
            started_at: started,
            completed_at: Some(Utc::now()),
        };
        self.tocsin
            .store()
            .write(move |c| store::insert_analysis_run(c, &new))
            .await
    }

    /// Fills the incident's summary with the most urgent recommendation. Best effort: the
    /// analysis is recorded already, so a failure here is only logged.
    async fn update_summary(&self, recs: &[Recommendation]) {
        use tocsin_core::store::schema::incidents;
        let (Some(id), Some(top)) = (self.incident_id, recs.first()) else {
            return;
        };
        let summary = cut(&format!("[{}] {}", top.priority, top.title), 500);
        let res = self
            .tocsin
            .store()
            .write(move |c| {
                // An `Update`: diesel's own is parsed and planned again on every call.
                store::update::Update::by_id("incidents", id)
                    .set(incidents::summary, summary.as_str())
                    .execute(c)?;
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(incident_id = id, error = %e, "Could not store the incident summary.");
        }
    }
}

/// The latest stored result of each checker from the last hour.
async fn latest_checks(store: &Store) -> Result<Vec<CheckResult>> {
    let runs = store.run(|c| store::list_check_runs(c, None, 100)).await?;
    let since = Utc::now() - chrono::Duration::hours(1);
    let mut seen = std::collections::BTreeSet::new();
    Ok(runs
        .into_iter()
        .filter(|r| r.executed_at >= since && seen.insert(r.checker_name.clone()))
        .map(|r| CheckResult {
            checker: r.checker_name,
            status: r.status,
            message: r.message,
            metrics: r.metrics,
            error: r.error,
            warning_threshold: r.warning_threshold,
            critical_threshold: r.critical_threshold,
            duration_ms: r.duration_ms,
            skipped: false,
        })
        .collect())
}

/// One bounded line about what the provider was given.
fn input_summary(input: &AnalysisInput, options: &RequestOptions) -> String {
    let mut parts = Vec::new();
    match &input.incident {
        Some(i) => parts.push(format!(
            "incident #{} {:?} ({}, {})",
            i.id,
            cut(&i.title, 120),
            i.severity,
            i.status
        )),
        None => parts.push("general scan (no incident)".to_owned()),
    }
    if !input.alerts.is_empty() {
        let names: Vec<_> = input
            .alerts
            .iter()
            .take(5)
            .map(|a| a.name.as_str())
            .collect();
        parts.push(format!(
            "{} alert(s): {}",
            input.alerts.len(),
            names.join(", ")
        ));
    }
    if !input.checks.is_empty() {
        let checks: Vec<_> = input
            .checks
            .iter()
            .take(10)
            .map(|c| format!("{}={}", c.checker, c.status))
            .collect();
        parts.push(format!("checks: {}", checks.join(", ")));
    }
    let opts = options.to_value();
    if opts.as_object().is_some_and(|m| !m.is_empty()) {
        parts.push(format!("options: {opts}"));
    }
    cut(&parts.join("; "), 1000)
}
