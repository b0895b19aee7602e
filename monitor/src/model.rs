//! The wire format of `docs/monitor.md`: a batch of events from one run, checked field by
//! field against `docs/events.schema.json` (compiled in, so the monitor and the runner cannot
//! disagree on the kinds or the fields), and the fold of a run's events into its deployment
//! and its steps.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// `docs/events.schema.json`, the one list of event kinds and fields.
pub const EVENTS_SCHEMA: &str = include_str!("../../docs/events.schema.json");

/// Body limit of `POST /api/v1/events`.
pub const MAX_BODY: usize = 1024 * 1024;
/// Events in one batch at most.
pub const MAX_EVENTS: usize = 500;
/// Characters in one string at most (any string of the batch).
pub const MAX_STRING: usize = 4096;
/// Body limit of `PUT /api/v1/runs/{run}/log`.
pub const MAX_LOG: usize = 32 * 1024 * 1024;

/// The fields a record may carry beyond the schema's: the idempotency key and the phase.
const EXTRA_FIELDS: &[&str] = &["key", "phase"];
const PHASES: &[&str] = &["WinPE", "FullOS"];

struct Schema {
    kinds: Vec<String>,
    required: Vec<String>,
    /// field → its schema object (`type`, `enum`, `const`).
    props: Map<String, Value>,
}

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let v: Value =
            serde_json::from_str(EVENTS_SCHEMA).expect("docs/events.schema.json is JSON");
        let props = v["properties"].as_object().cloned().unwrap_or_default();
        let kinds = props["event"]["enum"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let required = v["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Schema {
            kinds,
            required,
            props,
        }
    })
}

/// The event kinds of the schema.
pub fn kinds() -> Vec<String> {
    schema().kinds.clone()
}

/// Why a batch is refused: `400` (malformed) or `413` (over a limit).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Bad(String),
    #[error("{0}")]
    TooLarge(String),
}

/// The machine a run reports from (`docs/monitor.md`): every field may be absent or null
/// (a runner may not know its serial number), no other field is allowed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    #[serde(default)]
    pub client_guid: Option<String>,
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub macs: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub make: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
}

impl Machine {
    /// What is known of the machine after `newer` arrived: its fields, else the older ones
    /// (a batch from the deployed OS may know the computer name one from Windows PE did not).
    pub fn merged(&self, newer: &Machine) -> Machine {
        let pick = |n: &Option<String>, o: &Option<String>| n.clone().or_else(|| o.clone());
        let list =
            |n: &Vec<String>, o: &Vec<String>| if n.is_empty() { o.clone() } else { n.clone() };
        Machine {
            client_guid: pick(&newer.client_guid, &self.client_guid),
            computer_name: pick(&newer.computer_name, &self.computer_name),
            macs: list(&newer.macs, &self.macs),
            ips: list(&newer.ips, &self.ips),
            make: pick(&newer.make, &self.make),
            model: pick(&newer.model, &self.model),
            serial: pick(&newer.serial, &self.serial),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    machine: Machine,
    run: String,
    events: Vec<Value>,
}

/// One checked event: its record as received, and what ordering needs.
#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    /// `n` of the key `<run>:<n>`: the runner counts it across restarts, so it orders a run's
    /// events even when the clock jumped (a restart into a firmware clock on local time).
    pub seq: i64,
    pub time: String,
    pub epoch: f64,
    pub kind: String,
    pub record: Map<String, Value>,
}

/// A checked batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub machine: Machine,
    pub run: String,
    pub events: Vec<Event>,
}

