//! A small W3C WebDriver client for the browser tests: it starts `chromedriver` on a free loopback
//! port, opens one headless Chromium session and speaks the handful of commands the console tests
//! need (navigate, find, click, type, read, screenshot). Written over `reqwest` so the test binary
//! pulls in no WebDriver crate.
//!
//! Spec: <https://www.w3.org/TR/webdriver2/>. Every command answers `{"value": ...}`; an error
//! answers `{"value": {"error": "...", "message": "..."}}` with a 4xx/5xx status.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts the driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often the bounded waits poll.
const POLL: Duration = Duration::from_millis(50);

/// What can go wrong while driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// `chromedriver` could not be started.
    #[error("cannot start {path}: {source}")]
    Spawn {
        /// The driver binary.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `chromedriver` started but did not answer `/status` as ready in time.
    #[error("chromedriver on port {port} was not ready after {waited:?}{exited}")]
    NotReady {
        /// Its port.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// How it exited, if it did.
        exited: String,
    },
    /// The HTTP exchange with the driver failed.
    #[error("WebDriver {command}: {source}")]
    Http {
        /// The command, as `METHOD path`.
        command: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The driver answered with a WebDriver error (`no such element`, `timeout`, ...).
    #[error("WebDriver {command}: {error}: {message}")]
    WebDriver {
        /// The command, as `METHOD path`.
        command: String,
        /// The W3C error code.
        error: String,
        /// The driver's message (first line).
        message: String,
    },
    /// The driver answered something this client does not understand.
    #[error("WebDriver {command}: unexpected reply: {detail}")]
    Protocol {
        /// The command, as `METHOD path`.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}{last}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// The last state seen, for the failure message.
        last: String,
    },
    /// A file (a screenshot) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The screenshot was not valid base64.
    #[error("screenshot is not valid base64 (byte {0})")]
    Base64(usize),
}

impl BrowserError {
    /// Whether this is WebDriver's `no such element` (the element is simply not there yet).
    pub fn is_no_such_element(&self) -> bool {
        matches!(self, Self::WebDriver { error, .. } if error == "no such element")
    }

    /// Whether the element reference went stale (the page changed under it).
    pub fn is_stale(&self) -> bool {
        // While a page is being replaced, chromedriver reports a node of the old document either as
        // stale or, depending on timing, as an inspector error about the node or its context.
        matches!(self, Self::WebDriver { error, message, .. }
            if error == "stale element reference"
                || message.contains("does not belong to the document")
                || message.contains("Cannot find context with specified id")
                || message.contains("Execution context was destroyed"))
    }
}

/// Whether the browser and its driver are installed where the tests expect them.
pub fn available() -> Result<(), String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {}", missing.join(" and ")))
    }
}

