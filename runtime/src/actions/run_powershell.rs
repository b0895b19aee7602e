//! *Run PowerShell Script* (`SMS_TaskSequence_RunPowerShellScriptAction`).
//!
//! Properties: `ScriptName` (a script path, expanded) and `ScriptParameters`, or `SourceScript`
//! (the script text, written to the state directory and run from there), `ExecutionPolicy`
//! (`Bypass`, `AllSigned`, `Undefined`; default `Bypass`), and the `startIn`/`WorkingDirectory`,
//! timeout and success codes of *Run Command Line*. The interpreter is `powershell.exe` on
//! Windows and `pwsh` elsewhere; when it is not on `PATH` the step fails and says so.

use super::command::{run_process, ProcessRun};
use super::process::Launch;
use super::{ActionResult, Ctx, StepType};
use crate::sequence::model::{step_type, Step};
use crate::tools::Tool;
use std::time::Duration;

pub const TYPE: StepType = StepType {
    names: &[step_type::RUN_POWERSHELL],
    check,
    plan: super::plan_action_text,
    run: execute,
};

fn check(s: &Step) -> Vec<String> {
    if super::blank(s, "ScriptName") && super::blank(s, "SourceScript") {
        return vec![format!(
            "Run PowerShell Script step {:?} needs a ScriptName or SourceScript property",
            s.name()
        )];
    }
    Vec::new()
}

/// The interpreter: Windows PowerShell on Windows, PowerShell 7 elsewhere.
pub const INTERPRETER: Tool = if cfg!(windows) {
    Tool::PowerShell
} else {
    Tool::Pwsh
};

/// Split `ScriptParameters` like a shell would for simple cases: whitespace separates, double
/// or single quotes group.
pub fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            None => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    let Ok(exe) = crate::tools::find(INTERPRETER) else {
        return ActionResult::failed(format!(
            "Run PowerShell Script needs {INTERPRETER} on PATH, and it was not found{}",
            if cfg!(windows) {
                "; add the WinPE-PowerShell optional component to the boot image"
            } else {
                "; install PowerShell 7 (package powershell) or run this step on Windows"
            }
        ));
    };
    let script = if let Some(src) = step
        .property("SourceScript")
        .filter(|s| !s.trim().is_empty())
    {
        let path = ctx.state_dir.join(format!("step-{}.ps1", ctx.number));
        if let Err(e) = std::fs::write(&path, src) {
            return ActionResult::failed(format!("cannot write {}: {e}", path.display()));
        }
        path.display().to_string()
    } else if let Some(name) = step.property("ScriptName").filter(|s| !s.trim().is_empty()) {
        ctx.vars.expand(name)
    } else {
        return ActionResult::failed(
            "Run PowerShell Script step has neither a ScriptName nor a SourceScript property",
        );
    };
    let policy = step
        .property("ExecutionPolicy")
        .filter(|p| !p.trim().is_empty())
        .unwrap_or("Bypass");
    let mut args = vec![
        "-NoLogo".to_string(),
        "-NoProfile".into(),
        "-NonInteractive".into(),
    ];
    if !policy.eq_ignore_ascii_case("Undefined") {
        args.push("-ExecutionPolicy".into());
        args.push(policy.to_string());
    }
    args.push("-File".into());
    args.push(script);
    args.extend(split_params(
        &ctx.vars
            .expand(step.property("ScriptParameters").unwrap_or_default()),
    ));
    let run = ProcessRun {
        component: "RunPowerShellScript",
        launch: Launch::Exec(exe, args),
        cwd: step.start_in().map(|s| ctx.vars.expand(s)),
        timeout: step.timeout_secs().map(Duration::from_secs),
        success_codes: step.success_codes(),
        extra_env: Vec::new(),
        output_variable: step
            .property("OutputVariableName")
            .map(|s| ctx.vars.expand(s)),
    };
    run_process(run, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_split_with_quotes() {
        assert_eq!(
            split_params(r#"-Name "Lab PC" -Force '' x"#),
            vec!["-Name", "Lab PC", "-Force", "", "x"]
        );
        assert!(split_params("   ").is_empty());
    }
}
