//! The prompt: the incident, its alerts (bounded) and the latest checks, asking for JSON.

use std::fmt::Write;

use tocsin_core::plugin::AnalysisInput;

use crate::text::cut;

/// The system message. It names JSON, as OpenAI's JSON mode requires.
pub const SYSTEM_PROMPT: &str = "You are an experienced site reliability engineer responding to a \
production incident. From the incident, its alerts and the latest health check results, give \
specific, actionable recommendations that address the probable root cause and its remediation. \
Respond with a JSON object only, of the form {\"recommendations\": [{\"type\": one of \"memory\", \
\"disk\", \"cpu\", \"process\", \"network\", \"general\"; \"priority\": one of \"low\", \"medium\", \
\"high\", \"critical\"; \"title\": a short line; \"description\": what is wrong and why; \
\"actions\": [concrete steps or commands]}]}. Give at most 5 recommendations, most urgent first. \
Base them on the facts given; do not invent measurements.";

/// Alerts shown at most.
const MAX_ALERTS: usize = 10;
/// Checks shown at most.
const MAX_CHECKS: usize = 20;
/// The whole user message, at most.
const MAX_PROMPT_CHARS: usize = 12_000;

/// The user message for an input.
pub fn user_prompt(input: &AnalysisInput) -> String {
    let mut s = String::new();
    match &input.incident {
        Some(i) => {
            let _ = writeln!(s, "Incident #{}: {}", i.id, cut(&i.title, 300));
            let _ = writeln!(
                s,
                "Severity: {}; status: {}; opened: {}",
                i.severity,
                i.status,
                i.created_at.to_rfc3339()
            );
            if !i.description.is_empty() {
                let _ = writeln!(s, "Description: {}", cut(&i.description, 1000));
            }
            if i.metadata.as_object().is_some_and(|m| !m.is_empty()) {
                let meta = tocsin_core::secret::redact(&i.metadata).to_string();
                let _ = writeln!(s, "Metadata: {}", cut(&meta, 500));
            }
        }
        None => {
            let _ = writeln!(
                s,
                "No incident: review the health of this system from the check results."
            );
        }
    }
    if !input.alerts.is_empty() {
        let _ = writeln!(
            s,
            "\nAlerts ({} total, first {} shown):",
            input.alerts.len(),
            input.alerts.len().min(MAX_ALERTS)
        );
        for a in input.alerts.iter().take(MAX_ALERTS) {
            let labels: Vec<String> = a
                .labels
                .iter()
                .filter(|(k, _)| !tocsin_core::secret::is_secret_key(k))
                .take(10)
                .map(|(k, v)| format!("{k}={}", cut(v, 80)))
                .collect();
            let _ = write!(s, "- {} [{}, {}]", cut(&a.name, 120), a.severity, a.status);
            if !a.description.is_empty() {
                let _ = write!(s, ": {}", cut(&a.description, 300));
            }
            if !labels.is_empty() {
                let _ = write!(s, " labels: {}", labels.join(", "));
            }
            s.push('\n');
        }
    }
    if !input.checks.is_empty() {
        let _ = writeln!(s, "\nLatest health checks:");
        for c in input.checks.iter().take(MAX_CHECKS) {
            let metrics = tocsin_core::secret::redact(&c.metrics).to_string();
            let _ = write!(
                s,
                "- {}: {} - {}",
                c.checker,
                c.status,
                cut(&c.message, 200)
            );
            if let Some(e) = &c.error {
                let _ = write!(s, " (error: {})", cut(e, 200));
            }
            let _ = writeln!(s, " metrics: {}", cut(&metrics, 400));
        }
    }
    s.push_str("\nAnswer with the JSON object described.");
    cut(&s, MAX_PROMPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tocsin_core::domain::{CheckResult, CheckStatus};

    #[test]
    fn checks_are_bounded_and_secrets_never_reach_the_prompt() {
        let checks: Vec<CheckResult> = (0..30)
            .map(|i| CheckResult {
                checker: format!("c{i}"),
                status: CheckStatus::Warning,
                message: "x".repeat(1000),
                metrics: json!({"percent": 91.5, "api_key": "sk-secret"}),
                error: None,
                warning_threshold: None,
                critical_threshold: None,
                duration_ms: 1.0,
                skipped: false,
            })
            .collect();
        let p = user_prompt(&AnalysisInput {
            incident: None,
            alerts: vec![],
            checks,
            options: json!({}),
        });
        assert!(
            p.contains("- c19: warning") && !p.contains("- c20:"),
            "checks are capped at 20"
        );
        assert!(!p.contains("sk-secret") && p.contains("91.5"));
        assert!(p.chars().count() <= MAX_PROMPT_CHARS);
        assert!(SYSTEM_PROMPT.contains("JSON"));
    }
}
