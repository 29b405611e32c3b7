//! The console's own authentication: a login with an API key that sets a signed session cookie,
//! CSRF tokens bound to that session, and the same-origin checks on every POST.
//!
//! The cookie is `KEYID.EXPIRY.NONCE.MAC`: `KEYID` is an HMAC of the API key (so the cookie never
//! carries the key, and the key cannot be guessed offline from it), `MAC` an HMAC-SHA256 over the
//! rest with the server secret (`TOCSIN_SECRET_KEY`, else random per process). A session dies
//! with its expiry, or as soon as its key is removed from `TOCSIN_API_KEYS`.

use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tocsin_core::ApiKey;

use super::form::{FormData, encode};
use super::view::{ConsoleError, render};
use crate::AppState;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "tocsin_session";
/// The CSRF cookie of the open (no API keys) mode.
pub(crate) const CSRF_COOKIE: &str = "tocsin_csrf";
/// How long a login lasts.
const SESSION_SECONDS: i64 = 12 * 3600;

/// What the console keeps for its whole life.
#[derive(Clone)]
pub(crate) struct ConsoleCtx {
    secret: Arc<Vec<u8>>,
}

/// A random secret shared by every router of this process, so a rebuilt router keeps sessions.
fn process_secret() -> &'static [u8] {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    SECRET.get_or_init(|| {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes
    })
}

impl ConsoleCtx {
    /// The secret from the configuration, else the per-process random one.
    pub(crate) fn new(state: &AppState) -> Self {
        let secret = match &state.tocsin.config().secret_key {
            Some(k) => k.expose().as_bytes().to_vec(),
            None => process_secret().to_vec(),
        };
        Self {
            secret: Arc::new(secret),
        }
    }

    fn mac(&self, parts: &[&str]) -> Hmac<Sha256> {
        // `new_from_slice` accepts any key length for HMAC; the fallback never runs.
        let mut m = Hmac::<Sha256>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
        for p in parts {
            m.update(p.as_bytes());
            m.update(b"\x1f");
        }
        m
    }

