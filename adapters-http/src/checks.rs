//! The `/checks/` endpoints: health checks of the machine tocsin runs on.
//!
//! - `GET /checks/checkers/`: the registered checkers (name, description, example options,
//!   whether `CHECKERS_SKIP_ALL` / `CHECKERS_SKIP` skip them).
//! - `POST /checks/run/` with an optional body `{"checkers": ["disk"], "options": {"disk":
//!   {"paths": ["/var"]}}, "include_skipped": false}` (empty body: every checker): runs them,
//!   records a `CheckRun` per executed checker, answers `200` with `{"results": [CheckResult..],
//!   "summary": {...}, "trace_id"}`. The health of the machine is in the body, not the status: a
//!   critical check is still a `200`. Unknown checker 404, bad options 400.
//! - `GET /checks/runs/?checker=cpu&limit=50`: recorded runs, newest first.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_checkers::CheckRequest;
use tocsin_core::domain::new_id;
use tocsin_core::store;

use crate::error::{ApiError, parse_json};
use crate::{AppState, RawJson, TraceId};

/// The routes of this area.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/checks/checkers/", get(list_checkers))
        .route("/checks/checkers", get(list_checkers))
        .route("/checks/run/", post(run))
        .route("/checks/run", post(run))
        .route("/checks/runs/", get(list_runs))
        .route("/checks/runs", get(list_runs))
}

async fn list_checkers(State(state): State<AppState>) -> Json<Value> {
    let config = state.tocsin.config();
    let items: Vec<Value> = state
        .tocsin
        .plugins()
        .checkers
        .list()
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "description": d.description,
                "config_example": serde_json::from_str::<Value>(d.config_example).unwrap_or(Value::Null),
                "skipped": tocsin_checkers::run::skip_reason(config, d.name).is_some(),
            })
        })
        .collect();
    Json(json!({ "checkers": items }))
}

/// The body of `POST /checks/run/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// Checker names; empty or absent means all.
    #[serde(default)]
    checkers: Vec<String>,
    /// Per-checker options.
    #[serde(default)]
    options: Value,
    /// Run checkers the skip controls would skip.
    #[serde(default)]
    include_skipped: bool,
}

async fn run(
    State(state): State<AppState>,
    trace: Option<Extension<TraceId>>,
    RawJson(bytes): RawJson,
) -> Result<Json<Value>, ApiError> {
    let body: RunBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        parse_json(&bytes)?
    };
    let roots = state
        .extension::<tocsin_providers::OperatorConfig>()
        .unwrap_or_else(tocsin_providers::OperatorConfig::strict_from_env)
        .roots();
    check_disk_paths(&body.options, &roots)?;
    let trace_id = trace.map(|Extension(TraceId(t))| t).unwrap_or_else(new_id);
    let req = CheckRequest {
        names: body.checkers,
        overrides: body.options,
        include_skipped: body.include_skipped,
    };
    let results = tocsin_checkers::run_request(&state.tocsin, &req, &trace_id, None).await?;
    let summary = tocsin_checkers::summarize(&results);
    Ok(Json(json!({
        "results": results,
        "summary": summary,
        "trace_id": trace_id,
    })))
}

/// Disk paths named by a request body must lie under `TOCSIN_ANALYZE_ROOTS` (the same roots as the
/// disk analysis), so a caller cannot probe arbitrary places; the operator's defaults are not
/// limited. The check is lexical: it reveals nothing about paths outside the roots.
fn check_disk_paths(options: &Value, roots: &[std::path::PathBuf]) -> Result<(), ApiError> {
    let Some(paths) = options
        .get("disk")
        .and_then(|d| d.get("paths"))
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    for p in paths {
        let path = p.as_str().unwrap_or_default();
        let clean = std::path::Path::new(path);
        let escapes = clean
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        if !clean.is_absolute() || escapes || !roots.iter().any(|r| clean.starts_with(r)) {
            return Err(ApiError::bad_request(format!(
                "disk path {path:?} is not allowed over HTTP: paths must be absolute and lie under TOCSIN_ANALYZE_ROOTS"
            )));
        }
    }
    Ok(())
}

/// Query of `GET /checks/runs/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    /// Only this checker.
    checker: Option<String>,
    /// At most this many (default 50, clamped).
    limit: Option<i64>,
}

async fn list_runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let limit = q.limit.unwrap_or(50);
    if limit < 1 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    let runs = state
        .tocsin
        .store()
        .run(move |c| store::list_check_runs(c, q.checker.as_deref(), limit))
        .await?;
    Ok(Json(json!({ "runs": runs })))
}
