//! Running a set of checkers: selection, skip controls, concurrency, records.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tocsin_core::domain::{CheckResult, CheckRun, CheckStatus};
use tocsin_core::plugin::{BuildContext, CheckOutcome, Checker, Plugins};
use tocsin_core::{Config, Error, Result, Tocsin, store};

/// The longest any one checker may take before it is reported `unknown` (each checker bounds its
/// own waits well below this; this only guards against a checker that never returns).
pub const CHECKER_DEADLINE: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    /// Checker names; empty means every registered checker.
    pub names: Vec<String>,
    /// Per-checker options: `{"disk": {"paths": ["/", "/var"]}, "cpu": {"per_cpu": true}}`.
    pub overrides: Value,
    /// Run checkers that `CHECKERS_SKIP_ALL` / `CHECKERS_SKIP` would skip.
    pub include_skipped: bool,
}

impl CheckRequest {
    /// Every registered checker with default options.
    pub fn all() -> Self {
        Self::default()
    }

    /// These checkers (empty: all), with these per-checker options.
    pub fn new(names: &[String], overrides: &Value) -> Self {
        Self {
            names: names.to_vec(),
            overrides: overrides.clone(),
            include_skipped: false,
        }
    }
}

/// Counts of a set of results, as `check-health --json` prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// All results, skipped included.
    pub total: usize,
    /// Ok.
    pub ok: usize,
    /// Warning.
    pub warning: usize,
    /// Critical.
    pub critical: usize,
    /// Unknown (not counting skipped).
    pub unknown: usize,
    /// Skipped by a skip control.
    pub skipped: usize,
}

/// Counts results by status; skipped ones count as skipped only.
pub fn summarize(results: &[CheckResult]) -> Summary {
    let mut s = Summary {
        total: results.len(),
        ..Summary::default()
    };
    for r in results {
        if r.skipped {
            s.skipped += 1;
            continue;
        }
        match r.status {
            CheckStatus::Ok => s.ok += 1,
            CheckStatus::Warning => s.warning += 1,
            CheckStatus::Critical => s.critical += 1,
            CheckStatus::Unknown => s.unknown += 1,
        }
    }
    s
}

/// One checker, built and ready, or skipped.
enum Planned {
    Run(String, Arc<dyn Checker>),
    Skip(String, String),
}

/// Why `name` is skipped under `config`, if it is.
pub fn skip_reason(config: &Config, name: &str) -> Option<String> {
    if config.checkers_skip_all {
        Some("skipped by CHECKERS_SKIP_ALL".to_owned())
    } else if config.checker_skipped(name) {
        Some("skipped by CHECKERS_SKIP".to_owned())
    } else {
        None
    }
}

/// Resolves names, applies skip controls and builds every checker (no I/O). Unknown names and
/// bad options are errors naming the checker; nothing runs if any is wrong.
fn plan(
    plugins: &Plugins,
    config: &Config,
    ctx: &BuildContext,
    req: &CheckRequest,
) -> Result<Vec<Planned>> {
    let registry = &plugins.checkers;
    let names: Vec<String> = if req.names.is_empty() {
        registry.names().into_iter().map(str::to_owned).collect()
    } else {
        let mut seen = BTreeSet::new();
        req.names
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| seen.insert(n.clone()))
            .collect()
    };
    let overrides = match &req.overrides {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(Error::invalid_input(format!(
                "checker options must be an object keyed by checker name, got {other}"
            )));
        }
    };
    for key in overrides.keys() {
        registry.get(key).map_err(|e| {
            Error::invalid_input(format!(
                "options given for a checker that does not exist: {}",
                e.message()
            ))
        })?;
    }
    let mut planned = Vec::with_capacity(names.len());
    for name in names {
        let descriptor = registry.get(&name)?;
        if !req.include_skipped
            && let Some(reason) = skip_reason(config, &name)
        {
            planned.push(Planned::Skip(name, reason));
            continue;
        }
        let options = overrides.get(&name).cloned().unwrap_or(Value::Null);
        let checker = (descriptor.build)(&options, ctx)?;
        planned.push(Planned::Run(name, checker));
    }
    Ok(planned)
}

