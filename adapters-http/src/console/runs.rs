//! Pipeline runs: the filtered list, the run page with its stage timeline, and resume.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tocsin_core::domain::PipelineStatus;
use tocsin_core::store::{self, console::RunQuery};

use super::form::param;
use super::{
    ConsoleError, Page, Params, Session, back, enum_param, incident_param, page_number,
    page_request, pager, params, pretty, render,
};
use crate::AppState;

/// `GET /admin/runs?status=&definition=&incident=&page=` (`definition=default` includes the runs
/// stored without a name, which run the built-in default).
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let status = enum_param::<PipelineStatus>(&p, "status")?;
    let definition = param(&p, "definition");
    let incident = param(&p, "incident");
    let incident_id = incident_param(&p)?;
    let page = page_number(&p)?;
    let filter = RunQuery {
        status,
        definition: Some(definition.clone()),
        incident_id,
    };
    let listing = state
        .tocsin
        .store()
        .run(move |c| store::console::runs(c, &filter, page_request(page)))
        .await?;
    let filters = [
        ("status", param(&p, "status")),
        ("definition", definition.clone()),
        ("incident", incident.clone()),
    ];
    let pager = pager(page, listing.total, "/admin/runs", &filters);
    Ok(render(
        StatusCode::OK,
        "runs.html",
        Some(&session),
        json!({
            "nav": "runs",
            "runs": listing.rows,
            "pager": pager,
            "filter": {"status": param(&p, "status"), "definition": definition,
                       "incident": incident},
            "statuses": PipelineStatus::ALL,
        }),
    ))
}

/// `GET /admin/runs/{run_id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(run_id): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let id = run_id.clone();
    let (run, stages, deliveries) = state
        .tocsin
        .store()
        .run(move |c| {
            let run = store::get_pipeline_run(c, &id)?;
            let stages = store::list_stage_executions(c, run.id)?;
            let deliveries = store::list_deliveries(c, Some(&id), 100)?;
            Ok((run, stages, deliveries))
        })
        .await?;
    let stages: Vec<Value> = stages
        .into_iter()
        .map(|s| {
            json!({
                "stage": s,
                "input": pretty(&s.input_snapshot),
                "output": pretty(&s.output_snapshot),
            })
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        "run.html",
        Some(&session),
        json!({
            "nav": "runs",
            "flash": p.get("flash"),
            "run": run,
            "payload": pretty(&run.inbound_payload),
            "stages": stages,
            "deliveries": deliveries,
            "can_resume": run.status == PipelineStatus::Failed,
        }),
    ))
}

/// `POST /admin/runs/{run_id}/resume`: the same call as `POST /orchestration/pipeline/{id}/resume/`.
pub(crate) async fn resume(State(state): State<AppState>, Path(run_id): Path<String>) -> Page {
    match crate::orchestration::resume_run(&state, &run_id).await {
        Ok(run) => Ok(back(&format!("/admin/runs/{}", run.run_id), "resumed")),
        Err(e) => Ok(ConsoleError::from(e).into_response()),
    }
}
