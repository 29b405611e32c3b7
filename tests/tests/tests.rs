#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Cross-crate integration tests, one module per area.

mod browser;
mod console_e2e;
mod pipeline;
mod registry;
