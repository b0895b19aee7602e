//! Handing a run over to the deployed OS (*Setup Windows and ConfigMgr*): where the runner,
//! the sequence and the run's state go inside the deployed OS, the first-boot hook that starts
//! the runner (Linux: a systemd unit, or an `/etc/inittab` line for busybox or SysV init;
//! Windows: `SetupComplete.cmd`), and the removal of all of it when the run ends there.
//!
//! Layout inside a deployed Linux (docs/engine.md, "Hand-over"):
//! - `/var/lib/tsforge/handover/tsforge`: the runner (mode 0755);
//! - `/var/lib/tsforge/handover/start`: the script both Linux hooks start (mode 0755): it runs
//!   the runner with the resume arguments and prints `tsforge: the runner exited with code N`
//!   on every active console, the line the linux medium's `/init` prints;
//! - `/var/lib/tsforge/handover/sequence/…`: the sequence file and its child sequences, at the
//!   same places relative to each other;
//! - `/_SMSTaskSequence/state`: the run's state (as ConfigMgr keeps `_SMSTaskSequence` at the
//!   root of the OS drive);
//! - `/etc/systemd/system/tsforge-handover.service`, enabled by the symlink
//!   `/etc/systemd/system/multi-user.target.wants/tsforge-handover.service`, when the OS has
//!   systemd; else one line appended to `/etc/inittab` (busybox init: `::once:…`; SysV init:
//!   `tsf:2345:once:…`), removed again byte for byte;
//! - `/var/log/tsforge/`: the logs of both phases (kept when the run ends).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub const UNIT_NAME: &str = "tsforge-handover.service";
pub const UNIT: &str = "/etc/systemd/system/tsforge-handover.service";
pub const UNIT_LINK: &str = "/etc/systemd/system/multi-user.target.wants/tsforge-handover.service";
pub const RUNNER_DIR: &str = "/var/lib/tsforge/handover";
pub const RUNNER: &str = "/var/lib/tsforge/handover/tsforge";
/// The script the first-boot hook starts.
pub const START: &str = "/var/lib/tsforge/handover/start";
pub const INITTAB: &str = "/etc/inittab";
/// Where systemd's manager lives in a tree that has it (Debian: /lib is a link to /usr/lib).
pub const SYSTEMD: &[&str] = &["lib/systemd/systemd", "usr/lib/systemd/systemd"];
pub const SEQUENCE_DIR: &str = "/var/lib/tsforge/handover/sequence";
pub const SMS_TASK_SEQUENCE: &str = "/_SMSTaskSequence";
pub const STATE_DIR: &str = "/_SMSTaskSequence/state";
pub const LOG_DIR: &str = "/var/log/tsforge";
/// Windows: the hook Windows Setup runs at the end of setup.
pub const SETUP_COMPLETE: &str = "Windows/Setup/Scripts/SetupComplete.cmd";

/// Tests only: the folder that stands for `/` when a handed-over run ends (the removals are
/// made under it). Unset on a real deployed OS.
pub const ROOT_ENV: &str = "TSFORGE_HANDOVER_ROOT";

/// The root of the running OS, which the hand-over's paths are relative to: `/`, or on
/// Windows the system drive (`%SystemDrive%\`, `C:\` when unset).
pub fn os_root() -> PathBuf {
    if cfg!(windows) {
        let drive = std::env::var("SystemDrive")
            .ok()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "C:".into());
        PathBuf::from(format!("{}\\", drive.trim_end_matches(['\\', '/'])))
    } else {
        PathBuf::from("/")
    }
}

/// The deployed OS's root, found from where its run's state is: `state` (the state folder
/// the resumed runner was given, e.g. `D:\_SMSTaskSequence\state` or `/_SMSTaskSequence/state`)
/// with the hand-over's `state_os_path` (`/_SMSTaskSequence/state`) taken off its end. `None`
/// when `state` does not end that way (the run was resumed from elsewhere). This does not
/// trust `%SystemDrive%`, which only names the drive the OS booted from.
pub fn root_of_state(state: &Path, state_os_path: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = state_os_path.split('/').filter(|p| !p.is_empty()).collect();
    let mut root = state.to_path_buf();
    for want in parts.iter().rev() {
        let name = root.file_name()?.to_string_lossy().into_owned();
        if !name.eq_ignore_ascii_case(want) {
            return None;
        }
        root = root.parent()?.to_path_buf();
    }
    Some(root)
}

/// The deployed OS's path `os_path` (absolute there) under `root`.
pub fn in_root(root: &Path, os_path: &str) -> PathBuf {
    root.join(os_path.trim_start_matches('/'))
}

