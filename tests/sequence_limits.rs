//! Numbers and sizes a sequence file may hold (issue 19, items 7 and 8): every number is
//! checked against its range where it is read, with FILE:LINE:COL and the allowed range, and
//! *Run Task Sequence* chains, nesting and expansion are limited, so neither `validate` nor
//! `run` can panic, overflow the stack or run for ever on a hostile or mistaken file.
//!
//! ConfigMgr 2007's task sequence reference (the SDK's "Task Sequences" overview) documents no
//! range for `timeout`, `retryCount`, success codes or `SMSRebootTimeout`, and no limit on
//! nesting *Run Task Sequence* steps; the ranges tested here are tsforge's, listed in
//! docs/engine.md ("Limits").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::Env;

impl Env {
    /// Run tsforge: (exit code, stdout, stderr). Never a panic or a signal.
    fn run_checked(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(!e.contains("panicked") && !e.contains("overflow"), "{e}");
        let code = out
            .status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal ({}): {e}", out.status));
        (code, o, e)
    }
    fn validate(&self, file: &Path) -> (i32, String) {
        let (code, out, _) = self.run_checked(&["validate", file.to_str().unwrap()]);
        (code, out)
    }
    /// `tsforge run FILE --state-dir state` plus extra arguments: (exit code, stderr), as
    /// [`Env::run_checked`].
    fn run_seq_checked(&self, file: &Path, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["run", file.to_str().unwrap(), "--state-dir", "state"];
        args.extend_from_slice(extra);
        let (code, _, err) = self.run_checked(&args);
        (code, err)
    }
}

/// A one-step YAML sequence whose step carries `attr: value` (line 5, column 5 is the step).
fn yaml_step(attr: &str, value: &str) -> String {
    format!("name: t\nsteps:\n  - name: before\n    run: echo before >> runs\n  - name: s\n    run: echo s >> runs\n    {attr}: \"{value}\"\n")
}

#[test]
fn out_of_range_numbers_are_positioned_errors_in_validate_and_run() {
    let cases = [
        // 2^63-1 and 2^64-1 seconds: used to panic `run` building the deadline.
        ("timeout", "9223372036854775807", "from 0 to 2592000"),
        ("timeout", "18446744073709551615", "from 0 to 2592000"),
        ("timeout", "18446744073709551616", "from 0 to 2592000"),
        ("timeout", "2592001", "from 0 to 2592000"),
        ("timeout", "-1", "from 0 to 2592000"),
        // 2^32 .. 2^64: used to be read as 0 retries.
        ("retry_count", "4294967296", "from 0 to 1000"),
        ("retry_count", "18446744073709551615", "from 0 to 1000"),
        ("retry_count", "1001", "from 0 to 1000"),
        (
            "success_codes",
            "0 1099511627776",
            "from -2147483648 to 4294967295",
        ),
        (
            "success_codes",
            "0 -2147483649",
            "from -2147483648 to 4294967295",
        ),
    ];
    for (attr, value, range) in cases {
        let e = Env::new();
        let f = e.write("t.yaml", &yaml_step(attr, value));
        let (code, out) = e.validate(&f);
        assert_eq!(code, 1, "{attr}={value}: {out}");
        assert!(out.contains("t.yaml:5:5: step \"s\""), "positioned: {out}");
        let bad = value.rsplit(' ').next().unwrap();
        assert!(
            out.contains(&format!("\"{bad}\"")) && out.contains(range),
            "{out}"
        );

        let (code, err) = e.run_seq_checked(&f, &[]);
        assert_eq!(code, 2, "run refuses {attr}={value}: {err}");
        assert!(err.contains("t.yaml:5:5") && err.contains(range), "{err}");
        assert!(!e.path("runs").exists(), "nothing ran before the refusal");
        // --dry-run refuses the same way.
        let (code, err) = e.run_seq_checked(&f, &["--dry-run"]);
        assert_eq!(code, 2, "{err}");
    }
}

