//! Pipeline commands: `run-pipeline`, `monitor-pipeline`, `definitions`, `worker`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tocsin_core::domain::{PipelineRun, PipelineStatus, StageExecution, StageStatus};
use tocsin_core::engine::{self, Definition, Engine, Submit};
use tocsin_core::store;

use crate::App;

/// Built-in sample payloads, one per source: the vendors' documented examples the ingest tests use.
const SAMPLES: &[(&str, &str)] = &[
    (
        "alertmanager",
        include_str!("../../../drivers/ingest/fixtures/alertmanager/firing-two-alerts.json"),
    ),
    (
        "grafana",
        include_str!("../../../drivers/ingest/fixtures/grafana/unified-firing.json"),
    ),
    (
        "pagerduty",
        include_str!("../../../drivers/ingest/fixtures/pagerduty/v3-incident-triggered.json"),
    ),
    (
        "datadog",
        include_str!("../../../drivers/ingest/fixtures/datadog/default-payload-triggered.json"),
    ),
    (
        "newrelic",
        include_str!("../../../drivers/ingest/fixtures/newrelic/workflow-activated.json"),
    ),
    (
        "opsgenie",
        include_str!("../../../drivers/ingest/fixtures/opsgenie/create.json"),
    ),
    (
        "zabbix",
        include_str!("../../../drivers/ingest/fixtures/zabbix/problem-macro-names.json"),
    ),
    (
        "generic",
        include_str!("../../../drivers/ingest/fixtures/generic/single-firing.json"),
    ),
];

/// The pipeline commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a pipeline end to end (ingest, check, analyse, notify) and show each stage.
    RunPipeline(RunArgs),
    /// Show pipeline run history, or one run stage by stage.
    MonitorPipeline(MonitorArgs),
    /// Manage stored pipeline definitions.
    #[command(subcommand)]
    Definitions(DefinitionsCommand),
    /// Run pipeline workers that take queued runs from the database until SIGINT/SIGTERM.
    Worker(WorkerArgs),
}

/// Options of `run-pipeline`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Use a built-in sample payload (alertmanager, grafana, pagerduty, datadog, newrelic,
    /// opsgenie, zabbix, generic); alone, `--sample` is alertmanager.
    #[arg(long, num_args = 0..=1, default_missing_value = "alertmanager", value_name = "SOURCE")]
    pub sample: Option<String>,
    /// The payload as inline JSON.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["sample", "file"])]
    pub payload: Option<String>,
    /// The payload from a file (`-` for standard input).
    #[arg(long, value_name = "PATH", conflicts_with = "sample")]
    pub file: Option<PathBuf>,
    /// The ingest driver (default: detected from the payload).
    #[arg(long)]
    pub driver: Option<String>,
    /// The source recorded on the run (default: the driver, or `cli`).
    #[arg(long)]
    pub source: Option<String>,
    /// The environment recorded on the run (default: TOCSIN_ENVIRONMENT).
    #[arg(long)]
    pub environment: Option<String>,
    /// Continue this trace id.
    #[arg(long)]
    pub trace_id: Option<String>,
    /// Run a stored (or built-in: default, checks-only) definition.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub definition: Option<String>,
    /// Run the definition in this JSON file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run the health checks only.
    #[arg(long, conflicts_with_all = ["definition", "config"])]
    pub checks_only: bool,
    /// Validate and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the finished run as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `monitor-pipeline`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Only runs in this status.
    #[arg(long)]
    pub status: Option<String>,
    /// One run, stage by stage.
    #[arg(long)]
    pub run_id: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `definitions` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DefinitionsCommand {
    /// Store (create or replace) a definition from a JSON file; validated first.
    Add {
        /// The definition file.
        file: PathBuf,
        /// Its name (default: the document's `name`, else the file name without extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// List stored definitions.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one definition.
    Show {
        /// Its name.
        name: String,
    },
    /// Validate a stored definition; exit 1 with every problem when it is invalid.
    Validate {
        /// Its name.
        name: String,
    },
    /// Disable a definition (it can no longer run).
    Disable {
        /// Its name.
        name: String,
    },
    /// Enable a definition again.
    Enable {
        /// Its name.
        name: String,
    },
}

/// Options of `worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Concurrent workers in this process (default TOCSIN_WORKERS).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Seconds a lease outlives a node's deadline; a dead worker's run is taken over after it.
    #[arg(long, default_value_t = 30)]
    pub lease_margin: u64,
}

