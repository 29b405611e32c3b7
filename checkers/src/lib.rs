//! The CHECK stage of tocsin: health checks of the machine it runs on, as `Checker` plugins.
//!
//! Five checkers, one module and one cargo feature each (all on by default): [`cpu`], [`memory`],
//! [`disk`], [`network`] and [`process`]. Each returns a status (`ok`, `warning`, `critical`,
//! `unknown`), a one-line message, metrics and, when it could not measure, an error; none blocks
//! the async executor, panics, or takes the others down. Thresholds and options are per checker,
//! parsed from JSON (unknown keys are errors) without I/O.
//!
//! Three ways in:
//! - the library: [`run_checks`] (records a `CheckRun` per checker) or [`check_only`] (no
//!   database), both honouring `CHECKERS_SKIP_ALL` / `CHECKERS_SKIP`;
//! - the pipeline: the `context` node type ([`stage`]);
//! - alerts: [`alerts::plan_alerts`] turns results into alerts for the INGEST write path.
//!
//! A long-running process starts a [`sampler`] so the `cpu` checker answers at once, and may run
//! checks on a schedule ([`spawn_scheduled_checks`]).
//!
//! ```
//! use tocsin_checkers::{CheckRequest, check_only};
//! use tocsin_core::{Config, plugin::Plugins};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let plugins = Plugins::from_inventory();
//! let options = serde_json::json!({"disk": {"paths": ["/"]}});
//! let req = CheckRequest::new(&["memory".to_owned(), "disk".to_owned()], &options);
//! let results = check_only(&plugins, &Config::default(), &Default::default(), &req).await?;
//! assert_eq!(results.len(), 2);
//! for r in &results {
//!     println!("{} {}: {}", r.status, r.checker, r.message);
//! }
//! # Ok::<(), tocsin_core::Error>(()) }).unwrap();
//! ```
//!
//! # Features
//! - `cpu`: CPU usage and load averages, and the background [`sampler`].
//! - `memory`: memory and swap usage.
//! - `disk`: space and inode usage per path (statvfs).
//! - `network`: TCP connect / ICMP echo reachability.
//! - `process`: named processes running.

pub mod alerts;
pub mod common;
pub mod run;
pub mod schedule;
pub mod stage;

#[cfg(feature = "cpu")]
pub mod cpu;
#[cfg(feature = "disk")]
pub mod disk;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "network")]
pub mod network;
#[cfg(feature = "process")]
pub mod process;
#[cfg(feature = "cpu")]
pub mod sampler;

pub use alerts::{
    ALERT_SOURCE, AlertAction, PlannedAlert, alerts_from_checks, alerts_to_ingest, plan_alerts,
};
pub use run::{
    CheckRequest, Summary, check_only, run_checks, run_request, store_results, summarize,
};
#[cfg(feature = "cpu")]
pub use sampler::{SamplerConfig, SamplerHandle, start_sampler};
pub use schedule::{ScheduleConfig, ScheduledChecks, spawn_scheduled_checks};

use tocsin_core::plugin::{CheckerDescriptor, Plugins};

/// Every checker this build of the crate contains, sorted by name.
pub fn checker_descriptors() -> Vec<&'static CheckerDescriptor> {
    [
        #[cfg(feature = "cpu")]
        &cpu::REGISTRATION,
        #[cfg(feature = "disk")]
        &disk::REGISTRATION,
        #[cfg(feature = "memory")]
        &memory::REGISTRATION,
        #[cfg(feature = "network")]
        &network::REGISTRATION,
        #[cfg(feature = "process")]
        &process::REGISTRATION,
    ]
    .into_iter()
    .collect()
}

/// Registers this crate's checkers and the `context` stage by hand, for embedders who cannot rely
/// on link-time registration. A name already registered (by the inventory) is left as it is, so
/// calling this after [`Plugins::from_inventory`] is harmless.
pub fn register_all(plugins: &mut Plugins) {
    for d in checker_descriptors() {
        if plugins.checkers.get(d.name).is_err() {
            plugins.checkers.register(d);
        }
    }
    if plugins.stages.get(stage::NAME).is_err() {
        plugins.stages.register(&stage::REGISTRATION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enabled_checker_is_registered_once_with_a_parsing_example() {
        let plugins = Plugins::from_inventory();
        assert!(
            plugins.checkers.duplicates().is_empty(),
            "{:?}",
            plugins.checkers.duplicates()
        );
        for d in checker_descriptors() {
            let found = plugins.checkers.get(d.name).unwrap();
            let example: serde_json::Value = serde_json::from_str(found.config_example).unwrap();
            (found.build)(&example, &Default::default())
                .unwrap_or_else(|e| panic!("{}: example does not build: {e}", d.name));
        }
        assert_eq!(
            plugins.checkers.names(),
            vec!["cpu", "disk", "memory", "network", "process"]
        );
        let stage = plugins.stages.get("context").unwrap();
        let example: serde_json::Value = serde_json::from_str(stage.config_example).unwrap();
        assert!((stage.build)(&example, &Default::default()).is_ok());
    }

    #[test]
    fn register_all_fills_an_empty_registry_and_leaves_a_full_one_alone() {
        let mut empty = Plugins::empty();
        register_all(&mut empty);
        assert_eq!(
            empty.checkers.names(),
            vec!["cpu", "disk", "memory", "network", "process"]
        );
        assert!(empty.stages.get("context").is_ok());
        let mut full = Plugins::from_inventory();
        register_all(&mut full);
        assert!(full.checkers.duplicates().is_empty());
        assert!(full.stages.duplicates().is_empty());
    }
}
