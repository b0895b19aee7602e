//! `/metrics` in Prometheus' text format, kept with atomics (no metrics library: five series).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the ingest latency histogram's buckets.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    stored: AtomicU64,
    duplicates: AtomicU64,
    /// (status code, count), few codes: a small list.
    requests: Mutex<Vec<(u16, u64)>>,
    buckets: [AtomicU64; 13],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn request(&self, code: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        match r.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => {
                r.push((code, 1));
                r.sort();
            }
        }
    }

    pub fn ingested(&self, stored: u64, duplicates: u64, took: Duration) {
        self.stored.fetch_add(stored, Relaxed);
        self.duplicates.fetch_add(duplicates, Relaxed);
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// The text of `/metrics`; `states` are the deployments per state, read from the database
    /// (so every instance sharing it reports the same gauge).
    pub fn render(&self, states: &[(String, i64)]) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP tsforge_monitor_events_stored_total Events stored by this instance."
        );
        let _ = writeln!(o, "# TYPE tsforge_monitor_events_stored_total counter");
        let _ = writeln!(
            o,
            "tsforge_monitor_events_stored_total {}",
            self.stored.load(Relaxed)
        );
        let _ = writeln!(o, "# HELP tsforge_monitor_events_duplicate_total Events received again (same run and key) and not stored.");
        let _ = writeln!(o, "# TYPE tsforge_monitor_events_duplicate_total counter");
        let _ = writeln!(
            o,
            "tsforge_monitor_events_duplicate_total {}",
            self.duplicates.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP tsforge_monitor_http_requests_total HTTP requests answered, by status code."
        );
        let _ = writeln!(o, "# TYPE tsforge_monitor_http_requests_total counter");
        for (code, n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "tsforge_monitor_http_requests_total{{code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP tsforge_monitor_deployments Deployments in the database, by state."
        );
        let _ = writeln!(o, "# TYPE tsforge_monitor_deployments gauge");
        for state in ["running", "restarting", "succeeded", "failed"] {
            let n = states
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(o, "tsforge_monitor_deployments{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP tsforge_monitor_ingest_seconds Time to check and store one batch of events."
        );
        let _ = writeln!(o, "# TYPE tsforge_monitor_ingest_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "tsforge_monitor_ingest_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            o,
            "tsforge_monitor_ingest_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "tsforge_monitor_ingest_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "tsforge_monitor_ingest_seconds_count {count}");
        o
    }
}
