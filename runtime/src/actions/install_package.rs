//! *Install Package* (`SMS_TaskSequence_InstallSoftwareAction`): `PackageID` + `ProgramName`,
//! or `BaseVariableName` (variables `<base>001`, `<base>002`, … each `ID:Program`, stopping at
//! the first one not set; the `OSD…` variable names work too). The package comes from the
//! run's distribution points (`packages`), verified, into the run's cache, and its program's
//! command line runs in its folder.

use super::command::{run_process, ProcessRun};
use super::packages::{fetch, prop};
use super::process::Launch;
use super::{ActionResult, Ctx, Plan, StepType};
use crate::log::Level;
use crate::sequence::model::{step_type, Step};
use std::time::Duration;

pub const TYPE: StepType = StepType {
    names: &[step_type::INSTALL_PACKAGE],
    check,
    plan,
    run: install_package,
};

fn check(s: &Step) -> Vec<String> {
    let has = |k: &str| !super::blank(s, k);
    let complete = has("BaseVariableName") || (has("PackageID") && has("ProgramName"));
    if !complete {
        return vec![format!(
            "Install Package step {:?} needs PackageID and ProgramName, or \
             BaseVariableName",
            s.name()
        )];
    }
    Vec::new()
}

fn plan(step: &Step, p: &mut Plan) -> String {
    let vars = &*p.vars;
    match step.property("BaseVariableName") {
        Some(b) if !b.trim().is_empty() => {
            format!("install the packages listed in {}001…", vars.expand(b))
        }
        _ => format!(
            "install package {} program {:?}",
            vars.expand(step.property("PackageID").unwrap_or_default()),
            vars.expand(step.property("ProgramName").unwrap_or_default())
        ),
    }
}

/// *Install Package*.
pub fn install_package(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "InstallPackage";
    let mut list: Vec<(String, String)> = Vec::new();
    if let Some(base) = prop(step, ctx, &["BaseVariableName"]) {
        for i in 1..1000 {
            let Some(v) = ctx.vars.get(&format!("{base}{i:03}")) else {
                break;
            };
            match v.split_once(':') {
                Some((id, prog)) if !id.trim().is_empty() && !prog.trim().is_empty() => {
                    list.push((id.trim().to_string(), prog.trim().to_string()))
                }
                _ => {
                    return ActionResult::failed(format!(
                        "{base}{i:03} = {v:?} is not PACKAGEID:Program name"
                    ))
                }
            }
        }
        if list.is_empty() {
            ctx.log.log(
                Level::Info,
                C,
                &format!("No {base}001 variable: no package to install"),
            );
            return ActionResult::ok();
        }
    } else {
        match (
            prop(step, ctx, &["PackageID"]),
            prop(step, ctx, &["ProgramName"]),
        ) {
            (Some(id), Some(p)) => list.push((id, p)),
            _ => {
                return ActionResult::failed(
                    "Install Package needs PackageID and ProgramName (or BaseVariableName)",
                )
            }
        }
    }
    let mut last = ActionResult::ok();
    for (id, program) in list {
        let local = match fetch(ctx, C, &id) {
            Ok(l) => l,
            Err(e) => return ActionResult::failed(e),
        };
        let Some(p) = local.manifest.program(&program) else {
            let known: Vec<&str> = local
                .manifest
                .programs
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return ActionResult::failed(format!(
                "package {id} has no program {program:?} (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        ctx.log.log(
            Level::Info,
            C,
            &format!("Installing {id} program {:?}: {}", p.name, p.command_line),
        );
        let run = ProcessRun {
            component: C,
            launch: Launch::CommandLine(ctx.vars.expand(&p.command_line)),
            cwd: Some(local.dir.to_string_lossy().into_owned()),
            timeout: step.timeout_secs().map(Duration::from_secs),
            success_codes: step.success_codes(),
            extra_env: Vec::new(),
            output_variable: None,
        };
        last = run_process(run, ctx);
        if !matches!(
            last,
            ActionResult::Exit {
                succeeded: true,
                ..
            }
        ) {
            return last;
        }
    }
    last
}
