//! Pipeline definitions: list, create, edit with every validation problem shown beside its node,
//! enable/disable, and execute with a sample payload.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tocsin_core::engine::{self, Problem};
use tocsin_core::store;

use super::{ConsoleError, FormData, Page, Params, Session, back, field, params, render};
use crate::orchestration::{self, SaveError};
use crate::{AppState, TraceId};

/// What the execute form is prefilled with: a complete Alertmanager webhook v4 body, shaped like
/// the example in Alertmanager's documentation
/// (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>). The
/// `alertmanager` ingest driver recognises a body by `"version": "4"`, a `groupKey` string and an
/// `alerts` array, so a definition that starts with an `ingest` node accepts it unchanged.
const SAMPLE_PAYLOAD: &str = r#"{
  "version": "4",
  "groupKey": "{}:{alertname=\"ConsoleSample\"}",
  "truncatedAlerts": 0,
  "status": "firing",
  "receiver": "tocsin",
  "groupLabels": {"alertname": "ConsoleSample"},
  "commonLabels": {"alertname": "ConsoleSample", "instance": "console:9100", "job": "node", "severity": "warning"},
  "commonAnnotations": {"summary": "A sample alert sent from the tocsin console", "description": "Executed by hand from the definition page"},
  "externalURL": "http://alertmanager.example.com:9093",
  "alerts": [
    {
      "status": "firing",
      "labels": {"alertname": "ConsoleSample", "instance": "console:9100", "job": "node", "severity": "warning"},
      "annotations": {"summary": "A sample alert sent from the tocsin console", "description": "Executed by hand from the definition page"},
      "startsAt": "2026-01-01T00:00:00Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=up+%3D%3D+0",
      "fingerprint": "c0a5e1e5a1e7c0de"
    }
  ]
}"#;

const NEW_TEMPLATE: &str = r#"{
  "version": "1",
  "description": "",
  "nodes": [
    {"id": "ingest", "type": "ingest", "next": "notify"},
    {"id": "notify", "type": "notify"}
  ]
}"#;

/// `GET /admin/definitions`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let defs = state.tocsin.store().run(store::list_definitions).await?;
    let builtin: Vec<Value> = engine::BUILTIN_DEFINITIONS
        .iter()
        .filter_map(|n| {
            orchestration::builtin_definition(n)
                .map(|d| json!({"name": n, "description": d.description}))
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        "definitions.html",
        Some(&session),
        json!({"nav": "definitions", "flash": p.get("flash"), "definitions": defs, "builtin": builtin}),
    ))
}

struct FormPage<'a> {
    name: &'a str,
    is_new: bool,
    builtin: bool,
    text: &'a str,
    /// The parsed document, when the text is JSON: the outline beside the editor is drawn from it.
    doc: Option<&'a Value>,
    errors: &'a [Problem],
    stored: Option<Value>,
    flash: Option<&'a String>,
}

/// One node of the outline beside the editor, with the problems that concern it.
#[derive(Debug, Serialize)]
struct OutlineNode<'a> {
    id: String,
    kind: String,
    next: String,
    errors: Vec<&'a str>,
}

/// A field of a node as the outline shows it: a string as it is, anything else as JSON.
fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// Splits the problems between the nodes of `doc` (in their order) and the general ones. A problem
/// naming a node the outline does not show (or any problem, when there is no `nodes` array to
/// outline) is general. With duplicate ids, a problem goes to the first node with that id.
fn outline<'a>(
    doc: Option<&Value>,
    problems: &'a [Problem],
) -> (Option<Vec<OutlineNode<'a>>>, Vec<&'a Problem>) {
    let Some(nodes) = doc.and_then(|d| d.get("nodes")).and_then(Value::as_array) else {
        return (None, problems.iter().collect());
    };
    let mut outline: Vec<OutlineNode<'a>> = nodes
        .iter()
        .map(|n| OutlineNode {
            id: shown(n.get("id")),
            kind: shown(n.get("type")),
            next: shown(n.get("next")),
            errors: Vec::new(),
        })
        .collect();
    let mut general = Vec::new();
    for p in problems {
        let node = p
            .node
            .as_deref()
            .and_then(|id| outline.iter_mut().find(|n| !id.is_empty() && n.id == id));
        match node {
            Some(n) => n.errors.push(&p.message),
            None => general.push(p),
        }
    }
    (Some(outline), general)
}

fn form_page(session: &Session, status: StatusCode, f: FormPage<'_>) -> Response {
    let (nodes, general) = outline(f.doc, f.errors);
    render(
        status,
        "definition.html",
        Some(session),
        json!({
            "nav": "definitions",
            "flash": f.flash,
            "name": f.name,
            "is_new": f.is_new,
            "builtin": f.builtin,
            "text": f.text,
            "errors": f.errors,
            "general_errors": general,
            "nodes": nodes,
            "stored": f.stored,
            "sample_payload": SAMPLE_PAYLOAD,
        }),
    )
}

/// `GET /admin/definitions/new`.
pub(crate) async fn new_form(Extension(session): Extension<Session>) -> Response {
    let doc: Option<Value> = serde_json::from_str(NEW_TEMPLATE).ok();
    form_page(
        &session,
        StatusCode::OK,
        FormPage {
            name: "",
            is_new: true,
            builtin: false,
            text: NEW_TEMPLATE,
            doc: doc.as_ref(),
            errors: &[],
            stored: None,
            flash: None,
        },
    )
}

