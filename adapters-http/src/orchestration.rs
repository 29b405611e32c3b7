//! The `/orchestration/` endpoints and `GET /metrics`: parse, call the engine, map the result.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::domain::{PipelineDefinition, PipelineRun, PipelineStatus};
use tocsin_core::engine::{self, Definition, Engine, Submit};
use tocsin_core::store;

use crate::error::parse_json;
use crate::{ApiError, AppState, JsonBody, RawJson, TraceId};

/// The routes of this area.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/orchestration/pipeline/", post(submit_async))
        .route("/orchestration/pipeline/sync/", post(submit_sync))
        .route("/orchestration/pipelines/", get(list_runs))
        .route("/orchestration/pipeline/{run_id}/", get(get_run))
        .route("/orchestration/pipeline/{run_id}/resume/", post(resume))
        .route("/orchestration/definitions/", get(list_definitions))
        .route(
            "/orchestration/definitions/{name}/",
            get(get_definition).put(put_definition),
        )
        .route(
            "/orchestration/definitions/{name}/validate/",
            post(validate_definition),
        )
        .route(
            "/orchestration/definitions/{name}/execute/",
            post(execute_definition),
        )
        .route("/metrics", get(metrics))
}

/// The engine serve installed, or one over the same handle (runs then wait for workers).
pub(crate) fn engine(state: &AppState) -> Engine {
    state
        .extension::<Engine>()
        .unwrap_or_else(|| Engine::new(state.tocsin.clone()))
}

/// A pipeline request body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    payload: Value,
    driver: Option<String>,
    source: Option<String>,
    environment: Option<String>,
    trace_id: Option<String>,
    definition: Option<String>,
    incident_id: Option<i64>,
    /// For `/execute/`: wait for completion.
    #[serde(default)]
    sync: bool,
}

impl RunBody {
    fn into_submit(self, trace: &TraceId, definition: Option<String>) -> Submit {
        Submit {
            definition: definition.or(self.definition),
            payload: self.payload,
            source: self
                .source
                .or_else(|| self.driver.clone())
                .unwrap_or_else(|| "api".to_owned()),
            driver: self.driver,
            environment: self.environment,
            trace_id: self.trace_id.or_else(|| Some(trace.0.clone())),
            incident_id: self.incident_id,
            ..Submit::default()
        }
    }
}

async fn run_detail(state: &AppState, run_id: String) -> Result<Value, ApiError> {
    let (run, stages) = state
        .tocsin
        .store()
        .run(move |c| {
            let run = store::get_pipeline_run(c, &run_id)?;
            let stages = store::list_stage_executions(c, run.id)?;
            Ok((run, stages))
        })
        .await?;
    Ok(json!({"run": run, "stages": stages}))
}

/// The submission of `POST /orchestration/definitions/{name}/execute/` with this payload, for
/// callers (the console) that execute a definition the same way.
pub(crate) fn execute_submit(name: String, payload: Value, trace: &TraceId) -> Submit {
    RunBody {
        payload,
        ..RunBody::default()
    }
    .into_submit(trace, Some(name))
}

/// Starts a run: queued, or executed here when `sync` or `TOCSIN_TASKS_EAGER` asks for it (then
/// the run comes back finished).
pub(crate) async fn launch(
    state: &AppState,
    submit: Submit,
    sync: bool,
) -> Result<PipelineRun, ApiError> {
    let engine = engine(state);
    if sync || state.tocsin.config().tasks_eager {
        return Ok(engine.run_sync(submit).await?);
    }
    Ok(engine.submit(submit).await?)
}

async fn start(state: &AppState, submit: Submit, sync: bool) -> Result<Response, ApiError> {
    let waited = sync || state.tocsin.config().tasks_eager;
    let run = launch(state, submit, sync).await?;
    if waited {
        return Ok((StatusCode::OK, Json(run_detail(state, run.run_id).await?)).into_response());
    }
    let body = json!({"run_id": run.run_id, "trace_id": run.trace_id, "status": run.status});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn submit_async(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    JsonBody(body): JsonBody<RunBody>,
) -> Result<Response, ApiError> {
    start(&state, body.into_submit(&trace, None), false).await
}

async fn submit_sync(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    JsonBody(body): JsonBody<RunBody>,
) -> Result<Response, ApiError> {
    start(&state, body.into_submit(&trace, None), true).await
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    source: Option<String>,
    limit: Option<String>,
}

async fn list_runs(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<PipelineStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("status: {}", e.message())))?;
    let limit = match q.limit.as_deref() {
        None | Some("") => 50,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to 1000, got {l:?}"
                ))
            })?,
    };
    let filter = store::RunFilter {
        status,
        source: q.source.filter(|s| !s.is_empty()),
        limit,
    };
    let runs = state
        .tocsin
        .store()
        .run(move |c| store::list_pipeline_runs(c, &filter))
        .await?;
    Ok(Json(json!({"count": runs.len(), "runs": runs})))
}

