//! The openai provider against a real HTTP server on 127.0.0.1 standing in for the API.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tocsin_core::domain::*;
use tocsin_core::plugin::{AnalysisInput, Provider};
use tocsin_core::{ErrorKind, Retry, Secret};
use tocsin_providers::openai::{OpenAiConfig, OpenAiProvider, SYSTEM_PROMPT};

use crate::helpers::{FakeOpenAi, Reply};

const KEY: &str = "sk-test-4f9a1c";

fn provider(server: &FakeOpenAi, timeout: f64) -> OpenAiProvider {
    let mut cfg =
        OpenAiConfig::from_value(&json!({"base_url": server.base_url, "timeout": timeout}))
            .unwrap();
    cfg.api_key = Some(Secret::new(KEY));
    OpenAiProvider::with_env(cfg, |_| None).unwrap()
}

pub fn incident_input(options: serde_json::Value) -> AnalysisInput {
    // Fixed, so the request body can be snapshotted.
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T09:30:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let incident = Incident {
        id: 41,
        title: "HighMemoryUsage on web-1".into(),
        status: IncidentStatus::Open,
        severity: Severity::Critical,
        description: "RSS of the app grew past 90%".into(),
        summary: String::new(),
        metadata: json!({"instance": "web-1"}),
        group_key: "HighMemoryUsage|web-1".into(),
        created_at: now,
        updated_at: now,
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
    };
    let alerts = (0..12)
        .map(|i| Alert {
            id: i,
            fingerprint: format!("fp{i}"),
            source: "alertmanager".into(),
            name: format!("HighMemoryUsage{i}"),
            severity: Severity::Critical,
            status: AlertStatus::Firing,
            description: "memory above 90%".into(),
            labels: [
                ("instance".to_string(), "web-1".to_string()),
                ("auth_token".to_string(), "tok-SECRET".to_string()),
            ]
            .into_iter()
            .collect(),
            annotations: Labels::new(),
            raw_payload: json!({}),
            trace_id: "t".into(),
            started_at: now,
            ended_at: None,
            received_at: now,
            updated_at: now,
            incident_id: Some(41),
        })
        .collect();
    let checks = vec![CheckResult {
        checker: "memory".into(),
        status: CheckStatus::Critical,
        message: "Memory usage: 93.1% (14.9/16.0 GB)".into(),
        metrics: json!({"memory_percent": 93.1}),
        error: None,
        warning_threshold: Some(70.0),
        critical_threshold: Some(90.0),
        duration_ms: 3.0,
        skipped: false,
    }];
    AnalysisInput {
        incident: Some(incident),
        alerts,
        checks,
        options,
    }
}

const GOOD: &str = r#"{"recommendations": [
  {"type": "memory", "priority": "critical", "title": "Restart the leaking app worker",
   "description": "The app's RSS grows steadily.", "actions": ["systemctl restart app", "capture a heap profile"]},
  {"type": "process", "priority": "low", "title": "Add a memory limit", "description": "Set MemoryMax.", "actions": []}
]}"#;

#[tokio::test]
async fn the_request_is_exactly_a_json_mode_chat_completion_and_a_valid_answer_parses() {
    let server = FakeOpenAi::start(Reply::completion(GOOD)).await;
    let out = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(
        req.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("tocsin/")
    );
    let body = &req.body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert_eq!(body["max_tokens"], 1024);
    assert_eq!(body["temperature"], 0.2);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": SYSTEM_PROMPT})
    );
    assert_eq!(messages[1]["role"], "user");
    let user = messages[1]["content"].as_str().unwrap();
    assert!(
        user.contains("Incident #41: HighMemoryUsage on web-1"),
        "{user}"
    );
    assert!(user.contains("Severity: critical; status: open"), "{user}");
    assert!(user.contains("Alerts (12 total, first 10 shown)"), "{user}");
    assert!(
        user.contains("HighMemoryUsage9") && !user.contains("HighMemoryUsage10"),
        "alerts are bounded"
    );
    assert!(
        user.contains("memory: critical - Memory usage: 93.1%"),
        "{user}"
    );
    assert!(
        !user.contains("tok-SECRET"),
        "secret-named labels stay out of the prompt"
    );
    assert!(user.contains("JSON"));

    // The exact bytes sent, for review when the prompt changes.
    insta::assert_json_snapshot!("openai_request_body", body);

    assert_eq!(out.recommendations.len(), 2);
    assert_eq!(out.recommendations[0].kind, RecommendationType::Memory);
    assert_eq!(out.recommendations[0].priority, Priority::Critical);
    assert_eq!(
        out.recommendations[0].actions,
        vec!["systemctl restart app", "capture a heap profile"]
    );
    assert_eq!(out.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    let usage = out.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (412, 96, 508)
    );
}

