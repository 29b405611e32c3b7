//! The `/alerts/` endpoints: the webhook receivers.
//!
//! - `POST /alerts/webhook/` detects the driver; `POST /alerts/webhook/{driver}/` names it.
//! - `GET` on either says the endpoint is ready (and which driver, with its description).
//!
//! Success is `202 Accepted` with the counts, incident ids and trace id when alerts were stored,
//! `200 OK` for a body accepted with zero alerts (a PagerDuty `pagey.ping`). Errors: malformed
//! JSON 400, wrong content type 415, over the body limit 413, unknown driver 404, unrecognised
//! or invalid payload 422, failed signature 401. Per-source secrets come from a
//! [`WebhookSecrets`] extension of the state, else from `TOCSIN_WEBHOOK_SECRET_<DRIVER>`; a
//! [`HookFactory`] extension, when present, supplies the hook that runs in the write transaction.

use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use tocsin_core::plugin::Headers;
use tocsin_ingest::service::{self, HookFactory, IngestBody, IngestRequest, WebhookSecrets};

use crate::error::ApiError;
use crate::{AppState, RawJson, TraceId};

/// The routes of this area.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/alerts/webhook/", get(ready_any).post(receive_any))
        .route("/alerts/webhook", get(ready_any).post(receive_any))
        .route(
            "/alerts/webhook/{driver}/",
            get(ready_driver).post(receive_driver),
        )
        .route(
            "/alerts/webhook/{driver}",
            get(ready_driver).post(receive_driver),
        )
}

/// The state's secrets (borrowed: a request does not copy them), else the environment's.
fn secrets(state: &AppState) -> Cow<'_, WebhookSecrets> {
    match state.extensions.get::<WebhookSecrets>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(WebhookSecrets::from_env()),
    }
}

async fn ready_any(State(state): State<AppState>) -> Response {
    let drivers = state.tocsin.plugins().ingestors.names();
    Json(json!({
        "status": "ready",
        "driver": null,
        "detect": true,
        "drivers": drivers,
        "message": "POST a webhook body here to detect its format, or to /alerts/webhook/<driver>/ to name it",
    }))
    .into_response()
}

async fn ready_driver(
    State(state): State<AppState>,
    Path(driver): Path<String>,
) -> Result<Response, ApiError> {
    let d = state.tocsin.plugins().ingestors.get(&driver)?;
    Ok(Json(json!({
        "status": "ready",
        "driver": d.name,
        "description": d.description,
        "signature_required": secrets(&state).get(d.name).is_some(),
    }))
    .into_response())
}

async fn receive_any(
    State(state): State<AppState>,
    trace: Option<Extension<TraceId>>,
    headers: HeaderMap,
    body: RawJson,
) -> Result<Response, ApiError> {
    receive(state, None, trace, headers, body).await
}

async fn receive_driver(
    State(state): State<AppState>,
    Path(driver): Path<String>,
    trace: Option<Extension<TraceId>>,
    headers: HeaderMap,
    body: RawJson,
) -> Result<Response, ApiError> {
    receive(state, Some(driver), trace, headers, body).await
}

/// The answer to a webhook: the outcome with a status word, serialised in one pass.
#[derive(serde::Serialize)]
struct Accepted<'a> {
    status: &'static str,
    alerts_received: usize,
    #[serde(flatten)]
    outcome: &'a service::IngestOutcome,
}

fn lowercase_headers(headers: &HeaderMap) -> Headers {
    headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))
        })
        .collect()
}

async fn receive(
    state: AppState,
    driver: Option<String>,
    trace: Option<Extension<TraceId>>,
    headers: HeaderMap,
    RawJson(bytes): RawJson,
) -> Result<Response, ApiError> {
    if let Some(d) = &driver {
        // An unknown driver is a 404 whatever the body holds.
        state.tocsin.plugins().ingestors.get(d)?;
    }
    let secrets = secrets(&state);
    let req = IngestRequest {
        driver,
        body: IngestBody::Raw(bytes.to_vec()),
        // Only a signature reads them.
        headers: if secrets.is_empty() {
            Headers::new()
        } else {
            lowercase_headers(&headers)
        },
        trace_id: trace.map(|Extension(TraceId(t))| t),
    };
    let hook = state.extension::<HookFactory>().map(|f| (f.0)());
    let outcome = service::ingest_with_secrets(&state.tocsin, req, hook, &secrets)
        .await
        .map_err(|e| {
            if tocsin_ingest::signature::is_signature_failure(&e) {
                tracing::warn!(error = %e, "A webhook failed signature verification.");
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.message())
            } else {
                ApiError::from(e)
            }
        })?;
    // The runs were queued in the ingest transaction; now that it committed, start them.
    if let Some(engine) = state.extension::<tocsin_core::engine::Engine>() {
        tocsin_ingest::pipeline::dispatch(&engine, &outcome.run_ids).await?;
    }
    let status = if outcome.alerts.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = Accepted {
        status: if outcome.alerts.is_empty() {
            "accepted_empty"
        } else {
            "accepted"
        },
        alerts_received: outcome.alerts.len(),
        outcome: &outcome,
    };
    json_answer(status, &body)
}

/// `body` as a JSON response, serialized into one buffer sized for a webhook's answer. axum's
/// `Json` writes through `BytesMut`'s `io::Write` a token at a time, which on the dedupe path
/// cost a tenth of the request side's CPU.
fn json_answer(status: StatusCode, body: &impl serde::Serialize) -> Result<Response, ApiError> {
    let mut buf = Vec::with_capacity(1024);
    serde_json::to_writer(&mut buf, body).map_err(|e| {
        ApiError::from(tocsin_core::Error::internal(format!(
            "cannot serialise the answer: {e}"
        )))
    })?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        buf,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The webhook's future is moved whole into a new box by each boxed layer around it, so its
    /// size is paid in copies on every request: a branch that awaits a large future inline (an
    /// eager pipeline run once made it 11 KiB) must box it instead (docs/performance.md).
    #[tokio::test]
    async fn the_webhook_future_stays_small() {
        let store = tocsin_core::store::Store::open("sqlite::memory:", 1)
            .await
            .unwrap();
        let tocsin = tocsin_core::Tocsin::new(
            store,
            tocsin_core::plugin::Plugins::default(),
            Default::default(),
        );
        let f = receive(
            AppState::new(tocsin),
            None,
            None,
            HeaderMap::new(),
            RawJson(axum::body::Bytes::new()),
        );
        let size = std::mem::size_of_val(&f);
        assert!(size <= 4096, "the webhook handler's future is {size} bytes");
    }
}
