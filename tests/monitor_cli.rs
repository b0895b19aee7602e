//! Runners report to a monitor (`docs/monitor.md`, the contract): the real `tsforge run` with
//! `TSForgeMonitorURL` pointing at a small fake monitor (a `TcpListener` in a thread that
//! records each request and answers as the test says: 200, 500, 401, 400).
//!
//! `EventService` is MDT's CustomSettings.ini property naming its monitoring service, e.g.
//! `EventService=http://server:9800` (MDT toolkit reference, *Properties*,
//! <https://learn.microsoft.com/en-us/mem/configmgr/mdt/toolkit-reference>; Microsoft's MDT 2012
//! monitoring article,
//! <https://docs.microsoft.com/en-us/archive/blogs/windowsfr/le-service-de-monitoring-de-mdt-2012-2>);
//! tsforge reads it as the monitor's URL when `TSForgeMonitorURL` is unset (docs/monitor.md).

use crate::common::Env;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the fake monitor got, and the status it answered.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    status: u16,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    /// The status every `POST /api/v1/events` gets (200 by default; 0: no answer at all).
    status: u16,
    /// The next `fail_first` posts get 500 whatever `status` says.
    fail_first: usize,
    /// Keys stored (answered 200), each once.
    stored: BTreeSet<String>,
    /// Keys of accepted batches seen again.
    duplicates: usize,
}

struct Monitor {
    url: String,
    shared: Arc<Mutex<Shared>>,
}

impl Monitor {
    fn start() -> Monitor {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared {
            status: 200,
            ..Default::default()
        }));
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Monitor { url, shared }
    }
    fn set_status(&self, status: u16) {
        self.shared.lock().unwrap().status = status;
    }
    fn requests(&self) -> Vec<Request> {
        self.shared.lock().unwrap().requests.clone()
    }
    fn posts(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v1/events")
            .collect()
    }
    /// The keys of the events of every batch answered 200, in the order they came.
    fn accepted_keys(&self) -> Vec<String> {
        self.posts()
            .iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| {
                r.json()["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["key"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn serve(conn: TcpStream, shared: &Mutex<Shared>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .map(|l| l.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let (status, answer) = {
        let mut s = shared.lock().unwrap();
        let (status, answer) = if method == "POST" && path == "/api/v1/events" {
            if s.status == 0 {
                // Hang: read the request, never answer.
                s.requests.push(Request {
                    method,
                    path,
                    headers,
                    body,
                    status: 0,
                });
                drop(s);
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            let status = if s.fail_first > 0 {
                s.fail_first -= 1;
                500
            } else {
                s.status
            };
            if status == 200 {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let (mut stored, mut dup) = (0, 0);
                for e in v["events"].as_array().unwrap() {
                    if s.stored.insert(e["key"].as_str().unwrap().to_string()) {
                        stored += 1;
                    } else {
                        dup += 1;
                    }
                }
                s.duplicates += dup;
                (200, format!("{{\"stored\":{stored},\"duplicates\":{dup}}}"))
            } else {
                (status, "{\"error\":\"test\"}".to_string())
            }
        } else if method == "PUT" && path.starts_with("/api/v1/runs/") && path.ends_with("/log") {
            (204, String::new())
        } else {
            (404, String::new())
        };
        s.requests.push(Request {
            method,
            path,
            headers,
            body,
            status,
        });
        (status, answer)
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    );
}

fn events(e: &Env) -> Vec<Map<String, Value>> {
    e.read("state/events.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| v.as_object().unwrap().clone())
        .collect()
}

const STEPS: &str = r#"
steps:
  - name: First
    run: echo one
  - name: Second
    run: echo two
"#;

/// The contract's `POST /api/v1/events`: the machine, the run, and each events.jsonl record
/// with `key` `<run>:<n>` (n from 1) and `phase`; the token as `Authorization: Bearer`; the
/// run's smsts.log put at the end; the token masked in the logs.
#[test]
fn events_reach_the_monitor_in_the_contracts_shape_and_the_log_is_uploaded() {
    let m = Monitor::start();
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        &format!(
            "name: Lab deploy\nvariables:\n  TSForgeMonitorURL: {}/\n  OSDComputerName: LAB-PC07\n{STEPS}",
            m.url
        ),
    );
    let (code, _, err) = e.run_seq(&seq, &["--var", "TSForgeMonitorToken=s3cret-token"]);
    assert_eq!(code, 0, "{err}");

    let posts = m.posts();
    assert!(!posts.is_empty());
    let guid = e.read("machine/client-guid").trim().to_string();
    let records = events(&e);
    let mut sent = Vec::new();
    let mut run = None;
    for p in &posts {
        assert_eq!(p.status, 200);
        assert_eq!(
            p.headers.get("authorization").map(String::as_str),
            Some("Bearer s3cret-token")
        );
        assert!(p.headers["content-type"].starts_with("application/json"));
        let v = p.json();
        let top: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(top, BTreeSet::from(["machine", "run", "events"]));
        let machine = v["machine"].as_object().unwrap();
        let fields: BTreeSet<&str> = machine.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "client_guid",
                "computer_name",
                "macs",
                "ips",
                "make",
                "model",
                "serial"
            ])
        );
        assert_eq!(machine["client_guid"], guid.as_str());
        assert_eq!(machine["computer_name"], "LAB-PC07");
        assert!(machine["macs"].is_array() && machine["ips"].is_array());
        let r = v["run"].as_str().unwrap().to_string();
        assert!(uuid_v4(&r), "{r}");
        assert_eq!(*run.get_or_insert(r.clone()), r, "one run id");
        sent.extend(v["events"].as_array().unwrap().iter().cloned());
    }
    let run = run.unwrap();
    // Every record, in order, with its key and phase and nothing else added.
    assert_eq!(sent.len(), records.len());
    for (i, (s, r)) in sent.iter().zip(&records).enumerate() {
        let mut s = s.as_object().unwrap().clone();
        assert_eq!(
            s.remove("key").unwrap(),
            format!("{run}:{}", i + 1).as_str()
        );
        assert_eq!(s.remove("phase").unwrap(), "FullOS");
        assert_eq!(&s, r);
    }
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "run_start",
            "step_start",
            "step_end",
            "step_start",
            "step_end",
            "run_end"
        ]
    );
    assert_eq!(records[0]["sequence"], "Lab deploy");

    // The log, last.
    let puts: Vec<Request> = m
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, format!("/api/v1/runs/{run}/log"));
    assert_eq!(
        puts[0].headers.get("authorization").map(String::as_str),
        Some("Bearer s3cret-token")
    );
    let uploaded = String::from_utf8(puts[0].body.clone()).unwrap();
    assert!(uploaded.contains("completed successfully"), "{uploaded}");
    assert!(e.read("state/smsts.log").starts_with(&uploaded));
    for f in ["smsts.log", "events.jsonl", "monitor.jsonl"] {
        assert!(
            !e.read(&format!("state/{f}")).contains("s3cret-token"),
            "{f}"
        );
    }
    assert!(!uploaded.contains("s3cret-token"));
    assert!(e.read("state/state.json").contains(&run));
}

