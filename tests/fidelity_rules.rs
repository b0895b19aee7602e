//! ConfigMgr's documented variable and condition rules, met where an administrator meets them:
//! `tsforge run` on the same sequence written three ways (plain `<sequence>`, the exported
//! `<SmsTaskSequencePackage>` wrapper, YAML: tests/fixtures/sequences/rules/), checked in the
//! files the steps write and in smsts.log.

use crate::common::{repo, Env};
use tsforge_runtime::log::cmtrace;

const RULES: [&str; 3] = [
    "tests/fixtures/sequences/rules/rules-sequence.xml",
    "tests/fixtures/sequences/rules/rules-wrapper.xml",
    "tests/fixtures/sequences/rules/rules.yaml",
];

fn log_messages(e: &Env) -> Vec<String> {
    cmtrace::parse(&e.read("state/smsts.log"))
        .unwrap()
        .into_iter()
        .map(|x| x.message)
        .collect()
}

/// Each line of `out` is one documented rule that held:
/// - "To delete a variable, set the variable value to an empty string", by every method that
///   sets one (here *Set Task Sequence Variable* and a script through `tsforge env set`):
///   https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/using-task-sequence-variables
/// - "a case-sensitive string comparison unless both the value of the variable and the
///   comparison value are integers": ConfigMgr 2007, *Task Sequence Options: Task Sequence
///   Variable*, https://technet.microsoft.com/library/bb632960.aspx (mirrored at
///   http://systemscenter.ru/smsv4.en/html/a6a05766-3d9b-41fc-ac66-dec45f5275df.htm)
/// - the If statement's *None* is true when none of its conditions is true: ConfigMgr 2007, *If
///   Statement*, http://systemscenter.ru/smsv4.en/html/b298ff83-905e-474c-89b4-06cb9f7abfe0.htm
/// - `_SMSTSLastActionName` "stores the name of the last action that was run", next to
///   `_SMSTSLastActionRetCode`, and both are logged to smsts.log:
///   https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables#SMSTSLastActionName
#[test]
fn documented_variable_and_condition_rules_in_every_format() {
    for file in RULES {
        let e = Env::new();
        let (code, _, err) = e.run(&["run", &repo(file), "--state-dir", "state"]);
        assert_eq!(
            code, 0,
            "{file}: the one failure has continue on error: {err}"
        );
        assert_eq!(
            e.read("out"),
            "deleted-by-step\n\
             env-deleted\n\
             env-gone\n\
             text-2.5\n\
             num-9\n\
             text-1e3\n\
             none-ok\n\
             Fails on purpose|7|false\n",
            "{file}"
        );
        let log = log_messages(&e);
        let has = |s: &str| log.iter().any(|m| m.contains(s));
        assert!(
            has("Deleted variable Target (set to an empty value)"),
            "{file}: {log:#?}"
        );
        assert!(
            has("Deleted variable Tmp (set to an empty value)"),
            "{file}"
        );
        assert!(
            has("Set _SMSTSLastActionName = \"Fails on purpose\", _SMSTSLastActionRetCode = 7, _SMSTSLastActionSucceeded = false"),
            "{file}: {log:#?}"
        );
        for skipped in ["10.0 is not 10", "TRUE is not true", "None with one true"] {
            assert!(
                has(&format!(
                    "Skipping step \"{skipped}\": its condition is false"
                )),
                "{file}: {skipped}"
            );
        }
    }
}

