//! Logs of a run: `smsts.log` in CMTrace format (`cmtrace`), `events.jsonl` for machines
//! (`events`), and the console. [`Logger`] writes all three and masks secret values first.
//!
//! What is masked: *values* — command lines, program output, messages from steps, anything
//! that may hold a variable's value — with [`mask_secrets`]. What is not: *names* — the names
//! of steps, groups and sequences, which the engine passes apart ([`Part::Text`], and the
//! [`NAME_FIELDS`] of events) — so a secret whose value is also a word ("OSDisk") does not turn
//! "Record OSDisk" into "Record ********". See docs/engine.md, *Secrets in logs*.
//!
//! Dates are computed here from `SystemTime` with the well-known days-from-civil conversion
//! (H. Hinnant's algorithm) instead of pulling a date crate into the runner for two formats.
//! Times are UTC: CMTrace's `time="HH:MM:SS.mmm+000"` carries the bias, so readers show the
//! right instant; asking the OS for the local offset is not sound in a multi-threaded process.

pub mod cmtrace;
pub mod events;
pub mod report;
pub mod share;

use crate::vars::mask_secrets;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Severity of a log entry, as CMTrace's `type` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info = 1,
    Warning = 2,
    Error = 3,
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) for days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Utc {
    pub fn from_system(t: SystemTime) -> Utc {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = d.as_secs() as i64;
        let (year, month, day) = civil_from_days(secs.div_euclid(86400));
        let rem = secs.rem_euclid(86400);
        Utc {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: d.subsec_millis(),
        }
    }
    pub fn now() -> Utc {
        Utc::from_system(SystemTime::now())
    }
    /// RFC 3339, e.g. `2026-11-25T10:00:00.123Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// One piece of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// Written as it is: tsforge's own words, the names of steps, groups and sequences (text
    /// of the sequence file, not values), numbers, step type names.
    Text(&'a str),
    /// Masked ([`mask_secrets`]): anything that may hold a variable's value.
    Value(&'a str),
}

/// The fields of events.jsonl records that hold names (never masked); every other string field
/// is a value.
pub const NAME_FIELDS: &[&str] = &["name", "sequence", "type", "kind"];

/// Where a run's logs go, and how the console is written.
pub struct Logger {
    smsts: cmtrace::CmTraceWriter,
    events: events::EventWriter,
    secrets: Vec<String>,
    console: Console,
    log_dir: PathBuf,
    /// The monitor every event is also queued for (`report`), when the run names one.
    monitor: Option<report::Reporter>,
}

/// Console style: redrawn status line on a terminal, plain lines otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Terminal,
    Plain,
    Quiet,
}

impl Console {
    pub fn detect() -> Console {
        if std::io::stderr().is_terminal() {
            Console::Terminal
        } else {
            Console::Plain
        }
    }
}

impl Logger {
    /// Open (append to) `smsts.log` and `events.jsonl` in `log_dir`, creating it.
    pub fn open(log_dir: &Path, max_log_size: u64, console: Console) -> std::io::Result<Logger> {
        std::fs::create_dir_all(log_dir)?;
        Ok(Logger {
            smsts: cmtrace::CmTraceWriter::open(&log_dir.join("smsts.log"), max_log_size)?,
            events: events::EventWriter::open(&log_dir.join("events.jsonl"))?,
            secrets: Vec::new(),
            console,
            log_dir: log_dir.to_path_buf(),
            monitor: None,
        })
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Replace the set of secret values masked from now on.
    pub fn set_secrets(&mut self, secrets: Vec<String>) {
        self.secrets = secrets;
    }

    /// Mask one more secret value from now on (a password a boot hook set).
    pub fn add_secret(&mut self, value: String) {
        if !value.is_empty() && !self.secrets.contains(&value) {
            self.secrets.push(value);
        }
    }

    /// `text` as a value: its secrets masked.
    pub fn mask(&self, text: &str) -> String {
        mask_secrets(text, &self.secrets)
    }

    /// The parts of a line joined, values masked.
    pub fn render(&self, parts: &[Part]) -> String {
        parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.to_string(),
                Part::Value(v) => self.mask(v),
            })
            .collect()
    }

    /// One smsts.log entry whose whole message is a value (masked). Write errors are reported
    /// on stderr once per entry and do not stop the run: a full log disk must not fail a
    /// deployment half-way.
    pub fn log(&mut self, level: Level, component: &str, message: &str) {
        self.log_parts(level, component, &[Part::Value(message)]);
    }

    /// One smsts.log entry made of names and words ([`Part::Text`], written as they are) and
    /// values ([`Part::Value`], masked).
    pub fn log_parts(&mut self, level: Level, component: &str, parts: &[Part]) {
        let msg = self.render(parts);
        if let Err(e) = self.smsts.write(level, component, &msg) {
            eprintln!("tsforge: cannot write smsts.log: {e}");
        }
        if level != Level::Info {
            match self.console {
                Console::Terminal => eprintln!("\r\x1b[2K{msg}"),
                Console::Plain => eprintln!("{msg}"),
                Console::Quiet => {}
            }
        }
    }

    /// One events.jsonl record: string fields masked, except the names ([`NAME_FIELDS`]).
    pub fn event(&mut self, kind: &str, mut fields: serde_json::Map<String, serde_json::Value>) {
        for (k, v) in fields.iter_mut() {
            if let serde_json::Value::String(s) = v {
                if !NAME_FIELDS.contains(&k.as_str()) {
                    *s = mask_secrets(s, &self.secrets);
                }
            }
        }
        let rec = events::EventWriter::record(kind, fields);
        if let Err(e) = self.events.write_record(&rec) {
            eprintln!("tsforge: cannot write events.jsonl: {e}");
        }
        if let Some(w) = self.monitor.as_ref().and_then(|m| m.push(&rec)) {
            self.log(Level::Warning, report::COMPONENT, &w);
        }
        self.monitor_warnings();
    }

    /// Queue every event for `monitor` from now on (replacing the one before, if any).
    pub fn set_monitor(&mut self, monitor: Option<report::Reporter>) {
        self.monitor = monitor;
    }

    pub fn monitor(&self) -> Option<&report::Reporter> {
        self.monitor.as_ref()
    }

    /// The monitor's warnings (refused batches, a refused token) into smsts.log.
    pub fn monitor_warnings(&mut self) {
        let warnings = self
            .monitor
            .as_ref()
            .map(|m| m.take_warnings())
            .unwrap_or_default();
        for w in warnings {
            self.log(Level::Warning, report::COMPONENT, &w);
        }
    }

    /// A progress line for a person: redrawn on a terminal, one plain line otherwise. `name`
    /// is the step's name, written as it is.
    pub fn progress(&mut self, index: usize, total: usize, name: &str, elapsed: Duration) {
        let secs = elapsed.as_secs();
        let line = format!(
            "[{index}/{total}] {name} ({:02}:{:02}:{:02})",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        );
        match self.console {
            Console::Terminal => {
                let mut e = std::io::stderr().lock();
                let _ = write!(e, "\r\x1b[2K{line}");
                let _ = e.flush();
            }
            Console::Plain => eprintln!("{line}"),
            Console::Quiet => {}
        }
    }

    /// A line for a person on the console, all of it a value (never a secret).
    pub fn say(&mut self, text: &str) {
        self.say_parts(&[Part::Value(text)]);
    }

    /// A line for a person on the console, made of names and values as [`Logger::log_parts`].
    pub fn say_parts(&mut self, parts: &[Part]) {
        let text = self.render(parts);
        match self.console {
            Console::Terminal => eprintln!("\r\x1b[2K{text}"),
            Console::Plain => eprintln!("{text}"),
            Console::Quiet => {}
        }
    }

    /// Flush and fsync both files.
    pub fn sync(&mut self) {
        let _ = self.smsts.sync();
        let _ = self.events.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for (y, m, d, days) in [(1970, 1, 1, 0), (2000, 3, 1, 11017), (2026, 11, 25, 20782)] {
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(civil_from_days(days), (y, m, d));
        }
    }

    #[test]
    fn utc_formatting() {
        let t = UNIX_EPOCH + Duration::from_millis(20782 * 86_400_000 + 3_723_045);
        assert_eq!(Utc::from_system(t).rfc3339(), "2026-11-25T01:02:03.045Z");
    }
}