/// Run `f` on the deployed OS's root at `location`: a folder as it is, partition `DISK:N`
/// mounted meanwhile (`volume::mount_partition`, root required).
pub fn with_root<T>(
    location: &crate::volume::Location,
    f: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    use crate::volume::Location;
    match location {
        Location::Dir(dir) => f(dir),
        Location::Disk(d) => bail!(
            "{} is a whole disk; name the partition that holds the OS (DISK:N)",
            d.display()
        ),
        Location::Partition { disk, number } => {
            let m = crate::volume::mount_partition(disk, *number, false)?;
            let r = f(m.dir());
            m.unmount()?;
            r
        }
    }
}

/// One ExecStart argument, quoted for systemd (`"`, `\` escaped, `%` doubled).
fn unit_arg(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The command that resumes the run in the deployed OS (`sequence_dirs`: the copied folders
/// of child sequences that are not beside the sequence, searched as `--sequence-dir`).
pub fn resume_args(sequence: &str, sequence_dirs: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        RUNNER.into(),
        "run".into(),
        sequence.into(),
        "--state-dir".into(),
        STATE_DIR.into(),
        "--log-dir".into(),
        LOG_DIR.into(),
    ];
    for d in sequence_dirs {
        args.push("--sequence-dir".into());
        args.push(d.clone());
    }
    args
}

/// The systemd unit that resumes the run at the deployed OS's first boot. Directives:
/// systemd.unit(5), systemd.service(5), systemd.exec(5).
/// It starts [`START`], which runs the runner ([`start_script`]).
pub fn unit_text(sequence_name: &str) -> String {
    let name: String = sequence_name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('%', "%%");
    format!(
        "# Written by tsforge (Setup Windows and ConfigMgr): resumes the task sequence in this\n\
         # OS at its first boot. tsforge removes this unit when the sequence ends.\n\
         [Unit]\n\
         Description=tsforge: resume the task sequence {name}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={}\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         TimeoutStartSec=infinity\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        unit_arg(START)
    )
}

/// One argument quoted for the POSIX shell (single quotes; a `'` as `'\''`).
fn sh_arg(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The script [`START`] that the first-boot hook runs (POSIX `sh`: busybox ash, dash, bash):
/// the runner with [`resume_args`], its output copied to every active console
/// (`/sys/class/tty/console/active`: a kernel started with `console=ttyS0 console=tty0` has
/// `/dev/console` on the screen only, and `tsforge try` reads the serial one), then the line
/// `tsforge: the runner exited with code N` there, as the linux medium's `/init` prints it;
/// exits with the runner's code. Without a console list it writes to its own output.
pub fn start_script(sequence: &str, sequence_dirs: &[String]) -> String {
    let cmd: Vec<String> = resume_args(sequence, sequence_dirs)
        .iter()
        .map(|a| sh_arg(a))
        .collect();
    let cmd = cmd.join(" ");
    START_SCRIPT
        .replace("@HOOKS@", &format!("{UNIT_NAME} or a line of {INITTAB}"))
        .replace("@RUNNER@", &cmd)
}

const START_SCRIPT: &str = r#"#!/bin/sh
# Written by tsforge (Setup Windows and ConfigMgr): resumes the task sequence in this OS at its
# first boot, started by the hook tsforge installed (@HOOKS@).
# tsforge removes this folder and the hook when the sequence ends.
consoles=
for c in $(cat /sys/class/tty/console/active 2>/dev/null); do
    [ -c "/dev/$c" ] && consoles="$consoles /dev/$c"
done
if [ -n "$consoles" ]; then
    rc=$( { { @RUNNER@ 2>&1 3>&-; echo $? >&3; } | tee $consoles >/dev/null; } 3>&1 )
    for c in $consoles; do
        echo "tsforge: the runner exited with code $rc" >"$c" 2>/dev/null
    done
else
    @RUNNER@
    rc=$?
    echo "tsforge: the runner exited with code $rc"
fi
exit "$rc"
"#;

/// How the deployed Linux starts its services, so the hand-over knows which hook to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// systemd: the unit [`UNIT`], enabled by [`UNIT_LINK`].
    Systemd,
    /// busybox init reading `/etc/inittab`: `::once:` (busybox's examples/inittab: the first
    /// field names the controlling tty, empty is the console; the runlevels are ignored).
    Busybox,
    /// SysV init reading `/etc/inittab`: `tsf:2345:once:` (inittab(5): `id:runlevels:action:
    /// process`, id 1-4 characters, `once` runs the process once on entering the runlevels).
    SysV,
}

/// The deployed tree's init: systemd when it has the systemd manager ([`SYSTEMD`]), else the
/// init that reads its `/etc/inittab` (busybox when `/sbin/init` leads to a file named
/// `busybox` or holding busybox, SysV init otherwise). Neither: an error naming what was
/// looked for.
pub fn detect_init(root: &Path) -> Result<Init> {
    use super::resolve_in_tree;
    if SYSTEMD
        .iter()
        .any(|p| resolve_in_tree(root, p).is_some_and(|p| p.is_file()))
    {
        return Ok(Init::Systemd);
    }
    if resolve_in_tree(root, INITTAB.trim_start_matches('/')).is_some_and(|p| p.is_file()) {
        let init = resolve_in_tree(root, "sbin/init").filter(|p| p.is_file());
        let busybox = init.is_some_and(|p| {
            p.file_name().is_some_and(|n| n == "busybox")
                || std::fs::read(&p).is_ok_and(|d| d.windows(7).any(|w| w == b"BusyBox"))
        });
        return Ok(if busybox { Init::Busybox } else { Init::SysV });
    }
    bail!(
        "the deployed OS at {} has no init tsforge can hand the run over to: neither systemd \
         (/{} or /{}) nor an /etc/inittab (busybox or SysV init)",
        root.display(),
        SYSTEMD[0],
        SYSTEMD[1]
    )
}

/// The `/etc/inittab` line that starts [`START`] once at boot, for `init`.
pub fn inittab_line(init: Init) -> String {
    match init {
        Init::SysV => format!("tsf:2345:once:{START}"),
        _ => format!("::once:{START}"),
    }
}

/// Append `line` to the file `os_path` under `root` (after a newline if the file does not end
/// with one), unless the file already holds it; returns the text that is now in the file for
/// [`remove_text`] (what was appended, or the line found).
pub fn append_line(root: &Path, os_path: &str, line: &str) -> Result<String> {
    let path = in_root(root, os_path);
    let old = std::fs::read(&path).with_context(|| format!("reading {os_path}"))?;
    let own = format!("{line}\n");
    let text = String::from_utf8_lossy(&old);
    if text.starts_with(&own) || text.contains(&format!("\n{own}")) {
        return Ok(own);
    }
    let added = if old.is_empty() || old.ends_with(b"\n") {
        own
    } else {
        format!("\n{own}")
    };
    let mut new = old;
    new.extend_from_slice(added.as_bytes());
    super::linux::write_in_tree(root, os_path.trim_start_matches('/'), &new)?;
    Ok(added)
}

/// Remove `text` (what [`append_line`] returned) from the file `os_path` under `root`: its
/// last occurrence, the rest of the file unchanged byte for byte. `Ok(false)` when the file
/// or the text is not there.
pub fn remove_text(root: &Path, os_path: &str, text: &str) -> Result<bool> {
    let path = in_root(root, os_path);
    let Ok(old) = std::fs::read(&path) else {
        return Ok(false);
    };
    let t = text.as_bytes();
    let Some(at) = (0..=old.len().saturating_sub(t.len()))
        .rev()
        .find(|&i| old.len() >= t.len() && &old[i..i + t.len()] == t)
    else {
        return Ok(false);
    };
    let mut new = old[..at].to_vec();
    new.extend_from_slice(&old[at + t.len()..]);
    super::linux::write_in_tree(root, os_path.trim_start_matches('/'), &new)?;
    Ok(true)
}

/// `SetupComplete.cmd` for a deployed Windows: starts the copied runner the same way. When
/// the run has ended, the runner has removed its state (`_SMSTaskSequence\state`); the script
/// then removes the runner's folder `_SMSTaskSequence` and itself (a running program and a
/// running batch file cannot be removed by the runner). A run that asked for a restart keeps
/// its state, so both stay. Run under Wine's cmd in tests/wine.rs; not proven on Windows.
pub fn setup_complete_text(sequence_rel: &str) -> String {
    let seq = sequence_rel.replace('/', "\\");
    format!(
        "@echo off\r\n\
         rem Written by tsforge (Setup Windows and ConfigMgr): resumes the task sequence at the\r\n\
         rem end of Windows Setup, then removes the runner and this file once the run has ended.\r\n\
         if not exist \"%WINDIR%\\Temp\\tsforge\" mkdir \"%WINDIR%\\Temp\\tsforge\"\r\n\
         \"%SystemDrive%\\_SMSTaskSequence\\tsforge\\tsforge.exe\" run \
         \"%SystemDrive%\\_SMSTaskSequence\\sequence\\{seq}\" --state-dir \
         \"%SystemDrive%\\_SMSTaskSequence\\state\" --log-dir \"%WINDIR%\\Temp\\tsforge\"\r\n\
         >>\"%WINDIR%\\Temp\\tsforge\\setupcomplete.log\" echo tsforge: the runner exited with code %ERRORLEVEL%\r\n\
         if exist \"%SystemDrive%\\_SMSTaskSequence\\state\" exit /b 0\r\n\
         rmdir /s /q \"%SystemDrive%\\_SMSTaskSequence\"\r\n\
         del \"%~f0\"\r\n"
    )
}

/// Make the folder `os_path` inside `root`, refusing to go through a symbolic link or a file
/// (an applied tree's links point into the deployed OS, not into this machine).
pub fn make_dir(root: &Path, os_path: &str) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in os_path.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." {
            bail!("{os_path}: '.' and '..' are not allowed");
        }
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "{} in the deployed OS is not a folder (a symbolic link or a file); tsforge \
                 does not write through it",
                dir.strip_prefix(root).unwrap_or(&dir).display()
            ),
            Err(_) => {
                std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?
            }
        }
    }
    Ok(dir)
}

