//! The NOTIFY stage of tocsin: render a notification and deliver it through
//! [`NotifyDriver`](tocsin_core::plugin::NotifyDriver) plugins, recording every attempt.
//!
//! - Drivers, one module and one cargo feature each (all on by default): [`email`] (SMTP),
//!   [`slack`] (incoming webhook, Block Kit), [`pagerduty`] (Events API v2), [`webhook`] (generic,
//!   HMAC-signed), [`console`] (standard output). They register themselves with
//!   [`tocsin_core::register_notify_driver!`]; [`register_all`] does it by hand for embedders.
//! - [`template`]: minijinja templates with a sandbox, and the documented template context.
//! - [`notify`] / [`send_with`]: which channels, retries ([`retry`], in one place for every
//!   driver), delivery records, `NOTIFY_SKIP_ALL`; channel helpers ([`create_channel`]...); the
//!   outbound [`guard`] for destinations that come from request bodies.
//! - [`request`]: sends described by request bodies (`/notify/send/`, `/notify/batch/`).
//! - The `notify` pipeline stage ([`stage`]).
//!
//! # Secrets
//! Secret config values (`password`, `webhook_url`, `routing_key`, `hmac_secret`, webhook
//! `headers`) are [`tocsin_core::Secret`]s inside the drivers: never in a log line, an error or a
//! delivery record; [`redacted_channel`] hides them when a channel is shown. A stored channel can
//! keep them out of the database altogether with `${env:NAME}` values, resolved when the driver
//! is built (`{"webhook_url": "${env:SLACK_WEBHOOK_URL}"}`); request bodies may not use them.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tocsin_core::{Config, Tocsin, plugin::{Notification, Plugins}, store::Store};
//! use tocsin_notify as _; // links the drivers so the registry sees them
//!
//! let store = Store::open("sqlite::memory:", 1).await?;
//! let tocsin = Tocsin::new(store, Plugins::from_inventory(), Config::default());
//! tocsin_notify::create_channel(&tocsin, "ops-console", "console", &serde_json::json!({}), "first run").await?;
//! let n = Notification { title: "Disk almost full on web-1".into(), ..Default::default() };
//! let outcome = tocsin_notify::notify(&tocsin, &n, None).await?;
//! assert_eq!(outcome.notified, 1);
//! # Ok::<(), tocsin_core::Error>(()) }).unwrap();
//! ```
//!
//! # Features
//! `email`, `slack`, `pagerduty`, `webhook`, `console` (default: all). The HTTP drivers share one
//! reqwest client setup (rustls with aws-lc-rs, the same TLS stack as lettre here).

#[cfg(feature = "console")]
pub mod console;
#[cfg(feature = "email")]
pub mod email;
#[cfg(feature = "pagerduty")]
pub mod pagerduty;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "webhook")]
pub mod webhook;

mod api;
pub mod guard;
#[cfg(feature = "http")]
pub mod http;
pub mod request;
pub mod retry;
pub mod stage;
pub mod template;

use std::time::Duration;

pub use api::*;
pub use guard::OutboundGuard;
pub use request::{BatchItem, BatchOutcome, SendRequest, send_batch, send_request};
pub use retry::{RetryPolicy, Retrying};
use tocsin_core::plugin::{NotifyDriverDescriptor, Plugins, StageDescriptor};
use tocsin_core::{Error, Result};

/// Registers every driver compiled in, and the `notify` stage, into `plugins` (for embedders who
/// cannot rely on link-time registration). Names already present are left alone, so calling it
/// on [`Plugins::from_inventory`] adds nothing twice.
pub fn register_all(plugins: &mut Plugins) {
    #[cfg(feature = "console")]
    static CONSOLE: NotifyDriverDescriptor = console::DESCRIPTOR;
    #[cfg(feature = "email")]
    static EMAIL: NotifyDriverDescriptor = email::DESCRIPTOR;
    #[cfg(feature = "pagerduty")]
    static PAGERDUTY: NotifyDriverDescriptor = pagerduty::DESCRIPTOR;
    #[cfg(feature = "slack")]
    static SLACK: NotifyDriverDescriptor = slack::DESCRIPTOR;
    #[cfg(feature = "webhook")]
    static WEBHOOK: NotifyDriverDescriptor = webhook::DESCRIPTOR;
    static STAGE: StageDescriptor = stage::DESCRIPTOR;
    let drivers: &[&'static NotifyDriverDescriptor] = &[
        #[cfg(feature = "console")]
        &CONSOLE,
        #[cfg(feature = "email")]
        &EMAIL,
        #[cfg(feature = "pagerduty")]
        &PAGERDUTY,
        #[cfg(feature = "slack")]
        &SLACK,
        #[cfg(feature = "webhook")]
        &WEBHOOK,
    ];
    for d in drivers {
        if !plugins.notifiers.names().contains(&d.name) {
            plugins.notifiers.register(d);
        }
    }
    if !plugins.stages.names().contains(&STAGE.name) {
        plugins.stages.register(&STAGE);
    }
}

#[cfg_attr(
    not(any(feature = "console", feature = "email", feature = "http")),
    allow(dead_code)
)]
/// Parses a driver config into its serde struct; the error names the driver and the field.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(
    driver: &str,
    config: &serde_json::Value,
) -> Result<T> {
    if !config.is_object() {
        return Err(Error::invalid_config(format!(
            "{driver}: config must be a JSON object"
        )));
    }
    serde_json::from_value(config.clone()).map_err(|e| {
        let msg = e.to_string();
        // serde names missing and unknown fields but not a field of the wrong type: find the key
        // whose removal changes the error, and name it.
        if !msg.contains("field `")
            && let Some(map) = config.as_object()
        {
            for key in map.keys() {
                let mut without = map.clone();
                without.remove(key);
                let other = serde_json::from_value::<T>(serde_json::Value::Object(without))
                    .err()
                    .map(|e| e.to_string());
                if other.as_deref() != Some(msg.as_str()) {
                    return Error::invalid_config(format!("{key}: {msg}"));
                }
            }
        }
        Error::invalid_config(format!("{driver}: {msg}"))
    })
}

#[cfg_attr(not(any(feature = "email", feature = "http")), allow(dead_code))]
/// The optional `timeout_secs` of a driver (default 10 s, 0.1 to 300).
pub(crate) fn timeout_secs(v: Option<f64>) -> Result<Duration> {
    match v {
        None => Ok(Duration::from_secs(10)),
        Some(s) if (0.1..=300.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(Error::invalid_config(format!(
            "timeout_secs: expected seconds between 0.1 and 300, got {s}"
        ))),
    }
}

/// A URL with its path and query hidden (they may carry a token): `https://hooks.slack.com/…`.
pub fn redacted_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => tocsin_core::secret::REDACTED.to_owned(),
    }
}