fn uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'4'
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

/// A monitor that fails for a while: the run is not slowed by it (it finished while the
/// monitor still answered 500), its events wait on disk, and the next start of the runner on
/// the same state sends them: every event arrives exactly once.
#[test]
fn a_failing_monitor_never_delays_the_run_and_every_event_arrives_once() {
    let m = Monitor::start();
    m.set_status(500);
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        "name: Slow\nsteps:\n  - name: A\n    run: sleep 0.3\n  - name: B\n    run: sleep 0.3\n  - name: C\n    run: sleep 0.3\n",
    );
    let url = format!("TSForgeMonitorURL={}", m.url);
    let t0 = Instant::now();
    let (code, _, err) = e.run_seq(&seq, &["--var", &url]);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(m.shared.lock().unwrap().stored.is_empty(), "still failing");
    assert!(m.posts().len() >= 2, "retried: {:?}", m.posts().len());
    assert!(
        took < Duration::from_secs(6),
        "the run took {took:?} with steps of 0.9 s"
    );
    assert!(
        e.read("state/smsts.log")
            .contains("events for the monitor are left in the state folder at the end of the run"),
        "{}",
        e.read("state/smsts.log")
    );
    let n = events(&e).len();
    assert_eq!(e.read("state/monitor.jsonl").lines().count(), n);

    // The monitor is back: the runner started again on the finished run sends the rest.
    m.set_status(200);
    let (code, _, err) = e.run_seq(&seq, &["--var", &url]);
    assert_eq!(code, 0, "{err}");
    let keys = m.accepted_keys();
    let run = keys[0].rsplit_once(':').unwrap().0.to_string();
    let want: Vec<String> = (1..=n).map(|i| format!("{run}:{i}")).collect();
    assert_eq!(keys, want, "every event once, in order");
    assert_eq!(m.shared.lock().unwrap().duplicates, 0);
    assert!(
        m.requests().iter().any(|r| r.method == "PUT"),
        "the log too"
    );
    // Nothing is sent a third time.
    let before = m.posts().len();
    let (code, _, _) = e.run_seq(&seq, &["--var", &url]);
    assert_eq!(code, 0);
    assert_eq!(m.posts().len(), before);
}

