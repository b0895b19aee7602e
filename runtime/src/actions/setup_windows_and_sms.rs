//! *Setup Windows and ConfigMgr* (`SMS_TaskSequence_SetupWindowsAndSMSAction`): hands the run
//! over to the deployed OS. Microsoft's step (Task sequence steps,
//! <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetupWindowsandConfigMgr>;
//! class <https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/osd/sms_tasksequence_setupwindowsandsmsaction-server-wmi-class>)
//! installs the ConfigMgr client and restarts into the new OS, where the task sequence goes
//! on. Its properties `ClientPackageID`, `ClientPreProductionPackageID` and
//! `ClientInstallProperties` (`SMSClientInstallProperties`) name the ConfigMgr client, which
//! tsforge does not install: they are kept, and smsts.log says they are not used.
//!
//! tsforge's counterpart, on the OS at `OSDTargetSystemDrive` (a folder, or `DISK:N` mounted
//! meanwhile): Linux gets the runner, the sequence files, the start script and a first-boot
//! hook that runs it: a systemd unit, or for an OS without systemd a line of `/etc/inittab`
//! (busybox or SysV init); an OS with neither fails the step before anything is copied
//! (`osconfig::handover`, docs/engine.md "Hand-over"); Windows gets
//! `Windows\Setup\Scripts\SetupComplete.cmd` and the runner beside it, from the Windows runner
//! only (a Linux runner copied into Windows would never start; proven under Wine, not on
//! Windows). Then the step asks for a restart; the engine copies the run's state into the OS
//! once the step is journaled, so the deployed OS resumes at the next step.

use super::{ActionResult, AddedText, Ctx, HandOver, Plan, StepType};
use crate::log::Level;
use crate::osconfig::{self, handover as h, Os};
use crate::sequence::model::{step_type, Step};
use crate::volume::Location;
use std::path::{Path, PathBuf};

pub const TYPE: StepType = StepType {
    names: &[step_type::SETUP_WINDOWS_AND_SMS],
    check: |_| Vec::new(),
    plan,
    run,
};

const C: &str = "SetupWindowsAndSMS";
const CLIENT_PROPERTIES: &[&str] = &[
    "ClientPackageID",
    "ClientPreProductionPackageID",
    "ClientInstallProperties",
];

fn target(ctx_vars: &crate::vars::Vars) -> Option<String> {
    ctx_vars
        .get("OSDTargetSystemDrive")
        .filter(|v| !v.trim().is_empty())
        .map(str::to_string)
}

fn plan(_: &Step, p: &mut Plan) -> String {
    match target(p.vars) {
        Some(t) => format!(
            "hand the run over to the OS at {} (runner, sequence, state and a first-boot \
             hook), then restart",
            Location::parse(&t)
        ),
        None => "cannot plan: OSDTargetSystemDrive is not set (Apply Operating System Image \
                 sets it)"
            .into(),
    }
}

/// The folder all `files` are in, and each file relative to it.
fn layout(files: &[PathBuf]) -> Option<(PathBuf, Vec<PathBuf>)> {
    let first = files.first()?;
    let mut base = first.parent()?.to_path_buf();
    while !files.iter().all(|f| f.starts_with(&base)) {
        base = base.parent()?.to_path_buf();
    }
    let rel = files
        .iter()
        .map(|f| f.strip_prefix(&base).unwrap_or(f).to_path_buf())
        .collect();
    Some((base, rel))
}

