//! The `/notify/` endpoints: parse, call `tocsin_notify`, map the result.
//!
//! - `POST /notify/send/` and `POST /notify/send/{driver}/`: body `{"title", "message", "severity",
//!   "status", "channel", "driver", "tags", "context", "config", "dedup_key", "idempotency_key"}`
//!   ([`tocsin_notify::SendRequest`]). 200 `{"status": "sent"|"skipped", "notified", "results",
//!   "deliveries"}`; invalid body or config 400 naming the field; unknown driver 404; delivery
//!   failure 502 (timeout 504) with the provider's answer in the message. Deliveries are retried
//!   with [`RetryPolicy::interactive`]: the caller is waiting.
//! - `GET /notify/send/` and `GET /notify/send/{driver}/`: readiness and the available drivers.
//! - `POST /notify/batch/`: `{"notifications": [...]}`, sent concurrently with a bound; always 200
//!   with per-item results unless the batch itself is invalid (400).
//! - `GET /notify/drivers/` and `GET /notify/drivers/{driver}/`: required and optional config and
//!   an example per driver; 404 for an unknown driver.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use tocsin_notify::{NotifyOutcome, RetryPolicy, SendRequest};

use crate::error::{ApiError, JsonBody};
use crate::{AppState, TraceId};

/// The routes of this area.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/notify/send/", get(send_ready).post(send))
        .route(
            "/notify/send/{driver}/",
            get(send_ready_driver).post(send_driver),
        )
        .route("/notify/batch/", axum::routing::post(batch))
        .route("/notify/drivers/", get(drivers))
        .route("/notify/drivers/{driver}/", get(driver))
}

fn trace(ext: Option<Extension<TraceId>>) -> String {
    ext.map(|Extension(TraceId(t))| t).unwrap_or_default()
}

fn sent(outcome: NotifyOutcome) -> Response {
    let status = if outcome.skipped { "skipped" } else { "sent" };
    (
        StatusCode::OK,
        Json(json!({
            "status": status,
            "notified": outcome.notified,
            "results": outcome.results,
            "deliveries": outcome.deliveries,
        })),
    )
        .into_response()
}

/// One send described by a `/notify/send/` body, retried as an interactive caller expects (the
/// console's test notification goes through here too).
pub(crate) async fn send_body(
    state: &AppState,
    body: &Value,
    driver: Option<&str>,
    trace_id: &str,
) -> Result<NotifyOutcome, ApiError> {
    let request = SendRequest::from_value(body)?;
    Ok(tocsin_notify::send_request(
        &state.tocsin,
        &request,
        driver,
        trace_id,
        RetryPolicy::interactive(),
    )
    .await?)
}

async fn do_send(
    state: &AppState,
    body: &Value,
    driver: Option<&str>,
    trace_id: &str,
) -> Result<Response, ApiError> {
    Ok(sent(send_body(state, body, driver, trace_id).await?))
}

async fn send(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    do_send(&state, &body, None, &trace(trace_id)).await
}

async fn send_driver(
    State(state): State<AppState>,
    Path(driver): Path<String>,
    trace_id: Option<Extension<TraceId>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    do_send(&state, &body, Some(&driver), &trace(trace_id)).await
}

async fn send_ready(State(state): State<AppState>) -> Json<Value> {
    let names = state.tocsin.plugins().notifiers.names();
    Json(json!({"status": "ok", "message": "Notify endpoint is ready", "available_drivers": names}))
}

async fn send_ready_driver(
    State(state): State<AppState>,
    Path(driver): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = tocsin_notify::driver_info(&state.tocsin, &driver)?;
    Ok(Json(json!({"status": "ok", "driver": info.name})))
}

async fn batch(
    State(state): State<AppState>,
    trace_id: Option<Extension<TraceId>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let items = match body.get("notifications") {
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ApiError::bad_request("notifications: expected a list")),
        None => {
            return Err(ApiError::bad_request(
                "notifications: required (a list of notifications)",
            ));
        }
    };
    let outcome = tocsin_notify::send_batch(
        &state.tocsin,
        &items,
        &trace(trace_id),
        RetryPolicy::interactive(),
    )
    .await?;
    Ok(Json(json!(outcome)))
}

async fn drivers(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"drivers": tocsin_notify::list_drivers(&state.tocsin)}))
}

async fn driver(
    State(state): State<AppState>,
    Path(driver): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = tocsin_notify::driver_info(&state.tocsin, &driver)?;
    Ok(Json(json!({"driver": info})))
}
