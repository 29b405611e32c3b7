//! Configuration: an optional TOML file, overridden by the environment.
//!
//! Every value is checked at start-up; a bad one is an error that names the variable (or file
//! key) and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

/// A configuration problem, naming the variable or file and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The config file is not valid TOML for tocsin.
    #[error("invalid config file {}: {reason}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A variable has a bad value.
    #[error("invalid {name}={value:?}: expected {expected}")]
    InvalidValue {
        /// Variable (or file key).
        name: String,
        /// The value given (never a secret).
        value: String,
        /// What was expected.
        expected: String,
    },
}

/// The settings of a tocsin process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `TOCSIN_DATABASE_URL` / `database_url`: `sqlite://PATH`, `sqlite::memory:` or
    /// `postgres://...`. Default `sqlite://tocsin.db`.
    pub database_url: String,
    /// `TOCSIN_BIND` / `bind`: listen address. Default `127.0.0.1:8000`.
    pub bind: SocketAddr,
    /// `TOCSIN_API_KEYS` / `api_keys`: comma-separated keys, each optionally limited to path
    /// prefixes (`KEY@/alerts/+/notify/`); empty disables authentication.
    pub api_keys: Vec<ApiKey>,
    /// `TOCSIN_ENVIRONMENT` / `environment`: free-form name recorded on runs. Default `production`.
    pub environment: String,
    /// `CHECKERS_SKIP_ALL` / `checkers_skip_all`: skip every checker. Default false.
    pub checkers_skip_all: bool,
    /// `CHECKERS_SKIP` / `checkers_skip`: checker names to skip. Default none.
    pub checkers_skip: Vec<String>,
    /// `NOTIFY_SKIP_ALL` / `notify_skip_all`: skip every delivery. Default false.
    pub notify_skip_all: bool,
    /// `TOCSIN_BODY_LIMIT` / `body_limit`: largest accepted request body in bytes. Default 1 MiB.
    pub body_limit: usize,
    /// `TOCSIN_ALLOW_PUBLIC_BIND` / `allow_public_bind`: serve on a non-loopback address without
    /// API keys. Default false.
    pub allow_public_bind: bool,
    /// `TOCSIN_TEMPLATES_DIR` / `templates_dir`: folder of notification templates. Default none.
    pub templates_dir: Option<PathBuf>,
    /// `TOCSIN_DB_POOL_SIZE` / `db_pool_size`: storage connections. Default 8.
    pub db_pool_size: u32,
    /// `TOCSIN_TASKS_EAGER` / `tasks_eager`: run pipelines inline instead of through the queue.
    /// Default false.
    pub tasks_eager: bool,
    /// `TOCSIN_WORKERS` / `workers`: pipeline workers inside `tocsin serve`. Default 2.
    pub workers: u32,
    /// `TOCSIN_BROKER_URL` / `broker_url`: optional `redis://` URL; run ids are then also
    /// delivered over a Redis Stream. Default none (the database queue alone).
    pub broker_url: Option<String>,
    /// `TOCSIN_SECRET_KEY` / `secret_key`: the key that signs the web console's session cookies
    /// and CSRF tokens (at least 32 characters). Default none: a random key per process, so
    /// console sessions end when the process restarts.
    pub secret_key: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://tocsin.db".to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            api_keys: Vec::new(),
            environment: "production".to_owned(),
            checkers_skip_all: false,
            checkers_skip: Vec::new(),
            notify_skip_all: false,
            body_limit: 1024 * 1024,
            allow_public_bind: false,
            templates_dir: None,
            db_pool_size: 8,
            tasks_eager: false,
            workers: 2,
            broker_url: None,
            secret_key: None,
        }
    }
}

/// An API key and the path prefixes it may call (empty: every path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key.
    pub key: Secret,
    /// Path prefixes this key may call; empty means all.
    pub allowed_prefixes: Vec<String>,
}

impl ApiKey {
    /// Parses `KEY` or `KEY@/prefix+/other-prefix`.
    pub fn parse(spec: &str) -> Self {
        match spec.split_once('@') {
            Some((key, prefixes)) => Self {
                key: Secret::new(key.trim()),
                allowed_prefixes: prefixes
                    .split('+')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            None => Self {
                key: Secret::new(spec.trim()),
                allowed_prefixes: Vec::new(),
            },
        }
    }

    /// Whether this key may call `path`.
    pub fn allows(&self, path: &str) -> bool {
        self.allowed_prefixes.is_empty()
            || self
                .allowed_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
    }
}

/// The TOML file's shape; every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    bind: Option<String>,
    api_keys: Option<Vec<String>>,
    environment: Option<String>,
    checkers_skip_all: Option<bool>,
    checkers_skip: Option<Vec<String>>,
    notify_skip_all: Option<bool>,
    body_limit: Option<usize>,
    allow_public_bind: Option<bool>,
    templates_dir: Option<PathBuf>,
    db_pool_size: Option<u32>,
    tasks_eager: Option<bool>,
    workers: Option<u32>,
    broker_url: Option<String>,
    secret_key: Option<String>,
}