/// Runs one pipeline command.
pub async fn run(cmd: Command, app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::RunPipeline(args) => run_pipeline(args, app).await,
        Command::MonitorPipeline(args) => monitor(args, app).await,
        Command::Definitions(c) => definitions(c, app).await,
        Command::Worker(args) => worker(args, app).await,
    }
}

fn read_payload(args: &RunArgs) -> anyhow::Result<(Value, Option<String>)> {
    if let Some(p) = &args.payload {
        return Ok((
            serde_json::from_str(p).context("--payload is not valid JSON")?,
            args.driver.clone(),
        ));
    }
    if let Some(path) = &args.file {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
        };
        return Ok((
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?,
            args.driver.clone(),
        ));
    }
    if args.checks_only {
        return Ok((json!({}), None));
    }
    let source = args.sample.as_deref().unwrap_or("alertmanager");
    let Some((_, text)) = SAMPLES.iter().find(|(s, _)| *s == source) else {
        let known: Vec<_> = SAMPLES.iter().map(|(s, _)| *s).collect();
        bail!("no sample for {source:?}; samples: {}", known.join(", "));
    };
    Ok((
        serde_json::from_str(text).context("built-in sample")?,
        Some(args.driver.clone().unwrap_or_else(|| source.to_owned())),
    ))
}

