//! Notification channels: list, create and edit with the driver's fields as a form (secrets are
//! write-only: never written back into a page, a blank one keeps the stored value), test
//! notification, enable/disable.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use tocsin_core::domain::NotificationChannel;
use tocsin_core::secret::is_secret_key;
use tocsin_notify::DriverInfo;

use super::form::param;
use super::{ConsoleError, FormData, Page, Params, Session, back, field, params, render};
use crate::{AppState, TraceId};

/// Whether a config field is write-only: secret-named, webhook headers (often credentials), or a
/// value the notify crate's redaction changes (a URL whose query carries a token).
fn is_secret_field(name: &str, stored: Option<&Value>) -> bool {
    is_secret_key(name)
        || name == "headers"
        || stored.is_some_and(|c| {
            let redacted = tocsin_notify::redact_config(c);
            redacted.get(name) != c.get(name)
        })
}

/// The fields of a driver's form. Stored values are shown for ordinary fields only.
fn fields(info: &DriverInfo, stored: Option<&Value>, submitted: Option<&FormData>) -> Vec<Value> {
    let required = info.required.iter().map(|f| (*f, true));
    let optional = info.optional.iter().map(|f| (*f, false));
    required
        .chain(optional)
        .map(|(name, required)| {
            let secret = is_secret_field(name, stored);
            let stored_value = stored.and_then(|c| c.get(name)).filter(|v| !v.is_null());
            let value = if secret {
                String::new()
            } else if let Some(form) = submitted {
                form.get(&format!("config.{name}"))
                    .unwrap_or_default()
                    .to_owned()
            } else {
                match stored_value {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                }
            };
            let example = info.example.get(name);
            let json_kind = example.is_some_and(|v| !v.is_string());
            json!({
                "name": name,
                "required": required,
                "secret": secret,
                "is_set": secret && stored_value.is_some(),
                "value": value,
                "json": json_kind,
                "placeholder": example.filter(|_| !secret).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }).unwrap_or_default(),
            })
        })
        .collect()
}

/// The config a form describes, on top of the stored one (a blank secret keeps its value).
fn config_from(info: &DriverInfo, form: &FormData, stored: Option<&Value>) -> Value {
    let mut config: Map<String, Value> = stored
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for name in info.required.iter().chain(info.optional) {
        let secret = is_secret_field(name, stored);
        let raw = form
            .get(&format!("config.{name}"))
            .unwrap_or_default()
            .trim();
        if raw.is_empty() {
            if !secret {
                config.remove(*name);
            }
            continue;
        }
        // Strings stay strings where the driver's example has a string (or a secret); other
        // fields take JSON (`["a@x"]`, `587`, `{"k": "v"}`), falling back to the text.
        let as_text = match info.example.get(*name) {
            Some(v) => v.is_string(),
            None => secret && *name != "headers",
        };
        let value = if as_text {
            Value::String(raw.to_owned())
        } else {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
        };
        config.insert((*name).to_owned(), value);
    }
    Value::Object(config)
}

/// `GET /admin/channels`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let channels: Vec<NotificationChannel> = tocsin_notify::list_channels(&state.tocsin, false)
        .await?
        .into_iter()
        .map(tocsin_notify::redacted_channel)
        .collect();
    // Configs are not shown in the list at all; only names and states.
    let rows: Vec<Value> = channels
        .iter()
        .map(|c| {
            json!({"name": c.name, "driver": c.driver, "enabled": c.enabled,
                        "description": c.description, "updated_at": c.updated_at})
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        "channels.html",
        Some(&session),
        json!({
            "nav": "channels",
            "flash": p.get("flash"),
            "channels": rows,
            "drivers": tocsin_notify::list_drivers(&state.tocsin),
        }),
    ))
}

struct FormPage<'a> {
    info: &'a DriverInfo,
    channel: Option<&'a NotificationChannel>,
    name: &'a str,
    description: &'a str,
    submitted: Option<&'a FormData>,
    error: Option<String>,
    test_result: Option<Value>,
    flash: Option<&'a String>,
}

fn form_page(session: &Session, status: StatusCode, f: FormPage<'_>) -> Response {
    let stored = f.channel.map(|c| &c.config);
    render(
        status,
        "channel.html",
        Some(session),
        json!({
            "nav": "channels",
            "flash": f.flash,
            "is_new": f.channel.is_none(),
            "name": f.name,
            "description": f.description,
            "enabled": f.channel.map(|c| c.enabled),
            "driver": {"name": f.info.name, "description": f.info.description},
            "fields": fields(f.info, stored, f.submitted),
            "error": f.error,
            "test_result": f.test_result,
        }),
    )
}

/// `GET /admin/channels/new?driver=...`.
pub(crate) async fn new_form(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let driver = param(&p, "driver");
    if driver.is_empty() {
        return Err(ConsoleError::bad_request(
            "choose a driver: /admin/channels/new?driver=NAME",
        ));
    }
    let info = tocsin_notify::driver_info(&state.tocsin, &driver)?;
    Ok(form_page(
        &session,
        StatusCode::OK,
        FormPage {
            info: &info,
            channel: None,
            name: "",
            description: "",
            submitted: None,
            error: None,
            test_result: None,
            flash: None,
        },
    ))
}

