//! A run's state directory as found after a power cut, a bad disk or tampering: arbitrary
//! `state.json` and `steps.jsonl` (and optionally `program.json`), split at NUL bytes, next to
//! a fixed sequence of *Set Task Sequence Variable* steps, groups and a *Restart Computer*
//! (nothing external runs). `engine::run` resumes it: it must refuse or resume, never panic,
//! never loop. Seeds: fuzz/seeds/run_state (made by fuzz/seeds/run_state.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsforge_runtime::engine::journal::Journal;
use tsforge_runtime::engine::{self, RunOptions};

const SEQUENCE: &str = r#"name: Fuzz resume
variables:
  A: "1"
steps:
  - name: First
    type: set-variable
    properties: {VariableName: B, VariableValue: "2"}
  - group: Outer
    continue_on_error: true
    steps:
      - name: Inner
        type: set-variable
        condition: {variable: A, operator: equals, value: "1"}
        properties: {VariableName: C, VariableValue: "%B%"}
      - name: Restart
        type: restart
        properties: {SMSRebootMessage: "", SMSRebootTimeout: "0"}
  - name: Last
    type: set-variable
    properties: {VariableName: D, VariableValue: "4"}
"#;

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let state = parts.next().unwrap_or_default();
    let steps = parts.next();
    let program = parts.next();
    let dir = std::env::temp_dir().join(format!("tsforge-fuzz-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sdir = dir.join("state");
    std::fs::create_dir_all(&sdir).unwrap();
    let seq = dir.join("ts.yaml");
    std::fs::write(&seq, SEQUENCE).unwrap();
    // The state names its program by fingerprint, which covers the sequence's path (a
    // temporary folder here): the seeds say FINGERPRINT where it goes, so inputs reach the
    // checks behind it.
    let compiled = engine::load_program(&seq, &Default::default()).unwrap();
    let state = replace(state, b"FINGERPRINT", compiled.fingerprint().as_bytes());
    std::fs::write(sdir.join("state.json"), state).unwrap();
    if let Some(s) = steps {
        std::fs::write(sdir.join("steps.jsonl"), s).unwrap();
    }
    match program {
        Some(p) => std::fs::write(sdir.join("program.json"), p).unwrap(),
        None => {
            // The program the sequence compiles to, as a run writes it.
            Journal::open(&sdir, false).unwrap().save_program(&compiled).unwrap();
        }
    }
    let mut opts = RunOptions::new(&sdir);
    opts.no_reboot = true;
    opts.fsync = false;
    let _ = engine::run(&seq, &opts);
    let _ = std::fs::remove_dir_all(&dir);
});
