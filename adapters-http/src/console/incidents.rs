//! Incidents: the filtered list, the incident page (alerts and their history, events and notes,
//! the runs it caused with their recommendations and deliveries) and the lifecycle actions.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tocsin_core::domain::{IncidentStatus, Severity};
use tocsin_core::store;
use tocsin_core::store::console::{AlertQuery, IncidentQuery, PageRequest, RunQuery};
use tocsin_ingest::service;

use super::form::param;
use super::{
    ConsoleError, FormData, Page, Params, Session, back, enum_param, field, page_number,
    page_request, pager, params, pretty, render,
};
use crate::AppState;

/// `GET /admin/incidents?status=&severity=&source=&q=&page=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let status = enum_param::<IncidentStatus>(&p, "status")?;
    let severity = enum_param::<Severity>(&p, "severity")?;
    let (source, q) = (param(&p, "source"), param(&p, "q"));
    let page = page_number(&p)?;
    let filter = IncidentQuery {
        status,
        severity,
        source: Some(source.clone()),
        text: Some(q.clone()),
    };
    let listing = state
        .tocsin
        .store()
        .run(move |c| store::console::incidents(c, &filter, page_request(page)))
        .await?;
    let filters = [
        ("status", param(&p, "status")),
        ("severity", param(&p, "severity")),
        ("source", source.clone()),
        ("q", q.clone()),
    ];
    let pager = pager(page, listing.total, "/admin/incidents", &filters);
    Ok(render(
        StatusCode::OK,
        "incidents.html",
        Some(&session),
        json!({
            "nav": "incidents",
            "incidents": listing.rows,
            "pager": pager,
            "filter": {"status": param(&p, "status"), "severity": param(&p, "severity"),
                       "source": source, "q": q},
            "statuses": IncidentStatus::ALL,
            "severities": Severity::ALL,
        }),
    ))
}

/// The console's incident actions and the status each one moves an incident to.
const ACTIONS: [(&str, IncidentStatus); 4] = [
    ("acknowledge", IncidentStatus::Acknowledged),
    ("resolve", IncidentStatus::Resolved),
    ("close", IncidentStatus::Closed),
    ("reopen", IncidentStatus::Open),
];

/// The actions to offer on an incident in `status`: the lifecycle rule the library enforces
/// ([`IncidentStatus::can_transition_to`]), so the buttons never disagree with the checks.
fn allowed_actions(status: IncidentStatus) -> Vec<&'static str> {
    ACTIONS
        .iter()
        .filter(|(_, to)| status.can_transition_to(*to))
        .map(|(name, _)| *name)
        .collect()
}

/// The most runs an incident page lists (newest first; the page says how many there are).
const RUNS_SHOWN: i64 = 50;

/// The most alerts an incident page lists, each with its history (newest first; the page says
/// how many there are and links to the alert list filtered by the incident).
const ALERTS_SHOWN: i64 = 200;

fn incident_id(raw: &str) -> Result<i64, ConsoleError> {
    raw.parse::<i64>()
        .map_err(|_| ConsoleError::not_found(format!("incident {raw:?} not found")))
}

