//! The web console at `/admin/`, through the real router on a real SQLite store: pages, actions,
//! login, CSRF, escaping and secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tocsin_core::engine::Engine;
use tocsin_core::plugin::Plugins;
use tocsin_core::store::testing;
use tocsin_core::{ApiKey, Config, Tocsin};
use tower::ServiceExt;

const KEY: &str = "console-key-0123456789";

struct App {
    router: axum::Router,
    tocsin: Tocsin,
    _db: testing::TestDb,
}

async fn app_with(keys: &[&str]) -> App {
    let db = testing::sqlite().await;
    let config = Config {
        api_keys: keys.iter().map(|k| ApiKey::parse(k)).collect(),
        checkers_skip_all: true,
        tasks_eager: true,
        ..Config::default()
    };
    let tocsin = Tocsin::new(db.store.clone(), Plugins::from_inventory(), config);
    let state =
        tocsin_http::AppState::new(tocsin.clone()).with_extension(Engine::new(tocsin.clone()));
    App {
        router: tocsin_http::router(state),
        tocsin,
        _db: db,
    }
}

async fn app() -> App {
    app_with(&[KEY, "scoped-key-0123456789@/alerts/"]).await
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Res {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let at = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        self.body[at..].split('"').next().unwrap().to_owned()
    }
}

