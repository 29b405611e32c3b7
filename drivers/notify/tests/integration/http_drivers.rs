//! Slack, PagerDuty and webhook drivers against a local HTTP server: the exact bytes received
//! (snapshots), the vendors' limits, and the error classes.

use std::time::Duration;

use serde_json::{Value, json};
use tocsin_core::ErrorKind;
use tocsin_core::domain::{AlertStatus, Priority};
use tocsin_core::plugin::{BuildContext, Notification, NotifyDriver};
use tocsin_notify::pagerduty::PagerDutyDriver;
use tocsin_notify::slack::{self, SlackDriver};
use tocsin_notify::webhook::{self, WebhookDriver};

use crate::common::*;

fn ctx() -> BuildContext {
    BuildContext::default()
}

/// A notification far beyond every vendor limit.
fn huge() -> Notification {
    let mut n = notification();
    n.title = format!("Very long title {}", "x".repeat(600));
    n.message = format!("Start of message <b>&</b> {}", "lorem ipsum ".repeat(2000));
    n.alerts = (0..120)
        .map(|i| alert(i, &format!("Alert{i}"), &format!("web-{i}")))
        .collect();
    n.recommendations = (0..30)
        .map(|i| {
            recommendation(
                Priority::High,
                &format!("Recommendation {i} {}", "y".repeat(4000)),
            )
        })
        .collect();
    n
}

// ---------------------------------------------------------------------------------------------
// Slack

