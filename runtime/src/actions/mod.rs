//! Built-in and custom actions: what a step *does*. The engine decides *whether* a step runs
//! (conditions, disabled, retries, continue-on-error); an action runs once and reports.
//!
//! Native actions: *Run Command Line* (`run.rs`), *Set Task Sequence Variable*
//! (`set_variable.rs`), *Set Dynamic Variables* (`dynamic.rs`), *Run PowerShell Script*
//! (`powershell.rs`), *Restart Computer* (`restart.rs`), *Format and Partition Disk*, *Apply
//! Operating System/Data Image* and *Capture Operating System Image* (`disk_steps.rs`), and
//! *Install Package*, *Download Package Content* and *Apply Driver Package*
//! (`package_steps.rs`), and custom actions mapped by a manifest (`custom.rs`). *Run Task Sequence* is expanded by the engine's compiler. Any other type
//! (MDT's `BDD_*`, ConfigMgr actions not implemented natively) runs its `<action>` command
//! line, as the ConfigMgr engine itself does.

pub mod custom;
pub mod disk_steps;
pub mod dynamic;
pub mod package_steps;
pub mod partition_disk;
pub mod powershell;
pub mod process;
pub mod restart;
pub mod run;
pub mod set_variable;

use crate::log::Logger;
use crate::sequence::model::{step_type, Step};
use crate::vars::Vars;
use std::path::{Path, PathBuf};

/// `E_FAIL`, the code ConfigMgr reports for a step that could not run at all.
pub const E_FAIL: i64 = 0x8000_4005;

/// What the administrator told the run about the machine: `--disk N=PATH` overrides of disk
/// numbers, `--content DIR` locations of packages, `--allow-mounted`. Saved in the journal, so a
/// resumed run works on the same disks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunTargets {
    pub disks: Vec<(u32, PathBuf)>,
    /// Distribution points: folders or http(s):// URLs.
    pub content: Vec<String>,
    pub allow_mounted: bool,
    /// The ed25519 public key (hex) every package must be signed with (`--public-key`, or
    /// the signed medium's key under `tsforge boot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_public_key: Option<String>,
}

/// Everything an action may use.
pub struct Ctx<'a> {
    pub vars: &'a mut Vars,
    pub log: &'a mut Logger,
    /// The run's state directory (scratch files live here).
    pub state_dir: &'a Path,
    pub custom: &'a custom::CustomActions,
    /// The step's 1-based number in the program.
    pub number: usize,
    pub targets: &'a RunTargets,
    /// The step is running again because the runner stopped in the middle of it (power cut,
    /// killed runner), not because it is retried or reached for the first time.
    pub interrupted: bool,
}

impl Ctx<'_> {
    /// The package store of this step: the run's distribution points (`--content`, then
    /// `SMSTSContentLocations`), its cache and download settings, and its package key.
    pub fn store(&self) -> anyhow::Result<crate::content::Store> {
        use crate::content::{cache_dir, origins, HttpOptions, Store};
        Ok(Store::new(
            origins(&self.targets.content, self.vars),
            cache_dir(self.state_dir),
            HttpOptions::from_vars(self.vars),
        )?
        .with_public_key(self.targets.package_public_key.clone()))
    }
}

/// What an action reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// The action ran; `code` becomes `_SMSTSLastActionRetCode`.
    Exit {
        code: i64,
        succeeded: bool,
        message: Option<String>,
    },
    /// *Restart Computer*: the engine journals, then restarts the machine.
    Restart(restart::RestartRequest),
}

impl ActionResult {
    pub fn failed(message: impl Into<String>) -> Self {
        ActionResult::Exit {
            code: E_FAIL,
            succeeded: false,
            message: Some(message.into()),
        }
    }
    pub fn ok() -> Self {
        ActionResult::Exit {
            code: 0,
            succeeded: true,
            message: None,
        }
    }
}

