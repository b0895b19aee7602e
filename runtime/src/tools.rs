//! The external programs tsforge may run, in one table: what needs each one and how to get it
//! on each platform. Everything else finds and runs them through [`find`] and [`run`], so a
//! missing program is always reported the same way, naming the program, what needs it and the
//! package or component that provides it, and a failed program shows its command line and the
//! end of its stderr (bootc's `utils/src/command.rs` pattern).
//!
//! The rule: no other module starts a program by a name of its own choosing. A program is
//! started from a path [`find`] returned (with [`run`], [`run_program`] or, when the caller
//! needs the child itself, `Command::new(path)`). A test in this module scans `runtime/src`,
//! `builder/src` and `src` for `Command::new("…")` and `which("…")` with a literal name to
//! keep it so. Outside the table, by design, are programs the task sequence or the user names:
//! a *Run Command Line* step's command line (run by `/bin/sh -c` on Unix, started directly on
//! Windows: the shell and the program are the step's, and a missing one fails the step), a
//! hook script itself (its interpreter, `sh`, `cmd` or `powershell`, is in the table), and a
//! program a boot template names by its full path together with its package's data files (the
//! linux template's `/usr/bin/syslinux` beside syslinux's `mbr.bin`; the USB writer names the
//! package when it is missing).
//!
//! Lookup is a `PATH` search (with Windows' executable extensions). On Unix the `sbin`
//! directories are searched after `PATH`, because Debian leaves them off a normal user's `PATH`
//! while `mkfs.*`, `partx` and `blockdev` live there.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::Context as _;

/// An external program tsforge may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `wimlib-imagex`: WIM apply, capture and info on Linux.
    WimlibImagex,
    /// `dism.exe`: WIM apply, capture and info on Windows.
    Dism,
    /// `mkfs.ntfs` (ntfs-3g's mkntfs).
    MkfsNtfs,
    MkfsExt4,
    MkfsExt3,
    MkfsExt2,
    MkfsXfs,
    MkfsExfat,
    /// `mkntfs` (ntfs-3g): the program `mkfs.ntfs` links to; the linux template's initramfs
    /// carries it.
    Mkntfs,
    /// `mkfs.fat` (dosfstools): a FAT formatter in the linux template's initramfs, for hooks
    /// and commands (tsforge itself writes FAT natively).
    MkfsFat,
    /// `e2fsck` (e2fsprogs): checks an ext2/3/4 volume; in the linux template's initramfs.
    E2fsck,
    /// `tune2fs` (e2fsprogs): changes an ext2/3/4 volume's settings; in the initramfs.
    Tune2fs,
    /// `ntfs-3g`: mounts an NTFS volume read-write through FUSE; in the initramfs.
    Ntfs3g,
    /// `format.com`: formats a volume by drive letter on Windows.
    Format,
    /// `diskpart.exe`: assigns drive letters on Windows.
    Diskpart,
    /// `partx` (util-linux): tells the kernel about changed partitions.
    Partx,
    /// `blockdev` (util-linux): re-reads partition tables, device sizes.
    Blockdev,
    /// PowerShell 7 (`pwsh`).
    Pwsh,
    /// Windows PowerShell (`powershell.exe`).
    PowerShell,
    /// `reg.exe`: registry queries on Windows.
    Reg,
    /// `taskkill.exe`: ends a timed-out step's process tree on Windows.
    Taskkill,
    /// `wpeutil.exe`: restarts Windows PE.
    Wpeutil,
    /// `shutdown.exe`: restarts Windows when `wpeutil` is missing.
    Shutdown,
    /// `cmd.exe`: runs a `.cmd`/`.bat` hook.
    Cmd,
    /// `sh`: runs a `.sh` hook.
    Sh,
    /// `sync`: writes cached data before a restart.
    Sync,
    /// `reboot`: restarts Linux.
    Reboot,
    /// `mount` (util-linux): mounts a partition.
    Mount,
    /// `umount` (util-linux): unmounts it.
    Umount,
    /// `losetup` (util-linux): a loop device over a partition of an image file, for
    /// `wimlib-imagex`'s NTFS volume mode.
    Losetup,
    /// `xorriso`: reads an ISO image (the runner's medium, a WinPE ISO for the builder).
    Xorriso,
    /// `objcopy` (binutils): strips the runner's debug information for the linux template.
    Objcopy,
    /// `ldd`: lists the runner's shared libraries for the linux template.
    Ldd,
    /// `qemu-system-x86_64`: `tsforge try` and the end-to-end tests.
    QemuSystemX86_64,
    /// `efibootmgr`: writes the firmware boot entry of a deployed Linux (on the target only).
    Efibootmgr,
    /// `bcdboot.exe`: makes an applied Windows bootable (boot files and BCD), in Windows PE.
    Bcdboot,
}

