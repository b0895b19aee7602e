//! *Setup Windows and ConfigMgr* hands the run over to a deployed Linux, and the first boot
//! of that OS resumes the same run, through the real binary on a folder that stands for the
//! deployed OS (no QEMU): the runner command of the start script the first-boot hook starts is
//! run with its paths rebased into that folder, and `TSFORGE_HANDOVER_ROOT` names the folder
//! for the end-of-run removals.
//!
//! The step and what it does: Task sequence steps, "Setup Windows and ConfigMgr",
//! <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetupWindowsandConfigMgr>
//! (the task sequence goes on in the new OS after it). runIn values: SMS_TaskSequence_Action,
//! <https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/osd/sms_tasksequence_action-server-wmi-class>.
//! The `/etc/inittab` hook of an OS without systemd: inittab(5) (SysV init:
//! `id:runlevels:action:process`, <https://man7.org/linux/man-pages/man5/inittab.5.html>) and
//! busybox's examples/inittab (the id field names the tty, runlevels are ignored:
//! <https://git.busybox.net/busybox/tree/examples/inittab>).

use crate::common::Env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// The arguments of a systemd ExecStart line written with every argument in double quotes.
fn exec_args(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut a = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => a.push(chars.next().unwrap()),
                '"' => break,
                _ => a.push(c),
            }
        }
        out.push(a.replace("%%", "%"));
    }
    out
}

/// The runner command of the start script: its line of single-quoted arguments.
pub(crate) fn start_args(os: &Path) -> Vec<String> {
    let script = std::fs::read_to_string(os.join("var/lib/tsforge/handover/start")).unwrap();
    let line = script
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('\''))
        .unwrap_or_else(|| panic!("no runner line in\n{script}"));
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let a = cur.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    a.push(c);
                }
            }
            '\\' => cur
                .get_or_insert_with(String::new)
                .push(chars.next().unwrap()),
            ' ' => out.extend(cur.take()),
            _ => cur.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(cur);
    out
}

/// A tree that stands for a deployed OS with systemd.
pub(crate) fn systemd_os(os: &Path, os_release: &str) {
    std::fs::create_dir_all(os.join("etc")).unwrap();
    std::fs::write(os.join("etc/os-release"), os_release).unwrap();
    std::fs::create_dir_all(os.join("usr/lib/systemd")).unwrap();
    std::fs::write(os.join("usr/lib/systemd/systemd"), b"\x7fELF").unwrap();
}

/// The handed-over runner started as the deployed OS's start script starts it (`start_args`,
/// paths under `os`), with `extra` arguments, as the deployed OS would (no boot environment).
pub(crate) fn run_handed_over(e: &Env, os: &Path, extra: &[&str]) -> std::process::Output {
    let args = start_args(os);
    Command::new(rebase(os, &args[0]))
        .args(args[1..].iter().map(|a| rebase(os, a)))
        .args(extra)
        .current_dir(e.path(""))
        .env("TSFORGE_MACHINE_DIR", e.path("machine"))
        .env("TSFORGE_HANDOVER_ROOT", os)
        .env_remove("TSFORGE_BOOT_ENV")
        .env_remove("TSFORGE_STATE_DIR")
        .output()
        .unwrap()
}

pub(crate) fn rebase(root: &Path, p: &str) -> String {
    if p.starts_with('/') {
        root.join(p.trim_start_matches('/')).display().to_string()
    } else {
        p.to_string()
    }
}

const SEQ: &str = r#"
name: Deploy Linux
steps:
  - name: PE step
    run_in: WinPE
    run: echo "pe %_SMSTSInWinPE%" >> marks
  - name: Hand over
    type: hand-over
  - name: First FullOS
    run_in: FullOS
    run: echo "full %_SMSTSInWinPE%" >> marks
  - name: Late PE
    run_in: WinPE
    continue_on_error: true
    run: echo late >> marks
  - name: Restart in the OS
    type: restart
    properties: {SMSRebootTarget: HD}
  - name: Second FullOS
    run_in: FullOS
    run: echo "second %_SMSTSInWinPE%" >> marks
"#;

