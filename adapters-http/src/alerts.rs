//! The `/alerts/` endpoints (filled in by the alerts work).

use axum::Router;

use crate::AppState;

/// The routes of this area.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
