//! `openai`: recommendations from any OpenAI-compatible chat completions endpoint — OpenAI,
//! Ollama, vLLM, LM Studio, LiteLLM. Request and response follow the
//! [Chat Completions API](https://platform.openai.com/docs/api-reference/chat/create), with
//! [JSON mode](https://platform.openai.com/docs/guides/structured-outputs#json-mode)
//! (`response_format: {"type": "json_object"}`) where the endpoint supports it.
//!
//! Operator configuration (`build`): `{"base_url"?, "api_key"?, "model"?, "max_tokens"?,
//! "temperature"?, "timeout"?, "json_mode"?}`. Unset keys fall back to `OPENAI_BASE_URL`
//! (default `https://api.openai.com/v1`), `OPENAI_API_KEY`, `OPENAI_MODEL` (default
//! `gpt-4o-mini`), 1024, 0.2, `OPENAI_TIMEOUT` (default 30 s) and true. An endpoint without
//! authentication (a local Ollama) needs no key; `api.openai.com` does.
//!
//! Failures are typed errors, never stand-in recommendations: 401/403 are `Unauthorized`
//! (permanent); 429, 5xx, connection failures and timeouts are temporary (`Retry-After`
//! honoured); an answer that holds no usable JSON is a temporary `Upstream` error.

mod parse;
mod prompt;

pub use parse::parse_recommendations;
pub use prompt::{SYSTEM_PROMPT, user_prompt};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tocsin_core::plugin::{
    AnalysisInput, AnalysisOutput, BuildContext, Provider, ProviderDescriptor, TokenUsage,
};
use tocsin_core::{Error, ErrorKind, Result, Retry, Secret};

use crate::options::RequestOptions;
use crate::text::cut;

/// The default endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The default model.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The largest response body read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The operator's settings of the `openai` provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Endpoint root, without `/chat/completions`. Default `OPENAI_BASE_URL`, else the OpenAI API.
    #[serde(default)]
    pub base_url: Option<String>,
    /// API key. Default `OPENAI_API_KEY`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Model. Default `OPENAI_MODEL`, else `gpt-4o-mini`.
    #[serde(default)]
    pub model: Option<String>,
    /// Completion token limit. Default 1024.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature. Default 0.2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Seconds per request. Default `OPENAI_TIMEOUT`, else 30.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Ask for JSON output (`response_format`). Default true; turn off for endpoints that reject it.
    #[serde(default)]
    pub json_mode: Option<bool>,
}

/// Settings resolved against the environment and defaults.
#[derive(Debug, Clone)]
struct Resolved {
    base_url: String,
    api_key: Option<Secret>,
    model: String,
    max_tokens: u32,
    temperature: f64,
    timeout: Duration,
    json_mode: bool,
}

impl OpenAiConfig {
    /// Parses a config, without I/O.
    pub fn from_value(v: &Value) -> Result<Self> {
        match v {
            Value::Null => serde_json::from_value(json!({})),
            other => serde_json::from_value(other.clone()),
        }
        .map_err(|e| Error::invalid_config(format!("invalid openai provider config: {e}")))
    }

