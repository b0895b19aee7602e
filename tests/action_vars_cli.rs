//! Action variables, through the real binary: a step's property is the default of the task
//! sequence variable named like it (`<defaultVarList><variable name=…>`); once that variable is
//! set, the step uses the variable. Microsoft, "How to use task sequence variables", Action
//! variables:
//! https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/using-task-sequence-variables#action-variables
//! — its example, Run Command Line's *Start in* (`WorkingDirectory`) changed by a Set Task
//! Sequence Variable step for the Run Command Line steps after it, is
//! tests/fixtures/sequences/action-variables.xml.

use crate::common::{repo, Env};

const FIXTURE: &str = "tests/fixtures/sequences/action-variables.xml";

fn env_with_folders() -> Env {
    let e = Env::new();
    for d in ["a", "b", "c"] {
        std::fs::create_dir(e.path(d)).unwrap();
    }
    e
}

#[test]
fn set_variable_changes_the_start_in_folder_of_later_steps() {
    let e = env_with_folders();
    let file = std::path::PathBuf::from(repo(FIXTURE));
    let (code, out, err) = e.run(&["validate", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = e.run_seq(&file, &[]);
    assert_eq!(code, 0, "{out}{err}");
    // The first step uses its own value; after WorkingDirectory=b every later step starts in
    // b, its own value (and the startIn attribute, the same setting) only a default.
    assert_eq!(e.read("marks"), "a\nb\nb\n");
    let log = e.read("state/smsts.log");
    assert!(
        log.contains(
            "Property WorkingDirectory = b (from the task sequence variable WorkingDirectory)"
        ),
        "{log}"
    );
}

#[test]
fn var_on_the_command_line_sets_an_action_variable_and_empty_does_not() {
    // --var sets the variable before the first step: every step starts in b.
    let e = env_with_folders();
    let file = std::path::PathBuf::from(repo(FIXTURE));
    let (code, out, err) = e.run_seq(&file, &["--var", "WorkingDirectory=b"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(e.read("marks"), "b\nb\nb\n");
    // An empty variable is an unset one (the page does not say; docs/engine.md): the step's
    // own value stays.
    let e = env_with_folders();
    let (code, out, err) = e.run_seq(&file, &["--var", "WorkingDirectory="]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(e.read("marks"), "a\nb\nb\n");
}

#[test]
fn dry_run_shows_the_steps_as_they_would_run() {
    let e = env_with_folders();
    let file = std::path::PathBuf::from(repo(FIXTURE));
    let (code, out, err) = e.run_seq(
        &file,
        &["--dry-run", "--var", "CommandLine=echo from-the-variable"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.matches("[SMS_TaskSequence_RunCommandLineAction] echo from-the-variable")
            .count(),
        3,
        "{out}"
    );
    assert!(!out.contains("basename"), "{out}");
    assert!(!e.path("marks").exists());
}
