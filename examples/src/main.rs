//! `tocsin`: the command-line program over the tocsin library.
//!
//! `tocsin serve` runs the HTTP API; `tocsin migrate` brings the database schema up to date; the
//! management commands of the Django original are subcommands in kebab-case (`check-health`,
//! `run-pipeline`, ...). Configuration comes from the environment (`TOCSIN_DATABASE_URL`,
//! `TOCSIN_BIND`, `TOCSIN_API_KEYS`, ...) and an optional `--config FILE` (TOML) that the environment
//! overrides.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tocsin_core::plugin::Plugins;
use tocsin_core::store::Store;
use tocsin_core::{Config, Tocsin};

// Name every plugin crate so the linker keeps their registrations.
use tocsin_checkers as _;
use tocsin_ingest as _;
use tocsin_notify as _;
use tocsin_providers as _;

/// jemalloc rather than glibc's allocator. Under load the webhook's values are allocated on the
/// database writer thread and freed on the runtime's, and glibc then takes the writer's arena lock on
/// every free that its thread cache cannot hold: about a sixth of the runtime threads' time went to
/// `malloc`, `free` and waiting for that lock (issue 8; `docs/performance.md`, ninth session). Its
/// dirty pages are returned after 200 ms (`.cargo/config.toml`), which keeps memory flat.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Alerts into action: ingest, check, analyse, notify.
#[derive(Debug, Parser)]
#[command(name = "tocsin", version, about, propagate_version = true)]
struct Cli {
    /// A TOML config file; environment variables override it. Give it before the command.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Serve the HTTP API (runs migrations first).
    Serve(cli::serve::ServeArgs),
    #[command(flatten)]
    Ingest(cli::ingest::Command),
    #[command(flatten)]
    Checks(cli::checks::Command),
    #[command(flatten)]
    Intelligence(cli::intelligence::Command),
    #[command(flatten)]
    Notify(cli::notify::Command),
    #[command(flatten)]
    Orchestration(cli::orchestration::Command),
}

/// What every command is given: the settings, and the library handle on demand (commands such
/// as `--dry-run` never open the database).
pub struct App {
    /// Settings.
    pub config: Config,
}

impl App {
    /// Opens the store (migrating it) and builds the library handle with every linked plugin.
    pub async fn tocsin(&self) -> anyhow::Result<Tocsin> {
        let store = Store::open(&self.config.database_url, self.config.db_pool_size)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        Ok(Tocsin::new(store, self.plugins(), self.config.clone()))
    }

    /// Every linked plugin.
    pub fn plugins(&self) -> Plugins {
        Plugins::from_inventory()
    }
}

/// Logs on stderr. Servers log at `info` by default; one-shot commands at `warn`, so their own
/// output stays readable. `RUST_LOG` (a level name) overrides both.
fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    let level = match filter.to_ascii_lowercase().as_str() {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        "error" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    // Logs go to stderr so that `--json` output on stdout stays machine-readable.
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = matches!(
        cli.command,
        Command::Serve(_) | Command::Orchestration(cli::orchestration::Command::Worker(_))
    );
    init_tracing(if server { "info" } else { "warn" });
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tocsin: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tocsin: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let app = App { config };
    match runtime.block_on(run(cli.command, &app)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tocsin: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command, app: &App) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate => {
            let store = Store::connect(&app.config.database_url, 1)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            let n = store
                .migrate()
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))
                .context("migrate")?;
            println!("Applied {n} migration(s); the schema is up to date.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => cli::serve::run(args, app).await,
        Command::Ingest(c) => cli::ingest::run(c, app).await,
        Command::Checks(c) => cli::checks::run(c, app).await,
        Command::Intelligence(c) => cli::intelligence::run(c, app).await,
        Command::Notify(c) => cli::notify::run(c, app).await,
        Command::Orchestration(c) => cli::orchestration::run(c, app).await,
    }
}