/// `GET /admin/definitions/{name}`.
pub(crate) async fn edit(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    if let Some(def) = orchestration::builtin_definition(&name) {
        let text = serde_json::to_string_pretty(&def).unwrap_or_default();
        let doc = serde_json::to_value(&def).ok();
        return Ok(form_page(
            &session,
            StatusCode::OK,
            FormPage {
                name: &name,
                is_new: false,
                builtin: true,
                text: &text,
                doc: doc.as_ref(),
                errors: &[],
                stored: None,
                flash: p.get("flash"),
            },
        ));
    }
    let n = name.clone();
    let d = state
        .tocsin
        .store()
        .run(move |c| store::get_definition(c, &n))
        .await?;
    let mut doc = d.config.clone();
    if !d.tags.is_empty()
        && let Some(o) = doc.as_object_mut()
    {
        o.insert("tags".into(), json!(d.tags));
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    Ok(form_page(
        &session,
        StatusCode::OK,
        FormPage {
            name: &name,
            is_new: false,
            builtin: false,
            text: &text,
            doc: Some(&doc),
            errors: &[],
            stored: Some(json!(d)),
            flash: p.get("flash"),
        },
    ))
}

fn general(message: impl Into<String>) -> Problem {
    Problem {
        node: None,
        message: message.into(),
    }
}

/// Parses and saves; on a problem, the form again with status 422, the submitted text kept.
async fn submit(
    state: &AppState,
    session: &Session,
    name: String,
    text: String,
    is_new: bool,
) -> Response {
    let again = |problems: Vec<Problem>, name: &str, doc: Option<&Value>| {
        form_page(
            session,
            StatusCode::UNPROCESSABLE_ENTITY,
            FormPage {
                name,
                is_new,
                builtin: false,
                text: &text,
                doc,
                errors: &problems,
                stored: None,
                flash: None,
            },
        )
    };
    let doc: Value = match serde_json::from_str(text.trim_start_matches('\u{feff}')) {
        Ok(v) => v,
        Err(e) => {
            return again(
                vec![general(format!(
                    "malformed JSON at line {}, column {}: {e}",
                    e.line(),
                    e.column()
                ))],
                &name,
                None,
            );
        }
    };
    let name = if name.trim().is_empty() {
        doc.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    } else {
        name.trim().to_owned()
    };
    if is_new && !name.is_empty() {
        let n = name.clone();
        if let Ok(Ok(_)) = state
            .tocsin
            .store()
            .run(move |c| Ok(store::get_definition(c, &n)))
            .await
        {
            return again(
                vec![general(format!(
                    "a definition named {name:?} already exists; edit it instead"
                ))],
                &name,
                Some(&doc),
            );
        }
    }
    // The outline is drawn from the text as submitted, so keep a copy for the error page.
    let shown = doc.clone();
    match orchestration::save_definition(state, name.clone(), doc).await {
        Ok(d) => back(
            &format!("/admin/definitions/{}", d.name),
            if is_new { "created" } else { "saved" },
        ),
        Err(SaveError::Invalid(problems)) => again(problems, &name, Some(&shown)),
        Err(SaveError::Other(e)) if e.status.is_client_error() => {
            again(vec![general(e.message)], &name, Some(&shown))
        }
        Err(SaveError::Other(e)) => ConsoleError::from(e).into_response(),
    }
}

/// `POST /admin/definitions`: fields `name` and `definition`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<FormData>,
) -> Response {
    submit(
        &state,
        &session,
        field(&form, "name"),
        field(&form, "definition"),
        true,
    )
    .await
}

/// `POST /admin/definitions/{name}`: field `definition`.
pub(crate) async fn save(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<FormData>,
    Path(name): Path<String>,
) -> Response {
    submit(&state, &session, name, field(&form, "definition"), false).await
}

/// `POST /admin/definitions/{name}/{enable|disable|execute}`.
pub(crate) async fn action(
    State(state): State<AppState>,
    Extension(form): Extension<FormData>,
    Extension(trace): Extension<TraceId>,
    Path((name, action)): Path<(String, String)>,
) -> Page {
    match action.as_str() {
        "enable" | "disable" => {
            let active = action == "enable";
            let n = name.clone();
            let d = state
                .tocsin
                .store()
                .write(move |c| store::set_definition_active(c, &n, active))
                .await?;
            Ok(back(
                &format!("/admin/definitions/{}", d.name),
                if active { "enabled" } else { "disabled" },
            ))
        }
        "execute" => {
            let text = field(&form, "payload");
            let payload: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    ConsoleError::bad_request(format!(
                        "the payload is malformed JSON at line {}, column {}: {e}",
                        e.line(),
                        e.column()
                    ))
                })?
            };
            let submit = orchestration::execute_submit(name, payload, &trace);
            let run = orchestration::launch(&state, submit, false).await?;
            Ok(Redirect::to(&format!("/admin/runs/{}", run.run_id)).into_response())
        }
        other => Err(ConsoleError::not_found(format!(
            "no definition action {other:?}"
        ))),
    }
}
