//! The intelligence commands (filled in by the intelligence work).

use std::process::ExitCode;

use crate::App;

/// The intelligence commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Get recommendations.
    GetRecommendations,
}

/// Runs one intelligence command.
pub async fn run(cmd: Command, _app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::GetRecommendations => anyhow::bail!("this command is not available yet"),
    }
}
