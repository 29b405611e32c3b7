//! The operator's web console at `/admin/`: server-rendered HTML (minijinja templates embedded in
//! the binary), one small stylesheet and one small script, no build step.
//!
//! Each page calls the library exactly as the JSON API does (the shared calls live in the API's
//! modules); this module only parses forms, renders pages and guards them. Authentication is the
//! console's own ([`session`]): a login with an API key sets a signed session cookie; every form
//! carries a CSRF token; with no API keys configured the console is open (the server then binds
//! loopback only) but still checks CSRF tokens.

mod alerts;
mod channels;
mod checks;
mod dashboard;
mod definitions;
mod form;
mod incidents;
mod runs;
mod session;
mod view;

use axum::extract::Path;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router, middleware};
use serde_json::Value;
use tocsin_core::store::console::PageRequest;

pub(crate) use form::{FormData, Params};
pub(crate) use session::Session;
pub(crate) use view::{ConsoleError, Page, render};

use crate::AppState;

/// Rows per list page.
pub(crate) const PAGE_SIZE: i64 = 50;

const CSS: &str = include_str!("../../console/static/console.css");
const JS: &str = include_str!("../../console/static/console.js");

/// The console's routes, guarded by its session middleware.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let ctx = session::ConsoleCtx::new(state);
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/", get(dashboard::page))
        .route(
            "/admin/login",
            get(session::login_page).post(session::login),
        )
        .route("/admin/logout", post(session::logout))
        .route("/admin/static/{file}", get(static_file))
        .route("/admin/incidents", get(incidents::list))
        .route("/admin/incidents/{id}", get(incidents::detail))
        .route("/admin/incidents/{id}/{action}", post(incidents::action))
        .route("/admin/alerts", get(alerts::list))
        .route("/admin/alerts/{id}", get(alerts::detail))
        .route("/admin/runs", get(runs::list))
        .route("/admin/runs/{run_id}", get(runs::detail))
        .route("/admin/runs/{run_id}/resume", post(runs::resume))
        .route(
            "/admin/definitions",
            get(definitions::list).post(definitions::create),
        )
        .route("/admin/definitions/new", get(definitions::new_form))
        .route(
            "/admin/definitions/{name}",
            get(definitions::edit).post(definitions::save),
        )
        .route(
            "/admin/definitions/{name}/{action}",
            post(definitions::action),
        )
        .route(
            "/admin/channels",
            get(channels::list).post(channels::create),
        )
        .route("/admin/channels/new", get(channels::new_form))
        .route(
            "/admin/channels/{name}",
            get(channels::edit).post(channels::save),
        )
        .route("/admin/channels/{name}/{action}", post(channels::action))
        .route("/admin/checks", get(checks::checks))
        .route("/admin/analyses", get(checks::analyses))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::guard,
        ))
        .route_layer(Extension(ctx))
        .route_layer(middleware::from_fn(session::security_headers))
}

/// The HTML 404 of unknown console paths.
pub(crate) fn not_found(path: &str) -> Response {
    let mut res =
        ConsoleError::not_found(format!("there is no console page at {path}")).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    res
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, ct) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return ConsoleError::not_found("no such static file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Query parameters, or a 400 page.
pub(crate) fn params(
    q: Result<axum::extract::Query<Params>, QueryRejection>,
) -> Result<Params, ConsoleError> {
    q.map(|axum::extract::Query(p)| p)
        .map_err(|e| ConsoleError::bad_request(format!("invalid query string: {e}")))
}

/// The `page` parameter: a whole number from 1; absent is 1.
pub(crate) fn page_number(p: &Params) -> Result<usize, ConsoleError> {
    let raw = form::param(p, "page");
    if raw.is_empty() {
        return Ok(1);
    }
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            ConsoleError::bad_request(format!("page must be a whole number from 1, got {raw:?}"))
        })
}

/// An optional enum filter (`status=open`), or a 400 page naming the parameter.
pub(crate) fn enum_param<T>(p: &Params, name: &str) -> Result<Option<T>, ConsoleError>
where
    T: std::str::FromStr<Err = tocsin_core::Error>,
{
    let raw = form::param(p, name);
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<T>()
        .map(Some)
        .map_err(|e| ConsoleError::bad_request(format!("{name}: {}", e.message())))
}

/// An optional incident id filter (`incident=12`), or a 400 page naming the parameter.
pub(crate) fn incident_param(p: &Params) -> Result<Option<i64>, ConsoleError> {
    let raw = form::param(p, "incident");
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>().map(Some).map_err(|_| {
        ConsoleError::bad_request(format!("incident must be an incident id, got {raw:?}"))
    })
}

/// Where a list page sits among all the pages of its filter, and the links to its neighbours.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Pager {
    /// This page, from 1.
    pub page: usize,
    /// How many pages the filter has (at least 1, so an empty list is "page 1 of 1").
    pub pages: i64,
    /// How many rows match the filter, over every page.
    pub total: i64,
    /// Link to the previous page.
    pub prev: Option<String>,
    /// Link to the next page.
    pub next: Option<String>,
}

/// The rows page `page` of a list reads.
pub(crate) fn page_request(page: usize) -> PageRequest {
    PageRequest::page(i64::try_from(page).unwrap_or(i64::MAX), PAGE_SIZE)
}

/// The pager of page `page` of a list whose filter matches `total` rows; the links keep the
/// filters. A page past the end still links back, so a stale bookmark is not a dead end.
pub(crate) fn pager(page: usize, total: i64, path: &str, filters: &[(&str, String)]) -> Pager {
    let pages = ((total.max(0) + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let last = usize::try_from(pages).unwrap_or(usize::MAX);
    let at = |n: usize| {
        let mut f: Vec<(&str, String)> = filters.to_vec();
        if n > 1 {
            f.push(("page", n.to_string()));
        }
        form::link(path, &f)
    };
    Pager {
        page,
        pages,
        total,
        prev: (page > 1).then(|| at((page - 1).min(last))),
        next: (page < last).then(|| at(page + 1)),
    }
}

/// Pretty JSON with secret-named fields redacted, for `<pre>` blocks.
pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(&tocsin_core::secret::redact(v)).unwrap_or_default()
}

/// A 303 back to a page with a flash message key.
pub(crate) fn back(path: &str, flash: &str) -> Response {
    Redirect::to(&form::link(path, &[("flash", flash.to_owned())])).into_response()
}

/// The form of a POST (the guard decoded it).
pub(crate) fn field(form: &FormData, name: &str) -> String {
    form.get(name).unwrap_or_default().to_owned()
}

/// The status an error page gets for a library error.
pub(crate) fn status_of(e: &tocsin_core::Error) -> StatusCode {
    crate::error::status_of(e.kind())
}
