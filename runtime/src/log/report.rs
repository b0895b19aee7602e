//! Reporting a run's events to a tsforge monitor (`docs/monitor.md`): every record the engine
//! writes to `events.jsonl` is also appended to a queue on disk in the state folder, and a
//! background thread posts the queue in batches to `POST <url>/api/v1/events`.
//!
//! - The engine only appends to the queue ([`Reporter::push`]): a monitor that is down, slow or
//!   refusing never slows or fails a step.
//! - The queue is two files in the state folder: [`QUEUE_FILE`], one event a line (its `key`
//!   `<run>:<n>` and `phase` already in it), appended to; and [`SENT_FILE`], "sent up to n",
//!   replaced atomically after each accepted batch. Reopened (after a restart, a power cut, the
//!   hand-over into the deployed OS) the events after the marker are sent again; the monitor
//!   keeps an event whose key it has already seen once only, so a batch sent twice is harmless.
//! - `n` counts from 1 for the whole run: a reopened queue goes on after the highest `n` in the
//!   file, in the marker, and the floor the caller keeps in the run's state.
//! - Bounded: at most [`MAX_EVENTS`] pending events and [`MAX_BYTES`] of them; beyond, the oldest
//!   `step_progress` events are dropped first, then the oldest events, with one warning.
//! - Answers: 2xx → sent; 401 → one warning, nothing more is sent by this runner; another 4xx
//!   except 408 and 429 → the batch will never be accepted: dropped with a warning; 408, 429,
//!   5xx, network errors → retried with a growing pause ([`BACKOFF_FIRST`] doubling to
//!   [`BACKOFF_MAX`]).
//!
//! Warnings are collected ([`Reporter::take_warnings`]) for the caller to write to smsts.log.

use crate::vars::Vars;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The queue of events for the monitor, in the state folder.
pub const QUEUE_FILE: &str = "monitor.jsonl";
/// "Sent up to n": the highest key number the monitor accepted (or that was given up).
pub const SENT_FILE: &str = "monitor.sent";
/// At most this many events wait in the queue.
pub const MAX_EVENTS: usize = 10_000;
/// At most this many bytes of events wait in the queue.
pub const MAX_BYTES: u64 = 8 << 20;
/// At most this many events in one batch (the monitor's limit).
pub const BATCH_EVENTS: usize = 500;
/// A batch's events take at most this many bytes (the monitor takes bodies of up to 1 MiB;
/// the rest is left for the machine's identity).
pub const BATCH_BYTES: usize = 900 << 10;
/// Connecting to the monitor may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole request (connect, send, answer) may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the end of a run (or a restart) waits for the queue to be sent.
pub const FLUSH_WAIT: Duration = Duration::from_secs(10);
/// The first pause after a failed batch; doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The queue file is emptied when everything in it was sent and it is larger than this.
const COMPACT_BYTES: u64 = 1 << 20;

/// The smsts.log component of the lines about the monitor.
pub const COMPONENT: &str = "Monitor";

/// The variable naming the monitor (tsforge's own), and MDT's property read when it is unset.
pub const URL_VAR: &str = "TSForgeMonitorURL";
pub const MDT_URL_VAR: &str = "EventService";
/// The runner token (a secret variable).
pub const TOKEN_VAR: &str = "TSForgeMonitorToken";

/// Where the events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL, without a trailing `/`.
    pub url: String,
    pub token: Option<String>,
}

/// The monitor the variables name: `TSForgeMonitorURL`, else `EventService`; `None` when
/// neither is set (nothing is sent).
pub fn target(vars: &Vars) -> Option<Target> {
    let url = [URL_VAR, MDT_URL_VAR]
        .iter()
        .filter_map(|n| vars.get(n))
        .map(str::trim)
        .find(|u| !u.is_empty())?;
    Some(Target {
        url: url.trim_end_matches('/').to_string(),
        token: vars
            .get(TOKEN_VAR)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
    })
}

/// Whether `url` is one the runner can post to (`http://` or `https://` and a host).
pub fn check_url(url: &str) -> Result<(), String> {
    let l = url.to_ascii_lowercase();
    let rest = l
        .strip_prefix("http://")
        .or_else(|| l.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        _ => Err(format!(
            "the monitor URL {url:?} is not an http:// or https:// URL with a host"
        )),
    }
}

