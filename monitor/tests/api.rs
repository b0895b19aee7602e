//! The API of docs/monitor.md on SQLite: storing, duplicates, order, every 4xx, the stream,
//! the log and /metrics. The scenarios are `pub` so postgres.rs runs them on PostgreSQL too.

use crate::common::*;
use serde_json::{json, Value};

fn sqlite() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(sqlite_config(dir.path()));
    (dir, s)
}

/// A whole deployment in three batches: stored, folded into a deployment and its steps.
pub fn scenario_full_run(s: &Server) {
    let run = "0b6e0000-0000-4000-8000-000000000001";
    let events = full_run(run, 12, None);
    assert_eq!(events.len(), 26);
    let mut stored = 0;
    for chunk in events.chunks(10) {
        let (code, body) = post(s, &batch(run, "LAB-PC07", chunk.to_vec()));
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["duplicates"], 0);
        stored += body["stored"].as_u64().unwrap();
    }
    assert_eq!(stored, 26);
    let d = get_json(s, &format!("/api/v1/deployments/{run}"));
    let dep = &d["deployment"];
    assert_eq!(dep["state"], "succeeded");
    assert_eq!(dep["computer_name"], "LAB-PC07");
    assert_eq!(dep["client_guid"], "GUID:LAB-PC07");
    assert_eq!(dep["macs"], json!(["52:54:00:12:34:56"]));
    assert_eq!(dep["sequence"], "Lab deploy");
    assert_eq!(dep["phase"], "WinPE");
    assert_eq!(dep["step"], 12);
    assert_eq!(dep["steps"], 12);
    assert_eq!(dep["step_name"], "Step 12");
    assert_eq!(dep["started"], "2026-12-07T10:00:01Z");
    assert_eq!(dep["ended"], "2026-12-07T10:00:26Z");
    assert_eq!(dep["seconds"], 25.0);
    assert_eq!(dep["failure"], Value::Null);
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 12);
    assert_eq!(steps[0]["number"], 1);
    assert_eq!(steps[0]["state"], "succeeded");
    assert_eq!(steps[0]["type"], "SMS_TaskSequence_RunCommandLineAction");
    assert_eq!(steps[0]["exit_code"], 0);
    assert_eq!(steps[0]["seconds"], 1.5);
    let ev = get_json(s, &format!("/api/v1/deployments/{run}/events"));
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 26);
    assert_eq!(kinds[0], "run_start");
    assert_eq!(kinds[25], "run_end");
    let list = get_json(
        s,
        "/api/v1/deployments?state=succeeded&sequence=Lab%20deploy",
    );
    assert_eq!(list["deployments"].as_array().unwrap().len(), 1);
    let none = get_json(s, "/api/v1/deployments?state=failed");
    assert_eq!(none["deployments"], json!([]));
    let none = get_json(s, "/api/v1/deployments?sequence=Other");
    assert_eq!(none["deployments"], json!([]));
}

/// A resent batch is a success with its events counted as duplicates, stored once.
pub fn scenario_duplicates(s: &Server) {
    let run = "dup-run";
    let events = full_run(run, 3, None);
    let b = batch(run, "PC-DUP", events[..5].to_vec());
    assert_eq!(post(s, &b), (200, json!({"stored": 5, "duplicates": 0})));
    assert_eq!(post(s, &b), (200, json!({"stored": 0, "duplicates": 5})));
    // Overlapping: 3 old, 3 new.
    let b = batch(run, "PC-DUP", events[2..8].to_vec());
    assert_eq!(post(s, &b), (200, json!({"stored": 3, "duplicates": 3})));
    let ev = get_json(s, &format!("/api/v1/deployments/{run}/events"));
    assert_eq!(ev["events"].as_array().unwrap().len(), 8);
}

/// Batches out of order: the end first, the start last. The late run_start does not reset
/// the finished deployment, and the failure is the failed step's.
pub fn scenario_out_of_order(s: &Server) {
    let run = "ooo-run";
    let events = full_run(run, 5, Some(3));
    let (tail, head) = (events[4..].to_vec(), events[..4].to_vec());
    assert_eq!(post(s, &batch(run, "PC-OOO", tail)).0, 200);
    let d = get_json(s, &format!("/api/v1/deployments/{run}"));
    assert_eq!(d["deployment"]["state"], "failed");
    assert_eq!(post(s, &batch(run, "PC-OOO", head)).0, 200);
    let d = get_json(s, &format!("/api/v1/deployments/{run}"));
    let dep = &d["deployment"];
    assert_eq!(dep["state"], "failed", "{dep}");
    assert_eq!(dep["sequence"], "Lab deploy");
    assert_eq!(dep["steps"], 5);
    assert_eq!(dep["started"], "2026-12-07T10:00:01Z");
    assert_eq!(
        dep["failure"],
        json!({"step": "Step 3", "number": 3, "exit_code": 5, "message": "Access is denied."})
    );
    let states: Vec<&str> = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["succeeded", "succeeded", "failed"]);
}

