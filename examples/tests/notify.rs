//! The notify commands of the built `tocsin` binary, against local HTTP and SMTP servers: every
//! `test-notify` flag reaches the driver (the original silently ignored them), exit codes, and
//! the channel commands.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// An HTTP receiver on 127.0.0.1 answering `status` with `body`.
async fn http_server(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<Received>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, bytes: Bytes| {
        let g = g.clone();
        async move {
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            g.lock().unwrap().push(Received {
                path: uri.to_string(),
                headers,
                body: json,
            });
            (StatusCode::from_u16(status).unwrap(), body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, got)
}

/// What the SMTP server received: (envelope sender, envelope recipients, data).
type Mails = Arc<Mutex<Vec<(String, Vec<String>, String)>>>;

/// A minimal SMTP server on 127.0.0.1 (RFC 5321 happy path) recording envelopes and data.
fn smtp_server() -> (u16, Mails) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let m = mails.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream);
            let (mut from, mut to, mut data) = (String::new(), Vec::new(), String::new());
            writeln!(out, "220 mx.test ESMTP\r").unwrap();
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                let cmd = line.trim_end().to_owned();
                line.clear();
                let upper = cmd.to_ascii_uppercase();
                if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                    write!(out, "250-mx.test\r\n250 8BITMIME\r\n").unwrap();
                } else if upper.starts_with("MAIL FROM:") {
                    from = between_angles(&cmd);
                    writeln!(out, "250 OK\r").unwrap();
                } else if upper.starts_with("RCPT TO:") {
                    to.push(between_angles(&cmd));
                    writeln!(out, "250 OK\r").unwrap();
                } else if upper == "DATA" {
                    writeln!(out, "354 go ahead\r").unwrap();
                    while lines.read_line(&mut line).unwrap_or(0) > 0 {
                        if line.trim_end() == "." {
                            break;
                        }
                        data.push_str(&line);
                        line.clear();
                    }
                    line.clear();
                    m.lock()
                        .unwrap()
                        .push((from.clone(), to.clone(), data.clone()));
                    writeln!(out, "250 OK queued as T1\r").unwrap();
                } else if upper == "QUIT" {
                    writeln!(out, "221 bye\r").unwrap();
                    break;
                } else {
                    writeln!(out, "250 OK\r").unwrap();
                }
            }
        }
    });
    (port, mails)
}

/// The address of `MAIL FROM:<a@b> BODY=8BITMIME`.
fn between_angles(cmd: &str) -> String {
    let start = cmd.find('<').map_or(0, |i| i + 1);
    let end = cmd[start..].find('>').map_or(cmd.len(), |i| start + i);
    cmd[start..end].to_owned()
}

fn tocsin(db: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    c.env_remove("TOCSIN_API_KEYS")
        .env_remove("TOCSIN_SMTP_PASSWORD")
        .env_remove("NOTIFY_SKIP_ALL")
        .env_remove("TOCSIN_OUTBOUND_ALLOW")
        .env(
            "TOCSIN_DATABASE_URL",
            format!("sqlite://{}", db.join("tocsin.db").display()),
        )
        .env("RUST_LOG", "warn");
    c
}