/// The machine's identity sent with each batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Machine {
    pub client_guid: String,
    pub computer_name: String,
    pub macs: Vec<String>,
    pub ips: Vec<String>,
    pub make: String,
    pub model: String,
    pub serial: String,
}

impl Machine {
    /// From the run's built-in variables (`runtime/src/machine.rs` reads the facts into them,
    /// again at each resume): `_SMSTSClientGuid`; `OSDComputerName`, else `_SMSTSMachineName`;
    /// `_SMSTSMacAddresses`, `_SMSTSIPAddresses` (comma-separated); `_SMSTSMake`,
    /// `_SMSTSModel`, `_SMSTSSerialNumber`. A fact that was not read is empty.
    pub fn from_vars(vars: &Vars) -> Machine {
        let get = |n: &str| vars.get(n).unwrap_or_default().trim().to_string();
        let list = |n: &str| {
            get(n)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let name = Some(get("OSDComputerName"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| get("_SMSTSMachineName"));
        Machine {
            client_guid: get("_SMSTSClientGuid"),
            computer_name: name,
            macs: list("_SMSTSMacAddresses"),
            ips: list("_SMSTSIPAddresses"),
            make: get("_SMSTSMake"),
            model: get("_SMSTSModel"),
            serial: get("_SMSTSSerialNumber"),
        }
    }
}

/// One event waiting in the queue.
#[derive(Debug, Clone)]
struct Entry {
    n: u64,
    progress: bool,
    /// The event as one JSON text (no newline).
    line: String,
}

/// The queue on disk. Not thread-safe by itself: [`Reporter`] shares it behind a mutex.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    file: File,
    pending: VecDeque<Entry>,
    bytes: u64,
    next: u64,
    sent: u64,
    dropped: u64,
    warned_full: bool,
}

/// The `n` of a key `<run>:<n>`.
fn key_n(v: &Value) -> Option<u64> {
    v.get("key")?.as_str()?.rsplit(':').next()?.parse().ok()
}

impl Queue {
    /// Open (create) the queue in `dir`; the next key number is at least `floor`.
    /// Lines that cannot be read (a line cut by a power cut) are skipped and counted in
    /// [`Queue::unreadable`]'s answer.
    pub fn open(dir: &Path, floor: u64) -> std::io::Result<(Queue, usize)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(QUEUE_FILE);
        let sent: u64 = std::fs::read_to_string(dir.join(SENT_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut pending = VecDeque::new();
        let mut unreadable = 0;
        let mut highest = sent;
        let mut torn_tail = false;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).split(b'\n') {
                let line = line?;
                if line.is_empty() {
                    continue;
                }
                let parsed = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok());
                let Some((v, n)) = parsed.and_then(|v| key_n(&v).map(|n| (v, n))) else {
                    unreadable += 1;
                    torn_tail = true;
                    continue;
                };
                torn_tail = false;
                highest = highest.max(n);
                if n > sent {
                    pending.push_back(Entry {
                        n,
                        progress: v.get("event").and_then(Value::as_str) == Some("step_progress"),
                        line: String::from_utf8_lossy(&line).into_owned(),
                    });
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        if torn_tail {
            // The next event starts on a line of its own.
            file.write_all(b"\n")?;
        }
        let bytes = pending.iter().map(|e| e.line.len() as u64 + 1).sum();
        let mut q = Queue {
            dir: dir.to_path_buf(),
            file,
            pending,
            bytes,
            next: (highest + 1).max(floor).max(1),
            sent,
            dropped: 0,
            warned_full: false,
        };
        q.bound();
        Ok((q, unreadable))
    }

    /// The key number the next event gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Events waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Events dropped because the queue was full, since it was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Append `event` with its key (`<run>:<n>`) and `phase`; returns a warning the first time
    /// the queue is full and events are dropped.
    pub fn push(
        &mut self,
        run: &str,
        phase: &str,
        event: &Map<String, Value>,
    ) -> std::io::Result<Option<String>> {
        let n = self.next;
        let mut rec = Map::new();
        rec.insert("key".into(), Value::from(format!("{run}:{n}")));
        rec.extend(event.iter().map(|(k, v)| (k.clone(), v.clone())));
        rec.insert("phase".into(), Value::from(phase));
        let line = Value::Object(rec).to_string();
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.next += 1;
        self.bytes += bytes.len() as u64;
        self.pending.push_back(Entry {
            n,
            progress: event.get("event").and_then(Value::as_str) == Some("step_progress"),
            line,
        });
        let before = self.dropped;
        self.bound();
        if self.dropped > before && !self.warned_full {
            self.warned_full = true;
            return Ok(Some(format!(
                "The monitor's queue is full ({MAX_EVENTS} events or {} MiB waiting): the \
                 oldest progress events, then the oldest events, are dropped from now on \
                 (the monitor is down or refusing the events; events.jsonl keeps them all)",
                MAX_BYTES >> 20
            )));
        }
        Ok(None)
    }

    /// Drop events beyond the limits: the oldest progress events first, then the oldest.
    fn bound(&mut self) {
        while self.pending.len() > MAX_EVENTS || self.bytes > MAX_BYTES {
            let i = self.pending.iter().position(|e| e.progress).unwrap_or(0);
            let Some(e) = self.pending.remove(i) else {
                break;
            };
            self.bytes -= e.line.len() as u64 + 1;
            self.dropped += 1;
        }
    }

    /// The next batch: the oldest events, at most [`BATCH_EVENTS`] and [`BATCH_BYTES`] (always
    /// at least one). Returns the events' texts and the highest `n` among them.
    fn batch(&self) -> Option<(Vec<String>, u64)> {
        let mut out = Vec::new();
        let mut size = 0;
        let mut upto = 0;
        for e in self.pending.iter().take(BATCH_EVENTS) {
            if !out.is_empty() && size + e.line.len() + 1 > BATCH_BYTES {
                break;
            }
            size += e.line.len() + 1;
            upto = e.n;
            out.push(e.line.clone());
        }
        (!out.is_empty()).then_some((out, upto))
    }

    /// The events up to `upto` are done with (accepted, or given up): the marker is replaced
    /// atomically, and the queue file emptied when nothing waits and it has grown large.
    pub fn mark_sent(&mut self, upto: u64) -> std::io::Result<()> {
        while self.pending.front().is_some_and(|e| e.n <= upto) {
            let e = self.pending.pop_front().expect("checked");
            self.bytes -= e.line.len() as u64 + 1;
        }
        self.sent = self.sent.max(upto);
        let marker = self.dir.join(SENT_FILE);
        let tmp = self.dir.join(format!("{SENT_FILE}.tmp"));
        crate::sys::write_atomic(&marker, &tmp, format!("{}\n", self.sent).as_bytes(), false)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        if self.pending.is_empty() && self.file.metadata()?.len() > COMPACT_BYTES {
            // Keys go on from the marker (and the run's state), so nothing is lost.
            self.file.set_len(0)?;
        }
        Ok(())
    }
}

/// What the sending thread and the engine share.
struct Inner {
    queue: Queue,
    target: Target,
    run: String,
    machine: Machine,
    warnings: Vec<String>,
    /// The monitor answered 401: nothing more is sent.
    unauthorized: bool,
    /// Send now, do not wait out the pause (a flush).
    hurry: bool,
    stop: bool,
    /// Attempts finished, and whether the last one failed.
    attempts: u64,
    last_failed: bool,
    /// The last failure's text, for the flush's message.
    last_error: String,
}

struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A queue and the thread that sends it.
pub struct Reporter {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    phase: String,
}

/// How a flush ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flushed {
    /// Events still waiting (kept on disk for the next start).
    pub left: usize,
    /// Why they are left, when some are.
    pub why: String,
}

impl Reporter {
    /// Open the queue in `dir` (next key at least `floor`) and start the sending thread.
    /// Returns the reporter and the number of unreadable queue lines skipped.
    pub fn start(
        dir: &Path,
        floor: u64,
        target: Target,
        run: &str,
        phase: &str,
        machine: Machine,
    ) -> std::io::Result<(Reporter, usize)> {
        let (queue, unreadable) = Queue::open(dir, floor)?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                queue,
                target,
                run: run.to_string(),
                machine,
                warnings: Vec::new(),
                unauthorized: false,
                hurry: false,
                stop: false,
                attempts: 0,
                last_failed: false,
                last_error: String::new(),
            }),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("monitor".into())
            .spawn(move || send_loop(&s))?;
        Ok((
            Reporter {
                shared,
                thread: Some(thread),
                phase: phase.to_string(),
            },
            unreadable,
        ))
    }

    /// Queue one event (an events.jsonl record); returns a warning to log, if any.
    pub fn push(&self, event: &Map<String, Value>) -> Option<String> {
        let mut g = self.shared.lock();
        let run = g.run.clone();
        let r = match g.queue.push(&run, &self.phase, event) {
            Ok(w) => w,
            Err(e) => Some(format!(
                "Could not queue an event for the monitor in {}: {e}",
                g.queue.dir.display()
            )),
        };
        drop(g);
        self.shared.wake.notify_all();
        r
    }

    /// The key number the next event gets (kept in the run's state).
    pub fn next(&self) -> u64 {
        self.shared.lock().queue.next()
    }

    /// Whether the monitor refused the runner token (nothing more is sent).
    pub fn unauthorized(&self) -> bool {
        self.shared.lock().unauthorized
    }

    /// Events waiting.
    pub fn pending(&self) -> usize {
        self.shared.lock().queue.pending()
    }

    /// The machine's identity and the monitor as the run's variables say now.
    pub fn update(&self, target: Target, machine: Machine) {
        let mut g = self.shared.lock();
        if g.target != target {
            g.unauthorized = false;
        }
        g.target = target;
        g.machine = machine;
    }

    /// Warnings since the last call (to be written to smsts.log).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().warnings)
    }

    /// Wait until the queue is sent, at most `wait`; gives up early when an attempt made
    /// during the wait fails (the monitor is down or refusing: waiting longer would only delay
    /// the run). What is left stays on disk.
    pub fn flush(&self, wait: Duration) -> Flushed {
        let deadline = Instant::now() + wait;
        let mut g = self.shared.lock();
        let start = g.attempts;
        g.hurry = true;
        self.shared.wake.notify_all();
        loop {
            if g.queue.pending() == 0 {
                return Flushed {
                    left: 0,
                    why: String::new(),
                };
            }
            let why = if g.unauthorized {
                Some("the monitor refused the runner token (401)".to_string())
            } else if g.attempts > start && g.last_failed {
                Some(g.last_error.clone())
            } else if Instant::now() >= deadline {
                Some(format!(
                    "the monitor did not take them within {} s",
                    wait.as_secs()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                g.hurry = false;
                return Flushed {
                    left: g.queue.pending(),
                    why,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            g = self
                .shared
                .wake
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// `PUT <url>/api/v1/runs/<run>/log` with `text` (the run's smsts.log).
    pub fn upload_log(&self, text: &[u8]) -> Result<(), String> {
        let (target, run) = {
            let g = self.shared.lock();
            (g.target.clone(), g.run.clone())
        };
        let url = format!("{}/api/v1/runs/{}/log", target.url, run);
        match request(&target, "PUT", &url, "text/plain; charset=utf-8", text) {
            Ok(s) if (200..300).contains(&s) => Ok(()),
            Ok(s) => Err(format!("PUT {url}: the monitor answered {s}")),
            Err(e) => Err(format!("PUT {url}: {e}")),
        }
    }
}

impl Drop for Reporter {
    /// Stops the sender without waiting for it: a request in flight to a monitor that does not
    /// answer would otherwise hold the runner up to [`REQUEST_TIMEOUT`] after the flush gave up.
    /// Nothing is lost: the queue file is only appended to by the engine, and the marker is
    /// replaced atomically.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        drop(self.thread.take());
    }
}

/// One HTTP request to the monitor: the status, or why there was none.
fn request(
    target: &Target,
    method: &str,
    url: &str,
    ctype: &str,
    body: &[u8],
) -> Result<u16, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let auth = target.token.as_ref().map(|t| format!("Bearer {t}"));
    let resp = if method == "PUT" {
        let mut r = agent.put(url).header("Content-Type", ctype);
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        r.send(body)
    } else {
        let mut r = agent.post(url).header("Content-Type", ctype);
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        r.send(body)
    };
    resp.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

/// The body of `POST /api/v1/events`.
fn body(machine: &Machine, run: &str, events: &[String]) -> Vec<u8> {
    let mut out = String::from("{\"machine\":");
    out.push_str(&serde_json::to_string(machine).unwrap_or_else(|_| "{}".into()));
    out.push_str(",\"run\":");
    out.push_str(&Value::from(run).to_string());
    out.push_str(",\"events\":[");
    out.push_str(&events.join(","));
    out.push_str("]}");
    out.into_bytes()
}

fn send_loop(shared: &Shared) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        let mut g = shared.lock();
        while !g.stop && (g.queue.pending() == 0 || g.unauthorized) {
            g = shared.wake.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        if g.stop {
            return;
        }
        let Some((events, upto)) = g.queue.batch() else {
            continue;
        };
        let target = g.target.clone();
        let data = body(&g.machine, &g.run, &events);
        drop(g);
        let url = format!("{}/api/v1/events", target.url);
        let result = request(&target, "POST", &url, "application/json", &data);
        let mut g = shared.lock();
        g.attempts += 1;
        let mut failed = None;
        match result {
            Ok(s) if (200..300).contains(&s) => {
                if let Err(e) = g.queue.mark_sent(upto) {
                    g.warnings.push(format!(
                        "Could not record the events sent to the monitor: {e}"
                    ));
                }
            }
            Ok(401) => {
                g.unauthorized = true;
                g.warnings.push(format!(
                    "The monitor at {} refused the runner token (401); no more events are sent \
                     to it by this run (they stay queued in the state folder)",
                    target.url
                ));
            }
            Ok(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                g.warnings.push(format!(
                    "The monitor at {} refused a batch of {} events ({s}); it would never accept \
                     them, so they are dropped (events.jsonl keeps them)",
                    target.url,
                    events.len()
                ));
                if let Err(e) = g.queue.mark_sent(upto) {
                    g.warnings
                        .push(format!("Could not record the events dropped: {e}"));
                }
            }
            Ok(s) => failed = Some(format!("POST {url}: the monitor answered {s}")),
            Err(e) => failed = Some(format!("POST {url}: {e}")),
        }
        g.last_failed = failed.is_some();
        shared.wake.notify_all();
        match failed {
            None => backoff = BACKOFF_FIRST,
            Some(e) => {
                g.last_error = e;
                // Wait out the pause, unless stopped; a flush asks for one attempt at once.
                let until = Instant::now() + backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                g.hurry = false;
                while !g.stop && !g.hurry {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    g = shared
                        .wake
                        .wait_timeout(g, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str) -> Map<String, Value> {
        match json!({"schema": 1, "time": "2026-12-07T10:00:00.000Z", "event": kind}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn lines(dir: &Path) -> Vec<Value> {
        std::fs::read_to_string(dir.join(QUEUE_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn events_persist_with_key_and_phase_and_resume_after_reopening() {
        let d = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(d.path(), 0).unwrap();
        for k in ["run_start", "step_start", "step_end"] {
            q.push("R", "WinPE", &ev(k)).unwrap();
        }
        let l = lines(d.path());
        assert_eq!(l[0]["key"], "R:1");
        assert_eq!(l[2]["key"], "R:3");
        assert_eq!(l[1]["phase"], "WinPE");
        assert_eq!(l[1]["event"], "step_start");
        let (batch, upto) = q.batch().unwrap();
        assert_eq!((batch.len(), upto), (3, 3));
        q.mark_sent(2).unwrap();
        drop(q);
        // Reopened: only the unsent event waits, and keys go on.
        let (mut q, bad) = Queue::open(d.path(), 0).unwrap();
        assert_eq!(bad, 0);
        assert_eq!(q.pending(), 1);
        assert_eq!(q.next(), 4);
        q.push("R", "FullOS", &ev("run_end")).unwrap();
        let (batch, upto) = q.batch().unwrap();
        assert_eq!(upto, 4);
        assert!(batch[0].contains("\"R:3\"") && batch[1].contains("\"R:4\""));
    }

    #[test]
    fn keys_never_repeat_across_a_restart_even_when_everything_was_sent() {
        let d = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(d.path(), 0).unwrap();
        q.push("R", "WinPE", &ev("run_start")).unwrap();
        q.push("R", "WinPE", &ev("restart")).unwrap();
        q.mark_sent(2).unwrap();
        drop(q);
        // The queue file lost (a state copy without it): the floor kept in the run's state.
        std::fs::remove_file(d.path().join(QUEUE_FILE)).unwrap();
        let (q, _) = Queue::open(d.path(), 0).unwrap();
        assert_eq!(q.next(), 3, "the marker says 2 were sent");
        std::fs::remove_file(d.path().join(SENT_FILE)).unwrap();
        let (q, _) = Queue::open(d.path(), 3).unwrap();
        assert_eq!(q.next(), 3, "the floor from the run's state");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_event_starts_a_new_line() {
        let d = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(d.path(), 0).unwrap();
        q.push("R", "WinPE", &ev("run_start")).unwrap();
        drop(q);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.path().join(QUEUE_FILE))
            .unwrap();
        f.write_all(b"{\"key\":\"R:2\",\"ev").unwrap();
        drop(f);
        let (mut q, bad) = Queue::open(d.path(), 0).unwrap();
        assert_eq!((bad, q.pending(), q.next()), (1, 1, 2));
        q.push("R", "WinPE", &ev("step_start")).unwrap();
        drop(q);
        let (q, bad) = Queue::open(d.path(), 0).unwrap();
        assert_eq!((bad, q.pending(), q.next()), (1, 2, 3));
    }

    #[test]
    fn the_queue_is_bounded_dropping_progress_events_first_with_one_warning() {
        let d = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(d.path(), 0).unwrap();
        q.push("R", "WinPE", &ev("run_start")).unwrap();
        let mut warnings = Vec::new();
        for i in 0..MAX_EVENTS + 50 {
            let kind = if i % 2 == 0 {
                "step_progress"
            } else {
                "step_start"
            };
            if let Some(w) = q.push("R", "WinPE", &ev(kind)).unwrap() {
                warnings.push(w);
            }
        }
        assert_eq!(q.pending(), MAX_EVENTS);
        assert_eq!(q.dropped(), 51);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("queue is full"), "{}", warnings[0]);
        // The oldest progress events went; run_start (the oldest of all) stayed.
        assert!(q.pending[0].line.contains("run_start"));
        assert!(!q.pending[1].progress);
        // Bytes bounded too, and reopening keeps the bound.
        drop(q);
        let (q, _) = Queue::open(d.path(), 0).unwrap();
        assert_eq!(q.pending(), MAX_EVENTS);
        assert!(q.bytes <= MAX_BYTES);
    }

    #[test]
    fn a_batch_is_at_most_500_events() {
        let d = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(d.path(), 0).unwrap();
        for _ in 0..1200 {
            q.push("R", "WinPE", &ev("step_start")).unwrap();
        }
        let (b, upto) = q.batch().unwrap();
        assert_eq!((b.len(), upto), (BATCH_EVENTS, 500));
        q.mark_sent(upto).unwrap();
        let (b, upto) = q.batch().unwrap();
        assert_eq!((b.len(), upto), (BATCH_EVENTS, 1000));
        assert_eq!(
            std::fs::read_to_string(d.path().join(SENT_FILE)).unwrap(),
            "500\n"
        );
    }

    #[test]
    fn the_monitor_is_named_by_its_variable_else_mdts_event_service() {
        let mut v = Vars::new();
        assert_eq!(target(&v), None);
        v.set("EventService", "http://mdt:9800/");
        assert_eq!(target(&v).unwrap().url, "http://mdt:9800");
        v.set("TSForgeMonitorURL", "http://mon:9800");
        v.set("TSForgeMonitorToken", "tok");
        let t = target(&v).unwrap();
        assert_eq!(
            (t.url.as_str(), t.token.as_deref()),
            ("http://mon:9800", Some("tok"))
        );
        assert!(v.is_secret("TSForgeMonitorToken"));
        assert!(check_url("http://mon:9800").is_ok());
        assert!(check_url("mon:9800").is_err());
    }
}
