//! The Windows runner under Wine: `tsforge.exe` (built for `x86_64-pc-windows-gnu`) runs the
//! ConfigMgr "seed" error-handler pattern (`tests/wine/error-handler.xml`) with real `cmd.exe`
//! command lines, and the test checks what the steps left behind. Other tests here: the hand-over
//! to a deployed Windows (SetupComplete.cmd), and the machine's identity as the Windows runner
//! reads it (MAC and IP addresses, SMBIOS facts) compared with the host's.
//!
//! Needs `TSFORGE_WINDOWS_EXE` (the path of tsforge.exe; `scripts/test.sh` builds it and sets
//! it), `wine`, `wineserver` and `x86_64-w64-mingw32-gcc` (`scripts/setup.sh` installs them).
//! When something is missing the test prints `SKIP wine test: …` and passes, unless
//! `TSFORGE_REQUIRE_TOOLS=1` (CI), where it fails.
//!
//! The exe runs with the ProcessPrng shim beside it (`tests/common/wine_tools.rs` says why).
//! Each run uses a fresh `WINEPREFIX` in a temporary
//! folder and stops its wineserver at the end. `error-handler.yaml` is the same sequence in
//! YAML, checked to match without Wine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tsforge_runtime::log::cmtrace;

use crate::common::wine_tools::{wine_path, WineTools};
use crate::common::{note, required};

/// The sequence the test runs, from `tests/wine/`.
const FIXTURE: &str = "error-handler.xml";
/// Per Wine command; the first one also creates the prefix (a few seconds on an idle machine).
const TIMEOUT: Duration = Duration::from_secs(120);

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The tools, or `None` after printing what is missing (a failure under TSFORGE_REQUIRE_TOOLS=1).
fn tools() -> Option<WineTools> {
    match WineTools::find() {
        Ok(t) => Some(t),
        Err(what) => {
            if required() {
                panic!("wine test: {what} (TSFORGE_REQUIRE_TOOLS=1, so this is a failure)");
            }
            note(&format!("SKIP wine test: {what}"));
            None
        }
    }
}