/// The dry run applies the same rules: the deleted variable is gone for the conditions after it.
#[test]
fn dry_run_follows_the_same_rules() {
    for file in RULES {
        let e = Env::new();
        let (code, out, err) = e.run(&["run", &repo(file), "--dry-run"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("delete Target (empty value)"), "{file}: {out}");
        assert!(out.contains("RUN    3 \"Target is gone\""), "{file}: {out}");
        assert!(
            out.contains("SKIP  11 \"10.0 is not 10\" (condition is false)"),
            "{file}: {out}"
        );
        assert!(
            out.contains("SKIP  13 \"None with one true\""),
            "{file}: {out}"
        );
        assert!(
            out.contains("RUN   14 \"None with none true\""),
            "{file}: {out}"
        );
    }
}

/// `--var NAME=` deletes NAME (a sequence default included), like any other way of setting a
/// variable to an empty value (page above); `_SMSTS*` variables are read-only ("You can't
/// change a read-only task sequence variable"), so deleting one is refused before anything runs.
#[test]
fn var_option_with_an_empty_value_deletes_and_cannot_touch_smsts() {
    let e = Env::new();
    let seq = e.write(
        "v.yaml",
        "variables:\n  Region: eu\nsteps:\n  - name: gone\n    condition: {variable: Region, operator: notExists}\n    run: echo gone > out\n",
    );
    let (code, _, err) = e.run_seq(&seq, &["--var", "Region="]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(e.read("out"), "gone\n");

    let e = Env::new();
    let seq = e.write("w.yaml", "steps:\n  - name: s\n    run: echo ran > out\n");
    let (code, _, err) = e.run_seq(&seq, &["--var", "_SMSTSInWinPE="]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("_SMSTSInWinPE= would delete _SMSTSInWinPE"),
        "{err}"
    );
    assert!(err.contains("read-only"), "{err}");
    assert!(!e.path("out").exists(), "nothing ran");
}

/// `hidden="true"` on a step property is the console's editor flag, not a secret: smsts.log
/// shows the command lines and values of an export. What is secret stays masked: a *Set Task
/// Sequence Variable* step with `DoNotShowVariableValue` (the editor's "Do not display this
/// value"; its value may be in `HiddenVariableValue`), documented in
/// https://learn.microsoft.com/en-us/intune/configmgr/develop/reference/osd/sms_tasksequence_setvariableaction-server-wmi-class,
/// and a hidden global variable.
#[test]
fn hidden_properties_are_shown_and_secrets_are_masked() {
    let e = Env::new();
    let file = repo("tests/fixtures/sequences/rules/hidden-export.xml");
    let (code, _, err) = e.run(&["run", &file, "--state-dir", "state"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        e.read("rec"),
        "disk OSDisk pin 9182-7364 token t0k-5566 key k3y-0000-secret\n",
        "the step gets the real values"
    );
    let log = log_messages(&e);
    let has = |s: &str| log.iter().any(|m| m == s);
    assert!(has("Set variable DiskVar = OSDisk"), "{log:#?}");
    assert!(has("Set variable Pin = ********"), "{log:#?}");
    assert!(has("Set variable Token = ********"), "{log:#?}");
    assert!(
        has("Command line: echo \"disk OSDisk pin ******** token ******** key ********\" > rec"),
        "the expanded command line, secrets masked: {log:#?}"
    );
    assert!(has("Command line: cat rec"), "{log:#?}");
    assert!(
        has("[stdout] disk OSDisk pin ******** token ******** key ********"),
        "{log:#?}"
    );
    let mut all = e.read("state/smsts.log");
    all.push_str(&e.read("state/events.jsonl"));
    all.push_str(&err);
    for secret in ["9182-7364", "t0k-5566", "k3y-0000-secret"] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
    let (code, out, _) = e.run(&["run", &file, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("DiskVar = OSDisk"), "{out}");
    assert!(out.contains("Pin = ********"), "{out}");
    assert!(
        !out.contains("9182-7364") && !out.contains("t0k-5566"),
        "{out}"
    );
}

/// The dry run tells what the run does with a condition it cannot evaluate here (a WMI query on
/// Linux): the run fails the step (or group), so the plan says "would fail" and follows the
/// failure the same way, never "skipped".
#[cfg(not(windows))]
#[test]
fn dry_run_says_a_step_would_fail_where_the_run_fails_it() {
    let e = Env::new();
    let seq = e.write(
        "wmi.yaml",
        r#"
steps:
  - group: Drivers
    continue_on_error: true
    steps:
      - name: Dell drivers
        condition:
          - wmi: SELECT * FROM Win32_ComputerSystem WHERE Manufacturer LIKE "%Dell%"
        run: echo dell >> out
      - name: After Dell
        run: echo after-dell >> out
  - name: Between
    run: echo between >> out
  - group: Vendor tools
    condition:
      - wmi: SELECT * FROM Win32_BIOS
    steps:
      - name: Inside vendor tools
        run: echo vendor >> out
  - name: Last
    run: echo last >> out
"#,
    );
    let (code, plan, err) = e.run_seq(&seq, &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        plan.contains("FAIL   1 \"Dell drivers\" (would fail: its condition cannot be evaluated here: condition at"),
        "{plan}"
    );
    assert!(!plan.contains("SKIP"), "nothing is skipped: {plan}");
    assert!(
        !plan.contains("\"After Dell\""),
        "the rest of the group does not run: {plan}"
    );
    assert!(plan.contains("RUN    3 \"Between\""), "{plan}");
    assert!(
        plan.contains("FAIL group \"Vendor tools\" (would fail"),
        "{plan}"
    );
    assert!(plan.contains("The run would end here"), "{plan}");
    assert!(!plan.contains("\"Last\""), "{plan}");

    // What the run does: the same.
    let (code, _, _) = e.run_seq(&seq, &[]);
    assert_eq!(code, 1, "the group's failure reaches the top");
    assert_eq!(e.read("out"), "between\n");
}

/// The shipped example validates, and its dry run plans the partitions (the property names are
/// the exported ones: variable `OSDPartitions0Type`, property `Partitions0Type`, as in
/// tests/fixtures/sequences/cm-package-wrapper.xml).
#[test]
fn windows_deploy_example_validates_and_plans_its_partitions() {
    let e = Env::new();
    let example = repo("examples/windows-deploy.yaml");
    let (code, out, err) = e.run(&["validate", &example]);
    assert_eq!(code, 0, "{out}{err}");
    let disk = e.path("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let arg = format!("0={}", disk.display());
    let (code, plan, err) = e.run(&["run", "--dry-run", &example, "--disk", &arg]);
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains("Mbr table"), "{plan}");
    assert!(plan.contains("partition 1: NTFS"), "{plan}");
}
