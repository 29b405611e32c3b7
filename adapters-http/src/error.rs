//! The one JSON error body of the HTTP API, and the extractor that produces it for bad bodies.
//!
//! Every error, whatever its cause, is `{"error": {"kind": "...", "message": "..."}}` with a status
//! chosen here, in one place, from the library's [`ErrorKind`].

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use tocsin_core::{Error, ErrorKind};

/// An error answer: a status, a stable kind and a message for humans.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable kind.
    pub kind: &'static str,
    /// Message (never contains a secret).
    pub message: String,
}

impl ApiError {
    /// A new error answer.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400 with kind `invalid_input`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404 with kind `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

/// The status of each library error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::InvalidConfig => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::UnrecognizedPayload => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Upstream | ErrorKind::Unauthorized => StatusCode::BAD_GATEWAY,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Storage => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status = status_of(err.kind());
        if status.is_server_error() {
            tracing::warn!(error = %err, "Request failed.");
        }
        Self {
            status,
            kind: err.kind().as_str(),
            message: err.message().to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"kind": self.kind, "message": self.message}})),
        )
            .into_response()
    }
}

/// A JSON request body, with every failure mapped to the JSON error body: wrong content type 415,
/// over the body limit 413, malformed JSON 400, JSON of the wrong shape 422.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// The raw bytes of a JSON request body after the content-type and size checks.
#[derive(Debug, Clone)]
pub struct RawJson(pub axum::body::Bytes);

/// Checks the content type: `application/json` or any `+json` type; a missing one is accepted,
/// since many webhook senders omit it.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type: application/json, got {mime:?}"),
        ))
    }
}

fn bytes_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the limit",
        )
    } else {
        ApiError::bad_request(format!("cannot read the request body: {r}"))
    }
}

impl<S: Send + Sync> FromRequest<S> for RawJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_json_content_type(req.headers())?;
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        Ok(Self(bytes))
    }
}

/// Parses JSON bytes: malformed JSON is 400, the wrong shape 422; both say where.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid UTF-8: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(text).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!("invalid request: {e}"),
            )
        } else {
            ApiError::bad_request(format!("malformed JSON: {e}"))
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawJson(bytes) = RawJson::from_request(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "the request body is empty; a JSON document is required",
            ));
        }
        parse_json(&bytes).map(JsonBody)
    }
}
