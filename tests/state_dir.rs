//! The run's state directory cannot be trusted blindly (issue 19, item 4): a resumed run checks
//! `state.json` against `program.json` and `steps.jsonl` and refuses, with exit code 2 and the
//! file named, anything that does not fit, instead of skipping steps or running finished ones
//! again. The one damage a power cut may cause, an incomplete last line of `steps.jsonl`, still
//! resumes. Through the real binary.

use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::common::Env;

impl Env {
    /// `tsforge run FILE --state-dir state --no-reboot`: (exit code, stderr).
    fn run_no_reboot(&self, file: &Path) -> (i32, String) {
        let (code, _, err) = self.run_seq(file, &["--no-reboot"]);
        assert!(!err.contains("panicked"), "no panic: {err}");
        (code, err)
    }
    fn runs(&self) -> Vec<String> {
        self.read("runs").lines().map(str::to_string).collect()
    }
    fn state(&self) -> Value {
        serde_json::from_str(&self.read("state/state.json")).unwrap()
    }
    fn set_state(&self, edit: impl FnOnce(&mut Value)) {
        let mut s = self.state();
        edit(&mut s);
        std::fs::write(self.path("state/state.json"), s.to_string()).unwrap();
    }
}

/// Steps a, b (inside group G), a restart, then c and d: run once with `--no-reboot`, the run
/// stops after the restart (exit 3) with a, b finished and c, d to go.
fn stopped_at_restart(e: &Env) -> PathBuf {
    let seq = e.write(
        "s.yaml",
        r#"
steps:
  - name: a
    run: echo a >> runs
  - group: G
    steps:
      - name: b
        run: echo b >> runs
      - name: restart
        type: restart
        properties: {SMSRebootTimeout: "0"}
      - name: c
        run: echo c >> runs
  - name: d
    run: echo d >> runs
"#,
    );
    let (code, err) = e.run_no_reboot(&seq);
    assert_eq!(code, 3, "restart requested: {err}");
    assert_eq!(e.runs(), ["a", "b"]);
    seq
}

fn assert_refused(code: i32, err: &str, file: &str, what: &str) {
    assert_eq!(code, 2, "refused as an error: {err}");
    assert!(err.contains(file), "names {file}: {err}");
    assert!(err.contains(what), "says {what:?}: {err}");
}

#[test]
fn a_pc_past_the_program_is_refused_not_reported_as_success() {
    let e = Env::new();
    let seq = stopped_at_restart(&e);
    e.set_state(|s| s["pc"] = 99999.into());
    let (code, err) = e.run_no_reboot(&seq);
    assert_refused(code, &err, "state.json", "99999");
    assert!(!err.contains("completed successfully"), "{err}");
    assert_eq!(e.runs(), ["a", "b"], "nothing ran");
    // The directory is left as it was: running again refuses again.
    assert_eq!(e.run_no_reboot(&seq).0, 2);
}

#[test]
fn a_missing_state_json_next_to_program_and_journal_is_refused() {
    let e = Env::new();
    let seq = stopped_at_restart(&e);
    std::fs::remove_file(e.path("state/state.json")).unwrap();
    let (code, err) = e.run_no_reboot(&seq);
    assert_refused(code, &err, "state.json", "missing");
    assert_eq!(e.runs(), ["a", "b"], "finished steps do not run again");

    // program.json alone (the journal gone too) is still a run, not a new directory.
    std::fs::remove_file(e.path("state/steps.jsonl")).unwrap();
    let (code, err) = e.run_no_reboot(&seq);
    assert_refused(code, &err, "state.json", "program.json");
    assert_eq!(e.runs(), ["a", "b"]);
}

#[test]
fn a_pc_moved_back_over_finished_steps_is_refused() {
    let e = Env::new();
    let seq = stopped_at_restart(&e);
    // Back to the start: a and b would run twice.
    e.set_state(|s| {
        s["pc"] = 0.into();
        s["frames"] = serde_json::json!([]);
        s["phase"] = "ready".into();
    });
    let (code, err) = e.run_no_reboot(&seq);
    assert_refused(code, &err, "state.json", "steps.jsonl");
    assert_eq!(e.runs(), ["a", "b"], "finished steps do not run again");
}

