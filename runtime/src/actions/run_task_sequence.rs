//! *Run Task Sequence* (`SMS_TaskSequence_SubTasksequence`): the child sequence named by
//! `TsPackageID` (or, in YAML, `SequencePath`) runs in place of the step, sharing the
//! variables. The engine's compiler (`engine::program`) expands it before the run starts and
//! `engine::validate` follows it into the child file; this module says how the step names its
//! child and what `validate` requires of the step itself.

use super::{ActionResult, StepType};
use crate::sequence::model::{step_type, Step};

pub const TYPE: StepType = StepType {
    names: &[step_type::SUB_SEQUENCE],
    check,
    plan: super::plan_action_text,
    run: |_, _| {
        ActionResult::failed(
            "Run Task Sequence steps are expanded before the run starts; this one was not \
             (internal error: please report it)",
        )
    },
};

/// The child reference of a *Run Task Sequence* step (`TsPackageID`, or `SequencePath`).
pub fn child_reference(step: &Step) -> Option<&str> {
    step.property("TsPackageID")
        .or_else(|| step.property("SequencePath"))
        .filter(|s| !s.trim().is_empty())
}

fn check(s: &Step) -> Vec<String> {
    if child_reference(s).is_none() {
        return vec![format!(
            "Run Task Sequence step {:?} needs the TsPackageID property naming the child sequence",
            s.name()
        )];
    }
    Vec::new()
}
