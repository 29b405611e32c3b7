//! Incidents: the filtered list, the incident page (alerts and their history, events and notes,
//! the runs it caused with their recommendations and deliveries) and the lifecycle actions.

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tocsin_core::domain::{Incident, IncidentStatus, Severity};
use tocsin_core::store::{self, AlertFilter, IncidentFilter, RunFilter};
use tocsin_ingest::service;

use super::form::param;
use super::{
    ConsoleError, FormData, PAGE_SIZE, Page, Params, SCAN_LIMIT, Session, back, enum_param, field,
    page_number, paginate, params, pretty, render,
};
use crate::AppState;

fn matches_text(i: &Incident, q: &str) -> bool {
    let q = q.to_lowercase();
    [&i.title, &i.description, &i.group_key]
        .iter()
        .any(|s| s.to_lowercase().contains(&q))
}

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
    // Source and text are not columns of incidents: those filters look through the newest rows.
    let in_memory = !source.is_empty() || !q.is_empty();
    let filter = IncidentFilter {
        status,
        severity,
        limit: if in_memory {
            SCAN_LIMIT
        } else {
            PAGE_SIZE as i64 + 1
        },
        offset: if in_memory {
            0
        } else {
            ((page - 1) * PAGE_SIZE) as i64
        },
    };
    let src = source.clone();
    let rows = state
        .tocsin
        .store()
        .run(move |c| {
            let rows = store::list_incidents(c, &filter)?;
            if src.is_empty() {
                return Ok(rows);
            }
            let ids: BTreeSet<i64> = store::list_alerts(
                c,
                &AlertFilter {
                    source: Some(src),
                    limit: SCAN_LIMIT,
                    ..AlertFilter::default()
                },
            )?
            .into_iter()
            .filter_map(|a| a.incident_id)
            .collect();
            Ok(rows.into_iter().filter(|i| ids.contains(&i.id)).collect())
        })
        .await?;
    let rows: Vec<Incident> = rows
        .into_iter()
        .filter(|i| q.is_empty() || matches_text(i, &q))
        .collect();
    let filters = [
        ("status", param(&p, "status")),
        ("severity", param(&p, "severity")),
        ("source", source.clone()),
        ("q", q.clone()),
    ];
    let paged = paginate(rows, page, !in_memory, "/admin/incidents", &filters);
    Ok(render(
        StatusCode::OK,
        "incidents.html",
        Some(&session),
        json!({
            "nav": "incidents",
            "incidents": paged.rows,
            "prev": paged.prev,
            "next": paged.next,
            "page": page,
            "filter": {"status": param(&p, "status"), "severity": param(&p, "severity"),
                       "source": source, "q": q},
            "statuses": IncidentStatus::ALL,
            "severities": Severity::ALL,
        }),
    ))
}

/// The actions the incident lifecycle allows from a status, as the library enforces them
/// (`acknowledge_incident`, `resolve_incident`, `close_incident`, `reopen_incident`); the console
/// only uses this to decide which buttons to show, the library still checks every call.
fn allowed_actions(status: IncidentStatus) -> &'static [&'static str] {
    match status {
        IncidentStatus::Open => &["acknowledge", "resolve", "close"],
        IncidentStatus::Acknowledged => &["resolve", "close"],
        IncidentStatus::Resolved => &["close", "reopen"],
        IncidentStatus::Closed => &["reopen"],
    }
}

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
            let alerts = store::list_alerts(
                c,
                &AlertFilter {
                    incident_id: Some(id),
                    limit: 200,
                    ..AlertFilter::default()
                },
            )?;
            let mut alert_rows = Vec::new();
            for a in alerts {
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
            let runs: Vec<_> = store::list_pipeline_runs(
                c,
                &RunFilter {
                    limit: SCAN_LIMIT,
                    ..RunFilter::default()
                },
            )?
            .into_iter()
            .filter(|r| r.incident_id == Some(id))
            .take(50)
            .collect();
            let mut run_rows = Vec::new();
            for r in runs {
                let deliveries = store::list_deliveries(c, Some(&r.run_id), 100)?;
                run_rows.push(json!({"run": r, "deliveries": deliveries}));
            }
            let analyses = store::list_analysis_runs(c, Some(id), 50)?;
            Ok((incident, alert_rows, events, run_rows, analyses))
        })
        .await?;
    let (incident, alerts, events, runs, analyses) = data;
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
            "events": events,
            "runs": runs,
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
