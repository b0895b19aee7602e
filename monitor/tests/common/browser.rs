//! Headless Chromium driven through ChromeDriver's WebDriver protocol (W3C WebDriver: new
//! session, navigate, execute script, screenshot), for the page tests. Debian's `chromium` and
//! `chromium-driver` packages; started with the flags this machine's closed network needs
//! (no background connections) and a fresh profile folder.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser can run here; under CI a missing browser is a failure, not a skip.
pub fn available() -> bool {
    let ok = std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{CHROMIUM} or {CHROMEDRIVER} is missing (Debian packages chromium, chromium-driver; scripts/setup.sh installs them)");
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Browser {
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent().get(&format!("{base}/status")).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {base}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            _profile: profile,
        };
        // From here on a failure still ends the browser: `Drop` asks chromedriver to shut down,
        // which quits every browser it started (killing only the driver would orphan them).
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let a = agent();
        let mut resp = match (method, body) {
            ("GET", _) => a.get(&url).call(),
            ("DELETE", _) => a.delete(&url).call(),
            (_, Some(b)) => a.post(&url).send_json(&b),
            (_, None) => a.post(&url).send_json(json!({})),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    /// Run `script` (a function body; `return` its value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )["value"]
            .clone()
    }

    /// Wait until `script` returns `true`; on timeout, fail showing `what` and the page text.
    pub fn wait_for(&self, script: &str, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(script) == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self.eval("return document.body ? document.body.innerText : ''");
                panic!(
                    "timed out waiting for {what}; the page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call("GET", &self.s("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = agent()
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = agent().get(&format!("{}/shutdown", self.base)).call();
        for _ in 0..50 {
            if matches!(self.driver.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
