//! The `/intelligence/` endpoints: parse, call `tocsin_providers::analyze_with`, map the result.
//!
//! - `GET /intelligence/health/`: `{"status": "healthy", "app": "intelligence", "providers": [..],
//!   "default_provider": "local", "disk_scans": bool}`.
//! - `GET /intelligence/providers/`: `{"providers": [names], "count", "details": [{"name",
//!   "description", "config_example", "default"}]}`.
//! - `POST /intelligence/recommendations/` with `{"incident_id"?, "provider"?, "config"?,
//!   "fallback"?}` (and `GET` with `?incident_id=&provider=`): `{"provider", "requested_provider",
//!   "incident_id", "recommendations", "count", "analysis_run_id", "fallback_used", "model",
//!   "usage", "primary_error"}`. Unknown incident 404, unknown provider 400, a `config` key only
//!   the operator may set (`base_url`, `api_key`...) 400, provider failure 502/504.
//! - `POST /intelligence/memory/` `{"top_n"?}` (and `GET ?top_n=`): `{"type": "memory", "top_n",
//!   "recommendations", "count", "analysis_run_id"}`.
//! - `POST /intelligence/disk/` `{"path"?, "threshold_mb"?, "old_days"?, "top_n"?}` (and `GET`
//!   with the same query parameters): `{"type": "disk", "path", "threshold_mb", "old_days",
//!   "top_n", "recommendations", "count", "analysis_run_id"}`. Paths must lie under
//!   `TOCSIN_ANALYZE_ROOTS`; without it, disk scans are refused (400).
//!
//! - `GET /intelligence/runs/?incident_id=&limit=`: `{"runs": [AnalysisRun..], "count"}`, newest
//!   first (limit 1 to 1000, default 50); `GET /intelligence/runs/{id}/`: one run, 404 if unknown.
//!
//! Bad numbers are 400 naming the parameter. Every analysis is recorded as an `AnalysisRun`.
//! The operator settings are `TOCSIN_ANALYZE_ROOTS` and `OPENAI_*`
//! ([`OperatorConfig::strict_from_env`]), or an [`OperatorConfig`] added to the state with
//! [`AppState::with_extension`].

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};
use tocsin_core::Error;
use tocsin_providers::local::LocalConfig;
use tocsin_providers::{
    AnalyzeOutcome, AnalyzeRequest, OperatorConfig, analyze_with, parse_number,
};

use crate::error::{ApiError, JsonBody};
use crate::{AppState, TraceId};

/// The routes of this area.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/intelligence/health/", get(health))
        .route("/intelligence/providers/", get(providers))
        .route(
            "/intelligence/recommendations/",
            get(recommendations_get).post(recommendations_post),
        )
        .route("/intelligence/memory/", get(memory_get).post(memory_post))
        .route("/intelligence/disk/", get(disk_get).post(disk_post))
        .route("/intelligence/runs/", get(runs))
        .route("/intelligence/runs/{id}/", get(run))
}

type Params = BTreeMap<String, String>;

fn trace(ext: Option<Extension<TraceId>>) -> String {
    ext.map(|Extension(TraceId(t))| t).unwrap_or_default()
}

fn operator(state: &AppState) -> OperatorConfig {
    state
        .extension::<OperatorConfig>()
        .unwrap_or_else(OperatorConfig::strict_from_env)
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "app": "intelligence",
        "providers": state.tocsin.plugins().providers.names(),
        "default_provider": tocsin_providers::DEFAULT_PROVIDER,
        "disk_scans": !operator(&state).roots().is_empty(),
    }))
}

async fn providers(State(state): State<AppState>) -> Json<Value> {
    let list = state.tocsin.plugins().providers.list();
    let details: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "description": d.description,
                "config_example": serde_json::from_str::<Value>(d.config_example).unwrap_or(Value::Null),
                "default": d.name == tocsin_providers::DEFAULT_PROVIDER,
            })
        })
        .collect();
    Json(json!({
        "providers": state.tocsin.plugins().providers.names(),
        "count": list.len(),
        "details": details,
    }))
}

/// A body must be a JSON object with only the named keys.
fn object(body: Value, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let map = match body {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => return Err(ApiError::bad_request("the body must be a JSON object")),
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown field {k:?}; expected: {}",
            allowed.join(", ")
        )));
    }
    Ok(map)
}

/// A whole number from a JSON number or numeric text; anything else is 400 naming the field.
fn number(name: &str, v: &Value) -> Result<Option<u64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("{name} must be a whole number, got {n}"))
        }),
        Value::String(s) => Ok(Some(parse_number(name, s)?)),
        other => Err(ApiError::bad_request(format!(
            "{name} must be a whole number, got {other}"
        ))),
    }
}

/// Query parameters as the same JSON a body would carry.
fn params_to_body(params: Result<Query<Params>, QueryRejection>) -> Result<Value, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    Ok(Value::Object(
        params
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    ))
}

fn outcome_body(o: AnalyzeOutcome) -> Value {
    json!({
        "provider": o.provider,
        "requested_provider": o.requested_provider,
        "incident_id": o.incident_id,
        "count": o.recommendations.len(),
        "recommendations": o.recommendations,
        "analysis_run_id": o.analysis_run_id,
        "fallback_used": o.fallback_used,
        "model": o.model,
        "usage": o.usage,
        "primary_error": o.primary_error,
    })
}

