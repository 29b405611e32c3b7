//! Cross-crate integration tests, one module per area.

mod registry;
