//! The `transform` node: reshapes data between nodes, run by the engine itself.
//!
//! Config (every key optional):
//! - `source_node`: read that node's output instead of the whole run state.
//! - `extract`: a dot path into the source (`recommendations`, `checks.0.metrics.percent`); array
//!   elements by index.
//! - `filter_priority`: keep the items of the extracted list (default: the source's
//!   `recommendations`) whose `priority` is at least this (`low < medium < high < critical`).
//! - `mapping`: `{"out_key": "dot.path"}`, each path read from the source.
//!
//! Output: `{"value": <extracted, filtered>}` plus the mapped keys; when the filtered list is the
//! recommendations, also `"recommendations"`, so later nodes (notify) see only those.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::Priority;
use crate::error::{Error, Result};

/// The transform node's config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Node whose output to read.
    pub source_node: Option<String>,
    /// Dot path to extract.
    pub extract: Option<String>,
    /// Minimum priority to keep.
    pub filter_priority: Option<Priority>,
    /// Output keys and the dot paths they come from.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
}

impl TransformConfig {
    /// Parses and checks the config (no I/O).
    pub fn parse(config: &Value) -> Result<Self> {
        if config.is_null() {
            return Ok(Self::default());
        }
        let c: Self = serde_json::from_value(config.clone())
            .map_err(|e| Error::invalid_config(format!("invalid transform config: {e}")))?;
        for path in c.extract.iter().chain(c.mapping.values()) {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(Error::invalid_config(format!("invalid dot path {path:?}")));
            }
        }
        Ok(c)
    }
}

/// Reads a dot path (`a.b.0.c`).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn rank(p: Priority) -> u8 {
    match p {
        Priority::Low => 0,
        Priority::Medium => 1,
        Priority::High => 2,
        Priority::Critical => 3,
    }
}

/// Runs a transform over the run state.
pub fn run(config: &TransformConfig, state: &Value) -> Result<Value> {
    let source = match &config.source_node {
        Some(id) => state.get("nodes").and_then(|n| n.get(id)).ok_or_else(|| {
            Error::invalid_input(format!("transform: source node {id:?} has no output"))
        })?,
        None => state,
    };
    let mut out = Map::new();
    let extract_path = config
        .extract
        .clone()
        .or_else(|| config.filter_priority.map(|_| "recommendations".to_owned()));
    if let Some(path) = &extract_path {
        let mut value = lookup(source, path).cloned().ok_or_else(|| {
            Error::invalid_input(format!("transform: nothing at {path:?} in the source"))
        })?;
        if let Some(min) = config.filter_priority {
            let items = value.as_array().ok_or_else(|| {
                Error::invalid_input(format!("transform: {path:?} is not a list to filter"))
            })?;
            let kept: Vec<Value> = items
                .iter()
                .filter(|item| {
                    item.get("priority")
                        .and_then(Value::as_str)
                        .and_then(|p| p.parse::<Priority>().ok())
                        .is_some_and(|p| rank(p) >= rank(min))
                })
                .cloned()
                .collect();
            value = Value::Array(kept);
            if path == "recommendations" || path.ends_with(".recommendations") {
                out.insert("recommendations".to_owned(), value.clone());
            }
        }
        out.insert("value".to_owned(), value);
    }
    for (key, path) in &config.mapping {
        out.insert(
            key.clone(),
            lookup(source, path).cloned().unwrap_or(Value::Null),
        );
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> Value {
        json!({"recommendations": [
                  {"priority": "low", "title": "a"}, {"priority": "high", "title": "b"},
                  {"priority": "critical", "title": "c"}],
               "nodes": {"ctx": {"checks": [{"checker": "memory", "metrics": {"percent": 93.5}}]}}})
    }

    #[test]
    fn filters_recommendations_by_minimum_priority() {
        let c = TransformConfig::parse(&json!({"filter_priority": "high"})).unwrap();
        let out = run(&c, &state()).unwrap();
        let titles: Vec<_> = out["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].clone())
            .collect();
        assert_eq!(titles, [json!("b"), json!("c")]);
    }

    #[test]
    fn extracts_and_maps_from_a_source_node() {
        let c = TransformConfig::parse(&json!({"source_node": "ctx", "extract": "checks.0.metrics.percent",
                                               "mapping": {"which": "checks.0.checker", "none": "x.y"}}))
        .unwrap();
        let out = run(&c, &state()).unwrap();
        assert_eq!(out, json!({"value": 93.5, "which": "memory", "none": null}));
    }

    #[test]
    fn bad_configs_and_missing_paths_are_errors() {
        assert!(TransformConfig::parse(&json!({"extract": "a..b"})).is_err());
        assert!(TransformConfig::parse(&json!({"filter_priority": "urgent"})).is_err());
        assert!(TransformConfig::parse(&json!({"nope": 1})).is_err());
        let c = TransformConfig::parse(&json!({"source_node": "missing"})).unwrap();
        assert!(run(&c, &state()).is_err());
    }
}
