//! Check results as alerts: what `check-and-alert` hands to the INGEST write path.
//!
//! One alert per checker and host, source [`ALERT_SOURCE`], with a fingerprint stable per checker
//! and host ([`fingerprint`]). Warning and critical fire at their severity; unknown fires as a
//! warning (we cannot vouch for that part of the machine); ok resolves an existing firing alert
//! and creates nothing new ([`plan_alerts`] looks the alerts up to decide). Skipped checks say
//! nothing about the machine and produce no alert.

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, CheckResult, CheckStatus, Labels, Severity};
use tocsin_core::plugin::NormalizedAlert;
use tocsin_core::store::{self, Store};

/// The `source` of every alert made from a check.
pub const ALERT_SOURCE: &str = "tocsin-checkers";

/// The fingerprint of the alert for `checker` on `hostname`: the first 32 hex digits of
/// SHA-256 over `"tocsin-checkers\n<checker>\n<hostname>"`. Stable across runs and versions.
pub fn fingerprint(checker: &str, hostname: &str) -> String {
    let digest = Sha256::digest(format!("{ALERT_SOURCE}\n{checker}\n{hostname}").as_bytes());
    hex::encode(digest)[..32].to_owned()
}

/// The alert name for a checker (`MEMORY Check Alert`, as the original named them).
pub fn alert_name(checker: &str) -> String {
    format!("{} Check Alert", checker.to_uppercase())
}

/// The alert one result stands for: firing for warning / critical / unknown, resolved for ok,
/// `None` for a skipped check.
pub fn alert_from_check(
    result: &CheckResult,
    hostname: &str,
    labels: &Labels,
) -> Option<NormalizedAlert> {
    if result.skipped {
        return None;
    }
    let (status, severity) = match result.status {
        CheckStatus::Critical => (AlertStatus::Firing, Severity::Critical),
        CheckStatus::Warning | CheckStatus::Unknown => (AlertStatus::Firing, Severity::Warning),
        CheckStatus::Ok => (AlertStatus::Resolved, Severity::Info),
    };
    let mut all_labels = labels.clone();
    all_labels.insert("checker".to_owned(), result.checker.clone());
    all_labels.insert("hostname".to_owned(), hostname.to_owned());
    all_labels.insert("instance".to_owned(), hostname.to_owned());
    let mut annotations = Labels::new();
    annotations.insert("summary".to_owned(), result.message.clone());
    annotations.insert("check_status".to_owned(), result.status.to_string());
    if let Some(e) = &result.error {
        annotations.insert("error".to_owned(), e.clone());
    }
    let description = match &result.error {
        Some(e) => format!("{}\nError: {e}", result.message),
        None => result.message.clone(),
    };
    let now = Utc::now();
    Some(NormalizedAlert {
        fingerprint: fingerprint(&result.checker, hostname),
        name: alert_name(&result.checker),
        status,
        severity,
        description,
        labels: all_labels,
        annotations,
        started_at: Some(now),
        ended_at: (status == AlertStatus::Resolved).then_some(now),
        raw_payload: json!({
            "checker": result.checker,
            "hostname": hostname,
            "status": result.status,
            "message": result.message,
            "metrics": result.metrics,
            "error": result.error,
            "warning_threshold": result.warning_threshold,
            "critical_threshold": result.critical_threshold,
        })
        .into(),
        acknowledged: false,
    })
}

/// One alert per (not skipped) result, firing or resolved; see [`plan_alerts`] to keep only
/// resolutions of alerts that exist.
pub fn alerts_from_checks(
    results: &[CheckResult],
    hostname: &str,
    labels: &Labels,
) -> Vec<NormalizedAlert> {
    results
        .iter()
        .filter_map(|r| alert_from_check(r, hostname, labels))
        .collect()
}

/// What a check result will do to its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    /// No alert yet: one is created.
    Create,
    /// The alert is firing: it is updated (severity, description).
    Update,
    /// The alert was resolved and fires again.
    Refire,
    /// The alert is firing and the check is ok again: it is resolved.
    Resolve,
    /// Nothing: an ok check with no firing alert, or a skipped check.
    Nothing,
}

