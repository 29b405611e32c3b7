//! `GET /admin/`: open incidents by severity, runs by status in the last 24 h, queue depth and
//! recent failed deliveries.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::json;
use tocsin_core::domain::{DeliveryStatus, IncidentStatus, Severity};
use tocsin_core::store::{self, IncidentFilter, RunFilter};

use super::{Page, Params, SCAN_LIMIT, Session, params, render};
use crate::AppState;

/// The dashboard.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let data = state
        .tocsin
        .store()
        .run(|c| {
            let mut by_severity = Vec::new();
            let mut capped = false;
            for sev in Severity::ALL.iter().rev() {
                let mut row = vec![sev.as_str().to_owned()];
                for st in [IncidentStatus::Open, IncidentStatus::Acknowledged] {
                    let n = store::list_incidents(
                        c,
                        &IncidentFilter {
                            status: Some(st),
                            severity: Some(*sev),
                            limit: SCAN_LIMIT,
                            offset: 0,
                        },
                    )?
                    .len();
                    capped |= n as i64 >= SCAN_LIMIT;
                    row.push(n.to_string());
                }
                by_severity.push(row);
            }
            let since = chrono::Utc::now() - chrono::Duration::hours(24);
            let runs = store::list_pipeline_runs(
                c,
                &RunFilter {
                    limit: SCAN_LIMIT,
                    ..RunFilter::default()
                },
            )?;
            let mut by_status: Vec<(String, usize)> = Vec::new();
            for r in runs.iter().filter(|r| r.created_at >= since) {
                match by_status.iter_mut().find(|(s, _)| s == r.status.as_str()) {
                    Some((_, n)) => *n += 1,
                    None => by_status.push((r.status.as_str().to_owned(), 1)),
                }
            }
            by_status.sort();
            let (depth, oldest) = tocsin_core::engine::queue::depth(c)?;
            let failed: Vec<_> = store::list_deliveries(c, None, 200)?
                .into_iter()
                .filter(|d| d.status == DeliveryStatus::Failed)
                .take(20)
                .collect();
            Ok((by_severity, capped, by_status, depth, oldest, failed))
        })
        .await?;
    let (by_severity, capped, by_status, depth, oldest, failed) = data;
    let flash = p.get("flash").cloned();
    Ok(render(
        StatusCode::OK,
        "dashboard.html",
        Some(&session),
        json!({
            "nav": "dashboard",
            "flash": flash,
            "by_severity": by_severity,
            "capped": capped,
            "runs_by_status": by_status,
            "queue_depth": depth,
            "oldest_pending_seconds": oldest.map(|s| s.round()),
            "failed_deliveries": failed,
        }),
    ))
}
