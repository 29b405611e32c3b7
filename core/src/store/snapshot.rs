//! The stored form of a stage execution's input and output.

use serde_json::Value;

/// A JSON value as a snapshot column stores it: secrets redacted, serialized once.
///
/// It is built where the value is, before the write, so that the transaction (on SQLite, the one
/// writer thread every write waits for) only binds the text. Redacting and serializing a run's
/// state there cost more of the writer's time than the statement itself.
///
/// ```
/// use serde_json::json;
/// use tocsin_core::store::Snapshot;
///
/// let s = Snapshot::redacted(&json!({"password": "hunter2", "n": 1}));
/// assert_eq!(s.as_str(), r#"{"n":1,"password":"**REDACTED**"}"#);
/// assert_eq!(s.value()["n"], 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    value: Value,
    text: String,
}

impl Snapshot {
    /// `value` with every secret redacted ([`crate::secret::redact`]).
    pub fn redacted(value: &Value) -> Self {
        Self::of_redacted(crate::secret::redact(value))
    }

    /// The snapshot of nothing (`null`), as a failed attempt records its output.
    pub fn null() -> Self {
        Self {
            value: Value::Null,
            text: "null".to_owned(),
        }
    }

    /// A value whose secrets are already redacted, or that cannot hold any.
    pub(crate) fn of_redacted(value: Value) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings.
        let text = value.to_string();
        Self { value, text }
    }

    /// The redacted value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The redacted value as stored: compact JSON.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}