    fn sign(&self, parts: &[&str]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    fn key_id(&self, key: &ApiKey) -> String {
        self.sign(&["key", key.key.expose()])[..16].to_owned()
    }

    /// A session token for a key, valid for 12 hours from `now`. The nonce makes every login a
    /// session of its own, with its own CSRF token.
    fn token(&self, key: &ApiKey, now: i64) -> String {
        use rand::RngCore;
        let id = self.key_id(key);
        let exp = (now + SESSION_SECONDS).to_string();
        let mut nonce = [0u8; 8];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = hex::encode(nonce);
        let mac = self.sign(&["session", &id, &exp, &nonce]);
        format!("{id}.{exp}.{nonce}.{mac}")
    }

    /// The key id of a valid, unexpired token whose key is still configured and allowed on the
    /// console.
    fn verify(&self, token: &str, keys: &[ApiKey], now: i64) -> Option<String> {
        let mut it = token.split('.');
        let (id, exp, nonce, mac) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        self.mac(&["session", id, exp, nonce])
            .verify_slice(&mac)
            .ok()?;
        if exp.parse::<i64>().ok()? <= now {
            return None;
        }
        let key = keys
            .iter()
            .find(|k| bool::from(self.key_id(k).as_bytes().ct_eq(id.as_bytes())))?;
        key.allows("/admin/").then(|| id.to_owned())
    }

    fn csrf_for(&self, kind: &str, binding: &str) -> String {
        self.sign(&["csrf", kind, binding])
    }
}

/// The signed-in operator of a request, and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token every form must send back as `csrf_token`.
    pub csrf: String,
    /// Who acts, as recorded on incident events.
    pub actor: String,
    /// True when no API keys are configured and the console is open.
    pub open: bool,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request reached us over TLS (through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Whether an `Origin` or `Referer` value names the host this request was sent to.
fn same_origin(value: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.eq_ignore_ascii_case(host)
}

/// Cross-site POSTs are refused: an `Origin` (or, without one, a `Referer`) must name this host,
/// as the request's `Host` or, behind a reverse proxy, its `X-Forwarded-Host` says.
fn cross_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    let given = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match given {
        None => false,
        Some(v) => !same_origin(v, host) && !same_origin(v, forwarded),
    }
}

/// A local console path to go back to after login; anything else (another site, `//host`,
/// a backslash trick) becomes the dashboard.
pub(crate) fn safe_next(next: &str) -> String {
    let ok = (next == "/admin" || next.starts_with("/admin/"))
        && !next.contains("//")
        && !next.contains('\\')
        && !next.contains("..")
        && !next.chars().any(char::is_control);
    if ok {
        next.to_owned()
    } else {
        "/admin/".to_owned()
    }
}

fn forbidden(message: &str) -> Response {
    ConsoleError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// Security headers on every console answer.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// Authenticates every console request but the login page and the static files, checks the
/// origin and the CSRF token of every POST, and hands the decoded form to the handler.
pub(crate) async fn guard(
    State(state): State<AppState>,
    Extension(ctx): Extension<ConsoleCtx>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/admin/static/") {
        return next.run(req).await;
    }
    let post = req.method() == Method::POST;
    if post && cross_origin(req.headers()) {
        return forbidden("cross-origin form submissions are refused");
    }
    let secure = over_tls(req.headers()) || req.uri().scheme_str() == Some("https");
    let keys = state.tocsin.config().api_keys.clone();
    let open = keys.is_empty();
    let login = path == "/admin/login";

    let mut new_cookie = None;
    let session = if open {
        let value = cookie(req.headers(), CSRF_COOKIE)
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned);
        let value = match value {
            Some(v) => v,
            None => {
                use rand::RngCore;
                let mut b = [0u8; 32];
                rand::rng().fill_bytes(&mut b);
                let v = hex::encode(b);
                new_cookie = Some(set_cookie(CSRF_COOKIE, &v, SESSION_SECONDS, secure));
                v
            }
        };
        Some(Session {
            csrf: ctx.csrf_for("open", &value),
            actor: "console".to_owned(),
            open: true,
        })
    } else {
        cookie(req.headers(), SESSION_COOKIE).and_then(|token| {
            ctx.verify(token, &keys, now()).map(|id| Session {
                csrf: ctx.csrf_for("session", token),
                actor: format!("console:{id}"),
                open: false,
            })
        })
    };

    let (parts, body) = req.into_parts();
    let mut req = Request::from_parts(parts, axum::body::Body::empty());
    if post {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return ConsoleError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "console forms are sent as application/x-www-form-urlencoded",
            )
            .into_response();
        }
        let limit = state.tocsin.config().body_limit;
        let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
            return ConsoleError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is larger than the body limit",
            )
            .into_response();
        };
        let form = FormData::parse(&bytes);
        if !login {
            // Without a session, the redirect below applies; a session's forms carry its token.
            if let Some(s) = &session {
                let given = form.get("csrf_token").unwrap_or_default();
                if !bool::from(given.as_bytes().ct_eq(s.csrf.as_bytes())) {
                    return forbidden(
                        "the form's CSRF token is missing or wrong; reload the page and try again",
                    );
                }
            }
        }
        req.extensions_mut().insert(form);
    }

    let mut res = if login {
        if let Some(s) = session {
            req.extensions_mut().insert(s);
        }
        next.run(req).await
    } else {
        match session {
            Some(s) => {
                req.extensions_mut().insert(s);
                next.run(req).await
            }
            None => {
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| path.clone());
                let next = if req.method() == Method::GET {
                    safe_next(&target)
                } else {
                    "/admin/".to_owned()
                };
                Redirect::to(&format!("/admin/login?next={}", encode(&next))).into_response()
            }
        }
    };
    if let Some(c) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// `GET /admin/login`.
