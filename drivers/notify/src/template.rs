//! Notification templates: [minijinja](https://docs.rs/minijinja) with a sandbox.
//!
//! Every driver renders its text through a [`Templates`] set: built-in defaults, which a channel
//! may override part by part in its config under `"templates"`:
//!
//! ```json
//! {"templates": {"subject": "[{{ severity|upper }}] {{ title }}",
//!                "html": {"file": "mail/alert.html"}}}
//! ```
//!
//! A part is either an inline template (a string) or `{"file": "<path>"}`, a path relative to the
//! templates folder (`TOCSIN_TEMPLATES_DIR`). Files are read when first rendered, never while a
//! config is validated.
//!
//! # Sandbox
//! - Templates load nothing outside the templates folder: absolute paths, `..` and symbolic links
//!   leading out are refused, and without a templates folder no file can be loaded at all
//!   (`{% include "/etc/passwd" %}` is a [`ErrorKind::Template`] error).
//! - Only minijinja's built-in filters, tests and functions exist; nothing of tocsin's is callable.
//! - Rendering is bounded: [`FUEL`] instructions, a recursion limit and [`MAX_OUTPUT`] bytes of
//!   output, so `{% for a in range(99999) %}{% for b in range(99999) %}...` fails instead of
//!   spinning.
//! - Parts named `html` (and files ending in `.html`/`.htm`) are HTML auto-escaped, and so is
//!   what they include; the body of a JSON webhook (and `.json` files) is JSON-escaped: a value
//!   renders as a JSON literal.
//!
//! A render failure is an [`ErrorKind::Template`] error naming the template and line.
//!
//! # Template context
//! The one place that documents what a template sees ([`TemplateContext`] builds it):
//!
//! | name | type | content |
//! |---|---|---|
//! | `title` | string | notification title |
//! | `message` | string | notification message |
//! | `severity` | string | `info`, `warning` or `critical` (default `warning`) |
//! | `severity_upper` | string | `INFO`, `WARNING`, `CRITICAL` |
//! | `status` | string | `firing` or `resolved` |
//! | `incident` | map or none | the incident record: `id`, `title`, `status`, `severity`, `description`, `summary`, `group_key`, `metadata`, `created_at`, `resolved_at`... |
//! | `alerts` | list | alert records: `id`, `name`, `source`, `severity`, `status`, `description`, `labels`, `annotations`, `fingerprint`, `started_at`, `ended_at` |
//! | `sources` | list | distinct alert sources |
//! | `checks` | list | check results: `checker`, `status`, `message`, `metrics`, `error`, thresholds, `duration_ms`, `skipped` |
//! | `check_summary` | map | counts `ok`, `warning`, `critical`, `unknown`, `total`, and `worst` (status name or none) |
//! | `recommendations` | list | `type`, `priority`, `title`, `description`, `details`, `actions` |
//! | `top_recommendations` | list | the first three recommendations, highest priority first |
//! | `tags` | map | tags |
//! | `context` | any | extra context given by the caller |
//! | `trace_id`, `run_id`, `dedup_key`, `idempotency_key` | string | ids |
//! | `links` | map | `incident` and `run` paths (prefixed by `context.base_url` when given) and any `context.links` |
//! | `now` | string | RFC 3339 time of rendering |

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tocsin_core::domain::{CheckStatus, Priority, Severity};
use tocsin_core::plugin::Notification;
use tocsin_core::{Error, ErrorKind, Result};

/// Instruction budget of one render.
pub const FUEL: u64 = 250_000;
/// Largest rendered output, in bytes.
pub const MAX_OUTPUT: usize = 512 * 1024;
/// Nesting limit of includes, macros and blocks.
pub const RECURSION_LIMIT: usize = 64;

/// One template part of a channel override: inline source or a file in the templates folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TemplateSpec {
    /// The template source itself.
    Inline(String),
    /// A file relative to the templates folder.
    File {
        /// Path relative to `TOCSIN_TEMPLATES_DIR`.
        file: String,
    },
}