fn run(s: &Step, ctx: &mut Ctx) -> ActionResult {
    let Some(t) = target(ctx.vars) else {
        return ActionResult::failed(
            "no deployed OS to hand the run over to: OSDTargetSystemDrive is not set (Apply \
             Operating System Image sets it)",
        );
    };
    let unused: Vec<&str> = CLIENT_PROPERTIES
        .iter()
        .copied()
        .filter(|p| !super::blank(s, p))
        .collect();
    if !unused.is_empty() {
        ctx.log.log(
            Level::Info,
            C,
            &format!(
                "Not used (tsforge installs no ConfigMgr client): {}",
                unused.join(", ")
            ),
        );
    }
    let location = Location::parse(&t);
    let r = osconfig::handover::with_root(&location, |root| install(root, ctx));
    match r {
        Ok(ho) => {
            ctx.log.log(
                Level::Info,
                C,
                &format!(
                    "The run is handed over to the OS at {location}; restarting into it (the \
                     run's state is copied to {} once this step is recorded)",
                    ho.state_dir
                ),
            );
            ctx.handover = Some(HandOver { target: t, ..ho });
            ActionResult::Restart(super::restart::RestartRequest {
                message: String::new(),
                timeout_secs: 0,
                target: "HD".into(),
            })
        }
        Err(e) => ActionResult::failed(format!(
            "handing the run over to the OS at {location}: {e:#}"
        )),
    }
}