/// run_start → running; restart → restarting; run_resume in the full OS → running again;
/// step_progress → percent; the failure screen's `failure` event is the reason given.
pub fn scenario_states(s: &Server) {
    let run = "states-run";
    let post1 = |n: u32, kind: &str, f: Value| {
        let (code, body) = post(s, &batch(run, "PC-ST", vec![ev(run, n, kind, f)]));
        assert_eq!(code, 200, "{body}");
        get_json(s, &format!("/api/v1/deployments/{run}"))["deployment"].clone()
    };
    let d = post1(
        1,
        "run_start",
        json!({"sequence": "Lab deploy", "steps": 4}),
    );
    assert_eq!(d["state"], "running");
    assert_eq!(d["step"], Value::Null);
    let d = post1(
        2,
        "step_start",
        json!({"number": 1, "name": "Apply OS", "type": "SMS_TaskSequence_ApplyOperatingSystemImageAction"}),
    );
    assert_eq!(
        (d["step"].clone(), d["step_name"].clone()),
        (json!(1), json!("Apply OS"))
    );
    let d = post1(
        3,
        "step_progress",
        json!({"number": 1, "percent": 42.5, "message": "Applying"}),
    );
    assert_eq!(d["percent"], 42.5);
    let d = post1(
        4,
        "step_end",
        json!({"number": 1, "name": "Apply OS", "exit_code": 0, "succeeded": true}),
    );
    assert_eq!(d["state"], "running");
    let d = post1(5, "restart", json!({"target": "FullOS"}));
    assert_eq!(d["state"], "restarting");
    let mut e = ev(
        run,
        6,
        "run_resume",
        json!({"sequence": "Lab deploy", "steps": 4}),
    );
    e["phase"] = json!("FullOS");
    assert_eq!(post(s, &batch(run, "PC-ST", vec![e])).0, 200);
    let d = get_json(s, &format!("/api/v1/deployments/{run}"))["deployment"].clone();
    assert_eq!(
        (d["state"].clone(), d["phase"].clone()),
        (json!("running"), json!("FullOS"))
    );
    post1(
        7,
        "step_start",
        json!({"number": 2, "name": "Install apps"}),
    );
    post1(
        8,
        "step_end",
        json!({"number": 2, "name": "Install apps", "exit_code": 1603, "succeeded": false, "message": "generic"}),
    );
    post1(
        9,
        "failure",
        json!({"name": "Install apps", "number": 2, "exit_code": 1603, "message": "Fatal error during installation."}),
    );
    let d = post1(10, "run_end", json!({"succeeded": false, "steps_run": 2}));
    assert_eq!(d["state"], "failed");
    assert_eq!(
        d["failure"],
        json!({"step": "Install apps", "number": 2, "exit_code": 1603, "message": "Fatal error during installation."})
    );
    // A run_start that comes after the end changes nothing of the outcome.
    let d = post1(
        11,
        "run_start",
        json!({"sequence": "Lab deploy", "steps": 4}),
    );
    assert_eq!(d["state"], "failed");
}

