//! What the HTTP drivers share: the client, and how an answer or a transport failure becomes a
//! typed [`Error`] (temporary for connect errors, timeouts, 5xx and 429; permanent otherwise).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use tocsin_core::{Error, ErrorKind, Retry};

/// Default whole-request timeout of the HTTP drivers.
pub const DEFAULT_TIMEOUT_SECS: f64 = 10.0;
/// Longest provider answer kept in a record or an error.
pub const MAX_ANSWER: usize = 512;

/// Clients kept for reuse: more distinct keys than this (timeouts times runtimes) are unusual,
/// so reaching it drops them all rather than tracking use.
const MAX_CLIENTS: usize = 32;

/// Which client a request may share: the settings that differ between drivers, and the tokio
/// runtime, because a pooled connection is driven by a task of the runtime that opened it and
/// is useless once that runtime is gone (tests start one per test).
type ClientKey = (Option<tokio::runtime::Id>, Duration);

static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, reqwest::Client>>> = OnceLock::new();

/// A client with the given whole-request timeout (connect timeout at most 5 s), shared by every
/// driver with the same timeout: building one loads the TLS roots and each one keeps its own
/// connection pool, so a client per notification meant a new connection (and TLS handshake) per
/// notification. Building a client does no I/O.
pub fn client(timeout: Duration) -> tocsin_core::Result<reqwest::Client> {
    let key = (
        tokio::runtime::Handle::try_current().ok().map(|h| h.id()),
        timeout,
    );
    let cache = CLIENTS.get_or_init(Mutex::default);
    if let Some(c) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(c.clone());
    }
    // Built outside the lock: two callers racing build two clients and one is kept, which is
    // cheaper than making every caller wait behind a build.
    let built = new_client(timeout)?;
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= MAX_CLIENTS && !map.contains_key(&key) {
        map.clear();
    }
    Ok(map.entry(key).or_insert(built).clone())
}

fn new_client(timeout: Duration) -> tocsin_core::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        // A redirect could lead an outbound request somewhere the URL guard never saw.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::internal(format!("cannot build the HTTP client: {}", e.without_url())))
}

/// A transport failure (no answer): timeouts are [`ErrorKind::Timeout`], the rest
/// [`ErrorKind::Upstream`], all temporary. The URL is left out: it may carry a token.
pub fn transport_error(vendor: &str, err: reqwest::Error) -> Error {
    let err = err.without_url();
    if err.is_timeout() {
        Error::new(
            ErrorKind::Timeout,
            format!("{vendor} did not answer in time: {err}"),
        )
    } else if err.is_connect() {
        Error::new(
            ErrorKind::Upstream,
            format!("cannot connect to {vendor}: {}", source_chain(&err)),
        )
    } else {
        Error::new(
            ErrorKind::Upstream,
            format!("{vendor} request failed: {}", source_chain(&err)),
        )
    }
    .with_retry(Retry::Temporary)
}

fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The status line and the start of the body, as recorded: `HTTP 500 Internal Server Error: ...`.
pub fn answer(status: StatusCode, body: &str) -> String {
    let body = body.trim();
    let reason = status.canonical_reason().unwrap_or("");
    let mut s = format!("HTTP {} {reason}", status.as_u16())
        .trim_end()
        .to_owned();
    if !body.is_empty() {
        s.push_str(": ");
        s.push_str(&crate::template::cut(body, MAX_ANSWER, "…"));
    }
    s
}

/// An error answer as a typed error: 429 and 5xx (and 408) temporary, with `Retry-After`; 401
/// and 403 [`ErrorKind::Unauthorized`]; other 4xx permanent [`ErrorKind::Upstream`].
pub fn status_error(vendor: &str, status: StatusCode, headers: &HeaderMap, body: &str) -> Error {
    let msg = format!("{vendor} answered {}", answer(status, body));
    let code = status.as_u16();
    let temporary = code == 429 || code == 408 || status.is_server_error();
    if temporary {
        let e = Error::new(ErrorKind::Upstream, msg).with_retry(Retry::Temporary);
        match retry_after(headers) {
            Some(after) => e.with_retry_after(after),
            None => e,
        }
    } else if code == 401 || code == 403 {
        Error::new(ErrorKind::Unauthorized, msg).with_retry(Retry::Permanent)
    } else {
        Error::new(ErrorKind::Upstream, msg).with_retry(Retry::Permanent)
    }
}

