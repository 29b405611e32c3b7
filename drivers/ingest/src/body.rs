//! Strict decoding of a webhook body: UTF-8 JSON, one object, no duplicate keys, no NUL
//! characters, at most 128 levels of nesting.
//!
//! `serde_json::from_slice::<Value>` keeps the last of two duplicate keys silently, accepts
//! `"\u0000"` (which PostgreSQL cannot store in a TEXT column) and reports a BOM as a bare syntax
//! error; here each is an [`ErrorKind::InvalidInput`] (HTTP 400) that says what is wrong.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};
use tocsin_core::{Error, ErrorKind, Result};

/// Decodes a raw body into a JSON object, rejecting malformed or dangerous input with an
/// [`ErrorKind::InvalidInput`] error.
///
/// ```
/// let v = tocsin_ingest::body::decode(br#"{"name": "x"}"#).unwrap();
/// assert_eq!(v["name"], "x");
/// assert!(tocsin_ingest::body::decode(br#"{"a": 1, "a": 2}"#).is_err());
/// ```
pub fn decode(raw: &[u8]) -> Result<Value> {
    decode_text(text(raw)?)
}

/// The body as text: UTF-8 without a byte order mark, not empty or only whitespace.
pub fn text(raw: &[u8]) -> Result<&str> {
    if raw.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(Error::invalid_input(
            "malformed JSON: the body starts with a byte order mark (BOM); send plain UTF-8",
        ));
    }
    let text = std::str::from_utf8(raw).map_err(|e| {
        Error::invalid_input(format!(
            "malformed JSON: the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::invalid_input("malformed JSON: the body is empty"));
    }
    Ok(text)
}

/// [`decode`] of a body already checked by [`text`].
pub fn decode_text(text: &str) -> Result<Value> {
    // From the checked text: reading from bytes would check each string's UTF-8 once more.
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict::deserialize(&mut de)
        .map_err(|e| Error::invalid_input(format!("malformed JSON: {e}")))?
        .0;
    de.end()
        .map_err(|e| Error::invalid_input(format!("malformed JSON: {e}")))?;
    require_object(&value)?;
    Ok(value)
}

/// Checks that a decoded body is one JSON object; another top-level type is `InvalidInput`.
pub fn require_object(value: &Value) -> Result<()> {
    if value.is_object() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "the body must be a JSON object, got {}",
            crate::common::kind(value)
        ),
    ))
}

/// A JSON value decoded with the checks above (a driver reading a body's text decodes the parts
/// it keeps whole with it).
pub(crate) struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

fn no_nul<E: de::Error>(s: &str) -> std::result::Result<(), E> {
    if s.contains('\0') {
        return Err(E::custom(
            "a string contains a NUL character (\\u0000), which cannot be stored",
        ));
    }
    Ok(())
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Value, E> {
        no_nul(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Value, E> {
        no_nul(&v)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            no_nul(&key)?;
            // One search of the map per key: the entry found is where the value goes.
            match out.entry(key) {
                Entry::Occupied(e) => {
                    let shown: String = e.key().chars().take(60).collect();
                    return Err(de::Error::custom(format!("duplicate key {shown:?}")));
                }
                Entry::Vacant(e) => {
                    let Strict(v) = map.next_value()?;
                    e.insert(v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(raw: &[u8]) -> String {
        let e = decode(raw).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        e.message().to_owned()
    }

    #[test]
    fn rejects_what_serde_json_would_let_through() {
        assert!(err(br#"{"a": 1, "a": 2}"#).contains("duplicate key \"a\""));
        assert!(err(br#"{"a": {"b": 1, "b": 1}}"#).contains("duplicate key"));
        assert!(err(b"{\"a\": \"x\\u0000y\"}").contains("NUL"));
        assert!(err(b"\xEF\xBB\xBF{}").contains("byte order mark"));
        assert!(err(b"{\"a\": \"\xff\"}").contains("UTF-8"));
        assert!(err(b"[1, 2]").contains("must be a JSON object"));
        assert!(err(b"{} {}").contains("malformed"));
        assert!(err(b"  ").contains("empty"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let raw = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(err(raw.as_bytes()).contains("recursion limit"));
        let raw = format!(
            "{{\"a\": {}1{}}}",
            "{\"a\": ".repeat(10_000),
            "}".repeat(10_000)
        );
        assert!(err(raw.as_bytes()).contains("malformed"));
    }

    #[test]
    fn accepts_ordinary_objects() {
        let v = decode(br#" {"a": [1, 2.5, -3, true, null, "s"], "b": {}} "#).unwrap();
        assert_eq!(v["a"][1], 2.5);
    }
}
