//! Deciding what to analyse from an incident: its labels first, then failed checks, then words.

use std::collections::BTreeMap;

use tocsin_core::domain::CheckStatus;
use tocsin_core::plugin::AnalysisInput;

use crate::options::{AnalysisKind, RequestOptions};

/// What the local provider will measure, and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The analyses to run; empty means a general scan.
    pub kinds: Vec<AnalysisKind>,
    /// The folder a disk analysis should scan, when the request or the incident names one.
    pub disk_path: Option<String>,
    /// Whether the request asked for the disk analysis or named `disk_path` (a path that cannot
    /// be scanned is then an error); otherwise the path came from the incident, and one that
    /// cannot be scanned here falls back to the first root.
    pub path_requested: bool,
    /// Why, one line per signal (shown in the recommendation's details).
    pub reasons: Vec<String>,
}

/// A label naming the checker or resource is the strongest signal.
const LABEL: u32 = 100;
/// A failed check of that resource, or a label only that resource carries (`mountpoint`).
const CHECK: u32 = 10;
/// A word in the title, a description or an alert name.
const WORD: u32 = 1;

/// Labels whose value names the resource (`checker=memory`, `resource=disk`).
const KIND_LABELS: &[&str] = &[
    "checker",
    "check",
    "resource",
    "category",
    "type",
    "component",
    "subsystem",
    "kind",
];
/// Labels carrying the filesystem an alert is about (node_exporter's `mountpoint`).
const PATH_LABELS: &[&str] = &["mountpoint", "mount_point", "mount", "path"];