/// A result for a skipped checker: `unknown` with `skipped: true`, never `ok`.
pub fn skipped_result(name: &str, reason: &str) -> CheckResult {
    CheckResult {
        checker: name.to_owned(),
        status: CheckStatus::Unknown,
        message: format!("Skipped: {reason}"),
        metrics: Value::Object(serde_json::Map::new()),
        error: None,
        warning_threshold: None,
        critical_threshold: None,
        duration_ms: 0.0,
        skipped: true,
    }
}

/// Runs one built checker, isolating it: a panic or a hang becomes `unknown`.
async fn execute(name: String, checker: Arc<dyn Checker>) -> CheckResult {
    let started = Instant::now();
    let task = tokio::spawn(async move { checker.check().await });
    let abort = task.abort_handle();
    let outcome = match tokio::time::timeout(CHECKER_DEADLINE, task).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => failed(format!("checker failed: {e}")),
        Err(_) => {
            abort.abort();
            failed(format!(
                "checker gave no answer within {} s",
                CHECKER_DEADLINE.as_secs()
            ))
        }
    };
    let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    tracing::debug!(checker = %name, status = %outcome.status, duration_ms, message = %outcome.message, "Checker ran.");
    CheckResult {
        checker: name,
        status: outcome.status,
        message: outcome.message,
        metrics: outcome.metrics,
        error: outcome.error,
        warning_threshold: outcome.warning_threshold,
        critical_threshold: outcome.critical_threshold,
        duration_ms,
        skipped: false,
    }
}

fn failed(error: String) -> CheckOutcome {
    CheckOutcome {
        status: CheckStatus::Unknown,
        message: "Check failed".to_owned(),
        metrics: Value::Object(serde_json::Map::new()),
        error: Some(error),
        warning_threshold: None,
        critical_threshold: None,
    }
}

/// Runs checkers without storing anything: for `--dry-run` and for library users without a
/// database. Honours `CHECKERS_SKIP_ALL` / `CHECKERS_SKIP` from `config` unless
/// `req.include_skipped`. Checkers run concurrently; results come back in name order (or the
/// order asked for).
pub async fn check_only(
    plugins: &Plugins,
    config: &Config,
    ctx: &BuildContext,
    req: &CheckRequest,
) -> Result<Vec<CheckResult>> {
    let planned = plan(plugins, config, ctx, req)?;
    let mut slots: Vec<Option<CheckResult>> = Vec::with_capacity(planned.len());
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in planned.into_iter().enumerate() {
        match p {
            Planned::Skip(name, reason) => {
                tracing::debug!(checker = %name, reason = %reason, "Checker skipped.");
                slots.push(Some(skipped_result(&name, &reason)));
            }
            Planned::Run(name, checker) => {
                slots.push(None);
                set.spawn(async move { (i, execute(name, checker).await) });
            }
        }
    }
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.map_err(|e| Error::internal(format!("checker task failed: {e}")))?;
        slots[i] = Some(r);
    }
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| Error::internal("a checker produced no result")))
        .collect()
}

/// Writes one `CheckRun` per executed (not skipped) result, in one transaction.
pub async fn store_results(
    tocsin: &Tocsin,
    results: &[CheckResult],
    trace_id: &str,
    run_id: Option<&str>,
) -> Result<Vec<CheckRun>> {
    let to_store: Vec<CheckResult> = results.iter().filter(|r| !r.skipped).cloned().collect();
    if to_store.is_empty() {
        return Ok(Vec::new());
    }
    let hostname = tocsin.hostname().to_owned();
    let trace_id = trace_id.to_owned();
    let run_id = run_id.map(str::to_owned);
    tocsin
        .store()
        .write(move |conn| {
            to_store
                .iter()
                .map(|r| store::insert_check_run(conn, r, &hostname, &trace_id, run_id.as_deref()))
                .collect()
        })
        .await
}

/// Runs a request against `tocsin`'s plugins and settings and records a `CheckRun` per executed
/// checker.
pub async fn run_request(
    tocsin: &Tocsin,
    req: &CheckRequest,
    trace_id: &str,
    run_id: Option<&str>,
) -> Result<Vec<CheckResult>> {
    let results = check_only(
        tocsin.plugins(),
        tocsin.config(),
        &tocsin.build_context(),
        req,
    )
    .await?;
    store_results(tocsin, &results, trace_id, run_id).await?;
    Ok(results)
}