pub(crate) async fn login_page(
    session: Option<Extension<Session>>,
    query: axum::extract::Query<super::form::Params>,
) -> Response {
    let next = safe_next(query.get("next").map(String::as_str).unwrap_or("/admin/"));
    if session.is_some_and(|Extension(s)| s.open) {
        // Nothing to log in to: the console is open.
        return Redirect::to(&next).into_response();
    }
    render(
        StatusCode::OK,
        "login.html",
        None,
        json!({"next": next, "error": null}),
    )
}

/// `POST /admin/login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    Extension(ctx): Extension<ConsoleCtx>,
    Extension(form): Extension<FormData>,
    headers: HeaderMap,
) -> Response {
    let next = safe_next(form.get("next").unwrap_or("/admin/"));
    let keys = &state.tocsin.config().api_keys;
    if keys.is_empty() {
        return Redirect::to(&next).into_response();
    }
    let given = form.get("api_key").unwrap_or_default().trim();
    let key = (!given.is_empty())
        .then(|| crate::auth::find_key(keys, given))
        .flatten();
    let Some(key) = key.filter(|k| k.allows("/admin/")) else {
        tracing::warn!("A console login failed.");
        return render(
            StatusCode::UNAUTHORIZED,
            "login.html",
            None,
            json!({"next": next, "error": "That API key is not valid for the console."}),
        );
    };
    let token = ctx.token(key, now());
    let secure = over_tls(&headers);
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) =
        HeaderValue::from_str(&set_cookie(SESSION_COOKIE, &token, SESSION_SECONDS, secure))
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `POST /admin/logout`.
pub(crate) async fn logout(headers: HeaderMap) -> Response {
    let secure = over_tls(&headers);
    let mut res = Redirect::to("/admin/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", 0, secure)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ConsoleCtx {
        ConsoleCtx {
            secret: Arc::new(b"0123456789abcdef0123456789abcdef".to_vec()),
        }
    }

    #[test]
    fn tokens_verify_until_they_expire_or_their_key_goes() {
        let keys = vec![ApiKey::parse("k1"), ApiKey::parse("k2@/alerts/")];
        let c = ctx();
        let t = c.token(&keys[0], 1000);
        assert!(!t.contains("k1"));
        assert!(c.verify(&t, &keys, 1001).is_some());
        assert!(c.verify(&t, &keys, 1000 + SESSION_SECONDS).is_none());
        assert!(c.verify(&t, &keys[1..], 1001).is_none());
        let scoped = c.token(&keys[1], 1000);
        assert!(
            c.verify(&scoped, &keys, 1001).is_none(),
            "not allowed on /admin/"
        );
        let mut forged = t.clone();
        forged.replace_range(t.len() - 1.., if t.ends_with('0') { "1" } else { "0" });
        assert!(c.verify(&forged, &keys, 1001).is_none());
        let longer = t.replacen(&(1000 + SESSION_SECONDS).to_string(), "99999999999", 1);
        assert!(c.verify(&longer, &keys, 1001).is_none());
    }

    #[test]
    fn next_must_stay_in_the_console() {
        assert_eq!(safe_next("/admin/incidents?x=1"), "/admin/incidents?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/admin//evil",
            "/\\evil",
            "/admin/../x",
            "/other",
            "",
        ] {
            assert_eq!(safe_next(bad), "/admin/", "{bad}");
        }
    }

    #[test]
    fn cross_origin_posts_are_recognised_behind_a_proxy_too() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("10.0.0.5:8000"));
        assert!(
            !cross_origin(&h),
            "no Origin nor Referer: a non-browser client"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ops.example"),
        );
        assert!(cross_origin(&h));
        h.insert("x-forwarded-host", HeaderValue::from_static("ops.example"));
        assert!(!cross_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_origin(&h));
    }

    #[test]
    fn origins_are_compared_with_the_host() {
        assert!(same_origin("http://localhost:8000", Some("localhost:8000")));
        assert!(same_origin("https://h/admin/x", Some("h")));
        assert!(!same_origin("https://evil/admin", Some("h")));
        assert!(!same_origin("null", Some("h")));
        assert!(!same_origin("http://h", None));
    }
}