#[tokio::test]
async fn request_tuning_reaches_the_body() {
    let server = FakeOpenAi::start(Reply::completion(GOOD)).await;
    provider(&server, 5.0)
        .analyze(&incident_input(
            json!({"model": "llama3.1", "max_tokens": 300, "temperature": 0.0}),
        ))
        .await
        .unwrap();
    let body = &server.seen()[0].body;
    assert_eq!(
        (
            body["model"].as_str(),
            body["max_tokens"].as_u64(),
            body["temperature"].as_f64()
        ),
        (Some("llama3.1"), Some(300), Some(0.0))
    );
}

#[tokio::test]
async fn fenced_json_and_a_single_object_parse_with_documented_defaults() {
    let server = FakeOpenAi::start(Reply::completion(&format!(
        "Sure! Here are my recommendations:\n```json\n{GOOD}\n```"
    )))
    .await;
    let p = provider(&server, 5.0);
    let out = p.analyze(&incident_input(json!({}))).await.unwrap();
    assert_eq!(out.recommendations.len(), 2);
    assert_eq!(out.recommendations[1].title, "Add a memory limit");

    server.set(Reply::completion(
        r#"{"type": "weird", "priority": "someday", "title": "Check swap", "description": "Swap is full", "actions": "swapon --show"}"#,
    ));
    let out = p.analyze(&incident_input(json!({}))).await.unwrap();
    assert_eq!(out.recommendations.len(), 1);
    let r = &out.recommendations[0];
    assert_eq!(
        (r.kind, r.priority),
        (RecommendationType::General, Priority::Medium),
        "unknown values map to the defaults"
    );
    assert_eq!(r.actions, vec!["swapon --show"]);
}

#[tokio::test]
async fn an_answer_cut_at_max_tokens_says_so() {
    let mut body = crate::helpers::fixture("chat-completion.json");
    body["choices"][0]["message"]["content"] =
        json!(r#"{"recommendations": [{"type": "memory", "title": "Rest"#);
    body["choices"][0]["finish_reason"] = json!("length");
    let server = FakeOpenAi::start(Reply::Raw(200, vec![], body.to_string())).await;
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.message().contains("raise max_tokens"), "{err}");
}

#[tokio::test]
async fn garbage_is_a_temporary_upstream_error_not_a_fake_recommendation() {
    let server = FakeOpenAi::start(Reply::completion(
        "I am not sure what to tell you, maybe reboot?",
    ))
    .await;
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.retry(), Retry::Temporary);
    assert!(err.message().contains("no JSON"), "{err}");

    server.set(Reply::Raw(200, vec![], "<html>proxy error</html>".into()));
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.message().contains("not a chat completion"), "{err}");
}

