//! `GET /admin/`: open incidents by severity, runs by status in the last 24 h, queue depth and
//! recent failed deliveries, each counted by the database over every row.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::json;
use tocsin_core::store;

use super::{Page, Params, Session, params, render};
use crate::AppState;

/// The window of the run and delivery figures.
const WINDOW_HOURS: i64 = 24;
/// The most failed deliveries listed (the count covers all of them).
const FAILED_SHOWN: i64 = 20;

/// The dashboard.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let since = chrono::Utc::now() - chrono::Duration::hours(WINDOW_HOURS);
    let d = state
        .tocsin
        .store()
        .run(move |c| store::console::dashboard(c, since, FAILED_SHOWN))
        .await?;
    let by_severity: Vec<_> = d
        .active_incidents
        .iter()
        .map(|r| (r.severity, r.open, r.acknowledged))
        .collect();
    let flash = p.get("flash").cloned();
    Ok(render(
        StatusCode::OK,
        "dashboard.html",
        Some(&session),
        json!({
            "nav": "dashboard",
            "flash": flash,
            "by_severity": by_severity,
            "runs_by_status": d.runs_by_status,
            "queue_depth": d.queue_depth,
            "oldest_pending_seconds": d.oldest_waiting_seconds.map(|s| s.round()),
            "failed_total": d.failed_deliveries.total,
            "failed_deliveries": d.failed_deliveries.recent,
        }),
    ))
}
