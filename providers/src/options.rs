//! What a request may tune: the only knobs an HTTP body, a pipeline node or a command line can
//! turn. Endpoints, keys and scan roots are the operator's ([`crate::OperatorConfig`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tocsin_core::{Error, Result};

/// One kind of local evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisKind {
    /// The top processes by resident memory.
    Memory,
    /// The top processes by CPU over a short measured window, and load averages.
    Cpu,
    /// Largest directories and files, old log/temp/cache files.
    Disk,
}

impl AnalysisKind {
    /// The spelling used in options and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::Disk => "disk",
        }
    }
}

/// Per-request tuning. Every field is optional; unset fields take the provider's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestOptions {
    /// Only these analyses (`local`). Unset: decided from the incident, or a general scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyses: Option<Vec<AnalysisKind>>,
    /// How many processes, directories and files to report (`local`), 1 to 100. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n: Option<usize>,
    /// The folder a disk analysis scans (`local`); must lie under the operator's roots. Default:
    /// the first root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Files and directories at least this large are reported (`local`), in MiB, 1 to 10 000 000.
    /// Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_mb: Option<u64>,
    /// Log, temp and cache files older than this many days are reported (`local`), 0 to 36 500.
    /// Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_days: Option<u64>,
    /// The model (`openai`). Default: the operator's (`OPENAI_MODEL`, else `gpt-4o-mini`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The completion token limit (`openai`), 1 to 32 768. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature (`openai`), 0 to 2. Default 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

/// Keys only the operator may set, with where they are set, for a helpful refusal.
const OPERATOR_ONLY: &[(&str, &str)] = &[
    ("base_url", "OPENAI_BASE_URL"),
    ("api_key", "OPENAI_API_KEY"),
    ("timeout", "OPENAI_TIMEOUT"),
    ("roots", "TOCSIN_ANALYZE_ROOTS"),
    ("host", "OPENAI_BASE_URL"),
    ("scan_paths", "TOCSIN_ANALYZE_ROOTS"),
];

const ALLOWED_KEYS: &[&str] = &[
    "analyses",
    "top_n",
    "path",
    "threshold_mb",
    "old_days",
    "model",
    "max_tokens",
    "temperature",
];

const ALLOWED: &str =
    "analyses, top_n, path, threshold_mb, old_days, model, max_tokens, temperature";

impl RequestOptions {
    /// Parses and validates a request's `config` (`null` or an object). Operator-only keys
    /// (`base_url`, `api_key`, `roots`...) and unknown keys are refused with an `InvalidInput`
    /// error that names the key.
    pub fn from_value(config: &Value) -> Result<Self> {
        let map = match config {
            Value::Null => return Ok(Self::default()),
            Value::Object(map) => map,
            other => {
                return Err(Error::invalid_input(format!(
                    "analysis config must be a JSON object, not {}",
                    json_type(other)
                )));
            }
        };
        for key in map.keys() {
            if ALLOWED_KEYS.contains(&key.as_str()) {
                continue;
            }
            if let Some((_, var)) = OPERATOR_ONLY.iter().find(|(k, _)| k == key) {
                return Err(Error::invalid_input(format!(
                    "config key {key:?} can only be set by the operator ({var}), not per request; \
                     a request may set: {ALLOWED}"
                )));
            }
            if tocsin_core::secret::is_secret_key(key) {
                return Err(Error::invalid_input(format!(
                    "config key {key:?} looks like a credential; credentials come only from the \
                     operator's configuration"
                )));
            }
        }
        let opts: Self = serde_json::from_value(config.clone()).map_err(|e| {
            Error::invalid_input(format!(
                "invalid analysis config: {e}; a request may set: {ALLOWED}"
            ))
        })?;
        opts.validate()?;
        Ok(opts)
    }

