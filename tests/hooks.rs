//! The sample pre-execution hooks do what their README says: every `.sh` hook under `sh` and
//! `busybox sh` (the shell of the Linux boot environment), every `.cmd` hook under Wine's
//! `cmd.exe`, with answers on stdin, checking exit codes, messages and the variables written to
//! the env file (`TSFORGE_ENV_FILE`, through `tsforge env set` or the hooks' own fallback).
//!
//! `/bin/busybox` and, for the `.cmd` hooks, `wine`, `wineserver`, `x86_64-w64-mingw32-gcc` and
//! `TSFORGE_WINDOWS_EXE` (set by `scripts/test.sh`) are needed; without them the test prints
//! `SKIP …` and passes, unless `TSFORGE_REQUIRE_TOOLS=1`, as in `tests/wine.rs`.
//! `wait-for-network` is tested with `TSFORGE_IP_COMMAND` naming a stand-in for `ip` / `ipconfig`
//! (`tests/hooks/fake-ip.sh`, `tests/hooks/fake-ipconfig.cmd`) that shows an address only from
//! its third call on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::wine_tools::{wine_path, WineTools};
use crate::common::{note, required};

const HOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hooks");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hooks");
const BUSYBOX: &str = "/bin/busybox";
/// Per Wine command; the first one also creates the prefix.
const WINE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a hook did.
struct Ran {
    code: i32,
    /// stdout and stderr together (the runner shows both on the console).
    out: String,
    /// The assignments in the env file, in order.
    vars: Vec<(String, String)>,
    took: Duration,
}

impl Ran {
    fn count(&self, needle: &str) -> usize {
        self.out.matches(needle).count()
    }
    fn var_pairs(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

fn read_vars(env_file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(env_file).unwrap_or_default();
    let (vars, errors) = tsforge_runtime::envfile::parse(&text);
    assert!(
        errors.is_empty(),
        "bad env file lines {errors:?} in:\n{text}"
    );
    vars
}

/// The shells the `.sh` hooks must work under: `sh` (dash here) and `busybox sh`.
fn shells() -> Vec<Vec<&'static str>> {
    let mut shells = vec![vec!["sh"]];
    if Path::new(BUSYBOX).is_file() {
        shells.push(vec![BUSYBOX, "sh"]);
    } else if required() {
        panic!("{BUSYBOX} is missing (TSFORGE_REQUIRE_TOOLS=1, so this is a failure)");
    } else {
        note(&format!(
            "SKIP busybox sh: {BUSYBOX} not found (apt-get install busybox-static)"
        ));
    }
    shells
}

/// Runs `hooks/NAME` under `shell` with `input` on stdin and only `vars` (plus PATH and
/// TSFORGE_ENV_FILE) in its environment. `tsforge`: whether the tsforge binary is on PATH.
fn run_sh(shell: &[&str], hook: &str, input: &str, vars: &[(&str, &str)], tsforge: bool) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("vars.env");
    std::fs::write(&env_file, "").unwrap();
    let mut paths = Vec::new();
    if tsforge {
        let bin = Path::new(env!("CARGO_BIN_EXE_tsforge")).parent().unwrap();
        paths.push(bin.to_path_buf());
    }
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let started = Instant::now();
    let mut child = Command::new(shell[0])
        .args(&shell[1..])
        .arg(Path::new(HOOKS).join(hook))
        .env_clear()
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("TSFORGE_ENV_FILE", &env_file)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hook that does not ask closes its end: a broken pipe here is no error.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: text,
        vars: read_vars(&env_file),
        took: started.elapsed(),
    }
}

/// `run_sh` under every shell, with tsforge on PATH.
fn each_shell(hook: &str, input: &str, vars: &[(&str, &str)], check: impl Fn(&str, &Ran)) {
    for shell in shells() {
        let ran = run_sh(&shell, hook, input, vars, true);
        check(&shell.join(" "), &ran);
    }
}

#[test]
fn ask_computer_name_checks_and_sets_the_variable() {
    each_shell(
        "ask-computer-name.sh",
        "bad name!\n12345\nTHIS-NAME-IS-TOO-LONG\nLAB-PC01\n",
        &[],
        |sh, r| {
            assert_eq!(r.code, 0, "{sh}: {}", r.out);
            assert_eq!(
                r.count("is not a valid computer name"),
                3,
                "{sh}: {}",
                r.out
            );
            assert_eq!(r.var_pairs(), [("OSDComputerName", "LAB-PC01")], "{sh}");
        },
    );
    each_shell("ask-computer-name.sh", "", &[], |sh, r| {
        assert_eq!(r.code, 1, "{sh}: {}", r.out);
        assert!(r.out.contains("no input"), "{sh}: {}", r.out);
        assert!(r.vars.is_empty(), "{sh}");
    });
}

