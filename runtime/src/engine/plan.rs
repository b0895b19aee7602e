//! `tsforge run --dry-run`: the steps a run would execute, without executing anything.
//!
//! The plan walks the program like the engine, evaluating conditions against the variables a
//! run would start with, and assumes every step succeeds: *Set Task Sequence Variable* steps
//! are applied to the simulated variables (so later conditions see them), other steps are
//! listed with the command line they would run (secret values masked). A condition that cannot
//! be evaluated here (a WMI or registry condition on Linux) fails its step or group in a real
//! run, so the plan says `FAIL` ("would fail: …") and follows the failure as the run would:
//! past a step or group with continue on error, else out of the enclosing groups (the rest of
//! each is not run) up to one with continue on error, or to the end of the run, which would
//! fail.

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
    // The Enter instructions of the open groups, innermost last.
    let mut groups: Vec<usize> = Vec::new();
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
                continue_on_error,
                ..
            } => {
                let verdict = if *disabled {
                    Some("disabled".to_string())
                } else {
                    match condition::evaluate(cond, &vars) {
                        Ok(true) => None,
                        Ok(false) => Some("condition is false".into()),
                        Err(e) => {
                            out.push(format!(
                                "{indent}FAIL group {name:?} (would fail: its condition cannot be evaluated here: {e})"
                            ));
                            match fail_from(program, &mut groups, *exit, *continue_on_error) {
                                Some(next) => {
                                    out.push(after_failure(&indent, program, next, &groups));
                                    path.truncate(groups.len());
                                    pc = next;
                                    continue;
                                }
                                None => {
                                    out.push(END_FAILED.to_string());
                                    return out;
                                }
                            }
                        }
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
                        groups.push(pc);
                    }
                }
            }
            Instr::Exit { .. } => {
                path.pop();
                groups.pop();
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
                        Err(e) => {
                            out.push(format!(
                                "{indent}FAIL {number:>3} {name:?} (would fail: its condition cannot be evaluated here: {e})"
                            ));
                            if node.continue_on_error() {
                                out.push(format!(
                                    "{indent}     the step has continue on error: the run goes on"
                                ));
                                pc += 1;
                                continue;
                            }
                            match fail_up(program, &mut groups) {
                                Some(next) => {
                                    out.push(after_failure(&indent, program, next, &groups));
                                    path.truncate(groups.len());
                                    pc = next;
                                    continue;
                                }
                                None => {
                                    out.push(END_FAILED.to_string());
                                    return out;
                                }
                            }
                        }
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
                    // The name is the sequence's text, not a value: only what the step would
                    // do is masked (docs/engine.md, Secrets in logs).
                    let what = mask_secrets(&what, &secrets(&vars));
                    out.push(format!("{indent}RUN  {number:>3} {name:?} [{kind}] {what}"));
                }
            }
        }
        pc += 1;
    }
    out
}

const END_FAILED: &str =
    "  The run would end here: the failure reaches the top of the sequence, which fails";

/// A failure inside the innermost open group: the rest of each group is not run, up to a group
/// with continue on error, after which the run goes on. The instruction it goes on at, or
/// `None` when the failure ends the run. `groups` is left holding the groups still open.
fn fail_up(program: &Program, groups: &mut Vec<usize>) -> Option<usize> {
    while let Some(enter) = groups.pop() {
        if let Instr::Enter {
            exit,
            continue_on_error,
            ..
        } = &program.instrs[enter]
        {
            if *continue_on_error {
                return Some(exit + 1);
            }
        }
    }
    None
}

/// A group that fails before it is entered (its condition): like a failed step in its parent,
/// unless the group itself has continue on error.
fn fail_from(
    program: &Program,
    groups: &mut Vec<usize>,
    exit: usize,
    continue_on_error: bool,
) -> Option<usize> {
    if continue_on_error {
        Some(exit + 1)
    } else {
        fail_up(program, groups)
    }
}

/// The line that says where the run goes on after a failure.
fn after_failure(indent: &str, program: &Program, next: usize, groups: &[usize]) -> String {
    let inside = groups
        .last()
        .and_then(|g| match &program.instrs[*g] {
            Instr::Enter { name, .. } => Some(format!(" inside group {name:?}")),
            _ => None,
        })
        .unwrap_or_default();
    if next >= program.instrs.len() {
        format!(
            "{indent}     continue on error absorbs the failure: the run would end here, succeeded"
        )
    } else {
        format!(
            "{indent}     the failure is absorbed by continue on error; the run goes on{inside}"
        )
    }
}