/// Decides from the request options, the incident, its alerts and the checks.
pub fn decide(input: &AnalysisInput, opts: &RequestOptions) -> Plan {
    let mut plan = Plan {
        disk_path: opts.path.clone(),
        path_requested: opts.path.is_some(),
        ..Plan::default()
    };
    if let Some(kinds) = &opts.analyses {
        let mut kinds = kinds.clone();
        kinds.sort();
        kinds.dedup();
        plan.reasons.push(format!(
            "requested: {}",
            kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        plan.kinds = kinds;
        // An explicit disk analysis must be able to scan: its errors are the caller's to see.
        plan.path_requested = true;
        return plan;
    }
    let Some(incident) = &input.incident else {
        if plan.disk_path.is_some() {
            plan.kinds = vec![AnalysisKind::Disk];
            plan.reasons.push("a path was given".to_owned());
        } else {
            plan.reasons.push("no incident: general scan".to_owned());
        }
        return plan;
    };

    let mut scores: BTreeMap<AnalysisKind, u32> = BTreeMap::new();
    let mut reasons: BTreeMap<AnalysisKind, Vec<String>> = BTreeMap::new();
    let mut add = |kind: AnalysisKind, weight: u32, why: String| {
        *scores.entry(kind).or_default() += weight;
        let list = reasons.entry(kind).or_default();
        if list.len() < 5 && !list.contains(&why) {
            list.push(why);
        }
    };

    for alert in &input.alerts {
        for (k, v) in &alert.labels {
            let key = k.to_ascii_lowercase();
            if KIND_LABELS.contains(&key.as_str()) {
                for word in words(v) {
                    if let Some(kind) = kind_of_word(&word) {
                        add(
                            kind,
                            LABEL,
                            format!("label {k}={v} on alert {}", alert.name),
                        );
                    }
                }
            }
            if PATH_LABELS.contains(&key.as_str()) && v.starts_with('/') {
                add(
                    AnalysisKind::Disk,
                    CHECK,
                    format!("label {k}={v} on alert {}", alert.name),
                );
                if plan.disk_path.is_none() {
                    plan.disk_path = Some(v.clone());
                }
            }
        }
    }
    if plan.disk_path.is_none()
        && let Some(p) = incident
            .metadata
            .get("path")
            .and_then(|v| v.as_str())
            .filter(|p| p.starts_with('/'))
    {
        plan.disk_path = Some(p.to_owned());
    }
    for check in &input.checks {
        if matches!(check.status, CheckStatus::Warning | CheckStatus::Critical)
            && let Some(kind) = words(&check.checker).iter().find_map(|w| kind_of_word(w))
        {
            add(
                kind,
                CHECK,
                format!("check {} is {}", check.checker, check.status),
            );
        }
    }
    let mut text = vec![incident.title.clone(), incident.description.clone()];
    for alert in &input.alerts {
        text.push(alert.name.clone());
        text.push(alert.description.clone());
    }
    for t in &text {
        let ws = words(t);
        for (i, w) in ws.iter().enumerate() {
            let phrase_oom = w == "out"
                && ws.get(i + 1).is_some_and(|n| n == "of")
                && ws.get(i + 2).is_some_and(|n| n == "memory");
            if phrase_oom {
                add(
                    AnalysisKind::Memory,
                    WORD,
                    "words \"out of memory\"".to_owned(),
                );
            } else if let Some(kind) = kind_of_word(w) {
                add(kind, WORD, format!("word {w:?}"));
            }
        }
    }

    let best = scores.values().copied().max().unwrap_or(0);
    // Only the strongest class of evidence counts: a `checker=memory` label outweighs any number
    // of disk words in the title.
    let floor = if best >= LABEL {
        LABEL
    } else if best >= CHECK {
        CHECK
    } else {
        WORD
    };
    for (kind, score) in &scores {
        if *score >= floor {
            plan.kinds.push(*kind);
            plan.reasons
                .extend(reasons.remove(kind).unwrap_or_default());
        }
    }
    if plan.kinds.is_empty() {
        plan.reasons
            .push("nothing in the incident names memory, CPU or disk: general scan".to_owned());
    }
    plan
}

/// Lower-case words, with CamelCase split (`HostOutOfMemory` -> host, out, of, memory).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in text.split(|c: char| !c.is_alphanumeric()) {
        let mut current = String::new();
        let mut prev_lower = false;
        for c in chunk.chars() {
            if c.is_uppercase() && prev_lower && !current.is_empty() {
                out.push(std::mem::take(&mut current).to_lowercase());
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            current.push(c);
        }
        if !current.is_empty() {
            out.push(current.to_lowercase());
        }
    }
    out
}

fn kind_of_word(w: &str) -> Option<AnalysisKind> {
    match w {
        "memory" | "mem" | "ram" | "oom" | "oomkill" | "oomkilled" | "swap" | "rss" | "heap" => {
            Some(AnalysisKind::Memory)
        }
        "disk" | "disks" | "filesystem" | "filesystems" | "fs" | "storage" | "space" | "inode"
        | "inodes" | "volume" | "quota" | "partition" | "mountpoint" => Some(AnalysisKind::Disk),
        "cpu" | "cpus" | "load" | "processor" | "throttling" | "throttled" | "steal" => {
            Some(AnalysisKind::Cpu)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;
    use tocsin_core::domain::*;

    fn incident(title: &str) -> Incident {
        Incident {
            id: 7,
            title: title.into(),
            status: IncidentStatus::Open,
            severity: Severity::Critical,
            description: String::new(),
            summary: String::new(),
            metadata: json!({}),
            group_key: title.into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
        }
    }

    fn alert(name: &str, labels: &[(&str, &str)]) -> Alert {
        Alert {
            id: 1,
            fingerprint: "f".into(),
            source: "alertmanager".into(),
            name: name.into(),
            severity: Severity::Critical,
            status: AlertStatus::Firing,
            description: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Labels::new(),
            raw_payload: json!({}),
            trace_id: String::new(),
            started_at: Utc::now(),
            ended_at: None,
            received_at: Utc::now(),
            updated_at: Utc::now(),
            incident_id: Some(7),
        }
    }

    fn input(title: &str, alerts: Vec<Alert>) -> AnalysisInput {
        AnalysisInput {
            incident: Some(incident(title)),
            alerts,
            checks: vec![],
            options: json!({}),
        }
    }

    #[test]
    fn a_checker_label_beats_keywords_in_the_title() {
        let i = input(
            "Disk space and filesystem pressure",
            vec![alert("Something", &[("checker", "memory")])],
        );
        let plan = decide(&i, &RequestOptions::default());
        assert_eq!(plan.kinds, vec![AnalysisKind::Memory]);
        assert!(plan.reasons[0].contains("checker=memory"), "{plan:?}");
    }

    #[test]
    fn camel_case_alert_names_and_mountpoints_are_understood() {
        assert_eq!(
            words("HostOutOfMemory"),
            vec!["host", "out", "of", "memory"]
        );
        let i = input(
            "NodeFilesystemSpaceFillingUp",
            vec![alert(
                "NodeFilesystemSpaceFillingUp",
                &[("mountpoint", "/var")],
            )],
        );
        let plan = decide(&i, &RequestOptions::default());
        assert_eq!(plan.kinds, vec![AnalysisKind::Disk]);
        assert_eq!(plan.disk_path.as_deref(), Some("/var"));
        let plan = decide(
            &input("HostHighCpuLoad on web-1", vec![]),
            &RequestOptions::default(),
        );
        assert_eq!(plan.kinds, vec![AnalysisKind::Cpu]);
        // "program" must not read as "ram".
        let plan = decide(
            &input("Program crashed", vec![]),
            &RequestOptions::default(),
        );
        assert!(plan.kinds.is_empty(), "{plan:?}");
    }

    #[test]
    fn explicit_analyses_win_and_no_incident_is_a_general_scan() {
        let opts = RequestOptions {
            analyses: Some(vec![AnalysisKind::Disk, AnalysisKind::Memory]),
            ..Default::default()
        };
        let plan = decide(&input("HighCpu", vec![]), &opts);
        assert_eq!(plan.kinds, vec![AnalysisKind::Memory, AnalysisKind::Disk]);
        let none = AnalysisInput {
            incident: None,
            alerts: vec![],
            checks: vec![],
            options: json!({}),
        };
        assert!(decide(&none, &RequestOptions::default()).kinds.is_empty());
    }
}