    fn resolve(self, env: impl Fn(&str) -> Option<String>) -> Result<Resolved> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let base_url = self
            .base_url
            .or_else(|| env("OPENAI_BASE_URL"))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::invalid_config(format!(
                "openai provider: base_url {base_url:?} must start with http:// or https://"
            )));
        }
        let api_key = self
            .api_key
            .filter(|k| !k.is_empty())
            .or_else(|| env("OPENAI_API_KEY").map(Secret::new));
        if api_key.is_none() && base_url.contains("api.openai.com") {
            return Err(Error::invalid_config(
                "openai provider: no API key; set OPENAI_API_KEY (or point OPENAI_BASE_URL at a local endpoint)",
            ));
        }
        let timeout = match self.timeout {
            Some(t) => t,
            None => match env("OPENAI_TIMEOUT") {
                Some(t) => t.trim().parse().map_err(|_| {
                    Error::invalid_config(format!("OPENAI_TIMEOUT={t:?}: expected seconds"))
                })?,
                None => 30.0,
            },
        };
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= 600.0) {
            return Err(Error::invalid_config(
                "openai provider: timeout must be from 0 to 600 seconds",
            ));
        }
        let temperature = self.temperature.unwrap_or(0.2);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(Error::invalid_config(
                "openai provider: temperature must be from 0 to 2",
            ));
        }
        Ok(Resolved {
            base_url,
            api_key,
            model: self
                .model
                .or_else(|| env("OPENAI_MODEL"))
                .unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            max_tokens: self.max_tokens.unwrap_or(1024).clamp(1, 32_768),
            temperature,
            timeout: Duration::from_secs_f64(timeout),
            json_mode: self.json_mode.unwrap_or(true),
        })
    }
}

/// The provider.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    cfg: Resolved,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// Builds from a config, reading `OPENAI_*` variables for unset keys. No network I/O.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        Self::with_env(config, |k| std::env::var(k).ok())
    }

    /// Builds from a config, reading unset keys through `env` (tests pass a map).
    pub fn with_env(config: OpenAiConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let cfg = config.resolve(env)?;
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::invalid_config(format!(
                    "openai provider: cannot build the HTTP client: {e}"
                ))
            })?;
        Ok(Self { cfg, client })
    }

    /// The chat completions URL.
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.cfg.base_url)
    }

    /// The request body for an input (what is sent, minus the key).
    pub fn request_body(&self, input: &AnalysisInput) -> Value {
        let opts: RequestOptions =
            serde_json::from_value(input.options.clone()).unwrap_or_default();
        let model = opts.model.clone().unwrap_or_else(|| self.cfg.model.clone());
        let max_tokens = opts.max_tokens.unwrap_or(self.cfg.max_tokens);
        let mut body = json!({
            "model": model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt(input)},
            ],
        });
        if is_reasoning_model(&model) {
            // OpenAI's reasoning models refuse `max_tokens` and any temperature but the default.
            body["max_completion_tokens"] = json!(max_tokens);
        } else {
            body["max_tokens"] = json!(max_tokens);
            body["temperature"] = json!(opts.temperature.unwrap_or(self.cfg.temperature));
        }
        if self.cfg.json_mode {
            body["response_format"] = json!({"type": "json_object"});
        }
        body
    }

    /// Replaces the key wherever an upstream message echoes it.
    fn scrub(&self, text: &str) -> String {
        match &self.cfg.api_key {
            Some(k) if k.expose().len() >= 4 => {
                text.replace(k.expose(), tocsin_core::secret::REDACTED)
            }
            _ => text.to_owned(),
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        let url = &self.cfg.base_url;
        if e.is_timeout() {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "{url} did not answer within {:.1} s",
                    self.cfg.timeout.as_secs_f64()
                ),
            )
        } else if e.is_connect() {
            Error::new(
                ErrorKind::Upstream,
                format!("cannot connect to {url}: {}", self.scrub(&error_chain(e))),
            )
        } else {
            Error::new(
                ErrorKind::Upstream,
                format!("request to {url} failed: {}", self.scrub(&error_chain(e))),
            )
        }
    }
}

