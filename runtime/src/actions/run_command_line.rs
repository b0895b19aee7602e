//! *Run Command Line* (`SMS_TaskSequence_RunCommandLineAction`).
//!
//! Properties used: `CommandLine` (expanded; without it, the `<action>` with ConfigMgr's
//! `smsswd.exe /run:` wrapper removed), `WorkingDirectory` or the `startIn` attribute,
//! `SMSTSRunCommandLineOutputVariableName` (the variable that receives the command's output:
//! like ConfigMgr, the last 1,000 characters of stdout). The `timeout` attribute (seconds)
//! kills the process tree; success codes come from `successCodeList`/`successCodes` (default
//! `0 3010`). With a package (`PackageID`, or `<action>` `smsswd.exe /run:ID command` /
//! `smsswd.exe /pkg:ID …`) the package is fetched and the command runs in its folder (a
//! relative `startIn` is inside it). Every output line goes to smsts.log; the process gets
//! every task sequence variable as an environment variable and sets variables back through
//! `TSFORGE_ENV_FILE` (see `envfile`).

use super::command::{run_process, strip_smsswd, ProcessRun};
use super::packages::{fetch, package_cwd, parse_smsswd, prop};
use super::process::Launch;
use super::{ActionResult, Ctx, Plan, StepType};
use crate::sequence::model::{step_type, Step};
use std::time::Duration;

pub const TYPE: StepType = StepType {
    names: &[step_type::RUN_COMMAND_LINE],
    check,
    plan,
    run: run_command_line,
};

fn check(s: &Step) -> Vec<String> {
    if s.property("CommandLine").is_none() && s.action.is_none() {
        return vec![format!(
            "Run Command Line step {:?} needs the CommandLine property",
            s.name()
        )];
    }
    Vec::new()
}

fn plan(step: &Step, p: &mut Plan) -> String {
    let vars = &*p.vars;
    let cmd = step
        .property("CommandLine")
        .map(|c| vars.expand(c))
        .or_else(|| step.action.clone())
        .unwrap_or_default();
    let pkg = step
        .property("PackageID")
        .map(|p| vars.expand(p))
        .or_else(|| step.action.as_deref().and_then(|a| parse_smsswd(a).0));
    match pkg.filter(|p| !p.trim().is_empty()) {
        Some(p) => format!("{cmd} (in package {p})"),
        None => cmd,
    }
}

/// The package a *Run Command Line* step uses, if any.
pub fn command_line_package(step: &Step, ctx: &Ctx) -> Option<String> {
    prop(step, ctx, &["PackageID"]).or_else(|| {
        step.action
            .as_deref()
            .and_then(|a| parse_smsswd(a).0)
            .map(|id| ctx.vars.expand(&id))
    })
}

/// *Run Command Line* with a package: fetch it, run the command in its folder.
pub fn run_command_line_with_package(step: &Step, ctx: &mut Ctx, id: &str) -> ActionResult {
    const C: &str = "RunCommandLine";
    let raw = match step.property("CommandLine") {
        Some(c) if !c.trim().is_empty() => c.to_string(),
        _ => match step.action.as_deref().map(parse_smsswd) {
            Some((_, cmd)) if !cmd.trim().is_empty() => cmd,
            _ => {
                return ActionResult::failed(format!(
                    "Run Command Line step uses package {id} but has no CommandLine property"
                ))
            }
        },
    };
    let local = match fetch(ctx, C, id) {
        Ok(l) => l,
        Err(e) => return ActionResult::failed(e),
    };
    let cwd = package_cwd(&local, step.start_in().map(|s| ctx.vars.expand(s)));
    let run = ProcessRun {
        component: C,
        launch: Launch::CommandLine(ctx.vars.expand(&raw)),
        cwd: Some(cwd),
        timeout: step.timeout_secs().map(Duration::from_secs),
        success_codes: step.success_codes(),
        extra_env: Vec::new(),
        output_variable: step
            .property("SMSTSRunCommandLineOutputVariableName")
            .map(|s| ctx.vars.expand(s)),
    };
    run_process(run, ctx)
}

/// *Run Command Line*.
pub fn run_command_line(step: &Step, ctx: &mut Ctx) -> ActionResult {
    if let Some(id) = command_line_package(step, ctx) {
        return run_command_line_with_package(step, ctx, &id);
    }
    let raw = match step.property("CommandLine") {
        Some(c) => c.to_string(),
        None => match step.action.as_deref() {
            Some(a) => strip_smsswd(a).to_string(),
            None => {
                return ActionResult::failed(
                    "Run Command Line step has no CommandLine property and no <action>",
                )
            }
        },
    };
    let line = ctx.vars.expand(&raw);
    let run = ProcessRun {
        component: "RunCommandLine",
        launch: Launch::CommandLine(line),
        cwd: step.start_in().map(|s| ctx.vars.expand(s)),
        timeout: step.timeout_secs().map(Duration::from_secs),
        success_codes: step.success_codes(),
        extra_env: Vec::new(),
        output_variable: step
            .property("SMSTSRunCommandLineOutputVariableName")
            .map(|s| ctx.vars.expand(s)),
    };
    run_process(run, ctx)
}
