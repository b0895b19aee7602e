//! `tsforge run --dry-run`: the steps a run would execute, without executing anything.
//!
//! The plan walks the program like the engine, evaluating conditions against the variables a
//! run would start with, and assumes every step succeeds: *Set Task Sequence Variable* steps
//! are applied to the simulated variables (so later conditions see them), other steps are
//! listed with the command line they would run (secret values masked). Conditions that cannot
//! be evaluated here (Windows-only ones on Linux) are shown as such.

use super::program::{Instr, Program};
use crate::actions::{classify, custom::CustomActions, Kind};
use crate::condition;
use crate::sequence::model::Node;
use crate::vars::{mask_secrets, Vars};

pub fn plan(
    program: &Program,
    mut vars: Vars,
    custom: &CustomActions,
    targets: &crate::actions::RunTargets,
) -> Vec<String> {
    let mut out = vec![format!(
        "Plan for {:?}: {} steps (dry run: nothing is executed; every step is assumed to succeed)",
        program.name, program.step_total
    )];
    let mut path: Vec<String> = Vec::new();
    let mut pc = 0;
    let secrets = |vars: &Vars| vars.secret_values();
    while pc < program.instrs.len() {
        let indent = "  ".repeat(path.len() + 1);
        match &program.instrs[pc] {
            Instr::Enter {
                name,
                disabled,
                condition: cond,
                exit,
                defaults,
                ..
            } => {
                let verdict = if *disabled {
                    Some("disabled".to_string())
                } else {
                    match condition::evaluate(cond, &vars) {
                        Ok(true) => None,
                        Ok(false) => Some("condition is false".into()),
                        Err(e) => Some(format!("condition cannot be evaluated here: {e}")),
                    }
                };
                match verdict {
                    Some(why) => {
                        out.push(format!("{indent}SKIP group {name:?} ({why})"));
                        pc = exit + 1;
                        continue;
                    }
                    None => {
                        for d in defaults {
                            vars.set_default(&d.name, d.value.clone());
                        }
                        out.push(format!("{indent}GROUP {name:?}"));
                        path.push(name.clone());
                    }
                }
            }
            Instr::Exit { .. } => {
                path.pop();
            }
            Instr::Step { step, number, .. } => {
                let name = step.name();
                let node = Node::Step(step.clone());
                let verdict = if node.disabled() {
                    Some("disabled".to_string())
                } else {
                    match condition::evaluate(&step.condition, &vars) {
                        Ok(true) => None,
                        Ok(false) => Some("condition is false".into()),
                        Err(e) => Some(format!("condition cannot be evaluated here: {e}")),
                    }
                };
                if let Some(why) = verdict {
                    out.push(format!("{indent}SKIP {number:>3} {name:?} ({why})"));
                } else {
                    let kind = step.kind().unwrap_or("command line");
                    let what = match classify(step, custom) {
                        Kind::RunCommandLine => {
                            let cmd = step
                                .property("CommandLine")
                                .map(|c| vars.expand(c))
                                .or_else(|| step.action.clone())
                                .unwrap_or_default();
                            let pkg =
                                step.property("PackageID")
                                    .map(|p| vars.expand(p))
                                    .or_else(|| {
                                        step.action.as_deref().and_then(|a| {
                                            crate::actions::package_steps::parse_smsswd(a).0
                                        })
                                    });
                            match pkg.filter(|p| !p.trim().is_empty()) {
                                Some(p) => format!("{cmd} (in package {p})"),
                                None => cmd,
                            }
                        }
                        Kind::InstallPackage => match step.property("BaseVariableName") {
                            Some(b) if !b.trim().is_empty() => {
                                format!("install the packages listed in {}001…", vars.expand(b))
                            }
                            _ => format!(
                                "install package {} program {:?}",
                                vars.expand(step.property("PackageID").unwrap_or_default()),
                                vars.expand(step.property("ProgramName").unwrap_or_default())
                            ),
                        },
                        Kind::DownloadPackageContent => format!(
                            "download packages {}",
                            vars.expand(
                                step.property("DownloadPackages")
                                    .or_else(|| step.property("PackageID"))
                                    .unwrap_or_default()
                            )
                        ),
                        Kind::ApplyDriverPackage => format!(
                            "add the drivers of package {} to the applied image",
                            vars.expand(step.property("DriverPackageID").unwrap_or_default())
                        ),
                        Kind::SetVariable => {
                            let n = vars.expand(step.property("VariableName").unwrap_or_default());
                            let v = vars.expand(step.property("VariableValue").unwrap_or_default());
                            let shown = format!("{n} = {v}");
                            let _ = vars.set_from_step(&n, v);
                            shown
                        }
                        Kind::Restart => "restart the computer".into(),
                        Kind::PartitionDisk => {
                            match crate::actions::disk_steps::describe_plan(step, &vars, targets) {
                                Ok(lines) => {
                                    let inner = "  ".repeat(path.len() + 3);
                                    // A partition step sets its volume variables; later
                                    // steps of the plan see them.
                                    if let Ok(req) =
                                        crate::actions::partition_disk::parse(step, &vars)
                                    {
                                        if let Ok(disk) =
                                            crate::actions::disk_steps::resolve_disk_path(
                                                req.disk_index,
                                                targets,
                                            )
                                        {
                                            for (i, p) in req.partitions.iter().enumerate() {
                                                if let Some(v) = &p.volume_variable {
                                                    vars.set(
                                                        v,
                                                        crate::volume::Location::partition_text(
                                                            &disk,
                                                            i as u32 + 1,
                                                        ),
                                                    );
                                                }
                                            }
                                        }
                                    }
                                    lines
                                        .iter()
                                        .map(|l| format!("\n{inner}{l}"))
                                        .collect::<String>()
                                }
                                Err(e) => format!("cannot plan: {e}"),
                            }
                        }
                        Kind::Custom(c) => format!("custom action: {}", c.program),
                        _ => step
                            .action
                            .as_deref()
                            .map(|a| vars.expand(a))
                            .unwrap_or_default(),
                    };
                    out.push(mask_secrets(
                        &format!("{indent}RUN  {number:>3} {name:?} [{kind}] {what}"),
                        &secrets(&vars),
                    ));
                }
            }
        }
        pc += 1;
    }
    out
}
