//! The runner half of the `tsforge` command line, one file per group of commands: `run.rs`
//! (`validate`, `run`, `convert`, `env`), `image.rs` (`capture`, `apply`, `image info|verify`),
//! `disk.rs` (`disk …`), `package.rs` (`package build|list|verify`), `media.rs` (`keygen`,
//! `media verify|inspect`), `boot.rs` (`boot`, what the boot environment starts) with
//! `failure.rs` (its failure screen) and `noecho.rs` (the media password typed without echo),
//! and `progress.rs` (the progress line long commands draw on stderr).
//!
//! One `…Config` struct and one function per leaf command; the thin binary in the workspace
//! root flattens [`RunnerCmd`] into its own command tree next to the builder's commands. Every
//! command returns an [`Exit`]. Nothing else in the runtime imports this module: it is the top
//! of the import order (`docs/architecture.md`).

pub mod boot;
pub mod disk;
pub mod failure;
pub mod image;
pub mod media;
pub mod noecho;
pub mod package;
pub mod progress;
pub mod run;

use anyhow::Result;
use clap::Subcommand;
use image::{ApplyConfig, CaptureConfig, ImageCmd};
use media::{KeygenConfig, MediaCmd};
use run::{ConvertConfig, EnvCmd, RunConfig, ValidateConfig};
use std::path::PathBuf;

/// How a tsforge command ends: its process exit code (listed in `--help`, [`EXIT_CODES_HELP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: the command ran and the answer is "no" (validation errors, the sequence failed, a
    /// check found problems).
    No,
    /// 2: an error stopped the command (bad arguments, I/O, corrupt state).
    Error,
    /// 3: `run --no-reboot`: a Restart Computer step asked for a restart.
    Restart,
    /// Another program's exit code, passed on: a failed pre-execution hook's (`boot`), the
    /// runner's in the virtual machine (`try`).
    Passed(u8),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::No => 1,
            Exit::Error => 2,
            Exit::Restart => crate::engine::EXIT_RESTART,
            Exit::Passed(code) => code,
        }
    }

    /// The exit for a code another program ended with: one of ours when it has that meaning.
    pub fn from_code(code: u8) -> Exit {
        [Exit::Ok, Exit::No, Exit::Error, Exit::Restart]
            .into_iter()
            .find(|e| e.code() == code)
            .unwrap_or(Exit::Passed(code))
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// Help text listing the exit codes.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 done; 1 the command ran and the answer is \"no\" \
(validation errors, the sequence failed); 2 an error stopped the command (bad arguments, I/O, \
corrupt state); 3 `run --no-reboot`: a Restart Computer step asked for a restart (run again \
with the same --state-dir to resume); `boot` in a boot environment, the failure screen's answer: \
20 restart, 21 debug shell.";

#[derive(Debug, Subcommand)]
pub enum RunnerCmd {
    /// Check task sequences (YAML or ConfigMgr/MDT XML) and report every problem
    ///
    /// Prints each finding as FILE:LINE:COL: message. Exits 0 when there are no errors
    /// (warnings allowed), 1 when any file has errors.
    Validate(ValidateConfig),
    /// Run a task sequence (or resume it from its state directory)
    ///
    /// Every step is journaled before and after it runs, so running the same command again
    /// after a restart, a killed runner or a power cut resumes at the right step.
    Run(RunConfig),
    /// Convert a sequence between YAML and ConfigMgr/MDT XML without loss
    Convert(ConvertConfig),
    /// Get and set task sequence variables from inside a step or hook
    #[command(subcommand)]
    Env(EnvCmd),
    /// Capture a directory into a tsforge image
    ///
    /// The image is a ZIP archive: a manifest (every path with size, sha256, mode, time,
    /// link target) and each distinct content once. It is written to IMAGE.tmp and renamed
    /// when complete. Set SOURCE_DATE_EPOCH for a byte-identical image of the same tree.
    /// See docs/image-format.md.
    Capture(CaptureConfig),
    /// Apply a tsforge, WIM or raw image to a directory, a partition or a disk
    ///
    /// A tsforge image is read once from front to back and every file checked against its
    /// sha256; a mismatch stops the apply with the file's name. A damaged or truncated image
    /// file fails before anything is written. TARGET (a directory) must be empty or missing
    /// unless --force. See docs/image-format.md.
    Apply(ApplyConfig),
    /// List and inspect disks, write partition tables and format FAT partitions
    #[command(subcommand)]
    Disk(disk::DiskCmd),
    /// Inspect and check tsforge images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Content packages: build them into a distribution point, list, verify
    #[command(subcommand)]
    Package(package::PackageCmd),
    /// Start from a tsforge medium: verify it, ask for its password, run its pre-execution
    /// hooks, select a task sequence and run it (what the boot environment starts)
    Boot(boot::BootConfig),
    /// Make an ed25519 key pair for signing media (NAME.key, secret; NAME.pub)
    Keygen(KeygenConfig),
    /// Check or describe a medium (a folder or a mounted medium)
    #[command(subcommand)]
    Media(MediaCmd),
}

/// `NAME=VALUE` for `--var`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, "")) if crate::vars::is_read_only(n) => Err(format!(
            "{n}= would delete {n}, but _SMSTS* variables are read-only (the engine's own); \
             give a value"
        )),
        Some((n, v)) if crate::vars::valid_name(n) => Ok((n.to_string(), v.to_string())),
        Some((n, _)) => Err(format!("invalid variable name {n:?}")),
        None => Err(format!("expected NAME=VALUE, found {s:?}")),
    }
}

/// `N=PATH` for `--disk`.
pub fn parse_disk(s: &str) -> Result<(u32, PathBuf), String> {
    match s.split_once('=') {
        Some((n, p)) if !p.is_empty() => n
            .trim()
            .parse::<u32>()
            .map(|n| (n, PathBuf::from(p)))
            .map_err(|_| format!("disk number {n:?} is not a whole number (expected N=PATH)")),
        _ => Err(format!("expected N=PATH (e.g. 0=disk.img), found {s:?}")),
    }
}

/// Run one runner command.
pub fn dispatch(cmd: RunnerCmd) -> Result<Exit> {
    match cmd {
        RunnerCmd::Validate(c) => run::validate_cmd(c),
        RunnerCmd::Run(c) => run::run_cmd(c),
        RunnerCmd::Convert(c) => run::convert_cmd(c),
        RunnerCmd::Env(c) => run::env_cmd(c),
        RunnerCmd::Capture(c) => image::capture_cmd(c),
        RunnerCmd::Apply(c) => image::apply_cmd(c),
        RunnerCmd::Image(ImageCmd::Info(c)) => image::image_info_cmd(c),
        RunnerCmd::Image(ImageCmd::Verify(c)) => image::image_verify_cmd(c),
        RunnerCmd::Disk(c) => disk::dispatch(c),
        RunnerCmd::Package(c) => package::dispatch(c),
        RunnerCmd::Boot(c) => boot::boot_cmd(c),
        RunnerCmd::Keygen(c) => media::keygen_cmd(c),
        RunnerCmd::Media(MediaCmd::Verify(c)) => media::media_verify_cmd(c, false),
        RunnerCmd::Media(MediaCmd::Inspect(c)) => media::media_verify_cmd(c, true),
    }
}
