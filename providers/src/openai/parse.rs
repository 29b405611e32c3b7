//! Robust parsing of a model's answer into recommendations, with bounded sizes.
//!
//! Accepted: `{"recommendations": [...]}`, a bare list, a single recommendation object, any of
//! them inside a Markdown code fence or surrounded by prose. Unknown `type` becomes `general`,
//! unknown `priority` becomes `medium` (common synonyms are mapped first: `urgent` -> critical,
//! `moderate` -> medium...). Items with neither title nor description are dropped.

use serde_json::{Map, Value};
use tocsin_core::domain::{Priority, Recommendation, RecommendationType};
use tocsin_core::{Error, ErrorKind, Result};

use crate::text::cut;

/// Recommendations kept at most.
pub const MAX_ITEMS: usize = 20;
const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 2000;
const MAX_ACTIONS: usize = 10;
const MAX_ACTION: usize = 500;
const MAX_DETAILS_BYTES: usize = 4096;

/// Parses a model's answer. No usable JSON is a temporary `Upstream` error (models are not
/// deterministic; another attempt may parse).
pub fn parse_recommendations(content: &str) -> Result<Vec<Recommendation>> {
    let value = extract_json(content).ok_or_else(|| {
        Error::new(
            ErrorKind::Upstream,
            format!(
                "the model's answer holds no JSON recommendations: {:?}",
                cut(content.trim(), 200)
            ),
        )
    })?;
    let items: Vec<Value> = match value {
        Value::Array(items) => items,
        Value::Object(mut map) => match map
            .remove("recommendations")
            .or_else(|| map.remove("items"))
        {
            Some(Value::Array(items)) => items,
            Some(Value::Object(one)) => vec![Value::Object(one)],
            Some(_) => Vec::new(),
            None => vec![Value::Object(map)],
        },
        _ => Vec::new(),
    };
    let total = items.len();
    let recs: Vec<Recommendation> = items
        .iter()
        .filter_map(|v| v.as_object().and_then(item))
        .take(MAX_ITEMS)
        .collect();
    if recs.is_empty() && total > 0 {
        return Err(Error::new(
            ErrorKind::Upstream,
            format!(
                "none of the {total} item(s) in the model's answer is a recommendation (no title or description)"
            ),
        ));
    }
    if recs.is_empty() && !looks_like_empty_list(content) {
        return Err(Error::new(
            ErrorKind::Upstream,
            "the model's answer holds no recommendations".to_owned(),
        ));
    }
    Ok(recs)
}

fn looks_like_empty_list(content: &str) -> bool {
    matches!(extract_json(content), Some(Value::Array(a)) if a.is_empty())
        || matches!(extract_json(content), Some(Value::Object(m)) if m.get("recommendations").is_some_and(|r| r.as_array().is_some_and(Vec::is_empty)))
}

/// The JSON in an answer: the whole text, a fenced block, or the outermost `{...}` / `[...]`.
fn extract_json(content: &str) -> Option<Value> {
    let t = content.trim().trim_start_matches('\u{feff}');
    if let Ok(v) = serde_json::from_str::<Value>(t)
        && (v.is_object() || v.is_array())
    {
        return Some(v);
    }
    if let Some(start) = t.find("```") {
        let after = &t[start + 3..];
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(0);
        let body = &after[body_start..];
        let body = body.find("```").map(|end| &body[..end]).unwrap_or(body);
        if let Ok(v) = serde_json::from_str::<Value>(body.trim())
            && (v.is_object() || v.is_array())
        {
            return Some(v);
        }
    }
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(a), Some(b)) = (t.find(open), t.rfind(close))
            && a < b
            && let Ok(v) = serde_json::from_str::<Value>(&t[a..=b])
        {
            return Some(v);
        }
    }
    None
}

fn text(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match map.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    })
}

