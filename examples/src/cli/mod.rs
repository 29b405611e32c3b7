//! One module per area; each has a `Command` enum flattened into the top-level commands.

pub mod checks;
pub mod ingest;
pub mod intelligence;
pub mod notify;
pub mod orchestration;
pub mod serve;