#[test]
fn full_run_on_sqlite() {
    let (_d, s) = sqlite();
    scenario_full_run(&s);
    let (code, body) = get(&s, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok"));
}

#[test]
fn duplicates_on_sqlite() {
    let (_d, s) = sqlite();
    scenario_duplicates(&s);
}

#[test]
fn out_of_order_on_sqlite() {
    let (_d, s) = sqlite();
    scenario_out_of_order(&s);
}

#[test]
fn states_on_sqlite() {
    let (_d, s) = sqlite();
    scenario_states(&s);
}

/// Every refusal of docs/monitor.md: its code, an error naming what is wrong, nothing stored.
#[test]
fn bad_batches_are_refused_and_change_nothing() {
    let (_d, s) = sqlite();
    let run = "bad-run";
    let good = || batch(run, "PC-BAD", full_run(run, 1, None));
    let cases: Vec<(Vec<u8>, u16, &str)> = {
        let mut v: Vec<(Value, u16, &str)> = Vec::new();
        let mut b = good();
        b.as_object_mut().unwrap().remove("run");
        v.push((b, 400, "missing field `run`"));
        let mut b = good();
        b["extra"] = json!(1);
        v.push((b, 400, "unknown field `extra`"));
        let mut b = good();
        b["machine"]["cpu"] = json!("x86");
        v.push((b, 400, "unknown field `cpu`"));
        let mut b = good();
        b["events"][2]["colour"] = json!("red");
        v.push((b, 400, "events[2]: unknown field `colour`"));
        let mut b = good();
        b["events"][1]["event"] = json!("step_teleport");
        v.push((
            b,
            400,
            "events[1]: event kind \"step_teleport\" is not in docs/events.schema.json",
        ));
        let mut b = good();
        b["events"][1].as_object_mut().unwrap().remove("time");
        v.push((b, 400, "events[1]: missing field `time`"));
        let mut b = good();
        b["events"][1].as_object_mut().unwrap().remove("key");
        v.push((b, 400, "events[1]: missing field `key`"));
        let mut b = good();
        b["events"][1]["number"] = json!("one");
        v.push((
            b,
            400,
            "events[1]: `number` is \"one\", expected \"integer\"",
        ));
        let mut b = good();
        b["events"][0]["schema"] = json!(2);
        v.push((b, 400, "events[0]: `schema` is 2, expected 1"));
        let mut b = good();
        b["events"][0]["time"] = json!("yesterday");
        v.push((b, 400, "events[0]: `time` \"yesterday\" is not RFC 3339"));
        let mut b = good();
        b["events"][0]["key"] = json!("other-run:1");
        v.push((b, 400, "is not `<run>:<n>`"));
        let mut b = good();
        b["events"][0]["phase"] = json!("Setup");
        v.push((b, 400, "`phase` is \"Setup\""));
        let mut b = good();
        b["events"][0]["sequence"] = json!("x".repeat(4097));
        v.push((
            b,
            413,
            "events[0].sequence: a string of 4097 characters, more than 4096",
        ));
        let mut b = good();
        b["events"] = Value::Array(
            (1..=501)
                .map(|n| ev(run, n, "group_start", json!({"name": "g"})))
                .collect(),
        );
        v.push((b, 413, "501 events in one batch, more than 500"));
        let mut b = good();
        b["events"] = json!([]);
        b["machine"]["serial"] = json!("y".repeat(3000));
        b["machine"]["macs"] = Value::Array((0..400).map(|_| json!("z".repeat(3000))).collect());
        v.push((b, 413, "at most 1048576 bytes"));
        let mut out: Vec<(Vec<u8>, u16, &str)> = v
            .into_iter()
            .map(|(b, c, m)| (b.to_string().into_bytes(), c, m))
            .collect();
        out.push((
            b"{\"machine\": {}, \"run\": ".to_vec(),
            400,
            "malformed JSON",
        ));
        out.push((b"[1, 2]".to_vec(), 400, "invalid type"));
        out
    };
    for (body, code, msg) in cases {
        let (got, answer) = post_raw(&s, &[], &body);
        assert_eq!(got, code, "expected {code} for {msg:?}, got {answer}");
        let text = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {answer}"));
        assert!(text.contains(msg), "error {text:?} should say {msg:?}");
    }
    assert_eq!(
        get_json(&s, "/api/v1/deployments")["deployments"],
        json!([])
    );
    let (code, _) = get(&s, &format!("/api/v1/deployments/{run}"));
    assert_eq!(code, 404);
    let (code, _) = get(&s, &format!("/api/v1/deployments/{run}/events"));
    assert_eq!(code, 404);
    let (code, body) = get(&s, "/api/v1/deployments?state=lost");
    assert_eq!(code, 400, "{body}");
    let (code, body) = get(&s, "/api/v1/deployments?colour=red");
    assert_eq!(code, 400, "{body}");
    // The good batch is stored after all that.
    assert_eq!(post(&s, &good()).0, 200);
}

/// PUT log: 404 before the run is known, 204 after, read back as text/plain; replaced.
#[test]
fn log_upload_and_read() {
    let (_d, s) = sqlite();
    let a = agent();
    let run = "log-run";
    let url = s.url(&format!("/api/v1/runs/{run}/log"));
    let log = "<![LOG[Step failed]LOG]!><time=\"10:00:00.000+000\" date=\"12-07-2026\" component=\"TSManager\" context=\"\" type=\"3\" thread=\"1\" file=\"\">\n";
    let (code, body) = send(
        &a,
        "PUT",
        &url,
        &[("Content-Type", "text/plain")],
        Some(log.as_bytes()),
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no event of this run"), "{body}");
    assert_eq!(
        post(&s, &batch(run, "PC-LOG", full_run(run, 1, None))).0,
        200
    );
    let (code, _) = get(&s, &format!("/api/v1/deployments/{run}/log"));
    assert_eq!(code, 404);
    let (code, _) = send(
        &a,
        "PUT",
        &url,
        &[("Content-Type", "text/plain")],
        Some(log.as_bytes()),
    );
    assert_eq!(code, 204);
    assert_eq!(
        get(&s, &format!("/api/v1/deployments/{run}/log")),
        (200, log.to_string())
    );
    let (code, _) = send(&a, "PUT", &url, &[], Some(b"second"));
    assert_eq!(code, 204);
    assert_eq!(
        get(&s, &format!("/api/v1/deployments/{run}/log")),
        (200, "second".to_string())
    );
    let (code, _) = send(&a, "PUT", &url, &[], Some(&[0xff, 0xfe, 0x00]));
    assert_eq!(code, 400);
    let big = vec![b'a'; 32 * 1024 * 1024 + 1];
    let (code, _) = send(&a, "PUT", &url, &[], Some(&big));
    assert_eq!(code, 413);
    assert_eq!(
        get(&s, &format!("/api/v1/deployments/{run}/log")),
        (200, "second".to_string())
    );
}

/// A page's event stream receives the deployment as each batch changes it.
pub fn scenario_stream(post_to: &Server, watch: &Server) {
    let mut stream = Stream::open(watch, &[]);
    let run = "stream-run";
    let events = full_run(run, 2, None);
    assert_eq!(
        post(post_to, &batch(run, "PC-SSE", events[..2].to_vec())).0,
        200
    );
    let d = stream.next_deployment();
    assert_eq!(
        (d["run"].clone(), d["state"].clone(), d["step"].clone()),
        (json!(run), json!("running"), json!(1))
    );
    assert_eq!(
        post(post_to, &batch(run, "PC-SSE", events[2..].to_vec())).0,
        200
    );
    let d = stream.next_deployment();
    assert_eq!(
        (d["state"].clone(), d["step"].clone()),
        (json!("succeeded"), json!(2))
    );
    // A batch of duplicates changes nothing and sends nothing; the next change comes next.
    assert_eq!(
        post(post_to, &batch(run, "PC-SSE", events[2..].to_vec())).1["duplicates"],
        4
    );
    let other = "stream-run-2";
    assert_eq!(
        post(
            post_to,
            &batch(other, "PC-SSE2", full_run(other, 1, None)[..1].to_vec())
        )
        .0,
        200
    );
    assert_eq!(stream.next_deployment()["run"], other);
}

#[test]
fn stream_sends_changes() {
    let (_d, s) = sqlite();
    scenario_stream(&s, &s);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_what_happened() {
    let (_d, s) = sqlite();
    let run = "metrics-run";
    let events = full_run(run, 2, Some(2));
    assert_eq!(post(&s, &batch(run, "PC-M", events.clone())).0, 200);
    assert_eq!(post(&s, &batch(run, "PC-M", events[..3].to_vec())).0, 200);
    assert_eq!(post_raw(&s, &[], b"{").0, 400);
    let r2 = "metrics-run-2";
    assert_eq!(
        post(&s, &batch(r2, "PC-M2", full_run(r2, 1, None)[..2].to_vec())).0,
        200
    );
    let (code, text) = get(&s, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(&text, "tsforge_monitor_events_stored_total"),
        (events.len() + 2) as f64
    );
    assert_eq!(metric(&text, "tsforge_monitor_events_duplicate_total"), 3.0);
    assert_eq!(
        metric(&text, "tsforge_monitor_http_requests_total{code=\"200\"}"),
        3.0
    );
    assert_eq!(
        metric(&text, "tsforge_monitor_http_requests_total{code=\"400\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "tsforge_monitor_deployments{state=\"failed\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "tsforge_monitor_deployments{state=\"running\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "tsforge_monitor_deployments{state=\"succeeded\"}"),
        0.0
    );
    assert_eq!(metric(&text, "tsforge_monitor_ingest_seconds_count"), 3.0);
    assert_eq!(
        metric(&text, "tsforge_monitor_ingest_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );
    assert!(metric(&text, "tsforge_monitor_ingest_seconds_sum") > 0.0);
    assert!(text.contains("# TYPE tsforge_monitor_ingest_seconds histogram"));
}

/// The page and its assets are served from the binary.
#[test]
fn page_is_served() {
    let (_d, s) = sqlite();
    let (code, html) = get(&s, "/");
    assert_eq!(code, 200);
    assert!(html.contains("/app.js"), "{html}");
    for p in ["/app.js", "/style.css", "/deployment.html"] {
        let (code, body) = get(&s, p);
        assert_eq!(code, 200, "{p}");
        assert!(!body.is_empty());
    }
    assert!(get(&s, "/app.js").1.contains("/api/v1/stream"));
}
