//! `tsforge boot` without a machine: a folder medium assembled by the builder's media core,
//! with a pre-execution hook that reads the console, a media password and a secret variable,
//! a signature; tampering and a wrong password stop it before anything runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tsforge_builder::media::{assemble, MediaOptions};
use tsforge_builder::tree::MediaTree;

use crate::common::{repo, tool, tsforge_command, tsforge_text};

const DEPLOY: &str = r#"
name: Deploy
steps:
  - name: Record the name and the join account
    run: echo "%OSDComputerName% %DomainJoinPassword% %Site%" > "%OUT%/deploy.txt"
"#;

const CAPTURE: &str = r#"
name: Capture
steps:
  - name: Record
    run: echo capture > "%OUT%/capture.txt"
"#;

/// A folder medium with two sequences, the sample computer-name hook, a password and a secret.
fn make_medium(d: &Path, sign: Option<[u8; 32]>) -> PathBuf {
    std::fs::write(d.join("deploy.yaml"), DEPLOY).unwrap();
    std::fs::write(d.join("capture.yaml"), CAPTURE).unwrap();
    let mut tree = MediaTree::new();
    tree.add("boot/placeholder.txt", b"template file".to_vec())
        .unwrap();
    let opts = MediaOptions {
        name: "Test medium".into(),
        sequences: vec![d.join("deploy.yaml"), d.join("capture.yaml")],
        default: None,
        hooks: vec![repo("hooks/ask-computer-name.sh").into()],
        vars: vec![
            ("Site".into(), "LAB".into()),
            ("OUT".into(), d.join("out").display().to_string()),
        ],
        secrets: vec![("DomainJoinPassword".into(), "Pa55-w0rd!".into())],
        password: Some("open sesame".into()),
        signing_key: sign,
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    let cfg = assemble(&mut tree, &opts).unwrap();
    assert!(cfg.password.is_some());
    let medium = d.join("medium");
    tree.write_to_dir(&medium).unwrap();
    std::fs::create_dir_all(d.join("out")).unwrap();
    medium
}

fn boot(d: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = tsforge_command(d, &[&["boot"], args].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit before it reads its input (a refused medium): a closed pipe is fine.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn boot_asks_password_runs_the_hook_and_the_chosen_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let medium = make_medium(d, None);
    // The medium stores no secret in clear.
    let toml = std::fs::read_to_string(medium.join("tsforge/media.toml")).unwrap();
    assert!(
        !toml.contains("Pa55-w0rd!") && !toml.contains("open sesame"),
        "{toml}"
    );
    // An independent check of the manifest.
    if let Some(sha) = tool("sha256sum") {
        let o = Command::new(sha)
            .args(["-c", "--quiet", "tsforge/manifest"])
            .current_dir(&medium)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    let (code, out) = tsforge_text(d, &["media", "verify", "medium"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = tsforge_text(d, &["media", "inspect", "medium"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("sequence deploy")
            && out.contains("secret variable DomainJoinPassword (encrypted)"),
        "{out}"
    );

    // Console: the password, the hook's computer name, then the menu's choice.
    let (code, out, err) = boot(
        d,
        &["--medium", "medium", "--state-dir", "state"],
        "open sesame\nPC-042\n1\n",
    );
    let log = std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{out}\n{err}\n{log}");
    assert_eq!(
        std::fs::read_to_string(d.join("out/deploy.txt"))
            .unwrap()
            .trim(),
        "PC-042 Pa55-w0rd! LAB"
    );
    assert!(!d.join("out/capture.txt").exists());
    assert!(err.contains("Computer name: "), "{err}");
    assert!(
        err.contains("1. deploy") && err.contains("2. capture"),
        "{err}"
    );
    // The log says which hook ran, from where; the secret never appears.
    assert!(
        log.contains("hooks/01-ask-computer-name.sh (from the medium"),
        "{log}"
    );
    assert!(
        log.contains("Hook hooks/01-ask-computer-name.sh set OSDComputerName = PC-042"),
        "{log}"
    );
    assert!(!log.contains("Pa55-w0rd!"), "{log}");
    assert!(!log.contains("open sesame"), "{log}");
}

#[test]
fn boot_refuses_a_tampered_medium_and_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let medium = make_medium(d, None);
    // Wrong password three times: nothing runs.
    let (code, _, err) = boot(
        d,
        &["--medium", "medium", "--state-dir", "s1"],
        "no\nnope\nstill no\nPC-042\n1\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("Wrong media password") && err.contains("nothing was run"),
        "{err}"
    );
    assert!(!d.join("out/deploy.txt").exists());

    // One changed byte in a sequence: named, refused, nothing runs.
    let seq = medium.join("tsforge/sequences/deploy.yaml");
    let text = std::fs::read_to_string(&seq)
        .unwrap()
        .replace("Record", "Rekord");
    std::fs::write(&seq, text).unwrap();
    let (code, out) = tsforge_text(d, &["media", "verify", "medium"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tsforge/sequences/deploy.yaml: sha256"),
        "{out}"
    );
    let (code, _, err) = boot(
        d,
        &["--medium", "medium", "--state-dir", "s2"],
        "open sesame\nPC-042\n1\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing to run it") && err.contains("deploy.yaml"),
        "{err}"
    );
    assert!(!d.join("out/deploy.txt").exists());

    // A file added to tsforge/ is named too.
    std::fs::write(medium.join("tsforge/hooks/evil.sh"), "echo hi").unwrap();
    let (code, out) = tsforge_text(d, &["media", "verify", "medium"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("tsforge/hooks/evil.sh: not in the manifest"),
        "{out}"
    );
}

#[test]
fn signed_medium_verifies_and_a_pinned_key_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out) = tsforge_text(d, &["keygen", "-o", "media"]);
    assert_eq!(code, 0, "{out}");
    let key = tsforge_builder::runtime::media::read_key_file(&d.join("media.key")).unwrap();
    let medium = make_medium(d, Some(key));
    assert!(medium.join("tsforge/manifest.sig").exists());
    let (code, out) = tsforge_text(
        d,
        &["media", "verify", "medium", "--public-key", "media.pub"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signed by"), "{out}");
    // Another key pair: refused.
    tsforge_text(d, &["keygen", "-o", "other"]);
    let (code, out) = tsforge_text(
        d,
        &["media", "verify", "medium", "--public-key", "other.pub"],
    );
    assert_eq!(code, 1, "{out}");
    // A re-written manifest (files changed, manifest recomputed) fails the signature.
    let man = medium.join("tsforge/manifest");
    let mut m = std::fs::read(&man).unwrap();
    m.extend_from_slice(format!("{}  extra.txt\n", "0".repeat(64)).as_bytes());
    std::fs::write(&man, m).unwrap();
    let (code, out) = tsforge_text(d, &["media", "verify", "medium"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match tsforge/manifest"), "{out}");
}

#[test]
fn boot_refuses_a_signed_medium_with_a_file_added_outside_tsforge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out) = tsforge_text(d, &["keygen", "-o", "media"]);
    assert_eq!(code, 0, "{out}");
    let key = tsforge_builder::runtime::media::read_key_file(&d.join("media.key")).unwrap();
    let medium = make_medium(d, Some(key));
    // A boot loader entry added next to the template's files: the signature still matches,
    // but the manifest does not list it.
    std::fs::create_dir_all(medium.join("loader/entries")).unwrap();
    std::fs::write(
        medium.join("loader/entries/00-evil.conf"),
        "title evil\nlinux /evil\n",
    )
    .unwrap();
    let (code, out) = tsforge_text(
        d,
        &["media", "verify", "medium", "--public-key", "media.pub"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("loader/entries/00-evil.conf: not in the manifest"),
        "{out}"
    );
    let (code, _, err) = boot(
        d,
        &[
            "--medium",
            "medium",
            "--state-dir",
            "s",
            "--public-key",
            "media.pub",
        ],
        "open sesame\nPC-042\n1\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing to run it") && err.contains("loader/entries/00-evil.conf"),
        "{err}"
    );
    assert!(!d.join("out/deploy.txt").exists());
}

/// A medium whose sequence runs package TSF00001 (on the medium) and EXT00001 (from the
/// distribution point folder `ext`, through SMSTSContentLocations), each writing
/// `out/<id>.txt`; signed with `sign` when given.
fn medium_with_packages(d: &Path, name: &str, sign: Option<[u8; 32]>) -> PathBuf {
    for (id, dp) in [("TSF00001", "dp"), ("EXT00001", "ext")] {
        let src = d.join(format!("src-{id}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("run.sh"),
            format!("echo ran > \"$OUT/{id}.txt\"\n"),
        )
        .unwrap();
        let (code, out) = tsforge_text(
            d,
            &[
                "package",
                "build",
                src.to_str().unwrap(),
                "--id",
                id,
                "--out",
                dp,
            ],
        );
        assert_eq!(code, 0, "{out}");
    }
    let seq = d.join("packages.yaml");
    std::fs::write(
        &seq,
        "steps:\n  - name: Own package\n    type: run\n    properties:\n      PackageID: TSF00001\n      CommandLine: sh run.sh\n  - name: Package from a distribution point\n    type: run\n    properties:\n      PackageID: EXT00001\n      CommandLine: sh run.sh\n",
    )
    .unwrap();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut tree = MediaTree::new();
    let opts = MediaOptions {
        name: "Packages".into(),
        sequences: vec![seq],
        packages: vec![d.join("dp")],
        vars: vec![
            ("OUT".into(), out.display().to_string()),
            (
                "SMSTSContentLocations".into(),
                d.join("ext").display().to_string(),
            ),
        ],
        signing_key: sign,
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    assemble(&mut tree, &opts).unwrap();
    let medium = d.join(name);
    tree.write_to_dir(&medium).unwrap();
    medium
}

#[test]
fn signed_medium_accepts_its_packages_and_refuses_unsigned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out) = tsforge_text(d, &["keygen", "-o", "media"]);
    assert_eq!(code, 0, "{out}");
    let key = tsforge_builder::runtime::media::read_key_file(&d.join("media.key")).unwrap();

    // Unsigned medium: integrity only, both packages run.
    medium_with_packages(d, "plain", None);
    let (code, out, err) = boot(d, &["--medium", "plain", "--state-dir", "s1"], "");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(d.join("out/TSF00001.txt").is_file() && d.join("out/EXT00001.txt").is_file());
    std::fs::remove_file(d.join("out/TSF00001.txt")).unwrap();
    std::fs::remove_file(d.join("out/EXT00001.txt")).unwrap();

    // Signed medium: its own package was signed with its key by the builder; the unsigned
    // one from the distribution point is refused, naming it and where it came from.
    let medium = medium_with_packages(d, "signed", Some(key));
    assert!(medium
        .join("tsforge/packages/TSF00001/tsforge-package.json.sig")
        .is_file());
    let (code, out) = tsforge_text(
        d,
        &[
            "package",
            "verify",
            "signed/tsforge/packages",
            "--public-key",
            "media.pub",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = boot(d, &["--medium", "signed", "--state-dir", "s2"], "");
    let log = std::fs::read_to_string(d.join("s2/smsts.log")).unwrap_or_default();
    assert_eq!(code, 1, "{out}\n{err}\n{log}");
    assert!(d.join("out/TSF00001.txt").is_file(), "{log}");
    assert!(!d.join("out/EXT00001.txt").exists(), "{log}");
    assert!(
        log.contains(&format!(
            "package EXT00001 from the distribution point {} is unsigned",
            d.join("ext").display()
        )),
        "{log}"
    );
    assert!(!d.join("s2/cache/EXT00001").exists());
}

/// *Run Task Sequence* on a medium: the children are the medium's own sequences, found by the
/// package ID in their wrappers (the console's `<subtasksequence>` and the older `<step>` form),
/// and share the parent's variables.
/// <https://learn.microsoft.com/mem/configmgr/osd/understand/task-sequence-steps#BKMK_RunTaskSequence>
#[test]
fn boot_runs_child_sequences_from_the_medium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sequences/run-task-sequence");
    let mut tree = MediaTree::new();
    tree.add("boot/placeholder.txt", b"template file".to_vec())
        .unwrap();
    let opts = MediaOptions {
        name: "Children".into(),
        sequences: ["parent.xml", "apps.xml", "drivers.xml"]
            .iter()
            .map(|f| src.join(f))
            .collect(),
        default: Some("parent".into()),
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    assemble(&mut tree, &opts).unwrap();
    tree.write_to_dir(&d.join("medium")).unwrap();
    let (code, out, err) = boot(
        d,
        &[
            "--medium",
            "medium",
            "--state-dir",
            "state",
            "--sequence",
            "parent",
        ],
        "",
    );
    let log = std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{out}\n{err}\n{log}");
    assert_eq!(
        std::fs::read_to_string(d.join("marks")).unwrap(),
        "apps: hello-from-parent from-apps-globals\ndrivers: hello-from-child\nparent: hello-from-child\n"
    );
}

const FAILING: &str = r#"
name: Failing
steps:
  - name: Fail on purpose
    run: sh -c "exit 7"
  - name: Never reached
    run: sh -c "echo never"
"#;

/// A folder medium whose one sequence fails at its first step, with `vars` as media variables.
fn failing_medium(d: &Path, vars: &[(&str, String)], debug_shell: bool, password: bool) {
    std::fs::write(d.join("failing.yaml"), FAILING).unwrap();
    let mut tree = MediaTree::new();
    tree.add("boot/placeholder.txt", b"template file".to_vec())
        .unwrap();
    let opts = MediaOptions {
        name: "Failing".into(),
        sequences: vec![d.join("failing.yaml")],
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        password: password.then(|| "open sesame".into()),
        debug_shell,
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    let cfg = assemble(&mut tree, &opts).unwrap();
    assert_eq!(cfg.debug_shell, debug_shell);
    let _ = std::fs::remove_dir_all(d.join("medium"));
    let _ = std::fs::remove_dir_all(d.join("state"));
    tree.write_to_dir(&d.join("medium")).unwrap();
}

/// `tsforge boot` as the boot environment's /init starts it (`TSFORGE_BOOT_ENV=1`), `stdin`
/// typed on the console.
fn boot_in_boot_env(d: &Path, stdin: &str) -> (i32, String) {
    let mut child = tsforge_command(d, &["boot", "--medium", "medium", "--state-dir", "state"])
        .env("TSFORGE_BOOT_ENV", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A failed sequence: the failure screen (sequence, failed step, exit code, the log's last
/// lines, where the logs are) and the logs on the log share, as MDT's SLShare copies them to
/// `SLShare\<computer name>` (https://learn.microsoft.com/en-us/mem/configmgr/mdt/toolkit-reference#slshare;
/// MDT's logs page: https://systemscenter.ru/mdt2012.en/mdtlogs.htm), named by
/// `_SMSTSClientGuid`. Outside a boot environment the screen does not wait.
#[test]
fn a_failed_sequence_shows_the_failure_screen_and_its_logs_reach_the_log_share() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("share")).unwrap();
    failing_medium(
        d,
        &[
            ("SLShare", d.join("share").display().to_string()),
            ("OSDComputerName", "PC-9".into()),
            ("SMSTSErrorDialogTimeout", "30".into()),
        ],
        false,
        false,
    );
    let (code, out, err) = boot(d, &["--medium", "medium", "--state-dir", "state"], "");
    assert_eq!(code, 1, "{out}\n{err}");
    for want in [
        "TASK SEQUENCE FAILED",
        "Task sequence: Failing",
        "Failed step:   Fail on purpose",
        "Exit code:     7",
        "smsts.log",
        "no answer within 30 seconds: power off",
    ] {
        assert!(err.contains(want), "{want:?} not on the screen:\n{err}");
    }
    assert!(!err.contains("S and Enter for a shell"), "{err}");
    let pc = d.join("share/PC-9");
    let names: Vec<String> = std::fs::read_dir(&pc)
        .unwrap_or_else(|e| panic!("{}: {e}\n{err}", pc.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let log_name = names
        .iter()
        .find(|n| n.ends_with("-smsts.log"))
        .unwrap_or_else(|| panic!("no <guid>-smsts.log in {names:?}"));
    let guid = log_name.trim_end_matches("-smsts.log");
    assert!(
        guid.len() == 36 && guid.matches('-').count() == 4,
        "{log_name}"
    );
    assert!(names.contains(&format!("{guid}-events.jsonl")), "{names:?}");
    let log = std::fs::read_to_string(pc.join(log_name)).unwrap();
    assert!(log.contains("Fail on purpose"), "{log}");
    assert!(
        err.contains(&pc.join(log_name).display().to_string()),
        "{err}"
    );
}

/// In the boot environment the screen waits for the operator: R restarts (exit 20 for /init),
/// S is refused without `debug_shell`; with it and a media password, S asks the password
/// again (a wrong one is refused) and then gives the shell (exit 21).
#[test]
fn the_failure_screen_restarts_on_r_and_gives_a_shell_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    failing_medium(d, &[("SMSTSErrorDialogTimeout", "30".into())], false, false);
    let (code, err) = boot_in_boot_env(d, "s\nr\n");
    assert_eq!(code, 20, "{err}");
    assert!(
        err.contains("A shell is not allowed on this medium"),
        "{err}"
    );
    assert!(err.contains("Power off in 30 s"), "{err}");

    failing_medium(d, &[("SMSTSErrorDialogTimeout", "30".into())], true, true);
    let (code, err) = boot_in_boot_env(d, "open sesame\ns\nwrong\ns\nopen sesame\n");
    assert_eq!(code, 21, "{err}");
    assert!(err.contains("S and Enter for a shell"), "{err}");
    assert!(err.contains("Wrong media password: no shell."), "{err}");

    // Nobody answers and the console closes: the power action at once (exit 1).
    let (code, err) = boot_in_boot_env(d, "open sesame\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No console input: powering off."), "{err}");
}

/// Nothing may run — the medium fails its check, or the media password is wrong three times —
/// and the screen says why and waits as the failure screen does (`R` restarts, exit 20 for
/// /init) instead of powering off at once. It never offers a shell, even on a medium with
/// `debug_shell = true`: a medium that failed its check is not trusted (nor its media.toml),
/// and the operator did not prove they know the password. Outside the boot environment the
/// screen is shown without waiting (exit 2, as before).
#[test]
fn a_refused_medium_or_password_shows_why_and_waits_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    failing_medium(d, &[("SMSTSErrorDialogTimeout", "30".into())], true, true);
    let (code, err) = boot_in_boot_env(d, "one\ntwo\nthree\ns\nr\n");
    assert_eq!(code, 20, "{err}");
    for want in [
        "MEDIA PASSWORD NOT GIVEN",
        "the media password was wrong three times",
        "Wrong media password (attempt 3 of 3)",
        "A shell is not allowed on this medium",
        "Power off in 30 s",
    ] {
        assert!(err.contains(want), "{want:?} not on the screen:\n{err}");
    }
    assert!(!err.contains("S and Enter for a shell"), "{err}");
    assert!(!err.contains("Never reached"), "{err}");

    // One changed byte in the medium's sequence: the check fails; the screen names the file.
    // Its media.toml says 30 s and allows a shell; neither is trusted now: 900 s, no shell.
    let seq = d.join("medium/tsforge/sequences/failing.yaml");
    let text = std::fs::read_to_string(&seq)
        .unwrap()
        .replace("exit 7", "exit 8");
    std::fs::write(&seq, text).unwrap();
    let (code, err) = boot_in_boot_env(d, "s\nx\n");
    assert_eq!(code, 2, "{err}");
    for want in [
        "THE BOOT MEDIUM FAILED ITS CHECK",
        "failing.yaml",
        "A shell is not allowed on this medium",
        "no answer within 900 seconds: power off",
    ] {
        assert!(err.contains(want), "{want:?} not on the screen:\n{err}");
    }
    assert!(!err.contains("Media password:"), "{err}");
    let (code, _, err) = boot(d, &["--medium", "medium", "--state-dir", "s2"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("THE BOOT MEDIUM FAILED ITS CHECK"), "{err}");
}

const WATCHES_ITS_LOG: &str = r#"
name: Live
steps:
  - name: First step
    run: sh -c "echo first"
  - name: Wait for the live copy
    run: sh -c 'for i in $(seq 1 100); do cat "%LIVE%"/PC-9/*-smsts.log 2>/dev/null | grep -q "First step" && exit 0; sleep 0.1; done; exit 1'
"#;

/// MDT's SLShareDynamicLogging: the logs are written to the share as the deployment goes
/// (https://learn.microsoft.com/en-us/mem/configmgr/mdt/toolkit-reference#slsharedynamiclogging):
/// the second step finds the first one in the copy while the run is still going.
#[test]
fn slshare_dynamic_logging_copies_the_log_while_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("live")).unwrap();
    std::fs::write(d.join("live.yaml"), WATCHES_ITS_LOG).unwrap();
    let mut tree = MediaTree::new();
    tree.add("boot/placeholder.txt", b"template file".to_vec())
        .unwrap();
    let live = d.join("live").display().to_string();
    let opts = MediaOptions {
        name: "Live".into(),
        sequences: vec![d.join("live.yaml")],
        vars: vec![
            ("SLShareDynamicLogging".into(), live.clone()),
            ("LIVE".into(), live),
            ("OSDComputerName".into(), "PC-9".into()),
        ],
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    assemble(&mut tree, &opts).unwrap();
    tree.write_to_dir(&d.join("medium")).unwrap();
    let (code, out, err) = boot(d, &["--medium", "medium", "--state-dir", "state"], "");
    let log = std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{out}\n{err}\n{log}");
    // And the copy at the end has the whole run.
    let copy = std::fs::read_dir(d.join("live/PC-9"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-smsts.log"))
        .unwrap();
    let copy = std::fs::read_to_string(copy).unwrap();
    assert!(copy.contains("completed successfully"), "{copy}");
}

/// An error that stops the run (here its saved state is unreadable) shows the same screen,
/// with the error, and waits like a failed step; outside a boot environment it exits 2.
#[test]
fn an_error_that_stops_the_run_shows_the_failure_screen_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    failing_medium(d, &[("SMSTSErrorDialogTimeout", "30".into())], false, false);
    std::fs::create_dir_all(d.join("state")).unwrap();
    std::fs::write(d.join("state/state.json"), "{ not json").unwrap();
    let (code, out, err) = boot(d, &["--medium", "medium", "--state-dir", "state"], "");
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("TASK SEQUENCE FAILED"), "{err}");
    assert!(err.contains("  Error:         "), "{err}");
    assert!(err.contains("state.json"), "{err}");
    // In the boot environment it waits (the media variable's 30 s) and R restarts.
    std::fs::write(d.join("state/state.json"), "{ not json").unwrap();
    let (code, err) = boot_in_boot_env(d, "r\n");
    assert_eq!(code, 20, "{err}");
    assert!(err.contains("Power off in 30 s"), "{err}");
}

/// A pre-execution hook that fails stops the boot before any sequence, and the operator sees
/// the same failure screen (the hook as the failed step, its exit code, the log's last lines)
/// before the power action; in the boot environment it waits and R restarts. The boot's exit
/// stays the hook's code otherwise (/init prints it).
#[test]
fn a_failing_hook_shows_the_failure_screen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("failing.yaml"), FAILING).unwrap();
    std::fs::write(d.join("check.sh"), "echo 'no network card found'\nexit 4\n").unwrap();
    let mut tree = MediaTree::new();
    tree.add("boot/placeholder.txt", b"template file".to_vec())
        .unwrap();
    let opts = MediaOptions {
        name: "Hooked".into(),
        sequences: vec![d.join("failing.yaml")],
        hooks: vec![d.join("check.sh")],
        vars: vec![("SMSTSErrorDialogTimeout".into(), "30".into())],
        epoch: 1_700_000_000,
        iterations: 1000,
        ..Default::default()
    };
    assemble(&mut tree, &opts).unwrap();
    tree.write_to_dir(&d.join("medium")).unwrap();
    let (code, out, err) = boot(d, &["--medium", "medium", "--state-dir", "state"], "");
    assert_eq!(code, 4, "{out}\n{err}");
    for want in [
        "TASK SEQUENCE FAILED",
        "Task sequence: (none started: a pre-execution hook failed)",
        "Failed step:   pre-execution hook hooks/01-check.sh",
        "Exit code:     4",
        "no network card found",
    ] {
        assert!(err.contains(want), "{want:?} not on the screen:\n{err}");
    }
    let _ = std::fs::remove_dir_all(d.join("state"));
    let (code, err) = boot_in_boot_env(d, "r\n");
    assert_eq!(code, 20, "{err}");
    assert!(err.contains("Power off in 30 s"), "{err}");
}
