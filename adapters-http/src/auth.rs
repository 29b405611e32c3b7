//! API-key authentication: keys from `TOCSIN_API_KEYS`, compared in constant time.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tocsin_core::ApiKey;

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

/// The configured key equal to `given`, compared in constant time. Comparing digests keeps the
/// comparison constant-time whatever the lengths; every key is compared, so the position of a
/// match does not show in the timing either. The console's login uses the same check.
pub(crate) fn find_key<'a>(keys: &'a [ApiKey], given: &str) -> Option<&'a ApiKey> {
    let given = Sha256::digest(given.as_bytes());
    let mut matched = None;
    for k in keys {
        let want = Sha256::digest(k.key.expose().as_bytes());
        if bool::from(want.ct_eq(&given)) && matched.is_none() {
            matched = Some(k);
        }
    }
    matched
}

/// Whether a path belongs to the web console, which authenticates with its own session cookie.
pub(crate) fn is_console_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// The answer refusing a request without a valid key when keys are configured; `None` lets it
/// through. The console's paths are left to the console, which requires its session cookie
/// instead.
pub(crate) fn refusal(state: &AppState, req: &Request) -> Option<Response> {
    let keys = &state.tocsin.config().api_keys;
    if keys.is_empty() || req.uri().path() == "/healthz" || is_console_path(req.uri().path()) {
        return None;
    }
    let Some(given) = presented_key(req) else {
        return Some(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API key is required (Authorization: Bearer KEY or X-API-Key)",
            )
            .into_response(),
        );
    };
    match find_key(keys, given) {
        None => Some(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API key is not valid",
            )
            .into_response(),
        ),
        Some(k) if !k.allows(req.uri().path()) => Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key may not call {}", req.uri().path()),
            )
            .into_response(),
        ),
        Some(_) => None,
    }
}