const THREE: (&str, &str) = ("_TSForgeSequences", "Windows 11,Ubuntu 24.04,Wipe only");

#[test]
fn choose_sequence_lists_asks_and_sets_the_chosen_name() {
    // Four bad answers, then "02" (leading zero) on the fifth and last try.
    each_shell(
        "choose-sequence.sh",
        "0\nfour\n4\n\n02\n",
        &[THREE],
        |sh, r| {
            assert_eq!(r.code, 0, "{sh}: {}", r.out);
            for line in ["  1. Windows 11", "  2. Ubuntu 24.04", "  3. Wipe only"] {
                assert!(r.out.contains(line), "{sh}: no {line:?} in {}", r.out);
            }
            assert_eq!(r.count("Sequence number: "), 5, "{sh}: {}", r.out);
            assert_eq!(r.count("is not a number from 1 to 3"), 4, "{sh}: {}", r.out);
            assert!(
                r.out.contains("\"four\" is not a number"),
                "{sh}: {}",
                r.out
            );
            assert_eq!(r.var_pairs(), [("TSForgeSequence", "Ubuntu 24.04")], "{sh}");
        },
    );
    each_shell("choose-sequence.sh", "3\n", &[THREE], |sh, r| {
        assert_eq!(r.code, 0, "{sh}: {}", r.out);
        assert_eq!(r.var_pairs(), [("TSForgeSequence", "Wipe only")], "{sh}");
    });
}

#[test]
fn choose_sequence_gives_up_after_five_bad_answers_or_no_input() {
    each_shell(
        "choose-sequence.sh",
        "a\n9\n-1\n1.5\n 0\n1\n",
        &[THREE],
        |sh, r| {
            assert_eq!(r.code, 1, "{sh}: {}", r.out);
            assert_eq!(r.count("Sequence number: "), 5, "{sh}: {}", r.out);
            assert_eq!(r.count("is not a number from 1 to 3"), 5, "{sh}: {}", r.out);
            assert!(r.out.contains("after 5 tries"), "{sh}: {}", r.out);
            assert!(r.vars.is_empty(), "{sh}: {:?}", r.vars);
        },
    );
    each_shell("choose-sequence.sh", "", &[THREE], |sh, r| {
        assert_eq!(r.code, 1, "{sh}: {}", r.out);
        assert!(r.out.contains("no input"), "{sh}: {}", r.out);
        assert!(r.vars.is_empty(), "{sh}");
    });
}

#[test]
fn choose_sequence_without_a_question() {
    // One sequence: set without asking (stdin is empty, so a question would fail).
    each_shell(
        "choose-sequence.sh",
        "",
        &[("_TSForgeSequences", "Lab Deploy")],
        |sh, r| {
            assert_eq!(r.code, 0, "{sh}: {}", r.out);
            assert_eq!(r.count("Sequence number"), 0, "{sh}: {}", r.out);
            assert_eq!(r.var_pairs(), [("TSForgeSequence", "Lab Deploy")], "{sh}");
        },
    );
    // TSForgeSequence already set (by the medium or an earlier hook): kept.
    each_shell(
        "choose-sequence.sh",
        "",
        &[THREE, ("TSForgeSequence", "Wipe only")],
        |sh, r| {
            assert_eq!(r.code, 0, "{sh}: {}", r.out);
            assert!(r.out.contains("keeping \"Wipe only\""), "{sh}: {}", r.out);
            assert_eq!(r.count("Sequence number"), 0, "{sh}: {}", r.out);
            assert!(r.vars.is_empty(), "{sh}");
        },
    );
    // No sequences: a clear error.
    for list in [None, Some(""), Some(" , ,")] {
        let vars: Vec<(&str, &str)> = list.map(|l| ("_TSForgeSequences", l)).into_iter().collect();
        each_shell("choose-sequence.sh", "1\n", &vars, |sh, r| {
            assert_eq!(r.code, 1, "{sh} {list:?}: {}", r.out);
            assert!(
                r.out
                    .contains("no task sequences: _TSForgeSequences is empty"),
                "{sh}: {}",
                r.out
            );
            assert!(r.vars.is_empty(), "{sh}");
        });
    }
}