/// `GET /admin/channels/{name}`.
pub(crate) async fn edit(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let channel = tocsin_notify::get_channel(&state.tocsin, &name).await?;
    let info = tocsin_notify::driver_info(&state.tocsin, &channel.driver)?;
    Ok(form_page(
        &session,
        StatusCode::OK,
        FormPage {
            info: &info,
            channel: Some(&channel),
            name: &channel.name,
            description: &channel.description,
            submitted: None,
            error: None,
            test_result: None,
            flash: p.get("flash"),
        },
    ))
}

/// `POST /admin/channels`: `name`, `driver`, `description`, `config.FIELD`...
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<FormData>,
) -> Page {
    let driver = field(&form, "driver");
    let info = tocsin_notify::driver_info(&state.tocsin, &driver)?;
    let (name, description) = (
        field(&form, "name").trim().to_owned(),
        field(&form, "description"),
    );
    let config = config_from(&info, &form, None);
    match tocsin_notify::create_channel(&state.tocsin, &name, &driver, &config, &description).await
    {
        Ok(c) => Ok(back(
            &format!("/admin/channels/{}", c.name),
            "channel_created",
        )),
        Err(e) if super::status_of(&e).is_client_error() => Ok(form_page(
            &session,
            StatusCode::UNPROCESSABLE_ENTITY,
            FormPage {
                info: &info,
                channel: None,
                name: &name,
                description: &description,
                submitted: Some(&form),
                error: Some(e.message().to_owned()),
                test_result: None,
                flash: None,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/channels/{name}`: `description`, `config.FIELD`...
pub(crate) async fn save(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<FormData>,
    Path(name): Path<String>,
) -> Page {
    let channel = tocsin_notify::get_channel(&state.tocsin, &name).await?;
    let info = tocsin_notify::driver_info(&state.tocsin, &channel.driver)?;
    let config = config_from(&info, &form, Some(&channel.config));
    let description = field(&form, "description");
    match tocsin_notify::update_channel(&state.tocsin, &name, Some(&config), Some(&description))
        .await
    {
        Ok(c) => Ok(back(
            &format!("/admin/channels/{}", c.name),
            "channel_saved",
        )),
        Err(e) if super::status_of(&e).is_client_error() => Ok(form_page(
            &session,
            StatusCode::UNPROCESSABLE_ENTITY,
            FormPage {
                info: &info,
                channel: Some(&channel),
                name: &name,
                description: &description,
                submitted: Some(&form),
                error: Some(e.message().to_owned()),
                test_result: None,
                flash: None,
            },
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/channels/{name}/{test|enable|disable}`.
pub(crate) async fn action(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(trace): Extension<TraceId>,
    Path((name, action)): Path<(String, String)>,
) -> Page {
    match action.as_str() {
        "enable" => {
            let c = tocsin_notify::enable_channel(&state.tocsin, &name).await?;
            Ok(back(&format!("/admin/channels/{}", c.name), "enabled"))
        }
        "disable" => {
            let c = tocsin_notify::disable_channel(&state.tocsin, &name).await?;
            Ok(back(&format!("/admin/channels/{}", c.name), "disabled"))
        }
        "test" => {
            let channel = tocsin_notify::get_channel(&state.tocsin, &name).await?;
            let info = tocsin_notify::driver_info(&state.tocsin, &channel.driver)?;
            let body = json!({
                "channel": name,
                "title": "Test notification from the tocsin console",
                "message": "If you can read this, the channel works.",
                "severity": "info",
            });
            let result = match crate::notify::send_body(&state, &body, None, &trace.0).await {
                Ok(outcome) => match outcome.results.first() {
                    Some(r) => json!({
                        "status": r.status,
                        "attempts": r.attempts,
                        "response": r.response,
                        "message": r.error.as_ref().map(|e| e.message.clone()),
                    }),
                    None => json!({"status": "skipped", "attempts": 0,
                                   "message": "no delivery was attempted"}),
                },
                Err(e) => json!({"status": "failed", "message": e.message}),
            };
            Ok(form_page(
                &session,
                StatusCode::OK,
                FormPage {
                    info: &info,
                    channel: Some(&channel),
                    name: &channel.name,
                    description: &channel.description,
                    submitted: None,
                    error: None,
                    test_result: Some(result),
                    flash: None,
                },
            ))
        }
        other => Err(ConsoleError::not_found(format!(
            "no channel action {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DriverInfo {
        DriverInfo {
            name: "email",
            description: "",
            required: &["smtp_host", "to"],
            optional: &["password", "smtp_port", "headers"],
            example: json!({"smtp_host": "h", "to": ["a"], "password": "p", "smtp_port": 587}),
        }
    }

    #[test]
    fn blank_secrets_keep_the_stored_value_and_types_follow_the_example() {
        let stored = json!({"smtp_host": "old", "to": ["x"], "password": "hunter2", "extra": 1});
        let form = FormData::parse(
            b"config.smtp_host=new&config.to=%5B%22a%40b%22%5D&config.password=&config.smtp_port=25",
        );
        let c = config_from(&info(), &form, Some(&stored));
        assert_eq!(
            c,
            json!({"smtp_host": "new", "to": ["a@b"], "password": "hunter2", "smtp_port": 25, "extra": 1})
        );
        let shown = fields(&info(), Some(&stored), None);
        assert!(!serde_json::to_string(&shown).unwrap().contains("hunter2"));
    }
}
