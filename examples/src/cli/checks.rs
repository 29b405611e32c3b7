//! The checks commands (filled in by the checks work).

use std::process::ExitCode;

use crate::App;

/// The checks commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run health checks.
    CheckHealth,
}

/// Runs one checks command.
pub async fn run(cmd: Command, _app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::CheckHealth => anyhow::bail!("this command is not available yet"),
    }
}
