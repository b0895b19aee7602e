//! `tsforge run --dry-run`: the steps a run would execute, without executing anything.
//!
//! The plan walks the program like the engine, evaluating conditions against the variables a
//! run would start with, and assumes every step succeeds: *Set Task Sequence Variable* steps
//! are applied to the simulated variables (so later conditions see them), other steps are
//! listed with the command line they would run (secret values masked). Conditions that cannot
//! be evaluated here (Windows-only ones on Linux) are shown as such.

use super::program::{Instr, Program};
use crate::actions::{classify, custom::CustomActions, Kind, Plan};
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
                        Kind::BuiltIn(t) => (t.plan)(
                            &crate::actions::effective_step(step, &vars).0,
                            &mut Plan {
                                vars: &mut vars,
                                targets,
                                indent: "  ".repeat(path.len() + 3),
                            },
                        ),
                        Kind::Custom(c) => format!("custom action: {}", c.program),
                        Kind::ActionCommandLine => step
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