/// Channel template overrides by part name (`subject`, `text`, `html`, `summary`, `body`).
pub type TemplateOverrides = BTreeMap<String, TemplateSpec>;

/// Distinct template sets kept compiled (one per driver and channel override set in practice);
/// past this, they are all dropped rather than tracked by use.
const MAX_COMPILED: usize = 256;

static COMPILED: OnceLock<Mutex<HashMap<String, Templates>>> = OnceLock::new();

/// The compiled templates of one driver instance.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    /// part -> template name in `env`.
    parts: BTreeMap<String, String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

const FILE_PREFIX: &str = "file:";

/// The mark of a template rendered HTML-escaped (the `html` part and what it includes).
const HTML_MARK: &str = "html:";
/// The mark of a template rendered JSON-escaped (a JSON webhook body and what it includes).
const JSON_MARK: &str = "json:";

/// How a template is escaped: by its mark, else by its file extension (`.html`/`.htm` HTML,
/// `.json` JSON).
fn auto_escape_for(name: &str) -> AutoEscape {
    let base = name.trim_end_matches(".j2").trim_end_matches(".jinja");
    if name.starts_with(HTML_MARK) || base.ends_with(".html") || base.ends_with(".htm") {
        AutoEscape::Html
    } else if name.starts_with(JSON_MARK) || base.ends_with(".json") {
        AutoEscape::Json
    } else {
        AutoEscape::None
    }
}

/// Checks a template path without touching the disk: relative, no `..`, no root, not empty.
pub fn check_relative_path(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err(Error::invalid_config("templates: file path is empty"));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(Error::invalid_config(format!(
                    "templates: file {path:?} must be a path inside the templates folder (no absolute path, no \"..\")"
                )));
            }
        }
    }
    Ok(p.to_path_buf())
}