/// A `chromedriver` child process on a loopback port; killed when dropped (panics included).
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    /// Starts `chromedriver` on a free loopback port and waits (bounded) until it is ready. Its
    /// output goes to `log` when given.
    pub async fn start(log: Option<&Path>) -> Result<Self, BrowserError> {
        // The port is free when we look; if chromedriver loses a race for it, try another.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port().map_err(|source| BrowserError::Spawn {
                path: CHROMEDRIVER.to_owned(),
                source,
            })?;
            let (stdout, stderr) = match log.map(std::fs::File::create) {
                Some(Ok(f)) => match f.try_clone() {
                    Ok(g) => (Stdio::from(f), Stdio::from(g)),
                    Err(_) => (Stdio::null(), Stdio::null()),
                },
                _ => (Stdio::null(), Stdio::null()),
            };
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .map_err(|source| BrowserError::Spawn {
                    path: CHROMEDRIVER.to_owned(),
                    source,
                })?;
            let mut driver = Self { child, port };
            match driver.wait_ready(Duration::from_secs(10)).await {
                Ok(()) => return Ok(driver),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(BrowserError::NotReady {
            port: 0,
            waited: Duration::ZERO,
            exited: String::new(),
        }))
    }

    /// The driver's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), BrowserError> {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BrowserError::NotReady {
                    port: self.port,
                    waited: start.elapsed(),
                    exited: format!(" (it exited: {status})"),
                });
            }
            let ready = http
                .get(format!("{}/status", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok();
            if let Some(res) = ready
                && let Ok(body) = res.json::<Value>().await
                && body["value"]["ready"] == Value::Bool(true)
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(BrowserError::NotReady {
                    port: self.port,
                    waited: start.elapsed(),
                    exited: String::new(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` makes chromedriver quit its browsers before it exits; a plain kill would
        // leave Chromium running. Blocking std I/O on purpose: Drop cannot await, and this also
        // runs while a failed test unwinds.
        let _ = shutdown_request(self.port);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /shutdown` over a raw blocking socket, bounded by short timeouts.
fn shutdown_request(port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    Ok(())
}

/// A loopback port nobody listens on right now.
fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// One headless Chromium session. Fields drop in order: the session is deleted by the driver's
/// `/shutdown` when `driver` drops.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: ChromeDriver,
    _profile: Option<tempfile::TempDir>,
}

impl Browser {
    /// Starts chromedriver and opens a headless Chromium session (1280x900, no sandbox, no GPU).
    pub async fn start(log: Option<&Path>) -> Result<Self, BrowserError> {
        let driver = ChromeDriver::start(log).await?;
        let profile = tempfile::tempdir().ok();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
        ];
        if let Some(p) = &profile {
            args.push(format!("--user-data-dir={}", p.path().display()));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| BrowserError::Http {
                command: "client".to_owned(),
                source,
            })?;
        let value = call(
            &http,
            reqwest::Method::POST,
            &driver.url(),
            "/session",
            Some(caps),
        )
        .await?;
        let session = value["sessionId"]
            .as_str()
            .ok_or_else(|| BrowserError::Protocol {
                command: "POST /session".to_owned(),
                detail: format!("no sessionId in {value}"),
            })?
            .to_owned();
        let browser = Self {
            http,
            session,
            driver,
            _profile: profile,
        };
        browser
            .cmd(
                reqwest::Method::POST,
                "/timeouts",
                Some(json!({"pageLoad": 15_000, "script": 10_000, "implicit": 0})),
            )
            .await?;
        Ok(browser)
    }

    async fn cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        let path = format!("/session/{}{path}", self.session);
        call(&self.http, method, &self.driver.url(), &path, body).await
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(drop)
    }

    /// The current page's URL.
    pub async fn current_url(&self) -> Result<String, BrowserError> {
        let v = self.cmd(reqwest::Method::GET, "/url", None).await?;
        string(v, "GET /url")
    }

    /// Reloads the current page.
    pub async fn refresh(&self) -> Result<(), BrowserError> {
        self.cmd(reqwest::Method::POST, "/refresh", Some(json!({})))
            .await
            .map(drop)
    }

    /// The value of the cookie `name` on the current page, or `None` when it is not set.
    pub async fn cookie(&self, name: &str) -> Result<Option<String>, BrowserError> {
        match self
            .cmd(reqwest::Method::GET, &format!("/cookie/{name}"), None)
            .await
        {
            Ok(v) => Ok(v["value"].as_str().map(str::to_owned)),
            Err(BrowserError::WebDriver { error, .. }) if error == "no such cookie" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The current page's title.
    pub async fn title(&self) -> Result<String, BrowserError> {
        let v = self.cmd(reqwest::Method::GET, "/title", None).await?;
        string(v, "GET /title")
    }

    /// The current page's HTML.
    pub async fn source(&self) -> Result<String, BrowserError> {
        let v = self.cmd(reqwest::Method::GET, "/source", None).await?;
        string(v, "GET /source")
    }

    /// The first element matching the CSS selector, now (no waiting).
    pub async fn find(&self, css: &str) -> Result<Element<'_>, BrowserError> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        self.element(&v, "POST /element")
    }

    /// Every element matching the CSS selector, now (possibly none).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>, BrowserError> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        let items = v.as_array().ok_or_else(|| BrowserError::Protocol {
            command: "POST /elements".to_owned(),
            detail: format!("not a list: {v}"),
        })?;
        items
            .iter()
            .map(|i| self.element(i, "POST /elements"))
            .collect()
    }

    fn element(&self, v: &Value, command: &str) -> Result<Element<'_>, BrowserError> {
        let id = v[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| BrowserError::Protocol {
                command: command.to_owned(),
                detail: format!("no element reference in {v}"),
            })?;
        Ok(Element {
            browser: self,
            id: id.to_owned(),
        })
    }

    /// Waits (bounded, polling) for an element matching the CSS selector.
    pub async fn wait_for(
        &self,
        css: &str,
        timeout: Duration,
    ) -> Result<Element<'_>, BrowserError> {
        let start = Instant::now();
        loop {
            match self.find(css).await {
                Ok(e) => return Ok(e),
                Err(e) if e.is_no_such_element() || e.is_stale() => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() > timeout {
                let url = self.current_url().await.unwrap_or_default();
                return Err(BrowserError::Timeout {
                    what: format!("{css:?}"),
                    waited: start.elapsed(),
                    last: format!(" on {url}"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (bounded, polling) until the text of the element matching `css` satisfies `pred`;
    /// returns that text. The element is looked up afresh each time, so a reloading page is fine.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, BrowserError> {
        let start = Instant::now();
        let mut last = None;
        loop {
            let text = match self.find(css).await {
                Ok(e) => match e.text().await {
                    Ok(t) => Some(t),
                    Err(e) if e.is_stale() || e.is_no_such_element() => None,
                    Err(e) => return Err(e),
                },
                Err(e) if e.is_no_such_element() || e.is_stale() => None,
                Err(e) => return Err(e),
            };
            if let Some(t) = text {
                if pred(&t) {
                    return Ok(t);
                }
                last = Some(t);
            }
            if start.elapsed() > timeout {
                return Err(BrowserError::Timeout {
                    what: format!("the text of {css:?}"),
                    waited: start.elapsed(),
                    last: match last {
                        Some(t) => format!(" (last: {t:?})"),
                        None => " (never found)".to_owned(),
                    },
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (bounded, polling) until the current URL satisfies `pred`; returns it.
    pub async fn wait_url(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, BrowserError> {
        let start = Instant::now();
        loop {
            let url = self.current_url().await?;
            if pred(&url) {
                return Ok(url);
            }
            if start.elapsed() > timeout {
                return Err(BrowserError::Timeout {
                    what: "the URL".to_owned(),
                    waited: start.elapsed(),
                    last: format!(" (last: {url})"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs a script in the page (`return ...;` for a value).
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, BrowserError> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>, BrowserError> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let b64 = string(v, "GET /screenshot")?;
        decode_base64(&b64).map_err(BrowserError::Base64)
    }

    /// Saves a PNG of the viewport to `path` (creating its folder).
    pub async fn save_screenshot(&self, path: &Path) -> Result<(), BrowserError> {
        let png = self.screenshot().await?;
        let io = |source| BrowserError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, png).map_err(io)
    }

    /// Ends the session (the browser closes). Dropping the `Browser` also ends it.
    pub async fn quit(self) -> Result<(), BrowserError> {
        self.cmd(reqwest::Method::DELETE, "", None).await.map(drop)
    }
}

/// A reference to an element of the current page.
#[derive(Debug)]
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    async fn cmd(
        &self,
        method: reqwest::Method,
        what: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        self.browser
            .cmd(method, &format!("/element/{}{what}", self.id), body)
            .await
    }

    /// Clicks it (scrolling it into view first).
    pub async fn click(&self) -> Result<(), BrowserError> {
        self.cmd(reqwest::Method::POST, "/click", Some(json!({})))
            .await
            .map(drop)
    }

    /// Types `text` into it.
    pub async fn send_keys(&self, text: &str) -> Result<(), BrowserError> {
        self.cmd(reqwest::Method::POST, "/value", Some(json!({"text": text})))
            .await
            .map(drop)
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) -> Result<(), BrowserError> {
        self.cmd(reqwest::Method::POST, "/clear", Some(json!({})))
            .await
            .map(drop)
    }

    /// Its rendered text.
    pub async fn text(&self) -> Result<String, BrowserError> {
        let v = self.cmd(reqwest::Method::GET, "/text", None).await?;
        string(v, "GET /element/text")
    }

    /// An attribute, or `None` when it is absent.
    pub async fn attr(&self, name: &str) -> Result<Option<String>, BrowserError> {
        let v = self
            .cmd(reqwest::Method::GET, &format!("/attribute/{name}"), None)
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// A DOM property (`value` of a textarea, for instance), as JSON.
    pub async fn prop(&self, name: &str) -> Result<Value, BrowserError> {
        self.cmd(reqwest::Method::GET, &format!("/property/{name}"), None)
            .await
    }

    /// The elements inside it matching the CSS selector.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>, BrowserError> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        let items = v.as_array().ok_or_else(|| BrowserError::Protocol {
            command: "POST /element/elements".to_owned(),
            detail: format!("not a list: {v}"),
        })?;
        items
            .iter()
            .map(|i| self.browser.element(i, "POST /element/elements"))
            .collect()
    }
}

/// One WebDriver command: sends it, maps a W3C error to [`BrowserError::WebDriver`], returns
/// `value`.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, BrowserError> {
    let command = format!("{method} {path}");
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.map_err(|source| BrowserError::Http {
        command: command.clone(),
        source,
    })?;
    let status = res.status();
    let mut body: Value = res.json().await.map_err(|source| BrowserError::Http {
        command: command.clone(),
        source,
    })?;
    let value = body["value"].take();
    if let Some(error) = value.get("error").and_then(Value::as_str)
        && (!status.is_success() || !error.is_empty())
    {
        let message = value["message"].as_str().unwrap_or_default();
        return Err(BrowserError::WebDriver {
            command,
            error: error.to_owned(),
            message: message.lines().next().unwrap_or_default().to_owned(),
        });
    }
    if !status.is_success() {
        return Err(BrowserError::Protocol {
            command,
            detail: format!("HTTP {status} without a WebDriver error: {value}"),
        });
    }
    Ok(value)
}

/// Standard base64 (RFC 4648, padded, whitespace ignored): the one place WebDriver uses it is the
/// screenshot, and this saves the test binary a second copy of the base64 crate. The error is the
/// offset of the first bad byte.
fn decode_base64(text: &str) -> Result<Vec<u8>, usize> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits, mut padding) = (0u32, 0u32, 0usize);
    for (i, c) in text.bytes().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            padding += 1;
            continue;
        }
        // Data after padding, or an unknown byte.
        let v = sextet(c).filter(|_| padding == 0).ok_or(i)?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if padding > 2 || bits >= 6 {
        return Err(text.len());
    }
    Ok(out)
}

fn string(v: Value, command: &str) -> Result<String, BrowserError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(BrowserError::Protocol {
            command: command.to_owned(),
            detail: format!("expected a string, got {other}"),
        }),
    }
}

/// Whether a browser test can run here. Without Chromium and chromedriver it says SKIPPED on the
/// real standard error (past the harness's capture, so the log shows it) and returns false; with
/// `TOCSIN_TEST_REQUIRE_BROWSER=1` (as in `.ci/run`) it fails the test instead.
pub fn ready_or_skip(test: &str) -> bool {
    let Err(missing) = available() else {
        return true;
    };
    let help = "install them with tests/setup-browser.sh \
                (apt-get install --no-install-recommends chromium chromium-driver)";
    if std::env::var("TOCSIN_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!(
            "TOCSIN_TEST_REQUIRE_BROWSER=1 but the browser test {test} cannot run: {missing}; {help}"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "[tocsin test] SKIPPED {test}: {missing}; {help}"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html><html><head><title>probe</title></head><body>
<h1 id="h">Hello</h1>
<a id="go" href="/other" data-x="42">go</a>
<input id="in" value="prefilled">
<button id="b" onclick="document.getElementById('h').textContent = document.getElementById('in').value">set</button>
<ul><li class="i">a</li><li class="i">b</li></ul>
<div id="late"></div>
<script>setTimeout(() => { document.getElementById('late').innerHTML = '<p id="later">now</p>' }, 300)</script>
</body></html>"#;

    #[test]
    fn base64_decodes_what_webdriver_sends() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode_base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert_eq!(decode_base64("Zm9v!").unwrap_err(), 4);
        assert_eq!(decode_base64("Zg==Zg").unwrap_err(), 4);
        assert!(decode_base64("Z").is_err());
    }

    /// The client against a two-page local site: every command the console test uses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webdriver_client_drives_a_local_page() {
        if !ready_or_skip("webdriver_client_drives_a_local_page") {
            return;
        }
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(|| async { axum::response::Html(PAGE) }),
            )
            .route(
                "/other",
                axum::routing::get(|| async {
                    axum::response::Html("<title>other</title><p id='o'>other page</p>")
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let b = Browser::start(None).await.unwrap();
        b.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(b.title().await.unwrap(), "probe");
        assert_eq!(b.find("#h").await.unwrap().text().await.unwrap(), "Hello");
        assert!(b.find("#nope").await.unwrap_err().is_no_such_element());
        assert_eq!(b.find_all(".i").await.unwrap().len(), 2);
        assert!(b.find_all(".nope").await.unwrap().is_empty());
        let input = b.find("#in").await.unwrap();
        assert_eq!(input.prop("value").await.unwrap(), "prefilled");
        input.clear().await.unwrap();
        input.send_keys("typed {json: 1}").await.unwrap();
        b.find("#b").await.unwrap().click().await.unwrap();
        b.wait_text("#h", Duration::from_secs(5), |t| t == "typed {json: 1}")
            .await
            .unwrap();
        let late = b.wait_for("#later", Duration::from_secs(5)).await.unwrap();
        assert_eq!(late.text().await.unwrap(), "now");
        let err = b
            .wait_for("#never", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, BrowserError::Timeout { .. }), "{err}");
        assert!(b.source().await.unwrap().contains("id=\"late\""));
        assert_eq!(b.execute("return 6 * 7;", vec![]).await.unwrap(), json!(42));
        let png = b.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");

        let link = b.find("#go").await.unwrap();
        assert_eq!(link.attr("data-x").await.unwrap().as_deref(), Some("42"));
        assert_eq!(link.attr("data-none").await.unwrap(), None);
        link.click().await.unwrap();
        b.wait_url(Duration::from_secs(5), |u| u.ends_with("/other"))
            .await
            .unwrap();
        b.wait_for("#o", Duration::from_secs(5)).await.unwrap();
        b.quit().await.unwrap();
    }
}