/// Checks a request body against the contract; every error names the field and what is wrong.
pub fn parse_batch(body: &[u8]) -> Result<Batch, Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal::TooLarge(format!(
            "the body is {} bytes, more than {MAX_BODY}",
            body.len()
        )));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Refusal::Bad(format!("malformed JSON: {e}")))?;
    check_strings(&value, "")?;
    if let Some(n) = value.get("events").and_then(Value::as_array).map(Vec::len) {
        if n > MAX_EVENTS {
            return Err(Refusal::TooLarge(format!(
                "{n} events in one batch, more than {MAX_EVENTS}"
            )));
        }
    }
    let env: Envelope = serde_json::from_value(value).map_err(|e| Refusal::Bad(e.to_string()))?;
    if env.run.is_empty() || env.run.contains(['/', '?', '#']) {
        return Err(Refusal::Bad(format!(
            "run: {:?} is not a run id (empty, or with '/', '?' or '#')",
            env.run
        )));
    }
    let mut events = Vec::with_capacity(env.events.len());
    for (i, v) in env.events.into_iter().enumerate() {
        events
            .push(check_event(&env.run, v).map_err(|e| Refusal::Bad(format!("events[{i}]: {e}")))?);
    }
    Ok(Batch {
        machine: env.machine,
        run: env.run,
        events,
    })
}

fn check_strings(v: &Value, at: &str) -> Result<(), Refusal> {
    match v {
        Value::String(s) => {
            let n = s.chars().count();
            if n > MAX_STRING {
                return Err(Refusal::TooLarge(format!(
                    "{}: a string of {n} characters, more than {MAX_STRING}",
                    if at.is_empty() { "body" } else { at }
                )));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_strings(x, &format!("{at}[{i}]"))?;
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                check_strings(&Value::String(k.clone()), at)?;
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                check_strings(x, &path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => false,
    }
}

fn check_event(run: &str, v: Value) -> Result<Event, String> {
    let Value::Object(record) = v else {
        return Err("not a JSON object".into());
    };
    let s = schema();
    for f in s.required.iter().map(String::as_str).chain(["key"]) {
        if !record.contains_key(f) {
            return Err(format!("missing field `{f}`"));
        }
    }
    for (k, val) in &record {
        if EXTRA_FIELDS.contains(&k.as_str()) {
            continue;
        }
        let Some(p) = s.props.get(k) else {
            return Err(format!("unknown field `{k}`"));
        };
        if let Some(c) = p.get("const") {
            if c != val {
                return Err(format!("`{k}` is {val}, expected {c}"));
            }
        }
        if let Some(e) = p.get("enum").and_then(Value::as_array) {
            if !e.contains(val) {
                return Err(if k == "event" {
                    format!("event kind {val} is not in docs/events.schema.json")
                } else {
                    format!("`{k}` is {val}, not one of {}", Value::Array(e.clone()))
                });
            }
        }
        let ok = match p.get("type") {
            Some(Value::String(t)) => type_ok(t, val),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, val)),
            _ => true,
        };
        if !ok {
            return Err(format!("`{k}` is {val}, expected {}", p["type"]));
        }
    }
    let key = record["key"]
        .as_str()
        .ok_or("`key` is not a string")?
        .to_string();
    let seq = key
        .strip_prefix(run)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            format!("`key` {key:?} is not `<run>:<n>` with this batch's run and n ≥ 1")
        })?;
    if let Some(p) = record.get("phase") {
        if !p.as_str().is_some_and(|p| PHASES.contains(&p)) {
            return Err(format!("`phase` is {p}, expected \"WinPE\" or \"FullOS\""));
        }
    }
    let time = record["time"].as_str().unwrap_or_default().to_string();
    let epoch = rfc3339_epoch(&time).ok_or_else(|| format!("`time` {time:?} is not RFC 3339"))?;
    let kind = record["event"].as_str().unwrap_or_default().to_string();
    Ok(Event {
        key,
        seq,
        time,
        epoch,
        kind,
        record,
    })
}

/// Seconds since 1970 of an RFC 3339 time (`2026-12-07T10:00:00Z`, fractions and offsets too).
pub fn rfc3339_epoch(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..n]).parse().ok()?;
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) as f64 + frac)
}

/// Seconds since 1970 now.
pub fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Why a deployment failed: the failure screen's facts, else the last failed step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub step: Option<String>,
    pub number: Option<i64>,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
}