async fn get_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(run_detail(&state, run_id).await?))
}

/// Resumes a failed run; with `TOCSIN_TASKS_EAGER` it is driven to its end here.
pub(crate) async fn resume_run(state: &AppState, run_id: &str) -> Result<PipelineRun, ApiError> {
    let run = engine(state).resume(run_id).await?;
    if state.tocsin.config().tasks_eager {
        return Ok(engine(state).drive(&run.run_id).await?);
    }
    Ok(run)
}

async fn resume(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    let run = resume_run(&state, &run_id).await?;
    if state.tocsin.config().tasks_eager {
        return Ok((StatusCode::OK, Json(run_detail(&state, run.run_id).await?)).into_response());
    }
    let body = json!({"run_id": run.run_id, "trace_id": run.trace_id, "status": run.status});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn list_definitions(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let defs = state.tocsin.store().run(store::list_definitions).await?;
    Ok(Json(
        json!({"definitions": defs, "builtin": engine::BUILTIN_DEFINITIONS}),
    ))
}

/// A built-in definition by name.
pub(crate) fn builtin_definition(name: &str) -> Option<Definition> {
    match name {
        "checks-only" => Some(engine::checks_only()),
        n if engine::BUILTIN_DEFINITIONS.contains(&n) => Some(Definition::default_pipeline()),
        _ => None,
    }
}

async fn get_definition(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(def) = builtin_definition(&name) {
        return Ok(Json(
            json!({"name": name, "builtin": true, "active": true, "config": def}),
        ));
    }
    let d = state
        .tocsin
        .store()
        .run(move |c| store::get_definition(c, &name))
        .await?;
    Ok(Json(
        serde_json::to_value(d).map_err(|e| ApiError::bad_request(e.to_string()))?,
    ))
}

fn invalid(problems: &[engine::Problem]) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_definition",
        format!(
            "invalid pipeline definition: {}",
            engine::definition::describe(problems)
        ),
    )
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !engine::BUILTIN_DEFINITIONS.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid definition name {name:?}: use 1-100 letters, digits, '-', '_' or '.', and not a built-in name"
        )))
    }
}

/// Why a definition was not saved.
#[derive(Debug)]
pub(crate) enum SaveError {
    /// The document is not a valid definition: every problem, each naming its node if any.
    Invalid(Vec<engine::Problem>),
    /// Anything else (a bad name, the store).
    Other(ApiError),
}

impl From<SaveError> for ApiError {
    fn from(e: SaveError) -> Self {
        match e {
            SaveError::Invalid(p) => invalid(&p),
            SaveError::Other(e) => e,
        }
    }
}

/// Validates and stores a definition document under `name` (created, or replaced with its
/// version bumped); `tags` and `name` keys of the document are taken out of it.
pub(crate) async fn save_definition(
    state: &AppState,
    name: String,
    mut doc: Value,
) -> Result<PipelineDefinition, SaveError> {
    valid_name(&name).map_err(SaveError::Other)?;
    let tags: Vec<String> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(o) = doc.as_object_mut() {
        o.remove("tags");
        o.remove("name");
    }
    let def = Definition::parse(&doc).map_err(SaveError::Invalid)?;
    let problems = def.validate(state.tocsin.plugins());
    if !problems.is_empty() {
        return Err(SaveError::Invalid(problems));
    }
    let desc = def.description.clone();
    state
        .tocsin
        .store()
        .write(move |c| store::upsert_definition(c, &name, &desc, &doc, &tags))
        .await
        .map_err(|e| SaveError::Other(e.into()))
}

async fn put_definition(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(doc): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let stored = save_definition(&state, name, doc).await?;
    let status = if stored.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(stored))).into_response())
}

async fn validate_definition(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let def = if let Some(def) = builtin_definition(&name) {
        serde_json::to_value(def).unwrap_or_default()
    } else {
        state
            .tocsin
            .store()
            .run(move |c| store::get_definition(c, &name))
            .await?
            .config
    };
    let problems = match Definition::parse(&def) {
        Ok(d) => d.validate(state.tocsin.plugins()),
        Err(p) => p,
    };
    Ok(Json(
        json!({"valid": problems.is_empty(), "problems": problems}),
    ))
}

async fn execute_definition(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(trace): Extension<TraceId>,
    Query(q): Query<SyncQuery>,
    RawJson(bytes): RawJson,
) -> Result<Response, ApiError> {
    // An empty body runs the definition with an empty payload.
    let body: RunBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        parse_json(&bytes)?
    };
    let sync = body.sync
        || q.sync
            .as_deref()
            .is_some_and(|s| matches!(s, "1" | "true" | "yes"));
    start(&state, body.into_submit(&trace, Some(name)), sync).await
}

#[derive(Debug, Deserialize)]
struct SyncQuery {
    sync: Option<String>,
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snap = state.tocsin.store().run(store::metrics::snapshot).await?;
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        snap.to_prometheus(),
    )
        .into_response())
}