/// One result's plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAlert {
    /// Checker name.
    pub checker: String,
    /// The check's status.
    pub status: CheckStatus,
    /// Whether the check was skipped.
    pub skipped: bool,
    /// What will happen.
    pub action: AlertAction,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The existing alert, if any.
    pub existing_alert_id: Option<i64>,
    /// The alert to ingest (`None` when the action is `nothing`).
    pub alert: Option<NormalizedAlert>,
}

impl PlannedAlert {
    /// The plan for a result given the stored alert's status, if one exists (pure).
    pub fn decide(
        result: &CheckResult,
        hostname: &str,
        labels: &Labels,
        existing: Option<(i64, AlertStatus)>,
    ) -> Self {
        let alert = alert_from_check(result, hostname, labels);
        let action = match (&alert, existing.map(|e| e.1)) {
            (None, _) => AlertAction::Nothing,
            (Some(a), None) if a.status == AlertStatus::Firing => AlertAction::Create,
            (Some(a), Some(AlertStatus::Firing)) if a.status == AlertStatus::Firing => {
                AlertAction::Update
            }
            (Some(a), Some(AlertStatus::Resolved)) if a.status == AlertStatus::Firing => {
                AlertAction::Refire
            }
            (Some(_), Some(AlertStatus::Firing)) => AlertAction::Resolve,
            (Some(_), _) => AlertAction::Nothing,
        };
        Self {
            checker: result.checker.clone(),
            status: result.status,
            skipped: result.skipped,
            action,
            fingerprint: fingerprint(&result.checker, hostname),
            existing_alert_id: existing.map(|e| e.0),
            alert: if action == AlertAction::Nothing {
                None
            } else {
                alert
            },
        }
    }
}

