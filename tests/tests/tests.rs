#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Cross-crate integration tests, one module per area.

mod pipeline;
mod registry;
