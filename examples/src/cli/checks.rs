//! The CHECK commands: `check-health`, `run-check` and `check-and-alert`, and the background
//! work `tocsin serve` starts for checks ([`start_background`]).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value, json};
use tocsin_checkers::alerts::{self as check_alerts, AlertAction, PlannedAlert};
use tocsin_checkers::{CheckRequest, Summary};
use tocsin_core::domain::{CheckResult, CheckStatus, Labels, new_id};
use tocsin_core::plugin::{CheckerDescriptor, Plugins};
use tocsin_core::store::{DatabaseUrl, Store};
use tocsin_core::{Config, Tocsin};

use crate::App;

/// The checks commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run health checks of this machine and print a summary.
    ///
    /// Exit code: with --fail-on-critical 1 if any check is critical; with --fail-on-warning 1 if
    /// any is warning or critical; otherwise 2 if any is critical, 1 if any is unknown, else 0.
    /// Skipped checks (CHECKERS_SKIP_ALL, CHECKERS_SKIP) are reported as skipped and count as
    /// nothing. Each executed check is recorded as a CheckRun when the database can be opened.
    CheckHealth(CheckHealthArgs),
    /// Run one checker with its own options and print its full metrics.
    ///
    /// Exit code: 2 if critical, 1 if unknown, else 0.
    RunCheck(RunCheckArgs),
    /// Run health checks and turn the results into alerts (source tocsin-checkers).
    ///
    /// Warning and critical fire, unknown fires as warning, ok resolves a firing alert and
    /// creates nothing new; one alert per checker and host. Exit code 0 once the alerts are
    /// stored (the machine's health is in the alerts), 2 on an error.
    CheckAndAlert(CheckAndAlertArgs),
}

/// Options every multi-checker command shares.
#[derive(Debug, clap::Args)]
pub struct SelectionArgs {
    /// Warning threshold applied to every selected checker (percent). Network and process
    /// measure a healthy share, so for them it must be at or above the critical one.
    #[arg(long, value_name = "PERCENT")]
    pub warning_threshold: Option<f64>,
    /// Critical threshold applied to every selected checker (percent).
    #[arg(long, value_name = "PERCENT")]
    pub critical_threshold: Option<f64>,
    /// Paths for the disk checker (default /).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub disk_paths: Vec<String>,
    /// Hosts for the network checker: host:port (TCP) or host (ICMP echo).
    #[arg(long, value_name = "HOST", num_args = 1..)]
    pub ping_hosts: Vec<String>,
    /// Process names (exact, or a glob with *) for the process checker.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub processes: Vec<String>,
}

/// Options of `check-health`.
#[derive(Debug, clap::Args)]
pub struct CheckHealthArgs {
    /// Checkers to run (default: all).
    #[arg(value_name = "CHECKER")]
    pub checkers: Vec<String>,
    /// List the available checkers and exit.
    #[arg(long)]
    pub list: bool,
    /// Print JSON: {"results": [...], "summary": {...}}.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 if any check is warning or critical.
    #[arg(long)]
    pub fail_on_warning: bool,
    /// Exit 1 if any check is critical.
    #[arg(long)]
    pub fail_on_critical: bool,
    #[command(flatten)]
    pub select: SelectionArgs,
}

