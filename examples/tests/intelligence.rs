//! `tocsin get-recommendations` on this machine: its figures are what `ps` says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn the_memory_recommendation_names_a_process_with_the_rss_ps_reports() {
    // A process holding ~200 MB of touched memory.
    let mut hog = Command::new("python3")
        .args(["-c", "import time; b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(60)"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is on this machine kind");
    let pid = hog.id();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hog.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");

    let dir = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (found, ps_kib) = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["get-recommendations", "--memory", "--top-n", "50", "--json"])
            .env(
                "TOCSIN_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("t.db").display()),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rec = v["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "memory")
            .cloned()
            .unwrap();
        let ps = Command::new("ps")
            .args(["-o", "rss=", "-p", &pid.to_string()])
            .output()
            .unwrap();
        let ps_kib: f64 = String::from_utf8_lossy(&ps.stdout).trim().parse().unwrap();
        let found = rec["details"]["top_processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == pid)
            .cloned();
        if found.is_some() || Instant::now() > deadline {
            break (found, ps_kib);
        }
    };
    let _ = hog.kill();
    let _ = hog.wait();
    let p =
        found.unwrap_or_else(|| panic!("process {pid} (~200 MB) is not among the top processes"));
    assert_eq!(p["name"], "python3");
    let bytes = p["memory_bytes"].as_f64().unwrap();
    let ps_bytes = ps_kib * 1024.0;
    assert!(
        ps_bytes > 190.0 * 1024.0 * 1024.0,
        "the hog holds {ps_bytes} bytes"
    );
    assert!(
        (bytes - ps_bytes).abs() / ps_bytes < 0.02,
        "tocsin says {bytes} bytes, ps says {ps_bytes}"
    );
}