/// Sends a prepared request and reads the answer: `Ok((status, body))` for 2xx, else the typed error.
pub async fn execute(
    vendor: &str,
    request: reqwest::RequestBuilder,
) -> tocsin_core::Result<(StatusCode, HeaderMap, String)> {
    let resp = request
        .send()
        .await
        .map_err(|e| transport_error(vendor, e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    // A body that never ends is cut by the request timeout; a huge one is read but only its start kept.
    let body = resp.text().await.map_err(|e| transport_error(vendor, e))?;
    if status.is_success() {
        Ok((status, headers, body))
    } else {
        Err(status_error(vendor, status, &headers, &body))
    }
}

/// Reads a required URL config key: `http`/`https` only; `secret` keys are never echoed.
pub fn url_from(config: &Value, key: &str, secret: bool) -> tocsin_core::Result<reqwest::Url> {
    let raw = config
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| Error::invalid_config(format!("{key}: required (an http or https URL)")))?;
    let shown = |raw: &str| {
        if secret {
            tocsin_core::secret::REDACTED.to_owned()
        } else {
            raw.to_owned()
        }
    };
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
        Error::invalid_config(format!("{key}: not a valid URL ({}): {e}", shown(raw)))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::invalid_config(format!(
            "{key}: expected an http or https URL with a host"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_classes() {
        let h = HeaderMap::new();
        assert!(status_error("x", StatusCode::INTERNAL_SERVER_ERROR, &h, "").is_temporary());
        assert!(status_error("x", StatusCode::TOO_MANY_REQUESTS, &h, "").is_temporary());
        let e = status_error("x", StatusCode::BAD_REQUEST, &h, "invalid_payload");
        assert!(!e.is_temporary());
        assert!(
            e.message()
                .contains("HTTP 400 Bad Request: invalid_payload"),
            "{e}"
        );
        assert_eq!(
            status_error("x", StatusCode::FORBIDDEN, &h, "").kind(),
            ErrorKind::Unauthorized
        );
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        let e = status_error("x", StatusCode::TOO_MANY_REQUESTS, &h, "");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    }

    /// A loopback HTTP/1.1 server that answers every request with 200 and counts connections.
    async fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = sock.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Requests here have no body: each header block is one request.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if sock.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn clients_with_the_same_settings_share_their_connections() {
        let (url, accepted) = counting_server().await;
        for _ in 0..5 {
            // As a driver does: a client per notification.
            let c = client(Duration::from_secs(5)).unwrap();
            execute("sink", c.get(&url)).await.unwrap();
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Another timeout is another client (and so another connection).
        execute("sink", client(Duration::from_secs(6)).unwrap().get(&url))
            .await
            .unwrap();
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn retry_after_accepts_http_dates() {
        let mut h = HeaderMap::new();
        let when = chrono::Utc::now() + chrono::Duration::seconds(30);
        h.insert(RETRY_AFTER, when.to_rfc2822().parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn secret_urls_are_not_echoed() {
        let err = url_from(
            &serde_json::json!({"webhook_url": "ftp://hooks/T0SECRET"}),
            "webhook_url",
            true,
        )
        .unwrap_err();
        assert!(!err.message().contains("T0SECRET"), "{err}");
        let err = url_from(
            &serde_json::json!({"webhook_url": "not a url T0SECRET"}),
            "webhook_url",
            true,
        )
        .unwrap_err();
        assert!(!err.message().contains("T0SECRET"), "{err}");
    }
}