async fn send(app: &App, req: Request<Body>) -> Res {
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Res {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &App, path: &str, cookie: &str) -> Res {
    let req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post_with(
    app: &App,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Res {
    let mut req = Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::HOST, "console.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::from(form(fields))).unwrap()).await
}

async fn post(app: &App, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Res {
    post_with(
        app,
        path,
        cookie,
        fields,
        &[("origin", "http://console.test")],
    )
    .await
}

/// Logs in and returns the `Cookie` header value of the session.
async fn login(app: &App) -> String {
    let res = post(
        app,
        "/admin/login",
        "",
        &[("api_key", KEY), ("next", "/admin/")],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let c = res
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("tocsin_session="))
        .expect("a session cookie");
    c.split(';').next().unwrap().to_owned()
}

/// A POST action with the CSRF token of the page it is on.
async fn act(app: &App, cookie: &str, page: &str, action: &str, fields: &[(&str, &str)]) -> Res {
    let token = get(app, page, cookie).await.csrf();
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(fields);
    post(app, action, cookie, &all).await
}

const XSS: &str = "<script>alert(1)</script>";

/// Ingests an Alertmanager alert whose name and labels hold markup; returns the incident id.
async fn seed_alert(app: &App, name: &str) -> i64 {
    let body = json!({
        "version": "4", "groupKey": "g", "status": "firing", "receiver": "tocsin",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": name, "severity": "critical", "instance": XSS, "password": "label-secret-value"},
                    "annotations": {"summary": XSS},
                    "startsAt": "2026-01-01T00:00:00Z", "fingerprint": format!("fp-{name}")}]
    });
    let req = Request::post("/alerts/webhook/alertmanager/")
        .header("x-api-key", KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = send(app, req).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let v: Value = serde_json::from_str(&res.body).unwrap();
    v["incident_ids"][0]
        .as_i64()
        .or_else(|| v["incidents"][0]["id"].as_i64())
        .or_else(|| v["alerts"][0]["incident_id"].as_i64())
        .unwrap_or_else(|| panic!("no incident id in {v}"))
}

#[tokio::test]
async fn pages_redirect_to_login_and_login_sets_a_strict_http_only_cookie() {
    let app = app().await;
    let res = get(&app, "/admin/incidents?status=open", "").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(
        res.location(),
        "/admin/login?next=%2Fadmin%2Fincidents%3Fstatus%3Dopen"
    );

    let page = get(&app, "/admin/login", "").await;
    assert_eq!(page.status, StatusCode::OK);
    for needle in [
        r#"<form id="login-form" method="post" action="/admin/login">"#,
        r#"<input name="api_key" id="api_key" type="password""#,
        r#"<button id="login-submit" type="submit">"#,
    ] {
        assert!(page.body.contains(needle), "{needle} in {}", page.body);
    }

    let wrong = post(
        &app,
        "/admin/login",
        "",
        &[("api_key", "nope"), ("next", "/admin/")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains(r#"<p class="error" id="login-error">"#));
    assert!(wrong.cookies().is_empty());

    // A key scoped to other paths may not use the console.
    let scoped = post(
        &app,
        "/admin/login",
        "",
        &[("api_key", "scoped-key-0123456789")],
    )
    .await;
    assert_eq!(scoped.status, StatusCode::UNAUTHORIZED);

    let ok = post(
        &app,
        "/admin/login",
        "",
        &[("api_key", KEY), ("next", "/admin/runs")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/admin/runs");
    let cookie = ok
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("tocsin_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        cookie.contains("Path=/admin") && !cookie.contains("Secure"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(KEY),
        "the raw key never goes into the cookie"
    );

    let tls = post_with(
        &app,
        "/admin/login",
        "",
        &[("api_key", KEY)],
        &[("x-forwarded-proto", "https")],
    )
    .await;
    let cookie = tls
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("tocsin_session="))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    for evil in [
        "https://evil.example/",
        "//evil.example/admin/",
        "/\\evil",
        "/admin/../x",
    ] {
        let res = post(
            &app,
            "/admin/login",
            "",
            &[("api_key", KEY), ("next", evil)],
        )
        .await;
        assert_eq!(res.location(), "/admin/", "next={evil}");
    }
    let res = get(&app, "/admin/login?next=https%3A%2F%2Fevil.example", "").await;
    assert!(!res.body.contains("evil.example"));

    let session = login(&app).await;
    let dash = get(&app, "/admin/", &session).await;
    assert_eq!(dash.status, StatusCode::OK);
    assert!(dash.body.contains("<h1>Dashboard</h1>"));
    assert!(!dash.body.contains("open-mode-banner"));

    let forged = format!("{}0", session);
    assert_eq!(
        get(&app, "/admin/", &forged).await.status,
        StatusCode::SEE_OTHER
    );

    // The session is for the console only; the API still wants a key.
    let api = get(&app, "/orchestration/pipelines/", &session).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    let out = act(&app, &session, "/admin/", "/admin/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.cookies()
            .iter()
            .any(|c| c.starts_with("tocsin_session=;") && c.contains("Max-Age=0"))
    );
}

#[tokio::test]
async fn every_page_renders_with_security_headers_and_escapes_markup() {
    let app = app().await;
    let incident = seed_alert(&app, XSS).await;
    let session = login(&app).await;
    let alert_id = {
        let t = app.tocsin.clone();
        t.store()
            .run(|c| {
                tocsin_core::store::list_alerts(c, &tocsin_core::store::AlertFilter::default())
            })
            .await
            .unwrap()[0]
            .id
    };
    let pages = [
        ("/admin/", "<h1>Dashboard</h1>"),
        ("/admin/incidents", "<table id=\"incidents\">"),
        (
            "/admin/incidents?status=open&severity=critical&source=alertmanager&q=script",
            "class=\"incident\"",
        ),
        (
            &format!("/admin/incidents/{incident}"),
            "<span id=\"incident-status\"",
        ),
        ("/admin/alerts", "<table id=\"alerts\">"),
        ("/admin/alerts?q=script", "class=\"alert\""),
        (
            &format!("/admin/alerts/{alert_id}"),
            "<pre id=\"raw-payload\">",
        ),
        ("/admin/runs", "<table id=\"runs\">"),
        ("/admin/definitions", "<table id=\"definitions\">"),
        ("/admin/definitions/new", "<form id=\"definition-form\""),
        ("/admin/definitions/default", "id=\"execute-payload\""),
        ("/admin/channels", "<table id=\"channels\">"),
        (
            "/admin/channels/new?driver=slack",
            "name=\"config.webhook_url\"",
        ),
        ("/admin/checks", "<table id=\"check-runs\">"),
        ("/admin/analyses", "<table id=\"analysis-runs\">"),
    ];
    for (path, needle) in pages {
        let res = get(&app, path, &session).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.body);
        assert!(res.body.contains(needle), "{path} lacks {needle}");
        for nav in [
            "nav-dashboard",
            "nav-incidents",
            "nav-alerts",
            "nav-runs",
            "nav-definitions",
            "nav-channels",
            "nav-checks",
            "nav-analyses",
        ] {
            assert!(
                res.body.contains(&format!("id=\"{nav}\"")),
                "{path} lacks {nav}"
            );
        }
        assert!(
            !res.body.contains("<script>alert(1)"),
            "{path} renders markup unescaped"
        );
        assert!(
            !res.body.contains("label-secret-value"),
            "{path} shows a secret label"
        );
        let csp = res
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(
            res.headers.get("x-content-type-options").unwrap(),
            "nosniff"
        );
        assert_eq!(res.headers.get("referrer-policy").unwrap(), "same-origin");
        assert!(
            res.headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    let list = get(&app, "/admin/incidents", &session).await;
    assert!(list.body.contains("&lt;script&gt;"), "{}", list.body);
    assert!(
        list.body
            .contains(&format!("<tr class=\"incident\" data-id=\"{incident}\">"))
    );
    assert!(
        list.body
            .contains(&format!("<a href=\"/admin/incidents/{incident}\">"))
    );
    let alert = get(&app, &format!("/admin/alerts/{alert_id}"), &session).await;
    assert!(alert.body.contains("&lt;script&gt;alert(1)&lt;"));
    assert!(alert.body.contains("**REDACTED**"));

    // Static files, unknown pages and ids.
    let css = get(&app, "/admin/static/console.css", "").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        css.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let js = get(&app, "/admin/static/console.js", "").await;
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        get(&app, "/admin/static/nope.js", "").await.status,
        StatusCode::NOT_FOUND
    );
    for path in [
        "/admin/incidents/999999",
        "/admin/incidents/abc",
        "/admin/alerts/424242",
        "/admin/runs/nope",
        "/admin/definitions/ghost",
        "/admin/channels/ghost",
        "/admin/no-such-page",
    ] {
        let res = get(&app, path, &session).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            res.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
    }
    // Bad filters are a 400 page, not a panic.
    for path in [
        "/admin/incidents?page=0",
        "/admin/incidents?page=abc",
        "/admin/incidents?status=bogus",
        "/admin/alerts?severity=huge",
        "/admin/runs?status=sleeping",
        "/admin/checks?checker=nope",
        "/admin/analyses?incident=x",
    ] {
        let res = get(&app, path, &session).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(res.body.contains("id=\"error-message\""), "{path}");
    }
}

#[tokio::test]
async fn incident_actions_follow_the_state_machine_and_need_a_csrf_token() {
    let app = app().await;
    let incident = seed_alert(&app, "DiskFull").await;
    let session = login(&app).await;
    let page = format!("/admin/incidents/{incident}");
    let ack = format!("/admin/incidents/{incident}/acknowledge");

    let res = get(&app, &page, &session).await;
    assert!(res.body.contains(&format!(
        r#"<form class="action" action="{ack}" method="post">"#
    )));
    assert!(
        res.body.contains("id=\"action-acknowledge\"")
            && res.body.contains("id=\"action-resolve\"")
    );
    assert!(!res.body.contains("id=\"action-reopen\""));
    let token = res.csrf();

    // Missing, wrong, and cross-origin: all refused, nothing changes.
    assert_eq!(
        post(&app, &ack, &session, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let wrong = post(&app, &ack, &session, &[("csrf_token", "00")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        wrong.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let foreign = post_with(
        &app,
        &ack,
        &session,
        &[("csrf_token", &token)],
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let foreign = post_with(
        &app,
        &ack,
        &session,
        &[("csrf_token", &token)],
        &[("referer", "https://evil.example/x")],
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    // A token of another session does not pass either.
    let other = login(&app).await;
    assert_ne!(other, session);
    let other_token = get(&app, &page, &other).await.csrf();
    assert_ne!(other_token, token);
    assert_eq!(
        post(&app, &ack, &session, &[("csrf_token", &other_token)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Without a session, a POST goes to the login.
    assert_eq!(
        post(&app, &ack, "", &[("csrf_token", &token)]).await.status,
        StatusCode::SEE_OTHER
    );
    assert!(
        get(&app, &page, &session)
            .await
            .body
            .contains(r#"<span id="incident-status" class="status status-open">open</span>"#)
    );

    let res = post(&app, &ack, &session, &[("csrf_token", &token)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), format!("{page}?flash=acknowledged"));
    let shown = get(&app, res.location(), &session).await;
    assert!(
        shown.body.contains(">acknowledged</span>"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains(r#"<div class="flash" id="flash">"#));
    assert!(!shown.body.contains("id=\"action-acknowledge\""));

    for (action, status) in [
        ("resolve", "resolved"),
        ("close", "closed"),
        ("reopen", "open"),
    ] {
        let res = act(&app, &session, &page, &format!("{page}/{action}"), &[]).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{action}: {}", res.body);
        let shown = get(&app, &page, &session).await;
        assert!(
            shown
                .body
                .contains(&format!("class=\"status status-{status}\">{status}</span>")),
            "{action}"
        );
    }
    // Close, then acknowledge: the library's conflict, as a 409 page.
    act(&app, &session, &page, &format!("{page}/close"), &[]).await;
    let res = act(&app, &session, &page, &ack, &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.body.contains("cannot be acknowledged"), "{}", res.body);

    let res = act(
        &app,
        &session,
        &page,
        &format!("{page}/note"),
        &[("note", "<b>checked</b> the disk")],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let shown = get(&app, &page, &session).await;
    assert!(
        shown
            .body
            .contains("&lt;b&gt;checked&lt;&#x2f;b&gt; the disk")
            || shown.body.contains("&lt;b&gt;checked&lt;/b&gt; the disk"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("console:"), "the actor is recorded");
    let empty = act(
        &app,
        &session,
        &page,
        &format!("{page}/note"),
        &[("note", "  ")],
    )
    .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        act(&app, &session, &page, &format!("{page}/explode"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

const FAILING: &str = r#"{"version": "1", "nodes": [{"id": "pick", "type": "transform", "config": {"extract": "payload.missing"}}]}"#;
const TINY: &str = r#"{"version": "1", "description": "tiny", "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"n": "payload.n"}}}]}"#;

#[tokio::test]
async fn definitions_are_validated_saved_toggled_and_executed() {
    let app = app().await;
    let session = login(&app).await;
    let bad = r#"{"version": "1", "nodes": [{"id": "a", "type": "nope", "next": ["ghost", "fine"]}, {"id": "<b>", "type": "transform"}, {"id": "fine", "type": "transform", "config": {"mapping": {"n": "payload.n"}}}]}"#;
    let res = act(
        &app,
        &session,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "bad"), ("definition", bad)],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.body.contains("<ul id=\"definition-errors\">"));
    assert!(
        res.body
            .contains(r#"<li class="definition-error" data-node="a">"#),
        "{}",
        res.body
    );
    assert!(res.body.contains("ghost") && res.body.contains("unknown type"));
    // Each problem sits in its own node's item of the outline beside the editor.
    let item = |id: &str| {
        let start = res
            .body
            .find(&format!(r#"<li class="definition-node" data-node="{id}""#))
            .unwrap_or_else(|| panic!("no outline item for {id:?}: {}", res.body));
        let rest = &res.body[start..];
        let end = rest[1..]
            .find(r#"<li class="definition-node""#)
            .map_or(rest.len(), |e| e + 1);
        rest[..end].to_owned()
    };
    let a = item("a");
    assert!(a.contains(r#"data-status="error""#), "{a}");
    assert!(
        a.contains(r#"<li class="definition-error" data-node="a">"#)
            && a.contains("ghost")
            && a.contains("unknown type"),
        "{a}"
    );
    let fine = item("fine");
    assert!(fine.contains(r#"data-status="ok""#), "{fine}");
    assert!(!fine.contains("definition-error"), "{fine}");
    assert!(item("&lt;b&gt;").contains(r#"data-status="error""#));
    assert!(!res.body.contains("<b>"), "node ids are escaped");
    assert!(
        res.body.contains("&quot;nope&quot;"),
        "the submitted text is kept"
    );

    let res = act(
        &app,
        &session,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "broken"), ("definition", "{\n  \"version\": ")],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains("malformed JSON at line 2"),
        "{}",
        res.body
    );
    assert!(
        !res.body.contains("id=\"definition-nodes\""),
        "no outline of JSON that does not parse"
    );
    let res = act(
        &app,
        &session,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "no/slash"), ("definition", TINY)],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    let res = act(
        &app,
        &session,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "tiny"), ("definition", TINY)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), "/admin/definitions/tiny?flash=created");
    let page = get(&app, res.location(), &session).await;
    assert!(page.body.contains(r#"<div class="flash" id="flash">"#));
    assert!(
        page.body
            .contains(r#"<textarea name="definition" id="definition-json""#)
    );
    assert!(page.body.contains("id=\"action-disable\""));
    let again = act(
        &app,
        &session,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "tiny"), ("definition", TINY)],
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "create does not overwrite"
    );

    let res = act(
        &app,
        &session,
        "/admin/definitions/tiny",
        "/admin/definitions/tiny",
        &[("definition", TINY)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(
        get(&app, "/admin/definitions/tiny", &session)
            .await
            .body
            .contains("version 2")
    );
    let res = act(
        &app,
        &session,
        "/admin/definitions/tiny",
        "/admin/definitions/tiny",
        &[("definition", bad)],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    let res = act(
        &app,
        &session,
        "/admin/definitions/tiny",
        "/admin/definitions/tiny/disable",
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let page = get(&app, "/admin/definitions/tiny", &session).await;
    assert!(
        page.body.contains("id=\"action-enable\"") && !page.body.contains("id=\"action-execute\"")
    );
    let res = act(
        &app,
        &session,
        "/admin/definitions/tiny",
        "/admin/definitions/tiny/enable",
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);

    let page = get(&app, "/admin/definitions/tiny", &session).await;
    assert!(page.body.contains("id=\"action-execute\""));
    let res = act(
        &app,
        &session,
        "/admin/definitions/tiny",
        "/admin/definitions/tiny/execute",
        &[("payload", r#"{"n": 7}"#)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let run_page = res.location().to_owned();
    assert!(run_page.starts_with("/admin/runs/"), "{run_page}");
    let run = get(&app, &run_page, &session).await;
    assert_eq!(run.status, StatusCode::OK);
    assert!(run.body.contains(r#"<ol id="timeline">"#));
    assert!(
        run.body
            .contains(r#"data-node="t" data-status="succeeded""#),
        "{}",
        run.body
    );
    assert!(
        run.body
            .contains(r#"<span id="run-status" class="status status-notified">"#)
            || run.body.contains("id=\"run-status\"")
    );
    let runs = get(&app, "/admin/runs?definition=tiny", &session).await;
    assert!(runs.body.contains(&run_page));
    let res = act(
        &app,
        &session,
        "/admin/definitions/tiny",
        "/admin/definitions/tiny/execute",
        &[("payload", "{oops")],
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

/// Text a template rendered, with minijinja's HTML escapes undone.
fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text of the `<textarea id="{id}">` a page holds, unescaped.
fn textarea(body: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = body.find(&marker).expect("the textarea") + marker.len();
    let open = body[at..].find('>').expect("the end of the tag") + at + 1;
    let close = body[open..].find("</textarea>").expect("the closing tag") + open;
    html_unescape(&body[open..close])
}

const INGEST_NOTIFY: &str = r#"{"version": "1", "nodes": [{"id": "ingest", "type": "ingest", "next": "notify"}, {"id": "notify", "type": "notify"}]}"#;

#[tokio::test]
async fn the_prefilled_execute_sample_passes_an_ingest_node() {
    let app = app().await;
    let session = login(&app).await;
    let res = act(
        &app,
        &session,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "ingest-notify"), ("definition", INGEST_NOTIFY)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);

    let page = get(&app, "/admin/definitions/ingest-notify", &session).await;
    assert_eq!(page.status, StatusCode::OK);
    let sample = textarea(&page.body, "execute-payload");

    let res = post(
        &app,
        "/admin/definitions/ingest-notify/execute",
        &session,
        &[("csrf_token", &page.csrf()), ("payload", &sample)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let run_page = res.location().to_owned();
    assert!(run_page.starts_with("/admin/runs/"), "{run_page}");
    let run = get(&app, &run_page, &session).await;
    assert_eq!(run.status, StatusCode::OK);
    assert!(
        run.body
            .contains(r#"data-node="ingest" data-status="succeeded""#),
        "{}",
        run.body
    );
    assert!(!run.body.contains("no driver recognises"), "{}", run.body);

    // The ingest stage stored the sample's alert, parsed by the Alertmanager driver.
    let alerts = app
        .tocsin
        .store()
        .run(|c| tocsin_core::store::list_alerts(c, &tocsin_core::store::AlertFilter::default()))
        .await
        .unwrap();
    assert!(!alerts.is_empty(), "the sample's alerts were stored");
    assert!(
        alerts.iter().all(|a| a.source == "alertmanager"),
        "{alerts:?}"
    );
    // Shaped like the Alertmanager documentation's webhook v4 example.
    let doc: Value = serde_json::from_str(&sample).unwrap();
    for key in [
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    ] {
        assert!(doc.get(key).is_some(), "the sample has no {key}: {sample}");
    }
    for key in [
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    ] {
        assert!(
            doc["alerts"][0].get(key).is_some(),
            "its alert has no {key}"
        );
    }
}

#[tokio::test]
async fn a_failed_run_can_be_resumed_from_its_page() {
    let app = app().await;
    let session = login(&app).await;
    let res = act(
        &app,
        &session,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "failing"), ("definition", FAILING)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let res = act(
        &app,
        &session,
        "/admin/definitions/failing",
        "/admin/definitions/failing/execute",
        &[("payload", "{}")],
    )
    .await;
    let run_page = res.location().to_owned();
    let page = get(&app, &run_page, &session).await;
    assert!(
        page.body
            .contains(r#"<span id="run-status" class="status status-failed">failed</span>"#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"data-node="pick" data-status="failed""#)
    );
    assert!(page.body.contains("id=\"action-resume\""));
    let stages_before = page.body.matches("<li class=\"stage").count();

    let resume = format!("{run_page}/resume");
    assert_eq!(
        post(&app, &resume, &session, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let res = act(&app, &session, &run_page, &resume, &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), format!("{run_page}?flash=resumed"));
    let page = get(&app, &run_page, &session).await;
    assert!(
        page.body.matches("<li class=\"stage").count() > stages_before,
        "the resumed run ran again"
    );
    let run_id = run_page.trim_start_matches("/admin/runs/");
    let run = app
        .tocsin
        .store()
        .run({
            let id = run_id.to_owned();
            move |c| tocsin_core::store::get_pipeline_run(c, &id)
        })
        .await
        .unwrap();
    assert!(run.resumed_at.is_some());

    // A run that did not fail cannot be resumed: the library's message, not a panic.
    let res = act(
        &app,
        &session,
        "/admin/definitions/default",
        "/admin/definitions/checks-only/execute",
        &[("payload", "{}")],
    )
    .await;
    let ok_run = res.location().to_owned();
    let res = act(&app, &session, &ok_run, &format!("{ok_run}/resume"), &[]).await;
    assert!(res.status.is_client_error(), "{}", res.status);
    assert!(res.body.contains("only failed runs"), "{}", res.body);
}

#[tokio::test]
async fn channel_secrets_are_write_only() {
    let app = app().await;
    let session = login(&app).await;
    let secret_url = "https://hooks.slack.com/services/T000/B000/SuperSecretToken42";
    let res = act(
        &app,
        &session,
        "/admin/channels/new?driver=slack",
        "/admin/channels",
        &[
            ("driver", "slack"),
            ("name", "ops-slack"),
            ("description", "<i>ops</i>"),
            ("config.webhook_url", secret_url),
            ("config.timeout_secs", "5"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(
        res.location(),
        "/admin/channels/ops-slack?flash=channel_created"
    );

    let pages = [
        "/admin/channels",
        "/admin/channels/ops-slack",
        "/admin/channels/ops-slack?flash=channel_saved",
        "/admin/",
        "/admin/channels/new?driver=slack",
    ];
    for p in pages {
        let res = get(&app, p, &session).await;
        assert_eq!(res.status, StatusCode::OK, "{p}");
        assert!(
            !res.body.contains("SuperSecretToken42"),
            "{p} shows the secret"
        );
        assert!(!res.body.contains("<i>ops"), "{p}");
    }
    let page = get(&app, "/admin/channels/ops-slack", &session).await;
    assert!(
        page.body.contains(
            r#"<input type="password" name="config.webhook_url" id="config-webhook_url" value="""#
        ),
        "{}",
        page.body
    );
    assert!(page.body.contains("leave blank to keep"));
    assert!(
        page.body
            .contains(r#"name="config.timeout_secs" id="config-timeout_secs" value="5""#)
    );

    // Saving with the secret left blank keeps it; a new description is stored.
    let res = act(
        &app,
        &session,
        "/admin/channels/ops-slack",
        "/admin/channels/ops-slack",
        &[
            ("description", "ops room"),
            ("config.webhook_url", ""),
            ("config.timeout_secs", "7"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let stored = tocsin_notify::get_channel(&app.tocsin, "ops-slack")
        .await
        .unwrap();
    assert_eq!(stored.config["webhook_url"], secret_url);
    assert_eq!(stored.config["timeout_secs"], 7);
    assert_eq!(stored.description, "ops room");

    // An invalid config is shown with the library's message, without the secret.
    let res = act(
        &app,
        &session,
        "/admin/channels/new?driver=slack",
        "/admin/channels",
        &[
            ("driver", "slack"),
            ("name", "bad-slack"),
            ("config.webhook_url", "not a url SuperSecretToken42"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.body.contains("id=\"channel-error\""));
    assert!(!res.body.contains("SuperSecretToken42"));

    let res = act(
        &app,
        &session,
        "/admin/channels/ops-slack",
        "/admin/channels/ops-slack/disable",
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(
        !tocsin_notify::get_channel(&app.tocsin, "ops-slack")
            .await
            .unwrap()
            .enabled
    );
    let res = act(
        &app,
        &session,
        "/admin/channels/ops-slack",
        "/admin/channels/ops-slack/enable",
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(
        tocsin_notify::get_channel(&app.tocsin, "ops-slack")
            .await
            .unwrap()
            .enabled
    );
    assert_eq!(
        post(&app, "/admin/channels/ops-slack/disable", &session, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // A test notification through the console driver, which needs no network.
    let res = act(
        &app,
        &session,
        "/admin/channels/new?driver=console",
        "/admin/channels",
        &[("driver", "console"), ("name", "ops-console")],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let res = act(
        &app,
        &session,
        "/admin/channels/ops-console",
        "/admin/channels/ops-console/test",
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.contains(r#"id="test-result" data-status="sent""#),
        "{}",
        res.body
    );
}

#[tokio::test]
async fn without_api_keys_the_console_is_open_but_forms_still_need_their_token() {
    let app = app_with(&[]).await;
    let res = get(&app, "/admin/", "").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.contains("id=\"open-mode-banner\""));
    let cookie = res
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("tocsin_csrf="))
        .expect("a CSRF cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        get(&app, "/admin/login", &cookie).await.status,
        StatusCode::SEE_OTHER
    );

    let res = act(
        &app,
        &cookie,
        "/admin/definitions/new",
        "/admin/definitions",
        &[("name", "tiny"), ("definition", TINY)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let token = get(&app, "/admin/definitions/tiny", &cookie).await.csrf();
    // The token is bound to the cookie: without it, or with another browser's, it fails.
    assert_eq!(
        post(
            &app,
            "/admin/definitions/tiny/disable",
            "",
            &[("csrf_token", &token)]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&app, "/admin/definitions/tiny/disable", &cookie, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let other = format!("tocsin_csrf={}", "ab".repeat(32));
    assert_eq!(
        post(
            &app,
            "/admin/definitions/tiny/disable",
            &other,
            &[("csrf_token", &token)]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let res = post(
        &app,
        "/admin/definitions/tiny/disable",
        &cookie,
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn check_runs_chart_a_checkers_recent_values() {
    let app = app().await;
    let session = login(&app).await;
    for v in [10.0, 55.5, 90.0] {
        let result = tocsin_core::domain::CheckResult {
            checker: "memory".into(),
            status: tocsin_core::domain::CheckStatus::Ok,
            message: "<em>fine</em>".into(),
            metrics: json!({"percent": v}),
            error: None,
            warning_threshold: Some(80.0),
            critical_threshold: Some(95.0),
            duration_ms: 1.0,
            skipped: false,
        };
        app.tocsin
            .store()
            .write(move |c| tocsin_core::store::insert_check_run(c, &result, "host", "trace", None))
            .await
            .unwrap();
    }
    let res = get(&app, "/admin/checks?checker=memory", &session).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("<svg id=\"checker-chart\""));
    assert_eq!(res.body.matches("<rect class=\"bar\"").count(), 3);
    assert!(res.body.contains("&lt;em&gt;fine"));
    let all = get(&app, "/admin/checks", &session).await;
    assert!(!all.body.contains("checker-chart"));
    assert_eq!(all.body.matches("class=\"check-run\"").count(), 3);
}

/// More rows than the console's old in-memory filters looked through (the newest 1000).
const MANY: usize = 1100;

/// The `href` of the pager link with this id, unescaped, if the page has it.
fn pager_link(body: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\" href=\"");
    let at = body.find(&marker)? + marker.len();
    let href = body[at..].split('"').next()?;
    Some(href.replace("&#x2f;", "/").replace("&amp;", "&"))
}

/// The ids of the incident rows a list page shows.
fn incident_rows(body: &str) -> Vec<i64> {
    body.split("<tr class=\"incident\" data-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn filters_find_a_row_older_than_the_newest_thousand_and_pages_count_every_row() {
    use tocsin_core::domain::{AlertStatus, Severity, new_id};
    use tocsin_core::store::{self, NewAlert, NewIncident, NewPipelineRun};

    let app = app().await;
    let session = login(&app).await;
    let incident = |title: String, severity| NewIncident {
        title,
        severity,
        description: "filler".into(),
        group_key: "g".into(),
        metadata: json!({}),
    };
    let alert = |source: &str, fp: String, name: &str, incident_id| NewAlert {
        fingerprint: fp,
        source: source.into(),
        name: name.into(),
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        description: String::new(),
        labels: Default::default(),
        annotations: Default::default(),
        raw_payload: json!({}).into(),
        trace_id: "t".into(),
        started_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        ended_at: None,
        incident_id,
    };
    let run = |definition: Option<&str>, incident_id| NewPipelineRun {
        run_id: new_id(),
        trace_id: new_id(),
        definition_name: definition.map(str::to_owned),
        incident_id,
        source: "test".into(),
        environment: "test".into(),
        max_retries: 0,
        inbound_payload: json!({}),
    };
    // The oldest rows first, then MANY newer ones, all in one transaction.
    let (old, old_run) = app
        .tocsin
        .store()
        .write(move |c| {
            let old = store::insert_incident(
                c,
                incident("Ancient 100% disk_full".into(), Severity::Critical),
            )?;
            store::insert_alert(
                c,
                alert("zabbix", "ancient-fp".into(), "AncientDisk", Some(old.id)),
            )?;
            let old_run = store::insert_pipeline_run(c, &run(Some("nightly"), Some(old.id)))?;
            for i in 0..MANY {
                let inc = store::insert_incident(
                    c,
                    incident(format!("Filler 100 diskxfull {i}"), Severity::Warning),
                )?;
                store::insert_alert(
                    c,
                    alert("alertmanager", format!("fp-{i}"), "Filler", Some(inc.id)),
                )?;
                store::insert_pipeline_run(c, &run(None, Some(old.id)))?;
            }
            Ok((old.id, old_run.run_id))
        })
        .await
        .unwrap();

    // Filters go through every row, and `%` / `_` in the text match only themselves.
    for path in [
        "/admin/incidents?source=zabbix".to_owned(),
        "/admin/incidents?q=100%25+DISK_FULL".to_owned(),
        "/admin/incidents?status=open&severity=critical&source=zabbix&q=ancient".to_owned(),
    ] {
        let res = get(&app, &path, &session).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.body);
        assert_eq!(incident_rows(&res.body), [old], "{path}");
        assert!(res.body.contains("id=\"total-rows\">1<"), "{path}");
        assert!(res.body.contains("Page 1 of 1"), "{path}");
        assert!(pager_link(&res.body, "page-next").is_none(), "{path}");
    }
    let alerts = get(&app, "/admin/alerts?q=ANCIENT-fp", &session).await;
    assert!(alerts.body.contains("AncientDisk"), "{}", alerts.body);
    assert!(alerts.body.contains("id=\"total-rows\">1<"));
    let alerts = get(&app, "/admin/alerts?source=zabbix&q=disk", &session).await;
    assert!(alerts.body.contains("AncientDisk"), "{}", alerts.body);
    let runs = get(&app, "/admin/runs?definition=nightly", &session).await;
    assert!(
        runs.body.contains(&format!("data-id=\"{old_run}\"")),
        "{}",
        runs.body
    );
    assert!(runs.body.contains("id=\"total-rows\">1<"));
    // `default` is every run stored without a definition name.
    let runs = get(&app, "/admin/runs?definition=default", &session).await;
    assert!(runs.body.contains(&format!("id=\"total-rows\">{MANY}<")));
    assert!(!runs.body.contains(&format!("data-id=\"{old_run}\"")));

    // The incident page lists its newest runs and says how many there are in all.
    let page = get(&app, &format!("/admin/incidents/{old}"), &session).await;
    assert!(page.body.contains(&format!(
        "The newest 50 of {} runs: <a href=\"/admin/runs?incident={old}\">",
        MANY + 1
    )));
    let of_incident = get(&app, &format!("/admin/runs?incident={old}"), &session).await;
    assert!(
        of_incident
            .body
            .contains(&format!("id=\"total-rows\">{}<", MANY + 1))
    );
    let last = pager_link(&of_incident.body, "page-next").unwrap();
    assert_eq!(last, format!("/admin/runs?incident={old}&page=2"));
    let last_page = get(
        &app,
        &format!("/admin/runs?incident={old}&page=23"),
        &session,
    )
    .await;
    assert!(last_page.body.contains(&format!("data-id=\"{old_run}\"")));
    assert_eq!(
        get(&app, "/admin/runs?incident=abc", &session).await.status,
        StatusCode::BAD_REQUEST
    );

    // Pages: the total, the page count, links that keep the filters, the oldest on the last page.
    let first = get(&app, "/admin/incidents", &session).await;
    assert!(
        first
            .body
            .contains(&format!("id=\"total-rows\">{}<", MANY + 1))
    );
    assert!(first.body.contains("Page 1 of 23"), "{}", first.body);
    assert_eq!(incident_rows(&first.body).len(), 50);
    assert!(pager_link(&first.body, "page-prev").is_none());
    assert_eq!(
        pager_link(&first.body, "page-next").as_deref(),
        Some("/admin/incidents?page=2")
    );
    let warnings = get(&app, "/admin/incidents?severity=warning&page=2", &session).await;
    assert!(warnings.body.contains("Page 2 of 22"), "{}", warnings.body);
    assert_eq!(
        pager_link(&warnings.body, "page-prev").as_deref(),
        Some("/admin/incidents?severity=warning")
    );
    assert_eq!(
        pager_link(&warnings.body, "page-next").as_deref(),
        Some("/admin/incidents?severity=warning&page=3")
    );
    let last = get(&app, "/admin/incidents?page=23", &session).await;
    assert_eq!(incident_rows(&last.body), [old]);
    assert!(pager_link(&last.body, "page-next").is_none());
    assert_eq!(
        pager_link(&last.body, "page-prev").as_deref(),
        Some("/admin/incidents?page=22")
    );
    // Past the end: no rows, and a way back to the last page.
    let beyond = get(&app, "/admin/incidents?page=40", &session).await;
    assert!(incident_rows(&beyond.body).is_empty());
    assert_eq!(
        pager_link(&beyond.body, "page-prev").as_deref(),
        Some("/admin/incidents?page=23")
    );

    // The dashboard counts every row.
    let dash = get(&app, "/admin/", &session).await;
    let row = |sev: &str| {
        let at = dash
            .body
            .find(&format!("<tr data-severity=\"{sev}\">"))
            .unwrap();
        dash.body[at..]
            .split("<td class=\"count\">")
            .skip(1)
            .take(2)
            .map(|s| s.split('<').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(row("warning"), [MANY.to_string(), "0".to_owned()]);
    assert_eq!(row("critical"), ["1", "0"]);
    assert!(
        dash.body.contains(&format!(
            "<span class=\"big\" id=\"queue-depth\">{}</span>",
            MANY + 1
        )),
        "{}",
        dash.body
    );
    assert!(
        dash.body.contains(&format!(
            "<tr data-status=\"pending\"><td><a href=\"/admin/runs?status=pending\">pending</a></td><td class=\"count\">{}</td>",
            MANY + 1
        )),
        "{}",
        dash.body
    );
}

/// The ids of the alert rows the alert list shows.
fn alert_rows(body: &str) -> Vec<i64> {
    body.split("<tr class=\"alert\" data-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn an_incident_with_more_alerts_than_its_page_shows_says_so_and_links_to_them_all() {
    use tocsin_core::domain::{AlertStatus, Severity};
    use tocsin_core::store::{self, NewAlert, NewIncident};

    const ALERTS: usize = 230;
    let app = app().await;
    let session = login(&app).await;
    let incident = |title: &str| NewIncident {
        title: title.into(),
        severity: Severity::Warning,
        description: String::new(),
        group_key: title.into(),
        metadata: json!({}),
    };
    let alert = |fp: String, name: &str, incident_id| NewAlert {
        fingerprint: fp,
        source: "alertmanager".into(),
        name: name.into(),
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        description: String::new(),
        labels: Default::default(),
        annotations: Default::default(),
        raw_payload: json!({}).into(),
        trace_id: "t".into(),
        started_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        ended_at: None,
        incident_id,
    };
    let (busy, quiet, oldest) = app
        .tocsin
        .store()
        .write(move |c| {
            let busy = store::insert_incident(c, incident("Busy"))?;
            let quiet = store::insert_incident(c, incident("Quiet"))?;
            let oldest = store::insert_alert(c, alert("busy-old".into(), "Oldest", Some(busy.id)))?;
            for i in 1..ALERTS {
                store::insert_alert(c, alert(format!("busy-{i}"), "Busy", Some(busy.id)))?;
            }
            store::insert_alert(c, alert("quiet".into(), "Quiet", Some(quiet.id)))?;
            Ok((busy.id, quiet.id, oldest.id))
        })
        .await
        .unwrap();

    let page = get(&app, &format!("/admin/incidents/{busy}"), &session).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.matches("<div class=\"alert-block\"").count(), 200);
    assert!(
        page.body.contains(&format!(
            "Showing the newest 200 of {ALERTS} alerts: <a href=\"/admin/alerts?incident={busy}\">"
        )),
        "{}",
        page.body
    );
    let quiet_page = get(&app, &format!("/admin/incidents/{quiet}"), &session).await;
    assert_eq!(
        quiet_page
            .body
            .matches("<div class=\"alert-block\"")
            .count(),
        1
    );
    assert!(!quiet_page.body.contains("Showing the newest"));

    // The link lists every alert of that incident, and only those, with pages that keep the filter.
    let all = get(&app, &format!("/admin/alerts?incident={busy}"), &session).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert!(
        all.body.contains(&format!("id=\"total-rows\">{ALERTS}<")),
        "{}",
        all.body
    );
    assert!(!all.body.contains(">Quiet<"));
    assert_eq!(
        pager_link(&all.body, "page-next").as_deref(),
        Some(format!("/admin/alerts?incident={busy}&page=2").as_str())
    );
    let last = get(
        &app,
        &format!("/admin/alerts?incident={busy}&page=5"),
        &session,
    )
    .await;
    assert_eq!(alert_rows(&last.body).last(), Some(&oldest));
    let of_quiet = get(&app, &format!("/admin/alerts?incident={quiet}"), &session).await;
    assert!(of_quiet.body.contains("id=\"total-rows\">1<"));
    assert!(of_quiet.body.contains(">Quiet<"));
    assert_eq!(
        get(&app, "/admin/alerts?incident=abc", &session)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}
