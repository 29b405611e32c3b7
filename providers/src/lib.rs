//! The ANALYZE stage of tocsin: recommendation providers and the library call that runs them.
//!
//! A provider turns an incident (or nothing: a general scan), its alerts and the latest check
//! results into [`Recommendation`](tocsin_core::domain::Recommendation)s. Every analysis is
//! recorded as an [`AnalysisRun`](tocsin_core::domain::AnalysisRun), failed ones included.
//!
//! ```no_run
//! # async fn demo(tocsin: tocsin_core::Tocsin) -> tocsin_core::Result<()> {
//! use tocsin_providers::{analyze, AnalyzeRequest};
//!
//! let outcome = analyze(&tocsin, AnalyzeRequest {
//!     incident_id: Some(42),
//!     provider: Some("openai".into()),
//!     config: serde_json::json!({"max_tokens": 800}),
//!     fallback: true, // use `local` if the endpoint fails, and record that it did
//!     ..AnalyzeRequest::default()
//! })
//! .await?;
//! for r in &outcome.recommendations {
//!     println!("[{}] {}", r.priority, r.title);
//! }
//! # Ok(()) }
//! ```
//!
//! # Who configures what
//! A request (the HTTP body, a pipeline node, the command line) chooses a provider and tunes it
//! with [`RequestOptions`]: `analyses`, `top_n`, `path`, `threshold_mb`, `old_days`, `model`,
//! `max_tokens`, `temperature`. Nothing else: endpoints, keys and scan roots come only from the
//! operator's configuration ([`OperatorConfig`]), read from the environment:
//!
//! | variable | provider | meaning |
//! |---|---|---|
//! | `OPENAI_API_KEY` | `openai` | the API key (a secret; never logged or stored) |
//! | `OPENAI_BASE_URL` | `openai` | the endpoint, default `https://api.openai.com/v1` (Ollama: `http://localhost:11434/v1`) |
//! | `OPENAI_MODEL` | `openai` | the default model, default `gpt-4o-mini` |
//! | `OPENAI_TIMEOUT` | `openai` | seconds per request, default 30 |
//! | `TOCSIN_ANALYZE_ROOTS` | `local` | comma-separated folders a disk scan may read; default `/` on the command line and in pipelines, **nothing** over HTTP |
//!
//! # Features
//! - `local` (default): evidence from this machine (processes by memory and CPU, a parallel disk
//!   scan) — [`local`].
//! - `openai` (default): any OpenAI-compatible chat completions endpoint — [`openai`].
//!
//! Both register themselves at link time; name this crate somewhere in your binary
//! (`use tocsin_providers as _;`) or call [`register_all`].

mod analyze;
mod options;
pub mod stage;
mod text;

#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "openai")]
pub mod openai;

pub use analyze::{
    AnalyzeOutcome, AnalyzeRequest, OperatorConfig, analyze, analyze_with, get_analysis_run,
};
pub use options::{AnalysisKind, RequestOptions, parse_number};

use tocsin_core::plugin::Plugins;

/// The provider used when a request names none.
pub const DEFAULT_PROVIDER: &str = "local";

/// Registers this crate's providers and the `intelligence` stage by hand, for embedders that build
/// [`Plugins`] themselves. Names already present (from [`Plugins::from_inventory`]) are left alone.
pub fn register_all(plugins: &mut Plugins) {
    #[cfg(feature = "local")]
    if !plugins.providers.names().contains(&local::DESCRIPTOR.name) {
        plugins.providers.register(&local::DESCRIPTOR);
    }
    #[cfg(feature = "openai")]
    if !plugins.providers.names().contains(&openai::DESCRIPTOR.name) {
        plugins.providers.register(&openai::DESCRIPTOR);
    }
    if !plugins.stages.names().contains(&stage::DESCRIPTOR.name) {
        plugins.stages.register(&stage::DESCRIPTOR);
    }
}
