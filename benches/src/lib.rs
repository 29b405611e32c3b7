//! tocsin's benchmarks. Nothing to link against: the criterion benches live in `benches/` and the
//! load harness in `load/`; figures and how to reproduce them are in `docs/performance.md`.
//!
//! ```text
//! cargo bench -p tocsin-benches --bench ingest     # parse per driver, parse + store on SQLite
//! cargo bench -p tocsin-benches --bench checkers   # one-shot and sampler-backed checks
//! cargo bench -p tocsin-benches --bench pipeline   # webhook-to-notification latency, runs/s
//! ```