/// Which implementation a step type maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    RunCommandLine,
    SetVariable,
    SetDynamicVariables,
    PowerShell,
    Restart,
    SubSequence,
    PartitionDisk,
    ApplyImage,
    CaptureImage,
    InstallPackage,
    DownloadPackageContent,
    ApplyDriverPackage,
    Custom(custom::CustomAction),
    /// Not built in: runs the step's `<action>` command line.
    ActionCommandLine,
}

/// Classify a step. Untyped steps (MDT) are command lines.
pub fn classify(step: &Step, custom: &custom::CustomActions) -> Kind {
    let Some(t) = step.kind() else {
        return Kind::ActionCommandLine;
    };
    let is = |k: &str| {
        t.eq_ignore_ascii_case(k) || t.eq_ignore_ascii_case(step_type::to_short(k).unwrap_or(k))
    };
    if is(step_type::RUN_COMMAND_LINE) {
        Kind::RunCommandLine
    } else if is(step_type::SET_VARIABLE) {
        Kind::SetVariable
    } else if is(step_type::SET_DYNAMIC_VARIABLES) {
        Kind::SetDynamicVariables
    } else if is(step_type::RUN_POWERSHELL) {
        Kind::PowerShell
    } else if is(step_type::REBOOT) {
        Kind::Restart
    } else if is(step_type::SUB_SEQUENCE) {
        Kind::SubSequence
    } else if is(step_type::PARTITION_DISK) {
        Kind::PartitionDisk
    } else if is(step_type::APPLY_OS_IMAGE) || is(step_type::APPLY_DATA_IMAGE) {
        Kind::ApplyImage
    } else if is(step_type::CAPTURE_IMAGE) {
        Kind::CaptureImage
    } else if is(step_type::INSTALL_PACKAGE) {
        Kind::InstallPackage
    } else if is(step_type::DOWNLOAD_PACKAGE_CONTENT) {
        Kind::DownloadPackageContent
    } else if is(step_type::APPLY_DRIVER_PACKAGE) {
        Kind::ApplyDriverPackage
    } else if let Some(c) = custom.get(t) {
        Kind::Custom(c.clone())
    } else {
        Kind::ActionCommandLine
    }
}

/// Run one step's action.
pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    match classify(step, ctx.custom) {
        Kind::RunCommandLine => run::run_command_line(step, ctx),
        Kind::SetVariable => set_variable::execute(step, ctx),
        Kind::SetDynamicVariables => dynamic::execute(step, ctx),
        Kind::PowerShell => powershell::execute(step, ctx),
        Kind::Restart => restart::execute(step, ctx),
        Kind::SubSequence => ActionResult::failed(
            "Run Task Sequence steps are expanded before the run starts; this one was not \
             (internal error: please report it)",
        ),
        Kind::PartitionDisk => disk_steps::partition(step, ctx),
        Kind::ApplyImage => disk_steps::apply(step, ctx),
        Kind::CaptureImage => disk_steps::capture(step, ctx),
        Kind::InstallPackage => package_steps::install_package(step, ctx),
        Kind::DownloadPackageContent => package_steps::download_package_content(step, ctx),
        Kind::ApplyDriverPackage => package_steps::apply_driver_package(step, ctx),
        Kind::Custom(c) => custom::execute(&c, step, ctx),
        Kind::ActionCommandLine => run::run_action_text(step, ctx),
    }
}

/// Set a variable on behalf of a step and log it (the value masked when secret). `_SMSTS*`
/// names are refused.
pub(crate) fn set_variable(
    ctx: &mut Ctx,
    component: &str,
    name: &str,
    value: String,
) -> Result<(), crate::vars::VarError> {
    ctx.vars.set_from_step(name, value)?;
    let shown = if ctx.vars.is_secret(name) {
        crate::vars::MASK.to_string()
    } else {
        ctx.vars.get(name).unwrap_or("").to_string()
    };
    ctx.log.log(
        crate::log::Level::Info,
        component,
        &format!("Set variable {name} = {shown}"),
    );
    Ok(())
}

/// The folder of the running executable (put first on a step's `PATH`, so `tsforge env set`
/// works inside steps even when tsforge is not installed on `PATH`).
pub fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}