/// Reads `name` from `dir`, refusing anything that resolves outside it (symbolic links included).
fn load_file(
    dir: Option<&Path>,
    name: &str,
) -> std::result::Result<Option<String>, minijinja::Error> {
    use minijinja::ErrorKind as K;
    let refuse = |why: String| minijinja::Error::new(K::InvalidOperation, why);
    let Some(dir) = dir else {
        return Err(refuse(format!(
            "cannot load {name:?}: no templates folder is configured (TOCSIN_TEMPLATES_DIR)"
        )));
    };
    let rel = check_relative_path(name).map_err(|e| refuse(e.message().to_owned()))?;
    let root = dir.canonicalize().map_err(|e| {
        refuse(format!(
            "templates folder {} is not readable: {e}",
            dir.display()
        ))
    })?;
    let full = match root.join(&rel).canonicalize() {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    if !full.starts_with(&root) {
        return Err(refuse(format!(
            "template {name:?} resolves outside the templates folder"
        )));
    }
    let meta = std::fs::metadata(&full)
        .map_err(|e| refuse(format!("cannot read template {name:?}: {e}")))?;
    if meta.len() > MAX_OUTPUT as u64 {
        return Err(refuse(format!(
            "template {name:?} is larger than {MAX_OUTPUT} bytes"
        )));
    }
    std::fs::read_to_string(&full)
        .map(Some)
        .map_err(|e| refuse(format!("cannot read template {name:?}: {e}")))
}

impl Templates {
    /// Compiles the defaults of a driver and the channel's overrides. Inline templates are parsed
    /// here (a syntax error is an [`ErrorKind::InvalidConfig`] error naming part and line); file
    /// templates are only path-checked: they are read at render time.
    pub fn new(
        defaults: &[(&'static str, &'static str)],
        overrides: &TemplateOverrides,
        templates_dir: Option<&Path>,
    ) -> Result<Self> {
        Self::with_json_parts(defaults, overrides, templates_dir, &[])
    }

    /// Like [`Templates::new`], with the parts in `json_parts` JSON-escaped: `{{ title }}`
    /// renders as a JSON string literal (quotes included), so `{"title": {{ title }}}` is valid
    /// JSON whatever the title holds.
    ///
    /// Compiled templates are kept by their inputs and shared: a driver is built for every
    /// notification, and compiling is pure (file templates are read at render time, not here).
    pub fn with_json_parts(
        defaults: &[(&'static str, &'static str)],
        overrides: &TemplateOverrides,
        templates_dir: Option<&Path>,
        json_parts: &[&str],
    ) -> Result<Self> {
        let key =
            format!("{defaults:?}\u{0}{overrides:?}\u{0}{templates_dir:?}\u{0}{json_parts:?}");
        let cache = COMPILED.get_or_init(Mutex::default);
        if let Some(t) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(t.clone());
        }
        let compiled = Self::compile(defaults, overrides, templates_dir, json_parts)?;
        let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_COMPILED && !map.contains_key(&key) {
            map.clear();
        }
        Ok(map.entry(key).or_insert(compiled).clone())
    }

    fn compile(
        defaults: &[(&'static str, &'static str)],
        overrides: &TemplateOverrides,
        templates_dir: Option<&Path>,
        json_parts: &[&str],
    ) -> Result<Self> {
        let mark = |part: &str| {
            if part == "html" {
                HTML_MARK
            } else if json_parts.contains(&part) {
                JSON_MARK
            } else {
                ""
            }
        };
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(auto_escape_for);
        // What the HTML part (or a JSON part) includes is escaped the same way: the mark of the
        // including template is carried over to the included one (the loader strips it).
        env.set_path_join_callback(|name, parent| {
            for mark in [HTML_MARK, JSON_MARK] {
                if parent.starts_with(mark) && !name.starts_with(mark) {
                    return format!("{mark}{name}").into();
                }
            }
            name.to_owned().into()
        });
        let dir = templates_dir.map(Path::to_path_buf);
        env.set_loader(move |name: &str| {
            let file = name
                .strip_prefix(HTML_MARK)
                .or_else(|| name.strip_prefix(JSON_MARK))
                .unwrap_or(name);
            let file = file.strip_prefix(FILE_PREFIX).unwrap_or(file);
            load_file(dir.as_deref(), file)
        });
        let mut parts = BTreeMap::new();
        for (part, source) in defaults {
            let name = format!("{}default:{part}", mark(part));
            env.add_template_owned(name.clone(), (*source).to_owned())
                .map_err(|e| {
                    Error::internal(format!("built-in template {part}: {}", describe(&e)))
                })?;
            parts.insert((*part).to_owned(), name);
        }
        for (part, spec) in overrides {
            if !defaults.iter().any(|(p, _)| p == part) {
                let known: Vec<_> = defaults.iter().map(|(p, _)| *p).collect();
                return Err(Error::invalid_config(format!(
                    "templates.{part}: unknown template part; this driver has: {}",
                    known.join(", ")
                )));
            }
            let html = mark(part);
            let name = match spec {
                TemplateSpec::Inline(source) => {
                    let name = format!("{html}channel:{part}");
                    env.add_template_owned(name.clone(), source.clone())
                        .map_err(|e| {
                            Error::invalid_config(format!("templates.{part}: {}", describe(&e)))
                        })?;
                    name
                }
                TemplateSpec::File { file } => {
                    check_relative_path(file).map_err(|e| {
                        Error::invalid_config(format!("templates.{part}: {}", e.message()))
                    })?;
                    if templates_dir.is_none() {
                        return Err(Error::invalid_config(format!(
                            "templates.{part}: file {file:?} given but no templates folder is configured (TOCSIN_TEMPLATES_DIR)"
                        )));
                    }
                    format!("{html}{FILE_PREFIX}{file}")
                }
            };
            parts.insert(part.clone(), name);
        }
        Ok(Self {
            env: Arc::new(env),
            parts,
        })
    }

    /// Renders one part with the context; output longer than [`MAX_OUTPUT`] is an error.
    pub fn render(&self, part: &str, ctx: &Value) -> Result<String> {
        let name = self
            .parts
            .get(part)
            .ok_or_else(|| Error::internal(format!("no template for part {part:?}")))?;
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| template_error(part, &e))?;
        let out = tmpl
            .render(minijinja::Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| template_error(part, &e))?;
        if out.len() > MAX_OUTPUT {
            return Err(Error::new(
                ErrorKind::Template,
                format!(
                    "template {part:?} rendered {} bytes, more than the {MAX_OUTPUT} allowed",
                    out.len()
                ),
            ));
        }
        Ok(out)
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = match (e.name(), e.line()) {
        (Some(n), Some(l)) => format!("{} (template {n:?}, line {l})", e.kind()),
        (Some(n), None) => format!("{} (template {n:?})", e.kind()),
        _ => e.kind().to_string(),
    };
    if let Some(d) = e.detail() {
        s.push_str(": ");
        s.push_str(d);
    }
    s
}

