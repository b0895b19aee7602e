//! End-to-end tests of `tsforge run`, `validate`, `env`: the behaviour administrators rely on,
//! through the real binary, on Linux command lines.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tsforge_runtime::log::cmtrace;

use crate::common::Env;

impl Env {
    fn log_text(&self) -> String {
        self.read("state/smsts.log")
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn seed_error_handler_pattern_copies_the_log_to_the_share() {
    for in_winpe in ["true", "false"] {
        let e = Env::new();
        std::fs::create_dir(e.path("share")).unwrap();
        let seq = e.write(
            "ts.yaml",
            r#"
name: Seed pattern
variables:
  Share: share
steps:
  - group: Deploy
    continue_on_error: true
    steps:
      - name: First
        run: echo first >> marks
      - name: Fails
        run: echo failing; exit 5
      - name: Never
        run: echo never >> marks
  - group: Error handler
    condition:
      variable: _SMSTSLastActionSucceeded
      value: "false"
    steps:
      - name: Record code
        run: echo "%_SMSTSLastActionRetCode%" > retcode
      - name: Copy log (WinPE)
        condition: {variable: _SMSTSInWinPE, value: "true"}
        run: cp "%_SMSTSLogPath%/smsts.log" "%Share%/%_SMSTSClientGuid%-smsts.log" && echo winpe >> marks
      - name: Copy log (full OS)
        condition: {variable: _SMSTSInWinPE, value: "false"}
        run: cp "%_SMSTSLogPath%/smsts.log" "%Share%/%_SMSTSClientGuid%-smsts.log" && echo fullos >> marks
"#,
        );
        let var = format!("_SMSTSInWinPE={in_winpe}");
        let (code, _, err) = e.run_seq(&seq, &["--var", &var]);
        assert_eq!(code, 0, "continue on error absorbs the failure: {err}");
        let branch = if in_winpe == "true" {
            "winpe"
        } else {
            "fullos"
        };
        assert_eq!(lines(&e.read("marks")), vec!["first", branch]);
        assert_eq!(e.read("retcode").trim(), "5");
        let guid = std::fs::read_to_string(e.path("machine/client-guid")).unwrap();
        let guid = guid.trim();
        assert_eq!(guid.len(), 36, "GUID shape: {guid}");
        let copied = e.path(&format!("share/{guid}-smsts.log"));
        let entries = cmtrace::parse(&std::fs::read_to_string(&copied).unwrap()).unwrap();
        assert!(entries
            .iter()
            .any(|x| x.level == 3 && x.message.contains("\"Fails\" failed (exit code 5)")));
        assert!(entries.iter().any(|x| x.message == "[stdout] failing"));
    }
}

#[test]
fn client_guid_is_kept_per_machine() {
    let e = Env::new();
    let seq = e.write(
        "a.yaml",
        "steps:\n  - name: g\n    run: echo %_SMSTSClientGuid% >> guids\n",
    );
    assert_eq!(e.run_seq(&seq, &[]).0, 0);
    assert_eq!(
        e.run(&["run", seq.to_str().unwrap(), "--state-dir", "state2"])
            .0,
        0
    );
    let g = e.read("guids");
    let g = lines(&g);
    assert_eq!(g.len(), 2);
    assert_eq!(g[0], g[1]);
}

#[test]
fn continue_on_error_at_step_and_group_level() {
    let e = Env::new();
    let seq = e.write(
        "coe.yaml",
        r#"
steps:
  - group: Outer
    continue_on_error: true
    steps:
      - name: Step with continue on error
        continue_on_error: true
        run: exit 2
      - name: Sees the failure
        run: echo "after-coe %_SMSTSLastActionSucceeded% %_SMSTSLastActionRetCode%" >> out
      - group: Inner without continue on error
        steps:
          - name: Inner fails
            run: exit 9
          - name: Inner skipped
            run: echo inner-skipped >> out
      - name: Outer rest skipped
        run: echo outer-skipped >> out
  - name: Top level goes on
    run: echo "top %_SMSTSLastActionSucceeded% %_SMSTSLastActionRetCode%" >> out
  - name: Top level failure ends the sequence
    run: exit 1
  - name: Not reached
    run: echo unreachable >> out
"#,
    );
    let (code, _, _) = e.run_seq(&seq, &[]);
    assert_eq!(code, 1, "a failure at the top level fails the sequence");
    assert_eq!(
        lines(&e.read("out")),
        vec!["after-coe false 2", "top false 9"]
    );
    let log = e.log_text();
    assert!(log.contains("Group \"Inner without continue on error\" failed]LOG]"));
    assert!(log.contains("Group \"Outer\" failed; continuing because it has continue on error"));
    assert!(log.contains("Task sequence \"coe\" failed (5 steps run)"));
    assert!(!log.contains("completed successfully"));
    let ends: Vec<_> = e
        .read("state/events.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "run_end")
        .collect();
    assert_eq!(ends.len(), 1);
    // Every record follows docs/events.schema.json: schema version, time, a known kind.
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../docs/events.schema.json")).unwrap();
    let kinds = schema["properties"]["event"]["enum"].as_array().unwrap();
    assert_eq!(kinds.len(), tsforge_runtime::log::events::KINDS.len());
    for line in e.read("state/events.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["schema"], 1);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(kinds.contains(&v["event"]), "{line}");
        for (k, _) in v.as_object().unwrap() {
            assert!(
                schema["properties"].get(k).is_some(),
                "field {k} not in the schema: {line}"
            );
        }
    }
    assert_eq!(ends[0]["succeeded"], false);
    assert_eq!(ends[0]["steps_run"], 5);
}

#[test]
fn disabled_and_conditions_with_nested_operators() {
    let e = Env::new();
    let seq = e.write(
        "cond.yaml",
        r#"
variables:
  Model: Virtual Machine
  Count: "10"
steps:
  - name: Disabled
    disabled: true
    run: echo disabled >> out
  - name: Numeric compare
    condition: {variable: Count, operator: greater, value: "9"}
    run: echo numeric >> out
  - name: Like and not
    condition:
      and:
        - {variable: Model, operator: like, value: "virtual*"}
        - not:
            - {variable: Missing, operator: exists}
    run: echo like-not >> out
  - name: Or with file
    condition:
      or:
        - {variable: Count, operator: less, value: "2"}
        - file: marker.txt
    run: echo or-file >> out
  - name: Or false
    condition:
      or:
        - {variable: Count, operator: lessEqual, value: "9"}
        - folder: no-such-folder
    run: echo or-false >> out
  - group: Skipped group
    # Values compare case-sensitively (ConfigMgr 2007, Task Sequence Options: Task Sequence
    # Variable, https://technet.microsoft.com/library/bb632960.aspx)
    condition: {variable: Model, operator: notEquals, value: "Virtual Machine"}
    steps:
      - name: In skipped group
        run: echo in-skipped >> out
"#,
    );
    e.write("marker.txt", "x");
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines(&e.read("out")),
        vec!["numeric", "like-not", "or-file"]
    );
    let log = e.log_text();
    assert!(log.contains("Skipping step \"Disabled\": disabled"));
    assert!(log.contains("Skipping group \"Skipped group\": its condition is false"));
}

#[test]
fn windows_only_condition_fails_the_step_with_its_name() {
    let e = Env::new();
    let seq = e.write(
        "wmi.yaml",
        "steps:\n  - name: Only on VMs\n    condition:\n      wmi: SELECT * FROM Win32_ComputerSystem\n    run: echo ran >> out\n",
    );
    let (code, _, _) = e.run_seq(&seq, &[]);
    assert_eq!(code, 1);
    assert_eq!(e.read("out"), "");
    assert!(e.log_text().contains("WMI conditions query Windows"));
}

#[test]
fn resume_after_kill_9_does_not_repeat_finished_steps() {
    let e = Env::new();
    let seq = e.write(
        "long.yaml",
        r#"
steps:
  - name: One
    run: echo one >> runs
  - name: Two (interrupted)
    run: echo two >> runs; echo $$ > two.pid; [ -f fast ] || sleep 60
  - name: Three
    run: echo three >> runs
"#,
    );
    let mut child = e
        .cmd(&["run", seq.to_str().unwrap(), "--state-dir", "state"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !e.path("two.pid").exists() || e.read("two.pid").trim().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "step two never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: the runner gets no chance to clean up
    child.wait().unwrap();
    // The step's own process group survives the runner; end it like a power cut would.
    // (Through the shell's builtin `kill`: procps-ng 4.0.2's /usr/bin/kill mis-parses
    // `-9 -PGID` and signals far more than the group.)
    let pgid: u32 = e.read("two.pid").trim().parse().unwrap();
    assert!(pgid > 1);
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s KILL -- -{pgid}"))
        .status();
    let state = e.read("state/state.json");
    assert!(
        state.contains("in_step"),
        "journal says step two was running: {state}"
    );

    e.write("fast", "");
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&e.read("runs")), vec!["one", "two", "two", "three"]);
    assert!(e
        .log_text()
        .contains("\"Two (interrupted)\" was interrupted before it finished; running it again"));
    // A finished run is not run again.
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0);
    assert!(err.contains("already finished"), "{err}");
    assert_eq!(lines(&e.read("runs")).len(), 4);
}

#[test]
fn restart_with_no_reboot_then_resume() {
    let e = Env::new();
    let seq = e.write(
        "restart.yaml",
        r#"
steps:
  - name: Before
    run: echo before >> runs
  - name: Set
    type: set-variable
    properties: {VariableName: Phase, VariableValue: first-boot}
  - name: Restart
    type: restart
    properties: {SMSRebootMessage: "Restarting for %Phase%", SMSRebootTimeout: "0"}
  - name: After
    run: echo "after %Phase% %_SMSTSLastActionSucceeded%" >> runs
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 3, "restart requested: {err}");
    assert_eq!(lines(&e.read("runs")), vec!["before"]);
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines(&e.read("runs")),
        vec!["before", "after first-boot true"]
    );
    let steps = e.read("state/steps.jsonl");
    assert_eq!(steps.lines().count(), 4, "each step exactly once: {steps}");
    assert!(e.log_text().contains("Restarting for first-boot"));
}

