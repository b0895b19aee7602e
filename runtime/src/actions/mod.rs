//! Built-in and custom actions: what a step *does*. The engine decides *whether* a step runs
//! (conditions, disabled, retries, continue-on-error); an action runs once and reports.
//!
//! **One module per built-in step type**, each ending in a [`StepType`] that says, in one
//! place, which exported type names it runs, what `tsforge validate` reports about a step of
//! that type, what `tsforge run --dry-run` shows for it and what running it does; [`BUILT_IN`]
//! lists them, and `engine::validate`, `engine::plan` and the engine walk that list:
//! `run_command_line`, `set_variable`, `set_dynamic_variables`, `run_powershell`, `restart`,
//! `run_task_sequence` (expanded by the engine's compiler before the run), `partition_disk`,
//! `apply_image` (operating system and data images), `capture_image`, `install_package`,
//! `download_package_content`, `apply_driver_package`, `apply_windows_settings`,
//! `setup_windows_and_sms` (hands the run over to the deployed OS). Adding a step type is one file and one
//! line in [`BUILT_IN`] (`docs/architecture.md` has the recipe).
//!
//! What several step types share: `command` (a process on behalf of a step, and the `<action>`
//! command line of types that are not built in, which runs as the ConfigMgr engine runs it),
//! `process` (starting and timing out a process tree), `packages` (content packages into the
//! cache), `disks` (disk numbers, disks in use, progress lines). `custom` maps further step
//! types to programs through a manifest.

pub mod apply_driver_package;
pub mod apply_image;
pub mod apply_network_settings;
pub mod apply_windows_settings;
pub mod capture_image;
pub mod command;
pub mod custom;
pub mod disks;
pub mod download_package_content;
pub mod install_package;
pub mod packages;
pub mod partition_disk;
pub mod process;
pub mod restart;
pub mod run_command_line;
pub mod run_powershell;
pub mod run_task_sequence;
pub mod set_dynamic_variables;
pub mod set_variable;
pub mod setup_windows_and_sms;

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

/// What *Setup Windows and ConfigMgr* installed in the deployed OS, for the engine: where to
/// copy the run's state once the step is journaled, and what to remove when the run ends
/// there. Paths inside the deployed OS are written as it sees them (`/var/lib/tsforge/…`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandOver {
    /// The deployed OS as the step found it (`OSDTargetSystemDrive`: a folder or `DISK:N`).
    pub target: String,
    /// Where the engine copies the run's state directory, inside the deployed OS.
    pub state_dir: String,
    /// Where the run's logs go in the deployed OS (the first phase's smsts.log is copied there).
    pub log_dir: String,
    /// What the end of the run removes, inside the deployed OS.
    pub cleanup: Vec<String>,
    /// Text the hand-over added to a file of the deployed OS (the `/etc/inittab` line), which
    /// the end of the run removes again, leaving the rest of the file as it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<AddedText>,
}

/// Text added to the file `file` (a path inside the deployed OS).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddedText {
    pub file: String,
    pub text: String,
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
    /// Set by *Format and Partition Disk*: the disk it wrote a partition table to (the engine
    /// may then keep the run's state on it).
    pub partitioned_disk: Option<PathBuf>,
    /// The run's sequence file (absolute) and the child sequence files its steps came from.
    pub sequence_files: &'a [PathBuf],
    /// Set by *Setup Windows and ConfigMgr*: the run is handed over to the deployed OS.
    pub handover: Option<HandOver>,
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

/// A built-in step type: everything tsforge knows about it, written in its own module.
pub struct StepType {
    /// The `type` values this module runs, as exported by ConfigMgr (YAML's short names,
    /// `sequence::model::step_type::SHORT_NAMES`, are accepted for them too).
    pub names: &'static [&'static str],
    /// What `tsforge validate` reports about a step of this type: each problem a whole
    /// message (an error), from the step alone (values known only at run time are not checked).
    pub check: fn(&Step) -> Vec<String>,
    /// What `tsforge run --dry-run` shows after the step's name; it may change the simulated
    /// variables as the step would, so later conditions see them.
    pub plan: fn(&Step, &mut Plan) -> String,
    /// Run the step.
    pub run: fn(&Step, &mut Ctx) -> ActionResult,
}

/// Every built-in step type.
pub const BUILT_IN: &[&StepType] = &[
    &run_command_line::TYPE,
    &set_variable::TYPE,
    &set_dynamic_variables::TYPE,
    &run_powershell::TYPE,
    &restart::TYPE,
    &run_task_sequence::TYPE,
    &partition_disk::TYPE,
    &apply_image::TYPE,
    &capture_image::TYPE,
    &install_package::TYPE,
    &download_package_content::TYPE,
    &apply_driver_package::TYPE,
    &apply_windows_settings::TYPE,
    &apply_network_settings::TYPE,
    &setup_windows_and_sms::TYPE,
];

/// What a dry run gives a step type's `plan`.
pub struct Plan<'a> {
    /// The variables as the run would have them at this step.
    pub vars: &'a mut Vars,
    pub targets: &'a RunTargets,
    /// The indentation of lines shown under the step's own line.
    pub indent: String,
}