#[test]
fn sh_hooks_append_to_the_env_file_without_tsforge() {
    for shell in shells() {
        let r = run_sh(&shell, "choose-sequence.sh", "2\n", &[THREE], false);
        assert_eq!(r.code, 0, "{shell:?}: {}", r.out);
        assert_eq!(r.var_pairs(), [("TSForgeSequence", "Ubuntu 24.04")]);
        let r = run_sh(&shell, "confirm-wipe.sh", "WIPE\n", &[], false);
        assert_eq!(r.code, 0, "{shell:?}: {}", r.out);
        assert_eq!(r.var_pairs(), [("TSForgeWipeConfirmed", "true")]);
    }
}

#[test]
fn confirm_wipe_needs_the_exact_word() {
    let disks = [("_TSForgeDiskCount", "2"), ("OSDisk", "DISK:0")];
    each_shell("confirm-wipe.sh", "WIPE\n", &disks, |sh, r| {
        assert_eq!(r.code, 0, "{sh}: {}", r.out);
        assert!(r.out.contains("erases disk(s)"), "{sh}: {}", r.out);
        assert!(r.out.contains("disks found: 2"), "{sh}: {}", r.out);
        assert!(
            r.out.contains("target disk: OSDisk = DISK:0"),
            "{sh}: {}",
            r.out
        );
        assert!(r.out.contains("Type WIPE to continue: "), "{sh}: {}", r.out);
        assert_eq!(r.var_pairs(), [("TSForgeWipeConfirmed", "true")], "{sh}");
    });
    // TSForgeWipeDisk names the disk when set; no disk count → "unknown".
    each_shell(
        "confirm-wipe.sh",
        "WIPE\n",
        &[("OSDisk", "DISK:0"), ("TSForgeWipeDisk", "/dev/nvme0n1")],
        |sh, r| {
            assert_eq!(r.code, 0, "{sh}: {}", r.out);
            assert!(r.out.contains("disks found: unknown"), "{sh}: {}", r.out);
            assert!(
                r.out
                    .contains("target disk: TSForgeWipeDisk = /dev/nvme0n1"),
                "{sh}: {}",
                r.out
            );
            assert!(!r.out.contains("DISK:0"), "{sh}: {}", r.out);
        },
    );
    for answer in ["wipe\n", "Wipe\n", "WIPE \n", "yes\n", "\n", "", "WIPE"] {
        each_shell("confirm-wipe.sh", answer, &disks, |sh, r| {
            assert_eq!(r.code, 1, "{sh} {answer:?}: {}", r.out);
            assert!(
                r.out.contains("not confirmed: nothing was changed"),
                "{sh} {answer:?}: {}",
                r.out
            );
            assert!(r.vars.is_empty(), "{sh} {answer:?}");
        });
    }
}

#[test]
fn confirm_wipe_can_be_turned_off() {
    each_shell(
        "confirm-wipe.sh",
        "",
        &[("TSForgeConfirmWipe", "false")],
        |sh, r| {
            assert_eq!(r.code, 0, "{sh}: {}", r.out);
            assert_eq!(r.count("Type WIPE"), 0, "{sh}: {}", r.out);
            assert!(r.vars.is_empty(), "{sh}");
        },
    );
    // Any other value asks.
    each_shell(
        "confirm-wipe.sh",
        "",
        &[("TSForgeConfirmWipe", "true")],
        |sh, r| assert_eq!(r.code, 1, "{sh}: {}", r.out),
    );
}

/// `TSFORGE_IP_COMMAND` for the `sh` hooks: no usable address for the first `calls` checks.
fn fake_ip(dir: &Path, calls: u32) -> (String, PathBuf) {
    let counter = dir.join("ip-calls");
    let cmd = format!(
        "sh '{}/fake-ip.sh' '{}' {calls}",
        FIXTURES,
        counter.display()
    );
    (cmd, counter)
}