/// Copy the folder `from` to `to` (files and folders; `skip` names left out at the top).
pub fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let t = e.file_type()?;
        let (src, dst) = (e.path(), to.join(&name));
        if t.is_dir() {
            copy_tree(&src, &dst, &[])?;
        } else if t.is_file() {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// Remove `os_path` (file, symbolic link or folder) under `root`; `Ok(false)` when it was
/// not there.
pub fn remove(root: &Path, os_path: &str) -> Result<bool> {
    let p = in_root(root, os_path);
    match std::fs::symlink_metadata(&p) {
        Err(_) => Ok(false),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p)
            .map(|_| true)
            .with_context(|| format!("removing {}", p.display())),
        Ok(_) => std::fs::remove_file(&p)
            .map(|_| true)
            .with_context(|| format!("removing {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd.service(5): ExecStart arguments may be quoted, `%` starts a specifier.
    #[test]
    fn unit_quotes_paths_and_escapes_specifiers() {
        let t = unit_text("Lab 100%");
        assert!(t.contains("Description=tsforge: resume the task sequence Lab 100%%\n"));
        assert!(t.contains("ExecStart=\"/var/lib/tsforge/handover/start\"\n"));
        assert_eq!(unit_arg("/a b/100%\"x"), "\"/a b/100%%\\\"x\"");
    }

    /// The start script quotes every argument for sh, so a space or a quote in the sequence's
    /// path stays one argument.
    #[test]
    fn start_script_quotes_the_resume_command() {
        let t = start_script("/var/lib/tsforge/handover/sequence/it's.yaml", &[]);
        assert!(t.starts_with("#!/bin/sh\n"), "{t}");
        assert!(
            t.contains(
                "    '/var/lib/tsforge/handover/tsforge' 'run' \
                 '/var/lib/tsforge/handover/sequence/it'\\''s.yaml' '--state-dir' \
                 '/_SMSTaskSequence/state' '--log-dir' '/var/log/tsforge'\n"
            ),
            "{t}"
        );
    }

    #[test]
    fn appended_line_is_removed_byte_for_byte() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        for old in [
            "",
            "::sysinit:/etc/init.d/rcS\n",
            "a\n::once:/x\nb",
            "x:1:once:/y",
        ] {
            std::fs::write(t.path().join("etc/inittab"), old).unwrap();
            let added = append_line(t.path(), INITTAB, "::once:/x").unwrap();
            let now = std::fs::read_to_string(t.path().join("etc/inittab")).unwrap();
            assert!(now.lines().any(|l| l == "::once:/x"), "{now:?}");
            assert!(remove_text(t.path(), INITTAB, &added).unwrap());
            let after = std::fs::read_to_string(t.path().join("etc/inittab")).unwrap();
            if old.contains("::once:/x\n") {
                // Already there: the hand-over's own line, removed at the end.
                assert_eq!(after, "a\nb");
            } else {
                assert_eq!(after, old);
            }
        }
        assert!(!remove_text(t.path(), INITTAB, "nothing\n").unwrap());
        assert!(!remove_text(t.path(), "/etc/none", "x").unwrap());
    }

    #[test]
    fn the_root_is_found_from_the_state_folder() {
        assert_eq!(
            root_of_state(Path::new("/_SMSTaskSequence/state"), STATE_DIR),
            Some(PathBuf::from("/"))
        );
        assert_eq!(
            root_of_state(Path::new("/mnt/os/_SMSTaskSequence/state"), STATE_DIR),
            Some(PathBuf::from("/mnt/os"))
        );
        assert_eq!(root_of_state(Path::new("/var/tmp/state"), STATE_DIR), None);
        assert_eq!(root_of_state(Path::new("state"), STATE_DIR), None);
    }

    #[test]
    fn make_dir_refuses_symbolic_links() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("var")).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/tmp", t.path().join("var/lib")).unwrap();
            let e = make_dir(t.path(), "/var/lib/tsforge")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("var/lib in the deployed OS is not a folder"),
                "{e}"
            );
        }
        assert!(make_dir(t.path(), "/a/b").unwrap().is_dir());
    }
}
