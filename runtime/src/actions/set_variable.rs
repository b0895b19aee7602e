//! *Set Task Sequence Variable* (`SMS_TaskSequence_SetVariableAction`): properties
//! `VariableName` and `VariableValue`, both `%NAME%`-expanded. `_SMSTS*` names are refused
//! (read-only to steps), which fails the step with a message naming the variable.

use super::{ActionResult, Ctx};
use crate::sequence::model::Step;

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
