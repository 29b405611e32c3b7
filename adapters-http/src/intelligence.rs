//! The `/intelligence/` endpoints (filled in by the intelligence work).

use axum::Router;

use crate::AppState;

/// The routes of this area.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