fn template_error(part: &str, e: &minijinja::Error) -> Error {
    Error::new(
        ErrorKind::Template,
        format!("template {part:?} failed to render: {}", describe(e)),
    )
}

/// Builds the documented template context (see the module docs) from a notification.
#[derive(Debug)]
pub struct TemplateContext;

/// Sort rank of a priority: critical first.
pub fn priority_rank(p: Priority) -> u8 {
    match p {
        Priority::Critical => 0,
        Priority::High => 1,
        Priority::Medium => 2,
        Priority::Low => 3,
    }
}

impl TemplateContext {
    /// The context of `n`.
    pub fn build(n: &Notification) -> Value {
        let severity = effective_severity(n);
        let status = n.status.map(|s| s.as_str()).unwrap_or("firing");
        let mut summary =
            json!({"ok": 0, "warning": 0, "critical": 0, "unknown": 0, "total": n.checks.len()});
        let mut worst: Option<CheckStatus> = None;
        for c in &n.checks {
            let key = c.status.as_str();
            if let Some(v) = summary.get_mut(key) {
                *v = json!(v.as_u64().unwrap_or(0) + 1);
            }
            let rank = |s: CheckStatus| match s {
                CheckStatus::Ok => 0,
                CheckStatus::Unknown => 1,
                CheckStatus::Warning => 2,
                CheckStatus::Critical => 3,
            };
            if worst.is_none_or(|w| rank(c.status) > rank(w)) {
                worst = Some(c.status);
            }
        }
        summary["worst"] = json!(worst.map(|w| w.as_str()));
        let mut recs: Vec<_> = n.recommendations.iter().collect();
        recs.sort_by_key(|r| priority_rank(r.priority));
        let top: Vec<_> = recs.into_iter().take(3).collect();
        let mut sources: Vec<&str> = n.alerts.iter().map(|a| a.source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        let base = n
            .context
            .get("base_url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/');
        let mut links = serde_json::Map::new();
        if let Some(i) = &n.incident {
            links.insert(
                "incident".into(),
                json!(format!("{base}/incidents/{}/", i.id)),
            );
        }
        if let Some(r) = &n.run_id {
            links.insert("run".into(), json!(format!("{base}/pipeline/runs/{r}/")));
        }
        if let Some(Value::Object(extra)) = n.context.get("links") {
            for (k, v) in extra {
                links.insert(k.clone(), v.clone());
            }
        }
        json!({
            "title": n.title,
            "message": n.message,
            "severity": severity.as_str(),
            "severity_upper": severity.as_str().to_ascii_uppercase(),
            "status": status,
            "incident": n.incident,
            "alerts": n.alerts,
            "sources": sources,
            "checks": n.checks,
            "check_summary": summary,
            "recommendations": n.recommendations,
            "top_recommendations": top,
            "tags": n.tags,
            "context": n.context,
            "trace_id": n.trace_id,
            "run_id": n.run_id,
            "dedup_key": n.dedup_key,
            "idempotency_key": n.idempotency_key,
            "links": links,
            "now": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

/// The severity of a notification: its own, else the incident's, else `warning`.
pub fn effective_severity(n: &Notification) -> Severity {
    n.severity
        .or(n.incident.as_ref().map(|i| i.severity))
        .unwrap_or(Severity::Warning)
}

/// Reads the optional `"templates"` key of a driver config.
pub fn overrides_from(config: &Value) -> Result<TemplateOverrides> {
    match config.get("templates") {
        None | Some(Value::Null) => Ok(TemplateOverrides::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            Error::invalid_config(format!(
                "templates: expected a map of part name to a template string or {{\"file\": path}}: {e}"
            ))
        }),
    }
}

/// Cuts `text` to at most `max` characters, ending with a visible marker when it was cut.
pub fn cut(text: &str, max: usize, marker: &str) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(marker.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(marker);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &[(&str, &str)] = &[("text", "{{ title }}"), ("html", "<b>{{ title }}</b>")];

    #[test]
    fn identical_template_sets_are_compiled_once() {
        let o: TemplateOverrides = BTreeMap::from([(
            "text".into(),
            TemplateSpec::Inline("cached {{ title }}".into()),
        )]);
        let a = Templates::new(DEFAULTS, &o, None).unwrap();
        let b = Templates::new(DEFAULTS, &o, None).unwrap();
        assert!(Arc::ptr_eq(&a.env, &b.env));
        let json = Templates::with_json_parts(DEFAULTS, &o, None, &["text"]).unwrap();
        assert!(!Arc::ptr_eq(&a.env, &json.env));
        assert_eq!(b.render("text", &ctx("x")).unwrap(), "cached x");
    }

    fn ctx(title: &str) -> Value {
        TemplateContext::build(&Notification {
            title: title.into(),
            ..Default::default()
        })
    }

    #[test]
    fn html_part_is_escaped_and_text_part_is_not() {
        let t = Templates::new(DEFAULTS, &TemplateOverrides::new(), None).unwrap();
        let c = ctx("<script>x</script> & co");
        assert_eq!(t.render("text", &c).unwrap(), "<script>x</script> & co");
        assert_eq!(
            t.render("html", &c).unwrap(),
            "<b>&lt;script&gt;x&lt;&#x2f;script&gt; &amp; co</b>"
        );
    }

    #[test]
    fn including_etc_passwd_fails_cleanly_with_or_without_a_templates_folder() {
        let dir = tempfile::tempdir().unwrap();
        for d in [None, Some(dir.path())] {
            let mut o = TemplateOverrides::new();
            o.insert(
                "text".into(),
                TemplateSpec::Inline("{% include \"/etc/passwd\" %}".into()),
            );
            let t = Templates::new(DEFAULTS, &o, d).unwrap();
            let err = t.render("text", &ctx("x")).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Template, "{err}");
            assert!(err.message().contains("\"text\""), "{err}");
            assert!(!err.message().contains("root:"), "{err}");
            let mut o = TemplateOverrides::new();
            o.insert(
                "text".into(),
                TemplateSpec::Inline("{% include \"../../../../etc/passwd\" %}".into()),
            );
            let t = Templates::new(DEFAULTS, &o, d).unwrap();
            assert_eq!(
                t.render("text", &ctx("x")).unwrap_err().kind(),
                ErrorKind::Template
            );
        }
    }

    #[test]
    fn a_file_path_escaping_the_folder_is_refused_at_validation() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["/etc/passwd", "../x", "a/../../x", ""] {
            let mut o = TemplateOverrides::new();
            o.insert("text".into(), TemplateSpec::File { file: bad.into() });
            let err = Templates::new(DEFAULTS, &o, Some(dir.path())).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}: {err}");
        }
    }

    #[test]
    fn a_symlink_out_of_the_folder_is_refused_at_render() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("p.txt")).unwrap();
        let mut o = TemplateOverrides::new();
        o.insert(
            "text".into(),
            TemplateSpec::File {
                file: "p.txt".into(),
            },
        );
        let t = Templates::new(DEFAULTS, &o, Some(dir.path())).unwrap();
        let err = t.render("text", &ctx("x")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Template);
        assert!(err.message().contains("outside"), "{err}");
    }