/// 500 for the first two batches, then 200, during the run: the retries send every event
/// once by the end of the run.
#[test]
fn retries_during_the_run_deliver_every_event_once() {
    let m = Monitor::start();
    m.shared.lock().unwrap().fail_first = 2;
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        "name: Retry\nsteps:\n  - name: A\n    run: sleep 1\n  - name: B\n    run: sleep 1\n  - name: C\n    run: sleep 1\n",
    );
    let (code, _, err) = e.run_seq(&seq, &["--var", &format!("TSForgeMonitorURL={}", m.url)]);
    assert_eq!(code, 0, "{err}");
    let keys = m.accepted_keys();
    let n = events(&e).len();
    assert_eq!(keys.len(), n, "{keys:?}");
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), n);
    assert!(m.posts().iter().filter(|p| p.status == 500).count() == 2);
    assert_eq!(e.read("state/monitor.sent").trim(), n.to_string());
}

/// No monitor listening: the run succeeds, its events stay queued on disk.
#[test]
fn with_no_monitor_listening_the_run_succeeds_and_the_queue_stays() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Env::new();
    let seq = e.write("ts.yaml", &format!("name: Alone\n{STEPS}"));
    let t0 = Instant::now();
    let (code, _, err) = e.run_seq(
        &seq,
        &["--var", &format!("EventService=http://127.0.0.1:{port}")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    let queued: Vec<Value> = e
        .read("state/monitor.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(queued.len(), events(&e).len());
    assert_eq!(queued.last().unwrap()["event"], "run_end");
    assert!(!e.path("state/monitor.sent").exists());
    let log = e.read("state/smsts.log");
    assert!(
        log.contains("Could not upload smsts.log to the monitor"),
        "{log}"
    );
}

/// A run that restarts (`--no-reboot`, exit 3) while the monitor fails, then resumes once it
/// is back: the resumed run sends what was left, one run id, no key twice, none missing.
#[test]
fn a_resumed_run_sends_the_rest_with_no_duplicated_keys() {
    let m = Monitor::start();
    m.set_status(500);
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        &format!(
            "name: Restarts\nvariables:\n  TSForgeMonitorURL: {}\nsteps:\n  - name: Before\n    run: echo a\n  - name: Restart\n    type: restart\n  - name: After\n    run: echo b\n",
            m.url
        ),
    );
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 3, "{err}");
    let first = events(&e).len();
    m.set_status(200);
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 0, "{err}");
    let records = events(&e);
    assert!(records.len() > first);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"restart") && kinds.contains(&"run_resume"),
        "{kinds:?}"
    );
    let keys = m.accepted_keys();
    let run = keys[0].rsplit_once(':').unwrap().0.to_string();
    let want: Vec<String> = (1..=records.len()).map(|i| format!("{run}:{i}")).collect();
    assert_eq!(keys, want);
    assert_eq!(m.shared.lock().unwrap().duplicates, 0);
}

/// 401: one warning, nothing more sent; 400: the batch is dropped with a warning (the monitor
/// would never take it) and the run goes on.
#[test]
fn refused_batches_are_warned_about_and_do_not_fail_the_run() {
    for (status, warning) in [
        (
            401,
            "refused the runner token (401); no more events are sent",
        ),
        (400, "refused a batch of"),
    ] {
        let m = Monitor::start();
        m.set_status(status);
        let e = Env::new();
        let seq = e.write("ts.yaml", &format!("name: Refused\n{STEPS}"));
        let (code, _, err) = e.run_seq(&seq, &["--var", &format!("TSForgeMonitorURL={}", m.url)]);
        assert_eq!(code, 0, "{err}");
        let log = e.read("state/smsts.log");
        let count = log.matches(warning).count();
        if status == 401 {
            assert_eq!(count, 1, "{log}");
            assert_eq!(m.posts().len(), 1, "nothing more after a 401");
        } else {
            assert!(count >= 1, "{log}");
            let n = events(&e).len();
            assert_eq!(
                e.read("state/monitor.sent").trim(),
                n.to_string(),
                "dropped batches are done with"
            );
        }
    }
}