#[test]
fn hand_over_to_linux_resumes_the_same_run_at_first_boot_and_cleans_up() {
    let e = Env::new();
    let os = e.path("os");
    systemd_os(
        &os,
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    );
    let seq = e.write("deploy.yaml", SEQ);
    let target = format!("OSDTargetSystemDrive={}", os.display());

    // Phase 1, in the boot environment: hand over, restart requested.
    let out = e
        .cmd(&[
            "run",
            seq.to_str().unwrap(),
            "--state-dir",
            "state",
            "--no-reboot",
            "--var",
            &target,
        ])
        .env("TSFORGE_BOOT_ENV", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&e.read("marks")), vec!["pe true"]);

    let unit =
        std::fs::read_to_string(os.join("etc/systemd/system/tsforge-handover.service")).unwrap();
    for l in [
        "Wants=network-online.target",
        "After=network-online.target",
        "Type=oneshot",
        "StandardOutput=journal+console",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|x| x == l), "{l} in\n{unit}");
    }
    assert_eq!(exec_args(&unit), vec!["/var/lib/tsforge/handover/start"]);
    let args = start_args(&os);
    assert_eq!(
        args,
        vec![
            "/var/lib/tsforge/handover/tsforge",
            "run",
            "/var/lib/tsforge/handover/sequence/deploy.yaml",
            "--state-dir",
            "/_SMSTaskSequence/state",
            "--log-dir",
            "/var/log/tsforge"
        ]
    );
    let link = os.join("etc/systemd/system/multi-user.target.wants/tsforge-handover.service");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("/etc/systemd/system/tsforge-handover.service")
    );
    let runner = os.join("var/lib/tsforge/handover/tsforge");
    {
        use std::os::unix::fs::PermissionsExt;
        let start = std::fs::metadata(os.join("var/lib/tsforge/handover/start")).unwrap();
        assert_eq!(start.permissions().mode() & 0o777, 0o755);
        let m = std::fs::metadata(&runner).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            m.len(),
            std::fs::metadata(env!("CARGO_BIN_EXE_tsforge"))
                .unwrap()
                .len()
        );
    }
    assert_eq!(
        std::fs::read_to_string(os.join("var/lib/tsforge/handover/sequence/deploy.yaml")).unwrap(),
        SEQ
    );
    let state = std::fs::read_to_string(os.join("_SMSTaskSequence/state/state.json")).unwrap();
    assert!(state.contains("\"handover\""), "{state}");
    let first_log = std::fs::read_to_string(os.join("var/log/tsforge/smsts.log")).unwrap();
    assert!(first_log.contains("\"PE step\" succeeded"), "{first_log}");

    // Phase 2, the deployed OS's first boot: the start script's runner command, paths rebased.
    let first_boot = || {
        let mut c = Command::new(rebase(&os, &args[0]));
        c.args(args[1..].iter().map(|a| rebase(&os, a)))
            .arg("--no-reboot")
            .current_dir(e.path(""))
            .env("TSFORGE_MACHINE_DIR", e.path("machine"))
            .env("TSFORGE_HANDOVER_ROOT", &os)
            .env_remove("TSFORGE_BOOT_ENV")
            .env_remove("TSFORGE_STATE_DIR");
        c.output().unwrap()
    };
    let out = first_boot();
    assert_eq!(
        out.status.code(),
        Some(3),
        "restart in the FullOS phase: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&e.read("marks")), vec!["pe true", "full false"]);
    assert!(runner.exists(), "the unit stays until the run ends");

    // The restart in the full OS: the unit starts the runner again.
    let out = first_boot();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&e.read("marks")),
        vec!["pe true", "full false", "second false"],
        "every step once; the WinPE step after the hand-over did not run"
    );
    for gone in [
        "etc/systemd/system/tsforge-handover.service",
        "var/lib/tsforge/handover",
        "_SMSTaskSequence",
    ] {
        assert!(!os.join(gone).exists(), "{gone} removed");
    }
    assert!(std::fs::symlink_metadata(&link).is_err(), "symlink removed");
    let log = std::fs::read_to_string(os.join("var/log/tsforge/smsts.log")).unwrap();
    assert!(
        log.contains("\"PE step\" succeeded"),
        "first phase kept: {log}"
    );
    assert!(
        log.contains(
            "step \"Late PE\" has runIn WinPE (it runs only in the boot environment) but the run \
             was handed over to the deployed operating system"
        ),
        "{log}"
    );
    assert!(log.contains("_SMSTSInWinPE: true -> false"), "{log}");
    for removed in [
        "Removed /etc/systemd/system/multi-user.target.wants/tsforge-handover.service",
        "Removed /etc/systemd/system/tsforge-handover.service",
        "Removed /var/lib/tsforge/handover",
        "Removed /_SMSTaskSequence",
    ] {
        assert!(log.contains(removed), "{removed}: {log}");
    }
    assert!(log.contains("completed successfully"), "{log}");
}