fn item(map: &Map<String, Value>) -> Option<Recommendation> {
    let title = text(map, &["title", "summary", "name"]);
    let description = text(
        map,
        &["description", "details_text", "explanation", "reason"],
    );
    if title.is_none() && description.is_none() {
        return None;
    }
    let title = title.unwrap_or_else(|| cut(description.as_deref().unwrap_or_default(), 80));
    let actions = match map
        .get("actions")
        .or_else(|| map.get("steps"))
        .or_else(|| map.get("action"))
    {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .take(MAX_ACTIONS)
            .map(|s| cut(&s, MAX_ACTION))
            .collect(),
        Some(Value::String(s)) if !s.trim().is_empty() => vec![cut(s.trim(), MAX_ACTION)],
        _ => Vec::new(),
    };
    let details = match map.get("details") {
        Some(v @ Value::Object(_)) if v.to_string().len() <= MAX_DETAILS_BYTES => v.clone(),
        Some(Value::Object(_)) => serde_json::json!({"truncated": true}),
        _ => Value::Object(Map::new()),
    };
    Some(Recommendation {
        kind: kind(
            map.get("type")
                .or_else(|| map.get("category"))
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        priority: priority(
            map.get("priority")
                .or_else(|| map.get("severity"))
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        title: cut(&title, MAX_TITLE),
        description: cut(description.as_deref().unwrap_or_default(), MAX_DESCRIPTION),
        details,
        actions,
        incident_id: None,
    })
}

/// A recommendation type from a model's word; unknown is `general`.
pub fn kind(s: &str) -> RecommendationType {
    match s.trim().to_ascii_lowercase().as_str() {
        "memory" | "mem" | "ram" | "oom" => RecommendationType::Memory,
        "disk" | "storage" | "filesystem" | "fs" | "space" => RecommendationType::Disk,
        "cpu" | "processor" | "load" | "compute" => RecommendationType::Cpu,
        "process" | "service" | "application" | "app" => RecommendationType::Process,
        "network" | "net" | "dns" | "connectivity" => RecommendationType::Network,
        _ => RecommendationType::General,
    }
}

/// A priority from a model's word; unknown is `medium`.
pub fn priority(s: &str) -> Priority {
    match s.trim().to_ascii_lowercase().as_str() {
        "critical" | "urgent" | "emergency" | "p1" | "blocker" => Priority::Critical,
        "high" | "major" | "important" | "p2" => Priority::High,
        "low" | "minor" | "info" | "informational" | "p4" => Priority::Low,
        _ => Priority::Medium,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shapes_parse() {
        let obj = r#"{"recommendations": [{"type": "memory", "priority": "high", "title": "Restart java", "description": "Heap grows", "actions": ["systemctl restart app"]}]}"#;
        let fenced = format!("Here you go:\n```json\n{obj}\n```\nHope it helps");
        let single = r#"{"type": "disk", "priority": "urgent", "title": "Clean /var/log", "description": "98% full", "actions": "journalctl --vacuum-size=200M"}"#;
        let list =
            r#"[{"type": "quantum", "priority": "whenever", "title": "T", "description": "D"}]"#;
        let a = parse_recommendations(obj).unwrap();
        assert_eq!(
            (a[0].kind, a[0].priority, a[0].actions.len()),
            (RecommendationType::Memory, Priority::High, 1)
        );
        assert_eq!(parse_recommendations(&fenced).unwrap(), a);
        let s = parse_recommendations(single).unwrap();
        assert_eq!(
            (s[0].kind, s[0].priority),
            (RecommendationType::Disk, Priority::Critical)
        );
        assert_eq!(s[0].actions, vec!["journalctl --vacuum-size=200M"]);
        let l = parse_recommendations(list).unwrap();
        assert_eq!(
            (l[0].kind, l[0].priority),
            (RecommendationType::General, Priority::Medium)
        );
        assert!(
            parse_recommendations(r#"{"recommendations": []}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn garbage_is_an_upstream_error_and_sizes_are_bounded() {
        for bad in [
            "I think you should reboot.",
            "",
            "{\"foo\": 1}",
            "[1, 2, 3]",
        ] {
            let err = parse_recommendations(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Upstream, "{bad:?}");
        }
        let many: Vec<Value> = (0..50)
            .map(|i| serde_json::json!({"title": "t".repeat(1000), "description": format!("d{i}"), "actions": vec!["a"; 40]}))
            .collect();
        let recs = parse_recommendations(&Value::Array(many).to_string()).unwrap();
        assert_eq!(recs.len(), MAX_ITEMS);
        assert!(recs[0].title.chars().count() <= MAX_TITLE && recs[0].actions.len() == MAX_ACTIONS);
    }
}