    #[test]
    fn file_templates_load_from_the_folder_and_html_files_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mail")).unwrap();
        std::fs::write(dir.path().join("mail/part.txt"), "T={{ title }}").unwrap();
        std::fs::write(
            dir.path().join("mail/a.html"),
            "<p>{{ title }}</p>{% include \"mail/part.txt\" %}",
        )
        .unwrap();
        let mut o = TemplateOverrides::new();
        o.insert(
            "html".into(),
            TemplateSpec::File {
                file: "mail/a.html".into(),
            },
        );
        let t = Templates::new(DEFAULTS, &o, Some(dir.path())).unwrap();
        assert_eq!(
            t.render("html", &ctx("<i>")).unwrap(),
            "<p>&lt;i&gt;</p>T=&lt;i&gt;"
        );
        // The same file included from a text part stays unescaped.
        let mut o = TemplateOverrides::new();
        o.insert(
            "text".into(),
            TemplateSpec::Inline("{% include \"mail/part.txt\" %}".into()),
        );
        let t = Templates::new(DEFAULTS, &o, Some(dir.path())).unwrap();
        assert_eq!(t.render("text", &ctx("<i>")).unwrap(), "T=<i>");
    }

    #[test]
    fn json_parts_render_values_as_json_literals() {
        let mut o = TemplateOverrides::new();
        o.insert(
            "text".into(),
            TemplateSpec::Inline(r#"{"title": {{ title }}, "n": {{ alerts|length }}}"#.into()),
        );
        let t = Templates::with_json_parts(DEFAULTS, &o, None, &["text"]).unwrap();
        let out = t.render("text", &ctx("He said \"hi\"\n<b>")).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["title"], "He said \"hi\"\n<b>");
        assert_eq!(v["n"], 0);
    }

    #[test]
    fn an_endless_loop_runs_out_of_fuel() {
        let mut o = TemplateOverrides::new();
        o.insert(
            "text".into(),
            TemplateSpec::Inline(
                "{% for a in range(99999) %}{% for b in range(99999) %}x{% endfor %}{% endfor %}"
                    .into(),
            ),
        );
        let t = Templates::new(DEFAULTS, &o, None).unwrap();
        let started = std::time::Instant::now();
        let err = t.render("text", &ctx("x")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Template);
        assert!(err.message().contains("fuel"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn endless_recursion_fails_cleanly() {
        let mut o = TemplateOverrides::new();
        o.insert(
            "text".into(),
            TemplateSpec::Inline("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}".into()),
        );
        let t = Templates::new(DEFAULTS, &o, None).unwrap();
        assert_eq!(
            t.render("text", &ctx("x")).unwrap_err().kind(),
            ErrorKind::Template
        );
    }

    #[test]
    fn render_errors_name_template_and_line() {
        let mut o = TemplateOverrides::new();
        o.insert(
            "text".into(),
            TemplateSpec::Inline("line one\n{{ 1 / 0 }}".into()),
        );
        let t = Templates::new(DEFAULTS, &o, None).unwrap();
        let err = t.render("text", &ctx("x")).unwrap_err();
        assert!(err.message().contains("\"text\""), "{err}");
        assert!(err.message().contains("line 2"), "{err}");
        let mut o = TemplateOverrides::new();
        o.insert("text".into(), TemplateSpec::Inline("{% if %}".into()));
        let err = Templates::new(DEFAULTS, &o, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message().contains("templates.text") && err.message().contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn unknown_parts_are_refused() {
        let mut o = TemplateOverrides::new();
        o.insert("nope".into(), TemplateSpec::Inline("x".into()));
        let err = Templates::new(DEFAULTS, &o, None).unwrap_err();
        assert!(
            err.message().contains("html, text") || err.message().contains("text, html"),
            "{err}"
        );
    }

    #[test]
    fn cut_marks_what_it_cut() {
        assert_eq!(cut("abcdef", 10, "…"), "abcdef");
        assert_eq!(cut("abcdef", 4, "…"), "abc…");
        assert_eq!(cut("abcdef", 4, "…").chars().count(), 4);
    }
}