/// One deployment: a run on a machine (`docs/monitor.md`, `Deployment`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub run: String,
    pub client_guid: Option<String>,
    pub computer_name: Option<String>,
    pub macs: Vec<String>,
    pub ips: Vec<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub sequence: Option<String>,
    pub phase: Option<String>,
    pub state: String,
    pub step: Option<i64>,
    pub steps: Option<i64>,
    pub step_name: Option<String>,
    pub percent: Option<f64>,
    pub started: Option<String>,
    pub updated: Option<String>,
    pub ended: Option<String>,
    /// Elapsed seconds: to the end, or to now while it runs (filled when read).
    pub seconds: Option<f64>,
    pub failure: Option<Failure>,
}

impl Deployment {
    /// `seconds` as of now.
    pub fn with_elapsed(mut self) -> Self {
        let start = self.started.as_deref().and_then(rfc3339_epoch);
        let end = self
            .ended
            .as_deref()
            .and_then(rfc3339_epoch)
            .unwrap_or_else(now_epoch);
        self.seconds = start.map(|s| ((end - s).max(0.0) * 1000.0).round() / 1000.0);
        self
    }
}

/// One step of a deployment (`docs/monitor.md`, `Step`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub number: i64,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub state: String,
    pub exit_code: Option<i64>,
    pub seconds: Option<f64>,
    pub started: Option<String>,
    pub ended: Option<String>,
}

impl Step {
    /// Step `number`, started, nothing else known yet.
    fn started(number: i64) -> Step {
        Step {
            number,
            name: None,
            kind: None,
            state: "running".into(),
            exit_code: None,
            seconds: None,
            started: None,
            ended: None,
        }
    }
}

fn s(r: &Map<String, Value>, k: &str) -> Option<String> {
    r.get(k).and_then(Value::as_str).map(String::from)
}
fn i(r: &Map<String, Value>, k: &str) -> Option<i64> {
    r.get(k).and_then(Value::as_i64)
}