#[test]
fn open_groups_that_do_not_fit_the_pc_are_refused() {
    let e = Env::new();
    let seq = stopped_at_restart(&e);
    assert_eq!(e.state()["frames"].as_array().unwrap().len(), 1, "inside G");
    for frames in [
        serde_json::json!([]),
        serde_json::json!([{"enter": 1, "failed": false}, {"enter": 1, "failed": false}]),
        serde_json::json!([{"enter": 0, "failed": false}]),
        // Marking G failed would make the run fail after c.
        serde_json::json!([{"enter": 1, "failed": true}]),
    ] {
        let good = e.read("state/state.json");
        e.set_state(|s| s["frames"] = frames.clone());
        let (code, err) = e.run_no_reboot(&seq);
        assert_refused(code, &err, "state.json", "group");
        assert_eq!(e.runs(), ["a", "b"], "nothing ran with frames {frames}");
        std::fs::write(e.path("state/state.json"), good).unwrap();
    }
    // Untouched, the run resumes and ends.
    let (code, err) = e.run_no_reboot(&seq);
    assert_eq!(code, 0, "{err}");
    assert_eq!(e.runs(), ["a", "b", "c", "d"]);
}

#[test]
fn a_finished_state_with_fewer_steps_in_the_journal_is_refused() {
    let e = Env::new();
    let seq = stopped_at_restart(&e);
    // Claims the run finished, with its three steps; the journal has two of them.
    e.set_state(|s| {
        s["phase"] = "finished".into();
        s["succeeded"] = true.into();
        s["pc"] = 7.into();
        s["frames"] = serde_json::json!([]);
    });
    let journal = e.read("state/steps.jsonl");
    let first_two: String = journal.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(e.path("state/steps.jsonl"), first_two).unwrap();
    let (code, err) = e.run_no_reboot(&seq);
    assert_refused(code, &err, "steps.jsonl", "counts 3 finished steps");
    assert!(!err.contains("already finished"), "{err}");
}

#[test]
fn a_journal_line_that_is_not_a_record_of_this_program_is_refused() {
    let e = Env::new();
    let seq = stopped_at_restart(&e);
    let journal = e.read("state/steps.jsonl");
    // A record of a step the program does not have at that instruction, in the middle.
    let forged = journal.replacen("\"number\":1,", "\"number\":7,", 1);
    std::fs::write(e.path("state/steps.jsonl"), &forged).unwrap();
    let (code, err) = e.run_no_reboot(&seq);
    assert_refused(code, &err, "steps.jsonl:1", "program.json");
    // Garbage in the middle (not the last line) is damage, not a power cut.
    let garbage = journal.replacen('\n', "\nnot json\n", 1);
    std::fs::write(e.path("state/steps.jsonl"), &garbage).unwrap();
    let (code, err) = e.run_no_reboot(&seq);
    assert_refused(code, &err, "steps.jsonl:2", "not a step record");
    assert_eq!(e.runs(), ["a", "b"]);
}

#[test]
fn a_torn_last_journal_line_after_a_power_cut_resumes() {
    let e = Env::new();
    // Step b kills the runner (its parent) the first time, like a power cut while it runs.
    let seq = e.write(
        "s.yaml",
        r#"
steps:
  - name: a
    run: echo a >> runs
  - name: b
    run: echo b >> runs; [ -f once ] || { touch once; kill -9 $PPID; }
  - name: c
    run: echo c >> runs
"#,
    );
    let (code, _) = e.run_no_reboot(&seq);
    assert_ne!(code, 0, "the runner was killed");
    assert_eq!(e.state()["phase"], "in_step", "b was running");
    // The power went while b's record was being written: half a line, no line end.
    let journal = e.read("state/steps.jsonl");
    assert_eq!(journal.lines().count(), 1, "a finished: {journal}");
    let record = journal
        .lines()
        .next()
        .unwrap()
        .replace("\"pc\":0", "\"pc\":1");
    let torn = format!("{journal}{}", &record[..record.len() / 2]);
    std::fs::write(e.path("state/steps.jsonl"), torn).unwrap();

    let (code, err) = e.run_no_reboot(&seq);
    assert_eq!(code, 0, "resumes: {err}");
    assert_eq!(e.runs(), ["a", "b", "b", "c"], "b runs again, a does not");
    let journal = e.read("state/steps.jsonl");
    let names: Vec<String> = journal
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("every journal line is a record");
            v["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(
        e.read("state/smsts.log").contains("incomplete line"),
        "the log says what was cut"
    );
}
