//! Secrets in smsts.log, events.jsonl, the console and the dry run: real secret values never
//! appear (in a command line, a step's output, a failure message, a hook's output), and the
//! names of steps and groups are never mangled by a secret that happens to be a word
//! (docs/engine.md, *Secrets in logs*).

use crate::common::{tsforge_command, Env};
use std::io::Write;
use std::process::Stdio;
use tsforge_builder::media::{assemble, MediaOptions};
use tsforge_builder::tree::MediaTree;
use tsforge_runtime::log::cmtrace;
use tsforge_runtime::vars::KNOWN_SECRETS;

fn log_messages(e: &Env) -> Vec<String> {
    cmtrace::parse(&e.read("state/smsts.log"))
        .unwrap()
        .into_iter()
        .map(|x| x.message)
        .collect()
}

/// Every JSON record of events.jsonl.
fn events(e: &Env) -> Vec<serde_json::Value> {
    e.read("state/events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A secret whose value is a common word ("OSDisk", the name of ConfigMgr's own variable) is
/// masked where values are printed — the expanded command line, the step's output, a failure
/// message, events.jsonl's `message` — and not in the names of steps and groups, which are the
/// sequence's text: smsts.log, events.jsonl, the console's progress and the dry run show
/// "Record OSDisk" as written.
#[test]
fn a_secret_that_is_a_word_does_not_mangle_step_names() {
    let e = Env::new();
    let seq = e.write(
        "word.yaml",
        r#"
variables:
  DiskName:
    value: OSDisk
    hidden: true
steps:
  - group: Prepare OSDisk
    steps:
      - name: Record OSDisk
        run: echo "disk %DiskName%" > rec && echo "wrote %DiskName%"
  - name: Fail in OSDisk
    continue_on_error: true
    properties:
      WorkingDirectory: /nonexistent/%DiskName%
    run: echo never
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        e.read("rec"),
        "disk OSDisk\n",
        "the step gets the real value"
    );

    let log = log_messages(&e);
    let has = |s: &str| log.iter().any(|m| m == s);
    for line in [
        "Entering group \"Prepare OSDisk\"",
        "Start executing step 1 of 2: \"Record OSDisk\" (SMS_TaskSequence_RunCommandLineAction), instruction 1",
        "Step \"Record OSDisk\" succeeded (exit code 0)",
        "Set _SMSTSLastActionName = \"Record OSDisk\", _SMSTSLastActionRetCode = 0, _SMSTSLastActionSucceeded = true",
        "Leaving group \"Prepare OSDisk\"",
        // The values: masked, also inside a word of the value (a path here).
        "Command line: echo \"disk ********\" > rec && echo \"wrote ********\"",
        "[stdout] wrote ********",
        "Step \"Fail in OSDisk\" failed (exit code 2147500037): working directory \"/nonexistent/********\" does not exist or is not a folder",
        "Continuing after \"Fail in OSDisk\": the step has continue on error",
    ] {
        assert!(has(line), "missing {line:?} in {log:#?}");
    }

    let ev = events(&e);
    let names: Vec<&str> = ev
        .iter()
        .filter(|r| r["event"] == "step_start" || r["event"] == "group_start")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Prepare OSDisk", "Record OSDisk", "Fail in OSDisk"],
        "{ev:#?}"
    );
    let failed = ev
        .iter()
        .find(|r| r["event"] == "step_end" && r["succeeded"] == false)
        .unwrap();
    assert_eq!(
        failed["message"],
        "working directory \"/nonexistent/********\" does not exist or is not a folder"
    );

    // The console's progress lines (plain, stderr is not a terminal here).
    assert!(err.contains("[1/2] Record OSDisk ("), "{err}");
    assert!(err.contains("[2/2] Fail in OSDisk ("), "{err}");

    // Outside names, the secret appears nowhere.
    let mut all = e.read("state/smsts.log");
    all.push_str(&e.read("state/events.jsonl"));
    all.push_str(&err);
    for name in ["Prepare OSDisk", "Record OSDisk", "Fail in OSDisk"] {
        all = all.replace(name, "");
    }
    assert!(!all.contains("OSDisk"), "{all}");

    let (code, out, err) = e.run(&["run", seq.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GROUP \"Prepare OSDisk\""), "{out}");
    assert!(
        out.contains(
            "RUN    1 \"Record OSDisk\" [SMS_TaskSequence_RunCommandLineAction] echo \"disk ********\" > rec && echo \"wrote ********\""
        ),
        "{out}"
    );
}

/// A secret shorter than 4 characters is masked only where it stands alone (not next to a
/// letter or digit): a secret "1" does not turn every 1 of the log — step numbers, exit
/// codes, "x1", "2021" — into ********. Microsoft documents no masking rule for smsts.log
/// (it offers OSDDoNotLogCommand to hide whole command lines:
/// https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables#OSDDoNotLogCommand);
/// this is tsforge's choice, docs/engine.md.
#[test]
fn a_one_character_secret_is_masked_only_where_it_stands_alone() {
    let e = Env::new();
    let seq = e.write(
        "short.yaml",
        r#"
variables:
  Pin:
    value: "1"
    hidden: true
steps:
  - name: Step 1 of 1
    run: echo "pin %Pin% in 2021, x1, 1.5 and 11"
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    let log = log_messages(&e);
    let has = |s: &str| log.iter().any(|m| m == s);
    for line in [
        "Start executing step 1 of 1: \"Step 1 of 1\" (SMS_TaskSequence_RunCommandLineAction), instruction 0",
        "Command line: echo \"pin ******** in 2021, x1, ********.5 and 11\"",
        "[stdout] pin ******** in 2021, x1, ********.5 and 11",
        "Step \"Step 1 of 1\" succeeded (exit code 0)",
        "Task sequence \"short\" completed successfully (1 steps run)",
    ] {
        assert!(has(line), "missing {line:?} in {log:#?}");
    }
}

/// The leaks that matter: a password in an expanded command line (`net use … /user:x %Pass%`),
/// glued to an option (`-p%Pass%`, `/p:%Pass%`), echoed by the program, in a step's failure
/// message, and in the dry run's plan, for a secret from every source: a hidden global
/// variable, a known password variable, *Set Task Sequence Variable* with "Do not display this
/// value" (`DoNotShowVariableValue`,
/// https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/osd/sms_tasksequence_setvariableaction-server-wmi-class).
#[test]
fn secret_values_never_leak_from_command_lines_output_or_the_plan() {
    let e = Env::new();
    let seq = e.write(
        "leak.yaml",
        r#"
variables:
  Pass:
    value: N3t-Us3-Pa55
    hidden: true
  OSDJoinPassword: J0in-Pa55-77
steps:
  - name: Map the share
    run: 'echo net use Z: //srv/share /user:lab/deploy %Pass% && echo 7z x -p%Pass% /p:%OSDJoinPassword% a.7z'
  - name: Hide one
    type: set-variable
    properties:
      VariableName: Later
      VariableValue: L4ter-S3cret
      DoNotShowVariableValue: "true"
  - name: Use it
    run: echo "later=%Later%;" && exit 3
    continue_on_error: true
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    let log = log_messages(&e);
    let has = |s: &str| log.iter().any(|m| m == s);
    for line in [
        "Command line: echo net use Z: //srv/share /user:lab/deploy ******** && echo 7z x -p******** /p:******** a.7z",
        "[stdout] net use Z: //srv/share /user:lab/deploy ********",
        "[stdout] 7z x -p******** /p:******** a.7z",
        "[stdout] later=********;",
    ] {
        assert!(has(line), "missing {line:?} in {log:#?}");
    }
    let (code, plan, _) = e.run(&["run", seq.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 0);
    let mut all = e.read("state/smsts.log");
    all.push_str(&e.read("state/events.jsonl"));
    all.push_str(&err);
    all.push_str(&plan);
    for secret in ["N3t-Us3-Pa55", "J0in-Pa55-77", "L4ter-S3cret"] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    assert!(plan.contains("\"Map the share\""), "{plan}");
    assert!(plan.contains("-p********"), "{plan}");
}

/// The passwords, PINs and keys of Microsoft's variable references are secret without being
/// declared so: ConfigMgr's *Task sequence variables*
/// (https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables) and
/// MDT's *Properties* (https://learn.microsoft.com/en-us/mem/configmgr/mdt/properties). Each
/// one set on the command line and echoed by a step is masked everywhere.
#[test]
fn every_documented_password_variable_is_masked() {
    const DOCUMENTED: &[&str] = &[
        // ConfigMgr
        "OSDJoinPassword",
        "OSDLocalAdminPassword",
        "OSDCaptureAccountPassword",
        "SMSConnectNetworkFolderPassword",
        "SMSTSRunCommandLineUserPassword",
        "SMSTSRunPowerShellUserPassword",
        "OSDMigrateLocalAccountPassword",
        "OSDBitLockerPIN",
        "OSDBitLockerRecoveryPassword",
        "OSDBitLockerStartupKey",
        // MDT
        "AdminPassword",
        "DomainAdminPassword",
        "UserPassword",
        "DBPwd",
        "ADDSPassword",
        "BDEPin",
    ];
    for name in DOCUMENTED {
        assert!(
            KNOWN_SECRETS.iter().any(|k| k.eq_ignore_ascii_case(name)),
            "{name} is not in KNOWN_SECRETS"
        );
    }
    let e = Env::new();
    let mut run = String::from("echo");
    for name in KNOWN_SECRETS {
        run.push_str(&format!(" {name}=%{name}%"));
    }
    let seq = e.write(
        "known.yaml",
        &format!("steps:\n  - name: Echo them\n    run: {run}\n"),
    );
    // Values no name contains, with a letter case the names do not share.
    let value = |i: usize| format!("v{i:02}-zq-s3cr3t");
    let mut args: Vec<String> = Vec::new();
    for (i, name) in KNOWN_SECRETS.iter().enumerate() {
        args.push("--var".into());
        args.push(format!("{name}={}", value(i)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = e.run_seq(&seq, &args);
    assert_eq!(code, 0, "{err}");
    let log = log_messages(&e);
    let mut want = String::from("[stdout]");
    for name in KNOWN_SECRETS {
        want.push_str(&format!(" {name}=********"));
    }
    assert!(log.contains(&want), "missing {want:?} in {log:#?}");
    let mut all = e.read("state/smsts.log");
    all.push_str(&e.read("state/events.jsonl"));
    all.push_str(&err);
    for (i, name) in KNOWN_SECRETS.iter().enumerate() {
        assert!(!all.contains(&value(i)), "{name} leaked");
    }
}

/// A pre-execution hook's output is logged with the secrets masked: the medium's `--secret`
/// values, and a password variable an earlier hook set (the boot environment's own log, before
/// any sequence runs).
#[test]
fn hook_output_is_masked() {
    let e = Env::new();
    let d = e.dir.path();
    let first = e.write(
        "set-join.sh",
        "#!/bin/sh\nprintf 'OSDJoinPassword=H00k-J0in-99\\n' >> \"$TSFORGE_ENV_FILE\"\n",
    );
    let second = e.write(
        "echo-them.sh",
        "#!/bin/sh\necho \"medium $DomainJoinPassword hook $OSDJoinPassword\"\n",
    );
    e.write(
        "seq.yaml",
        "name: Deploy\nsteps:\n  - name: Nothing\n    run: \"true\"\n",
    );
    let mut tree = MediaTree::new();
    tree.add("boot/placeholder.txt", b"template file".to_vec())
        .unwrap();
    let opts = MediaOptions {
        name: "Test medium".into(),
        sequences: vec![e.path("seq.yaml")],
        default: None,
        hooks: vec![first, second],
        secrets: vec![("DomainJoinPassword".into(), "Med1um-Pa55!".into())],
        password: Some("open sesame".into()),
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    assemble(&mut tree, &opts).unwrap();
    tree.write_to_dir(&d.join("medium")).unwrap();
    let mut child = tsforge_command(d, &["boot", "--medium", "medium", "--state-dir", "state"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"open sesame\n1\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let log = e.read("state/smsts.log");
    assert_eq!(o.status.code(), Some(0), "{err}\n{log}");
    assert!(
        log.contains("medium ******** hook ********"),
        "the hook's output, masked: {log}"
    );
    for secret in ["Med1um-Pa55!", "H00k-J0in-99"] {
        assert!(
            !log.contains(secret) && !err.contains(secret),
            "{secret} leaked: {log}\n{err}"
        );
    }
}
