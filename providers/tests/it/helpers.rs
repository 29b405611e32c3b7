//! Shared fixtures: a child process that holds memory or spins, a stand-in OpenAI server.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A JSON fixture from `fixtures/openai/`.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/openai")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A helper child process (this test binary re-run in helper mode); killed on drop.
pub struct Helper {
    pub child: Child,
}

impl Helper {
    /// Starts `helper_main` in a child with `mode` (`hog:<MiB>` or `spin`), waiting for "ready".
    pub fn start(mode: &str) -> Helper {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "helpers::helper_main",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TOCSIN_TEST_HELPER", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let helper = Helper { child };
        // Read on a thread, so a helper that never gets ready fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test helpers::helper_main ... " before the test's own output.
                if line.trim_end().ends_with("TOCSIN-HELPER-READY") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("the helper process did not get ready");
        helper
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The helper's body: only does something when started by [`Helper::start`].
#[test]
#[ignore = "run as a child process by the memory and CPU tests"]
fn helper_main() {
    let Ok(mode) = std::env::var("TOCSIN_TEST_HELPER") else {
        return;
    };
    if let Some(mb) = mode.strip_prefix("hog:") {
        let mb: usize = mb.parse().unwrap();
        // Written, not just allocated: untouched pages are not resident.
        let hog = vec![0x5au8; mb * 1024 * 1024];
        println!("TOCSIN-HELPER-READY");
        std::io::stdout().flush().unwrap();
        let _ = std::io::stdin().read_line(&mut String::new());
        assert_eq!(hog[hog.len() / 2], 0x5a);
    } else if mode == "spin" {
        println!("TOCSIN-HELPER-READY");
        std::io::stdout().flush().unwrap();
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// `VmRSS` of a process, in bytes, as the kernel reports it (what `ps -o rss` shows).
pub fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// One request the stand-in server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// How the stand-in answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, extra headers, body text.
    Raw(u16, Vec<(&'static str, String)>, String),
    /// Wait, then answer 200 with this body.
    Slow(Duration, String),
}

impl Reply {
    /// A 200 chat completion (the documented response object,
    /// `fixtures/openai/chat-completion.json`) whose message content is `content`.
    pub fn completion(content: &str) -> Reply {
        let mut body = fixture("chat-completion.json");
        body["choices"][0]["message"]["content"] = Value::String(content.to_owned());
        Reply::Raw(
            200,
            vec![("content-type", "application/json".into())],
            body.to_string(),
        )
    }

    /// `status` with a fixture body and extra headers.
    pub fn fixture(status: u16, name: &str, mut headers: Vec<(&'static str, String)>) -> Reply {
        headers.push(("content-type", "application/json".into()));
        Reply::Raw(status, headers, fixture(name).to_string())
    }
}

#[derive(Clone)]
struct ServerState {
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Reply>>,
}

async fn handle(
    State(s): State<ServerState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let reply = s.reply.lock().unwrap().clone();
    match reply {
        Reply::Raw(status, headers, body) => {
            let mut res = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                res.headers_mut().insert(k, v.parse().unwrap());
            }
            res
        }
        Reply::Slow(wait, body) => {
            tokio::time::sleep(wait).await;
            (StatusCode::OK, body).into_response()
        }
    }
}

/// A stand-in for the OpenAI API on 127.0.0.1, answering every request with its current reply.
pub struct FakeOpenAi {
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Reply>>,
}

impl FakeOpenAi {
    pub async fn start(reply: Reply) -> FakeOpenAi {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(reply));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(ServerState {
                seen: seen.clone(),
                reply: reply.clone(),
            });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            seen,
            reply,
        }
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