/// Slack's documented Block Kit limits, checked on a payload as received.
fn assert_within_slack_limits(body: &Value) {
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(blocks.len() <= 50, "{} blocks", blocks.len());
    let total = slack::text_len(blocks);
    assert!(
        total <= slack::MAX_TOTAL_TEXT,
        "{total} characters of block text"
    );
    assert!(body["text"].as_str().unwrap().chars().count() <= 3000);
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                assert!(
                    b["text"]["text"].as_str().unwrap().chars().count() <= 150,
                    "header too long"
                );
            }
            "section" => {
                if let Some(t) = b["text"]["text"].as_str() {
                    assert!(
                        t.chars().count() <= 3000,
                        "section of {} chars",
                        t.chars().count()
                    );
                }
                if let Some(fields) = b["fields"].as_array() {
                    assert!(fields.len() <= 10);
                    for f in fields {
                        assert!(f["text"].as_str().unwrap().chars().count() <= 2000);
                    }
                }
            }
            "context" => assert!(b["elements"].as_array().unwrap().len() <= 10),
            "divider" => {}
            other => panic!("unexpected block type {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_receives_the_exact_block_kit_message() {
    let server = HttpServer::start(vec![Reply::new(200, fixture("slack/ok.txt"))]).await;
    let url = server.url("/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX");
    let d = SlackDriver::from_config(&json!({"webhook_url": url}), &ctx()).unwrap();
    let receipt = d.send(&notification()).await.unwrap();
    assert_eq!(receipt.response.as_deref(), Some("HTTP 200 OK: ok"));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_within_slack_limits(&body);
    // At a glance: severity, incident, source, the top recommendation.
    let all = r.text();
    for needle in [
        "[CRITICAL] HighMemoryUsage on web-1",
        "#42",
        "alertmanager",
        "Restart the leaking java process",
    ] {
        assert!(all.contains(needle), "{needle} missing");
    }
    insta::assert_snapshot!("slack_message", redact_timestamps(&r.text()));
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_cuts_long_text_with_a_visible_marker_and_stays_within_limits() {
    let server = HttpServer::start(vec![Reply::new(200, "ok")]).await;
    let d = SlackDriver::from_config(
        &json!({"webhook_url": server.url("/hook"), "max_recommendations": 10}),
        &ctx(),
    )
    .unwrap();
    d.send(&huge()).await.unwrap();
    let body = server.requests()[0].json();
    assert_within_slack_limits(&body);
    let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(header.chars().count(), 150);
    assert!(header.ends_with(slack::CUT_MARKER));
    let text = server.requests()[0].text();
    assert!(
        text.contains("&lt;b&gt;&amp;&lt;/b&gt;"),
        "mrkdwn control characters are escaped"
    );
    assert!(
        text.contains("more recommendations not shown (message size limit)"),
        "the cut is visible"
    );
    assert!(body["blocks"].as_array().unwrap().iter().any(|b| {
        b["text"]["text"]
            .as_str()
            .is_some_and(|t| t.chars().count() == 3000 && t.ends_with(slack::CUT_MARKER))
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_error_answers_are_classified() {
    let server =
        HttpServer::start(vec![Reply::new(400, fixture("slack/invalid_payload.txt"))]).await;
    let d = SlackDriver::from_config(
        &json!({"webhook_url": server.url("/hook/T0SECRET")}),
        &ctx(),
    )
    .unwrap();
    let err = d.send(&notification()).await.unwrap_err();
    assert!(!err.is_temporary());
    assert!(
        err.message()
            .contains("HTTP 400 Bad Request: invalid_payload"),
        "{err}"
    );
    assert!(
        !err.message().contains("T0SECRET"),
        "the webhook URL is a secret: {err}"
    );

    server.set_replies(vec![Reply::new(403, fixture("slack/invalid_token.txt"))]);
    let err = d.send(&notification()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);

    server.set_replies(vec![Reply::new(
        410,
        fixture("slack/channel_is_archived.txt"),
    )]);
    assert!(!d.send(&notification()).await.unwrap_err().is_temporary());

    server.set_replies(vec![Reply::new(503, "")]);
    assert!(d.send(&notification()).await.unwrap_err().is_temporary());

    server.set_replies(vec![Reply::new(429, "").header("retry-after", "7")]);
    let err = d.send(&notification()).await.unwrap_err();
    assert!(err.is_temporary());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_receiver_is_a_timeout() {
    let server = HttpServer::start(vec![Reply::new(200, "ok").delay(Duration::from_secs(3))]).await;
    let d = SlackDriver::from_config(
        &json!({"webhook_url": server.url("/hook"), "timeout_secs": 0.3}),
        &ctx(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = d.send(&notification()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_temporary());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_temporary() {
    let url = format!("http://127.0.0.1:{}/hook", closed_port());
    let d = SlackDriver::from_config(&json!({"webhook_url": url}), &ctx()).unwrap();
    let err = d.send(&notification()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.is_temporary(), "{err}");
}

// ---------------------------------------------------------------------------------------------
// PagerDuty

const ROUTING_KEY: &str = "R0UT1NGKEY0000000000000000000000";

fn assert_valid_pagerduty_event(e: &Value) {
    assert_eq!(e["routing_key"], ROUTING_KEY);
    let action = e["event_action"].as_str().unwrap();
    assert!(["trigger", "acknowledge", "resolve"].contains(&action));
    let key = e["dedup_key"].as_str().unwrap();
    assert!(!key.is_empty() && key.chars().count() <= 255);
    if action == "trigger" {
        let p = &e["payload"];
        let summary = p["summary"].as_str().unwrap();
        assert!(
            !summary.is_empty() && summary.chars().count() <= 1024,
            "summary of {}",
            summary.chars().count()
        );
        assert!(!p["source"].as_str().unwrap().is_empty());
        assert!(
            ["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap())
        );
        chrono::DateTime::parse_from_rfc3339(p["timestamp"].as_str().unwrap()).unwrap();
    }
    assert!(serde_json::to_vec(e).unwrap().len() < 512 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn pagerduty_trigger_then_resolve_with_one_dedup_key() {
    let server = HttpServer::start(vec![Reply::new(202, fixture("pagerduty/accepted.json"))]).await;
    let d = PagerDutyDriver::from_config(
        &json!({"routing_key": ROUTING_KEY, "events_url": server.url("/v2/enqueue"), "component": "web", "group": "prod",
                "severity": {"critical": "error"}}),
        &ctx(),
    )
    .unwrap();
    let mut n = notification();
    let r = d.send(&n).await.unwrap();
    assert_eq!(r.message_id.as_deref(), Some("tocsin-incident-42"));
    assert!(
        r.response
            .as_deref()
            .unwrap()
            .starts_with("HTTP 202 Accepted")
    );
    n.status = Some(AlertStatus::Resolved);
    d.send(&n).await.unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.path == "/v2/enqueue"
        && r.header("content-type").as_deref() == Some("application/json")));
    let (trigger, resolve) = (reqs[0].json(), reqs[1].json());
    assert_valid_pagerduty_event(&trigger);
    assert_valid_pagerduty_event(&resolve);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    assert_eq!(
        trigger["payload"]["severity"], "error",
        "the severity map applies"
    );
    assert_eq!(
        trigger["payload"]["custom_details"]["recommendations"][1]["title"],
        "Restart the leaking java process"
    );
    insta::assert_snapshot!("pagerduty_trigger", redact_timestamps(&reqs[0].text()));
    insta::assert_snapshot!("pagerduty_resolve", redact_timestamps(&reqs[1].text()));
}

#[tokio::test(flavor = "multi_thread")]
async fn pagerduty_summary_is_cut_at_1024_and_errors_are_classified() {
    let server = HttpServer::start(vec![Reply::new(202, fixture("pagerduty/accepted.json"))]).await;
    let d = PagerDutyDriver::from_config(
        &json!({"routing_key": ROUTING_KEY, "events_url": server.url("/v2/enqueue")}),
        &ctx(),
    )
    .unwrap();
    d.send(&huge()).await.unwrap();
    let e = server.requests()[0].json();
    assert_valid_pagerduty_event(&e);
    let summary = e["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with(tocsin_notify::pagerduty::CUT_MARKER));

    server.set_replies(vec![Reply::new(
        400,
        fixture("pagerduty/invalid-event.json"),
    )]);
    let err = d.send(&notification()).await.unwrap_err();
    assert!(!err.is_temporary());
    assert!(
        err.message().contains("Event object is invalid"),
        "the provider's answer is kept: {err}"
    );
    assert!(!err.message().contains(ROUTING_KEY));

    server.set_replies(vec![
        Reply::new(429, fixture("pagerduty/rate-limited.json")).header("retry-after", "2"),
    ]);
    let err = d.send(&notification()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));

    let mut n = notification();
    n.status = Some(AlertStatus::Resolved);
    n.dedup_key.clear();
    assert_eq!(
        d.send(&n).await.unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "a resolve needs its key"
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook

#[tokio::test(flavor = "multi_thread")]
async fn webhook_sends_the_documented_document_signed() {
    let server = HttpServer::start(vec![Reply::new(200, fixture("webhook/accepted.json"))]).await;
    let d = WebhookDriver::from_config(
        &json!({"url": server.url("/tocsin?team=sre"), "headers": {"X-Team": "sre"}, "hmac_secret": "whsec-test"}),
        &ctx(),
    )
    .unwrap();
    let receipt = d.send(&notification()).await.unwrap();
    assert_eq!(receipt.message_id.as_deref(), Some("evt_0001"));
    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/tocsin?team=sre");
    assert_eq!(r.header("x-team").as_deref(), Some("sre"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        r.header("idempotency-key").as_deref(),
        Some("run-0001:notify")
    );
    let ts = r.header(webhook::TIMESTAMP_HEADER).unwrap();
    let sig = r.header("x-tocsin-signature").unwrap();
    // The receiver's check: HMAC over "<timestamp>.<raw body>".
    assert_eq!(sig, webhook::signature("whsec-test", &ts, &r.body).unwrap());
    assert_ne!(
        sig,
        webhook::signature("other-secret", &ts, &r.body).unwrap()
    );
    let body = r.json();
    assert_eq!(body["version"], "1");
    assert_eq!(body["incident"]["id"], 42);
    assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(body["check_summary"]["critical"], 1);
    assert_eq!(body["recommendations"].as_array().unwrap().len(), 2);
    insta::assert_snapshot!("webhook_default_body", redact_timestamps(&r.text()));
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_body_template_method_and_unsigned() {
    let server = HttpServer::start(vec![Reply::new(204, "")]).await;
    let d = WebhookDriver::from_config(
        &json!({"url": server.url("/x"), "method": "put", "content_type": "text/plain",
                "templates": {"body": "{{ severity_upper }} {{ title }} ({{ alerts|length }} alerts, worst check {{ check_summary.worst }})"}}),
        &ctx(),
    )
    .unwrap();
    d.send(&notification()).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(
        r.text(),
        "CRITICAL HighMemoryUsage on web-1 (2 alerts, worst check critical)"
    );
    assert!(r.header("x-tocsin-signature").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_body_template_stays_valid_json_whatever_the_values() {
    let server = HttpServer::start(vec![Reply::new(200, "")]).await;
    let d = WebhookDriver::from_config(
        &json!({"url": server.url("/x"), "templates": {"body": "{\"text\": {{ title }}, \"sev\": {{ severity }}, \"alerts\": {{ alerts|length }}}"}}),
        &ctx(),
    )
    .unwrap();
    let mut n = notification();
    n.title = "Quote \" and backslash \\ and </script>".into();
    d.send(&n).await.unwrap();
    let body = server.requests()[0].json();
    assert_eq!(body["text"], "Quote \" and backslash \\ and </script>");
    assert_eq!(body["sev"], "critical");
    assert_eq!(body["alerts"], 2);

    // A template that does not produce JSON is a template error, not a 400 from the receiver.
    let d = WebhookDriver::from_config(
        &json!({"url": server.url("/x"), "templates": {"body": "{\"text\": \"{{ title }}\"}"}}),
        &ctx(),
    )
    .unwrap();
    let err = d.send(&n).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Template);
    assert!(err.message().contains("valid JSON"), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_error_is_permanent_and_names_the_template() {
    let server = HttpServer::start(vec![Reply::new(200, "")]).await;
    let d = WebhookDriver::from_config(
        &json!({"url": server.url("/x"), "templates": {"body": "{\n\"a\": {{ 1 / 0 }}\n}"}}),
        &ctx(),
    )
    .unwrap();
    let err = d.send(&notification()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Template);
    assert!(!err.is_temporary());
    assert!(
        err.message().contains("\"body\"") && err.message().contains("line 2"),
        "{err}"
    );
    assert!(server.requests().is_empty());

    // The sandbox, through a driver: no file outside the templates folder, no endless loop.
    for body in [
        "{% include \"/etc/passwd\" %}",
        "{% include \"../../../../../etc/passwd\" %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    ] {
        let d = WebhookDriver::from_config(
            &json!({"url": server.url("/x"), "templates": {"body": body}}),
            &ctx(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = d.send(&notification()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Template, "{body}: {err}");
        assert!(!err.message().contains("root:"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