#[test]
fn wait_for_network_waits_for_the_address() {
    for shell in shells() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, counter) = fake_ip(dir.path(), 2);
        let r = run_sh(
            &shell,
            "wait-for-network.sh",
            "",
            &[("TSFORGE_IP_COMMAND", &ip), ("TSForgeNetworkTimeout", "10")],
            true,
        );
        assert_eq!(r.code, 0, "{shell:?}: {}", r.out);
        assert!(
            r.out.contains("Waiting up to 10 s for an IPv4 address"),
            "{shell:?}: {}",
            r.out
        );
        assert!(
            r.out.contains("Network is up: IPv4 address 10.0.2.15"),
            "{shell:?}: {}",
            r.out
        );
        // Loopback and link-local addresses do not count: the third check found it.
        assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
        assert!(r.took >= Duration::from_millis(1900), "{:?}", r.took);
        assert_eq!(r.var_pairs(), [("TSForgeIPAddress", "10.0.2.15")]);
    }
}

#[test]
fn wait_for_network_times_out() {
    for shell in shells() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, _) = fake_ip(dir.path(), 1000);
        let r = run_sh(
            &shell,
            "wait-for-network.sh",
            "",
            &[("TSFORGE_IP_COMMAND", &ip), ("TSForgeNetworkTimeout", "2")],
            true,
        );
        assert_eq!(r.code, 1, "{shell:?}: {}", r.out);
        assert!(
            r.out
                .contains("error: no IPv4 address after 2 s (TSForgeNetworkTimeout)"),
            "{shell:?}: {}",
            r.out
        );
        assert!(
            r.took >= Duration::from_millis(1500) && r.took < Duration::from_secs(10),
            "{:?}",
            r.took
        );
        assert!(r.vars.is_empty());

        let r = run_sh(
            &shell,
            "wait-for-network.sh",
            "",
            &[("TSForgeNetworkTimeout", "soon")],
            true,
        );
        assert_eq!(r.code, 1, "{shell:?}: {}", r.out);
        assert!(r.out.contains("is not a number of seconds"), "{}", r.out);
    }
}

#[test]
fn wait_for_network_waits_for_the_host() {
    for shell in shells() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, _) = fake_ip(dir.path(), 0);
        let host = [
            ("TSFORGE_IP_COMMAND", ip.as_str()),
            ("TSForgeNetworkTimeout", "1"),
            ("TSForgeNetworkHost", "deploy.lab.example"),
        ];
        let mut vars = host.to_vec();
        vars.push(("TSFORGE_PING_COMMAND", "true"));
        let r = run_sh(&shell, "wait-for-network.sh", "", &vars, true);
        assert_eq!(r.code, 0, "{shell:?}: {}", r.out);
        assert!(
            r.out.contains("and for deploy.lab.example to answer ping"),
            "{}",
            r.out
        );
        assert!(
            r.out.contains("10.0.2.15; deploy.lab.example answers ping"),
            "{}",
            r.out
        );
        assert_eq!(r.var_pairs(), [("TSForgeIPAddress", "10.0.2.15")]);

        let mut vars = host.to_vec();
        vars.push(("TSFORGE_PING_COMMAND", "false"));
        let r = run_sh(&shell, "wait-for-network.sh", "", &vars, true);
        assert_eq!(r.code, 1, "{shell:?}: {}", r.out);
        assert!(
            r.out.contains(
                "error: deploy.lab.example did not answer ping within 1 s (TSForgeNetworkTimeout); \
                 this computer has 10.0.2.15"
            ),
            "{}",
            r.out
        );
        assert!(r.vars.is_empty());
    }
}