/// Options of `run-check`.
#[derive(Debug, clap::Args)]
pub struct RunCheckArgs {
    /// The checker.
    #[arg(value_name = "CHECKER")]
    pub checker: String,
    /// cpu: readings to average.
    #[arg(long)]
    pub samples: Option<u32>,
    /// cpu, process: seconds per reading.
    #[arg(long, value_name = "SECONDS")]
    pub sample_interval: Option<f64>,
    /// cpu: status from the busiest core.
    #[arg(long)]
    pub per_cpu: bool,
    /// memory: report swap too.
    #[arg(long)]
    pub include_swap: bool,
    /// disk: paths to check.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub paths: Vec<String>,
    /// network: targets (host:port for TCP, host for ICMP).
    #[arg(long, value_name = "HOST", num_args = 1..)]
    pub hosts: Vec<String>,
    /// process: names to look for.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub names: Vec<String>,
    /// disk, network: seconds to wait per path or host.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Warning threshold (percent).
    #[arg(long, value_name = "PERCENT")]
    pub warning_threshold: Option<f64>,
    /// Critical threshold (percent).
    #[arg(long, value_name = "PERCENT")]
    pub critical_threshold: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `check-and-alert`.
#[derive(Debug, clap::Args)]
pub struct CheckAndAlertArgs {
    /// Checkers to run (default: all).
    #[arg(value_name = "CHECKER")]
    pub checkers: Vec<String>,
    /// Print what would be created or resolved; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Create alerts but open no new incident for them (an alert already in an incident stays
    /// in it).
    #[arg(long)]
    pub no_incidents: bool,
    /// Also run checkers that CHECKERS_SKIP_ALL / CHECKERS_SKIP would skip.
    #[arg(long)]
    pub include_skipped: bool,
    /// Host name on the alerts (default: this machine's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Extra label on every alert, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub select: SelectionArgs,
}

/// Runs one checks command.
pub async fn run(cmd: Command, app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::CheckHealth(a) => check_health(a, app).await,
        Command::RunCheck(a) => run_check(a, app).await,
        Command::CheckAndAlert(a) => check_and_alert(a, app).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn lib_err(e: tocsin_core::Error) -> anyhow::Error {
    anyhow!("{}", e.message())
}

/// Names checked against the registry before anything is opened or run.
fn resolve_names(plugins: &Plugins, names: &[String]) -> anyhow::Result<()> {
    for n in names {
        plugins.checkers.get(n.trim()).map_err(lib_err)?;
    }
    Ok(())
}

/// The selected checkers (all when none are named).
fn selected(plugins: &Plugins, names: &[String]) -> Vec<String> {
    if names.is_empty() {
        plugins
            .checkers
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    } else {
        names.iter().map(|n| n.trim().to_owned()).collect()
    }
}

/// Per-checker options from the shared flags.
fn overrides(plugins: &Plugins, names: &[String], s: &SelectionArgs) -> Value {
    let mut all = Map::new();
    for name in selected(plugins, names) {
        let mut o = Map::new();
        if let Some(w) = s.warning_threshold {
            o.insert("warning_threshold".into(), json!(w));
        }
        if let Some(c) = s.critical_threshold {
            o.insert("critical_threshold".into(), json!(c));
        }
        match name.as_str() {
            "disk" if !s.disk_paths.is_empty() => {
                o.insert("paths".into(), json!(s.disk_paths));
            }
            "network" if !s.ping_hosts.is_empty() => {
                o.insert("hosts".into(), json!(s.ping_hosts));
            }
            "process" if !s.processes.is_empty() => {
                o.insert("names".into(), json!(s.processes));
            }
            _ => {}
        }
        if !o.is_empty() {
            all.insert(name, Value::Object(o));
        }
    }
    Value::Object(all)
}

/// Runs and records when the database opens; runs without recording (with a warning) when it
/// does not: a health check is most needed when things are broken.
async fn run_recorded(
    app: &App,
    req: &CheckRequest,
    trace_id: &str,
) -> anyhow::Result<(Vec<CheckResult>, Option<Tocsin>)> {
    match app.tocsin().await {
        Ok(t) => {
            let results =
                tocsin_checkers::check_only(t.plugins(), t.config(), &t.build_context(), req)
                    .await
                    .map_err(lib_err)?;
            if let Err(e) = tocsin_checkers::store_results(&t, &results, trace_id, None).await {
                eprintln!(
                    "tocsin: warning: the check runs could not be recorded: {}",
                    e.message()
                );
            }
            Ok((results, Some(t)))
        }
        Err(e) => {
            // Refuse bad options before saying anything about the database.
            let results = tocsin_checkers::check_only(
                &app.plugins(),
                &app.config,
                &build_context(&app.config),
                req,
            )
            .await
            .map_err(lib_err)?;
            eprintln!("tocsin: warning: the check runs are not recorded: {e:#}");
            Ok((results, None))
        }
    }
}

fn build_context(config: &Config) -> tocsin_core::plugin::BuildContext {
    tocsin_core::plugin::BuildContext::default().with_templates_dir(config.templates_dir.clone())
}

/// The exit code of `check-health`.
pub fn exit_code(s: &Summary, fail_on_warning: bool, fail_on_critical: bool) -> u8 {
    if fail_on_warning || fail_on_critical {
        let failed = (fail_on_warning && (s.warning > 0 || s.critical > 0))
            || (fail_on_critical && s.critical > 0);
        return u8::from(failed);
    }
    if s.critical > 0 {
        2
    } else if s.unknown > 0 {
        1
    } else {
        0
    }
}

/// How a result's status is shown: `skipped` for a skipped check.
fn shown_status(r: &CheckResult) -> &'static str {
    if r.skipped {
        "skipped"
    } else {
        r.status.as_str()
    }
}

fn result_json(r: &CheckResult) -> Value {
    json!({
        "checker": r.checker,
        "status": shown_status(r),
        "message": r.message,
        "metrics": r.metrics,
        "error": r.error,
        "duration_ms": r.duration_ms,
        "skipped": r.skipped,
        "warning_threshold": r.warning_threshold,
        "critical_threshold": r.critical_threshold,
    })
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// ANSI colours on a terminal (and not under NO_COLOR), plain text when piped.
struct Style {
    on: bool,
}

impl Style {
    fn detect() -> Self {
        Self {
            on: std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn status(&self, r: &CheckResult, width: usize) -> String {
        let label = format!("{:<width$}", shown_status(r).to_uppercase());
        let code = match (r.skipped, r.status) {
            (true, _) => "2",
            (false, CheckStatus::Ok) => "32",
            (false, CheckStatus::Warning) => "33",
            (false, CheckStatus::Critical) => "1;31",
            (false, CheckStatus::Unknown) => "35",
        };
        self.paint(&label, code)
    }
}

fn summary_line(s: &Summary) -> String {
    format!(
        "Total: {} | OK: {} | Warning: {} | Critical: {} | Unknown: {} | Skipped: {}",
        s.total, s.ok, s.warning, s.critical, s.unknown, s.skipped
    )
}

fn print_table(results: &[CheckResult], style: &Style) {
    let name_w = results
        .iter()
        .map(|r| r.checker.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<8}  {:<name_w$}  {:>9}  MESSAGE",
        "STATUS", "CHECKER", "TIME"
    );
    for r in results {
        let time = if r.skipped {
            "-".to_owned()
        } else {
            // Sub-10 ms checks (memory, disk) keep a decimal, so they do not read as "0 ms".
            let places = if r.duration_ms < 10.0 { 1 } else { 0 };
            format!("{:.places$} ms", r.duration_ms)
        };
        println!(
            "{}  {:<name_w$}  {:>9}  {}",
            style.status(r, 8),
            r.checker,
            time,
            r.message
        );
        if let Some(e) = &r.error {
            println!(
                "{:<8}  {:<name_w$}  {:>9}  {}",
                "",
                "",
                "",
                style.paint(&format!("error: {e}"), "2")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// check-health

fn list(plugins: &Plugins, config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let descriptors: &[&CheckerDescriptor] = plugins.checkers.list();
    if as_json {
        let items: Vec<Value> = descriptors
            .iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "description": d.description,
                    "config_example": serde_json::from_str::<Value>(d.config_example).unwrap_or(Value::Null),
                    "skipped": tocsin_checkers::run::skip_reason(config, d.name).is_some(),
                })
            })
            .collect();
        print_json(&json!({ "checkers": items }))?;
    } else {
        let w = descriptors.iter().map(|d| d.name.len()).max().unwrap_or(0);
        for d in descriptors {
            let skip = tocsin_checkers::run::skip_reason(config, d.name)
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            println!("{:<w$}  {}{skip}", d.name, d.description);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn check_health(a: CheckHealthArgs, app: &App) -> anyhow::Result<ExitCode> {
    let plugins = app.plugins();
    if a.list {
        return list(&plugins, &app.config, a.json);
    }
    resolve_names(&plugins, &a.checkers)?;
    let req = CheckRequest::new(&a.checkers, &overrides(&plugins, &a.checkers, &a.select));
    if a.json {
        eprintln!(
            "Running checkers: {}",
            selected(&plugins, &a.checkers).join(", ")
        );
    }
    let trace_id = new_id();
    let (results, _) = run_recorded(app, &req, &trace_id).await?;
    let summary = tocsin_checkers::summarize(&results);
    if a.json {
        print_json(&json!({
            "results": results.iter().map(result_json).collect::<Vec<_>>(),
            "summary": summary,
        }))?;
    } else {
        let style = Style::detect();
        print_table(&results, &style);
        println!();
        println!("{}", summary_line(&summary));
    }
    Ok(ExitCode::from(exit_code(
        &summary,
        a.fail_on_warning,
        a.fail_on_critical,
    )))
}

// ---------------------------------------------------------------------------------------------
// run-check

/// The checker's options from `run-check`'s flags; a flag for another checker is an error.
fn run_check_options(a: &RunCheckArgs) -> anyhow::Result<Value> {
    let mut o = Map::new();
    let name = a.checker.trim();
    let mut put = |flag: &str,
                   given: bool,
                   key: &str,
                   value: Value,
                   for_checkers: &[&str]|
     -> anyhow::Result<()> {
        if !given {
            return Ok(());
        }
        if !for_checkers.contains(&name) {
            bail!(
                "--{flag} applies to the {} checker, not {name}",
                for_checkers.join(" and ")
            );
        }
        o.insert(key.to_owned(), value);
        Ok(())
    };
    put(
        "samples",
        a.samples.is_some(),
        "samples",
        json!(a.samples),
        &["cpu"],
    )?;
    put(
        "sample-interval",
        a.sample_interval.is_some(),
        "sample_interval",
        json!(a.sample_interval),
        &["cpu", "process"],
    )?;
    put("per-cpu", a.per_cpu, "per_cpu", json!(true), &["cpu"])?;
    put(
        "include-swap",
        a.include_swap,
        "include_swap",
        json!(true),
        &["memory"],
    )?;
    put(
        "paths",
        !a.paths.is_empty(),
        "paths",
        json!(a.paths),
        &["disk"],
    )?;
    put(
        "hosts",
        !a.hosts.is_empty(),
        "hosts",
        json!(a.hosts),
        &["network"],
    )?;
    put(
        "names",
        !a.names.is_empty(),
        "names",
        json!(a.names),
        &["process"],
    )?;
    put(
        "timeout",
        a.timeout.is_some(),
        "timeout",
        json!(a.timeout),
        &["disk", "network"],
    )?;
    if let Some(w) = a.warning_threshold {
        o.insert("warning_threshold".into(), json!(w));
    }
    if let Some(c) = a.critical_threshold {
        o.insert("critical_threshold".into(), json!(c));
    }
    Ok(Value::Object(o))
}

/// Metrics as indented `key: value` lines (nested objects as dotted keys).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let joined: Vec<String> = items.iter().map(scalar).collect();
            out.push((prefix.to_owned(), format!("[{}]", joined.join(", "))));
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((prefix.to_owned(), scalar(other))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

async fn run_check(a: RunCheckArgs, app: &App) -> anyhow::Result<ExitCode> {
    let plugins = app.plugins();
    let name = a.checker.trim().to_owned();
    resolve_names(&plugins, std::slice::from_ref(&name))?;
    let options = run_check_options(&a)?;
    let req = CheckRequest::new(
        std::slice::from_ref(&name),
        &json!({ name.clone(): options }),
    );
    let (results, _) = run_recorded(app, &req, &new_id()).await?;
    let r = results
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the checker produced no result"))?;
    if a.json {
        print_json(&result_json(&r))?;
    } else {
        let style = Style::detect();
        println!("[{}] {}: {}", style.status(&r, 0), r.checker, r.message);
        if let Some(e) = &r.error {
            println!("Error: {e}");
        }
        if !r.skipped {
            if let (Some(w), Some(c)) = (r.warning_threshold, r.critical_threshold) {
                println!("Thresholds: warning {w}, critical {c}");
            }
            println!("Duration: {:.1} ms", r.duration_ms);
            let mut lines = Vec::new();
            flatten("", &r.metrics, &mut lines);
            if !lines.is_empty() {
                println!("Metrics:");
                let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (k, v) in lines {
                    println!("  {k:<w$}  {v}");
                }
            }
        }
    }
    let summary = tocsin_checkers::summarize(std::slice::from_ref(&r));
    Ok(ExitCode::from(exit_code(&summary, false, false)))
}

// ---------------------------------------------------------------------------------------------
// check-and-alert

fn parse_labels(raw: &[String]) -> anyhow::Result<Labels> {
    let mut labels = Labels::new();
    for l in raw {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("--label {l:?}: expected KEY=VALUE"))?;
        let k = k.trim();
        if k.is_empty() {
            bail!("--label {l:?}: the key is empty");
        }
        if ["checker", "hostname", "instance"].contains(&k) {
            bail!(
                "--label {k}=...: {k} is set by check-and-alert itself (use --hostname for the host)"
            );
        }
        labels.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(labels)
}

/// This machine's name, as the library handle computes it (for `--dry-run` without a database).
fn local_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The store to look alerts up in for a dry run, without creating or migrating anything.
async fn store_for_dry_run(config: &Config) -> Option<Store> {
    match DatabaseUrl::parse(&config.database_url).ok()? {
        DatabaseUrl::Sqlite(path)
            if path == ":memory:" || !std::path::Path::new(&path).exists() =>
        {
            None
        }
        _ => Store::connect(&config.database_url, 1).await.ok(),
    }
}

fn action_text(p: &PlannedAlert, looked_up: bool, dry: bool) -> String {
    let (would, id) = (
        if dry { "would " } else { "" },
        p.existing_alert_id
            .map(|i| format!(" #{i}"))
            .unwrap_or_default(),
    );
    match p.action {
        AlertAction::Create => format!("{would}create alert"),
        AlertAction::Update => format!("{would}update alert{id}"),
        AlertAction::Refire => format!("{would}re-fire alert{id}"),
        AlertAction::Resolve => format!("{would}resolve alert{id}"),
        AlertAction::Nothing if p.skipped => "skipped: no alert".to_owned(),
        AlertAction::Nothing if !looked_up && p.status == CheckStatus::Ok => {
            format!("{would}resolve the alert if one is firing")
        }
        AlertAction::Nothing => "no alert to resolve".to_owned(),
    }
}

async fn check_and_alert(a: CheckAndAlertArgs, app: &App) -> anyhow::Result<ExitCode> {
    let plugins = app.plugins();
    resolve_names(&plugins, &a.checkers)?;
    let labels = parse_labels(&a.labels)?;
    let mut req = CheckRequest::new(&a.checkers, &overrides(&plugins, &a.checkers, &a.select));
    req.include_skipped = a.include_skipped;
    let trace_id = new_id();

    if a.dry_run {
        // Writes nothing: no CheckRun, no alert, no migration, no new database file.
        let results =
            tocsin_checkers::check_only(&plugins, &app.config, &build_context(&app.config), &req)
                .await
                .map_err(lib_err)?;
        let hostname = a.hostname.clone().unwrap_or_else(local_hostname);
        let store = store_for_dry_run(&app.config).await;
        let plan = match &store {
            Some(s) => check_alerts::plan_alerts(s, &results, &hostname, &labels)
                .await
                .ok(),
            None => None,
        };
        let looked_up = plan.is_some();
        let plan = plan.unwrap_or_else(|| {
            results
                .iter()
                .map(|r| PlannedAlert::decide(r, &hostname, &labels, None))
                .collect()
        });
        return report(&a, &results, &plan, looked_up, &hostname, &trace_id, None);
    }

    let tocsin = app.tocsin().await?;
    let hostname = a
        .hostname
        .clone()
        .unwrap_or_else(|| tocsin.hostname().to_owned());
    let results = tocsin_checkers::run_request(&tocsin, &req, &trace_id, None)
        .await
        .map_err(lib_err)?;
    let plan = check_alerts::plan_alerts(tocsin.store(), &results, &hostname, &labels)
        .await
        .map_err(lib_err)?;
    let alerts = check_alerts::alerts_to_ingest(&plan);
    let hook: Option<tocsin_ingest::service::TxHook> = if !a.no_incidents {
        // The same path as a webhook: the incidents these alerts change start pipeline runs.
        Some(tocsin_ingest::pipeline::enqueue_hook(tocsin.clone(), None))
    } else {
        a.no_incidents.then(|| {
            let hook: tocsin_ingest::service::TxHook = Box::new(|conn, changes| {
                use tocsin_ingest::service::IncidentChangeKind;
                for c in changes
                    .iter()
                    .filter(|c| c.kind == IncidentChangeKind::Created)
                {
                    tocsin_core::store::checks::discard_incident(conn, c.incident_id)?;
                }
                Ok(Vec::new())
            });
            hook
        })
    };
    let outcome = tocsin_ingest::service::ingest_alerts(
        &tocsin,
        check_alerts::ALERT_SOURCE,
        alerts,
        Some(trace_id.clone()),
        hook,
    )
    .await
    .map_err(lib_err)
    .context("storing the alerts")?;
    let engine = crate::cli::serve::engine(app, tocsin.clone()).await?;
    tocsin_ingest::pipeline::dispatch(&engine, &outcome.run_ids)
        .await
        .map_err(lib_err)?;
    report(
        &a,
        &results,
        &plan,
        true,
        &hostname,
        &trace_id,
        Some(&outcome),
    )
}

fn report(
    a: &CheckAndAlertArgs,
    results: &[CheckResult],
    plan: &[PlannedAlert],
    looked_up: bool,
    hostname: &str,
    trace_id: &str,
    outcome: Option<&tocsin_ingest::service::IngestOutcome>,
) -> anyhow::Result<ExitCode> {
    let summary = tocsin_checkers::summarize(results);
    let by_fp: BTreeMap<&str, &tocsin_ingest::service::IngestedAlert> = outcome
        .map(|o| {
            o.alerts
                .iter()
                .map(|al| (al.fingerprint.as_str(), al))
                .collect()
        })
        .unwrap_or_default();
    let created_incidents: Vec<i64> = match outcome {
        Some(o) if !a.no_incidents => o
            .changes
            .iter()
            .filter(|c| c.kind == tocsin_ingest::service::IncidentChangeKind::Created)
            .map(|c| c.incident_id)
            .collect(),
        _ => Vec::new(),
    };
    if a.json {
        let items: Vec<Value> = results
            .iter()
            .zip(plan)
            .map(|(r, p)| {
                let stored = by_fp.get(p.fingerprint.as_str());
                let mut v = result_json(r);
                v["action"] = json!(p.action);
                v["would_create_alert"] = json!(matches!(
                    p.action,
                    AlertAction::Create | AlertAction::Refire
                ));
                v["fingerprint"] = json!(p.fingerprint);
                v["alert_id"] = json!(stored.map(|s| s.id).or(p.existing_alert_id));
                v["incident_id"] = json!(
                    stored
                        .and_then(|s| s.incident_id)
                        .filter(|_| !a.no_incidents)
                );
                v
            })
            .collect();
        let mut doc = json!({
            "dry_run": a.dry_run,
            "hostname": hostname,
            "trace_id": trace_id,
            "existing_alerts_checked": looked_up,
            "results": items,
            "summary": summary,
        });
        if let Some(o) = outcome {
            doc["alerts"] = json!({"created": o.created, "updated": o.updated, "resolved": o.resolved, "unchanged": o.unchanged});
            doc["incidents"] = json!({
                "created": created_incidents.len(),
                "ids": if a.no_incidents { Vec::new() } else { o.incident_ids.clone() },
            });
        }
        print_json(&doc)?;
    } else {
        let style = Style::detect();
        if a.dry_run {
            println!(
                "Dry run: nothing is written.{}",
                if looked_up {
                    ""
                } else {
                    " (No database to look existing alerts up in.)"
                }
            );
        }
        for (r, p) in results.iter().zip(plan) {
            let id = by_fp
                .get(p.fingerprint.as_str())
                .map(|s| format!(" (alert #{})", s.id))
                .unwrap_or_default();
            println!(
                "[{}] {}: {} -> {}{id}",
                style.status(r, 0),
                r.checker,
                r.message,
                action_text(p, looked_up, a.dry_run)
            );
        }
        println!();
        println!("Checks: {}", summary_line(&summary));
        if let Some(o) = outcome {
            println!(
                "Alerts: {} created, {} updated, {} resolved, {} unchanged | Incidents: {} opened{}",
                o.created,
                o.updated,
                o.resolved,
                o.unchanged,
                created_incidents.len(),
                if a.no_incidents {
                    " (--no-incidents)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// serve

/// What `tocsin serve` runs for checks next to the HTTP API: the CPU sampler (so `cpu` checks
/// answer at once) and, when `TOCSIN_CHECK_INTERVAL` is set, scheduled `check-and-alert` rounds
/// through the INGEST write path. Keep it alive for as long as the server runs; dropping it stops
/// both.
#[derive(Debug)]
// Never read: the fields are held for their `Drop`, which stops the sampler and the schedule.
#[allow(dead_code)]
pub struct Background {
    /// The CPU sampler.
    pub sampler: Option<tocsin_checkers::SamplerHandle>,
    /// The scheduled checks, when `TOCSIN_CHECK_INTERVAL` is set.
    pub scheduled: Option<tocsin_checkers::ScheduledChecks>,
}

/// Starts the background work of checks for `tocsin serve` (see [`Background`]). A bad
/// `TOCSIN_CHECK_INTERVAL` is an error; a sampler that cannot start is a warning.
pub fn start_background(engine: &tocsin_core::engine::Engine) -> anyhow::Result<Background> {
    let interval = tocsin_checkers::schedule::check_interval_from_env().map_err(lib_err)?;
    if let Some(every) = interval {
        tracing::info!(
            interval_s = every.as_secs_f64(),
            "Health checks will run on a schedule (TOCSIN_CHECK_INTERVAL)."
        );
    }
    Ok(start_background_with(
        engine,
        interval.map(tocsin_checkers::ScheduleConfig::every),
    ))
}

/// [`start_background`] with the schedule given.
fn start_background_with(
    engine: &tocsin_core::engine::Engine,
    schedule: Option<tocsin_checkers::ScheduleConfig>,
) -> Background {
    let tocsin = engine.tocsin();
    let sampler = match tocsin_checkers::start_sampler(tocsin_checkers::SamplerConfig::default()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "The CPU sampler could not start; cpu checks will sample on demand.");
            None
        }
    };
    let scheduled = schedule.map(|config| {
        // Each round's alerts go through the INGEST write path, like `check-and-alert`, and
        // the incidents they change start pipeline runs like a webhook's.
        let engine = engine.clone();
        tocsin_checkers::spawn_scheduled_checks(tocsin.clone(), config, move |_t, alerts, trace| {
            let engine = engine.clone();
            async move {
                tocsin_ingest::pipeline::ingest_alerts_and_run(
                    &engine,
                    check_alerts::ALERT_SOURCE,
                    alerts,
                    Some(trace),
                )
                .await
                .map(|_| ())
            }
        })
    });
    Background { sampler, scheduled }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ok: usize, warning: usize, critical: usize, unknown: usize) -> Summary {
        Summary {
            total: ok + warning + critical + unknown,
            ok,
            warning,
            critical,
            unknown,
            skipped: 0,
        }
    }

    #[test]
    fn exit_codes_follow_the_flags() {
        assert_eq!(exit_code(&s(3, 0, 0, 0), false, false), 0);
        assert_eq!(
            exit_code(&s(2, 1, 0, 0), false, false),
            0,
            "a plain warning exits 0"
        );
        assert_eq!(exit_code(&s(2, 0, 0, 1), false, false), 1);
        assert_eq!(exit_code(&s(1, 0, 1, 1), false, false), 2);
        assert_eq!(exit_code(&s(2, 1, 0, 0), true, false), 1);
        assert_eq!(exit_code(&s(2, 0, 1, 0), true, false), 1);
        assert_eq!(
            exit_code(&s(2, 0, 0, 1), true, false),
            0,
            "the flags look at warning and critical only"
        );
        assert_eq!(exit_code(&s(2, 1, 0, 0), false, true), 0);
        assert_eq!(exit_code(&s(2, 0, 1, 0), false, true), 1);
    }

    #[test]
    fn labels_parse_and_reserved_keys_are_refused() {
        let l = parse_labels(&["env=prod".into(), "team = ops".into()]).unwrap();
        assert_eq!(l["env"], "prod");
        assert_eq!(l["team"], "ops");
        assert!(parse_labels(&["novalue".into()]).is_err());
        assert!(parse_labels(&["=x".into()]).is_err());
        assert!(parse_labels(&["hostname=x".into()]).is_err());
    }

    #[test]
    fn metrics_flatten_to_dotted_keys() {
        let mut out = Vec::new();
        flatten(
            "",
            &json!({"a": 1, "b": {"c": "x", "d": [1, 2]}, "e": null}),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b.c".to_owned(), "x".to_owned()),
                ("b.d".to_owned(), "[1, 2]".to_owned()),
                ("e".to_owned(), "-".to_owned())
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn scheduled_rounds_store_alerts_through_ingest() {
        for db in tocsin_core::store::testing::all().await {
            let t = Tocsin::new(
                db.store.clone(),
                Plugins::from_inventory(),
                Config::default(),
            );
            let mut config =
                tocsin_checkers::ScheduleConfig::every(std::time::Duration::from_millis(100));
            config.request = CheckRequest::new(
                &["disk".to_owned()],
                &json!({"disk": {"warning_threshold": 0, "critical_threshold": 0}}),
            );
            config.hostname = Some("bg-host".into());
            let bg =
                start_background_with(&tocsin_core::engine::Engine::new(t.clone()), Some(config));
            assert!(bg.sampler.is_some());
            let fp = check_alerts::fingerprint("disk", "bg-host");
            let mut found = None;
            for _ in 0..100 {
                let fp = fp.clone();
                found = db
                    .store
                    .run(move |c| {
                        tocsin_core::store::find_alert(c, check_alerts::ALERT_SOURCE, &fp)
                    })
                    .await
                    .unwrap();
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            drop(bg);
            let alert =
                found.unwrap_or_else(|| panic!("{}: no alert from the scheduled round", db.label));
            assert_eq!(alert.status, tocsin_core::domain::AlertStatus::Firing);
            assert_eq!(alert.severity.as_str(), "critical");
            assert!(
                alert.incident_id.is_some(),
                "{}: through the full write path",
                db.label
            );
        }
    }
}
