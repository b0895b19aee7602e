//! *Set Dynamic Variables* (`SMS_TaskSequence_SetDynamicVariablesAction`).
//!
//! The rules are the step's `DynamicRules` property: XML text of the form
//! ```xml
//! <rules>
//!   <rule>
//!     <condition>…a ConfigMgr condition tree, as on steps…</condition>
//!     <variable name="OSDComputerName">LAB-%_SMSTSSerialNumber%</variable>
//!   </rule>
//!   <rule><variable name="Fallback">set when no condition</variable></rule>
//! </rules>
//! ```
//! Rules are evaluated in order; every rule whose condition holds (a rule without condition
//! always holds) sets its variables, so a later rule overrides an earlier one, as in the
//! ConfigMgr editor. The editor's *Computer*, *Location* and *Make and Model* rules are
//! variable conditions on the hardware variables the runner sets at start
//! (`_SMSTSSerialNumber`, `_SMSTSUUID`, `_SMSTSMacAddresses`, `_SMSTSMake`, `_SMSTSModel`, …).
//! ConfigMgr's own serialization of these rules could not be checked against an export here;
//! this layout is tsforge's and is documented in `docs/sequence-format.md`.

use super::{ActionResult, Ctx, StepType};
use crate::condition;
use crate::log::Level;
use crate::sequence::model::{step_type, Condition, Step};
use quick_xml::events::Event;
use quick_xml::Reader;

pub const TYPE: StepType = StepType {
    names: &[step_type::SET_DYNAMIC_VARIABLES],
    check,
    plan: super::plan_action_text,
    run: execute,
};

fn check(s: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if super::blank(s, "DynamicRules") {
        out.push(format!(
            "Set Dynamic Variables step {:?} needs the DynamicRules property",
            s.name()
        ));
    }
    if let Some(rules) = s.property("DynamicRules") {
        if let Err(e) = parse_rules(rules) {
            out.push(format!("step {:?}: {e}", s.name()));
        }
    }
    out
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub condition: Vec<Condition>,
    pub variables: Vec<(String, String)>,
}

/// Parse `DynamicRules` text. Errors say where in the property text the problem is.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let mut reader = Reader::from_str(text);
    let mut rules = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<Rule> = None;
    let mut var: Option<(String, String)> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let ev = reader
            .read_event()
            .map_err(|e| format!("DynamicRules is not well-formed XML at byte {before}: {e}"))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                let name = String::from_utf8_lossy(e.name().as_ref()).to_string();
                match (depth, name.as_str()) {
                    (1, "rules") => {}
                    (2, "rule") => {
                        current = Some(Rule {
                            condition: Vec::new(),
                            variables: Vec::new(),
                        })
                    }
                    (3, "condition") => {
                        // Find the raw condition text and let the sequence reader parse it.
                        let start = before;
                        reader
                            .read_to_end(e.name())
                            .map_err(|e| format!("DynamicRules: unclosed <condition>: {e}"))?;
                        depth -= 1;
                        let end = reader.buffer_position() as usize;
                        let raw = text.get(start..end).unwrap_or("");
                        let doc = format!("<sequence><step name=\"rule\">{raw}</step></sequence>");
                        let seq = crate::sequence::xml::parse(&doc, std::path::Path::new("DynamicRules"))
                            .map_err(|e| format!("DynamicRules condition: {}", e.message))?;
                        let cond = match seq.items.first() {
                            Some(crate::sequence::model::Node::Step(s)) => s.condition.clone(),
                            _ => Vec::new(),
                        };
                        if let Some(r) = current.as_mut() {
                            r.condition = cond;
                        }
                    }
                    (3, "variable") => {
                        let name = attr_name(&e)?;
                        var = Some((name, String::new()));
                    }
                    _ => {
                        return Err(format!(
                            "DynamicRules: unexpected <{name}> (expected <rules><rule><condition>/<variable>)"
                        ))
                    }
                }
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).to_string();
                match (depth + 1, name.as_str()) {
                    (3, "variable") => {
                        let n = attr_name(&e)?;
                        if let Some(r) = current.as_mut() {
                            r.variables.push((n, String::new()));
                        }
                    }
                    (2, "rule") => rules.push(Rule {
                        condition: Vec::new(),
                        variables: Vec::new(),
                    }),
                    (1, "rules") | (3, "condition") => {}
                    _ => return Err(format!("DynamicRules: unexpected <{name}/>")),
                }
            }
            Event::Text(t) => {
                if let Some(v) = var.as_mut() {
                    let s = t
                        .unescape()
                        .map_err(|e| format!("DynamicRules: bad text in <variable>: {e}"))?;
                    v.1.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(v) = var.as_mut() {
                    v.1.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(_) => {
                match depth {
                    3 => {
                        if let (Some(v), Some(r)) = (var.take(), current.as_mut()) {
                            r.variables.push(v);
                        }
                    }
                    2 => {
                        if let Some(r) = current.take() {
                            rules.push(r);
                        }
                    }
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(rules)
}

fn attr_name(e: &quick_xml::events::BytesStart) -> Result<String, String> {
    for a in e.attributes().flatten() {
        if a.key.as_ref() == b"name" {
            return a
                .unescape_value()
                .map(|v| v.into_owned())
                .map_err(|e| format!("DynamicRules: bad variable name: {e}"));
        }
    }
    Err("DynamicRules: <variable> without a name attribute".into())
}

pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    let Some(text) = step.property("DynamicRules") else {
        return ActionResult::failed("Set Dynamic Variables step has no DynamicRules property");
    };
    let rules = match parse_rules(text) {
        Ok(r) => r,
        Err(e) => return ActionResult::failed(e),
    };
    for (i, rule) in rules.iter().enumerate() {
        let holds = match condition::evaluate(&rule.condition, ctx.vars) {
            Ok(b) => b,
            Err(e) => return ActionResult::failed(format!("rule {}: {e}", i + 1)),
        };
        ctx.log.log(
            Level::Info,
            "SetDynamicVariables",
            &format!(
                "Rule {} {}",
                i + 1,
                if holds { "applies" } else { "does not apply" }
            ),
        );
        if !holds {
            continue;
        }
        for (name, value) in &rule.variables {
            let value = ctx.vars.expand(value);
            if let Err(e) = super::set_variable(ctx, "SetDynamicVariables", name, value) {
                return ActionResult::failed(e.to_string());
            }
        }
    }
    ActionResult::ok()
}