async fn run(cmd: Command) -> Output {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn test_notify_flags_reach_the_slack_pagerduty_and_webhook_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let (base, got) = http_server(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"k-1"}"#,
    )
    .await;

    let mut c = tocsin(dir.path());
    c.args([
        "test-notify",
        "slack",
        "--webhook-url",
        &format!("{base}/services/T1/B1/X1"),
    ])
    .args([
        "--title",
        "Disk full on db-1",
        "--message",
        "97% used on /var",
        "--severity",
        "critical",
    ]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    {
        let r = got.lock().unwrap().pop().unwrap();
        assert_eq!(r.path, "/services/T1/B1/X1");
        assert_eq!(
            r.body["blocks"][0]["text"]["text"],
            ":red_circle: [CRITICAL] Disk full on db-1"
        );
        assert!(r.body.to_string().contains("97% used on /var"));
    }

    let mut c = tocsin(dir.path());
    c.args([
        "test-notify",
        "pagerduty",
        "--routing-key",
        "R0UT1NGKEY0000000000000000000000",
    ])
    .args([
        "--events-url",
        &format!("{base}/v2/enqueue"),
        "--severity",
        "warning",
        "--json",
    ]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["delivered"], true);
    assert_eq!(out["results"][0]["message_id"], "k-1");
    {
        let r = got.lock().unwrap().pop().unwrap();
        assert_eq!(r.path, "/v2/enqueue");
        assert_eq!(r.body["routing_key"], "R0UT1NGKEY0000000000000000000000");
        assert_eq!(r.body["payload"]["severity"], "warning");
        assert_eq!(
            r.body["payload"]["summary"],
            "[WARNING] Test Alert: This is a test notification from tocsin."
        );
    }

    let mut c = tocsin(dir.path());
    c.args(["test-notify", "webhook", "--url", &format!("{base}/hook"), "--title", "Hello"])
        .args(["--json-config", r#"{"headers": {"X-Team": "sre"}, "hmac_secret": "s3cret", "url": "http://ignored.invalid/"}"#]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    {
        let r = got.lock().unwrap().pop().unwrap();
        assert_eq!(r.path, "/hook", "--url overrides --json-config");
        assert_eq!(r.headers.get("x-team").unwrap(), "sre");
        assert!(
            r.headers
                .get("x-tocsin-signature")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("sha256=")
        );
        assert_eq!(r.body["title"], "Hello");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_notify_email_flags_reach_the_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mails) = smtp_server();
    let mut c = tocsin(dir.path());
    c.args([
        "test-notify",
        "email",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &port.to_string(),
        "--tls",
        "none",
    ])
    .args([
        "--from",
        "tocsin@example.com",
        "--to",
        "oncall@example.com,sre@example.com",
        "--title",
        "Mail test",
    ]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let (from, to, data) = &mails[0];
    assert_eq!(from, "tocsin@example.com");
    assert_eq!(
        to,
        &vec![
            "oncall@example.com".to_owned(),
            "sre@example.com".to_owned()
        ]
    );
    assert!(data.contains("Subject: [INFO] Mail test"), "{data}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("SMTP 250"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_notify_exits_non_zero_unless_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (base, got) = http_server(500, "boom").await;
    let mut c = tocsin(dir.path());
    c.args([
        "test-notify",
        "slack",
        "--webhook-url",
        &format!("{base}/h"),
        "--no-retry",
    ]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HTTP 500 Internal Server Error: boom"),
        "{}",
        text(&o)
    );
    assert_eq!(got.lock().unwrap().len(), 1, "--no-retry sends once");

    // A flag of another driver is refused, not ignored.
    let mut c = tocsin(dir.path());
    c.args([
        "test-notify",
        "slack",
        "--webhook-url",
        &format!("{base}/h"),
        "--smtp-host",
        "mx.example.com",
    ]);
    let o = run(c).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--smtp-host is an option of the email driver"),
        "{}",
        text(&o)
    );

    // An invalid config names the field.
    let mut c = tocsin(dir.path());
    c.args([
        "test-notify",
        "pagerduty",
        "--events-url",
        &format!("{base}/v2/enqueue"),
    ]);
    let o = run(c).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("routing_key"),
        "{}",
        text(&o)
    );

    // Nothing configured: nothing delivered, exit 1.
    let mut c = tocsin(dir.path());
    c.arg("test-notify");
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no channel configured"),
        "{}",
        text(&o)
    );
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_commands_manage_channels_and_test_notify_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let (base, got) = http_server(200, "ok").await;
    let url = format!("{base}/services/T9/B9/SECRETTOKEN");

    let mut c = tocsin(dir.path());
    c.args([
        "channels",
        "add",
        "ops",
        "--driver",
        "slack",
        "--json-config",
        "{}",
    ]);
    let o = run(c).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("webhook_url"),
        "{}",
        text(&o)
    );

    let mut c = tocsin(dir.path());
    c.args([
        "channels",
        "add",
        "ops",
        "--driver",
        "slack",
        "--description",
        "ops room",
    ])
    .args([
        "--json-config",
        &serde_json::json!({"webhook_url": url}).to_string(),
    ]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));

    let mut c = tocsin(dir.path());
    c.args(["channels", "list", "--json"]);
    let o = run(c).await;
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["name"], "ops");
    assert_eq!(list[0]["enabled"], true);

    let mut c = tocsin(dir.path());
    c.args(["channels", "show", "ops"]);
    let o = run(c).await;
    assert!(o.status.success());
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        !shown.contains("SECRETTOKEN") && shown.contains("**REDACTED**"),
        "{shown}"
    );

    let mut c = tocsin(dir.path());
    c.args(["test-notify", "ops", "--title", "Through the channel"]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("channel \"ops\" (slack): sent"),
        "{}",
        text(&o)
    );
    assert_eq!(got.lock().unwrap().len(), 1);

    // --channel names it too; flags override the stored config for this one send.
    let (other, got_other) = http_server(200, "ok").await;
    let mut c = tocsin(dir.path());
    c.args(["test-notify", "--channel", "ops", "--title", "Overridden"])
        .args(["--webhook-url", &format!("{other}/elsewhere")]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(got.lock().unwrap().len(), 1, "not sent to the stored URL");
    let r = got_other.lock().unwrap().pop().unwrap();
    assert_eq!(r.path, "/elsewhere");
    assert!(r.body["text"].as_str().unwrap().contains("Overridden"));

    let mut c = tocsin(dir.path());
    c.args(["channels", "disable", "ops"]);
    assert!(run(c).await.status.success());
    let mut c = tocsin(dir.path());
    c.arg("test-notify");
    assert_eq!(
        run(c).await.status.code(),
        Some(1),
        "the only channel is disabled"
    );

    let mut c = tocsin(dir.path());
    c.args(["channels", "remove", "ops"]);
    assert!(run(c).await.status.success());
    let mut c = tocsin(dir.path());
    c.args(["channels", "show", "ops"]);
    let o = run(c).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not found"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_notify_drivers_shows_config_keys_when_verbose() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tocsin(dir.path());
    c.args(["list-notify-drivers", "--verbose"]);
    let o = run(c).await;
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "console",
        "email",
        "pagerduty",
        "slack",
        "webhook",
        "required: routing_key",
        "required: smtp_host, from, to",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    let mut c = tocsin(dir.path());
    c.args(["list-notify-drivers", "--json"]);
    let o = run(c).await;
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
}