/// One Wine prefix; dropping it stops the prefix's wineserver and every process in it.
struct Wine {
    wine: PathBuf,
    wineserver: PathBuf,
    prefix: PathBuf,
    /// Where each command's stdout and stderr go (files, not pipes: the wineserver that the
    /// first command starts inherits them and outlives the command).
    out_dir: PathBuf,
    env: Vec<(String, String)>,
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "exit status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

impl Wine {
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            // No Mono/Gecko installer prompts in a fresh prefix; the app-folder
            // bcryptprimitives.dll wins over any built-in one.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=;bcryptprimitives=n,b")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("TSFORGE_STATE_DIR")
            .env_remove("TSFORGE_BOOT_ENV")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `wine PROGRAM ARGS…` in `cwd`, killed after [`TIMEOUT`].
    fn run(&self, label: &str, cwd: &Path, args: &[&str]) -> Ran {
        let out_path = self.out_dir.join(format!("{label}.stdout"));
        let err_path = self.out_dir.join(format!("{label}.stderr"));
        let out = std::fs::File::create(&out_path).unwrap();
        let err = std::fs::File::create(&err_path).unwrap();
        let mut cmd = self.command(&self.wine);
        cmd.args(args).current_dir(cwd).stdout(out).stderr(err);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.wine.display()));
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                self.kill_server();
                panic!(
                    "wine {args:?} did not finish within {} s; killed it\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    TIMEOUT.as_secs(),
                    std::fs::read_to_string(&out_path).unwrap_or_default(),
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        note(&format!(
            "wine test: `{label}` took {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ran {
            status,
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    fn kill_server(&self) {
        let _ = self
            .command(&self.wineserver)
            .arg("-k")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        self.kill_server();
    }
}

#[test]
fn windows_runner_runs_the_error_handler_pattern_under_wine() {
    let Some(tools) = tools() else { return };
    let t0 = Instant::now();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine");
    let tmp = tempfile::Builder::new()
        .prefix("tsforge-wine-")
        .tempdir()
        .unwrap();
    let root = std::path::absolute(tmp.path()).unwrap();
    let [app, share, state, logs, machine, prefix, out_dir] =
        ["app", "share", "state", "log", "machine", "prefix", "out"].map(|d| {
            let p = root.join(d);
            std::fs::create_dir(&p).unwrap();
            p
        });

    // The runner, the ProcessPrng shim beside it, and the sequence.
    tools.install_app(&app);
    std::fs::copy(fixtures.join(FIXTURE), app.join(FIXTURE)).unwrap();

    let wine = Wine {
        wine: tools.wine.clone(),
        wineserver: tools.wineserver.clone(),
        prefix: prefix.clone(),
        out_dir,
        env: vec![("TSFORGE_MACHINE_DIR".into(), wine_path(&machine))],
    };

    // The first command also creates the prefix.
    let validate = wine.run("validate", &app, &["tsforge.exe", "validate", FIXTURE]);
    assert_eq!(
        validate.status.code(),
        Some(0),
        "tsforge.exe validate {FIXTURE} under Wine: {}",
        validate.describe()
    );

    let share_var = format!("ShareDir={}", wine_path(&share));
    let state_arg = wine_path(&state);
    let log_arg = wine_path(&logs);
    let run = wine.run(
        "run",
        &app,
        &[
            "tsforge.exe",
            "run",
            FIXTURE,
            "--state-dir",
            &state_arg,
            "--log-dir",
            &log_arg,
            "--var",
            "_SMSTSInWinPE=true",
            "--var",
            &share_var,
        ],
    );
    let smsts = std::fs::read_to_string(logs.join("smsts.log")).unwrap_or_default();
    let context = format!("{}\n--- smsts.log ---\n{smsts}", run.describe());
    // Continue on error on the Deploy group absorbs the failure: the sequence succeeds.
    assert_eq!(
        run.status.code(),
        Some(0),
        "tsforge.exe run under Wine: {context}"
    );

    let read = |name: &str| std::fs::read_to_string(share.join(name));
    assert_eq!(
        read("step1.txt")
            .unwrap_or_else(|e| panic!("step1.txt: {e}\n{context}"))
            .trim(),
        "deployed",
        "{context}"
    );
    // Registry conditions go through reg.exe: Wine's own key exists, a made-up one does not.
    assert_eq!(
        read("registry.txt")
            .unwrap_or_else(|e| panic!("registry.txt: {e}\n{context}"))
            .trim(),
        "found",
        "{context}"
    );
    assert!(
        !share.join("registry-missing.txt").exists(),
        "a registry condition on a missing key held: {context}"
    );
    assert!(
        !share.join("never-run.txt").exists(),
        "the step after the failure ran: {context}"
    );
    assert!(
        !share.join("full-os.txt").exists(),
        "the full-OS step ran with _SMSTSInWinPE=true: {context}"
    );
    assert_eq!(
        read("retcode.txt")
            .unwrap_or_else(|e| panic!("retcode.txt: {e}\n{context}"))
            .trim(),
        "5",
        "_SMSTSLastActionRetCode in the error handler: {context}"
    );

    // The error handler copied the log to the share as <client GUID>-smsts.log.
    let copies: Vec<String> = std::fs::read_dir(&share)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-smsts.log"))
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "copied logs in the share: {copies:?}\n{context}"
    );
    let guid = copies[0].trim_end_matches("-smsts.log");
    assert!(is_guid(guid), "{:?} is not named after a GUID", copies[0]);
    let kept = std::fs::read_to_string(machine.join("client-guid")).unwrap();
    assert_eq!(
        guid,
        kept.trim(),
        "the copy is not named after the GUID kept in TSFORGE_MACHINE_DIR"
    );
    let copied = read(&copies[0]).unwrap();
    let entries = cmtrace::parse(&copied)
        .unwrap_or_else(|line| panic!("copied smsts.log is not CMTrace at line {line}:\n{copied}"));
    let failed = entries
        .iter()
        .find(|e| {
            e.message
                .contains("\"Fail on purpose\" failed (exit code 5)")
        })
        .unwrap_or_else(|| panic!("no entry for the failing step in the copied log:\n{copied}"));
    assert_eq!(failed.level, 3, "the failure is not logged as an error");
    assert!(
        entries
            .iter()
            .any(|e| e.message.contains("Command line: cmd /c exit 5")),
        "{copied}"
    );

    // The runner's own log, complete.
    let entries = cmtrace::parse(&smsts)
        .unwrap_or_else(|line| panic!("smsts.log is not CMTrace at line {line}:\n{smsts}"));
    let has = |needle: &str| entries.iter().any(|e| e.message.contains(needle));
    assert!(!has("\"Never reached\""), "{smsts}");
    assert!(
        has("Skipping step \"Mark the full OS path\""),
        "no skip entry for the full-OS step:\n{smsts}"
    );
    assert!(has("completed successfully"), "{smsts}");

    drop(wine);
    note(&format!(
        "wine test: passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
}

/// `error-handler.yaml` is the same sequence as the XML the Wine test runs (no Wine needed).
#[test]
fn yaml_copy_matches_the_xml_fixture() {
    use tsforge_runtime::sequence::{self, Format};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine");
    let load = |name: &str| {
        let (seq, _) =
            sequence::load(&dir.join(name)).unwrap_or_else(|e| panic!("tests/wine/{name}: {e}"));
        sequence::write(&seq, Format::Yaml)
    };
    assert_eq!(
        load("error-handler.yaml"),
        load("error-handler.xml"),
        "tests/wine/error-handler.yaml differs from error-handler.xml; regenerate it with \
         `tsforge convert tests/wine/error-handler.xml --to yaml`"
    );
}

/// The Windows side of issue 16, under Wine: the Windows runner in a boot environment
/// (`TSFORGE_BOOT_ENV=1`, standing for Windows PE) applies a Windows tree to drive `D:` (a
/// folder mapped in the Wine prefix), runs `bcdboot D:\Windows` through the tools table (a
/// stand-in `bcdboot.cmd` records its arguments), writes the computer name into
/// `D:\Windows\Panther\unattend.xml` and hands the run over: `SetupComplete.cmd`, the runner
/// and the state under `D:\_SMSTaskSequence`. Then Windows' "end of setup" is played by Wine's
/// `cmd` running that `SetupComplete.cmd` with `SystemDrive=D:`: the runner resumes the same
/// run with `_SMSTSInWinPE=false`, runs the FullOS step, and the script removes the runner,
/// the state and itself. What Wine cannot show: a real Windows Setup calling the script, and
/// bcdboot's own work (docs/engine.md says so).
///
/// Rules: Setup Windows and ConfigMgr hands over to the new OS
/// (<https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetupWindowsandConfigMgr>);
/// Windows Setup runs `%WINDIR%\Setup\Scripts\SetupComplete.cmd` after setup
/// (<https://learn.microsoft.com/windows-hardware/manufacture/desktop/add-a-custom-script-to-windows-setup>);
/// `bcdboot <source>` without `/s` uses the system partition identified by the firmware
/// (<https://learn.microsoft.com/windows-server/administration/windows-commands/bcdboot>).
#[test]
fn windows_runner_hands_over_and_setupcomplete_resumes_under_wine() {
    let Some(tools) = tools() else { return };
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("tsforge-wine-ho-")
        .tempdir()
        .unwrap();
    let root = std::path::absolute(tmp.path()).unwrap();
    let [app, state, logs, machine, prefix, out_dir, os, fakebin, tree] = [
        "app", "state", "log", "machine", "prefix", "out", "os", "fakebin", "tree",
    ]
    .map(|d| {
        let p = root.join(d);
        std::fs::create_dir(&p).unwrap();
        p
    });
    tools.install_app(&app);

    // The Windows tree, captured by this machine's tsforge into a tsforge image.
    std::fs::create_dir_all(tree.join("Windows/System32/config")).unwrap();
    std::fs::write(tree.join("Windows/System32/config/SYSTEM"), b"regf").unwrap();
    std::fs::write(
        tree.join("Windows/System32/notepad.txt"),
        b"not a real notepad\r\n",
    )
    .unwrap();
    let (code, _, err) = crate::common::tsforge(&root, &["capture", "tree", "win.tsimg"]);
    assert_eq!(code, 0, "{err}");

    // The stand-in bcdboot records its arguments.
    let recorded = root.join("bcdboot-args.txt");
    std::fs::write(
        fakebin.join("bcdboot.cmd"),
        format!(
            "@echo off\r\n>>\"{}\" echo %*\r\necho Boot files successfully created.\r\nexit /b 0\r\n",
            wine_path(&recorded)
        ),
    )
    .unwrap();
    let seq = format!(
        "name: Windows hand-over\n\
         steps:\n\
         \x20 - name: Apply Windows\n\
         \x20   type: apply-image\n\
         \x20   properties:\n\
         \x20     ImagePath: '{}'\n\
         \x20     Destination: 'D:\\'\n\
         \x20 - name: Apply Windows Settings\n\
         \x20   type: apply-windows-settings\n\
         \x20   properties:\n\
         \x20     ComputerName: WINE-PC01\n\
         \x20 - name: Setup Windows and ConfigMgr\n\
         \x20   type: hand-over\n\
         \x20 - name: Write the marker\n\
         \x20   run_in: FullOS\n\
         \x20   run: 'cmd /c echo %_SMSTSInWinPE%>D:\\marker.txt'\n",
        wine_path(&root.join("win.tsimg"))
    );
    std::fs::write(app.join("deploy.yaml"), seq).unwrap();

    let base_env = vec![("TSFORGE_MACHINE_DIR".to_string(), wine_path(&machine))];
    let wine = Wine {
        wine: tools.wine.clone(),
        wineserver: tools.wineserver.clone(),
        prefix: prefix.clone(),
        out_dir: out_dir.clone(),
        env: base_env.clone(),
    };
    // Create the prefix, then map D: to the folder that stands for the target's OS volume.
    let v = wine.run(
        "ho-validate",
        &app,
        &["tsforge.exe", "validate", "deploy.yaml"],
    );
    assert_eq!(v.status.code(), Some(0), "{}", v.describe());
    std::os::unix::fs::symlink(&os, prefix.join("dosdevices/d:")).unwrap();

    // Phase 1: "Windows PE".
    let mut pe_env = base_env.clone();
    pe_env.push(("TSFORGE_BOOT_ENV".into(), "1".into()));
    pe_env.push(("WINEPATH".into(), wine_path(&fakebin)));
    let pe = Wine {
        wine: tools.wine.clone(),
        wineserver: tools.wineserver.clone(),
        prefix: prefix.clone(),
        out_dir: out_dir.clone(),
        env: pe_env,
    };
    let (state_arg, log_arg) = (wine_path(&state), wine_path(&logs));
    let r = pe.run(
        "ho-phase1",
        &app,
        &[
            "tsforge.exe",
            "run",
            "deploy.yaml",
            "--state-dir",
            &state_arg,
            "--log-dir",
            &log_arg,
            "--no-reboot",
        ],
    );
    let smsts1 = std::fs::read_to_string(logs.join("smsts.log")).unwrap_or_default();
    let context = format!("{}\n--- smsts.log ---\n{smsts1}", r.describe());
    assert_eq!(
        r.status.code(),
        Some(3),
        "phase 1 asks for the restart: {context}"
    );
    assert_eq!(
        std::fs::read_to_string(&recorded)
            .unwrap_or_else(|e| panic!("bcdboot did not run ({e}): {context}"))
            .trim(),
        "D:\\Windows",
        "bcdboot's command line: {context}"
    );
    assert!(
        smsts1.contains("is bootable: bcdboot D:\\Windows"),
        "{context}"
    );
    let unattend = std::fs::read_to_string(os.join("Windows/Panther/unattend.xml")).unwrap();
    assert!(
        unattend.contains("<ComputerName>WINE-PC01</ComputerName>"),
        "{unattend}"
    );
    let script = os.join("Windows/Setup/Scripts/SetupComplete.cmd");
    assert!(script.is_file(), "no SetupComplete.cmd: {context}");
    assert!(os.join("_SMSTaskSequence/tsforge/tsforge.exe").is_file());
    assert!(os.join("_SMSTaskSequence/state/state.json").is_file());
    assert!(os.join("_SMSTaskSequence/sequence/deploy.yaml").is_file());
    assert!(
        !os.join("marker.txt").exists(),
        "the FullOS step ran in phase 1"
    );
    // Wine 8 needs the ProcessPrng shim beside any copy of the exe (tests/common/wine_tools.rs).
    std::fs::copy(
        app.join("bcryptprimitives.dll"),
        os.join("_SMSTaskSequence/tsforge/bcryptprimitives.dll"),
    )
    .unwrap();

    // Phase 2: the deployed Windows' end of setup runs SetupComplete.cmd.
    let r = wine.run(
        "ho-setupcomplete",
        &os,
        &[
            "cmd",
            "/c",
            "set SystemDrive=D:& set WINDIR=D:\\Windows& call D:\\Windows\\Setup\\Scripts\\SetupComplete.cmd",
        ],
    );
    let logs2 = os.join("Windows/Temp/tsforge");
    let smsts2 = std::fs::read_to_string(logs2.join("smsts.log")).unwrap_or_default();
    let context = format!("{}\n--- smsts.log ---\n{smsts2}", r.describe());
    assert_eq!(
        std::fs::read_to_string(os.join("marker.txt"))
            .unwrap_or_else(|e| panic!("marker.txt: {e}\n{context}"))
            .trim(),
        "false",
        "_SMSTSInWinPE in the full OS: {context}"
    );
    let entries = cmtrace::parse(&smsts2)
        .unwrap_or_else(|line| panic!("smsts.log is not CMTrace at line {line}:\n{smsts2}"));
    let has = |needle: &str| entries.iter().any(|e| e.message.contains(needle));
    assert!(
        has("\"Apply Windows\""),
        "phase 1 is not in the log: {context}"
    );
    assert!(has("\"Write the marker\""), "{context}");
    assert!(has("completed successfully"), "{context}");
    assert_eq!(
        smsts2.matches("Start executing step 4 of").count(),
        1,
        "the FullOS step ran other than once: {context}"
    );
    let outcome = std::fs::read_to_string(logs2.join("setupcomplete.log")).unwrap_or_default();
    assert!(
        outcome.contains("tsforge: the runner exited with code 0"),
        "{outcome}\n{context}"
    );
    for left in [
        "_SMSTaskSequence",
        "Windows/Setup/Scripts/SetupComplete.cmd",
    ] {
        assert!(
            std::fs::symlink_metadata(os.join(left)).is_err(),
            "{left} is left in the deployed Windows: {context}"
        );
    }
    drop(pe);
    drop(wine);
    note(&format!(
        "wine hand-over test: passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
}

/// `NAME=VALUE` lines (as `cmd /c set` and `env` print them) whose name starts with `_SMSTS`,
/// keyed by the upper-cased name.
fn smsts_vars(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once('='))
        .filter(|(k, _)| k.to_ascii_uppercase().starts_with("_SMSTS"))
        .map(|(k, v)| (k.to_ascii_uppercase(), v.to_string()))
        .collect()
}

/// The machine's identity on Windows, under Wine: a step of the Windows runner writes the
/// built-in variables into a file, and the test compares them with this (Linux) host's own
/// facts, which Wine passes on: `GetAdaptersAddresses` lists the host's interfaces, and Wine
/// builds its SMBIOS table from `/sys/class/dmi/id` (and, without a `product_uuid` there, the
/// system UUID from `/etc/machine-id`).
///
/// - `_SMSTSMacAddresses` is `/sys/class/net/*/address` without `lo`, upper-cased, sorted,
///   comma-separated; `_SMSTSIPAddresses` is the very value the Linux runner gives on the same
///   host (same addresses, same form).
/// - `_SMSTSMake`, `_SMSTSModel`, `_SMSTSSerialNumber`, `_SMSTSAssetTag`, `_SMSTSUUID` are the
///   host's DMI `sys_vendor`, `product_name`, `product_serial`, `chassis_asset_tag`,
///   `product_uuid` where the host has them; where it has not, Wine's table holds empty
///   strings and the variables are unset (never guessed), except the UUID that Wine takes from
///   `/etc/machine-id` (SMBIOS 2.6 byte order: the first three fields little-endian).
/// - `_SMSTSDefaultGateways` is unset on Windows (docs/engine.md says why).
///
/// Variables: <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-variables>
/// (`_SMSTSMacAddresses`, `_SMSTSIPAddresses`, `_SMSTSMake`, `_SMSTSModel`, `_SMSTSUUID`,
/// `_SMSTSSerialNumber`, `_SMSTSAssetTag`, `_SMSTSDefaultGateways`, gathered as *Set Dynamic
/// Variables* does); the SMBIOS table through
/// <https://learn.microsoft.com/windows/win32/api/sysinfoapi/nf-sysinfoapi-getsystemfirmwaretable>,
/// the adapters through
/// <https://learn.microsoft.com/windows/win32/api/iphlpapi/nf-iphlpapi-getadaptersaddresses>.
#[test]
fn windows_runner_reads_the_machine_identity_under_wine() {
    let Some(tools) = tools() else { return };
    let tmp = tempfile::Builder::new()
        .prefix("tsforge-wine-id-")
        .tempdir()
        .unwrap();
    let root = std::path::absolute(tmp.path()).unwrap();
    let [app, machine, prefix, out_dir, linux] =
        ["app", "machine", "prefix", "out", "linux"].map(|d| {
            let p = root.join(d);
            std::fs::create_dir(&p).unwrap();
            p
        });
    tools.install_app(&app);
    let win_vars = root.join("windows-vars.txt");
    std::fs::write(
        app.join("identity.yaml"),
        format!(
            "name: Identity\nsteps:\n  - name: Write the variables\n    run: 'cmd /c set _SMSTS>{}'\n",
            wine_path(&win_vars)
        ),
    )
    .unwrap();
    let wine = Wine {
        wine: tools.wine.clone(),
        wineserver: tools.wineserver.clone(),
        prefix,
        out_dir,
        env: vec![("TSFORGE_MACHINE_DIR".into(), wine_path(&machine))],
    };
    let (state_arg, log_arg) = (wine_path(&root.join("state")), wine_path(&root.join("log")));
    let r = wine.run(
        "identity",
        &app,
        &[
            "tsforge.exe",
            "run",
            "identity.yaml",
            "--state-dir",
            &state_arg,
            "--log-dir",
            &log_arg,
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", r.describe());
    let text = std::fs::read_to_string(&win_vars)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", win_vars.display(), r.describe()));
    let win = smsts_vars(&text);
    drop(wine);
    let context = format!("--- the Windows runner's variables ---\n{text}");

    // MAC addresses: the host's interfaces.
    let mut macs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "lo")
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .map(|a| a.trim().to_uppercase())
        .filter(|a| !a.is_empty() && a != "00:00:00:00:00:00")
        .collect();
    macs.sort();
    macs.dedup();
    assert!(!macs.is_empty(), "this host has no network interface");
    assert_eq!(
        win.get("_SMSTSMACADDRESSES").map(String::as_str),
        Some(macs.join(",").as_str()),
        "{context}"
    );

    // IP addresses: what the Linux runner reads on the same host.
    let linux_seq = linux.join("identity.yaml");
    std::fs::write(
        &linux_seq,
        "name: Identity\nsteps:\n  - name: Write the variables\n    run: \"sh -c 'env > linux-vars.txt'\"\n",
    )
    .unwrap();
    let (code, out, err) = crate::common::tsforge(
        &linux,
        &[
            "run",
            "identity.yaml",
            "--state-dir",
            "state",
            "--log-dir",
            "log",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let lin = smsts_vars(&std::fs::read_to_string(linux.join("linux-vars.txt")).unwrap());
    let lin_ips = lin.get("_SMSTSIPADDRESSES");
    assert!(
        lin_ips.is_some(),
        "the Linux runner found no IP address: {lin:?}"
    );
    assert_eq!(
        win.get("_SMSTSIPADDRESSES"),
        lin_ips,
        "Windows and Linux runners on one host disagree on the IP addresses\n{context}"
    );

    // SMBIOS facts: the host's DMI, or unset where the host has none.
    let dmi = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/dmi/id/{f}"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    for (var, file) in [
        ("_SMSTSMAKE", "sys_vendor"),
        ("_SMSTSMODEL", "product_name"),
        ("_SMSTSSERIALNUMBER", "product_serial"),
        ("_SMSTSASSETTAG", "chassis_asset_tag"),
    ] {
        assert_eq!(
            win.get(var),
            dmi(file).as_ref(),
            "{var} vs {file}\n{context}"
        );
    }
    let uuid = dmi("product_uuid").or_else(|| {
        let id = std::fs::read_to_string("/etc/machine-id").ok()?;
        let b: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(id.trim().get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let rev = |r: &[u8]| hex(&r.iter().rev().copied().collect::<Vec<_>>());
        Some(format!(
            "{}-{}-{}-{}-{}",
            rev(&b[0..4]),
            rev(&b[4..6]),
            rev(&b[6..8]),
            hex(&b[8..10]),
            hex(&b[10..16])
        ))
    });
    assert_eq!(
        win.get("_SMSTSUUID"),
        uuid.as_ref(),
        "the system UUID\n{context}"
    );

    assert_eq!(win.get("_SMSTSDEFAULTGATEWAYS"), None, "{context}");
}