fn read_definition(path: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

async fn run_pipeline(args: RunArgs, app: &App) -> anyhow::Result<ExitCode> {
    let (payload, driver) = read_payload(&args)?;
    let plugins = app.plugins();
    let mut definition: Option<Definition> = match &args.config {
        Some(path) => Some(
            Definition::parse(&read_definition(path)?)
                .map_err(|p| anyhow::anyhow!(engine::definition::describe(&p)))?,
        ),
        None if args.checks_only => Some(engine::checks_only()),
        None => None,
    };
    if args.dry_run {
        let def = match (&definition, &args.definition) {
            (Some(d), _) => d.clone(),
            (None, Some(name)) if !engine::BUILTIN_DEFINITIONS.contains(&name.as_str()) => {
                let tocsin = app.tocsin().await?;
                let n = name.clone();
                tocsin
                    .store()
                    .run(move |c| engine::resolve_definition(c, Some(&n)))
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message()))?
            }
            (None, Some(name)) if name == "checks-only" => engine::checks_only(),
            (None, _) => Definition::default_pipeline(),
        };
        let problems = def.validate(&plugins);
        let has_ingest = def.nodes.iter().any(|n| n.kind == "ingest");
        let detected = if has_ingest {
            let d = match &driver {
                Some(name) => plugins
                    .ingestors
                    .get(name)
                    .map_err(|e| anyhow::anyhow!("{}", e.message()))?,
                None => tocsin_ingest::detect(&plugins, &payload)
                    .map_err(|e| anyhow::anyhow!("{}", e.message()))?,
            };
            let parsed = tocsin_ingest::parse_with(d, &payload)
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            Some((d.name, parsed.alerts.len()))
        } else {
            None
        };
        let plan = json!({
            "dry_run": true,
            "valid": problems.is_empty(),
            "problems": problems,
            "driver": detected.map(|d| d.0),
            "alerts": detected.map(|d| d.1),
            "nodes": def.execution_order().iter().map(|n| json!({"id": n.id, "type": n.kind, "required": n.required})).collect::<Vec<_>>(),
        });
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            println!("Plan (dry run, nothing written):");
            if let Some((d, n)) = detected {
                println!("  payload: {d} driver, {n} alert(s)");
            }
            for (i, n) in def.execution_order().iter().enumerate() {
                println!(
                    "  {}. {} ({}){}",
                    i + 1,
                    n.id,
                    n.kind,
                    if n.required { "" } else { ", optional" }
                );
            }
            for p in &problems {
                println!("  problem: {p}");
            }
        }
        return Ok(if problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let tocsin = app.tocsin().await?;
    // A first run shows what would be sent: with no channel configured, notify prints to the console.
    if definition.is_none() && args.definition.is_none() {
        let channels = tocsin
            .store()
            .run(|c| store::list_channels(c, true))
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        if channels.is_empty() {
            let mut d = Definition::default_pipeline();
            for n in d.nodes.iter_mut().filter(|n| n.kind == "notify") {
                // With --json, standard output carries the JSON document alone.
                let stream = if args.json { "stderr" } else { "stdout" };
                n.config = json!({"driver": "console", "config": {"stream": stream}});
            }
            definition = Some(d);
        }
    }
    let engine = Engine::new(tocsin.clone());
    let submit = Submit {
        definition: args.definition.clone(),
        inline_definition: definition,
        payload,
        driver: driver.clone(),
        source: args
            .source
            .clone()
            .or(driver)
            .unwrap_or_else(|| "cli".to_owned()),
        environment: args.environment.clone(),
        trace_id: args.trace_id.clone(),
        ..Submit::default()
    };
    let queued = engine
        .submit(submit)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let show = !args.json;
    if show {
        println!("Pipeline run {} (trace {})", queued.run_id, queued.trace_id);
    }
    let driving = {
        let engine = engine.clone();
        let id = queued.run_id.clone();
        tokio::spawn(async move { engine.drive(&id).await })
    };
    let mut shown = 0usize;
    let pk = queued.id;
    loop {
        let finished = driving.is_finished();
        if show {
            let execs = tocsin
                .store()
                .run(move |c| store::list_stage_executions(c, pk))
                .await
                .unwrap_or_default();
            for e in execs
                .iter()
                .skip(shown)
                .take_while(|e| e.status != StageStatus::Running)
            {
                print_stage(e);
                shown += 1;
            }
        }
        if finished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = driving
        .await
        .context("pipeline task")?
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let execs = tocsin
        .store()
        .run(move |c| store::list_stage_executions(c, pk))
        .await
        .unwrap_or_default();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"run": run, "stages": execs}))?
        );
    } else {
        for e in execs.iter().skip(shown) {
            print_stage(e);
        }
        print_summary(&run, &execs);
    }
    Ok(if run.status == PipelineStatus::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn paint(text: &str, code: &str) -> String {
    if std::io::stdout().is_terminal() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn print_stage(e: &StageExecution) {
    let (mark, code) = match e.status {
        StageStatus::Succeeded => ("ok", "32"),
        StageStatus::Skipped => ("skipped", "33"),
        StageStatus::Failed => ("failed", "31"),
        _ => ("…", "0"),
    };
    let ms = e
        .duration_ms
        .map(|d| format!(" {d:.0} ms"))
        .unwrap_or_default();
    let extra = e
        .skip_reason
        .clone()
        .or_else(|| e.error_message.clone())
        .map(|m| format!(" - {m}"))
        .unwrap_or_default();
    println!(
        "  [{}] {} ({}, attempt {}){ms}{extra}",
        paint(mark, code),
        e.node_id,
        e.stage,
        e.attempt
    );
}

fn print_summary(run: &PipelineRun, execs: &[StageExecution]) {
    let ok = execs
        .iter()
        .filter(|e| e.status == StageStatus::Succeeded)
        .count();
    let total = run
        .total_duration_ms
        .map(|d| format!(" in {d:.0} ms"))
        .unwrap_or_default();
    println!(
        "Run {} {}{total}: {ok} node(s) succeeded, incident {}.",
        run.run_id,
        paint(
            run.status.as_str(),
            if run.status == PipelineStatus::Failed {
                "31"
            } else {
                "32"
            }
        ),
        run.incident_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "none".into())
    );
    if let Some(err) = run
        .last_error_message
        .as_ref()
        .filter(|_| run.status == PipelineStatus::Failed)
    {
        println!("Error: {err}");
    }
}

async fn monitor(args: MonitorArgs, app: &App) -> anyhow::Result<ExitCode> {
    let tocsin = app.tocsin().await?;
    if let Some(id) = args.run_id {
        let (run, execs) = tocsin
            .store()
            .run(move |c| {
                let run = store::get_pipeline_run(c, &id)?;
                let execs = store::list_stage_executions(c, run.id)?;
                Ok((run, execs))
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"run": run, "stages": execs}))?
            );
        } else {
            println!(
                "Run {} ({}) trace {} source {} definition {}",
                run.run_id,
                run.status,
                run.trace_id,
                run.source,
                run.definition_name.as_deref().unwrap_or("default")
            );
            for e in &execs {
                print_stage(e);
            }
            print_summary(&run, &execs);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let status = args
        .status
        .as_deref()
        .map(str::parse::<PipelineStatus>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--status: {}", e.message()))?;
    let filter = store::RunFilter {
        status,
        source: None,
        limit: args.limit,
    };
    let runs = tocsin
        .store()
        .run(move |c| store::list_pipeline_runs(c, &filter))
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        println!("No pipeline runs.");
    } else {
        println!(
            "{:<32}  {:<10}  {:<14}  {:<12}  {:>9}  created",
            "run id", "status", "stage", "source", "ms"
        );
        for r in &runs {
            println!(
                "{:<32}  {:<10}  {:<14}  {:<12}  {:>9}  {}",
                r.run_id,
                r.status,
                r.current_stage.as_deref().unwrap_or("-"),
                r.source,
                r.total_duration_ms
                    .map(|d| format!("{d:.0}"))
                    .unwrap_or_else(|| "-".into()),
                r.created_at.format("%Y-%m-%d %H:%M:%S")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn definitions(cmd: DefinitionsCommand, app: &App) -> anyhow::Result<ExitCode> {
    let tocsin = app.tocsin().await?;
    let plugins = tocsin.plugins().clone();
    let err = |e: tocsin_core::Error| anyhow::anyhow!("{}", e.message());
    match cmd {
        DefinitionsCommand::Add { file, name } => {
            let doc = read_definition(&file)?;
            let name = name
                .or_else(|| doc.get("name").and_then(Value::as_str).map(str::to_owned))
                .or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .context("cannot tell the definition's name; pass --name")?;
            let mut body = doc.clone();
            if let Some(o) = body.as_object_mut() {
                o.remove("name");
                o.remove("tags");
            }
            let def = Definition::parse(&body).map_err(|p| {
                anyhow::anyhow!("invalid definition: {}", engine::definition::describe(&p))
            })?;
            let problems = def.validate(&plugins);
            if !problems.is_empty() {
                bail!(
                    "invalid definition: {}",
                    engine::definition::describe(&problems)
                );
            }
            let tags: Vec<String> = doc
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let desc = def.description.clone();
            let stored = tocsin
                .store()
                .write(move |c| store::upsert_definition(c, &name, &desc, &body, &tags))
                .await
                .map_err(err)?;
            println!(
                "Stored definition {:?} (version {}).",
                stored.name, stored.version
            );
        }
        DefinitionsCommand::List { json } => {
            let defs = tocsin
                .store()
                .run(store::list_definitions)
                .await
                .map_err(err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&defs)?);
            } else if defs.is_empty() {
                println!(
                    "No stored definitions (built-in: {}).",
                    engine::BUILTIN_DEFINITIONS.join(", ")
                );
            } else {
                for d in defs {
                    println!(
                        "{:<24} v{:<3} {:<8} {}",
                        d.name,
                        d.version,
                        if d.active { "active" } else { "disabled" },
                        d.description
                    );
                }
            }
        }
        DefinitionsCommand::Show { name } => {
            let d = tocsin
                .store()
                .run(move |c| store::get_definition(c, &name))
                .await
                .map_err(err)?;
            println!("{}", serde_json::to_string_pretty(&d)?);
        }
        DefinitionsCommand::Validate { name } => {
            let d = tocsin
                .store()
                .run(move |c| store::get_definition(c, &name))
                .await
                .map_err(err)?;
            let problems = match Definition::parse(&d.config) {
                Ok(def) => def.validate(&plugins),
                Err(p) => p,
            };
            if problems.is_empty() {
                println!("Definition {:?} is valid.", d.name);
            } else {
                for p in &problems {
                    println!("{p}");
                }
                return Ok(ExitCode::from(1));
            }
        }
        DefinitionsCommand::Disable { name } => {
            let d = tocsin
                .store()
                .write(move |c| store::set_definition_active(c, &name, false))
                .await
                .map_err(err)?;
            println!("Definition {:?} disabled.", d.name);
        }
        DefinitionsCommand::Enable { name } => {
            let d = tocsin
                .store()
                .write(move |c| store::set_definition_active(c, &name, true))
                .await
                .map_err(err)?;
            println!("Definition {:?} enabled.", d.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn worker(args: WorkerArgs, app: &App) -> anyhow::Result<ExitCode> {
    let tocsin = app.tocsin().await?;
    let n = args.concurrency.unwrap_or(app.config.workers).max(1);
    let engine = crate::cli::serve::engine(app, tocsin)
        .await?
        .with_lease_margin(Duration::from_secs(args.lease_margin));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handles = engine.spawn_workers(n, rx);
    tracing::info!(
        workers = n,
        worker = engine.worker_id(),
        "tocsin worker is taking runs from the queue."
    );
    crate::cli::serve::shutdown_signal().await;
    let _ = tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    tracing::info!("tocsin worker stopped cleanly.");
    Ok(ExitCode::SUCCESS)
}
