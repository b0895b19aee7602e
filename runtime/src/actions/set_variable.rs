//! *Set Task Sequence Variable* (`SMS_TaskSequence_SetVariableAction`): properties
//! `VariableName` and `VariableValue`, both `%NAME%`-expanded. `_SMSTS*` names are refused
//! (read-only to steps), which fails the step with a message naming the variable. An empty
//! value deletes the variable ("To delete a variable, set the variable value to an empty
//! string": https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/using-task-sequence-variables).
//!
//! The value is secret (masked in every log) when `DoNotShowVariableValue` is `true`, the
//! editor's *Do not display this value* (`SMS_TaskSequence_SetVariableAction`:
//! https://learn.microsoft.com/en-us/intune/configmgr/develop/reference/osd/sms_tasksequence_setvariableaction-server-wmi-class);
//! such a step may carry its value in `HiddenVariableValue` instead of `VariableValue`, which is
//! then used. `hidden="true"` on the properties is not a secret: the console writes it on
//! `VariableName` and `VariableValue` of every such step.

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

/// `DoNotShowVariableValue` = `true`: the value is a secret.
fn hides_value(step: &Step) -> bool {
    step.property("DoNotShowVariableValue")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The value as written: `VariableValue`, or `HiddenVariableValue` when the step hides its
/// value and `VariableValue` is empty.
fn raw_value(step: &Step) -> &str {
    let shown = step.property("VariableValue").unwrap_or_default();
    if shown.is_empty() && hides_value(step) {
        step.property("HiddenVariableValue").unwrap_or_default()
    } else {
        shown
    }
}

/// The variable is set in the plan too, so later conditions see it.
fn plan(step: &Step, p: &mut Plan) -> String {
    let n = p
        .vars
        .expand(step.property("VariableName").unwrap_or_default());
    let v = p.vars.expand(raw_value(step));
    let shown = if v.is_empty() {
        format!("delete {n} (empty value)")
    } else if hides_value(step) {
        format!("{n} = {}", crate::vars::MASK)
    } else {
        format!("{n} = {v}")
    };
    let _ = if hides_value(step) {
        p.vars.set_secret_from_step(&n, v)
    } else {
        p.vars.set_from_step(&n, v)
    };
    shown
}

pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    let Some(name) = step.property("VariableName").map(|n| ctx.vars.expand(n)) else {
        return ActionResult::failed(
            "Set Task Sequence Variable step has no VariableName property",
        );
    };
    let value = ctx.vars.expand(raw_value(step));
    if hides_value(step) && crate::vars::valid_name(&name) && !crate::vars::is_read_only(&name) {
        ctx.vars.mark_secret(&name);
    }
    match super::set_variable(ctx, "SetVariable", &name, value) {
        Ok(()) => ActionResult::ok(),
        Err(e) => ActionResult::failed(e.to_string()),
    }
}