/// A failed run reports the failure screen's facts as a `failure` event before `run_end`.
#[test]
fn a_failed_run_sends_its_failure() {
    let m = Monitor::start();
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        "name: Fails\nsteps:\n  - name: Fine\n    run: \"true\"\n  - name: Breaks\n    run: exit 7\n",
    );
    let (code, _, _) = e.run_seq(&seq, &["--var", &format!("TSForgeMonitorURL={}", m.url)]);
    assert_eq!(code, 1);
    let sent: Vec<Value> = m
        .posts()
        .iter()
        .flat_map(|p| p.json()["events"].as_array().unwrap().clone())
        .collect();
    let f = sent.iter().find(|v| v["event"] == "failure").unwrap();
    assert_eq!(f["name"], "Breaks");
    assert_eq!(f["number"], 2);
    assert_eq!(f["exit_code"], 7);
    assert_eq!(sent.last().unwrap()["event"], "run_end");
}

/// A long step where the runtime knows its progress (an image applied) writes `step_progress`
/// events {number, percent, message}: at most one for every 5 % (or 10 s), percent rising
/// from 0 to 100; the monitor gets them like every other event.
#[test]
fn applying_an_image_reports_its_progress() {
    let m = Monitor::start();
    let e = Env::new();
    let src = e.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4u32 {
        std::fs::write(
            src.join(format!("f{i}.bin")),
            crate::common::data::random(6 << 20, i + 1),
        )
        .unwrap();
    }
    let (code, _, err) = e.run(&["capture", "src", "img.zip"]);
    assert_eq!(code, 0, "{err}");
    let seq = e.write(
        "ts.yaml",
        "name: Apply\nsteps:\n  - name: Say\n    run: echo hi\n  - name: Apply data\n    type: apply-data-image\n    properties:\n      ImagePath: img.zip\n      Destination: out\n",
    );
    let (code, _, err) = e.run_seq(&seq, &["--var", &format!("TSForgeMonitorURL={}", m.url)]);
    assert_eq!(code, 0, "{err}\n{}", e.read("state/smsts.log"));
    assert_eq!(
        std::fs::read(e.path("out/f3.bin")).unwrap(),
        crate::common::data::random(6 << 20, 4)
    );
    let progress: Vec<Map<String, Value>> = events(&e)
        .into_iter()
        .filter(|r| r["event"] == "step_progress")
        .collect();
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(
        progress.len() <= 21,
        "at most one per 5 %: {}",
        progress.len()
    );
    check_progress(&progress, 2, &["MiB"]);
    let sent: Vec<Value> = m
        .posts()
        .iter()
        .flat_map(|p| p.json()["events"].as_array().unwrap().clone())
        .filter(|v| v["event"] == "step_progress")
        .collect();
    assert_eq!(sent.len(), progress.len());
}

/// A monitor that takes the requests and never answers: no step is slowed (each takes its own
/// time), and the end of the run waits at most the flush's bound (10 s) before leaving the
/// events on disk.
#[test]
fn a_monitor_that_never_answers_does_not_slow_the_steps() {
    let m = Monitor::start();
    m.set_status(0);
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        "name: Hang\nsteps:\n  - name: A\n    run: sleep 0.2\n  - name: B\n    run: sleep 0.2\n  - name: C\n    run: sleep 0.2\n",
    );
    let t0 = Instant::now();
    let (code, _, err) = e.run_seq(&seq, &["--var", &format!("TSForgeMonitorURL={}", m.url)]);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    for r in events(&e).iter().filter(|r| r["event"] == "step_end") {
        assert!(r["seconds"].as_f64().unwrap() < 1.5, "{r:?}");
    }
    assert!(!m.posts().is_empty(), "the sender tried");
    assert_eq!(
        e.read("state/monitor.jsonl").lines().count(),
        events(&e).len(),
        "all still queued"
    );
    assert!(e
        .read("state/smsts.log")
        .contains("events for the monitor are left"));
}

