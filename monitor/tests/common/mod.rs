//! Helpers: a monitor on its own runtime, an HTTP agent, batches like a runner's, an event
//! stream reader, and a throwaway PostgreSQL cluster.

#![allow(dead_code)]

pub mod browser;
pub mod pg;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tsforge_monitor::{Config, Running};

pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    rt: Option<tokio::runtime::Runtime>,
    running: Option<Running>,
}

impl Server {
    pub fn start(config: Config) -> Server {
        Self::try_start(config).expect("monitor starts")
    }

    pub fn try_start(config: Config) -> anyhow::Result<Server> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let tls = config.tls.is_some();
        let running = rt.block_on(tsforge_monitor::start(config))?;
        let addr = running.addr;
        Ok(Server {
            addr,
            base: format!("{}://{addr}", if tls { "https" } else { "http" }),
            rt: Some(rt),
            running: Some(running),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let (Some(rt), Some(r)) = (self.rt.take(), self.running.take()) {
            rt.block_on(r.stop()).expect("monitor stops cleanly");
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let (Some(rt), Some(r)) = (self.rt.take(), self.running.take()) {
            let _ = rt.block_on(r.stop());
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

pub fn sqlite_config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: format!("sqlite:{}", dir.join("monitor.db").display()),
        runner_token: None,
        page_password: None,
        tls: None,
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// (status, body) of a request.
pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String) {
    let req = ureq::http::Request::builder().method(method).uri(url);
    let req = headers.iter().fold(req, |r, (k, v)| r.header(*k, *v));
    let mut res = match body {
        Some(b) => agent.run(req.body(b.to_vec()).unwrap()),
        None => agent.run(req.body(()).unwrap()),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let text = res
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    (status, text)
}

pub fn get(s: &Server, path: &str) -> (u16, String) {
    send(&agent(), "GET", &s.url(path), &[], None)
}

pub fn get_json(s: &Server, path: &str) -> Value {
    let (code, body) = get(s, path);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub fn post(s: &Server, body: &Value) -> (u16, Value) {
    post_raw(s, &[], body.to_string().as_bytes())
}

pub fn post_raw(s: &Server, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let (code, text) = send(&agent(), "POST", &s.url("/api/v1/events"), &h, Some(body));
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn machine(name: &str) -> Value {
    json!({"client_guid": format!("GUID:{name}"), "computer_name": name,
           "macs": ["52:54:00:12:34:56"], "ips": ["10.0.2.15"],
           "make": "QEMU", "model": "Standard PC (Q35 + ICH9, 2009)", "serial": "S1"})
}

pub fn batch(run: &str, name: &str, events: Vec<Value>) -> Value {
    json!({"machine": machine(name), "run": run, "events": events})
}

/// An event record: `n` makes its key and its time (one second apart from 10:00:00).
pub fn ev(run: &str, n: u32, kind: &str, fields: Value) -> Value {
    let mut e = json!({"key": format!("{run}:{n}"), "schema": 1,
        "time": format!("2026-12-07T10:{:02}:{:02}Z", n / 60, n % 60),
        "event": kind, "phase": "WinPE"});
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// A whole deployment's events: run_start, `steps` steps started and ended, run_end.
pub fn full_run(run: &str, steps: u32, fail_at: Option<u32>) -> Vec<Value> {
    let mut v = vec![ev(
        run,
        1,
        "run_start",
        json!({"sequence": "Lab deploy", "steps": steps}),
    )];
    let mut n = 2;
    for s in 1..=steps {
        v.push(ev(run, n, "step_start", json!({"number": s, "name": format!("Step {s}"), "type": "SMS_TaskSequence_RunCommandLineAction"})));
        n += 1;
        let failed = fail_at == Some(s);
        v.push(ev(run, n, "step_end", json!({"number": s, "name": format!("Step {s}"),
            "type": "SMS_TaskSequence_RunCommandLineAction", "exit_code": if failed { 5 } else { 0 },
            "succeeded": !failed, "attempts": 1, "seconds": 1.5,
            "message": if failed { json!("Access is denied.") } else { Value::Null }})));
        n += 1;
        if failed {
            break;
        }
    }
    v.push(ev(
        run,
        n,
        "run_end",
        json!({"succeeded": fail_at.is_none(), "steps_run": n / 2, "seconds": 30.0}),
    ));
    v
}

/// Reads a server-sent event stream over raw HTTP/1.1.
pub struct Stream {
    reader: BufReader<TcpStream>,
}

impl Stream {
    pub fn open(s: &Server, headers: &[(&str, &str)]) -> Stream {
        let mut tcp = TcpStream::connect(s.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = format!(
            "GET /api/v1/stream HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            s.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(tcp);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "stream answered {status:?}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Stream { reader }
    }

    /// The next `deployment` event's data (chunked framing lines are skipped: they are
    /// neither `event:` nor `data:` lines).
    pub fn next_deployment(&mut self) -> Value {
        let mut kind = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("an event within 20 s");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end();
            if let Some(k) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
                kind = k.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                if kind == "deployment" {
                    return serde_json::from_str(d.trim()).unwrap();
                }
            }
        }
    }
}
