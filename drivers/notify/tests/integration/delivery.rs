//! Channels, delivery records and retries, on SQLite and PostgreSQL.

use std::time::Duration;

use serde_json::json;
use tocsin_core::domain::DeliveryStatus;
use tocsin_core::store::{self, testing};
use tocsin_core::{Config, ErrorKind};
use tocsin_notify::{SendOptions, notify_with, send_with_options};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn with_no_channel_configured_a_skipped_delivery_is_recorded() {
    for db in testing::all().await {
        let t = tocsin(&db, Config::default());
        let n = stored_notification(&t).await;
        let outcome = tocsin_notify::notify(&t, &n, None).await.unwrap();
        assert!(outcome.skipped, "{}", db.label);
        assert_eq!(outcome.notified, 0);
        let stored = t
            .store()
            .run(|c| store::list_deliveries(c, None, 10))
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "{}", db.label);
        assert_eq!(stored[0].status, DeliveryStatus::Skipped);
        assert_eq!(stored[0].error.as_deref(), Some("no channel configured"));
        assert_eq!(stored[0].trace_id, "trace-0001");
        assert_eq!(stored[0].incident_id, n.incident.as_ref().map(|i| i.id));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_skip_all_records_a_skip_and_sends_nothing() {
    let server = HttpServer::start(vec![Reply::new(200, "ok")]).await;
    for db in testing::all().await {
        let t = tocsin(
            &db,
            Config {
                notify_skip_all: true,
                ..Config::default()
            },
        );
        tocsin_notify::create_channel(
            &t,
            "ops",
            "slack",
            &json!({"webhook_url": server.url("/hook")}),
            "",
        )
        .await
        .unwrap();
        let outcome = tocsin_notify::notify(&t, &notification(), None)
            .await
            .unwrap();
        assert!(outcome.skipped);
        assert_eq!(outcome.deliveries.len(), 1);
        assert_eq!(outcome.deliveries[0].status, DeliveryStatus::Skipped);
        assert!(
            outcome.deliveries[0]
                .error
                .as_deref()
                .unwrap()
                .contains("NOTIFY_SKIP_ALL")
        );
        let sent = send_with_options(
            &t,
            "slack",
            &json!({"webhook_url": server.url("/hook")}),
            &notification(),
            &SendOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(sent.result.status, DeliveryStatus::Skipped);
    }
    assert!(server.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_are_validated_listed_disabled_and_removed() {
    let server = HttpServer::start(vec![Reply::new(200, "ok")]).await;
    for db in testing::all().await {
        let t = tocsin(&db, Config::default());
        let err = tocsin_notify::create_channel(&t, "ops", "slack", &json!({}), "")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("webhook_url"), "{err}");
        let err = tocsin_notify::create_channel(&t, "ops", "carrier-pigeon", &json!({}), "")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = tocsin_notify::create_channel(&t, "bad name", "console", &json!({}), "")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);

        let secret_url = server.url("/services/T0SECRET");
        tocsin_notify::create_channel(
            &t,
            "ops",
            "slack",
            &json!({"webhook_url": secret_url}),
            "ops room",
        )
        .await
        .unwrap();
        tocsin_notify::create_channel(
            &t,
            "oncall",
            "webhook",
            &json!({"url": server.url("/wh"), "headers": {"X-Key": "k-SECRET"}}),
            "",
        )
        .await
        .unwrap();
        let err = tocsin_notify::create_channel(&t, "ops", "console", &json!({}), "")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);

        let listed = tocsin_notify::list_channels(&t, false).await.unwrap();
        assert_eq!(
            listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["oncall", "ops"]
        );
        let shown =
            tocsin_notify::redacted_channel(tocsin_notify::get_channel(&t, "ops").await.unwrap());
        assert_eq!(shown.config["webhook_url"], "**REDACTED**");
        let shown = tocsin_notify::redacted_channel(
            tocsin_notify::get_channel(&t, "oncall").await.unwrap(),
        );
        assert_eq!(shown.config["headers"]["X-Key"], "**REDACTED**");
        assert_eq!(shown.config["url"], server.url("/wh"));
        let with_query = tocsin_notify::redact_config(
            &json!({"url": "https://hooks.example.com/x?token=abc", "events_url": "https://e/v2"}),
        );
        assert_eq!(
            with_query["url"],
            "https://hooks.example.com/x?**REDACTED**"
        );
        assert_eq!(with_query["events_url"], "https://e/v2");

        let err =
            tocsin_notify::update_channel(&t, "ops", Some(&json!({"webhook_url": "nope"})), None)
                .await
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let updated = tocsin_notify::update_channel(&t, "ops", None, Some("ops room (new)"))
            .await
            .unwrap();
        assert_eq!(updated.description, "ops room (new)");

        tocsin_notify::disable_channel(&t, "oncall").await.unwrap();
        let outcome = notify_with(&t, &notification(), None, fast_retries())
            .await
            .unwrap();
        assert_eq!(
            outcome.notified, 1,
            "{}: only the enabled channel",
            db.label
        );
        assert_eq!(outcome.results[0].channel.as_deref(), Some("ops"));

        // A named disabled channel is recorded as skipped.
        let outcome = notify_with(
            &t,
            &notification(),
            Some(&["oncall".to_owned()]),
            fast_retries(),
        )
        .await
        .unwrap();
        assert_eq!(outcome.results[0].status, DeliveryStatus::Skipped);
        assert_eq!(
            outcome.deliveries[0].error.as_deref(),
            Some("channel disabled")
        );
        let err = notify_with(
            &t,
            &notification(),
            Some(&["ghost".to_owned()]),
            fast_retries(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);

        tocsin_notify::remove_channel(&t, "oncall").await.unwrap();
        assert_eq!(
            tocsin_notify::remove_channel(&t, "oncall")
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failures_are_retried_and_every_attempt_is_recorded() {
    for db in testing::all().await {
        let server = HttpServer::start(vec![
            Reply::new(500, "boom"),
            Reply::new(429, "slow down").header("retry-after", "1"),
            Reply::new(200, "ok"),
        ])
        .await;
        let t = tocsin(&db, Config::default());
        tocsin_notify::create_channel(
            &t,
            "ops",
            "slack",
            &json!({"webhook_url": server.url("/hook/T0SECRET")}),
            "",
        )
        .await
        .unwrap();
        let mut n = notification();
        n.run_id = Some(format!("run-{}", db.label));
        let outcome = notify_with(&t, &n, None, fast_retries()).await.unwrap();
        assert_eq!(outcome.notified, 1, "{}", db.label);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        let waited = reqs[2].at - reqs[1].at;
        assert!(
            waited >= Duration::from_millis(950),
            "Retry-After: 1 was honoured ({waited:?})"
        );

        let mut stored = t
            .store()
            .run(|c| store::list_deliveries(c, None, 10))
            .await
            .unwrap();
        stored.sort_by_key(|d| d.attempt);
        let view: Vec<_> = stored
            .iter()
            .map(|d| (d.attempt, d.status, d.response.clone()))
            .collect();
        assert_eq!(
            view,
            vec![
                (
                    1,
                    DeliveryStatus::Retrying,
                    Some("HTTP 500 Internal Server Error: boom".to_owned())
                ),
                (
                    2,
                    DeliveryStatus::Retrying,
                    Some("HTTP 429 Too Many Requests: slow down".to_owned())
                ),
                (3, DeliveryStatus::Sent, Some("HTTP 200 OK: ok".to_owned())),
            ],
            "{}",
            db.label
        );
        assert!(
            stored
                .iter()
                .all(|d| d.idempotency_key == "run-0001:notify:ops"),
            "one key across retries"
        );
        assert!(
            stored
                .iter()
                .all(|d| d.channel_name.as_deref() == Some("ops") && d.driver == "slack")
        );
        assert!(stored.iter().all(|d| d.duration_ms.is_some()));
        let all = serde_json::to_string(&stored).unwrap();
        assert!(!all.contains("T0SECRET"), "no secret in stored records");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_are_not_retried_and_retries_are_bounded() {
    for db in testing::all().await {
        let server = HttpServer::start(vec![Reply::new(400, "invalid_payload")]).await;
        let t = tocsin(&db, Config::default());
        tocsin_notify::create_channel(
            &t,
            "ops",
            "slack",
            &json!({"webhook_url": server.url("/hook")}),
            "",
        )
        .await
        .unwrap();
        let outcome = notify_with(&t, &notification(), None, fast_retries())
            .await
            .unwrap();
        assert_eq!((outcome.notified, outcome.failed), (0, 1));
        assert_eq!(server.requests().len(), 1);
        let err = outcome.first_error().unwrap();
        assert!(!err.is_temporary());
        assert!(err.message().contains("channel \"ops\""), "{err}");

        server.set_replies(vec![Reply::new(503, "down")]);
        let outcome = notify_with(&t, &notification(), None, fast_retries())
            .await
            .unwrap();
        assert_eq!(outcome.failed, 1);
        assert_eq!(
            server.requests().len(),
            1 + 3,
            "{}: three attempts, then stop",
            db.label
        );
        let statuses: Vec<_> = outcome.deliveries.iter().map(|d| d.status).collect();
        assert_eq!(
            statuses,
            vec![
                DeliveryStatus::Retrying,
                DeliveryStatus::Retrying,
                DeliveryStatus::Failed
            ]
        );
        assert!(outcome.first_error().unwrap().is_temporary());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_are_retried_and_recorded() {
    for db in testing::all().await {
        let server =
            HttpServer::start(vec![Reply::new(200, "ok").delay(Duration::from_secs(2))]).await;
        let t = tocsin(&db, Config::default());
        let config = json!({"webhook_url": server.url("/hook"), "timeout_secs": 0.2});
        let mut n = notification();
        n.idempotency_key = format!("adhoc-timeout-{}", db.label);
        let err = send_with_options(
            &t,
            "slack",
            &config,
            &n,
            &SendOptions {
                retry: fast_retries(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        let stored = t
            .store()
            .run(|c| store::list_deliveries(c, None, 10))
            .await
            .unwrap();
        assert_eq!(stored.len(), 3, "{}", db.label);
        assert!(stored.iter().all(
            |d| d.channel_name.is_none() && d.error.as_deref().unwrap().starts_with("timeout:")
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_step_does_not_send_again_to_a_channel_already_delivered() {
    for db in testing::all().await {
        let good = HttpServer::start(vec![Reply::new(200, "ok")]).await;
        let bad = HttpServer::start(vec![Reply::new(500, "down")]).await;
        let t = tocsin(&db, Config::default());
        tocsin_notify::create_channel(
            &t,
            "good",
            "slack",
            &json!({"webhook_url": good.url("/h")}),
            "",
        )
        .await
        .unwrap();
        tocsin_notify::create_channel(
            &t,
            "bad",
            "slack",
            &json!({"webhook_url": bad.url("/h")}),
            "",
        )
        .await
        .unwrap();
        let mut n = notification();
        n.run_id = Some("run-retry".into());
        let first = notify_with(&t, &n, None, fast_retries()).await.unwrap();
        assert_eq!((first.notified, first.failed), (1, 1));
        bad.set_replies(vec![Reply::new(200, "ok")]);
        let second = notify_with(&t, &n, None, fast_retries()).await.unwrap();
        assert_eq!((second.notified, second.failed), (2, 0));
        assert_eq!(good.requests().len(), 1, "{}: not sent twice", db.label);
        let bad_attempts: Vec<i32> = second
            .deliveries
            .iter()
            .filter(|d| d.channel_name.as_deref() == Some("bad"))
            .map(|d| d.attempt)
            .collect();
        assert_eq!(
            bad_attempts,
            vec![4],
            "attempt numbers continue across the step's retries"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn destinations_from_request_bodies_are_guarded() {
    let server = HttpServer::start(vec![Reply::new(200, "ok")]).await;
    let db = testing::sqlite().await;
    let t = tocsin(&db, Config::default());
    let options = SendOptions {
        untrusted_destination: true,
        ..Default::default()
    };
    for (driver, config, field) in [
        (
            "slack",
            json!({"webhook_url": server.url("/h")}),
            "webhook_url",
        ),
        (
            "webhook",
            json!({"url": "http://169.254.169.254/latest/meta-data/"}),
            "url",
        ),
        (
            "pagerduty",
            json!({"routing_key": "k", "events_url": "http://10.0.0.8/v2/enqueue"}),
            "events_url",
        ),
        (
            "email",
            json!({"smtp_host": "localhost", "from": "a@example.com", "to": "b@example.com"}),
            "smtp_host",
        ),
    ] {
        let err = send_with_options(&t, driver, &config, &notification(), &options)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{driver}: {err}");
        assert!(err.message().starts_with(field), "{err}");
    }
    assert!(server.requests().is_empty());
    // Nor may a body name a file on the server.
    let err = send_with_options(
        &t,
        "email",
        &json!({"smtp_host": "smtp.example.com", "from": "a@example.com", "to": "b@example.com", "ca_file": "/etc/shadow"}),
        &notification(),
        &options,
    )
    .await
    .unwrap_err();
    assert!(err.message().starts_with("ca_file: not allowed"), "{err}");
    // The operator's own config (no guard) may point at loopback.
    send_with_options(
        &t,
        "slack",
        &json!({"webhook_url": server.url("/h")}),
        &notification(),
        &SendOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_stored_config_is_recorded_as_a_failed_delivery() {
    for db in testing::all().await {
        let t = tocsin(&db, Config::default());
        // Written behind the library's back, as an old version or a hand edit could.
        t.store()
            .write(|c| store::insert_channel(c, "broken", "slack", &json!({"webhook_url": 5}), ""))
            .await
            .unwrap();
        let outcome = tocsin_notify::notify(&t, &notification(), None)
            .await
            .unwrap();
        assert_eq!(outcome.failed, 1);
        assert_eq!(outcome.deliveries[0].status, DeliveryStatus::Failed);
        assert!(
            outcome.deliveries[0]
                .error
                .as_deref()
                .unwrap()
                .contains("webhook_url"),
            "{:?}",
            outcome.deliveries[0]
        );
        assert_eq!(
            outcome.first_error().unwrap().kind(),
            ErrorKind::InvalidConfig
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_channels_may_reference_secrets_in_the_environment_but_request_bodies_may_not() {
    for db in testing::all().await {
        let server = HttpServer::start(vec![Reply::new(200, "ok")]).await;
        let t = tocsin(&db, Config::default());
        // cargo sets CARGO_PKG_NAME for the test process: a variable that is surely there.
        let config =
            json!({"url": server.url("/wh"), "headers": {"X-Token": "${env:CARGO_PKG_NAME}"}});
        tocsin_notify::create_channel(&t, "hook", "webhook", &config, "")
            .await
            .unwrap();
        let stored = tocsin_notify::get_channel(&t, "hook").await.unwrap();
        assert_eq!(
            stored.config["headers"]["X-Token"], "${env:CARGO_PKG_NAME}",
            "the reference is stored, not the value"
        );
        let outcome = notify_with(&t, &notification(), None, fast_retries())
            .await
            .unwrap();
        assert_eq!(outcome.notified, 1, "{}", db.label);
        assert_eq!(
            server.requests()[0].header("x-token").as_deref(),
            Some("tocsin-notify")
        );

        let err = tocsin_notify::create_channel(&t, "unset", "webhook",
            &json!({"url": server.url("/wh"), "hmac_secret": "${env:TOCSIN_SURELY_UNSET_VARIABLE}"}), "").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message().contains("hmac_secret")
                && err.message().contains("TOCSIN_SURELY_UNSET_VARIABLE"),
            "{err}"
        );

        let options = SendOptions {
            untrusted_destination: true,
            ..Default::default()
        };
        let err = send_with_options(&t, "webhook", &json!({"url": "https://hooks.example.com/x", "headers": {"X": "${env:CARGO_PKG_NAME}"}}), &notification(), &options)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.message()
                .starts_with("headers.X: environment references"),
            "{err}"
        );
    }
}
