//! The ANALYZE command: `get-recommendations`.
//!
//! Runs a provider (default `local`) on an incident, or a general scan of this machine, records
//! the `AnalysisRun`, and prints the recommendations. Disk scans may read `TOCSIN_ANALYZE_ROOTS`
//! (default `/`); the `openai` provider is configured by `OPENAI_API_KEY`, `OPENAI_BASE_URL`,
//! `OPENAI_MODEL` and `OPENAI_TIMEOUT`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tocsin_core::domain::Recommendation;
use tocsin_providers::{AnalyzeOutcome, AnalyzeRequest, OperatorConfig, analyze_with};

use crate::App;

/// The intelligence commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Get recommendations for an incident, or from a general scan of this machine.
    ///
    /// Without --memory, --cpu, --disk or --all, what to analyse is decided from the incident (its
    /// labels first, then failed checks, then words), or a general scan without one. Every run is
    /// recorded as an AnalysisRun.
    GetRecommendations(GetRecommendationsArgs),
}

/// Options of `get-recommendations`.
#[derive(Debug, clap::Args)]
pub struct GetRecommendationsArgs {
    /// Analyse this incident.
    #[arg(long, value_name = "ID")]
    pub incident_id: Option<i64>,
    /// The provider (see --list-providers).
    #[arg(long, value_name = "NAME", default_value = tocsin_providers::DEFAULT_PROVIDER)]
    pub provider: String,
    /// Memory analysis: the top processes by resident memory.
    #[arg(long)]
    pub memory: bool,
    /// CPU analysis: the top processes by CPU over a short window, and load averages.
    #[arg(long)]
    pub cpu: bool,
    /// Disk analysis of --path: largest directories and files, old log, temp and cache files.
    #[arg(long)]
    pub disk: bool,
    /// Memory, CPU and disk analysis.
    #[arg(long)]
    pub all: bool,
    /// The folder a disk analysis scans (must lie under TOCSIN_ANALYZE_ROOTS when set).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// How many processes, directories and files to list (1 to 100).
    #[arg(long, value_name = "N")]
    pub top_n: Option<usize>,
    /// List files and directories of at least this many MiB.
    #[arg(long, value_name = "MB")]
    pub threshold_mb: Option<u64>,
    /// List log, temp and cache files older than this many days.
    #[arg(long, value_name = "DAYS")]
    pub old_days: Option<u64>,
    /// The model, for AI providers.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// If the provider fails, use `local` instead (recorded as a fallback).
    #[arg(long)]
    pub fallback: bool,
    /// Print JSON: {"provider", "recommendations", "count", "analysis_run_id", ...}.
    #[arg(long)]
    pub json: bool,
    /// List the available providers and exit.
    #[arg(long)]
    pub list_providers: bool,
}

/// Runs one intelligence command.
pub async fn run(cmd: Command, app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::GetRecommendations(args) => get_recommendations(args, app).await,
    }
}

fn request_config(args: &GetRecommendationsArgs) -> Value {
    let mut analyses = Vec::new();
    if args.all || args.memory {
        analyses.push("memory");
    }
    if args.all || args.cpu {
        analyses.push("cpu");
    }
    if args.all || args.disk {
        analyses.push("disk");
    }
    let mut config = json!({});
    if !analyses.is_empty() {
        config["analyses"] = json!(analyses);
    }
    if let Some(p) = &args.path {
        config["path"] = json!(p);
    }
    if let Some(n) = args.top_n {
        config["top_n"] = json!(n);
    }
    if let Some(n) = args.threshold_mb {
        config["threshold_mb"] = json!(n);
    }
    if let Some(n) = args.old_days {
        config["old_days"] = json!(n);
    }
    if let Some(m) = &args.model {
        config["model"] = json!(m);
    }
    config
}

