//! Test helpers: a local HTTP server standing in for Slack, PagerDuty and webhook receivers, a
//! real SMTP server on loopback, and a realistic notification.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use tocsin_core::domain::*;
use tocsin_core::plugin::{Notification, Plugins};
use tocsin_core::store::testing::TestDb;
use tocsin_core::{Config, Tocsin};
use tocsin_notify::RetryPolicy;

/// The notify crate must be linked for its registrations to exist.
use tocsin_notify as _;

pub fn fixture(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub fn tocsin(db: &TestDb, config: Config) -> Tocsin {
    Tocsin::new(db.store.clone(), Plugins::from_inventory(), config)
}

pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A request as received, bytes exact.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
}

impl Captured {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }
}

/// The exact body text with RFC 3339 UTC timestamps replaced by `[timestamp]`, for snapshots.
pub fn redact_timestamps(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let shape = |s: &[u8]| {
        s.len() == 20
            && s.iter().enumerate().all(|(k, c)| match k {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
    };
    while i < b.len() {
        if i + 20 <= b.len() && shape(&b[i..i + 20]) {
            out.push_str("[timestamp]");
            i += 20;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// What the server answers, in order; the last one repeats.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

#[derive(Clone)]
struct ServerState {
    captured: Arc<Mutex<Vec<Captured>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

pub struct HttpServer {
    pub addr: SocketAddr,
    captured: Arc<Mutex<Vec<Captured>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(s): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.captured.lock().unwrap().push(Captured {
        method: method.to_string(),
        path: uri.to_string(),
        headers,
        body: body.to_vec(),
        at: std::time::Instant::now(),
    });
    let reply = {
        let mut q = s.replies.lock().unwrap();
        if q.len() > 1 {
            q.pop_front().unwrap()
        } else {
            q.front().cloned().unwrap_or(Reply::new(200, "ok"))
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

impl HttpServer {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let state = ServerState {
            captured: captured.clone(),
            replies: replies.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            captured,
            replies,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.captured.lock().unwrap().clone()
    }

    pub fn set_replies(&self, replies: Vec<Reply>) {
        *self.replies.lock().unwrap() = VecDeque::from(replies);
    }
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// SMTP

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
    pub auth: Option<(String, String)>,
}

impl Mail {
    /// The message as text, line ends normalised and quoted-printable parts decoded.
    pub fn text(&self) -> String {
        let raw = String::from_utf8_lossy(&self.data).replace("\r\n", "\n");
        qp_decode(&raw)
    }
}

/// Decodes quoted-printable soft breaks and `=XX` escapes (RFC 2045 §6.7).
fn qp_decode(s: &str) -> String {
    let s = s.replace("=\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone)]
struct SmtpHandler {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Mail,
    require_auth: Option<(String, String)>,
}

impl mailin_embedded::Handler for SmtpHandler {
    fn mail(
        &mut self,
        _ip: std::net::IpAddr,
        _domain: &str,
        from: &str,
    ) -> mailin_embedded::Response {
        if self.require_auth.is_some() && self.current.auth.is_none() {
            return mailin_embedded::response::AUTHENTICATION_REQUIRED;
        }
        self.current.from = from.to_owned();
        mailin_embedded::response::OK
    }
    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        if to.starts_with("nobody@") {
            return mailin_embedded::response::NO_MAILBOX;
        }
        self.current.to.push(to.to_owned());
        mailin_embedded::response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> mailin_embedded::Response {
        let mail = std::mem::take(&mut self.current);
        let auth = mail.auth.clone();
        self.mails.lock().unwrap().push(mail);
        self.current.auth = auth;
        mailin_embedded::response::OK
    }
    fn auth_plain(
        &mut self,
        _authz: &str,
        user: &str,
        password: &str,
    ) -> mailin_embedded::Response {
        match &self.require_auth {
            Some((u, p)) if u == user && p == password => {
                self.current.auth = Some((user.to_owned(), password.to_owned()));
                mailin_embedded::response::AUTH_OK
            }
            _ => mailin_embedded::response::INVALID_CREDENTIALS,
        }
    }
}

pub struct SmtpServer {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    /// With TLS: the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` / `127.0.0.1`, made with the openssl tool.
fn make_certs(dir: &Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tocsin test CA",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        dir,
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
        dir,
    );
}

impl SmtpServer {
    /// A plain SMTP server (no TLS, no AUTH) on 127.0.0.1.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With `auth`: STARTTLS with a test CA, AUTH PLAIN required with these credentials.
    pub fn start_with(auth: Option<(&str, &str)>) -> Self {
        let mails = Arc::new(Mutex::new(Vec::new()));
        let handler = SmtpHandler {
            mails: mails.clone(),
            current: Mail::default(),
            require_auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = mailin_embedded::Server::new(handler);
        server
            .with_name("mx.test")
            .with_tcp_listener(listener)
            .with_num_threads(2);
        let (dir, ca_file) = if auth.is_some() {
            let dir = tempfile::tempdir().unwrap();
            make_certs(dir.path());
            server
                .with_ssl(mailin_embedded::SslConfig::SelfSigned {
                    cert_path: dir.path().join("server.pem").display().to_string(),
                    key_path: dir.path().join("server.key").display().to_string(),
                })
                .unwrap_or_else(|e| panic!("ssl: {e}"));
            server.with_auth(mailin_embedded::AuthMechanism::Plain);
            let ca = dir.path().join("ca.pem");
            (Some(dir), Some(ca))
        } else {
            server
                .with_ssl(mailin_embedded::SslConfig::None)
                .unwrap_or_else(|e| panic!("ssl: {e}"));
            (None, None)
        };
        // `serve()`'s error is not Send: the server lives on its own thread for the whole test.
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self {
            port,
            mails,
            ca_file,
            _dir: dir,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Data

fn t(h: u32, m: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
}

pub fn incident(status: IncidentStatus) -> Incident {
    Incident {
        id: 42,
        title: "HighMemoryUsage on web-1".into(),
        status,
        severity: Severity::Critical,
        description: "Memory usage above 90% for 5 minutes".into(),
        summary: "web-1 is swapping: memory at 94%, the java process holds 71%.".into(),
        metadata: json!({"receiver": "tocsin"}),
        group_key: "HighMemoryUsage|web-1".into(),
        created_at: t(9, 58),
        updated_at: t(10, 0),
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
    }
}

pub fn alert(id: i64, name: &str, instance: &str) -> Alert {
    Alert {
        id,
        fingerprint: format!("fp-{id}"),
        source: "alertmanager".into(),
        name: name.into(),
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        description: format!("{name} on {instance}: memory usage above 90%"),
        labels: [
            ("alertname".to_owned(), name.to_owned()),
            ("instance".to_owned(), instance.to_owned()),
        ]
        .into(),
        annotations: Default::default(),
        raw_payload: json!({}),
        trace_id: "trace-0001".into(),
        started_at: t(9, 55),
        ended_at: None,
        received_at: t(9, 56),
        updated_at: t(9, 56),
        incident_id: Some(42),
    }
}

pub fn check(name: &str, status: CheckStatus, message: &str) -> CheckResult {
    CheckResult {
        checker: name.into(),
        status,
        message: message.into(),
        metrics: json!({"percent": 94.0}),
        error: None,
        warning_threshold: Some(80.0),
        critical_threshold: Some(90.0),
        duration_ms: 12.5,
        skipped: false,
    }
}

pub fn recommendation(priority: Priority, title: &str) -> Recommendation {
    Recommendation {
        kind: RecommendationType::Memory,
        priority,
        title: title.into(),
        description: format!("{title}: the process uses most of the memory."),
        details: json!({"rss_mb": 5400}),
        actions: vec![
            "Restart the java service".into(),
            "Raise -Xmx only after a heap dump".into(),
        ],
        incident_id: Some(42),
    }
}

/// Stores the incident of [`notification`] and returns the notification pointing at it.
pub async fn stored_notification(t: &Tocsin) -> Notification {
    let i = t
        .store()
        .write(|c| {
            tocsin_core::store::insert_incident(
                c,
                tocsin_core::store::NewIncident {
                    title: "HighMemoryUsage on web-1".into(),
                    severity: Severity::Critical,
                    description: "Memory usage above 90% for 5 minutes".into(),
                    group_key: "HighMemoryUsage|web-1".into(),
                    metadata: json!({}),
                },
            )
        })
        .await
        .unwrap();
    let mut n = notification();
    n.incident.as_mut().unwrap().id = i.id;
    n.dedup_key = format!("tocsin-incident-{}", i.id);
    n
}

/// The notification a real run builds for incident 42: two alerts, checks, recommendations.
pub fn notification() -> Notification {
    Notification {
        title: "HighMemoryUsage on web-1".into(),
        message: "web-1 is swapping: memory at 94%, the java process holds 71%.".into(),
        severity: Some(Severity::Critical),
        status: Some(AlertStatus::Firing),
        incident: Some(incident(IncidentStatus::Open)),
        alerts: vec![
            alert(1, "HighMemoryUsage", "web-1"),
            alert(2, "HighSwapUsage", "web-1"),
        ],
        checks: vec![
            check("memory", CheckStatus::Critical, "94% used"),
            check("disk", CheckStatus::Ok, "41% used"),
        ],
        recommendations: vec![
            recommendation(Priority::Medium, "Review swap settings"),
            recommendation(Priority::High, "Restart the leaking java process"),
        ],
        tags: [("team".to_owned(), "sre".to_owned())].into(),
        context: json!({"base_url": "https://tocsin.example.com"}),
        trace_id: "trace-0001".into(),
        run_id: None,
        dedup_key: "tocsin-incident-42".into(),
        idempotency_key: "run-0001:notify".into(),
    }
}
