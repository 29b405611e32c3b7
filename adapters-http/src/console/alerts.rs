//! Alerts: the filtered list and the alert page (labels, annotations, history, raw payload).

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::store::{self, console::AlertQuery};

use super::form::param;
use super::{
    ConsoleError, Page, Params, Session, enum_param, incident_param, page_number, page_request,
    pager, params, pretty, render,
};
use crate::AppState;

/// `GET /admin/alerts?status=&severity=&source=&q=&incident=&page=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let status = enum_param::<AlertStatus>(&p, "status")?;
    let severity = enum_param::<Severity>(&p, "severity")?;
    let (source, q) = (param(&p, "source"), param(&p, "q"));
    let incident = param(&p, "incident");
    let incident_id = incident_param(&p)?;
    let page = page_number(&p)?;
    let filter = AlertQuery {
        status,
        severity,
        source: Some(source.clone()),
        text: Some(q.clone()),
        incident_id,
    };
    let listing = state
        .tocsin
        .store()
        .run(move |c| store::console::alerts(c, &filter, page_request(page)))
        .await?;
    let filters = [
        ("status", param(&p, "status")),
        ("severity", param(&p, "severity")),
        ("source", source.clone()),
        ("q", q.clone()),
        ("incident", incident.clone()),
    ];
    let pager = pager(page, listing.total, "/admin/alerts", &filters);
    Ok(render(
        StatusCode::OK,
        "alerts.html",
        Some(&session),
        json!({
            "nav": "alerts",
            "alerts": listing.rows,
            "pager": pager,
            "filter": {"status": param(&p, "status"), "severity": param(&p, "severity"),
                       "source": source, "q": q, "incident": incident},
            "statuses": AlertStatus::ALL,
            "severities": Severity::ALL,
            "sources": state.tocsin.plugins().ingestors.names(),
        }),
    ))
}

/// Labels with secret-named values redacted, as `(name, value)` rows.
fn rows(labels: &Labels) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| {
            let v = if tocsin_core::secret::is_secret_key(k) {
                tocsin_core::secret::REDACTED.to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// `GET /admin/alerts/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let id: i64 = id
        .parse()
        .map_err(|_| ConsoleError::not_found(format!("alert {id:?} not found")))?;
    let (alert, history) = state
        .tocsin
        .store()
        .run(move |c| Ok((store::get_alert(c, id)?, store::list_alert_history(c, id)?)))
        .await?;
    let history: Vec<Value> = history
        .into_iter()
        .map(|h| {
            json!({"event": h.event, "old_status": h.old_status, "new_status": h.new_status,
                   "created_at": h.created_at, "details": pretty(&h.details)})
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        "alert.html",
        Some(&session),
        json!({
            "nav": "alerts",
            "alert": alert,
            "labels": rows(&alert.labels),
            "annotations": rows(&alert.annotations),
            "raw_payload": pretty(&alert.raw_payload),
            "history": history,
        }),
    ))
}