impl Config {
    /// Reads the optional file, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, |name| std::env::var(name).ok())
    }

    /// Reads the optional file, then variables through `env` (tests pass a map).
    pub fn load_with(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut cfg = Self::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            let f: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::InvalidFile {
                path: path.to_owned(),
                reason: e.to_string().trim().to_owned(),
            })?;
            cfg.apply_file(f)?;
        }
        cfg.apply_env(&env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<(), ConfigError> {
        if let Some(v) = f.database_url {
            self.database_url = v;
        }
        if let Some(v) = f.bind {
            self.bind = parse_bind("bind", &v)?;
        }
        if let Some(v) = f.api_keys {
            self.api_keys = v
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| ApiKey::parse(k))
                .collect();
        }
        if let Some(v) = f.environment {
            self.environment = v;
        }
        if let Some(v) = f.checkers_skip_all {
            self.checkers_skip_all = v;
        }
        if let Some(v) = f.checkers_skip {
            self.checkers_skip = v;
        }
        if let Some(v) = f.notify_skip_all {
            self.notify_skip_all = v;
        }
        if let Some(v) = f.body_limit {
            self.body_limit = v;
        }
        if let Some(v) = f.allow_public_bind {
            self.allow_public_bind = v;
        }
        if f.templates_dir.is_some() {
            self.templates_dir = f.templates_dir;
        }
        if let Some(v) = f.db_pool_size {
            self.db_pool_size = v;
        }
        if let Some(v) = f.tasks_eager {
            self.tasks_eager = v;
        }
        if let Some(v) = f.workers {
            self.workers = v;
        }
        if f.broker_url.is_some() {
            self.broker_url = f.broker_url;
        }
        if let Some(v) = f.secret_key {
            self.secret_key = (!v.trim().is_empty()).then(|| Secret::new(v.trim()));
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("TOCSIN_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = env("TOCSIN_BIND") {
            self.bind = parse_bind("TOCSIN_BIND", &v)?;
        }
        if let Some(v) = env("TOCSIN_API_KEYS") {
            self.api_keys = split_list(&v).iter().map(|k| ApiKey::parse(k)).collect();
        }
        if let Some(v) = env("TOCSIN_ENVIRONMENT") {
            self.environment = v;
        }
        if let Some(v) = env("CHECKERS_SKIP_ALL") {
            self.checkers_skip_all = parse_bool("CHECKERS_SKIP_ALL", &v)?;
        }
        if let Some(v) = env("CHECKERS_SKIP") {
            self.checkers_skip = split_list(&v);
        }
        if let Some(v) = env("NOTIFY_SKIP_ALL") {
            self.notify_skip_all = parse_bool("NOTIFY_SKIP_ALL", &v)?;
        }
        if let Some(v) = env("TOCSIN_BODY_LIMIT") {
            self.body_limit = parse_num("TOCSIN_BODY_LIMIT", &v, "a size in bytes, at least 1024")?;
        }
        if let Some(v) = env("TOCSIN_ALLOW_PUBLIC_BIND") {
            self.allow_public_bind = parse_bool("TOCSIN_ALLOW_PUBLIC_BIND", &v)?;
        }
        if let Some(v) = env("TOCSIN_TEMPLATES_DIR") {
            self.templates_dir = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = env("TOCSIN_TASKS_EAGER") {
            self.tasks_eager = parse_bool("TOCSIN_TASKS_EAGER", &v)?;
        }
        if let Some(v) = env("TOCSIN_WORKERS") {
            self.workers = parse_num("TOCSIN_WORKERS", &v, "a whole number from 0 to 64")?;
        }
        if let Some(v) = env("TOCSIN_BROKER_URL") {
            self.broker_url = (!v.trim().is_empty()).then(|| v.trim().to_owned());
        }
        if let Some(v) = env("TOCSIN_SECRET_KEY") {
            self.secret_key = (!v.trim().is_empty()).then(|| Secret::new(v.trim()));
        }
        if let Some(v) = env("TOCSIN_DB_POOL_SIZE") {
            self.db_pool_size =
                parse_num("TOCSIN_DB_POOL_SIZE", &v, "a whole number from 1 to 256")?;
        }
        Ok(())
    }

    /// Checks values that parse but make no sense, without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::store::DatabaseUrl::parse(&self.database_url).map_err(|e| {
            ConfigError::InvalidValue {
                name: "TOCSIN_DATABASE_URL".into(),
                value: redact_url(&self.database_url),
                expected: e.message().to_owned(),
            }
        })?;
        if self.body_limit < 1024 {
            return Err(ConfigError::InvalidValue {
                name: "TOCSIN_BODY_LIMIT".into(),
                value: self.body_limit.to_string(),
                expected: "a size in bytes, at least 1024".into(),
            });
        }
        if !(1..=256).contains(&self.db_pool_size) {
            return Err(ConfigError::InvalidValue {
                name: "TOCSIN_DB_POOL_SIZE".into(),
                value: self.db_pool_size.to_string(),
                expected: "a whole number from 1 to 256".into(),
            });
        }
        if self.workers > 64 {
            return Err(ConfigError::InvalidValue {
                name: "TOCSIN_WORKERS".into(),
                value: self.workers.to_string(),
                expected: "a whole number from 0 to 64".into(),
            });
        }
        if self
            .secret_key
            .as_ref()
            .is_some_and(|k| k.expose().chars().count() < 32)
        {
            return Err(ConfigError::InvalidValue {
                name: "TOCSIN_SECRET_KEY".into(),
                value: crate::secret::REDACTED.into(),
                expected: "at least 32 characters".into(),
            });
        }
        if let Some(url) = self
            .broker_url
            .as_ref()
            .filter(|u| !u.starts_with("redis://") && !u.starts_with("rediss://"))
        {
            return Err(ConfigError::InvalidValue {
                name: "TOCSIN_BROKER_URL".into(),
                value: redact_url(url),
                expected: "a redis:// or rediss:// URL".into(),
            });
        }
        Ok(())
    }

    /// Whether checker `name` is skipped by `CHECKERS_SKIP_ALL` or `CHECKERS_SKIP`.
    pub fn checker_skipped(&self, name: &str) -> bool {
        self.checkers_skip_all
            || self
                .checkers_skip
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
    }
}