/// The hand-over (*Setup Windows and ConfigMgr*,
/// <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetupWindowsandConfigMgr>:
/// the sequence goes on in the new OS): the boot environment's events are `WinPE`, the
/// deployed OS's `FullOS`, one run id across both, no key twice (the deployed OS's runner
/// numbers after the ones the boot environment still wrote), every event delivered.
#[test]
fn a_handed_over_run_reports_both_phases_under_one_run_id() {
    use crate::handover::systemd_os;
    let m = Monitor::start();
    let e = Env::new();
    let os = e.path("os");
    systemd_os(&os, "ID=debian\nVERSION_ID=\"12\"\n");
    let seq = e.write(
        "deploy.yaml",
        "name: Deploy\nsteps:\n  - name: PE step\n    run_in: WinPE\n    run: echo pe\n  - name: Hand over\n    type: hand-over\n  - name: Full step\n    run_in: FullOS\n    run: echo full\n",
    );
    let out = e
        .cmd(&[
            "run",
            seq.to_str().unwrap(),
            "--state-dir",
            "state",
            "--no-reboot",
            "--var",
            &format!("OSDTargetSystemDrive={}", os.display()),
            "--var",
            &format!("TSForgeMonitorURL={}", m.url),
        ])
        .env("TSFORGE_BOOT_ENV", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::handover::run_handed_over(&e, &os, &["--no-reboot"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sent: Vec<Value> = m
        .posts()
        .iter()
        .flat_map(|p| p.json()["events"].as_array().unwrap().clone())
        .collect();
    let runs: BTreeSet<String> = m
        .posts()
        .iter()
        .map(|p| p.json()["run"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let keys: Vec<&str> = sent.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        keys.len(),
        "no key twice: {keys:?}"
    );
    assert_eq!(m.shared.lock().unwrap().duplicates, 0);
    let phase_of = |kind: &str| -> Vec<String> {
        sent.iter()
            .filter(|v| v["event"] == kind)
            .map(|v| v["phase"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(phase_of("run_start"), ["WinPE"]);
    assert_eq!(phase_of("restart"), ["WinPE"]);
    assert_eq!(phase_of("run_resume"), ["FullOS"]);
    assert_eq!(phase_of("run_end"), ["FullOS"]);
    // Every event of both phases' events.jsonl arrived.
    let pe = std::fs::read_to_string(e.path("state/events.jsonl")).unwrap();
    let full = std::fs::read_to_string(os.join("var/log/tsforge/events.jsonl")).unwrap_or_default();
    let full = if full.is_empty() {
        std::fs::read_to_string(os.join("_SMSTaskSequence/state/events.jsonl")).unwrap_or_default()
    } else {
        full
    };
    assert_eq!(
        sent.len(),
        pe.lines().count() + full.lines().count(),
        "sent {keys:?}\nPE:\n{pe}\nFullOS:\n{full}"
    );
}

/// A monitor URL that is not `http://` or `https://` with a host: one warning naming it,
/// nothing queued, the run goes on.
#[test]
fn a_bad_monitor_url_is_one_warning_and_nothing_is_queued() {
    let e = Env::new();
    let seq = e.write("ts.yaml", &format!("name: Bad url\n{STEPS}"));
    let (code, _, err) = e.run_seq(&seq, &["--var", "TSForgeMonitorURL=ftp://mon:9800"]);
    assert_eq!(code, 0, "{err}");
    let log = e.read("state/smsts.log");
    assert_eq!(
        log.matches("the monitor URL \"ftp://mon:9800\" is not an http:// or https:// URL with a host; no events are sent to it").count(),
        1,
        "{log}"
    );
    assert!(!e.path("state/monitor.jsonl").exists());
}

/// A folder medium (the builder's media core, as `tsforge media` makes it) with one sequence
/// and one pre-execution hook `hook` (a shell script), `vars` as media variables.
fn medium_with_hook(e: &Env, hook: &str, vars: &[(&str, String)]) {
    use tsforge_builder::media::{assemble, MediaOptions};
    use tsforge_builder::tree::MediaTree;
    let seq = e.write(
        "never.yaml",
        "name: Never\nsteps:\n  - name: A\n    run: echo never\n",
    );
    let hook = e.write("check.sh", hook);
    let mut tree = MediaTree::new();
    tree.add("boot/placeholder.txt", b"template file".to_vec())
        .unwrap();
    let opts = MediaOptions {
        name: "Hooked".into(),
        sequences: vec![seq],
        hooks: vec![hook],
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    assemble(&mut tree, &opts).unwrap();
    tree.write_to_dir(&e.path("medium")).unwrap();
}

/// The events of every batch the monitor accepted, and the batches' run ids.
fn sent_events(m: &Monitor) -> (Vec<Value>, BTreeSet<String>) {
    let mut events = Vec::new();
    let mut runs = BTreeSet::new();
    for p in m.posts().iter().filter(|p| p.status == 200) {
        let v = p.json();
        runs.insert(v["run"].as_str().unwrap().to_string());
        events.extend(v["events"].as_array().unwrap().iter().cloned());
    }
    (events, runs)
}

/// A pre-execution hook that fails in `tsforge boot` stops the boot before the engine runs:
/// the monitor the medium names still learns of it, as a run of its own (a run id, `run_start`
/// naming no sequence, `failure` with the hook as the failure screen names it, its exit code
/// and its last line, `run_end` failed), and gets smsts.log, before the failure screen waits.
#[test]
fn a_failing_pre_execution_hook_is_reported_to_the_monitor_the_medium_names() {
    let m = Monitor::start();
    let e = Env::new();
    medium_with_hook(
        &e,
        "echo 'no network card found'\nexit 4\n",
        &[("TSForgeMonitorURL", m.url.clone())],
    );
    let (code, _, err) = e.run(&["boot", "--medium", "medium", "--state-dir", "state"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("Failed step:   pre-execution hook hooks/01-check.sh"),
        "the failure screen is still shown:\n{err}"
    );
    let (sent, runs) = sent_events(&m);
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    let run = runs.into_iter().next().unwrap();
    assert!(uuid_v4(&run), "{run}");
    let kinds: Vec<&str> = sent.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["run_start", "failure", "run_end"], "{sent:?}");
    for (i, v) in sent.iter().enumerate() {
        assert_eq!(v["key"], format!("{run}:{}", i + 1).as_str());
    }
    assert_eq!(
        sent[0]["sequence"],
        "(none started: a pre-execution hook failed)"
    );
    assert_eq!(sent[0]["steps"], 0);
    assert_eq!(sent[1]["name"], "pre-execution hook hooks/01-check.sh");
    assert_eq!(sent[1]["exit_code"], 4);
    let message = sent[1]["message"].as_str().unwrap();
    assert!(
        message.contains("exit code 4") && message.contains("no network card found"),
        "{message}"
    );
    assert_eq!(sent[2]["succeeded"], false);
    // The same events in events.jsonl (no key, no phase there).
    let records: Vec<Value> = e
        .read("state/events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    for (r, s) in records.iter().zip(&sent) {
        let mut s = s.as_object().unwrap().clone();
        s.remove("key");
        s.remove("phase");
        assert_eq!(r.as_object().unwrap(), &s);
    }
    // smsts.log, after the events.
    let puts: Vec<Request> = m
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, format!("/api/v1/runs/{run}/log"));
    let uploaded = String::from_utf8(puts[0].body.clone()).unwrap();
    assert!(uploaded.contains("no network card found"), "{uploaded}");
    assert!(
        uploaded.contains("exited with 4; the boot stops"),
        "{uploaded}"
    );
    // A later run in this state folder does not find these events in its queue.
    assert!(!e.path("state").join("monitor.jsonl").exists());
}

/// The hook itself may name the monitor before it fails: here with MDT's `EventService`
/// property (MDT toolkit reference, *Properties*, EventService:
/// <https://learn.microsoft.com/en-us/mem/configmgr/mdt/toolkit-reference>), set with
/// `tsforge env set`'s file. A monitor that is down does not hold the failure screen up:
/// the wait is bounded, and the events stay in the state folder.
#[test]
fn a_failing_hook_that_names_the_monitor_is_reported_and_a_down_monitor_does_not_hold_it_up() {
    let m = Monitor::start();
    let e = Env::new();
    medium_with_hook(
        &e,
        &format!(
            "printf 'EventService=%s\\n' '{}' >> \"$TSFORGE_ENV_FILE\"\necho 'disk 0 is too small'\nexit 3\n",
            m.url
        ),
        &[],
    );
    let (code, _, err) = e.run(&["boot", "--medium", "medium", "--state-dir", "state"]);
    assert_eq!(code, 3, "{err}");
    let (sent, _) = sent_events(&m);
    let f = sent.iter().find(|v| v["event"] == "failure").unwrap();
    assert_eq!(f["name"], "pre-execution hook hooks/01-check.sh");
    assert_eq!(f["exit_code"], 3);
    assert!(f["message"]
        .as_str()
        .unwrap()
        .contains("disk 0 is too small"));
    assert_eq!(sent.last().unwrap()["event"], "run_end");

    // Nothing listening: the boot goes on to the failure screen within the flush's bound.
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let e = Env::new();
    medium_with_hook(&e, "exit 5\n", &[("TSForgeMonitorURL", down)]);
    let t0 = Instant::now();
    let (code, _, err) = e.run(&["boot", "--medium", "medium", "--state-dir", "state"]);
    assert_eq!(code, 5, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(12), "{:?}", t0.elapsed());
    assert!(err.contains("TASK SEQUENCE FAILED"), "{err}");
    let queued = e.read("state/monitor-boot/monitor.jsonl");
    assert_eq!(queued.lines().count(), 3, "{queued}");
    assert!(
        e.read("state/smsts.log")
            .contains("events for the monitor are left"),
        "one warning"
    );
}

/// A package downloaded from an HTTP distribution point by an Install Package step
/// (https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_InstallPackage)
/// reports its progress as the image steps do (docs/monitor.md; Microsoft documents no
/// progress protocol): `step_progress` {number, percent, message} with the percent of the
/// manifest's sizes rising to 100, at most one per 5 % (or 10 s), sent to the monitor while
/// the download goes on (a batch with progress and without the step's end).
#[test]
fn a_package_download_reports_its_progress_during_install_package() {
    let m = Monitor::start();
    let e = Env::new();
    let pkg = e.path("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("payload.bin"),
        crate::common::data::random(40 << 20, 9),
    )
    .unwrap();
    std::fs::write(pkg.join("install.sh"), "echo installed > installed.txt\n").unwrap();
    let (code, _, err) = e.run(&[
        "package",
        "build",
        "pkg",
        "--id",
        "LAB00042",
        "--program",
        "Install=sh install.sh",
        "--out",
        "dp",
    ]);
    assert_eq!(code, 0, "{err}");
    let server = crate::common::httpd::Server::start(&e.path("dp"));
    // About 2 s for the download: it is seen going on.
    server.faults(|f| f.rate = Some(20 << 20));
    let seq = e.write(
        "ts.yaml",
        "name: Apps\nsteps:\n  - name: Say\n    run: echo hi\n  - name: Install the lab tools\n    type: install-package\n    properties:\n      PackageID: LAB00042\n      ProgramName: Install\n",
    );
    let (code, _, err) = e.run_seq(
        &seq,
        &[
            "--content",
            &server.url,
            "--var",
            &format!("TSForgeMonitorURL={}", m.url),
        ],
    );
    assert_eq!(code, 0, "{err}\n{}", e.read("state/smsts.log"));
    assert!(e.path("state/cache/LAB00042/files/installed.txt").exists());

    let progress: Vec<Map<String, Value>> = events(&e)
        .into_iter()
        .filter(|r| r["event"] == "step_progress")
        .collect();
    assert!(progress.len() >= 3, "{progress:?}");
    assert!(progress.len() <= 21, "at most one per 5 %: {progress:?}");
    let last = check_progress(&progress, 2, &["LAB00042", "MiB"]);
    assert_eq!(last, 100.0);

    let (sent, _) = sent_events(&m);
    assert_eq!(
        sent.iter()
            .filter(|v| v["event"] == "step_progress")
            .count(),
        progress.len()
    );
    let during = m.posts().iter().filter(|p| p.status == 200).any(|p| {
        let events = p.json()["events"].as_array().unwrap().clone();
        events.iter().any(|v| v["event"] == "step_progress")
            && !events
                .iter()
                .any(|v| v["event"] == "step_end" && v["number"] == 2)
    });
    assert!(during, "progress reached the monitor while the step ran");
}

/// `step_progress` records of step `number`: exactly the schema's fields, percent within
/// 0–100 and rising, each message holding every one of `message_has`. Returns the last percent.
fn check_progress(progress: &[Map<String, Value>], number: u64, message_has: &[&str]) -> f64 {
    let mut last = -1.0;
    for p in progress {
        let keys: BTreeSet<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["schema", "time", "event", "number", "percent", "message"])
        );
        assert_eq!(p["number"], number);
        let pct = p["percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pct) && pct > last, "{progress:?}");
        last = pct;
        let msg = p["message"].as_str().unwrap();
        assert!(message_has.iter().all(|w| msg.contains(w)), "{p:?}");
    }
    last
}
