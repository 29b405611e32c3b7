//! The one error type of `tocsin-core`, shared by every plugin.

use std::fmt;

/// What went wrong, coarsely: adapters map a kind to a status code, the retry logic reads
/// [`Error::is_temporary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller sent something malformed or invalid (a payload, an option, a definition).
    InvalidInput,
    /// A body no driver recognises, or a driver rejects.
    UnrecognizedPayload,
    /// A plugin's configuration is invalid.
    InvalidConfig,
    /// A named thing (driver, record, channel) does not exist.
    NotFound,
    /// Two plugins registered the same name.
    DuplicatePlugin,
    /// The record exists already, or the operation conflicts with its state.
    Conflict,
    /// The storage layer failed.
    Storage,
    /// A remote service (SMTP, Slack, an AI endpoint...) failed or answered with an error.
    Upstream,
    /// Credentials were refused by a remote service.
    Unauthorized,
    /// An operation ran past its deadline.
    Timeout,
    /// A template failed to render.
    Template,
    /// Anything else; a bug if it ever reaches a user.
    Internal,
}

impl ErrorKind {
    /// The stable snake_case name used in JSON error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::UnrecognizedPayload => "unrecognized_payload",
            Self::InvalidConfig => "invalid_config",
            Self::NotFound => "not_found",
            Self::DuplicatePlugin => "duplicate_plugin",
            Self::Conflict => "conflict",
            Self::Storage => "storage",
            Self::Upstream => "upstream",
            Self::Unauthorized => "unauthorized",
            Self::Timeout => "timeout",
            Self::Template => "template",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether retrying the same operation may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Retrying cannot help (bad input, bad credentials, bad config).
    Permanent,
    /// Retrying may help (connection refused, timeout, 5xx, 429).
    Temporary,
}

/// The error of every tocsin library call: a kind, a message for humans, whether a retry may help,
/// and optionally how long the remote side asked us to wait.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry: Retry,
    retry_after: Option<std::time::Duration>,
}

impl Error {
    /// A new error; temporary for `Storage`, `Timeout` and `Upstream`, permanent otherwise.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retry = match kind {
            ErrorKind::Storage | ErrorKind::Timeout | ErrorKind::Upstream => Retry::Temporary,
            _ => Retry::Permanent,
        };
        Self {
            kind,
            message: message.into(),
            retry,
            retry_after: None,
        }
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Storage`].
    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Storage, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Overrides whether a retry may help.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Records how long the remote side asked us to wait (`Retry-After`); implies temporary.
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry = Retry::Temporary;
        self.retry_after = Some(after);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message (never contains a secret).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a retry may help.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// True when a retry may help.
    pub fn is_temporary(&self) -> bool {
        self.retry == Retry::Temporary
    }

    /// The wait the remote side asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match &err {
            D::NotFound => Self::not_found("record not found"),
            D::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => Self::new(
                ErrorKind::Conflict,
                format!("already exists: {}", info.message()),
            ),
            D::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                Self::storage(format!("serialization failure: {err}"))
            }
            _ => Self::storage(err.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::invalid_input(format!("invalid JSON: {err}"))
    }
}

/// The `Result` of every tocsin library call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