/// Every hook has a `.sh` and a `.cmd` version, and the README's table lists each file.
#[test]
fn readme_lists_every_hook() {
    let readme = std::fs::read_to_string(Path::new(HOOKS).join("README.md")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(HOOKS)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    names.sort();
    for n in &names {
        assert!(
            readme.contains(&format!("| `{n}` |")),
            "hooks/README.md has no table row for {n}"
        );
        if let Some(stem) = n.strip_suffix(".sh") {
            assert!(
                names.contains(&format!("{stem}.cmd")),
                "{n} has no .cmd version"
            );
            let text = std::fs::read_to_string(Path::new(HOOKS).join(n)).unwrap();
            assert!(text.starts_with("#!/bin/sh\n"), "{n}: no #!/bin/sh line");
        }
        if n.ends_with(".cmd") {
            // cmd.exe reads batch files with CRLF line ends reliably (labels, goto).
            let text = std::fs::read_to_string(Path::new(HOOKS).join(n)).unwrap();
            assert!(
                text.split_inclusive('\n').all(|l| l.ends_with("\r\n")),
                "{n}: not CRLF throughout"
            );
        }
    }
}

// ---- The .cmd hooks under Wine ----

struct Wine {
    wine: PathBuf,
    wineserver: PathBuf,
    prefix: PathBuf,
    /// tsforge.exe and the ProcessPrng shim (see tests/wine.rs).
    app: PathBuf,
    /// Per command: stdout, stderr and env files (files, not pipes: the wineserver that the
    /// first command starts inherits them and outlives the command).
    work: PathBuf,
    runs: std::cell::Cell<u32>,
}

impl Wine {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.wine);
        c.env_clear();
        for k in ["PATH", "HOME", "USER", "LANG", "TMPDIR"] {
            if let Some(v) = std::env::var_os(k) {
                c.env(k, v);
            }
        }
        c.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=;bcryptprimitives=n,b");
        c
    }

    /// `wine cmd /c hooks\HOOK` with `vars`; each answer is written (CRLF) once the hook has
    /// shown `prompt` once more, as an operator would type it; then stdin is closed.
    fn run(
        &self,
        hook: &str,
        prompt: &str,
        answers: &[&str],
        vars: &[(&str, &str)],
        tsforge: bool,
    ) -> Ran {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let out_path = self.work.join(format!("{n}.out"));
        let err_path = self.work.join(format!("{n}.err"));
        let env_file = self.work.join(format!("{n}.env"));
        std::fs::write(&env_file, "").unwrap();
        let mut cmd = self.command();
        if tsforge {
            cmd.env("WINEPATH", wine_path(&self.app));
        }
        cmd.args(["cmd", "/c"])
            .arg(wine_path(&Path::new(HOOKS).join(hook)))
            .current_dir(&self.work)
            .env("TSFORGE_ENV_FILE", wine_path(&env_file))
            .envs(vars.iter().copied())
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("starting wine");
        let mut stdin = child.stdin.take();
        let mut given = 0;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if given < answers.len() {
                let shown = std::fs::read_to_string(&out_path).unwrap_or_default();
                if shown.matches(prompt).count() > given {
                    let w = stdin.as_mut().unwrap();
                    let _ = w.write_all(format!("{}\r\n", answers[given]).as_bytes());
                    let _ = w.flush();
                    given += 1;
                }
            } else {
                stdin = None;
            }
            if started.elapsed() > WINE_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "wine cmd /c {hook} did not finish within {} s\n{}",
                    WINE_TIMEOUT.as_secs(),
                    std::fs::read_to_string(&out_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(stdin);
        let mut out = std::fs::read_to_string(&out_path).unwrap_or_default();
        out.push_str(&std::fs::read_to_string(&err_path).unwrap_or_default());
        Ran {
            code: status.code().unwrap_or(-1),
            out,
            vars: read_vars(&env_file),
            took: started.elapsed(),
        }
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = Command::new(&self.wineserver)
            .env("WINEPREFIX", &self.prefix)
            .arg("-k")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Wine and the Windows build of tsforge, or `None` after printing what is missing.
fn wine() -> Option<(Wine, tempfile::TempDir)> {
    let tools = match WineTools::find() {
        Ok(t) => t,
        Err(what) => {
            if required() {
                panic!(
                    "cmd hooks under Wine: {what} (TSFORGE_REQUIRE_TOOLS=1, so this is a failure)"
                );
            }
            note(&format!("SKIP cmd hooks under Wine: {what}"));
            return None;
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("tsforge-hooks-wine-")
        .tempdir()
        .unwrap();
    let root = std::path::absolute(tmp.path()).unwrap();
    let [app, prefix, work] = ["app", "prefix", "work"].map(|d| {
        let p = root.join(d);
        std::fs::create_dir(&p).unwrap();
        p
    });
    tools.install_app(&app);
    let w = Wine {
        wine: tools.wine.clone(),
        wineserver: tools.wineserver.clone(),
        prefix,
        app,
        work,
        runs: std::cell::Cell::new(0),
    };
    // Create the prefix once, with stdio on files.
    let status = w
        .command()
        .args(["cmd", "/c", "exit", "0"])
        .current_dir(&w.work)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(w.work.join("init.out")).unwrap())
        .stderr(std::fs::File::create(w.work.join("init.err")).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "creating the Wine prefix failed");
    Some((w, tmp))
}

#[test]
fn cmd_hooks_under_wine() {
    let Some((wine, _tmp)) = wine() else { return };
    let t0 = Instant::now();
    let ask = "Sequence number: ";

    // choose-sequence.cmd
    let r = wine.run(
        "choose-sequence.cmd",
        ask,
        &["x", "4", "02"],
        &[THREE],
        true,
    );
    assert_eq!(r.code, 0, "{}", r.out);
    for line in ["  1. Windows 11", "  2. Ubuntu 24.04", "  3. Wipe only"] {
        assert!(r.out.contains(line), "no {line:?} in {}", r.out);
    }
    assert_eq!(r.count("is not a number from 1 to 3"), 2, "{}", r.out);
    assert_eq!(r.var_pairs(), [("TSForgeSequence", "Ubuntu 24.04")]);

    let r = wine.run(
        "choose-sequence.cmd",
        ask,
        &["a", "9", "0", "-1", "1.5"],
        &[THREE],
        true,
    );
    assert_eq!(r.code, 1, "{}", r.out);
    assert_eq!(r.count("is not a number from 1 to 3"), 5, "{}", r.out);
    assert!(r.out.contains("after 5 tries"), "{}", r.out);
    assert!(r.vars.is_empty(), "{:?}", r.vars);

    // One sequence, with the fallback (no tsforge.exe on the PATH): no question.
    let r = wine.run(
        "choose-sequence.cmd",
        ask,
        &[],
        &[("_TSForgeSequences", "Lab Deploy")],
        false,
    );
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(r.count(ask), 0, "{}", r.out);
    assert_eq!(r.var_pairs(), [("TSForgeSequence", "Lab Deploy")]);

    let r = wine.run(
        "choose-sequence.cmd",
        ask,
        &[],
        &[THREE, ("TSForgeSequence", "Wipe only")],
        true,
    );
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("keeping \"Wipe only\""), "{}", r.out);
    assert!(r.vars.is_empty());

    let r = wine.run("choose-sequence.cmd", ask, &[], &[], true);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.out
            .contains("no task sequences: _TSForgeSequences is empty"),
        "{}",
        r.out
    );

    // confirm-wipe.cmd
    let wipe = "Type WIPE to continue: ";
    let disks = [("_TSForgeDiskCount", "2"), ("OSDisk", "DISK:0")];
    let r = wine.run("confirm-wipe.cmd", wipe, &["WIPE"], &disks, true);
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("disks found: 2"), "{}", r.out);
    assert!(r.out.contains("target disk: OSDisk = DISK:0"), "{}", r.out);
    assert_eq!(r.var_pairs(), [("TSForgeWipeConfirmed", "true")]);

    for answer in [&["wipe"][..], &[]] {
        let r = wine.run("confirm-wipe.cmd", wipe, answer, &disks, true);
        assert_eq!(r.code, 1, "{answer:?}: {}", r.out);
        assert!(
            r.out.contains("not confirmed: nothing was changed"),
            "{}",
            r.out
        );
        assert!(r.vars.is_empty());
    }

    let r = wine.run(
        "confirm-wipe.cmd",
        wipe,
        &[],
        &[("TSForgeConfirmWipe", "false")],
        true,
    );
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(r.count("Type WIPE"), 0, "{}", r.out);
    assert!(r.vars.is_empty());

    // wait-for-network.cmd, with a stand-in for ipconfig.
    let fake = wine_path(&Path::new(FIXTURES).join("fake-ipconfig.cmd"));
    let counter = wine.work.join("ipconfig-calls");
    let ip = format!("{fake} {} 2", wine_path(&counter));
    let r = wine.run(
        "wait-for-network.cmd",
        "",
        &[],
        &[("TSFORGE_IP_COMMAND", &ip), ("TSForgeNetworkTimeout", "10")],
        true,
    );
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(
        r.out.contains("Network is up: IPv4 address 10.0.2.15"),
        "{}",
        r.out
    );
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
    assert_eq!(r.var_pairs(), [("TSForgeIPAddress", "10.0.2.15")]);

    let ip = format!("{fake} {} 1000", wine_path(&wine.work.join("calls-2")));
    let r = wine.run(
        "wait-for-network.cmd",
        "",
        &[],
        &[("TSFORGE_IP_COMMAND", &ip), ("TSForgeNetworkTimeout", "2")],
        true,
    );
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.out
            .contains("error: no IPv4 address after 2 s (TSForgeNetworkTimeout)"),
        "{}",
        r.out
    );
    assert!(r.vars.is_empty());
    note(&format!(
        "cmd hooks under Wine: passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
}