#[test]
fn the_largest_allowed_values_are_accepted() {
    let e = Env::new();
    let f = e.write(
        "t.yaml",
        "steps:\n  - name: s\n    run: echo s >> runs\n    timeout: 2592000\n    retry_count: 1000\n    success_codes: \"-2147483648 0 4294967295\"\n",
    );
    let (code, out) = e.validate(&f);
    assert_eq!(code, 0, "{out}");
    let (code, err) = e.run_seq_checked(&f, &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn xml_numbers_are_checked_with_their_position() {
    let e = Env::new();
    let f = e.write(
        "t.xml",
        r#"<sequence version="3.00">
  <step type="SMS_TaskSequence_RunCommandLineAction" name="ok" timeout="60">
    <action>echo ok</action>
  </step>
  <step type="SMS_TaskSequence_RunCommandLineAction" name="huge" timeout="18446744073709551615" retryCount="4294967296">
    <action>echo huge</action>
  </step>
  <step type="SMS_TaskSequence_RebootAction" name="restart">
    <defaultVarList>
      <variable name="SMSRebootTimeout" property="MessageTimeout">99999999999</variable>
    </defaultVarList>
  </step>
  <step type="SMS_TaskSequence_ApplyOperatingSystemAction" name="apply">
    <defaultVarList>
      <variable name="ImagePath" property="ImagePath">x.wim</variable>
      <variable name="ImageIndex" property="ImageIndex">0</variable>
      <variable name="DestinationDisk" property="DestinationDisk"/>
    </defaultVarList>
  </step>
</sequence>
"#,
    );
    let (code, out) = e.validate(&f);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("t.xml:5:3: step \"huge\": timeout=\"18446744073709551615\" is out of range"),
        "{out}"
    );
    assert!(
        out.contains("t.xml:5:3: step \"huge\": retryCount=\"4294967296\" is out of range"),
        "{out}"
    );
    assert!(out.contains("t.xml:8:3: step \"restart\": SMSRebootTimeout=\"99999999999\" is out of range: it must be a whole number from 0 to 86400"), "{out}");
    assert!(out.contains("t.xml:13:3: step \"apply\": ImageIndex=\"0\" is out of range: it must be a whole number from 1 to"), "{out}");
    assert!(
        !out.contains("DestinationDisk"),
        "an empty property is an unset one: {out}"
    );
    let (code, err) = e.run_seq_checked(&f, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("t.xml:5:3"), "{err}");
}

#[test]
fn try_refuses_a_huge_timeout_without_starting_anything() {
    let e = Env::new();
    for t in ["18446744073709551615", "0", "2592001"] {
        let (code, _, err) = e.run_checked(&["try", "no-such-medium.iso", "--timeout", t]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("--timeout") && err.contains("1..=2592000"),
            "{err}"
        );
    }
}

/// Files `{prefix}0.yaml` … `{prefix}{n-1}.yaml`: each has one step and `refs` Run Task
/// Sequence steps to the next; the last has one step.
fn chain(e: &Env, prefix: &str, n: usize, refs: usize) -> PathBuf {
    for i in 0..n {
        let mut text = format!("name: {prefix}{i}\nsteps:\n  - name: s\n    run: \"true\"\n");
        if i + 1 < n {
            for r in 0..refs {
                text += &format!(
                    "  - name: next{r}\n    type: run-sequence\n    properties: {{TsPackageID: {prefix}{}}}\n",
                    i + 1
                );
            }
        }
        e.write(&format!("{prefix}{i}.yaml"), &text);
    }
    e.path(&format!("{prefix}0.yaml"))
}

/// `validate` and `run --dry-run` of `top` both fail within seconds with `expect` in the error.
fn fails_fast(e: &Env, top: &Path, expect: &[&str]) {
    let t0 = Instant::now();
    let (code, out) = e.validate(top);
    assert_eq!(code, 1, "{out}");
    for x in expect {
        assert!(out.contains(x), "validate says {x:?}: {out}");
    }
    let (code, err) = e.run_seq_checked(top, &["--dry-run"]);
    assert_eq!(code, 2, "{err}");
    for x in expect {
        assert!(err.contains(x), "run says {x:?}: {err}");
    }
    let (code, err) = e.run_seq_checked(top, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(!e.path("state/state.json").exists(), "no run was started");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[test]
fn a_10000_deep_chain_of_child_sequences_stops_at_32_levels() {
    let e = Env::new();
    let top = chain(&e, "c", 10_000, 1);
    // c32 includes c33, the 33rd level.
    fails_fast(
        &e,
        &top,
        &["c32.yaml:5:5", "c33.yaml", "limit is 32 levels"],
    );
}

#[test]
fn thirty_two_levels_of_child_sequences_run() {
    let e = Env::new();
    let top = chain(&e, "c", 33, 1);
    let (code, out) = e.validate(&top);
    assert_eq!(code, 0, "{out}");
    let (code, err) = e.run_seq_checked(&top, &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn forty_files_including_the_next_twice_fail_fast() {
    let e = Env::new();
    let top = chain(&e, "d", 41, 2);
    fails_fast(&e, &top, &["d32.yaml", "d33.yaml", "limit is 32 levels"]);
}

#[test]
fn doubling_within_the_depth_limit_stops_at_100000_steps_and_groups() {
    let e = Env::new();
    // 21 files, each including the next twice: 2^20 copies of the last one.
    let top = chain(&e, "d", 21, 2);
    fails_fast(&e, &top, &["d0.yaml has more than 100000 steps and groups"]);
}

#[test]
fn cycles_through_several_files_are_errors() {
    let e = Env::new();
    e.write(
        "A.yaml",
        "steps:\n  - name: to B\n    type: run-sequence\n    properties: {TsPackageID: B}\n",
    );
    e.write(
        "B.yaml",
        "steps:\n  - name: to C\n    type: run-sequence\n    properties: {TsPackageID: C}\n  - name: to C again\n    type: run-sequence\n    properties: {TsPackageID: C}\n",
    );
    e.write(
        "C.yaml",
        "steps:\n  - name: back to A\n    type: run-sequence\n    properties: {TsPackageID: A}\n",
    );
    fails_fast(&e, &e.path("A.yaml"), &["C.yaml:2:5", "cycle"]);
}

#[test]
fn groups_nested_100000_deep_are_an_error_not_a_stack_overflow() {
    let e = Env::new();
    let n = 100_000;
    let xml = e.write(
        "deep.xml",
        &format!(
            "<sequence>{}{}</sequence>",
            "<group name=\"g\">".repeat(n),
            "</group>".repeat(n)
        ),
    );
    fails_fast(&e, &xml, &["deep.xml:1:", "nested more than 256 levels"]);
    let yaml = e.write(
        "deep.yaml",
        &format!(
            "steps: {}[]{}\n",
            "[{group: g, steps: ".repeat(n),
            "}]".repeat(n)
        ),
    );
    let (code, out) = e.validate(&yaml);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("deep.yaml:1:"), "{out}");
    let (code, err) = e.run_seq_checked(&yaml, &["--dry-run"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn groups_nested_across_child_sequences_are_limited_too() {
    let e = Env::new();
    // 30 files, each nesting its steps and the next file 9 groups deep: 30 × 10 > 256 levels.
    let n = 30;
    for i in 0..n {
        let mut text = String::from("steps:\n");
        let mut indent = String::from("  ");
        for _ in 0..9 {
            text += &format!("{indent}- group: g\n{indent}  steps:\n");
            indent += "    ";
        }
        text += &format!("{indent}- name: s\n{indent}  run: \"true\"\n");
        if i + 1 < n {
            text += &format!(
                "{indent}- name: next\n{indent}  type: run-sequence\n{indent}  properties: {{TsPackageID: n{}}}\n",
                i + 1
            );
        }
        e.write(&format!("n{i}.yaml"), &text);
    }
    fails_fast(&e, &e.path("n0.yaml"), &["nested more than 256 levels"]);
}

/// A restart, then a step whose condition nests `depth` `and` operators.
fn deep_condition_xml(depth: usize) -> String {
    format!(
        r#"<sequence>
  <step type="SMS_TaskSequence_RebootAction" name="restart">
    <defaultVarList><variable name="SMSRebootTimeout" property="MessageTimeout">0</variable></defaultVarList>
  </step>
  <step type="SMS_TaskSequence_RunCommandLineAction" name="after">
    <condition>{}<expression type="SMS_TaskSequence_VariableConditionExpression"><variable name="Variable">X</variable><variable name="Operator">notExists</variable><variable name="Value"/></expression>{}</condition>
    <action>echo after &gt;&gt; runs</action>
  </step>
</sequence>
"#,
        "<operator type=\"and\">".repeat(depth),
        "</operator>".repeat(depth)
    )
}

#[test]
fn conditions_nested_deeper_than_program_json_can_hold_are_refused_before_the_run() {
    let e = Env::new();
    // 60 operators deep used to run until the restart, then fail to resume: program.json
    // could not be read back.
    let f = e.write("deep.xml", &deep_condition_xml(60));
    let (code, out) = e.validate(&f);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("deep.xml:5:3: step \"after\": the condition nests operators 60 deep; tsforge's limit is 32"),
        "{out}"
    );
    let (code, err) = e.run_seq_checked(&f, &["--no-reboot"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("deep.xml:5:3"), "{err}");
    assert!(
        !e.path("state").join("state.json").exists(),
        "nothing started"
    );

    // At the limit, the run restarts and resumes.
    let e = Env::new();
    let f = e.write("deep.xml", &deep_condition_xml(32));
    assert_eq!(e.validate(&f).0, 0);
    assert_eq!(e.run_seq_checked(&f, &["--no-reboot"]).0, 3);
    let (code, err) = e.run_seq_checked(&f, &["--no-reboot"]);
    assert_eq!(code, 0, "resumes: {err}");
    assert_eq!(std::fs::read_to_string(e.path("runs")).unwrap(), "after\n");
}

#[test]
fn a_number_from_a_variable_is_checked_when_the_step_runs() {
    let e = Env::new();
    let f = e.write(
        "t.yaml",
        "variables:\n  T: \"99999999999\"\nsteps:\n  - name: restart\n    type: restart\n    properties: {SMSRebootTimeout: \"%T%\"}\n",
    );
    assert_eq!(e.validate(&f).0, 0, "known only at run time");
    let (code, err) = e.run_seq_checked(&f, &["--no-reboot"]);
    assert_eq!(code, 1, "the step fails, no restart: {err}");
    let log = std::fs::read_to_string(e.path("state/smsts.log")).unwrap();
    assert!(
        log.contains("SMSRebootTimeout=\"99999999999\" is out of range: it must be a whole number from 0 to 86400 (seconds)"),
        "{log}"
    );
}