/// `GET /admin/incidents/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let id = incident_id(&id)?;
    let data = state
        .tocsin
        .store()
        .run(move |c| {
            let incident = store::get_incident(c, id)?;
            let alerts = store::console::alerts(
                c,
                &AlertQuery {
                    incident_id: Some(id),
                    ..AlertQuery::default()
                },
                PageRequest {
                    limit: ALERTS_SHOWN,
                    offset: 0,
                },
            )?;
            let mut alert_rows = Vec::new();
            for a in alerts.rows {
                let history: Vec<Value> = store::list_alert_history(c, a.id)?
                    .into_iter()
                    .map(|h| {
                        let details = tocsin_core::secret::redact(&h.details);
                        json!({"event": h.event, "old_status": h.old_status,
                               "new_status": h.new_status, "created_at": h.created_at,
                               "details": changes(&details)})
                    })
                    .collect();
                alert_rows.push(json!({"alert": a, "history": history}));
            }
            let events: Vec<Value> = store::list_incident_events(c, id)?
                .into_iter()
                .map(|e| {
                    let note = e
                        .details
                        .get("text")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let details = tocsin_core::secret::redact(&e.details);
                    json!({"event": e.event, "old_status": e.old_status, "new_status": e.new_status,
                           "actor": e.actor, "created_at": e.created_at, "note": note,
                           "details": if note.is_some() { Vec::new() } else { changes(&details) }})
                })
                .collect();
            let runs = store::console::runs(
                c,
                &RunQuery {
                    incident_id: Some(id),
                    ..RunQuery::default()
                },
                PageRequest {
                    limit: RUNS_SHOWN,
                    offset: 0,
                },
            )?;
            let mut run_rows = Vec::new();
            for r in runs.rows {
                let deliveries = store::list_deliveries(c, Some(&r.run_id), 100)?;
                run_rows.push(json!({"run": r, "deliveries": deliveries}));
            }
            let analyses = store::list_analysis_runs(c, Some(id), 50)?;
            Ok((
                incident,
                (alert_rows, alerts.total),
                events,
                (run_rows, runs.total),
                analyses,
            ))
        })
        .await?;
    let (incident, (alerts, alerts_total), events, (runs, runs_total), analyses) = data;
    let recommendations: Vec<Value> = analyses
        .iter()
        .flat_map(|a| {
            a.recommendations
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |r| json!({"run_id": a.run_id, "provider": a.provider, "rec": r}))
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        "incident.html",
        Some(&session),
        json!({
            "nav": "incidents",
            "flash": p.get("flash"),
            "incident": incident,
            "metadata": pretty(&incident.metadata),
            "actions": allowed_actions(incident.status),
            "alerts": alerts,
            "alerts_total": alerts_total,
            "events": events,
            "runs": runs,
            "runs_total": runs_total,
            "analyses": analyses,
            "recommendations": recommendations,
        }),
    ))
}

/// `details` of a history row as `(field, old, new)` rows where it holds `{"old", "new"}` pairs
/// (or `old_x`/`new_x`), else `(field, "", value)`.
fn changes(details: &Value) -> Vec<(String, String, String)> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let Some(map) = details.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(k, v)| match v.as_object() {
            Some(o) if o.contains_key("old") || o.contains_key("new") => (
                k.clone(),
                text(o.get("old").unwrap_or(&Value::Null)),
                text(o.get("new").unwrap_or(&Value::Null)),
            ),
            _ => (k.clone(), String::new(), text(v)),
        })
        .collect()
}

/// `POST /admin/incidents/{id}/{acknowledge|resolve|close|reopen|note}`.
pub(crate) async fn action(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<FormData>,
    Path((id, action)): Path<(String, String)>,
) -> Page {
    let id = incident_id(&id)?;
    let t = &state.tocsin;
    let actor = session.actor.as_str();
    let done = match action.as_str() {
        "acknowledge" => service::acknowledge_incident(t, id, actor)
            .await
            .map(|_| "acknowledged"),
        "resolve" => service::resolve_incident(t, id, actor)
            .await
            .map(|_| "resolved"),
        "close" => service::close_incident(t, id, actor)
            .await
            .map(|_| "closed"),
        "reopen" => service::reopen_incident(t, id, actor)
            .await
            .map(|_| "reopened"),
        "note" => service::add_incident_note(t, id, actor, &field(&form, "note"))
            .await
            .map(|_| "note"),
        other => {
            return Err(ConsoleError::not_found(format!(
                "no incident action {other:?}"
            )));
        }
    };
    match done {
        Ok(flash) => Ok(back(&format!("/admin/incidents/{id}"), flash)),
        Err(e) => Ok(ConsoleError::new(super::status_of(&e), e.message()).into_response()),
    }
}
