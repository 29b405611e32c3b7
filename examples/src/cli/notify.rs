//! The notify commands (filled in by the notify work).

use std::process::ExitCode;

use crate::App;

/// The notify commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List notify drivers.
    ListNotifyDrivers,
}

/// Runs one notify command.
pub async fn run(cmd: Command, _app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::ListNotifyDrivers => anyhow::bail!("this command is not available yet"),
    }
}