#[test]
fn hand_over_without_a_target_or_to_windows_from_linux_fails_clearly() {
    let e = Env::new();
    let seq = e.write(
        "h.yaml",
        "name: h\nsteps:\n  - name: Hand over\n    type: hand-over\n",
    );
    let (code, _, _) = e.run_seq(&seq, &["--no-reboot"]);
    assert_eq!(code, 1);
    let log = e.read("state/smsts.log");
    assert!(
        log.contains("no deployed OS to hand the run over to: OSDTargetSystemDrive is not set"),
        "{log}"
    );

    // A Windows tree: the run resumes there with tsforge.exe, so this Linux runner refuses
    // to hand over (a Linux binary copied into Windows would never start) and writes
    // nothing. The Windows runner's hand-over (SetupComplete.cmd) is run under Wine in
    // tests/wine.rs.
    let e = Env::new();
    let win = e.path("win");
    std::fs::create_dir_all(win.join("Windows/System32/config")).unwrap();
    std::fs::write(win.join("Windows/System32/config/SYSTEM"), b"regf").unwrap();
    let seq = e.write(
        "h.yaml",
        "name: h\nsteps:\n  - name: Hand over\n    type: hand-over\n",
    );
    let target = format!("OSDTargetSystemDrive={}", win.display());
    let (code, _, err) = e.run_seq(&seq, &["--no-reboot", "--var", &target]);
    assert_eq!(code, 1, "{err}");
    let log = e.read("state/smsts.log");
    assert!(
        log.contains("holds Windows: the run resumes there with the Windows runner (tsforge.exe)"),
        "{log}"
    );
    assert!(!win.join("Windows/Setup").exists());
    assert!(!win.join("_SMSTaskSequence").exists());
}

/// A child sequence found through `--sequence-dir` is copied at the same place relative to the
/// parent, and the unit searches its folder, so the deployed OS resumes with it.
#[test]
fn hand_over_carries_child_sequences() {
    let e = Env::new();
    let os = e.path("os");
    systemd_os(&os, "ID=debian\n");
    std::fs::create_dir_all(e.path("ts")).unwrap();
    std::fs::create_dir_all(e.path("lib")).unwrap();
    e.write(
        "lib/APPS01.yaml",
        "name: Apps\nsteps:\n  - name: App\n    run_in: FullOS\n    run: echo \"app %_SMSTSInWinPE%\" >> marks\n",
    );
    let parent = e.write(
        "ts/parent.yaml",
        "name: Parent\nsteps:\n  - name: Hand over\n    type: hand-over\n  - name: Apps\n    type: run-sequence\n    properties: {TsPackageID: APPS01}\n",
    );
    let target = format!("OSDTargetSystemDrive={}", os.display());
    let out = e
        .cmd(&[
            "run",
            parent.to_str().unwrap(),
            "--state-dir",
            "state",
            "--no-reboot",
            "--sequence-dir",
            "lib",
            "--var",
            &target,
        ])
        .env("TSFORGE_BOOT_ENV", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seqdir = os.join("var/lib/tsforge/handover/sequence");
    assert!(seqdir.join("ts/parent.yaml").is_file());
    assert!(seqdir.join("lib/APPS01.yaml").is_file());
    let args = start_args(&os);
    assert_eq!(
        args[args.len() - 2..],
        [
            "--sequence-dir".to_string(),
            "/var/lib/tsforge/handover/sequence/lib".to_string()
        ]
    );
    let out = run_handed_over(&e, &os, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&e.read("marks")), vec!["app false"]);
    assert!(!os.join("var/lib/tsforge/handover").exists());
}

const INITTAB: &str =
    "# busybox init\n::sysinit:/etc/init.d/rcS\n::askfirst:-/bin/sh\n::shutdown:/bin/umount -a -r";

fn hand_over(e: &Env, os: &Path, seq: &Path) -> std::process::Output {
    let target = format!("OSDTargetSystemDrive={}", os.display());
    e.cmd(&[
        "run",
        seq.to_str().unwrap(),
        "--state-dir",
        "state",
        "--no-reboot",
        "--var",
        &target,
    ])
    .env("TSFORGE_BOOT_ENV", "1")
    .output()
    .unwrap()
}

