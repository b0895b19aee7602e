//! Helpers shared by the end-to-end tests: running the `tsforge` binary, finding external
//! tools, and (in the submodules) test data, disks, loop devices, an HTTP server and Wine.

pub mod data;
pub mod gpt;
pub mod httpd;
pub mod loopdev;
pub mod used_disk;
pub mod wine_tools;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether a missing tool fails the test instead of skipping it: `TSFORGE_REQUIRE_TOOLS=1`
/// (CI; `scripts/test.sh` sets it when `CI=true`).
pub fn required() -> bool {
    std::env::var("TSFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// An external checker (sgdisk, fsck.fat, mtools, …): its path, or `None` after printing
/// `SKIP <tool>`. With `TSFORGE_REQUIRE_TOOLS=1` (CI) a missing tool fails the test instead.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if required() {
            panic!("{name} is missing (TSFORGE_REQUIRE_TOOLS=1); run scripts/setup.sh");
        }
        eprintln!("SKIP {name}: not installed");
    }
    found
}

/// Write to the real stderr, past libtest's capture, so a skip or a timing is always visible.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// `p` in the repository (the root package's folder), as text for a command line.
pub fn repo(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

/// The `tsforge` binary of this build with `args`, run as the tests run it: in `dir`, standard
/// input closed, the machine folder (the client GUID) `dir/machine` instead of the system's,
/// and neither `TSFORGE_STATE_DIR` nor `TSFORGE_BOOT_ENV` taken from the caller's environment.
pub fn tsforge_command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tsforge"));
    c.args(args)
        .current_dir(dir)
        .env("TSFORGE_MACHINE_DIR", dir.join("machine"))
        .env_remove("TSFORGE_BOOT_ENV")
        .env_remove("TSFORGE_STATE_DIR")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end: (exit code, -1 when a signal ended it; stdout; stderr).
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tsforge ARGS` in `dir` ([`tsforge_command`]): (exit code, stdout, stderr).
pub fn tsforge(dir: &Path, args: &[&str]) -> (i32, String, String) {
    output(&mut tsforge_command(dir, args))
}

/// [`tsforge`] with stdout and stderr in one text, as a console shows them.
pub fn tsforge_text(dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, out, err) = tsforge(dir, args);
    (code, out + &err)
}

/// The same with `SOURCE_DATE_EPOCH` fixed (at [`EPOCH`](fixed_time::EPOCH)), for the tests
/// whose media, images and file systems must not depend on the clock.
pub mod fixed_time {
    use super::{output, tsforge_command};
    use std::path::Path;
    use std::process::Command;

    /// `SOURCE_DATE_EPOCH` of these runs (2023-11-14 22:13:20 UTC).
    pub const EPOCH: &str = "1700000000";

    /// [`tsforge_command`] with `SOURCE_DATE_EPOCH` = [`EPOCH`].
    pub fn tsforge_command_at(dir: &Path, args: &[&str]) -> Command {
        let mut c = tsforge_command(dir, args);
        c.env("SOURCE_DATE_EPOCH", EPOCH);
        c
    }

    /// `tsforge ARGS` in `dir` at [`EPOCH`]: (exit code, stdout, stderr).
    pub fn tsforge(dir: &Path, args: &[&str]) -> (i32, String, String) {
        output(&mut tsforge_command_at(dir, args))
    }

    /// [`tsforge`] with stdout and stderr in one text, as a console shows them.
    pub fn tsforge_text(dir: &Path, args: &[&str]) -> (i32, String) {
        let (code, out, err) = tsforge(dir, args);
        (code, out + &err)
    }

    /// [`tsforge`] that must succeed: stdout and stderr in one text, or a panic showing them.
    pub fn tsforge_ok(dir: &Path, args: &[&str]) -> String {
        let (code, text) = tsforge_text(dir, args);
        assert!(code == 0, "tsforge {}: {text}", args.join(" "));
        text
    }
}

/// A temporary folder to run tsforge in: sequence files are written into it, and the runs'
/// state and machine folder are kept inside it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes `text` to the file `name` in the folder; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The file `name` in the folder, empty when it is missing.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `tsforge ARGS` in the folder ([`tsforge_command`]), not started yet.
    pub fn cmd(&self, args: &[&str]) -> Command {
        tsforge_command(self.dir.path(), args)
    }

    /// Runs `tsforge ARGS` in the folder: (exit code, -1 when a signal ended it; stdout;
    /// stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        output(&mut self.cmd(args))
    }

    /// `tsforge run FILE --state-dir state` plus `extra` arguments, as [`Env::run`].
    pub fn run_seq(&self, file: &Path, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["run", file.to_str().unwrap(), "--state-dir", "state"];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}