async fn get_recommendations(args: GetRecommendationsArgs, app: &App) -> anyhow::Result<ExitCode> {
    if args.list_providers {
        return list_providers(app, args.json);
    }
    let config = request_config(&args);
    // Validate the flags before opening the database, so a typo fails fast.
    tocsin_providers::RequestOptions::from_value(&config)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let tocsin = app.tocsin().await?;
    let request = AnalyzeRequest {
        incident_id: args.incident_id,
        provider: Some(args.provider.clone()),
        config,
        fallback: args.fallback,
        ..AnalyzeRequest::default()
    };
    let progress = Progress::start();
    let result = analyze_with(&tocsin, request, &OperatorConfig::from_env()).await;
    progress.stop().await;
    let outcome = result.map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let body = json!({
            "provider": outcome.provider,
            "requested_provider": outcome.requested_provider,
            "incident_id": outcome.incident_id,
            "count": outcome.recommendations.len(),
            "recommendations": outcome.recommendations,
            "analysis_run_id": outcome.analysis_run_id,
            "fallback_used": outcome.fallback_used,
            "model": outcome.model,
            "usage": outcome.usage,
            "primary_error": outcome.primary_error,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
    } else {
        write!(out, "{}", render(&outcome))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list_providers(app: &App, json: bool) -> anyhow::Result<ExitCode> {
    let plugins = app.plugins();
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<Value> = plugins
            .providers
            .list()
            .iter()
            .map(|d| json!({"name": d.name, "description": d.description}))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({"providers": list, "count": list.len()}))?
        )?;
    } else {
        writeln!(out, "Available providers:")?;
        for d in plugins.providers.list() {
            let default = if d.name == tocsin_providers::DEFAULT_PROVIDER {
                " (default)"
            } else {
                ""
            };
            writeln!(out, "  {}{default}: {}", d.name, d.description)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text report: numbered `[PRIORITY] title`, the evidence, the actions.
fn render(o: &AnalyzeOutcome) -> String {
    let mut s = String::new();
    let provider = if o.fallback_used {
        format!("{} (fallback for {})", o.provider, o.requested_provider)
    } else {
        o.provider.clone()
    };
    s.push_str(&format!(
        "Recommendations from {provider}{}: {} (analysis run {})\n",
        o.incident_id
            .map(|i| format!(" for incident #{i}"))
            .unwrap_or_default(),
        o.recommendations.len(),
        o.analysis_run_id
    ));
    if let Some(e) = &o.primary_error {
        s.push_str(&format!("  note: {e}\n"));
    }
    for (i, r) in o.recommendations.iter().enumerate() {
        s.push_str(&format!(
            "\n{}. [{}] {}\n",
            i + 1,
            r.priority.as_str().to_uppercase(),
            r.title
        ));
        s.push_str(&format!("   Type: {}\n", r.kind));
        s.push_str(&format!("   {}\n", r.description));
        evidence(&mut s, r);
        if !r.actions.is_empty() {
            s.push_str("   Suggested actions:\n");
            for a in &r.actions {
                s.push_str(&format!("     -> {a}\n"));
            }
        }
    }
    s
}

fn evidence(s: &mut String, r: &Recommendation) {
    let d = &r.details;
    if let Some(procs) = d
        .get("top_processes")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    {
        s.push_str("   Top processes:\n");
        for p in procs.iter().take(5) {
            let cpu = p
                .get("cpu_percent")
                .and_then(Value::as_f64)
                .map(|c| format!(", CPU {c:.1}%"))
                .unwrap_or_default();
            s.push_str(&format!(
                "     PID {:>7}  {:>9.1} MiB  {:>5.1}%{cpu}  {}\n",
                p["pid"],
                p["memory_mb"].as_f64().unwrap_or(0.0),
                p["memory_percent"].as_f64().unwrap_or(0.0),
                p["name"].as_str().unwrap_or("?")
            ));
        }
    }
    for (key, label) in [
        ("largest_dirs", "Largest directories"),
        ("largest_files", "Largest files"),
    ] {
        if let Some(items) = d
            .get(key)
            .and_then(Value::as_array)
            .filter(|i| !i.is_empty())
        {
            s.push_str(&format!("   {label}:\n"));
            for it in items.iter().take(5) {
                s.push_str(&format!(
                    "     {:>9.1} MiB  {}\n",
                    it["size_mb"].as_f64().unwrap_or(0.0),
                    it["path"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    if let Some(items) = d
        .get("old_files")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())
    {
        s.push_str("   Old files:\n");
        for it in items.iter().take(5) {
            s.push_str(&format!(
                "     {:>9.1} MiB  {:>6.0} days  {:<5}  {}\n",
                it["size_mb"].as_f64().unwrap_or(0.0),
                it["age_days"].as_f64().unwrap_or(0.0),
                it["kind"].as_str().unwrap_or("?"),
                it["path"].as_str().unwrap_or("?")
            ));
        }
    }
    if let Some(scan) = d.get("scan") {
        let complete = scan["complete"].as_bool().unwrap_or(true);
        let unreadable = scan["unreadable_count"].as_u64().unwrap_or(0);
        if !complete || unreadable > 0 {
            s.push_str(&format!(
                "   Scan: {} files in {} ms{}{}\n",
                scan["files_scanned"],
                scan["duration_ms"],
                if complete {
                    ""
                } else {
                    ", stopped at its deadline (figures are lower bounds)"
                },
                if unreadable > 0 {
                    format!(", {unreadable} path(s) unreadable")
                } else {
                    String::new()
                }
            ));
        }
    }
}

/// A one-line progress indicator on a terminal while a disk scan runs; nothing when piped.
struct Progress {
    done: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start() -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { done, task: None };
        }
        let flag = done.clone();
        let task = tokio::spawn(async move {
            let p = tocsin_providers::local::disk::progress();
            let (files0, dirs0, bytes0) = (
                p.files.load(Ordering::Relaxed),
                p.dirs.load(Ordering::Relaxed),
                p.bytes.load(Ordering::Relaxed),
            );
            let spinner = ['|', '/', '-', '\\'];
            let mut shown = false;
            let mut tick = 0usize;
            while !flag.load(Ordering::Relaxed) {
                if p.active.load(Ordering::Relaxed) > 0 {
                    let files = p.files.load(Ordering::Relaxed).saturating_sub(files0);
                    let dirs = p.dirs.load(Ordering::Relaxed).saturating_sub(dirs0);
                    let gib = p.bytes.load(Ordering::Relaxed).saturating_sub(bytes0) as f64
                        / 1_073_741_824.0;
                    eprint!(
                        "\r{} scanning: {files} files, {dirs} directories, {gib:.2} GiB   ",
                        spinner[tick % spinner.len()]
                    );
                    shown = true;
                    tick += 1;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            if shown {
                eprint!("\r{:60}\r", "");
            }
        });
        Self {
            done,
            task: Some(task),
        }
    }

    async fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.task {
            let _ = t.await;
        }
    }
}