/// An OS without systemd whose /sbin/init is busybox gets a `::once:` line in /etc/inittab
/// (busybox examples/inittab: empty id = the console, runlevels ignored, `once` starts the
/// process once at boot); the end of the run removes exactly that line, leaving the file
/// byte-identical (here one without a final newline). Setup Windows and ConfigMgr:
/// <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetupWindowsandConfigMgr>.
#[test]
fn busybox_init_gets_an_inittab_line_removed_byte_for_byte_at_the_end() {
    let e = Env::new();
    let os = e.path("os");
    for d in ["etc", "bin", "sbin"] {
        std::fs::create_dir_all(os.join(d)).unwrap();
    }
    std::fs::write(os.join("etc/os-release"), "ID=tsforge-sample\n").unwrap();
    std::fs::write(os.join("etc/inittab"), INITTAB).unwrap();
    std::fs::write(os.join("bin/busybox"), b"\x7fELF").unwrap();
    std::os::unix::fs::symlink("/bin/busybox", os.join("sbin/init")).unwrap();
    let seq = e.write(
        "deploy.yaml",
        "name: Sample\nsteps:\n  - name: Hand over\n    type: hand-over\n  - name: In the OS\n    run_in: FullOS\n    run: echo \"full %_SMSTSInWinPE%\" >> marks\n",
    );
    let out = hand_over(&e, &os, &seq);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(os.join("etc/inittab")).unwrap(),
        format!("{INITTAB}\n::once:/var/lib/tsforge/handover/start\n")
    );
    assert!(
        !os.join("etc/systemd").exists(),
        "no systemd unit in an OS without systemd"
    );
    let log = e.read("state/smsts.log");
    assert!(
        log.contains(
            "the line \"::once:/var/lib/tsforge/handover/start\" in /etc/inittab (busybox init)"
        ),
        "{log}"
    );

    assert_eq!(start_args(&os)[0], "/var/lib/tsforge/handover/tsforge");
    let out = run_handed_over(&e, &os, &["--no-reboot"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&e.read("marks")), vec!["full false"]);
    assert_eq!(
        std::fs::read(os.join("etc/inittab")).unwrap(),
        INITTAB.as_bytes(),
        "inittab as it was before the hand-over"
    );
    assert!(!os.join("var/lib/tsforge/handover").exists());
    assert!(!os.join("_SMSTaskSequence").exists());
    let log = std::fs::read_to_string(os.join("var/log/tsforge/smsts.log")).unwrap();
    assert!(
        log.contains(
            "Removed the line \"::once:/var/lib/tsforge/handover/start\" from /etc/inittab"
        ),
        "{log}"
    );
}

/// SysV init (inittab(5), <https://man7.org/linux/man-pages/man5/inittab.5.html>: an id of
/// 1-4 characters, the runlevels, `once`) gets `tsf:2345:once:`; an OS with neither systemd nor
/// an inittab fails the step before anything is copied into it, naming what was looked for.
#[test]
fn sysv_init_gets_its_inittab_form_and_an_os_without_init_fails_untouched() {
    let e = Env::new();
    let os = e.path("sysv");
    for d in ["etc", "sbin"] {
        std::fs::create_dir_all(os.join(d)).unwrap();
    }
    std::fs::write(os.join("etc/os-release"), "ID=devuan\n").unwrap();
    std::fs::write(os.join("etc/inittab"), "id:2:initdefault:\n").unwrap();
    std::fs::write(os.join("sbin/init"), b"\x7fELF sysvinit").unwrap();
    let seq = e.write(
        "h.yaml",
        "name: h\nsteps:\n  - name: Hand over\n    type: hand-over\n",
    );
    let out = hand_over(&e, &os, &seq);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(os.join("etc/inittab")).unwrap(),
        "id:2:initdefault:\ntsf:2345:once:/var/lib/tsforge/handover/start\n"
    );

    let e = Env::new();
    let os = e.path("bare");
    std::fs::create_dir_all(os.join("etc")).unwrap();
    std::fs::write(os.join("etc/os-release"), "ID=debian\n").unwrap();
    let seq = e.write(
        "h.yaml",
        "name: h\nsteps:\n  - name: Hand over\n    type: hand-over\n",
    );
    let out = hand_over(&e, &os, &seq);
    assert_eq!(out.status.code(), Some(1));
    let log = e.read("state/smsts.log");
    assert!(
        log.contains(
            "has no init tsforge can hand the run over to: neither systemd \
             (/lib/systemd/systemd or /usr/lib/systemd/systemd) nor an /etc/inittab (busybox \
             or SysV init)"
        ),
        "{log}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&os)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["etc"], "nothing copied into the OS");
    assert_eq!(std::fs::read_dir(os.join("etc")).unwrap().count(), 1);
}