/// Which implementation a step maps to.
#[derive(Clone)]
pub enum Kind {
    BuiltIn(&'static StepType),
    Custom(custom::CustomAction),
    /// Not built in: runs the step's `<action>` command line.
    ActionCommandLine,
}

/// The built-in step type a `type` value names (full ConfigMgr name or YAML short name).
pub fn built_in(kind: &str) -> Option<&'static StepType> {
    BUILT_IN.iter().copied().find(|t| {
        t.names.iter().any(|k| {
            kind.eq_ignore_ascii_case(k)
                || kind.eq_ignore_ascii_case(step_type::to_short(k).unwrap_or(k))
        })
    })
}

/// Classify a step. Untyped steps (MDT) are command lines; built-in types come before the
/// custom action manifest.
pub fn classify(step: &Step, custom: &custom::CustomActions) -> Kind {
    let Some(t) = step.kind() else {
        return Kind::ActionCommandLine;
    };
    if let Some(b) = built_in(t) {
        Kind::BuiltIn(b)
    } else if let Some(c) = custom.get(t) {
        Kind::Custom(c.clone())
    } else {
        Kind::ActionCommandLine
    }
}

/// Run one step's action, on its [effective step](effective_step).
pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    let (step, taken) = effective_step(step, ctx.vars);
    for name in taken {
        let shown = if ctx.vars.is_secret(&name) {
            crate::vars::MASK.to_string()
        } else {
            ctx.vars.get(&name).unwrap_or("").to_string()
        };
        ctx.log.log(
            crate::log::Level::Info,
            "Actions",
            &format!("Property {name} = {shown} (from the task sequence variable {name})"),
        );
    }
    let step = &*step;
    match classify(step, ctx.custom) {
        Kind::BuiltIn(t) => (t.run)(step, ctx),
        Kind::Custom(c) => custom::execute(&c, step, ctx),
        Kind::ActionCommandLine => command::run_action_text(step, ctx),
    }
}

/// The step as it runs, with *action variables* applied: each property of its
/// `<defaultVarList>` is the default of the task sequence variable named like its `name`
/// attribute (e.g. `WorkingDirectory`, `OSDSetDynamicVariablesRules`); when that variable is
/// set (by *Set Task Sequence Variable*, *Set Dynamic Variables*, `--var`, a hook, a script)
/// to a non-empty value, the step uses the variable's value instead. Microsoft, "How to use
/// task sequence variables", Action variables:
/// <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/using-task-sequence-variables#action-variables>.
/// An empty variable counts as unset (the page does not say; docs/engine.md). The `startIn`
/// attribute is the same setting as `WorkingDirectory` ([`Step::start_in`]), so it follows
/// an overridden `WorkingDirectory` too. Also returns the names taken from variables.
pub fn effective_step<'a>(
    step: &'a Step,
    vars: &Vars,
) -> (std::borrow::Cow<'a, Step>, Vec<String>) {
    use std::borrow::Cow;
    let over = |v: &crate::sequence::model::Variable| {
        vars.get(&v.name)
            .filter(|x| !x.is_empty() && *x != v.value)
            .map(str::to_string)
    };
    if !step.vars.iter().any(|v| over(v).is_some()) {
        return (Cow::Borrowed(step), Vec::new());
    }
    let mut eff = step.clone();
    let mut taken = Vec::new();
    for v in eff.vars.iter_mut() {
        if let Some(value) = over(v) {
            if v.name.eq_ignore_ascii_case("WorkingDirectory") {
                for (k, a) in eff.attrs.iter_mut() {
                    if k == "startIn" {
                        *a = value.clone();
                    }
                }
            }
            v.value = value;
            taken.push(v.name.clone());
        }
    }
    (Cow::Owned(eff), taken)
}

/// The `<action>` command line a step would run, `%NAME%`-expanded: what a dry run shows for
/// step types whose plan is their command line.
pub fn plan_action_text(step: &Step, plan: &mut Plan) -> String {
    step.action
        .as_deref()
        .map(|a| plan.vars.expand(a))
        .unwrap_or_default()
}

/// Is the property `key` missing or blank?
pub(crate) fn blank(step: &Step, key: &str) -> bool {
    step.property(key).is_none_or(|p| p.trim().is_empty())
}

/// Set a variable on behalf of a step and log it (the value masked when secret). `_SMSTS*`
/// names are refused.
pub(crate) fn set_variable(
    ctx: &mut Ctx,
    component: &str,
    name: &str,
    value: String,
) -> Result<(), crate::vars::VarError> {
    let deletes = value.is_empty();
    ctx.vars.set_from_step(name, value)?;
    let message = if deletes {
        format!("Deleted variable {name} (set to an empty value)")
    } else if ctx.vars.is_secret(name) {
        format!("Set variable {name} = {}", crate::vars::MASK)
    } else {
        format!("Set variable {name} = {}", ctx.vars.get(name).unwrap_or(""))
    };
    ctx.log.log(crate::log::Level::Info, component, &message);
    Ok(())
}

/// The folder of the running executable (put first on a step's `PATH`, so `tsforge env set`
/// works inside steps even when tsforge is not installed on `PATH`).
pub fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}
