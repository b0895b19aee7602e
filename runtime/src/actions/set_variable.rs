//! *Set Task Sequence Variable* (`SMS_TaskSequence_SetVariableAction`): properties
//! `VariableName` and `VariableValue`, both `%NAME%`-expanded. `_SMSTS*` names are refused
//! (read-only to steps), which fails the step with a message naming the variable.

use super::{ActionResult, Ctx, Plan, StepType};
use crate::sequence::model::{step_type, Step};

pub const TYPE: StepType = StepType {
    names: &[step_type::SET_VARIABLE],
    check,
    plan,
    run: execute,
};

fn check(s: &Step) -> Vec<String> {
    let name = s.name();
    let mut out = Vec::new();
    if super::blank(s, "VariableName") {
        out.push(format!(
            "Set Task Sequence Variable step {name:?} needs the VariableName property"
        ));
    }
    if let Some(n) = s.property("VariableName") {
        if !n.contains('%') {
            if crate::vars::is_read_only(n) {
                out.push(format!("step {name:?} sets {n}, which is read-only (names starting with _SMSTS are set by the engine)"));
            } else if !n.is_empty() && !crate::vars::valid_name(n) {
                out.push(format!("step {name:?}: invalid variable name {n:?}"));
            }
        }
    }
    out
}

/// The variable is set in the plan too, so later conditions see it.
fn plan(step: &Step, p: &mut Plan) -> String {
    let n = p
        .vars
        .expand(step.property("VariableName").unwrap_or_default());
    let v = p
        .vars
        .expand(step.property("VariableValue").unwrap_or_default());
    let shown = format!("{n} = {v}");
    let _ = p.vars.set_from_step(&n, v);
    shown
}

pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    let Some(name) = step.property("VariableName").map(|n| ctx.vars.expand(n)) else {
        return ActionResult::failed(
            "Set Task Sequence Variable step has no VariableName property",
        );
    };
    let value = ctx
        .vars
        .expand(step.property("VariableValue").unwrap_or_default());
    if let Some(v) = step
        .vars
        .iter()
        .find(|v| v.name.eq_ignore_ascii_case("VariableValue"))
    {
        if v.hidden() {
            ctx.vars.mark_secret(&name);
        }
    }
    match super::set_variable(ctx, "SetVariable", &name, value) {
        Ok(()) => ActionResult::ok(),
        Err(e) => ActionResult::failed(e.to_string()),
    }
}