/// The start script both hooks run: valid for every sh the deployed OS may have (busybox ash,
/// dash, bash), and it prints the line the linux medium's /init prints, which `tsforge try`
/// reads as the outcome.
#[test]
fn start_script_is_valid_sh_and_prints_the_exit_line() {
    let e = Env::new();
    let os = e.path("os");
    systemd_os(&os, "ID=debian\n");
    let seq = e.write(
        "h.yaml",
        "name: h\nsteps:\n  - name: Hand over\n    type: hand-over\n",
    );
    assert_eq!(hand_over(&e, &os, &seq).status.code(), Some(3));
    let start = os.join("var/lib/tsforge/handover/start");
    let text = std::fs::read_to_string(&start).unwrap();
    assert!(text.starts_with("#!/bin/sh\n"), "{text}");
    assert!(
        text.contains("echo \"tsforge: the runner exited with code $rc\""),
        "{text}"
    );
    assert!(
        text.contains("for c in $(cat /sys/class/tty/console/active 2>/dev/null); do"),
        "{text}"
    );
    let mut checked = 0;
    for sh in [
        &["sh", "-n"][..],
        &["dash", "-n"],
        &["bash", "-n"],
        &["busybox", "sh", "-n"],
    ] {
        let Ok(out) = Command::new(sh[0]).args(&sh[1..]).arg(&start).output() else {
            continue;
        };
        assert!(
            out.status.success(),
            "{sh:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 2, "no shell checked the script");
}

/// The hand-over stages the packages the steps after it name, from the run's distribution
/// point folders (the medium's packages) into the deployed OS beside the run's state, so the
/// full OS installs them with the medium gone and no network (as ConfigMgr's stand-alone media
/// deployments install from the medium): *Install Package* (`SMS_TaskSequence_InstallSoftwareAction`,
/// <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_InstallPackage>)
/// runs in the full OS from the staged copy; the staged copy goes with `_SMSTaskSequence`.
#[test]
fn hand_over_stages_the_packages_of_later_steps() {
    let e = Env::new();
    let os = e.path("os");
    systemd_os(
        &os,
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    );
    let pkg = e.path("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("payload.txt"), "lab tools 1.0\n").unwrap();
    std::fs::write(
        pkg.join("install.sh"),
        "set -e\nmkdir -p \"$1/opt/lab\"\ncp payload.txt \"$1/opt/lab/\"\n",
    )
    .unwrap();
    let (code, _, err) = e.run(&[
        "package",
        "build",
        "pkg",
        "--id",
        "LAB00042",
        "--program",
        "Install=sh install.sh %OSRoot%",
        "--out",
        "dp",
    ]);
    assert_eq!(code, 0, "{err}");
    let seq = e.write(
        "deploy.yaml",
        "name: Deploy Linux\nsteps:\n  - name: Hand over\n    type: hand-over\n  \
         - name: Install the lab tools\n    type: install-package\n    run_in: FullOS\n    \
         properties:\n      PackageID: LAB00042\n      ProgramName: Install\n",
    );
    let target = format!("OSDTargetSystemDrive={}", os.display());
    let root_var = format!("OSRoot={}", os.display());
    let out = e
        .cmd(&[
            "run",
            seq.to_str().unwrap(),
            "--state-dir",
            "state",
            "--no-reboot",
            "--content",
            "dp",
            "--var",
            &target,
            "--var",
            &root_var,
        ])
        .env("TSFORGE_BOOT_ENV", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staged = os.join("_SMSTaskSequence/state/packages/LAB00042");
    assert!(staged.join("tsforge-package.json").is_file());
    assert!(staged.join("files/payload.txt").is_file());
    // The medium is gone.
    std::fs::rename(e.path("dp"), e.path("dp-gone")).unwrap();

    let out = Command::new(os.join("var/lib/tsforge/handover/tsforge"))
        .args(["run", "var/lib/tsforge/handover/sequence/deploy.yaml"])
        .args(["--state-dir", "_SMSTaskSequence/state"])
        .args(["--log-dir", "var/log/tsforge"])
        .current_dir(&os)
        .env("TSFORGE_MACHINE_DIR", e.path("machine"))
        .env("TSFORGE_HANDOVER_ROOT", &os)
        .env_remove("TSFORGE_BOOT_ENV")
        .env_remove("TSFORGE_STATE_DIR")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(os.join("var/log/tsforge/smsts.log")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(os.join("opt/lab/payload.txt")).unwrap(),
        "lab tools 1.0\n"
    );
    assert!(
        log.contains("Staged package LAB00042 from ")
            && log.contains("for the steps after the hand-over"),
        "{log}"
    );
    assert!(
        log.contains("_SMSTaskSequence/state/packages: the packages staged by the hand-over"),
        "{log}"
    );
    assert!(!os.join("_SMSTaskSequence").exists(), "{log}");
}