/// Looks up each result's alert (`find_alert` by source and fingerprint) and decides what to do.
pub async fn plan_alerts(
    store: &Store,
    results: &[CheckResult],
    hostname: &str,
    labels: &Labels,
) -> Result<Vec<PlannedAlert>> {
    let fingerprints: Vec<String> = results
        .iter()
        .map(|r| fingerprint(&r.checker, hostname))
        .collect();
    let existing = store
        .run(move |conn| {
            fingerprints
                .iter()
                .map(|fp| {
                    store::find_alert(conn, ALERT_SOURCE, fp).map(|a| a.map(|a| (a.id, a.status)))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
    Ok(results
        .iter()
        .zip(existing)
        .map(|(r, e)| PlannedAlert::decide(r, hostname, labels, e))
        .collect())
}

/// The alerts of a plan that have something to do, ready for `ingest_alerts`.
pub fn alerts_to_ingest(plan: &[PlannedAlert]) -> Vec<NormalizedAlert> {
    plan.iter().filter_map(|p| p.alert.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn result(checker: &str, status: CheckStatus) -> CheckResult {
        CheckResult {
            checker: checker.into(),
            status,
            message: format!("{checker} is {status}"),
            metrics: json!({"percent": 91.0}),
            error: (status == CheckStatus::Unknown).then(|| "cannot read".to_owned()),
            warning_threshold: Some(70.0),
            critical_threshold: Some(90.0),
            duration_ms: 1.0,
            skipped: false,
        }
    }

    #[test]
    fn fingerprints_are_stable_per_checker_and_host() {
        assert_eq!(fingerprint("cpu", "web-1"), fingerprint("cpu", "web-1"));
        assert_ne!(fingerprint("cpu", "web-1"), fingerprint("cpu", "web-2"));
        assert_ne!(fingerprint("cpu", "web-1"), fingerprint("memory", "web-1"));
        // Pinned: changing the recipe would orphan every stored alert.
        assert_eq!(fingerprint("cpu", "web-1").len(), 32);
        assert_eq!(
            fingerprint("cpu", "web-1"),
            hex::encode(Sha256::digest(b"tocsin-checkers\ncpu\nweb-1"))[..32]
        );
    }

    #[test]
    fn statuses_map_to_alerts() {
        let mut labels = Labels::new();
        labels.insert("env".into(), "prod".into());
        let a =
            alert_from_check(&result("memory", CheckStatus::Critical), "web-1", &labels).unwrap();
        assert_eq!(
            (a.status, a.severity),
            (AlertStatus::Firing, Severity::Critical)
        );
        assert_eq!(a.name, "MEMORY Check Alert");
        assert_eq!(a.labels["env"], "prod");
        assert_eq!(a.labels["checker"], "memory");
        assert_eq!(a.labels["hostname"], "web-1");
        assert_eq!(a.raw_payload.to_value()["metrics"]["percent"], 91.0);
        let w = alert_from_check(&result("cpu", CheckStatus::Warning), "h", &labels).unwrap();
        assert_eq!(
            (w.status, w.severity),
            (AlertStatus::Firing, Severity::Warning)
        );
        let u = alert_from_check(&result("disk", CheckStatus::Unknown), "h", &labels).unwrap();
        assert_eq!(
            (u.status, u.severity),
            (AlertStatus::Firing, Severity::Warning),
            "unknown fires as warning"
        );
        assert!(u.description.contains("Error: cannot read"));
        let ok = alert_from_check(&result("cpu", CheckStatus::Ok), "h", &labels).unwrap();
        assert_eq!(ok.status, AlertStatus::Resolved);
        assert!(ok.ended_at.is_some());
        let mut skipped = result("cpu", CheckStatus::Unknown);
        skipped.skipped = true;
        assert!(
            alert_from_check(&skipped, "h", &labels).is_none(),
            "a skipped check says nothing"
        );
    }

    #[test]
    fn ok_resolves_only_a_firing_alert() {
        let l = Labels::new();
        let ok = result("cpu", CheckStatus::Ok);
        assert_eq!(
            PlannedAlert::decide(&ok, "h", &l, None).action,
            AlertAction::Nothing
        );
        assert!(PlannedAlert::decide(&ok, "h", &l, None).alert.is_none());
        assert_eq!(
            PlannedAlert::decide(&ok, "h", &l, Some((3, AlertStatus::Resolved))).action,
            AlertAction::Nothing
        );
        let p = PlannedAlert::decide(&ok, "h", &l, Some((3, AlertStatus::Firing)));
        assert_eq!(p.action, AlertAction::Resolve);
        assert_eq!(p.existing_alert_id, Some(3));
        let crit = result("cpu", CheckStatus::Critical);
        assert_eq!(
            PlannedAlert::decide(&crit, "h", &l, None).action,
            AlertAction::Create
        );
        assert_eq!(
            PlannedAlert::decide(&crit, "h", &l, Some((3, AlertStatus::Firing))).action,
            AlertAction::Update
        );
        assert_eq!(
            PlannedAlert::decide(&crit, "h", &l, Some((3, AlertStatus::Resolved))).action,
            AlertAction::Refire
        );
        let plan = [
            PlannedAlert::decide(&ok, "h", &l, None),
            PlannedAlert::decide(&crit, "h", &l, None),
        ];
        assert_eq!(alerts_to_ingest(&plan).len(), 1);
        let v: Value = serde_json::to_value(&plan[1]).unwrap();
        assert_eq!(v["action"], "create");
    }

    #[tokio::test]
    async fn plan_looks_up_stored_alerts_on_every_backend() {
        for db in tocsin_core::store::testing::all().await {
            let fp = fingerprint("cpu", "web-1");
            let stored = db
                .store
                .write(move |c| {
                    store::insert_alert(
                        c,
                        store::NewAlert {
                            fingerprint: fp,
                            source: ALERT_SOURCE.into(),
                            name: alert_name("cpu"),
                            severity: Severity::Warning,
                            status: AlertStatus::Firing,
                            description: String::new(),
                            labels: Labels::new(),
                            annotations: Labels::new(),
                            raw_payload: json!({}).into(),
                            trace_id: "t".into(),
                            started_at: Utc::now(),
                            ended_at: None,
                            incident_id: None,
                        },
                    )
                })
                .await
                .unwrap();
            let results = [
                result("cpu", CheckStatus::Ok),
                result("memory", CheckStatus::Ok),
                result("disk", CheckStatus::Critical),
            ];
            let plan = plan_alerts(&db.store, &results, "web-1", &Labels::new())
                .await
                .unwrap();
            assert_eq!(plan[0].action, AlertAction::Resolve, "{}", db.label);
            assert_eq!(plan[0].existing_alert_id, Some(stored.id));
            assert_eq!(
                plan[1].action,
                AlertAction::Nothing,
                "{}: no alert to resolve, none created",
                db.label
            );
            assert_eq!(plan[2].action, AlertAction::Create, "{}", db.label);
            assert_eq!(alerts_to_ingest(&plan).len(), 2);
        }
    }
}