/// Where a program runs and how to get it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A Debian package (Linux only).
    Debian(&'static str),
    /// Part of Windows and Windows PE.
    WindowsBuiltIn,
    /// Built into Windows PE and Windows, or the Windows ADK on an older Windows.
    WindowsAdk,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec {
    pub tool: Tool,
    /// The program name, without a Windows extension.
    pub program: &'static str,
    /// What needs it, as a phrase that completes "… needs it".
    pub needed_for: &'static str,
    pub source: Source,
    /// The argument that prints a version quickly, when there is one.
    pub version_arg: Option<&'static str>,
}

/// Every external program tsforge may run.
pub const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        tool: Tool::WimlibImagex,
        program: "wimlib-imagex",
        needed_for: "applying, capturing or reading a WIM image",
        source: Source::Debian("wimtools"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Dism,
        program: "dism",
        needed_for: "applying, capturing or reading a WIM image",
        source: Source::WindowsAdk,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::MkfsNtfs,
        program: "mkfs.ntfs",
        needed_for: "formatting an NTFS volume",
        source: Source::Debian("ntfs-3g"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::MkfsExt4,
        program: "mkfs.ext4",
        needed_for: "formatting an ext4 volume",
        source: Source::Debian("e2fsprogs"),
        version_arg: Some("-V"),
    },
    ToolSpec {
        tool: Tool::MkfsExt3,
        program: "mkfs.ext3",
        needed_for: "formatting an ext3 volume",
        source: Source::Debian("e2fsprogs"),
        version_arg: Some("-V"),
    },
    ToolSpec {
        tool: Tool::MkfsExt2,
        program: "mkfs.ext2",
        needed_for: "formatting an ext2 volume",
        source: Source::Debian("e2fsprogs"),
        version_arg: Some("-V"),
    },
    ToolSpec {
        tool: Tool::MkfsXfs,
        program: "mkfs.xfs",
        needed_for: "formatting an XFS volume",
        source: Source::Debian("xfsprogs"),
        version_arg: Some("-V"),
    },
    ToolSpec {
        tool: Tool::MkfsExfat,
        program: "mkfs.exfat",
        needed_for: "formatting an exFAT volume",
        source: Source::Debian("exfatprogs"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Mkntfs,
        program: "mkntfs",
        needed_for: "formatting an NTFS volume",
        source: Source::Debian("ntfs-3g"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::MkfsFat,
        program: "mkfs.fat",
        needed_for: "formatting a FAT volume from a command line",
        source: Source::Debian("dosfstools"),
        // No version option; `--help` ends with the version and exits 0.
        version_arg: Some("--help"),
    },
    ToolSpec {
        tool: Tool::E2fsck,
        program: "e2fsck",
        needed_for: "checking an ext2, ext3 or ext4 volume",
        source: Source::Debian("e2fsprogs"),
        version_arg: Some("-V"),
    },
    ToolSpec {
        tool: Tool::Tune2fs,
        program: "tune2fs",
        needed_for: "changing the settings of an ext2, ext3 or ext4 volume",
        source: Source::Debian("e2fsprogs"),
        // No version option: it prints its version only before a usage error.
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Ntfs3g,
        program: "ntfs-3g",
        needed_for: "mounting an NTFS volume read-write",
        source: Source::Debian("ntfs-3g"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Format,
        program: "format",
        needed_for: "formatting an NTFS volume on Windows",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Diskpart,
        program: "diskpart",
        needed_for: "assigning a drive letter on Windows",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Partx,
        program: "partx",
        needed_for: "telling the kernel about new partitions",
        source: Source::Debian("util-linux"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Blockdev,
        program: "blockdev",
        needed_for: "re-reading a disk's partition table",
        source: Source::Debian("util-linux"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Pwsh,
        program: "pwsh",
        needed_for: "a Run PowerShell Script step",
        source: Source::Debian("powershell (from Microsoft's package repository)"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::PowerShell,
        program: "powershell",
        needed_for: "a Run PowerShell Script step, a .ps1 hook, or a WMI, file version or \
                     operating system condition",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Reg,
        program: "reg",
        needed_for: "a registry or software condition, or the firmware check in Windows PE",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Taskkill,
        program: "taskkill",
        needed_for: "ending a timed-out step",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Wpeutil,
        program: "wpeutil",
        needed_for: "restarting Windows PE",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Shutdown,
        program: "shutdown",
        needed_for: "restarting Windows",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Cmd,
        program: "cmd",
        needed_for: "a .cmd or .bat hook",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Sh,
        program: "sh",
        needed_for: "a .sh hook",
        source: Source::Debian("dash"),
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Sync,
        program: "sync",
        needed_for: "writing cached data before a restart",
        source: Source::Debian("coreutils"),
        version_arg: None,
    },
    // No version argument: some `reboot`s (busybox) ignore unknown options and restart.
    ToolSpec {
        tool: Tool::Reboot,
        program: "reboot",
        needed_for: "restarting the machine",
        source: Source::Debian("systemd-sysv"),
        version_arg: None,
    },
    ToolSpec {
        tool: Tool::Mount,
        program: "mount",
        needed_for: "mounting a partition",
        source: Source::Debian("mount"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Umount,
        program: "umount",
        needed_for: "unmounting a partition",
        source: Source::Debian("mount"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Losetup,
        program: "losetup",
        needed_for: "applying or capturing a WIM on an NTFS partition of an image file",
        source: Source::Debian("mount"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Xorriso,
        program: "xorriso",
        needed_for: "reading an ISO image",
        source: Source::Debian("xorriso"),
        version_arg: Some("-version"),
    },
    ToolSpec {
        tool: Tool::Objcopy,
        program: "objcopy",
        needed_for: "stripping the runner for the linux template",
        source: Source::Debian("binutils"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Ldd,
        program: "ldd",
        needed_for: "listing the runner's shared libraries for the linux template",
        source: Source::Debian("libc-bin"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::QemuSystemX86_64,
        program: "qemu-system-x86_64",
        needed_for: "running a virtual machine",
        source: Source::Debian("qemu-system-x86"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Efibootmgr,
        program: "efibootmgr",
        needed_for: "writing the firmware boot entry of a deployed Linux",
        source: Source::Debian("efibootmgr"),
        version_arg: Some("--version"),
    },
    ToolSpec {
        tool: Tool::Bcdboot,
        program: "bcdboot",
        needed_for: "making an applied Windows bootable",
        source: Source::WindowsBuiltIn,
        version_arg: None,
    },
];

impl Tool {
    /// This tool's row of [`TOOLS`].
    pub fn spec(self) -> &'static ToolSpec {
        TOOLS
            .iter()
            .find(|s| s.tool == self)
            .expect("tools::TOOLS has a row for every Tool variant")
    }

    /// The program name (without a Windows extension).
    pub fn program(self) -> &'static str {
        self.spec().program
    }

    /// Whether the program can exist on the platform tsforge was built for.
    pub fn on_this_platform(self) -> bool {
        match self.spec().source {
            Source::Debian(_) => !cfg!(windows),
            Source::WindowsBuiltIn | Source::WindowsAdk => cfg!(windows),
        }
    }

    /// How to get the program, for this platform, as a sentence.
    pub fn how_to_get(self) -> String {
        let windows = cfg!(windows);
        match (self.spec().source, windows) {
            (Source::Debian(pkg), false) => {
                format!("On Debian: apt-get install {pkg}")
            }
            (Source::Debian(_), true) => {
                format!(
                    "{} is a Linux program, not available on Windows",
                    self.program()
                )
            }
            (Source::WindowsBuiltIn, true) => {
                "It is part of Windows and Windows PE; check that %SystemRoot%\\System32 is on PATH"
                    .to_string()
            }
            (Source::WindowsAdk, true) => "It is part of Windows PE and Windows; on an older \
                 Windows install the Windows ADK (Deployment Tools)"
                .to_string(),
            (Source::WindowsBuiltIn | Source::WindowsAdk, false) => format!(
                "{} is a Windows program; it runs only on Windows or Windows PE",
                self.program()
            ),
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

/// A program that is not installed: the message names it, what needs it and how to get it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{program} is not installed (not found on PATH); {needed_for} needs it. {how_to_get}")]
pub struct MissingTool {
    pub tool: Tool,
    pub program: &'static str,
    pub needed_for: &'static str,
    pub how_to_get: String,
}

impl MissingTool {
    pub fn new(tool: Tool) -> MissingTool {
        let spec = tool.spec();
        MissingTool {
            tool,
            program: spec.program,
            needed_for: spec.needed_for,
            how_to_get: tool.how_to_get(),
        }
    }
}

/// Find a tool's program.
pub fn find(tool: Tool) -> Result<PathBuf, MissingTool> {
    which(tool.program()).ok_or_else(|| MissingTool::new(tool))
}

/// Find a program on `PATH` (with Windows' executable extensions from `PATHEXT`), then, on
/// Unix, in the `sbin` directories.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    which_in(name, &path)
}

/// [`which`] with an explicit search path (`PATH` syntax).
pub fn which_in(name: &str, path: &OsStr) -> Option<PathBuf> {
    let exts = executable_extensions();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(path).collect();
    if cfg!(unix) {
        for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
            let d = PathBuf::from(d);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    for dir in dirs {
        if dir.as_os_str().is_empty() {
            continue;
        }
        for ext in &exts {
            let mut file = OsString::from(name);
            file.push(ext);
            let candidate = dir.join(file);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

fn executable_extensions() -> Vec<String> {
    if cfg!(windows) {
        let mut exts = vec![String::new()];
        let pathext = std::env::var("PATHEXT").unwrap_or_default();
        let list: Vec<String> = if pathext.is_empty() {
            [".COM", ".EXE", ".BAT", ".CMD"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            pathext
                .split(';')
                .filter(|e| !e.is_empty())
                .map(|e| e.to_string())
                .collect()
        };
        exts.extend(list.into_iter().map(|e| e.to_ascii_lowercase()));
        exts
    } else {
        vec![String::new()]
    }
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// How much of a failed program's stderr an error shows.
const STDERR_TAIL: usize = 1024;

/// Run a tool to completion with standard input closed, capturing its output. `what` says what
/// the run does ("applying image 1 of install.wim"); it starts the error message when the
/// program is missing, cannot start or exits with a failure, and the error then shows the
/// command line and the last KiB of stderr (or stdout, when stderr is empty).
pub fn run<I, S>(tool: Tool, args: I, what: &str) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = find(tool).with_context(|| what.to_string())?;
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    run_program(&program, &args, what)
}

/// [`run`] for a program already found.
pub fn run_program(program: &Path, args: &[OsString], what: &str) -> anyhow::Result<Output> {
    let cmdline = command_line(program, args);
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("{what}: starting `{cmdline}`"))?;
    if !output.status.success() {
        let tail = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            tail_text(&output.stderr)
        } else {
            tail_text(&output.stdout)
        };
        let status = match output.status.code() {
            Some(c) => format!("exit code {c}"),
            None => output.status.to_string(),
        };
        anyhow::bail!("{what}: `{cmdline}` failed with {status}:\n{tail}");
    }
    Ok(output)
}

/// The last [`STDERR_TAIL`] bytes of a program's output as text, starting at a line break
/// when there is one nearby.
fn tail_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= STDERR_TAIL {
        return text.to_string();
    }
    let mut start = text.len() - STDERR_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    match tail.find('\n') {
        Some(i) if i < 200 => format!("…{}", &tail[i..]),
        _ => format!("…{tail}"),
    }
}

/// A command line as a user could paste it into a shell (arguments quoted when needed).
pub fn command_line(program: &Path, args: &[OsString]) -> String {
    let mut s = quote(program.as_os_str());
    for a in args {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || "-_./:=,+@%\\".contains(c)
                || (!c.is_ascii() && c != '\u{fffd}')
        });
    if plain {
        s.into_owned()
    } else if cfg!(windows) {
        format!("\"{}\"", s.replace('"', "\\\""))
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What [`report`] found about one tool.
#[derive(Debug, Clone)]
pub struct ToolStatus {
    pub tool: Tool,
    pub program: &'static str,
    pub needed_for: &'static str,
    /// Where it was found; `None` when it is missing.
    pub path: Option<PathBuf>,
    /// The first line the program printed for its version argument, when it has one.
    pub version: Option<String>,
    /// How to get it, when it is missing.
    pub how_to_get: Option<String>,
}

/// Every tool that can exist on this platform, found or missing, with versions where asking is
/// cheap. For a `doctor`-like command.
pub fn report() -> Vec<ToolStatus> {
    TOOLS
        .iter()
        .filter(|s| s.tool.on_this_platform())
        .map(|s| {
            let path = which(s.program);
            let version = match (&path, s.version_arg) {
                (Some(p), Some(arg)) => version_of(p, arg),
                _ => None,
            };
            ToolStatus {
                tool: s.tool,
                program: s.program,
                needed_for: s.needed_for,
                how_to_get: path.is_none().then(|| s.tool.how_to_get()),
                path,
                version,
            }
        })
        .collect()
}

fn version_of(program: &Path, arg: &str) -> Option<String> {
    let out = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    // mke2fs prints its version on stderr; most print it on stdout. Some exit non-zero after
    // printing it (mkfs.ntfs --version on old releases), so the status is not checked.
    let first_line = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    first_line(&out.stdout).or_else(|| first_line(&out.stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_row() {
        use Tool::*;
        for t in [
            WimlibImagex,
            Dism,
            MkfsNtfs,
            MkfsExt4,
            MkfsExt3,
            MkfsExt2,
            MkfsXfs,
            MkfsExfat,
            Mkntfs,
            MkfsFat,
            E2fsck,
            Tune2fs,
            Ntfs3g,
            Format,
            Diskpart,
            Partx,
            Blockdev,
            Pwsh,
            PowerShell,
            Reg,
            Taskkill,
            Wpeutil,
            Shutdown,
            Cmd,
            Sh,
            Sync,
            Reboot,
            Mount,
            Umount,
            Losetup,
            Xorriso,
            Objcopy,
            Ldd,
            QemuSystemX86_64,
            Efibootmgr,
            Bcdboot,
        ] {
            assert_eq!(t.spec().tool, t);
        }
        assert_eq!(
            TOOLS.len(),
            36,
            "one row per Tool, no duplicates: {:?}",
            TOOLS.iter().map(|s| s.program).collect::<Vec<_>>()
        );
    }

    /// Every program tsforge starts goes through the table: no `Command::new("name")` and no
    /// `which("name")` outside this file, in the runtime, the builder or the command-line
    /// shim. The one exception is the Run Command Line shell, which runs the step's own
    /// command line. Test modules (a `#[cfg(test)]`/`#[cfg(all(test, …))]` `mod` at the end of
    /// a file) are not scanned.
    #[test]
    fn programs_are_started_only_through_the_table() {
        const ALLOWED: &[(&str, &str)] = &[("actions/process.rs", "Command::new(\"/bin/sh\")")];
        const PATTERNS: &[&str] = &[
            "Command::new(\"",
            "Command::new(r\"",
            "Command::new(r#\"",
            "which(\"",
            "which_in(\"",
        ];
        let runtime = Path::new(env!("CARGO_MANIFEST_DIR"));
        let roots = [
            runtime.join("src"),
            runtime.join("../builder/src"),
            runtime.join("../src"),
        ];
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = roots.iter().filter(|d| d.is_dir()).cloned().collect();
        assert!(!dirs.is_empty());
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut found = Vec::new();
        for file in &files {
            let shown = file.to_string_lossy().replace('\\', "/");
            if shown.ends_with("runtime/src/tools.rs") {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let t = line.trim();
                let next = lines.get(i + 1).map_or("", |l| l.trim());
                if t.starts_with("#[cfg(") && t.contains("test") && next.starts_with("mod ") {
                    break;
                }
                if t.starts_with("//") {
                    continue;
                }
                let allowed = ALLOWED
                    .iter()
                    .any(|(f, s)| shown.ends_with(f) && t.contains(s));
                if !allowed && PATTERNS.iter().any(|p| t.contains(p)) {
                    found.push(format!("{shown}:{}: {t}", i + 1));
                }
            }
        }
        assert!(
            files.len() > 20,
            "the scan found the sources: {}",
            files.len()
        );
        assert!(
            found.is_empty(),
            "programs started by name outside tools.rs; add a Tool row and use tools::find or \
             tools::run:\n{}",
            found.join("\n")
        );
    }

    #[cfg(unix)]
    #[test]
    fn missing_tool_message_names_program_need_and_package() {
        let m = MissingTool::new(Tool::WimlibImagex).to_string();
        assert_eq!(
            m,
            "wimlib-imagex is not installed (not found on PATH); applying, capturing or reading \
             a WIM image needs it. On Debian: apt-get install wimtools"
        );
        let m = MissingTool::new(Tool::Dism).to_string();
        assert!(m.contains("dism is a Windows program"), "{m}");
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut s = String::new();
        for i in 0..500 {
            s.push_str(&format!("line {i}\n"));
        }
        let t = tail_text(s.as_bytes());
        assert!(t.len() <= STDERR_TAIL + 4, "{}", t.len());
        assert!(t.ends_with("line 499"), "{t}");
        assert!(t.starts_with("…\nline "), "{t}");
        assert_eq!(tail_text(b"short\n"), "short");
    }

    #[cfg(unix)]
    #[test]
    fn command_line_quotes_what_a_shell_would_split() {
        let args: Vec<OsString> = ["apply", "my image.wim", "1", "it's"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            command_line(Path::new("/usr/bin/wimlib-imagex"), &args),
            "/usr/bin/wimlib-imagex apply 'my image.wim' 1 'it'\\''s'"
        );
    }
}