/// Runs checkers and records a `CheckRun` for each one executed.
///
/// `names` empty means every registered checker; `overrides` holds per-checker options
/// (`{"disk": {"paths": ["/var"]}}`). `CHECKERS_SKIP_ALL` / `CHECKERS_SKIP` from `tocsin.config()`
/// are honoured: a skipped checker is in the results with `skipped: true` (status `unknown`, not
/// `ok`) and writes no record. Checkers run concurrently; a checker that fails to measure is
/// `unknown` with its error and never takes the others down. Errors: an unknown checker name
/// (listing the available ones), invalid options, or storage.
pub async fn run_checks(
    tocsin: &Tocsin,
    names: &[String],
    overrides: &Value,
    trace_id: &str,
    run_id: Option<&str>,
) -> Result<Vec<CheckResult>> {
    run_request(
        tocsin,
        &CheckRequest::new(names, overrides),
        trace_id,
        run_id,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use tocsin_core::plugin::CheckerDescriptor;

    struct Panics;
    #[async_trait]
    impl Checker for Panics {
        async fn check(&self) -> CheckOutcome {
            panic!("boom")
        }
    }

    struct Fine;
    #[async_trait]
    impl Checker for Fine {
        async fn check(&self) -> CheckOutcome {
            tokio::time::sleep(Duration::from_millis(100)).await;
            CheckOutcome {
                status: CheckStatus::Ok,
                message: "fine".into(),
                metrics: serde_json::json!({}),
                error: None,
                warning_threshold: None,
                critical_threshold: None,
            }
        }
    }

    static PANICS: CheckerDescriptor = CheckerDescriptor {
        name: "panics",
        description: "",
        config_example: "{}",
        build: |_, _| Ok(Arc::new(Panics)),
    };
    static FINE_A: CheckerDescriptor = CheckerDescriptor {
        name: "fine-a",
        description: "",
        config_example: "{}",
        build: |_, _| Ok(Arc::new(Fine)),
    };
    static FINE_B: CheckerDescriptor = CheckerDescriptor {
        name: "fine-b",
        description: "",
        config_example: "{}",
        build: |_, _| Ok(Arc::new(Fine)),
    };

    fn plugins() -> Plugins {
        let mut p = Plugins::empty();
        p.checkers
            .register(&PANICS)
            .register(&FINE_A)
            .register(&FINE_B);
        p
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panicking_checker_is_unknown_and_takes_no_other_down() {
        let results = check_only(
            &plugins(),
            &Config::default(),
            &BuildContext::default(),
            &CheckRequest::all(),
        )
        .await
        .unwrap();
        let names: Vec<&str> = results.iter().map(|r| r.checker.as_str()).collect();
        assert_eq!(
            names,
            ["fine-a", "fine-b", "panics"],
            "name order, whatever finished first"
        );
        assert_eq!(results[0].status, CheckStatus::Ok);
        assert_eq!(results[1].status, CheckStatus::Ok);
        assert_eq!(results[2].status, CheckStatus::Unknown);
        assert!(
            results[2].error.as_deref().unwrap().contains("panic"),
            "{:?}",
            results[2]
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn checkers_run_concurrently() {
        let started = Instant::now();
        let req = CheckRequest::new(&["fine-a".into(), "fine-b".into()], &Value::Null);
        check_only(
            &plugins(),
            &Config::default(),
            &BuildContext::default(),
            &req,
        )
        .await
        .unwrap();
        // Two 100 ms checkers one after the other would take 200 ms.
        assert!(
            started.elapsed() < Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn summary_counts_skipped_apart() {
        let mut skipped = skipped_result("x", "skipped by CHECKERS_SKIP");
        assert_eq!(skipped.status, CheckStatus::Unknown);
        let mut ok = skipped.clone();
        ok.skipped = false;
        ok.status = CheckStatus::Ok;
        skipped.checker = "y".into();
        let s = summarize(&[skipped, ok]);
        assert_eq!((s.total, s.ok, s.unknown, s.skipped), (2, 1, 0, 1));
    }
}