    /// Checks ranges, without I/O.
    pub fn validate(&self) -> Result<()> {
        if let Some(n) = self.top_n {
            range("top_n", n as f64, 1.0, 100.0)?;
        }
        if let Some(n) = self.threshold_mb {
            range("threshold_mb", n as f64, 1.0, 10_000_000.0)?;
        }
        if let Some(n) = self.old_days {
            range("old_days", n as f64, 0.0, 36_500.0)?;
        }
        if let Some(n) = self.max_tokens {
            range("max_tokens", f64::from(n), 1.0, 32_768.0)?;
        }
        if let Some(t) = self.temperature {
            if !t.is_finite() {
                return Err(Error::invalid_input(
                    "temperature must be a number from 0 to 2",
                ));
            }
            range("temperature", t, 0.0, 2.0)?;
        }
        if let Some(m) = &self.model
            && (m.trim().is_empty() || m.len() > 200 || m.chars().any(char::is_control))
        {
            return Err(Error::invalid_input(
                "model must be a non-empty name of at most 200 characters",
            ));
        }
        if let Some(p) = &self.path
            && (p.is_empty() || p.len() > 4096 || p.contains('\0'))
        {
            return Err(Error::invalid_input(
                "path must be a non-empty path of at most 4096 bytes",
            ));
        }
        if let Some(a) = &self.analyses
            && a.is_empty()
        {
            return Err(Error::invalid_input(
                "analyses must name at least one of: memory, cpu, disk",
            ));
        }
        Ok(())
    }

    /// As JSON, unset fields left out (what providers receive as `AnalysisInput::options`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Object(Default::default()))
    }
}

fn range(name: &str, v: f64, min: f64, max: f64) -> Result<()> {
    if v < min || v > max {
        return Err(Error::invalid_input(format!(
            "{name} must be from {min} to {max}, got {v}"
        )));
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a number given as text (a query parameter, a flag), naming the parameter in the
/// `InvalidInput` error: `top_n must be a whole number, got "ten"`.
pub fn parse_number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| Error::invalid_input(format!("{name} must be a whole number, got {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tunables_parse_and_operator_keys_are_refused_by_name() {
        let o = RequestOptions::from_value(
            &json!({"top_n": 5, "analyses": ["memory", "disk"], "model": "llama3.1"}),
        )
        .unwrap();
        assert_eq!(o.top_n, Some(5));
        assert_eq!(
            o.analyses,
            Some(vec![AnalysisKind::Memory, AnalysisKind::Disk])
        );
        assert_eq!(
            o.to_value(),
            json!({"top_n": 5, "analyses": ["memory", "disk"], "model": "llama3.1"})
        );

        for key in ["base_url", "api_key", "roots", "timeout"] {
            let err = RequestOptions::from_value(&json!({ key: "x" })).unwrap_err();
            assert_eq!(err.kind(), tocsin_core::ErrorKind::InvalidInput);
            assert!(
                err.message().contains(key) && err.message().contains("operator"),
                "{err}"
            );
        }
        let err = RequestOptions::from_value(&json!({"openai_token": "x"})).unwrap_err();
        assert!(err.message().contains("credential"), "{err}");
        let err = RequestOptions::from_value(&json!({"colour": "red"})).unwrap_err();
        assert!(
            err.message().contains("colour") && err.message().contains("top_n"),
            "{err}"
        );
    }

    #[test]
    fn bad_numbers_are_invalid_input_naming_the_field() {
        for (cfg, needle) in [
            (json!({"top_n": 0}), "top_n"),
            (json!({"top_n": -3}), "top_n"),
            (json!({"threshold_mb": "big"}), "threshold_mb"),
            (json!({"temperature": 7.5}), "temperature"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"analyses": ["network"]}), "analyses"),
            (json!([1, 2]), "object"),
        ] {
            let err = RequestOptions::from_value(&cfg).unwrap_err();
            assert_eq!(err.kind(), tocsin_core::ErrorKind::InvalidInput, "{cfg}");
            assert!(
                err.message().contains(needle) || err.message().contains("unknown variant"),
                "{cfg}: {err}"
            );
        }
        assert_eq!(parse_number::<usize>("top_n", " 12 ").unwrap(), 12);
        let err = parse_number::<usize>("top_n", "ten").unwrap_err();
        assert!(
            err.message().contains("top_n") && err.message().contains("ten"),
            "{err}"
        );
    }
}