#[test]
fn secrets_never_reach_the_logs() {
    let e = Env::new();
    let seq = e.write(
        "secret.yaml",
        r#"
variables:
  OSDJoinPassword: Sup3rS3cret!
  ApiToken:
    value: tok-12345-abc
    hidden: true
steps:
  - name: Uses secrets
    run: echo "joining with %OSDJoinPassword% and $ApiToken"
  - name: Sets a secret
    type: set-variable
    properties:
      VariableName: OSDLocalAdminPassword
      VariableValue: Adm1n-Pa55
  - name: Echo it
    run: echo "admin %OSDLocalAdminPassword%"
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    let mut all = e.log_text();
    all.push_str(&e.read("state/events.jsonl"));
    all.push_str(&err);
    for secret in ["Sup3rS3cret!", "tok-12345-abc", "Adm1n-Pa55"] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
    assert!(e
        .log_text()
        .contains("[stdout] joining with ******** and ********"));
    assert!(e.log_text().contains("[stdout] admin ********"));
}

#[test]
fn steps_set_variables_and_capture_output() {
    let e = Env::new();
    let seq = e.write(
        "vars.yaml",
        r#"
steps:
  - name: Env set through the binary
    run: tsforge env set FromTool "a b=c" && test -z "$FromTool"
  - name: Env file directly
    run: printf 'Direct=yes\nMulti<<END\nl1\nl2\nEND\n' >> "$TSFORGE_ENV_FILE"
  - name: Read-only refused
    run: tsforge env set _SMSTSInWinPE true; echo "rc=$?" > ro
  - name: Capture output
    properties:
      CommandLine: echo captured-value
      SMSTSRunCommandLineOutputVariableName: Captured
    type: run
  - name: Use them
    run: echo "%FromTool%|%Direct%|%Captured%|$Multi" > result; tsforge env list | grep -c '^' > listed; tsforge env get FromTool > got
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(e.read("result"), "a b=c|yes|captured-value|l1\nl2\n");
    assert_eq!(e.read("ro").trim(), "rc=2");
    assert_eq!(e.read("got"), "a b=c\n");
    assert!(e.read("listed").trim().parse::<u32>().unwrap() > 5);
}

#[test]
fn retry_count_timeout_and_success_codes() {
    let e = Env::new();
    let seq = e.write(
        "retry.yaml",
        r#"
steps:
  - name: Flaky
    retry_count: 2
    run: echo x >> tries; [ $(wc -l < tries) -ge 3 ]
  - name: Custom success code
    success_codes: "0 42"
    run: exit 42
  - name: Too slow
    timeout: 1
    continue_on_error: true
    run: sleep 30
  - name: Report
    run: echo "%_SMSTSLastActionSucceeded%" > after-timeout
"#,
    );
    let t0 = Instant::now();
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(lines(&e.read("tries")).len(), 3);
    assert_eq!(e.read("after-timeout").trim(), "false");
    assert!(e.log_text().contains("timed out after 1 s"));
}

#[test]
fn sub_sequence_by_reference_and_cycles() {
    let e = Env::new();
    e.write(
        "CHILD01.yaml",
        "variables:\n  ChildDefault: from-child\nsteps:\n  - name: In child\n    run: echo \"child %ChildDefault%\" >> out\n",
    );
    let parent = e.write(
        "parent.yaml",
        r#"
steps:
  - name: Before
    run: echo parent >> out
  - name: Run child
    type: run-sequence
    properties: {TsPackageID: CHILD01}
  - name: After
    run: echo after >> out
"#,
    );
    let (code, _, err) = e.run_seq(&parent, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines(&e.read("out")),
        vec!["parent", "child from-child", "after"]
    );

    e.write(
        "LOOP1.yaml",
        "steps:\n  - name: to 2\n    type: run-sequence\n    properties: {TsPackageID: LOOP2}\n",
    );
    e.write(
        "LOOP2.yaml",
        "steps:\n  - name: to 1\n    type: run-sequence\n    properties: {TsPackageID: LOOP1}\n",
    );
    let (code, out, _) = e.run(&["validate", e.path("LOOP1.yaml").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("cycle"), "{out}");
    let (code, _, err) = e.run(&[
        "run",
        e.path("LOOP1.yaml").to_str().unwrap(),
        "--state-dir",
        "s2",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn custom_action_from_manifest_gets_its_properties() {
    let e = Env::new();
    e.write(
        "custom-actions.toml",
        "[[action]]\ntype = \"Contoso_SetAssetTag\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"echo tag=$AssetTag name=%Name% > custom-out\"]\n",
    );
    let seq = e.write(
        "custom.yaml",
        "variables:\n  Name: PC01\nsteps:\n  - name: Custom\n    type: Contoso_SetAssetTag\n    properties: {AssetTag: A-77}\n",
    );
    let (code, out, _) = e.run(&["validate", seq.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("not built into"),
        "manifest type is known: {out}"
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(e.read("custom-out").trim(), "tag=A-77 name=PC01");
}

#[test]
fn corrupt_state_is_reported_and_nothing_runs() {
    let e = Env::new();
    let seq = e.write("s.yaml", "steps:\n  - name: a\n    run: echo a >> runs\n  - name: b\n    type: restart\n  - name: c\n    run: echo c >> runs\n");
    assert_eq!(e.run_seq(&seq, &["--no-reboot"]).0, 3);
    let state = e.read("state/state.json");
    std::fs::write(e.path("state/state.json"), &state[..state.len() / 2]).unwrap();
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("state.json") && err.contains("corrupt or truncated"),
        "{err}"
    );
    assert_eq!(lines(&e.read("runs")), vec!["a"]);
}

#[test]
fn resume_refuses_a_changed_sequence() {
    let e = Env::new();
    let seq = e.write(
        "s.yaml",
        "steps:\n  - name: r\n    type: restart\n  - name: c\n    run: echo c\n",
    );
    assert_eq!(e.run_seq(&seq, &["--no-reboot"]).0, 3);
    e.write(
        "s.yaml",
        "steps:\n  - name: r\n    type: restart\n  - name: c\n    run: echo changed\n",
    );
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 2);
    assert!(err.contains("different version of this sequence"), "{err}");
}

/// A run started from the boot medium resumes from a copy of the sequence at another path
/// (the deployed OS's disk), as long as its steps are the same; the built-ins that describe
/// where the run is (`_SMSTSInWinPE`, the machine's name and facts, the log folder) are
/// re-evaluated on resume, and the change is logged.
#[test]
fn resume_follows_the_sequence_to_another_path_and_reevaluates_built_ins() {
    let e = Env::new();
    let text = "steps:\n  - name: phase 1\n    run: echo %_SMSTSInWinPE% >> phases\n  - name: r\n    type: restart\n  - name: phase 2\n    run: echo %_SMSTSInWinPE% >> phases\n";
    let medium = e.write("s.yaml", text);
    let mut first = e.cmd(&[
        "run",
        medium.to_str().unwrap(),
        "--state-dir",
        "state",
        "--no-reboot",
    ]);
    first.env("TSFORGE_BOOT_ENV", "1");
    let (code, _, err) = crate::common::output(&mut first);
    assert_eq!(code, 3, "{err}");
    std::fs::remove_file(&medium).unwrap();
    std::fs::create_dir(e.path("os")).unwrap();
    // The copy keeps its file name: a sequence without a name of its own is named after it.
    let copy = e.path("os/s.yaml");
    std::fs::write(&copy, text).unwrap();
    let (code, _, err) = e.run_seq(&copy, &["--no-reboot"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&e.read("phases")), vec!["true", "false"]);
    let log = e.read("state/smsts.log");
    assert!(
        log.contains("Built-in variables re-evaluated on resume: _SMSTSInWinPE: true -> false"),
        "{log}"
    );
}

#[test]
fn dry_run_lists_the_plan_and_changes_nothing() {
    let e = Env::new();
    let seq = e.write(
        "plan.yaml",
        r#"
steps:
  - name: Set target
    type: set-variable
    properties: {VariableName: Target, VariableValue: lab}
  - name: Only in lab
    condition: {variable: Target, value: lab}
    run: echo %Target% > out
  - name: Disabled
    disabled: true
    run: echo disabled > out
"#,
    );
    let (code, out, _) = e.run_seq(&seq, &["--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("RUN    1 \"Set target\""), "{out}");
    assert!(out.contains("echo lab > out"), "{out}");
    assert!(out.contains("SKIP   3 \"Disabled\" (disabled)"), "{out}");
    assert!(!e.path("out").exists());
    assert!(!e.path("state").exists(), "dry run writes no state");
}

#[test]
fn validate_reports_positioned_errors_and_warnings() {
    let e = Env::new();
    let bad = e.write(
        "bad.yaml",
        r#"
steps:
  - name: Bad bool
    disabled: maybe
    run: echo
  - name: Bad operator
    condition: {variable: X, operator: notEqual, value: "1"}
    run: echo
  - name: Unknown type
    type: SMS_TaskSequence_PartitionDiskActoin
    action: osddiskpart.exe
  - name: Sets read-only
    type: set-variable
    properties: {VariableName: _SMSTSInWinPE, VariableValue: "true"}
"#,
    );
    let (code, out, _) = e.run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let f = bad.display().to_string();
    assert!(
        out.contains(&format!("{f}:3:5: step attribute disable=\"maybe\"")),
        "{out}"
    );
    assert!(
        out.contains("unknown variable operator \"notEqual\" (did you mean notEquals?)"),
        "{out}"
    );
    assert!(out.contains("warning: step \"Unknown type\": type SMS_TaskSequence_PartitionDiskActoin is not built into tsforge"), "{out}");
    assert!(
        out.contains("(did you mean SMS_TaskSequence_PartitionDiskAction?)"),
        "{out}"
    );
    assert!(out.contains("_SMSTSInWinPE, which is read-only"), "{out}");

    let syntax = e.write("syntax.yaml", "steps:\n  - name: a\n    run: [unclosed\n");
    let (code, out, _) = e.run(&["validate", syntax.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.starts_with(&format!("{}:", syntax.display())), "{out}");
    let (code, _, err) = e.run(&["validate", "missing.yaml"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn powershell_step_without_interpreter_fails_with_a_clear_message() {
    let e = Env::new();
    let seq = e.write(
        "ps.yaml",
        "steps:\n  - name: PS\n    type: powershell\n    properties: {ScriptName: setup.ps1, ScriptParameters: \"-Name 'Lab PC'\"}\n",
    );
    std::fs::create_dir(e.path("empty-path")).unwrap();
    let out = e
        .cmd(&["run", seq.to_str().unwrap(), "--state-dir", "state"])
        .env("PATH", e.path("empty-path"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = e.log_text();
    assert!(
        log.contains("Run PowerShell Script needs pwsh on PATH, and it was not found"),
        "{log}"
    );
}

/// *Apply Data Image*'s `WipeDestinationPartition` (SMS_TaskSequence_ApplyDataImageAction,
/// https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applydataimageaction-server-wmi-class)
/// is not carried out: a file already in the destination stays, the image's files are
/// applied, and smsts.log says so with a warning (docs/engine.md) rather than dropping the
/// property silently.
#[test]
fn wipe_destination_partition_is_not_carried_out_and_says_so() {
    let e = Env::new();
    std::fs::create_dir_all(e.path("src")).unwrap();
    std::fs::write(e.path("src/new.txt"), "from the image\n").unwrap();
    let (code, _, err) = e.run(&["capture", "src", "img.zip"]);
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir_all(e.path("out")).unwrap();
    std::fs::write(e.path("out/old.txt"), "was there before\n").unwrap();
    let seq = e.write(
        "ts.yaml",
        "name: Wipe\nsteps:\n  - name: Apply data\n    type: apply-data-image\n    properties:\n      ImagePath: img.zip\n      Destination: out\n      WipeDestinationPartition: \"true\"\n",
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    let log = e.read("state/smsts.log");
    assert_eq!(code, 0, "{err}\n{log}");
    assert_eq!(e.read("out/new.txt"), "from the image\n");
    assert_eq!(e.read("out/old.txt"), "was there before\n");
    let entries = cmtrace::parse(&log).unwrap();
    assert!(
        entries.iter().any(|x| x.level == 2
            && x.message.contains("WipeDestinationPartition is true")
            && x.message.contains("does not delete")),
        "{log}"
    );
}
