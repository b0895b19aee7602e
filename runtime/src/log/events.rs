//! `events.jsonl`: one JSON object per line for machines (dashboards, `tsforge try`, tests).
//!
//! Every record has `schema` (the version of this format, [`SCHEMA_VERSION`]), `time`
//! (RFC 3339 UTC) and `event` (the kind), plus kind-specific fields. The JSON Schema is
//! `docs/events.schema.json`; its kinds are listed in [`KINDS`].

use super::Utc;
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

pub const SCHEMA_VERSION: u32 = 1;

/// Event kinds the engine writes.
pub const KINDS: &[&str] = &[
    "run_start",
    "run_resume",
    "group_start",
    "group_end",
    "step_skip",
    "step_start",
    "step_end",
    "restart",
    "run_end",
    "step_progress",
    "failure",
];

pub struct EventWriter {
    file: BufWriter<File>,
}

impl EventWriter {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(EventWriter {
            file: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, kind: &str, fields: Map<String, Value>) -> std::io::Result<()> {
        let mut rec = Map::new();
        rec.insert("schema".into(), Value::from(SCHEMA_VERSION));
        rec.insert("time".into(), Value::from(Utc::now().rfc3339()));
        rec.insert("event".into(), Value::from(kind));
        rec.extend(fields);
        let line = Value::Object(rec).to_string();
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.file.flush()
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()
    }
}