/// OpenAI's reasoning models (`o1`, `o3-mini`, `o4-mini`, `gpt-5`...), which take
/// `max_completion_tokens` instead of `max_tokens` and no `temperature`
/// (<https://platform.openai.com/docs/guides/reasoning>).
pub fn is_reasoning_model(model: &str) -> bool {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let mut chars = m.chars();
    (chars.next() == Some('o') && chars.next().is_some_and(|c| c.is_ascii_digit()))
        || m.starts_with("gpt-5")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`, capped at an hour.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let d = if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::from_secs_f64((ms / 1000.0).max(0.0))
    } else {
        let v = get("retry-after")?;
        match v.parse::<f64>() {
            Ok(secs) if secs.is_finite() => Duration::from_secs_f64(secs.max(0.0)),
            _ => {
                let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default()
            }
        }
    };
    Some(d.min(Duration::from_secs(3600)))
}

/// Reads at most `MAX_RESPONSE_BYTES`.
async fn read_bounded(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(body)
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize, Serialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
    #[serde(default)]
    total_tokens: i64,
}

#[async_trait]
impl Provider for OpenAiProvider {
    async fn analyze(&self, input: &AnalysisInput) -> Result<AnalysisOutput> {
        let body = self.request_body(input);
        let model = body["model"].as_str().unwrap_or(DEFAULT_MODEL).to_owned();
        let mut req = self.client.post(self.endpoint()).json(&body);
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key.expose());
        }
        tracing::debug!(endpoint = %self.endpoint(), model = %model, "Asking the AI endpoint for recommendations.");
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let bytes = read_bounded(resp)
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            return Err(self.status_error(status.as_u16(), &bytes, wait));
        }
        let completion: Completion = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Upstream,
                format!(
                    "{} answered 200 with a body that is not a chat completion ({e}): {}",
                    self.cfg.base_url,
                    self.scrub(&cut(&String::from_utf8_lossy(&bytes), 200))
                ),
            )
        })?;
        let usage = completion.usage.map(|u| TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        });
        let choice = completion.choices.into_iter().next().ok_or_else(|| {
            Error::new(
                ErrorKind::Upstream,
                format!("{} answered with no choices", self.cfg.base_url),
            )
        })?;
        if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
            return Err(Error::new(
                ErrorKind::Upstream,
                format!("the model refused: {}", cut(&refusal, 300)),
            )
            .with_retry(Retry::Permanent));
        }
        let content = choice.message.content.unwrap_or_default();
        let recommendations = parse_recommendations(&content).map_err(|e| {
            let cutoff = if choice.finish_reason.as_deref() == Some("length") {
                " (the answer was cut at max_tokens; raise max_tokens)"
            } else {
                ""
            };
            Error::new(e.kind(), format!("{}{cutoff}", e.message())).with_retry(e.retry())
        })?;
        Ok(AnalysisOutput {
            recommendations,
            model: Some(completion.model.unwrap_or(model)),
            usage,
            summary: None,
        })
    }

    fn redacted_config(&self) -> Value {
        json!({
            "base_url": self.cfg.base_url,
            "api_key": self.cfg.api_key.as_ref().map(|_| tocsin_core::secret::REDACTED),
            "model": self.cfg.model,
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
            "timeout": self.cfg.timeout.as_secs_f64(),
            "json_mode": self.cfg.json_mode,
        })
    }
}

impl OpenAiProvider {
    fn status_error(&self, status: u16, body: &[u8], wait: Option<Duration>) -> Error {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let detail = parsed
            .as_ref()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        let code = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/code").and_then(Value::as_str))
            .unwrap_or("");
        let detail = self.scrub(&cut(&detail, 300));
        let url = &self.cfg.base_url;
        match status {
            401 | 403 => Error::new(
                ErrorKind::Unauthorized,
                format!("{url} refused the credentials (HTTP {status}): {detail}"),
            ),
            429 if code == "insufficient_quota" => Error::new(
                ErrorKind::Upstream,
                format!("{url}: quota exhausted (HTTP 429): {detail}"),
            )
            .with_retry(Retry::Permanent),
            429 => {
                let e = Error::new(
                    ErrorKind::Upstream,
                    format!("{url} is rate limiting (HTTP 429): {detail}"),
                );
                match wait {
                    Some(w) => e.with_retry_after(w),
                    None => e,
                }
            }
            408 | 504 => Error::new(
                ErrorKind::Timeout,
                format!("{url} timed out (HTTP {status}): {detail}"),
            ),
            500..=599 => {
                let e = Error::new(
                    ErrorKind::Upstream,
                    format!("{url} failed (HTTP {status}): {detail}"),
                );
                match wait {
                    Some(w) => e.with_retry_after(w),
                    None => e,
                }
            }
            _ => Error::new(
                ErrorKind::Upstream,
                format!("{url} rejected the request (HTTP {status}): {detail}"),
            )
            .with_retry(Retry::Permanent),
        }
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Provider>> {
    Ok(Arc::new(OpenAiProvider::new(OpenAiConfig::from_value(
        config,
    )?)?))
}

const REGISTRATION: ProviderDescriptor = ProviderDescriptor {
    name: "openai",
    description: "Any OpenAI-compatible chat completions endpoint (OpenAI, Ollama, vLLM, LM Studio, LiteLLM).",
    config_example: r#"{"base_url": "http://localhost:11434/v1", "model": "llama3.1", "max_tokens": 1024, "temperature": 0.2, "timeout": 30}"#,
    build,
};

/// The registration of the `openai` provider (for [`crate::register_all`]).
pub static DESCRIPTOR: ProviderDescriptor = REGISTRATION;

tocsin_core::register_provider!(REGISTRATION);

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_example_config_builds_and_the_environment_fills_the_gaps() {
        let c =
            OpenAiConfig::from_value(&serde_json::from_str(REGISTRATION.config_example).unwrap())
                .unwrap();
        let p = OpenAiProvider::with_env(c, env(&[])).unwrap();
        assert_eq!(p.endpoint(), "http://localhost:11434/v1/chat/completions");

        let p = OpenAiProvider::with_env(
            OpenAiConfig::from_value(&Value::Null).unwrap(),
            env(&[
                ("OPENAI_API_KEY", "sk-live-1234"),
                ("OPENAI_MODEL", "gpt-4.1-mini"),
            ]),
        )
        .unwrap();
        assert_eq!(p.endpoint(), "https://api.openai.com/v1/chat/completions");
        let shown = p.redacted_config().to_string();
        assert!(
            shown.contains("gpt-4.1-mini")
                && shown.contains("**REDACTED**")
                && !shown.contains("sk-live"),
            "{shown}"
        );
    }

    #[test]
    fn the_openai_api_without_a_key_and_bad_values_are_config_errors() {
        let err =
            OpenAiProvider::with_env(OpenAiConfig::from_value(&Value::Null).unwrap(), env(&[]))
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("OPENAI_API_KEY"), "{err}");
        for bad in [
            json!({"base_url": "ftp://x"}),
            json!({"timeout": 0}),
            json!({"temperature": 3.0}),
        ] {
            let c = OpenAiConfig::from_value(&bad).unwrap();
            assert_eq!(
                OpenAiProvider::with_env(c, env(&[])).unwrap_err().kind(),
                ErrorKind::InvalidConfig,
                "{bad}"
            );
        }
        assert!(OpenAiConfig::from_value(&json!({"basee_url": "x"})).is_err());
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_no_temperature() {
        assert!(
            is_reasoning_model("o3-mini")
                && is_reasoning_model("o1")
                && is_reasoning_model("gpt-5-mini")
        );
        assert!(is_reasoning_model("openai/o4-mini"));
        assert!(
            !is_reasoning_model("gpt-4o-mini")
                && !is_reasoning_model("llama3.1")
                && !is_reasoning_model("ollama")
        );
        let p = OpenAiProvider::with_env(
            OpenAiConfig::from_value(&json!({"base_url": "http://127.0.0.1:1/v1"})).unwrap(),
            env(&[]),
        )
        .unwrap();
        let input = AnalysisInput {
            incident: None,
            alerts: vec![],
            checks: vec![],
            options: json!({"model": "o3-mini"}),
        };
        let body = p.request_body(&input);
        assert_eq!(body["max_completion_tokens"], 1024);
        assert!(body.get("max_tokens").is_none() && body.get("temperature").is_none());
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
    }
}
