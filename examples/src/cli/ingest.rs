//! The ingest commands (filled in by the ingest work).

use std::process::ExitCode;

use crate::App;

/// The ingest commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Parse (and store) one webhook payload.
    Ingest,
}

/// Runs one ingest command.
pub async fn run(cmd: Command, _app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Ingest => anyhow::bail!("this command is not available yet"),
    }
}
