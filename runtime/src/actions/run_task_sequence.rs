//! *Run Task Sequence* (`SMS_TaskSequence_SubTasksequence`): the child sequence named by its
//! package ID runs in place of the step, sharing the variables. The console exports the step as
//! `<subtasksequence>` (or, in older files, `<step>`) whose property `TsPackageID` (written as
//! the action variable `OSDSubTasksequencePackageID`) holds the child's package ID; older files
//! name it `SubTaskSequenceID` (with a `SubTaskSequenceGUID` tsforge does not need). YAML may
//! name a file instead with `SequencePath`. See "Run Task Sequence" in
//! <https://learn.microsoft.com/mem/configmgr/osd/understand/task-sequence-steps#BKMK_RunTaskSequence>
//! and the `TsPackageID` property of
//! <https://learn.microsoft.com/mem/configmgr/develop/reference/osd/sms_tasksequence_subtasksequence-server-wmi-class>.
//! The engine's compiler (`engine::program`) expands it before the run starts and
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

/// The properties that name the child, in the order they are looked up: the property
/// `TsPackageID` (by its `property` attribute or its name), the action variable
/// `OSDSubTasksequencePackageID` it is exported as, the older `SubTaskSequenceID`, and YAML's
/// `SequencePath`.
pub const CHILD_PROPERTIES: &[&str] = &[
    "TsPackageID",
    "OSDSubTasksequencePackageID",
    "SubTaskSequenceID",
    "SequencePath",
];

/// The child reference of a *Run Task Sequence* step: the first of [`CHILD_PROPERTIES`] that
/// is not blank, trimmed.
pub fn child_reference(step: &Step) -> Option<&str> {
    CHILD_PROPERTIES
        .iter()
        .filter_map(|p| step.property(p))
        .map(str::trim)
        .find(|s| !s.is_empty())
}

fn check(s: &Step) -> Vec<String> {
    if child_reference(s).is_none() {
        return vec![format!(
            "Run Task Sequence step {:?} needs the TsPackageID property (OSDSubTasksequencePackageID, \
             or SubTaskSequenceID in older files) naming the child sequence",
            s.name()
        )];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::model::Variable;

    /// Each way an export names the child: `TsPackageID` by its `property` attribute (the
    /// console's `OSDSubTasksequencePackageID`), by its name, and the older `SubTaskSequenceID`.
    /// <https://learn.microsoft.com/mem/configmgr/develop/reference/osd/sms_tasksequence_subtasksequence-server-wmi-class>
    #[test]
    fn every_exported_spelling_names_the_child() {
        let with = |vars: Vec<Variable>| Step {
            vars,
            ..Default::default()
        };
        let mut console = Variable::property("TsPackageID", " LAB00101 ");
        console.name = "OSDSubTasksequencePackageID".into();
        assert_eq!(child_reference(&with(vec![console])), Some("LAB00101"));
        let action_var = Variable::new("OSDSubTasksequencePackageID", "LAB00102");
        assert_eq!(child_reference(&with(vec![action_var])), Some("LAB00102"));
        let older = vec![
            Variable::property(
                "SubTaskSequenceGUID",
                "{5B1C6A8E-2F43-4C2B-9A43-0D6C1E7F2B10}",
            ),
            Variable::property("SubTaskSequenceID", "LAB00103"),
        ];
        assert_eq!(child_reference(&with(older)), Some("LAB00103"));
        let blank = vec![
            Variable::property("TsPackageID", "  "),
            Variable::property("SubTaskSequenceID", "LAB00104"),
        ];
        assert_eq!(child_reference(&with(blank)), Some("LAB00104"));
        let s = with(vec![Variable::property("SubTaskSequenceGUID", "{X}")]);
        assert_eq!(child_reference(&s), None);
        assert!(check(&s)[0].contains("needs the TsPackageID property"));
    }
}
