//! `SMSTSPostAction`: a command run after the sequence ends, through the real binary.
//!
//! Microsoft, task sequence variables,
//! <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables#SMSTSPostAction>:
//! "Specifies a command that's run after the task sequence completes" (its example restarts
//! the computer). Running it after a failed sequence too, and not at a restart the sequence
//! asked for, is tsforge's choice (docs/engine.md).

use crate::common::Env;

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn post_action_runs_once_after_the_sequence_ends_not_at_a_restart() {
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        r#"
name: Post
steps:
  - name: Set post action
    type: set-variable
    properties: {VariableName: SMSTSPostAction, VariableValue: "echo \"post %_SMSTSLastActionName%\" >> marks"}
  - name: One
    run: echo one >> marks
  - name: Restart
    type: restart
  - name: Two
    run: echo two >> marks
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(lines(&e.read("marks")), vec!["one"], "not at the restart");
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&e.read("marks")), vec!["one", "two", "post Two"]);
    let log = e.read("state/smsts.log");
    assert!(
        log.contains("Running SMSTSPostAction, the command after the sequence ended"),
        "{log}"
    );
    assert!(
        log.contains("SMSTSPostAction finished (exit code 0)"),
        "{log}"
    );
    // A finished run is not run again, nor is its post action.
    let (code, _, _) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 0);
    assert_eq!(lines(&e.read("marks")).len(), 3);
}

#[test]
fn post_action_runs_after_a_failed_sequence_and_its_failure_changes_nothing() {
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        "name: Fail\nvariables:\n  SMSTSPostAction: echo \"post %_SMSTSLastActionSucceeded%\" >> marks; exit 7\nsteps:\n  - name: Fails\n    run: exit 4\n",
    );
    let (code, _, _) = e.run_seq(&seq, &[]);
    assert_eq!(code, 1, "the sequence failed");
    assert_eq!(lines(&e.read("marks")), vec!["post false"]);
    let log = e.read("state/smsts.log");
    assert!(
        log.contains("SMSTSPostAction failed (exit code 7); the run's outcome is unchanged"),
        "{log}"
    );

    let ok = e.write(
        "ok.yaml",
        "name: Ok\nvariables:\n  SMSTSPostAction: exit 7\nsteps:\n  - name: Fine\n    run: \"true\"\n",
    );
    let (code, _, _) = e.run(&["run", ok.to_str().unwrap(), "--state-dir", "state2"]);
    assert_eq!(
        code, 0,
        "a failing post action does not fail a succeeded run"
    );
}
