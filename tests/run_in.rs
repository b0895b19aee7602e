//! `runIn` (ConfigMgr's `SupportedEnvironment`) enforced by `tsforge run` and checked by
//! `tsforge validate`, through the real binary.
//!
//! The values and the default come from the SMS_TaskSequence_Action server WMI class,
//! <https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/osd/sms_tasksequence_action-server-wmi-class>
//! (WinPE, FullOS, WinPEandFullOS; default WinPEandFullOS). What happens on a mismatch is not
//! documented there: tsforge's choice is in docs/engine.md ("runIn").

use crate::common::Env;

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn full_os_step_in_the_boot_environment_fails_and_continue_on_error_applies() {
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        r#"
name: runIn
steps:
  - name: Install apps
    run_in: FullOS
    continue_on_error: true
    run: echo apps >> marks
  - name: Record
    run: echo "%_SMSTSLastActionSucceeded% %_SMSTSLastActionName%" >> marks
  - name: Strict FullOS
    run_in: FullOS
    run: echo strict >> marks
  - name: Never
    run: echo never >> marks
"#,
    );
    let out = e
        .cmd(&["run", seq.to_str().unwrap(), "--state-dir", "state"])
        .env("TSFORGE_BOOT_ENV", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the FullOS step without continue-on-error fails the run"
    );
    assert_eq!(
        lines(&e.read("marks")),
        vec!["false Install apps"],
        "neither FullOS step ran"
    );
    let log = e.read("state/smsts.log");
    assert!(
        log.contains(
            "step \"Install apps\" has runIn FullOS (it runs only in the deployed operating \
             system) but the run is in the boot environment (_SMSTSInWinPE=true); hand the run \
             over first with a Setup Windows and ConfigMgr step"
        ),
        "{log}"
    );
    assert!(log.contains("Continuing after \"Install apps\""), "{log}");
    assert!(log.contains("Step \"Strict FullOS\" failed"), "{log}");
}

#[test]
fn winpe_step_on_an_administrators_machine_runs_and_says_runin_was_not_enforced() {
    let e = Env::new();
    let seq = e.write(
        "ts.yaml",
        r#"
name: runIn
steps:
  - name: Partition (WinPE)
    run_in: WinPE
    run: echo "pe %_SMSTSInWinPE%" >> marks
  - name: Apps (FullOS)
    run_in: FullOS
    run: echo "full %_SMSTSInWinPE%" >> marks
"#,
    );
    let (code, _, err) = e.run_seq(&seq, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&e.read("marks")), vec!["pe false", "full false"]);
    let log = e.read("state/smsts.log");
    assert!(
        log.contains(
            "runIn WinPE of step \"Partition (WinPE)\" not enforced: _SMSTSInWinPE is false but \
             the run was never handed over to a deployed OS, so this is not a deployment target"
        ),
        "{log}"
    );
    // In the boot environment the WinPE step runs without that line.
    let e2 = Env::new();
    let seq2 = e2.write(
        "ts.yaml",
        "name: pe\nsteps:\n  - name: PE only\n    run_in: WinPE\n    run: echo \"pe %_SMSTSInWinPE%\" >> marks\n",
    );
    let out = e2
        .cmd(&["run", seq2.to_str().unwrap(), "--state-dir", "state"])
        .env("TSFORGE_BOOT_ENV", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(lines(&e2.read("marks")), vec!["pe true"]);
    assert!(!e2.read("state/smsts.log").contains("not enforced"));
}

#[test]
fn validate_warns_about_orders_that_cannot_work_and_rejects_unknown_values() {
    let e = Env::new();
    let f = e.write(
        "order.yaml",
        r#"
name: order
steps:
  - name: Capture state
    run_in: FullOS
    run: echo
  - name: Restart in WinPE
    type: restart
    properties: {SMSRebootTarget: WinPE}
  - name: Too early
    run_in: FullOS
    run: echo
  - name: Hand over
    type: hand-over
  - name: Too late
    run_in: WinPE
    run: echo
  - name: Back to the medium
    type: restart
    properties: {SMSRebootTarget: WinPE}
  - name: Fine again
    run_in: WinPE
    run: echo
"#,
    );
    let (code, out, _) = e.run(&["validate", f.to_str().unwrap()]);
    assert_eq!(code, 0, "warnings only: {out}");
    let p = f.display().to_string();
    assert!(
        out.contains(&format!(
            "{p}:10:5: warning: step \"Too early\" has runIn FullOS but comes after \"Restart in WinPE\" (line 7), which puts the run in the boot environment, and before the hand-over step \"Hand over\" (line 13)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{p}:15:5: warning: step \"Too late\" has runIn WinPE but comes after the hand-over step \"Hand over\" (line 13) with no Restart Computer to the boot medium"
        )),
        "{out}"
    );
    // ConfigMgr's refresh order: state captured in the old OS before the restart into the
    // boot environment.
    assert!(!out.contains("Capture state"), "{out}");
    assert!(!out.contains("Fine again"), "{out}");

    // A sequence that never hands over may start in the full OS (MDT's refresh): no warning.
    let g = e.write(
        "client.yaml",
        "name: client\nsteps:\n  - name: Apps\n    run_in: FullOS\n    run: echo\n",
    );
    let (code, out, _) = e.run(&["validate", g.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");

    let bad = e.write(
        "bad.yaml",
        "name: bad\nsteps:\n  - name: Odd\n    run_in: FullOs2\n    run: echo\n",
    );
    let (code, out, _) = e.run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{}:3:5: step \"Odd\": runIn=\"FullOs2\" must be WinPE, FullOS or WinPEandFullOS",
            bad.display()
        )),
        "{out}"
    );
}

/// A real console export of ConfigMgr's refresh/bare-metal template: user state captured in the
/// old OS (runIn FullOS) before *Restart in Windows PE*, then WinPE steps, then *Setup Windows
/// and ConfigMgr*: no order warning, and the hand-over step is built in.
#[test]
fn exported_osd_template_order_is_accepted() {
    let e = Env::new();
    let f = crate::common::repo("tests/fixtures/sequences/cm-osd-deploy.xml");
    let (code, out, _) = e.run(&["validate", &f]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("runIn"), "{out}");
    assert!(
        !out.contains("SMS_TaskSequence_SetupWindowsAndSMSAction is not built into tsforge"),
        "{out}"
    );
}