fn install(root: &Path, ctx: &mut Ctx) -> anyhow::Result<HandOver> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("finding the running tsforge binary: {e}"))?;
    let Some((base, rel)) = layout(ctx.sequence_files) else {
        anyhow::bail!("the run has no sequence file to copy");
    };
    let name = ctx.vars.get("_SMSTSPackageName").unwrap_or("").to_string();
    let os = osconfig::detect(root)?;
    let rel_text = |p: &Path| p.to_string_lossy().replace('\\', "/");
    match os {
        Os::Linux(release) => {
            ctx.log.log(
                Level::Info,
                C,
                &format!("{} holds {}", root.display(), release.title()),
            );
            let init = h::detect_init(root)?;
            let dir = h::make_dir(root, h::RUNNER_DIR)?;
            let runner = dir.join("tsforge");
            std::fs::copy(&exe, &runner).map_err(|e| {
                anyhow::anyhow!("copying {} to {}: {e}", exe.display(), runner.display())
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755))?;
            }
            for r in &rel {
                let os_path = format!("{}/{}", h::SEQUENCE_DIR, rel_text(r));
                let parent = os_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
                h::make_dir(root, parent)?;
                let (from, to) = (base.join(r), h::in_root(root, &os_path));
                std::fs::copy(&from, &to).map_err(|e| {
                    anyhow::anyhow!("copying {} to {}: {e}", from.display(), to.display())
                })?;
            }
            let sequence = format!("{}/{}", h::SEQUENCE_DIR, rel_text(&rel[0]));
            let top_dir = rel[0].parent().map(rel_text).unwrap_or_default();
            let mut child_dirs: Vec<String> = Vec::new();
            for r in &rel[1..] {
                let d = r.parent().map(rel_text).unwrap_or_default();
                let d = format!("{}/{d}", h::SEQUENCE_DIR)
                    .trim_end_matches('/')
                    .to_string();
                let top = format!("{}/{top_dir}", h::SEQUENCE_DIR)
                    .trim_end_matches('/')
                    .to_string();
                if d != top && !child_dirs.contains(&d) {
                    child_dirs.push(d);
                }
            }
            osconfig::linux::write_in_tree(
                root,
                h::START.trim_start_matches('/'),
                h::start_script(&sequence, &child_dirs).as_bytes(),
            )?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    h::in_root(root, h::START),
                    std::fs::Permissions::from_mode(0o755),
                )?;
            }
            let mut cleanup: Vec<String> = Vec::new();
            let mut added: Vec<AddedText> = Vec::new();
            let hook = match init {
                h::Init::Systemd => {
                    h::make_dir(root, "/etc/systemd/system/multi-user.target.wants")?;
                    osconfig::linux::write_in_tree(
                        root,
                        h::UNIT.trim_start_matches('/'),
                        h::unit_text(&name).as_bytes(),
                    )?;
                    let link = h::in_root(root, h::UNIT_LINK);
                    let _ = h::remove(root, h::UNIT_LINK);
                    symlink(h::UNIT, &link)?;
                    cleanup.extend([h::UNIT_LINK.to_string(), h::UNIT.to_string()]);
                    format!("the systemd unit {} enabled by {}", h::UNIT, h::UNIT_LINK)
                }
                h::Init::Busybox | h::Init::SysV => {
                    let line = h::inittab_line(init);
                    let text = h::append_line(root, h::INITTAB, &line)?;
                    added.push(AddedText {
                        file: h::INITTAB.into(),
                        text,
                    });
                    format!(
                        "the line \"{line}\" in {} ({} init)",
                        h::INITTAB,
                        if init == h::Init::Busybox {
                            "busybox"
                        } else {
                            "SysV"
                        }
                    )
                }
            };
            cleanup.extend([h::RUNNER_DIR.to_string(), h::SMS_TASK_SEQUENCE.to_string()]);
            h::make_dir(root, h::LOG_DIR)?;
            h::make_dir(root, h::SMS_TASK_SEQUENCE)?;
            ctx.log.log(
                Level::Info,
                C,
                &format!(
                    "Installed the runner {}, the sequence {sequence}, the start script {} and \
                     {hook}; at first boot it runs: {}",
                    h::RUNNER,
                    h::START,
                    h::resume_args(&sequence, &child_dirs).join(" ")
                ),
            );
            Ok(HandOver {
                target: String::new(),
                state_dir: h::STATE_DIR.into(),
                log_dir: h::LOG_DIR.into(),
                cleanup,
                added,
            })
        }
        Os::Windows if !cfg!(windows) => anyhow::bail!(
            "{} holds Windows: the run resumes there with the Windows runner (tsforge.exe), and \
             this runner is built for {}; hand over to Windows from a Windows PE medium \
             (`tsforge build iso --template winpe …`)",
            root.display(),
            std::env::consts::OS
        ),
        Os::Windows => {
            let dir = h::make_dir(root, "/_SMSTaskSequence/tsforge")?;
            let runner = dir.join("tsforge.exe");
            std::fs::copy(&exe, &runner).map_err(|e| {
                anyhow::anyhow!("copying {} to {}: {e}", exe.display(), runner.display())
            })?;
            for r in &rel {
                let os_path = format!("/_SMSTaskSequence/sequence/{}", rel_text(r));
                let parent = os_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
                h::make_dir(root, parent)?;
                std::fs::copy(base.join(r), h::in_root(root, &os_path))?;
            }
            h::make_dir(root, "/Windows/Setup/Scripts")?;
            std::fs::write(
                h::in_root(root, h::SETUP_COMPLETE),
                h::setup_complete_text(&rel_text(&rel[0])),
            )?;
            ctx.log.log(
                Level::Warning,
                C,
                &format!(
                    "Wrote {} and the runner into _SMSTaskSequence; the hand-over to Windows \
                     is not proven on a Windows machine",
                    h::SETUP_COMPLETE
                ),
            );
            Ok(HandOver {
                target: String::new(),
                state_dir: "/_SMSTaskSequence/state".into(),
                log_dir: "/Windows/Temp/tsforge".into(),
                // The runner cannot remove itself or the running SetupComplete.cmd on
                // Windows: the script removes them once the runner has ended the run.
                cleanup: vec![
                    "/_SMSTaskSequence/state".into(),
                    "/_SMSTaskSequence/sequence".into(),
                ],
                added: Vec::new(),
            })
        }
    }
}

#[cfg(unix)]
fn symlink(to: &str, link: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(to, link)
        .map_err(|e| anyhow::anyhow!("linking {} to {to}: {e}", link.display()))
}

#[cfg(not(unix))]
fn symlink(to: &str, link: &Path) -> anyhow::Result<()> {
    anyhow::bail!(
        "enabling the unit needs a symbolic link {} to {to}, which this runner cannot make",
        link.display()
    )
}