/// A URL with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:{}{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    crate::secret::REDACTED,
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_bind(name: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::InvalidValue {
        name: name.into(),
        value: v.into(),
        expected: "an address and port such as 127.0.0.1:8000 or [::1]:8000".into(),
    })
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            name: name.into(),
            value: v.into(),
            expected: "a boolean (1/0, true/false, yes/no, on/off)".into(),
        }),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str, expected: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::InvalidValue {
        name: name.into(),
        value: v.into(),
        expected: expected.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with(None, |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = load(&[]).unwrap();
        assert_eq!(c.database_url, "sqlite://tocsin.db");
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert!(c.api_keys.is_empty());
        assert_eq!(c.body_limit, 1024 * 1024);
    }

    #[test]
    fn environment_values_are_parsed() {
        let c = load(&[
            ("TOCSIN_BIND", "0.0.0.0:9000"),
            ("TOCSIN_API_KEYS", "a, b,,"),
            ("CHECKERS_SKIP", "cpu,Memory"),
            ("NOTIFY_SKIP_ALL", "yes"),
        ])
        .unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.api_keys.len(), 2);
        let scoped = ApiKey::parse("k@/alerts/+/notify/");
        assert!(scoped.allows("/alerts/webhook/") && !scoped.allows("/orchestration/pipelines/"));
        assert!(c.api_keys[0].allows("/anything"));
        assert!(c.checker_skipped("memory"));
        assert!(!c.checker_skipped("disk"));
        assert!(c.notify_skip_all);
    }

    #[test]
    fn bad_values_name_the_variable_and_what_was_expected() {
        let err = load(&[("TOCSIN_BIND", "localhost")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TOCSIN_BIND") && err.contains("expected an address"),
            "{err}"
        );
        let err = load(&[("CHECKERS_SKIP_ALL", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CHECKERS_SKIP_ALL") && err.contains("boolean"),
            "{err}"
        );
        let err = load(&[("TOCSIN_DATABASE_URL", "mysql://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOCSIN_DATABASE_URL"), "{err}");
    }

    #[test]
    fn file_is_overridden_by_environment_and_unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tocsin.toml");
        std::fs::write(
            &path,
            "bind = \"127.0.0.1:7000\"\nenvironment = \"staging\"\n",
        )
        .unwrap();
        let c = Config::load_with(Some(&path), |k| {
            (k == "TOCSIN_ENVIRONMENT").then(|| "prod-eu".to_owned())
        })
        .unwrap();
        assert_eq!(c.bind.port(), 7000);
        assert_eq!(c.environment, "prod-eu");

        std::fs::write(&path, "bnd = 1\n").unwrap();
        let err = Config::load_with(Some(&path), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid config file") && err.contains("bnd"),
            "{err}"
        );

        let err = Config::load_with(Some(&dir.path().join("missing.toml")), |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read config file"), "{err}");
    }

    #[test]
    fn the_console_secret_key_is_read_checked_and_never_printed() {
        let key = "k".repeat(40);
        let c = load(&[("TOCSIN_SECRET_KEY", &key)]).unwrap();
        assert_eq!(
            c.secret_key.as_ref().map(|k| k.expose()),
            Some(key.as_str())
        );
        assert!(!format!("{c:?}").contains(&key));
        assert_eq!(
            load(&[("TOCSIN_SECRET_KEY", " ")]).unwrap().secret_key,
            None
        );
        let err = load(&[("TOCSIN_SECRET_KEY", "short")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TOCSIN_SECRET_KEY") && err.contains("32") && !err.contains("short"),
            "{err}"
        );
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h/db"),
            "postgres://u:**REDACTED**@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
