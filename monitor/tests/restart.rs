//! The monitor restarted (same SQLite file, same address) while runners post: runners retry
//! what did not get an answer, and every event ends up stored exactly once.

use crate::common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Posts `events` in batches of 3, retrying a batch until it gets a 200 (as the runner does).
fn runner(base: String, run: String, events: Vec<Value>) -> (u64, u64) {
    let a = agent();
    let (mut stored, mut dup) = (0, 0);
    for chunk in events.chunks(3) {
        let body = batch(&run, "PC-R", chunk.to_vec()).to_string();
        loop {
            let r = a
                .post(&format!("{base}/api/v1/events"))
                .content_type("application/json")
                .send(body.as_bytes());
            match r {
                Ok(mut res) if res.status() == 200 => {
                    let v: Value =
                        serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
                    stored += v["stored"].as_u64().unwrap();
                    dup += v["duplicates"].as_u64().unwrap();
                    break;
                }
                Ok(res) if res.status().is_client_error() => panic!("refused: {}", res.status()),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // A runner's batches come as its steps end: spread out, so the restart falls mid-run.
        std::thread::sleep(Duration::from_millis(25));
    }
    (stored, dup)
}

#[test]
fn restart_while_posting_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(dir.path());
    let s = Server::start(config.clone());
    let addr = s.addr;
    let base = s.base.clone();
    let runs: Vec<(String, Vec<Value>)> = (0..20)
        .map(|i| {
            let run = format!("restart-run-{i}");
            let ev = full_run(&run, 12, None);
            (run, ev)
        })
        .collect();
    let total: usize = runs.iter().map(|r| r.1.len()).sum();
    let started = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = runs
        .iter()
        .cloned()
        .map(|(run, ev)| {
            let base = base.clone();
            let started = started.clone();
            std::thread::spawn(move || {
                started.store(true, Ordering::SeqCst);
                runner(base, run, ev)
            })
        })
        .collect();
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // Stop as soon as the first instance has stored something.
    let first_stored = || {
        let (_, m) = get(&s, "/metrics");
        m.lines()
            .find_map(|l| l.strip_prefix("tsforge_monitor_events_stored_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    while first_stored() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.stop();
    let mut c2 = config;
    c2.listen = addr;
    let s = Server::start(c2);
    let (mut stored, mut dup) = (0, 0);
    for t in threads {
        let (a, b) = t.join().unwrap();
        stored += a;
        dup += b;
    }
    // Every event stored once: what the answers say and what the database holds.
    assert_eq!(stored as usize, total, "stored answers (duplicates {dup})");
    let mut in_db = 0;
    for (run, ev) in &runs {
        let got = get_json(&s, &format!("/api/v1/deployments/{run}/events"));
        let keys: Vec<&str> = got["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap())
            .collect();
        let unique: HashSet<&&str> = keys.iter().collect();
        assert_eq!(keys.len(), ev.len(), "{run}");
        assert_eq!(unique.len(), ev.len(), "{run}");
        in_db += keys.len();
        let d = get_json(&s, &format!("/api/v1/deployments/{run}"));
        assert_eq!(d["deployment"]["state"], "succeeded");
    }
    assert_eq!(in_db, total);
    // The restart happened while posting: the second instance stored some of it.
    let (_, m) = get(&s, "/metrics");
    let second: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("tsforge_monitor_events_stored_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        second > 0.0 && (second as usize) < total,
        "second instance stored {second} of {total}"
    );
}

/// Migrations run once at start and are recorded; a database from a newer tsforge is refused
/// with its version named, and left as it was.
#[test]
fn migrations_are_recorded_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(dir.path());
    Server::start(config.clone()).stop();
    Server::start(config.clone()).stop();
    let db = dir.path().join("monitor.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    let versions: Vec<i64> = c
        .prepare("SELECT version FROM migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, [1]);
    c.execute(
        "INSERT INTO migrations (version, applied) VALUES (99, 'later')",
        [],
    )
    .unwrap();
    drop(c);
    let err = format!("{:#}", Server::try_start(config).err().expect("refused"));
    assert!(
        err.contains("schema version 99, newer than this tsforge (1)"),
        "{err}"
    );
    assert!(err.contains("monitor.db"), "{err}");
}
