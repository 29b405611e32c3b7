//! The email driver against a real SMTP server on loopback (mailin-embedded).

use serde_json::json;
use tocsin_core::plugin::{BuildContext, NotifyDriver};
use tocsin_core::{ErrorKind, Result};
use tocsin_notify::email::EmailDriver;

use crate::common::*;

fn driver(config: serde_json::Value) -> Result<EmailDriver> {
    EmailDriver::from_config(&config, &BuildContext::default())
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    mail.lines().find_map(|l| l.strip_prefix(&prefix))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_message_arrives_with_headers_both_parts_and_every_recipient() {
    let smtp = SmtpServer::start();
    let d = driver(json!({
        "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "tls": "none",
        "from": "tocsin <tocsin@example.com>", "to": ["oncall@example.com", "sre@example.com"],
    }))
    .unwrap();
    let mut n = notification();
    n.title = "HighMemoryUsage on <web-1> & co".into();
    let receipt = d.send(&n).await.unwrap();
    assert_eq!(
        receipt.message_id.as_deref(),
        Some("<tocsin.run-0001.notify@example.com>")
    );
    assert!(
        receipt.response.as_deref().unwrap().starts_with("SMTP 250"),
        "{receipt:?}"
    );

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "tocsin@example.com");
    assert_eq!(m.to, vec!["oncall@example.com", "sre@example.com"]);
    let text = m.text();
    assert_eq!(
        header(&text, "Subject"),
        Some("[CRITICAL] HighMemoryUsage on <web-1> & co"),
        "{text}"
    );
    assert_eq!(header(&text, "From"), Some("tocsin <tocsin@example.com>"));
    assert_eq!(
        header(&text, "To"),
        Some("oncall@example.com, sre@example.com")
    );
    assert_eq!(
        header(&text, "Message-ID"),
        Some("<tocsin.run-0001.notify@example.com>")
    );
    assert!(header(&text, "Date").is_some());
    assert!(
        header(&text, "Content-Type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{text}"
    );
    assert_eq!(
        text.matches("Content-Type: text/plain; charset=utf-8")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("Content-Type: text/html; charset=utf-8")
            .count(),
        1,
        "{text}"
    );
    // The text part is plain, the HTML part escaped.
    let html_at = text.find("Content-Type: text/html").unwrap();
    let (plain, html) = text.split_at(html_at);
    assert!(
        plain.contains("[CRITICAL] HighMemoryUsage on <web-1> & co"),
        "{plain}"
    );
    assert!(
        plain.contains("Restart the leaking java process"),
        "{plain}"
    );
    assert!(plain.contains("memory: critical - 94% used"), "{plain}");
    assert!(
        html.contains("HighMemoryUsage on &lt;web-1&gt; &amp; co"),
        "{html}"
    );
    assert!(!html.contains("<web-1>"), "{html}");
    assert!(
        plain.contains("Incident: https://tocsin.example.com/incidents/42/"),
        "{plain}"
    );
    // minijinja's HTML escaping also escapes '/', which browsers decode in attributes.
    assert!(
        html.contains(
            r#"<a href="https:&#x2f;&#x2f;tocsin.example.com&#x2f;incidents&#x2f;42&#x2f;">"#
        ),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_over_starttls_with_a_private_ca() {
    let smtp = SmtpServer::start_with(Some(("tocsin", "s3cret-pw")));
    let ca = smtp.ca_file.clone().unwrap();
    let base = json!({
        "smtp_host": "localhost", "smtp_port": smtp.port, "tls": "starttls", "ca_file": ca,
        "username": "tocsin", "password": "s3cret-pw",
        "from": "tocsin@example.com", "to": "oncall@example.com",
    });
    driver(base.clone())
        .unwrap()
        .send(&notification())
        .await
        .unwrap();
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].auth,
        Some(("tocsin".to_owned(), "s3cret-pw".to_owned()))
    );

    let mut wrong = base.clone();
    wrong["password"] = json!("wrong-pw");
    let err = driver(wrong)
        .unwrap()
        .send(&notification())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(!err.is_temporary());
    assert!(err.message().contains("535"), "{err}");
    assert!(!err.to_string().contains("wrong-pw"), "{err}");

    // Without the CA the server's certificate is not trusted: a TLS error, not a silent fallback.
    let mut untrusted = base;
    untrusted.as_object_mut().unwrap().remove("ca_file");
    let err = driver(untrusted)
        .unwrap()
        .send(&notification())
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");
    assert_eq!(smtp.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_a_temporary_error() {
    let port = closed_port();
    let d = driver(
        json!({"smtp_host": "127.0.0.1", "smtp_port": port, "tls": "none",
        "from": "tocsin@example.com", "to": ["oncall@example.com"]}),
    )
    .unwrap();
    let err = d.send(&notification()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert!(err.is_temporary(), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_recipient_is_a_permanent_error_with_the_smtp_reply() {
    let smtp = SmtpServer::start();
    let d = driver(
        json!({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "tls": "none",
        "from": "tocsin@example.com", "to": ["nobody@example.com"]}),
    )
    .unwrap();
    let err = d.send(&notification()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(!err.is_temporary(), "{err}");
    assert!(err.message().contains("SMTP 550"), "{err}");
    assert!(smtp.mails().is_empty());
}

#[test]
fn config_is_validated_without_io() {
    let ok =
        json!({"smtp_host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com"]});
    assert!(driver(ok.clone()).is_ok());
    for (patch, field) in [
        (json!({"to": []}), "to"),
        (json!({"to": ["not an address"]}), "to"),
        (json!({"from": "nope"}), "from"),
        (json!({"tls": "sometimes"}), "tls"),
        (json!({"smtp_port": 70000}), "smtp_port"),
        (json!({"username": "u"}), "password"),
        (
            json!({"username": "u", "password": "p", "tls": "none"}),
            "tls",
        ),
        (
            json!({"templates": {"html": {"file": "../../etc/passwd"}}}),
            "templates.html",
        ),
    ] {
        let mut c = ok.clone();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        let err = driver(c).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains(field), "{field}: {err}");
    }
    // Credentials in clear are fine to a relay on loopback.
    let mut c = ok;
    c.as_object_mut().unwrap().extend(
        json!({"smtp_host": "127.0.0.1", "username": "u", "password": "p", "tls": "none"})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert!(driver(c).is_ok());
}
