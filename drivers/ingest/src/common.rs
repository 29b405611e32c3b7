//! Helpers every driver shares: typed field access with errors that name the field, UTC time
//! parsing (RFC 3339, epoch seconds, milliseconds, microseconds), severity words, tags to labels,
//! and the documented fallback fingerprint.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tocsin_core::domain::{Labels, Severity};
use tocsin_core::{Error, ErrorKind, Result};

/// An `UnrecognizedPayload` error for `driver` (HTTP 422).
pub(crate) fn invalid(driver: &str, message: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::UnrecognizedPayload,
        format!("{driver}: {message}"),
    )
}

/// The body as an object, or an error naming the driver.
pub(crate) fn object<'a>(driver: &str, body: &'a Value) -> Result<&'a Map<String, Value>> {
    body.as_object().ok_or_else(|| not_object(driver, body))
}

/// The body as an owned object, with [`object`]'s error.
pub(crate) fn into_object(driver: &str, body: Value) -> Result<Map<String, Value>> {
    match body {
        Value::Object(map) => Ok(map),
        other => Err(not_object(driver, &other)),
    }
}

fn not_object(driver: &str, body: &Value) -> Error {
    invalid(
        driver,
        format!("expected a JSON object, got {}", kind(body)),
    )
}

/// The JSON type of a value, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to the fields of one JSON object, with errors naming `driver` and the field path.
pub(crate) struct Fields<'a> {
    pub driver: &'static str,
    pub path: String,
    pub map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// The fields of `body` (which must be an object).
    pub fn root(driver: &'static str, body: &'a Value) -> Result<Self> {
        Ok(Self {
            driver,
            path: String::new(),
            map: object(driver, body)?,
        })
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> Error {
        invalid(
            self.driver,
            format!("field `{}` must be {want}, got {}", self.at(key), kind(got)),
        )
    }

    /// The raw value, `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A string field; absent or null is `None`, another type is an error.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// A required string field.
    pub fn str(&self, key: &str) -> Result<&'a str> {
        self.opt_str(key)?
            .ok_or_else(|| invalid(self.driver, format!("missing field `{}`", self.at(key))))
    }

    /// A string or number field as text (ids are sent either way).
    pub fn opt_text(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.wrong(key, "a string or a number", other)),
        }
    }

    /// A required string-or-number field as text.
    pub fn text(&self, key: &str) -> Result<String> {
        self.opt_text(key)?
            .ok_or_else(|| invalid(self.driver, format!("missing field `{}`", self.at(key))))
    }

    /// An object field; absent or null is `None`.
    pub fn opt_obj(&self, key: &str) -> Result<Option<Fields<'a>>> {
        Ok(self.opt_map(key)?.map(|map| Fields {
            driver: self.driver,
            path: self.at(key),
            map,
        }))
    }

    /// An object field's map, without the [`Fields`] of [`Fields::opt_obj`] (whose path is a
    /// string built for each call, used only by an error); absent or null is `None`.
    pub fn opt_map(&self, key: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(self.wrong(key, "an object", other)),
        }
    }

    /// A required object field.
    pub fn obj(&self, key: &str) -> Result<Fields<'a>> {
        self.opt_obj(key)?
            .ok_or_else(|| invalid(self.driver, format!("missing field `{}`", self.at(key))))
    }

    /// An array field; absent or null is `None`.
    pub fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(self.wrong(key, "an array", other)),
        }
    }

    /// A required array field.
    pub fn array(&self, key: &str) -> Result<&'a Vec<Value>> {
        self.opt_array(key)?
            .ok_or_else(|| invalid(self.driver, format!("missing field `{}`", self.at(key))))
    }

    /// An object of string values (labels, annotations); numbers and booleans are turned into text.
    pub fn string_map(&self, key: &str) -> Result<Labels> {
        let Some(map) = self.opt_map(key)? else {
            return Ok(Labels::new());
        };
        let mut out = Labels::new();
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                other => return Err(self.wrong(&format!("{key}.{k}"), "a string", other)),
            };
            out.insert(k.clone(), text);
        }
        Ok(out)
    }

    /// A time field (RFC 3339 text or epoch number); a value that is not a time is an error.
    pub fn opt_time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match parse_time(v) {
                TimeValue::Time(t) => Ok(Some(t)),
                TimeValue::Unset => Ok(None),
                TimeValue::Invalid => Err(invalid(
                    self.driver,
                    format!(
                        "field `{}` is not a time (RFC 3339 or epoch): {}",
                        self.at(key),
                        short(v)
                    ),
                )),
            },
        }
    }

    /// The fields of an element of an array, for nested errors (`alerts[2]`).
    pub fn element(driver: &'static str, path: String, v: &'a Value) -> Result<Fields<'a>> {
        match v {
            Value::Object(m) => Ok(Fields {
                driver,
                path,
                map: m,
            }),
            other => Err(invalid(
                driver,
                format!("`{path}` must be an object, got {}", kind(other)),
            )),
        }
    }
}

