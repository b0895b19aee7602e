//! Load generator for bench/monitor/run.sh: RUNNERS simulated runners, each posting a full
//! deployment (run_start, STEPS steps started and ended, run_end) to a monitor at the same
//! time, retrying whatever got no answer (the monitor is restarted in the middle), then
//! checking through the API that every event is stored exactly once.
//!
//!   cargo run --release -p tsforge-monitor --example loadgen -- http://127.0.0.1:9800 200 12

use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn event(run: &str, n: u32, kind: &str, extra: Value) -> Value {
    let mut e = json!({"key": format!("{run}:{n}"), "schema": 1,
        "time": format!("2026-12-07T10:{:02}:{:02}Z", n / 60, n % 60), "event": kind, "phase": "WinPE"});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// The deployment's batches as a runner sends them: one per step (start and end together).
fn batches(run: &str, i: usize, steps: u32) -> Vec<String> {
    let machine = json!({"client_guid": format!("GUID:{i}"), "computer_name": format!("LOAD-{i:03}"),
        "macs": [format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256)], "ips": [], "make": "QEMU",
        "model": "Standard PC", "serial": format!("S{i}")});
    let mut out = vec![vec![event(
        run,
        1,
        "run_start",
        json!({"sequence": "Load", "steps": steps}),
    )]];
    let mut n = 2;
    for s in 1..=steps {
        out.push(vec![
            event(run, n, "step_start", json!({"number": s, "name": format!("Step {s}"), "type": "SMS_TaskSequence_RunCommandLineAction"})),
            event(run, n + 1, "step_end", json!({"number": s, "name": format!("Step {s}"), "exit_code": 0, "succeeded": true, "seconds": 0.1})),
        ]);
        n += 2;
    }
    out.push(vec![event(
        run,
        n,
        "run_end",
        json!({"succeeded": true, "steps_run": steps}),
    )]);
    out.into_iter()
        .map(|events| json!({"machine": machine, "run": run, "events": events}).to_string())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or("http://127.0.0.1:9800".into());
    let runners: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let steps: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(12);
    let token = std::env::var("TSFORGE_MONITOR_TOKEN").ok();
    let per_run = 2 + 2 * steps as usize;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let t0 = Instant::now();
    let threads: Vec<_> = (0..runners)
        .map(|i| {
            let base = base.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let run = format!("load-{stamp}-{i:03}");
                let mut latencies = Vec::new();
                let (mut stored, mut dups, mut retries) = (0u64, 0u64, 0u64);
                for body in batches(&run, i, steps) {
                    loop {
                        let start = Instant::now();
                        let mut req = agent
                            .post(&format!("{base}/api/v1/events"))
                            .content_type("application/json");
                        if let Some(t) = &token {
                            req = req.header("Authorization", &format!("Bearer {t}"));
                        }
                        match req.send(body.as_bytes()) {
                            Ok(mut r) if r.status() == 200 => {
                                latencies.push(start.elapsed());
                                let v: Value =
                                    serde_json::from_str(&r.body_mut().read_to_string().unwrap())
                                        .unwrap();
                                stored += v["stored"].as_u64().unwrap();
                                dups += v["duplicates"].as_u64().unwrap();
                                break;
                            }
                            Ok(r) if r.status().is_client_error() => {
                                panic!("the monitor refused a batch: {}", r.status())
                            }
                            _ => {
                                retries += 1;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                }
                (run, latencies, stored, dups, retries)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = t0.elapsed().as_secs_f64();
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.1.iter().copied()).collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let stored: u64 = results.iter().map(|r| r.2).sum();
    let dups: u64 = results.iter().map(|r| r.3).sum();
    let retries: u64 = results.iter().map(|r| r.4).sum();
    let total = (runners * per_run) as u64;
    println!(
        "runners {runners}, events {total}, batches {}, in {took:.2} s",
        lat.len()
    );
    println!("events/s {:.0}", total as f64 / took);
    println!(
        "latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "answers: stored {stored}, duplicates {dups} (resent after the restart), retries {retries}"
    );
    // Exactly once: every run's events, by key, in the database.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut bad = 0;
    for (run, ..) in &results {
        let mut r = agent
            .get(&format!("{base}/api/v1/deployments/{run}/events"))
            .call()
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let keys: std::collections::BTreeSet<String> = v["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["key"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let n = v["events"].as_array().map_or(0, Vec::len);
        if n != per_run || keys.len() != per_run {
            eprintln!(
                "{run}: {n} events stored, {} distinct keys, expected {per_run}",
                keys.len()
            );
            bad += 1;
        }
    }
    if stored != total || bad > 0 {
        eprintln!("FAILED: stored {stored} of {total}, {bad} runs wrong");
        std::process::exit(1);
    }
    println!("check: every one of the {total} events stored exactly once");
}
