//! A string that never prints itself.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret (API key, password, webhook URL with a token). `Debug` and `Display` print
/// `**REDACTED**`; only [`Secret::expose`] gives the value, so a secret reaches a log line, an error
/// or a snapshot only by someone writing `expose()` there.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// What a secret prints as.
pub const REDACTED: &str = "**REDACTED**";

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Serializes as the redacted marker: a stored snapshot or an API answer never carries the value.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Field names whose values are treated as secrets in free-form JSON (configs, snapshots).
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "routing_key",
    "integration_key",
    "webhook_url",
    "authorization",
    "signing_secret",
    "hmac_secret",
    "private_key",
];

/// Whether a JSON field name names a secret (`smtp_password`, `X-Api-Key`, `webhook_url`...).
pub fn is_secret_key(key: &str) -> bool {
    // Compared byte by byte, case-folded and with `-` read as `_`, without allocating: this runs
    // for every key of every snapshot and payload that is redacted.
    fn fold(b: u8) -> u8 {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_lowercase()
        }
    }
    let k = key.as_bytes();
    // Whole names or `_`-separated suffixes only: `smtp_password` and `x_api_key` are secrets,
    // `max_tokens` is not.
    SECRET_KEYS.iter().any(|s| {
        let s = s.as_bytes();
        let Some(start) = k.len().checked_sub(s.len()) else {
            return false;
        };
        k[start..].iter().zip(s).all(|(a, b)| fold(*a) == *b)
            && (start == 0 || fold(k[start - 1]) == b'_')
    })
}

/// A copy of `value` with every secret-named field replaced by `**REDACTED**`, at any depth.
pub fn redact(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "**REDACTED** **REDACTED**");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"**REDACTED**\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redact_hides_secret_fields_at_any_depth() {
        let v = json!({"smtp_host": "mx", "smtp_password": "p", "headers": {"X-Api-Key": "k"},
                       "list": [{"routing_key": "r"}], "webhook_url": "https://hooks/T0"});
        let r = redact(&v);
        assert_eq!(r["smtp_host"], "mx");
        assert_eq!(r["smtp_password"], REDACTED);
        assert_eq!(r["headers"]["X-Api-Key"], REDACTED);
        assert_eq!(r["list"][0]["routing_key"], REDACTED);
        assert_eq!(r["webhook_url"], REDACTED);
        assert!(!is_secret_key("max_tokens") && !is_secret_key("token_count"));
        assert!(is_secret_key("access_token") && is_secret_key("X-Api-Key"));
        assert!(is_secret_key("Authorization"));
        assert!(
            is_secret_key("SMTP-Password") && is_secret_key("token") && is_secret_key("_token")
        );
        assert!(!is_secret_key("xapikey") && !is_secret_key("passwords") && !is_secret_key(""));
        assert!(!is_secret_key("tok") && !is_secret_key("mot_de_passe_Ã©"));
    }
}