/// A short rendering of a value for messages.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        let mut end = 60;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// What a time field held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeValue {
    /// A time.
    Time(DateTime<Utc>),
    /// "No time": empty, zero, or Go's zero time `0001-01-01T00:00:00Z` (Alertmanager's "no end").
    Unset,
    /// Not a time.
    Invalid,
}

/// Parses a time: RFC 3339 (any offset, converted to UTC), `YYYY-MM-DD HH:MM:SS[.f]` (taken as
/// UTC), `YYYY.MM.DD HH:MM:SS` (Zabbix), or epoch numbers and digit strings told apart by size:
/// below 10^11 seconds, below 10^14 milliseconds, below 10^17 microseconds, else nanoseconds.
/// Years before 1971 (Go's zero time, epoch 0) mean "no time".
pub(crate) fn parse_time(v: &Value) -> TimeValue {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) => dated(epoch(f)),
            None => TimeValue::Invalid,
        },
        Value::String(s) => parse_time_text(s),
        Value::Null => TimeValue::Unset,
        _ => TimeValue::Invalid,
    }
}

/// [`parse_time`] of a string.
pub(crate) fn parse_time_text(s: &str) -> TimeValue {
    let s = s.trim();
    if s.is_empty() {
        return TimeValue::Unset;
    }
    let t = if let Ok(f) = s.parse::<f64>() {
        epoch(f)
    } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        Some(t.with_timezone(&Utc))
    } else {
        [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y.%m.%d %H:%M:%S",
            "%Y-%m-%d %H:%M:%S %z",
        ]
        .iter()
        .find_map(|f| {
            NaiveDateTime::parse_from_str(s, f)
                .ok()
                .map(|n| n.and_utc())
        })
        .or_else(|| {
            DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .or_else(|| {
            DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f %z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
    };
    dated(t)
}

/// A parsed time, or what its absence means: before 1971 is "no time".
fn dated(t: Option<DateTime<Utc>>) -> TimeValue {
    match t {
        Some(t) if t < floor() => TimeValue::Unset,
        Some(t) => TimeValue::Time(t),
        None => TimeValue::Invalid,
    }
}

fn floor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1971, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn epoch(f: f64) -> Option<DateTime<Utc>> {
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    let micros = if f < 1e11 {
        f * 1e6
    } else if f < 1e14 {
        f * 1e3
    } else if f < 1e17 {
        f
    } else {
        f / 1e3
    };
    if micros > 1e17 {
        return None;
    }
    DateTime::<Utc>::from_timestamp_micros(micros as i64)
}

/// A date and a time given separately (Zabbix `EVENT.DATE` `2024.01.31` and `EVENT.TIME`
/// `12:00:00`), taken as UTC.
pub(crate) fn date_and_time(date: &str, time: &str) -> Option<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(date.trim(), "%Y.%m.%d")
        .or_else(|_| NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d"))
        .ok()?;
    let t = chrono::NaiveTime::parse_from_str(time.trim(), "%H:%M:%S").ok()?;
    Some(d.and_time(t).and_utc())
}

/// The severity a common word means: `critical`, `crit`, `page`, `error`, `high`, `major`,
/// `disaster`, `emergency`, `fatal` -> critical; `warning`, `warn`, `average`, `medium`, `minor`,
/// `moderate` -> warning; `info`, `informational`, `information`, `notice`, `low`, `none`, `ok`,
/// `debug`, `not classified` -> info. Case-insensitive; anything else is `None`.
pub(crate) fn severity_word(s: &str) -> Option<Severity> {
    match s.trim().to_ascii_lowercase().as_str() {
        "critical" | "crit" | "page" | "error" | "err" | "high" | "major" | "disaster"
        | "emergency" | "fatal" | "alert" => Some(Severity::Critical),
        "warning" | "warn" | "average" | "medium" | "minor" | "moderate" => Some(Severity::Warning),
        "info" | "informational" | "information" | "notice" | "low" | "none" | "ok" | "debug"
        | "not classified" => Some(Severity::Info),
        _ => None,
    }
}

/// Adds vendor tags to labels: `k:v` becomes `k=v`, a bare tag becomes `tag=true`. Existing
/// labels win (a tag never overwrites a label the vendor sent as such).
pub(crate) fn add_tags<'t>(labels: &mut Labels, tags: impl IntoIterator<Item = &'t str>) {
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() {
            continue;
        }
        let (k, v) = match tag.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => (k.trim().to_owned(), v.trim().to_owned()),
            _ => (tag.to_owned(), "true".to_owned()),
        };
        labels.entry(k).or_insert(v);
    }
}

