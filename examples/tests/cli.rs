//! The `tocsin` binary as an operator meets it: start-up errors and `serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tocsin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    c.env_remove("TOCSIN_DATABASE_URL")
        .env_remove("TOCSIN_BIND")
        .env_remove("TOCSIN_API_KEYS")
        .env("RUST_LOG", "info");
    c
}

fn fails_with_one_line(cmd: &mut Command, needle: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "stderr does not name the problem ({needle}): {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let lines: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("tocsin: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
}

#[test]
fn a_bad_database_url_is_a_one_line_error() {
    fails_with_one_line(
        tocsin()
            .arg("migrate")
            .env("TOCSIN_DATABASE_URL", "mysql://db/x"),
        "TOCSIN_DATABASE_URL",
    );
    fails_with_one_line(
        tocsin()
            .arg("migrate")
            .env("TOCSIN_DATABASE_URL", "postgres://nobody@127.0.0.1:1/x"),
        "cannot connect",
    );
}

#[test]
fn a_malformed_bind_is_a_one_line_error() {
    fails_with_one_line(
        tocsin().arg("serve").env("TOCSIN_BIND", "localhost"),
        "TOCSIN_BIND",
    );
}

#[test]
fn an_unreadable_config_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    fails_with_one_line(
        tocsin()
            .arg("--config")
            .arg(dir.path().join("missing.toml"))
            .arg("migrate"),
        "cannot read config file",
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bind = [").unwrap();
    fails_with_one_line(
        tocsin().arg("--config").arg(&bad).arg("migrate"),
        "invalid config file",
    );
}

#[test]
fn help_lists_every_command_and_version_prints() {
    let out = tocsin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["migrate", "serve"] {
        assert!(help.contains(cmd), "--help lacks {cmd}: {help}");
    }
    let out = tocsin().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tocsin {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn serve_answers_healthz_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tocsin()
        .arg("serve")
        .env(
            "TOCSIN_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("t.db").display()),
        )
        .env("TOCSIN_BIND", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            break out;
        }
        assert!(Instant::now() < deadline, "serve did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"database\":\"ok\""), "{body}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "serve did not exit cleanly: {status:?}");
    let log: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(log.iter().any(|l| l.contains("stopped cleanly")), "{log:?}");
}
