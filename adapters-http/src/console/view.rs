//! The templates, built once into one minijinja environment, and the console's error pages.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde_json::{Value, json};

use super::session::Session;
use crate::ApiError;

/// Every template, by name; `.html` names turn HTML auto-escaping on.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../../console/templates/layout.html"),
    ),
    (
        "login.html",
        include_str!("../../console/templates/login.html"),
    ),
    (
        "error.html",
        include_str!("../../console/templates/error.html"),
    ),
    (
        "dashboard.html",
        include_str!("../../console/templates/dashboard.html"),
    ),
    (
        "pager.html",
        include_str!("../../console/templates/pager.html"),
    ),
    (
        "incidents.html",
        include_str!("../../console/templates/incidents.html"),
    ),
    (
        "incident.html",
        include_str!("../../console/templates/incident.html"),
    ),
    (
        "alerts.html",
        include_str!("../../console/templates/alerts.html"),
    ),
    (
        "alert.html",
        include_str!("../../console/templates/alert.html"),
    ),
    (
        "runs.html",
        include_str!("../../console/templates/runs.html"),
    ),
    ("run.html", include_str!("../../console/templates/run.html")),
    (
        "definitions.html",
        include_str!("../../console/templates/definitions.html"),
    ),
    (
        "definition.html",
        include_str!("../../console/templates/definition.html"),
    ),
    (
        "channels.html",
        include_str!("../../console/templates/channels.html"),
    ),
    (
        "channel.html",
        include_str!("../../console/templates/channel.html"),
    ),
    (
        "checks.html",
        include_str!("../../console/templates/checks.html"),
    ),
    (
        "analyses.html",
        include_str!("../../console/templates/analyses.html"),
    ),
];

/// A stored timestamp (`2026-01-02T03:04:05.123456Z`) as `2026-01-02 03:04:05`.
fn when(v: Option<String>) -> String {
    let Some(v) = v else { return String::new() };
    let v = v.replace('T', " ");
    let v = v.split('.').next().unwrap_or_default();
    v.trim_end_matches('Z').to_owned()
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Explicit, rather than relying on the default: every `.html` template escapes its values.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.add_filter("when", when);
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "A console template does not compile.");
            }
        }
        env
    })
}

/// The text of a flash message key (`?flash=saved`); unknown keys show nothing, so a crafted link
/// cannot put words in the console's mouth.
fn flash_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "acknowledged" => "Incident acknowledged.",
        "resolved" => "Incident resolved.",
        "closed" => "Incident closed.",
        "reopened" => "Incident re-opened.",
        "note" => "Note added.",
        "saved" => "Definition saved.",
        "created" => "Definition created.",
        "enabled" => "Enabled.",
        "disabled" => "Disabled.",
        "resumed" => "Run resumed.",
        "executed" => "Run submitted.",
        "channel_saved" => "Channel saved.",
        "channel_created" => "Channel created.",
        _ => return None,
    })
}

/// Renders a page: `ctx` plus the session's CSRF token, the open-mode flag and the flash message.
pub(crate) fn render(
    status: StatusCode,
    template: &str,
    session: Option<&Session>,
    mut ctx: Value,
) -> Response {
    if let Value::Object(m) = &mut ctx {
        m.insert("csrf".into(), json!(session.map(|s| s.csrf.clone())));
        m.insert("open_mode".into(), json!(session.is_some_and(|s| s.open)));
        m.insert("logged_in".into(), json!(session.is_some_and(|s| !s.open)));
        let flash = m.get("flash").and_then(Value::as_str).and_then(flash_text);
        m.insert("flash".into(), json!(flash));
    }
    let html = env()
        .get_template(template)
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)));
    match html {
        Ok(html) => {
            let mut res = (status, html).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(template, error = %e, "A console page failed to render.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "internal error",
            )
                .into_response()
        }
    }
}

/// An error answered as an HTML page.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleError {
    status: StatusCode,
    message: String,
}

impl ConsoleError {
    /// An error page with this status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        Self::new(e.status, e.message)
    }
}

impl From<tocsin_core::Error> for ConsoleError {
    fn from(e: tocsin_core::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        render(
            self.status,
            "error.html",
            None,
            json!({"status": self.status.as_u16(), "title": title, "message": self.message}),
        )
    }
}

/// What console handlers answer.
pub(crate) type Page = Result<Response, ConsoleError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_html_is_escaped() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
        let html = env()
            .get_template("error.html")
            .and_then(|t| {
                t.render(minijinja::value::Serde(&json!({
                    "status": 400, "title": "t", "message": "<script>alert(1)</script>\"'"
                })))
            })
            .unwrap();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
        assert!(!html.contains("\"'<"), "quotes are escaped too");
        assert_eq!(
            when(Some("2026-01-02T03:04:05.123Z".into())),
            "2026-01-02 03:04:05"
        );
        assert_eq!(flash_text("<b>made up</b>"), None);
    }
}