/// Tags given as a JSON array of strings, or as one comma-separated string.
pub(crate) fn tag_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| match t {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// The documented fallback fingerprint when a vendor gives no stable identity: the first 32 hex
/// digits of SHA-256 over `source`, `name` and the sorted `key=value` labels, separated by NUL.
pub fn fallback_fingerprint(source: &str, name: &str, labels: &Labels) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    for (k, v) in labels {
        h.update([0]);
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    hex::encode(&digest[..16])
}

/// A value is "present" when it is neither null nor an empty string nor an unexpanded macro
/// (`{EVENT.ID}`, `$ALERT_ID`), which template-driven senders leave behind when a value is missing.
pub(crate) fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => {
            let s = s.trim();
            !(s.is_empty()
                || (s.starts_with('{') && s.ends_with('}') && !s.contains('"'))
                || is_dollar_macro(s))
        }
        _ => true,
    }
}

fn is_dollar_macro(s: &str) -> bool {
    s.strip_prefix('$')
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn epoch_seconds_milliseconds_and_microseconds_are_told_apart() {
        let want = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(parse_time(&json!(1704164645)), TimeValue::Time(want));
        assert_eq!(parse_time(&json!(1704164645000_i64)), TimeValue::Time(want));
        assert_eq!(
            parse_time(&json!(1704164645000000_i64)),
            TimeValue::Time(want)
        );
        assert_eq!(parse_time(&json!("1704164645")), TimeValue::Time(want));
        assert_eq!(
            parse_time(&json!("2024-01-02T04:04:05+01:00")),
            TimeValue::Time(want)
        );
        assert_eq!(
            parse_time(&json!("2024.01.02 03:04:05")),
            TimeValue::Time(want)
        );
    }

    #[test]
    fn a_field_error_names_the_whole_path() {
        let body = json!({"alerts": [{"labels": {"a": "x", "b": [1]}, "annotations": 3}]});
        let root = Fields::root("am", &body).unwrap();
        let alert = Fields::element(
            "am",
            "alerts[0]".to_owned(),
            &root.array("alerts").unwrap()[0],
        )
        .unwrap();
        let msg = |e: Error| e.message().to_owned();
        assert_eq!(
            msg(alert.string_map("labels").unwrap_err()),
            "am: field `alerts[0].labels.b` must be a string, got an array"
        );
        assert_eq!(
            msg(alert.opt_map("annotations").unwrap_err()),
            "am: field `alerts[0].annotations` must be an object, got a number"
        );
        let labels = alert.opt_obj("labels").unwrap().unwrap();
        assert_eq!(labels.path, "alerts[0].labels");
        assert_eq!(
            msg(labels.str("c").unwrap_err()),
            "am: missing field `alerts[0].labels.c`"
        );
        assert!(alert.opt_map("missing").unwrap().is_none());
    }

    #[test]
    fn go_zero_time_and_empty_mean_no_time() {
        assert_eq!(parse_time(&json!("0001-01-01T00:00:00Z")), TimeValue::Unset);
        assert_eq!(parse_time(&json!("")), TimeValue::Unset);
        assert_eq!(parse_time(&json!(0)), TimeValue::Unset);
        assert_eq!(parse_time(&json!("yesterday")), TimeValue::Invalid);
        assert_eq!(parse_time(&json!(-5)), TimeValue::Invalid);
        assert_eq!(parse_time(&json!(1e300)), TimeValue::Invalid);
    }

    #[test]
    fn tags_become_labels_without_overwriting_labels() {
        let mut l = Labels::from([("env".to_owned(), "prod".to_owned())]);
        add_tags(
            &mut l,
            ["env:staging", "role:db", "canary", " ", "url:http://x:1"],
        );
        assert_eq!(l["env"], "prod");
        assert_eq!(l["role"], "db");
        assert_eq!(l["canary"], "true");
        assert_eq!(l["url"], "http://x:1");
    }

    #[test]
    fn fallback_fingerprint_is_stable_and_label_sensitive() {
        let a = Labels::from([("host".to_owned(), "a".to_owned())]);
        let b = Labels::from([("host".to_owned(), "b".to_owned())]);
        assert_eq!(
            fallback_fingerprint("s", "n", &a),
            fallback_fingerprint("s", "n", &a)
        );
        assert_ne!(
            fallback_fingerprint("s", "n", &a),
            fallback_fingerprint("s", "n", &b)
        );
        assert_eq!(fallback_fingerprint("s", "n", &a).len(), 32);
    }

    #[test]
    fn unexpanded_macros_are_absent() {
        assert!(!present(&json!("{EVENT.RECOVERY.DATE}")));
        assert!(!present(&json!("$ALERT_ID")));
        assert!(present(&json!("123")));
        assert!(present(&json!(0)));
    }
}
