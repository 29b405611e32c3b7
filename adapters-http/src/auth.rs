//! API-key authentication: keys from `TOCSIN_API_KEYS`, compared in constant time.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// The key a request presents, from `Authorization: Bearer KEY` or `X-API-Key: KEY`.
fn presented_key(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = h.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
}

/// Rejects requests without a valid key when keys are configured.
pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let keys = &state.tocsin.config().api_keys;
    if keys.is_empty() || req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let Some(given) = presented_key(&req) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is required (Authorization: Bearer KEY or X-API-Key)",
        )
        .into_response();
    };
    // Comparing digests keeps the comparison constant-time whatever the lengths; every key is
    // compared, so the position of a match does not show in the timing either.
    let given = Sha256::digest(given.as_bytes());
    let mut matched = None;
    for k in keys {
        let want = Sha256::digest(k.key.expose().as_bytes());
        if bool::from(want.ct_eq(&given)) && matched.is_none() {
            matched = Some(k);
        }
    }
    match matched {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the API key is not valid",
        )
        .into_response(),
        Some(k) if !k.allows(req.uri().path()) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this API key may not call {}", req.uri().path()),
        )
        .into_response(),
        Some(_) => next.run(req).await,
    }
}
