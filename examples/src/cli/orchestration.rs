//! The orchestration commands (filled in by the orchestration work).

use std::process::ExitCode;

use crate::App;

/// The orchestration commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a pipeline.
    RunPipeline,
}

/// Runs one orchestration command.
pub async fn run(cmd: Command, _app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::RunPipeline => anyhow::bail!("this command is not available yet"),
    }
}
