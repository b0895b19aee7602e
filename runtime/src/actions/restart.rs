//! *Restart Computer* (`SMS_TaskSequence_RebootAction`).
//!
//! Properties: `SMSRebootMessage` (shown before the restart), `SMSRebootTimeout` (seconds the
//! message is shown, ConfigMgr's default 60) and `SMSRebootTarget` (`HD` for the installed
//! system, anything else for the boot medium). Where the engine restarts, the target becomes
//! UEFI's `BootNext` on the linux medium in the boot environment
//! (`crate::osconfig::efi::prepare_restart`); elsewhere the firmware's boot order decides. The engine journals the step as finished with
//! the next step as resume point *before* restarting, so the step never runs twice.
//! With `--no-reboot` the runner exits with [`crate::engine::EXIT_RESTART`] instead.

use super::{ActionResult, Ctx, StepType};
use crate::log::Level;
use crate::sequence::model::{step_type, Step};

/// `SMSRebootTimeout` is checked with the step's other numbers (`Step::check_numbers`).
pub const TYPE: StepType = StepType {
    names: &[step_type::REBOOT],
    check: |_| Vec::new(),
    plan: |_, _| "restart the computer".into(),
    run: execute,
};

/// ConfigMgr's default time the restart message is shown.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequest {
    pub message: String,
    pub timeout_secs: u64,
    pub target: String,
}

pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    let message = ctx
        .vars
        .expand(step.property("SMSRebootMessage").unwrap_or_default());
    use crate::sequence::model::{limits, parse_in_range};
    let timeout_secs = match step
        .property("SMSRebootTimeout")
        .map(|t| ctx.vars.expand(t))
        .filter(|t| !t.trim().is_empty())
    {
        None => DEFAULT_TIMEOUT_SECS,
        Some(t) => match parse_in_range(
            "SMSRebootTimeout",
            &t,
            0,
            limits::MAX_REBOOT_TIMEOUT_SECS,
            "seconds",
        ) {
            Ok(n) => n,
            Err(e) => return ActionResult::failed(e),
        },
    };
    let target = step
        .property("SMSRebootTarget")
        .map(|t| ctx.vars.expand(t))
        .unwrap_or_else(|| "HD".to_string());
    ctx.log.log(
        Level::Info,
        "Reboot",
        &format!("Restart requested (target {target}, message shown {timeout_secs} s): {message}"),
    );
    ActionResult::Restart(RestartRequest {
        message,
        timeout_secs,
        target,
    })
}

/// Restart the machine now. Returns only on failure.
pub fn reboot_machine() -> std::io::Result<()> {
    use crate::tools::{self, Tool};
    use std::process::Command;
    let find = |tool: Tool| tools::find(tool).map_err(std::io::Error::other);
    let status = if cfg!(windows) {
        if let Ok(wpeutil) = tools::find(Tool::Wpeutil) {
            Command::new(wpeutil).arg("reboot").status()
        } else {
            Command::new(find(Tool::Shutdown)?)
                .args(["/r", "/t", "0"])
                .status()
        }
    } else {
        // Written files first (the share a step wrote to, the deployed disk). In the boot
        // environment PID 1 is the medium's /init script, which handles no signal: `reboot -f`.
        // In a deployed OS, an orderly `reboot` (systemd, SysV and busybox init all take it):
        // services stop and file systems are unmounted, so the ESP is not left dirty.
        if let Ok(sync) = tools::find(Tool::Sync) {
            let _ = Command::new(sync).status();
        }
        let mut reboot = Command::new(find(Tool::Reboot)?);
        if crate::machine::in_boot_environment() {
            reboot.arg("-f");
        }
        reboot.status()
    }?;
    if status.success() {
        // The system is going down; wait for it rather than run the next step.
        std::thread::sleep(std::time::Duration::from_secs(300));
    }
    Err(std::io::Error::other(format!(
        "the restart command failed ({status})"
    )))
}