#[tokio::test]
async fn http_401_is_permanent_and_never_echoes_the_key() {
    let body = json!({"error": {"message": format!("Incorrect API key provided: {KEY}."), "type": "invalid_request_error", "code": "invalid_api_key"}});
    let server = FakeOpenAi::start(Reply::Raw(
        401,
        vec![("content-type", "application/json".into())],
        body.to_string(),
    ))
    .await;
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_eq!(err.retry(), Retry::Permanent);
    assert!(
        err.message().contains("HTTP 401") && err.message().contains("Incorrect API key"),
        "{err}"
    );
    assert!(!err.to_string().contains(KEY), "{err}");

    server.set(Reply::Raw(403, vec![], "forbidden".into()));
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.retry()),
        (ErrorKind::Unauthorized, Retry::Permanent)
    );
}

#[tokio::test]
async fn http_429_is_temporary_with_the_servers_retry_after() {
    let reply = Reply::fixture(
        429,
        "error-rate-limit.json",
        vec![("retry-after", "12".into())],
    );
    let server = FakeOpenAi::start(reply).await;
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.retry(), Retry::Temporary);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
    assert!(
        err.message().contains("rate limiting") && err.message().contains("Rate limit reached"),
        "{err}"
    );

    // Out of credit is not going to improve by retrying.
    server.set(Reply::fixture(429, "error-insufficient-quota.json", vec![]));
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.retry(), Retry::Permanent);
    assert!(err.message().contains("quota"), "{err}");
}

#[tokio::test]
async fn http_500_is_temporary() {
    let server = FakeOpenAi::start(Reply::fixture(500, "error-server.json", vec![])).await;
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.retry()),
        (ErrorKind::Upstream, Retry::Temporary)
    );
    assert!(
        err.message().contains("HTTP 500") && err.message().contains("The server had an error"),
        "{err}"
    );

    // A proxy in front may answer with plain text.
    server.set(Reply::Raw(502, vec![], "upstream exploded".into()));
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.retry()),
        (ErrorKind::Upstream, Retry::Temporary)
    );
    assert!(
        err.message().contains("HTTP 502") && err.message().contains("upstream exploded"),
        "{err}"
    );
}

#[tokio::test]
async fn an_ollama_answer_parses_like_openais() {
    let server =
        FakeOpenAi::start(Reply::fixture(200, "ollama-chat-completion.json", vec![])).await;
    let out = provider(&server, 5.0)
        .analyze(&incident_input(json!({"model": "llama3.1"})))
        .await
        .unwrap();
    assert_eq!(server.seen()[0].body["model"], "llama3.1");
    assert_eq!(out.model.as_deref(), Some("llama3.1"));
    assert_eq!(out.recommendations[0].title, "Restart the leaking worker");
    assert_eq!(out.recommendations[0].priority, Priority::High);
    assert_eq!(out.usage.unwrap().total_tokens, 449);
}

#[tokio::test]
async fn the_documented_401_body_is_an_unauthorized_error() {
    let server = FakeOpenAi::start(Reply::fixture(401, "error-invalid-api-key.json", vec![])).await;
    let err = provider(&server, 5.0)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.retry()),
        (ErrorKind::Unauthorized, Retry::Permanent)
    );
    assert!(
        err.message().contains("Incorrect API key provided"),
        "{err}"
    );
}

#[tokio::test]
async fn a_slow_reply_past_the_timeout_is_a_temporary_timeout() {
    let server = FakeOpenAi::start(Reply::Slow(Duration::from_secs(5), GOOD.into())).await;
    let started = std::time::Instant::now();
    let err = provider(&server, 0.5)
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout is enforced"
    );
    assert_eq!(
        (err.kind(), err.retry()),
        (ErrorKind::Timeout, Retry::Temporary),
        "{err}"
    );
}

#[tokio::test]
async fn nothing_listening_is_a_temporary_upstream_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg =
        OpenAiConfig::from_value(&json!({"base_url": format!("http://{addr}/v1"), "timeout": 2}))
            .unwrap();
    let err = OpenAiProvider::with_env(cfg, |_| None)
        .unwrap()
        .analyze(&incident_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.retry()),
        (ErrorKind::Upstream, Retry::Temporary),
        "{err}"
    );
    assert!(err.message().contains("cannot connect"), "{err}");
}
