//! `tsforge monitor` through the real binary: options, the runner token from the environment,
//! the SQLite file, a clean stop on SIGTERM. The API itself is tested in monitor/tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One HTTP/1.1 request over a raw connection: (status, body).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    tcp.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// `tsforge monitor` on a free loopback port with its SQLite file in `dir`, stopped (SIGKILL)
/// when dropped; for tests whose runners report to it (the QEMU scenarios).
pub(crate) struct Monitor {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Monitor {
    pub(crate) fn start(dir: &std::path::Path) -> Monitor {
        Self::start_with(dir, &[])
    }

    /// [`Monitor::start`] with environment variables (`TSFORGE_MONITOR_TOKEN`).
    pub(crate) fn start_with(dir: &std::path::Path, env: &[(&str, &str)]) -> Monitor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tsforge"))
            .args(["monitor", "--listen", "127.0.0.1:0", "--database"])
            .arg(format!("sqlite:{}", dir.join("monitor.db").display()))
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("tsforge monitor: listening on http://")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        // Keep reading its standard error so the monitor never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Monitor { child, addr }
    }

    /// The JSON the API answers at `path` (status 200 asserted).
    pub(crate) fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = http(&self.addr, "GET", path, &[], "");
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Stop it as a service manager does (SIGTERM) and wait for its exit.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
        self.child.wait().unwrap()
    }

    /// The text the API answers at `path`, with its status.
    pub(crate) fn get_text(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path, &[], "")
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn monitor_serves_until_sigterm_with_the_token_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("monitor.db");
    let monitor = Monitor::start_with(dir.path(), &[("TSFORGE_MONITOR_TOKEN", "env-token")]);
    let addr = monitor.addr.clone();
    let batch = r#"{"machine": {"computer_name": "PC1"}, "run": "r1", "events": [
        {"key": "r1:1", "schema": 1, "time": "2026-12-07T10:00:00Z", "event": "run_start",
         "sequence": "Lab", "steps": 1, "phase": "WinPE"}]}"#;
    let (code, body) = http(&addr, "POST", "/api/v1/events", &[], batch);
    assert_eq!(code, 401, "{body}");
    let (code, body) = http(
        &addr,
        "POST",
        "/api/v1/events",
        &["Authorization: Bearer env-token"],
        batch,
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""stored":1"#) && body.contains(r#""duplicates":0"#),
        "{body}"
    );
    let (code, body) = http(&addr, "GET", "/api/v1/deployments/r1", &[], "");
    assert_eq!(code, 200);
    assert!(body.contains(r#""state":"running""#), "{body}");
    assert!(db.exists());
    let status = monitor.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn monitor_names_a_bad_database_option() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = crate::common::tsforge(
        dir.path(),
        &[
            "monitor",
            "--listen",
            "127.0.0.1:0",
            "--database",
            "mysql://x",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--database \"mysql://x\": expected sqlite:PATH or postgres://"),
        "{err}"
    );
    let (code, _, err) = crate::common::tsforge(
        dir.path(),
        &[
            "monitor",
            "--listen",
            "127.0.0.1:0",
            "--page-password-file",
            "missing.txt",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--page-password-file missing.txt: cannot read it"),
        "{err}"
    );
}
