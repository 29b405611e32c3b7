//! The library handle: storage, plugins and settings, shared by every stage and adapter.

use std::sync::Arc;

use crate::config::Config;
use crate::plugin::{BuildContext, Plugins};
use crate::store::Store;

/// Everything a tocsin process works with. Cheap to clone; build one per process.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use tocsin_core::{Config, Tocsin, plugin::Plugins, store::Store};
/// let store = Store::open("sqlite::memory:", 1).await?;
/// let tocsin = Tocsin::new(store, Plugins::from_inventory(), Config::default());
/// assert_eq!(tocsin.config().bind.port(), 8000);
/// # Ok::<(), tocsin_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Tocsin {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    plugins: Plugins,
    config: Config,
    hostname: String,
}

impl std::fmt::Debug for Tocsin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tocsin")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Tocsin {
    /// Bundles a store, the plugins to use and the settings.
    pub fn new(store: Store, plugins: Plugins, config: Config) -> Self {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            inner: Arc::new(Inner {
                store,
                plugins,
                config,
                hostname,
            }),
        }
    }

    /// Storage.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Registered plugins.
    pub fn plugins(&self) -> &Plugins {
        &self.inner.plugins
    }

    /// Settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The name of the machine this process runs on.
    pub fn hostname(&self) -> &str {
        &self.inner.hostname
    }

    /// What plugin `build` functions are given.
    pub fn build_context(&self) -> BuildContext {
        BuildContext {
            templates_dir: self.inner.config.templates_dir.clone(),
            environment: self.inner.config.environment.clone(),
        }
    }
}