/// Folds a run's events, in the order of their key's `n` (then time), into its deployment
/// and steps. The deployment is recomputed from every stored event on each change, so
/// events that arrive late or out of order (a resent batch from before a restart, a
/// `run_start` after the `run_end`) land where they belong and never reset a finished run.
pub fn fold(run: &str, machine: &Machine, events: &[Event]) -> (Deployment, Vec<Step>) {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by(|a, b| a.seq.cmp(&b.seq).then(a.epoch.total_cmp(&b.epoch)));
    let mut d = Deployment {
        run: run.to_string(),
        client_guid: machine.client_guid.clone(),
        computer_name: machine.computer_name.clone(),
        macs: machine.macs.clone(),
        ips: machine.ips.clone(),
        make: machine.make.clone(),
        model: machine.model.clone(),
        serial: machine.serial.clone(),
        sequence: None,
        phase: None,
        state: "running".into(),
        step: None,
        steps: None,
        step_name: None,
        percent: None,
        started: None,
        updated: None,
        ended: None,
        seconds: None,
        failure: None,
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut last_failed: Option<Failure> = None;
    let mut reported: Option<Failure> = None;
    let mut latest = f64::MIN;
    let step_at = |steps: &mut Vec<Step>, n: i64| -> usize {
        match steps.iter().rposition(|s| s.number == n) {
            Some(p) => p,
            None => {
                steps.push(Step::started(n));
                steps.len() - 1
            }
        }
    };
    for e in order {
        let r = &e.record;
        if e.epoch > latest {
            latest = e.epoch;
            d.updated = Some(e.time.clone());
        }
        if let Some(p) = s(r, "phase") {
            d.phase = Some(p);
        }
        if d.started.is_none() && e.kind != "run_start" {
            d.started = Some(e.time.clone());
        }
        let ended = d.ended.is_some();
        match e.kind.as_str() {
            "run_start" => {
                d.started = Some(e.time.clone());
                d.sequence = s(r, "sequence").or(d.sequence);
                d.steps = i(r, "steps").or(d.steps);
                if d.client_guid.is_none() {
                    d.client_guid = s(r, "client_guid");
                }
                if !ended {
                    d.state = "running".into();
                }
            }
            "run_resume" => {
                d.sequence = s(r, "sequence").or(d.sequence);
                d.steps = i(r, "steps").or(d.steps);
                if !ended {
                    d.state = "running".into();
                }
            }
            "restart" if !ended => d.state = "restarting".into(),
            "step_start" => {
                let n = i(r, "number").unwrap_or(0);
                if !ended {
                    d.state = "running".into();
                    d.step = Some(n);
                    d.step_name = s(r, "name");
                    d.percent = None;
                }
                // A step started again (a retry, a resume after a restart) is a new entry.
                let again = steps
                    .last()
                    .is_some_and(|s| s.number == n && s.ended.is_some());
                if again || !steps.iter().any(|s| s.number == n) {
                    steps.push(Step::started(n));
                }
                let p = step_at(&mut steps, n);
                let st = &mut steps[p];
                st.name = s(r, "name").or(st.name.take());
                st.kind = s(r, "type").or(st.kind.take());
                st.started = Some(e.time.clone());
            }
            "step_progress" if !ended && d.step == i(r, "number") => {
                d.percent = r
                    .get("percent")
                    .and_then(Value::as_f64)
                    .map(|p| p.clamp(0.0, 100.0));
            }
            "step_end" => {
                let n = i(r, "number").unwrap_or(0);
                let p = step_at(&mut steps, n);
                let st = &mut steps[p];
                let failed = r.get("failed").and_then(Value::as_bool).unwrap_or(false)
                    || r.get("succeeded").and_then(Value::as_bool) == Some(false);
                st.state = if failed { "failed" } else { "succeeded" }.into();
                st.name = s(r, "name").or(st.name.take());
                st.kind = s(r, "type").or(st.kind.take());
                st.exit_code = i(r, "exit_code");
                st.seconds = r.get("seconds").and_then(Value::as_f64);
                st.ended = Some(e.time.clone());
                if failed {
                    last_failed = Some(Failure {
                        step: st.name.clone(),
                        number: Some(n),
                        exit_code: st.exit_code,
                        message: s(r, "message"),
                    });
                }
                if !ended && d.step == Some(n) {
                    d.percent = if failed { d.percent } else { Some(100.0) };
                }
            }
            "step_skip" => {
                if let Some(n) = i(r, "number") {
                    let p = step_at(&mut steps, n);
                    let st = &mut steps[p];
                    st.state = "skipped".into();
                    st.name = s(r, "name").or(st.name.take());
                    st.kind = s(r, "type").or(st.kind.take());
                }
            }
            "failure" => {
                reported = Some(Failure {
                    step: s(r, "name"),
                    number: i(r, "number"),
                    exit_code: i(r, "exit_code"),
                    message: s(r, "message"),
                });
                if d.ended.is_some() {
                    d.failure = reported.clone();
                }
            }
            "run_end" => {
                let failed = r.get("failed").and_then(Value::as_bool).unwrap_or(false)
                    || r.get("succeeded").and_then(Value::as_bool) == Some(false);
                d.ended = Some(e.time.clone());
                d.state = if failed { "failed" } else { "succeeded" }.into();
                d.failure = if failed {
                    reported
                        .clone()
                        .or_else(|| last_failed.clone())
                        .or(Some(Failure {
                            step: None,
                            number: None,
                            exit_code: None,
                            message: s(r, "message"),
                        }))
                } else {
                    None
                };
            }
            _ => {}
        }
    }
    (d, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_schema_file() {
        let k = kinds();
        for want in [
            "run_start",
            "step_end",
            "run_end",
            "step_progress",
            "failure",
        ] {
            assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_epoch("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_epoch("2026-12-07T10:00:00Z"), Some(1_796_637_600.0));
        assert_eq!(
            rfc3339_epoch("2026-12-07T11:00:00+01:00"),
            Some(1_796_637_600.0)
        );
        assert_eq!(
            rfc3339_epoch("2026-12-07T10:00:00.5Z"),
            Some(1_796_637_600.5)
        );
        assert_eq!(rfc3339_epoch("2026-12-07 10:00"), None);
        assert_eq!(rfc3339_epoch("2026-13-07T10:00:00Z"), None);
    }
}
