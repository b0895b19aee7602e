//! `smsts.log` in the CMTrace format that CMTrace.exe and OneTrace open.
//!
//! One entry per line:
//! `<![LOG[message]LOG]!><time="HH:MM:SS.mmm+000" date="MM-DD-YYYY" component="…" context="" type="1|2|3" thread="…" file="…">`
//! (`type`: 1 information, 2 warning, 3 error; the `+000` is the bias from UTC in minutes).
//! Like ConfigMgr, the file rolls over when it would exceed a size limit: the full file is
//! renamed `smsts-YYYYMMDD-HHMMSS.log` and a new one started; [`MAX_HISTORY`] old files are kept.
//!
//! [`parse`] reads such a file back (tests, `tsforge` tooling, fuzzing); it never panics.

use super::{Level, Utc};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// ConfigMgr's default `SMSTSLogMaxSize`: 1,000,000 bytes.
pub const DEFAULT_MAX_SIZE: u64 = 1_000_000;
/// Rolled-over files kept (ConfigMgr's `SMSTSLogMaxHistory` default is 1).
pub const MAX_HISTORY: usize = 1;

pub struct CmTraceWriter {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_size: u64,
    thread: u32,
}

/// Format one entry (without masking: the caller masks).
pub fn format_entry(t: &Utc, level: Level, component: &str, message: &str, thread: u32) -> String {
    // A message must not close the LOG[...] section early.
    let message = message.replace("]LOG]!>", "]LOG] !>");
    let component = component.replace('"', "'");
    format!(
        "<![LOG[{message}]LOG]!><time=\"{:02}:{:02}:{:02}.{:03}+000\" date=\"{:02}-{:02}-{:04}\" component=\"{component}\" context=\"\" type=\"{}\" thread=\"{thread}\" file=\"tsforge\">\n",
        t.hour, t.minute, t.second, t.millis, t.month, t.day, t.year, level as u8
    )
}

impl CmTraceWriter {
    pub fn open(path: &Path, max_size: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CmTraceWriter {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            max_size: max_size.max(4096),
            thread: std::process::id(),
        })
    }

    pub fn write(&mut self, level: Level, component: &str, message: &str) -> std::io::Result<()> {
        let now = Utc::now();
        let entry = format_entry(&now, level, component, message, self.thread);
        if self.size > 0 && self.size + entry.len() as u64 > self.max_size {
            self.roll(&now)?;
        }
        self.file.write_all(entry.as_bytes())?;
        // Flushed per entry: the log must survive a power cut up to the last decision.
        self.file.flush()?;
        self.size += entry.len() as u64;
        Ok(())
    }

    fn roll(&mut self, now: &Utc) -> std::io::Result<()> {
        self.file.flush()?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let stem = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("smsts");
        let mut rolled = dir.join(format!(
            "{stem}-{:04}{:02}{:02}-{:02}{:02}{:02}.log",
            now.year, now.month, now.day, now.hour, now.minute, now.second
        ));
        let mut n = 1;
        while rolled.exists() {
            rolled = dir.join(format!(
                "{stem}-{:04}{:02}{:02}-{:02}{:02}{:02}-{n}.log",
                now.year, now.month, now.day, now.hour, now.minute, now.second
            ));
            n += 1;
        }
        std::fs::rename(&self.path, &rolled)?;
        // Keep the newest MAX_HISTORY rolled files.
        let prefix = format!("{stem}-");
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".log"))
            })
            .collect();
        old.sort();
        while old.len() > MAX_HISTORY {
            let _ = std::fs::remove_file(old.remove(0));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()
    }
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub message: String,
    pub time: String,
    pub date: String,
    pub component: String,
    pub level: u8,
    pub thread: String,
}

/// Parse CMTrace text. Entries may span lines (a message with newlines). Returns the entries,
/// or the 1-based line of the first malformed entry.
pub fn parse(text: &str) -> Result<Vec<Entry>, usize> {
    let mut out = Vec::new();
    let mut rest = text;
    let line_of = |rest: &str| text[..text.len() - rest.len()].matches('\n').count() + 1;
    loop {
        let trimmed = rest.trim_start_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Ok(out);
        }
        rest = trimmed;
        let body = rest.strip_prefix("<![LOG[").ok_or_else(|| line_of(rest))?;
        let end = body.find("]LOG]!><").ok_or_else(|| line_of(rest))?;
        let message = body[..end].to_string();
        let attrs_start = &body[end + "]LOG]!><".len()..];
        let close = attrs_start.find('>').ok_or_else(|| line_of(rest))?;
        let attrs = &attrs_start[..close];
        let get = |name: &str| -> Option<String> {
            let key = format!("{name}=\"");
            let i = attrs.find(&key)? + key.len();
            let j = attrs[i..].find('"')?;
            Some(attrs[i..i + j].to_string())
        };
        let level = get("type")
            .and_then(|t| t.parse::<u8>().ok())
            .filter(|t| (0..=3).contains(t))
            .ok_or_else(|| line_of(rest))?;
        out.push(Entry {
            message,
            time: get("time").ok_or_else(|| line_of(rest))?,
            date: get("date").ok_or_else(|| line_of(rest))?,
            component: get("component").ok_or_else(|| line_of(rest))?,
            level,
            thread: get("thread").unwrap_or_default(),
        });
        rest = &attrs_start[close + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_format_is_cmtrace() {
        let t = Utc {
            year: 2026,
            month: 11,
            day: 5,
            hour: 9,
            minute: 8,
            second: 7,
            millis: 6,
        };
        let e = format_entry(&t, Level::Warning, "TSManager", "hello ]LOG]!> x", 42);
        assert_eq!(
            e,
            "<![LOG[hello ]LOG] !> x]LOG]!><time=\"09:08:07.006+000\" date=\"11-05-2026\" component=\"TSManager\" context=\"\" type=\"2\" thread=\"42\" file=\"tsforge\">\n"
        );
        let parsed = parse(&e).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].level, 2);
        assert_eq!(parsed[0].date, "11-05-2026");
    }

    #[test]
    fn rolls_over_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smsts.log");
        let mut w = CmTraceWriter::open(&path, 4096).unwrap();
        for i in 0..100 {
            w.write(
                Level::Info,
                "TSManager",
                &format!("entry {i} {}", "x".repeat(40)),
            )
            .unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1 + MAX_HISTORY, "{names:?}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        let text = std::fs::read_to_string(&path).unwrap();
        let entries = parse(&text).unwrap();
        assert_eq!(
            entries.last().unwrap().message,
            format!("entry 99 {}", "x".repeat(40))
        );
    }

    #[test]
    fn parse_rejects_garbage_with_line() {
        assert_eq!(parse("<![LOG[a]LOG]!><time=\"1\" date=\"2\" component=\"c\" context=\"\" type=\"1\" thread=\"1\" file=\"\">\nnot a log"), Err(2));
        assert_eq!(parse(""), Ok(vec![]));
    }
}
