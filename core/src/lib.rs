//! The small, stable centre of tocsin: domain types, plugin traits and their registries, the error
//! type, configuration and storage.
//!
//! Depend on `tocsin-core` to write a plugin (an ingest driver, a checker, a provider, a notify
//! driver or a pipeline stage) or to embed tocsin's storage and pipeline in your own service. It
//! registers no plugin itself: the driver crates do, through the `register_*!` macros exported
//! here, and so can yours.
//!
//! ```
//! use tocsin_core::domain::Severity;
//! use tocsin_core::plugin::Plugins;
//! use tocsin_core::store::{self, NewIncident, Store};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // The embedded default: SQLite, here in memory.
//! let store = Store::open("sqlite::memory:", 1).await?;
//! let incident = store
//!     .write(|c| {
//!         store::insert_incident(c, NewIncident {
//!             title: "HighMemory on web-1".into(),
//!             severity: Severity::Critical,
//!             description: String::new(),
//!             group_key: "HighMemory|web-1".into(),
//!             metadata: serde_json::json!({}),
//!         })
//!     })
//!     .await?;
//! assert_eq!(incident.status.as_str(), "open");
//!
//! // Every plugin linked into this binary, sorted by name.
//! let plugins = Plugins::from_inventory();
//! assert!(plugins.ingestors.get("no-such-driver").is_err());
//! # Ok::<(), tocsin_core::Error>(()) }).unwrap();
//! ```
//!
//! # Features
//! - `bundled-libpq`: compile libpq in (no TLS) for machines without `libpq-dev`.
//! - `bundled-libpq-tls`: compile libpq in with TLS (links OpenSSL).
//! - `testing`: isolated test databases for every backend ([`store::testing`]).

pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod plugin;
pub mod runtime;
pub mod secret;
pub mod store;

pub use config::{ApiKey, Config, ConfigError};
pub use error::{Error, ErrorKind, Result, Retry};
pub use runtime::Tocsin;
pub use secret::Secret;

/// Re-exported so the `register_*!` macros work in crates that do not depend on inventory.
#[doc(hidden)]
pub use inventory as __inventory;

/// The version of tocsin.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