async fn recommendations(
    state: &AppState,
    body: Value,
    trace_id: String,
) -> Result<Json<Value>, ApiError> {
    let map = object(body, &["incident_id", "provider", "config", "fallback"])?;
    let incident_id = match map.get("incident_id") {
        None => None,
        Some(v) => number("incident_id", v)?
            .map(|n| {
                i64::try_from(n).map_err(|_| ApiError::bad_request("incident_id is too large"))
            })
            .transpose()?,
    };
    let provider = match map.get("provider") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("provider must be a string")),
    };
    let fallback = match map.get("fallback") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "1" => true,
        Some(Value::String(s)) if s == "false" || s == "0" => false,
        Some(_) => return Err(ApiError::bad_request("fallback must be true or false")),
    };
    let req = AnalyzeRequest {
        incident_id,
        provider,
        config: map.get("config").cloned().unwrap_or(Value::Null),
        trace_id,
        fallback,
        ..AnalyzeRequest::default()
    };
    let outcome = analyze_with(&state.tocsin, req, &operator(state)).await?;
    Ok(Json(outcome_body(outcome)))
}

async fn recommendations_post(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    recommendations(&state, body, trace(trace_id)).await
}

async fn recommendations_get(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    recommendations(&state, params_to_body(params)?, trace(trace_id)).await
}

/// Runs the local provider with explicit analyses and options.
async fn local(state: &AppState, config: Value, trace_id: String) -> Result<AnalyzeOutcome, Error> {
    let req = AnalyzeRequest {
        provider: Some("local".to_owned()),
        config,
        trace_id,
        ..AnalyzeRequest::default()
    };
    analyze_with(&state.tocsin, req, &operator(state)).await
}

async fn memory(state: &AppState, body: Value, trace_id: String) -> Result<Json<Value>, ApiError> {
    let map = object(body, &["top_n"])?;
    let top_n = match map.get("top_n") {
        Some(v) => number("top_n", v)?,
        None => None,
    };
    let mut config = json!({"analyses": ["memory"]});
    if let Some(n) = top_n {
        config["top_n"] = json!(n);
    }
    let o = local(state, config, trace_id).await?;
    let defaults = LocalConfig::default();
    Ok(Json(json!({
        "type": "memory",
        "top_n": top_n.unwrap_or(defaults.top_n as u64),
        "count": o.recommendations.len(),
        "recommendations": o.recommendations,
        "analysis_run_id": o.analysis_run_id,
    })))
}

async fn memory_post(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    memory(&state, body, trace(trace_id)).await
}

async fn memory_get(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    memory(&state, params_to_body(params)?, trace(trace_id)).await
}

async fn disk(state: &AppState, body: Value, trace_id: String) -> Result<Json<Value>, ApiError> {
    let map = object(body, &["path", "threshold_mb", "old_days", "top_n"])?;
    let mut config = json!({"analyses": ["disk"]});
    for key in ["threshold_mb", "old_days", "top_n"] {
        if let Some(v) = map.get(key)
            && let Some(n) = number(key, v)?
        {
            config[key] = json!(n);
        }
    }
    let path = match map.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("path must be a non-empty string")),
    };
    let path = match path {
        Some(p) => p,
        // Default: the first allowed root (none configured: the library refuses with a message).
        None => operator(state)
            .roots()
            .first()
            .map(|r| r.display().to_string())
            .unwrap_or_else(|| "/".to_owned()),
    };
    config["path"] = json!(path);
    let o = local(state, config.clone(), trace_id).await?;
    let defaults = LocalConfig::default();
    Ok(Json(json!({
        "type": "disk",
        "path": path,
        "threshold_mb": config.get("threshold_mb").cloned().unwrap_or(json!(defaults.threshold_mb)),
        "old_days": config.get("old_days").cloned().unwrap_or(json!(defaults.old_days)),
        "top_n": config.get("top_n").cloned().unwrap_or(json!(defaults.top_n)),
        "count": o.recommendations.len(),
        "recommendations": o.recommendations,
        "analysis_run_id": o.analysis_run_id,
    })))
}

async fn disk_post(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    disk(&state, body, trace(trace_id)).await
}

async fn disk_get(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    disk(&state, params_to_body(params)?, trace(trace_id)).await
}

async fn runs(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let map = object(params_to_body(params)?, &["incident_id", "limit"])?;
    let incident_id = match map.get("incident_id") {
        Some(v) => number("incident_id", v)?
            .map(|n| {
                i64::try_from(n).map_err(|_| ApiError::bad_request("incident_id is too large"))
            })
            .transpose()?,
        None => None,
    };
    let limit = match map.get("limit") {
        Some(v) => match number("limit", v)? {
            Some(n @ 1..=1000) => n as i64,
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "limit must be from 1 to 1000, got {n}"
                )));
            }
            None => 50,
        },
        None => 50,
    };
    let runs = state
        .tocsin
        .store()
        .run(move |c| tocsin_core::store::list_analysis_runs(c, incident_id, limit))
        .await?;
    Ok(Json(json!({"count": runs.len(), "runs": runs})))
}

async fn run(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = parse_number("id", &id)?;
    let run = tocsin_providers::get_analysis_run(state.tocsin.store(), id).await?;
    Ok(Json(json!(run)))
}
