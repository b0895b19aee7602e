//! *Set Dynamic Variables* (`SMS_TaskSequence_SetDynamicVariablesAction`).
//!
//! Microsoft's page (task sequence steps, *Set Dynamic Variables*,
//! <https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetDynamicVariables>)
//! says the step does two things: it gathers facts about the computer into read-only variables
//! (`_SMSTSMake`, `_SMSTSModel`, `_SMSTSMacAddresses`, `_SMSTSIPAddresses`,
//! `_SMSTSSerialNumber`, `_SMSTSAssetTag`, `_SMSTSUUID`, and per the variables reference
//! `_SMSTSDefaultGateways`), then evaluates its rules in order and sets the variables of every
//! rule that evaluates to true.
//!
//! The console exports the rules in the step property `Rules` (action variable
//! `OSDSetDynamicVariablesRules`) as XML text:
//! ```xml
//! <Rules>
//!   <Rule>
//!     <condition>…the same condition tree steps carry…</condition>
//!     <Variables>
//!       <Variable Name="OSDComputerName" IsSecret="false">LAB-%_SMSTSSerialNumber%</Variable>
//!     </Variables>
//!   </Rule>
//!   <Rule><Variables><Variable Name="Always" IsSecret="false">no condition</Variable></Variables></Rule>
//! </Rules>
//! ```
//! A rule without `<condition>` always applies; later rules override earlier ones.
//! `IsSecret="true"` (the editor's *Do not display this value*) makes the variable secret:
//! masked in smsts.log, events and the dry run, and emptied in every state written to disk.
//!
//! Matching, as the page describes the editor's rule types: a *Computer* rule is true when any
//! of its values is (an `or`); *Make and Model* needs both (an `and`) and takes `*` and `?` as
//! wildcards; *Task Sequence Variable* rules are ordinary conditions. Where the page is silent
//! (`docs/engine.md`, *Set Dynamic Variables*): a comparison on a variable that holds a list
//! (`_SMSTSMacAddresses`, `_SMSTSIPAddresses`, `_SMSTSDefaultGateways`, comma-separated) holds
//! when it holds for one of the listed values (`notEquals`: for none), and MAC addresses compare
//! with `-` and `:` alike.

use super::{ActionResult, Ctx, Plan, StepType};
use crate::condition::{self, ConditionError};
use crate::log::Level;
use crate::sequence::model::{expr_type, step_type, Condition, OperatorKind, Step};
use crate::vars::Vars;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

pub const TYPE: StepType = StepType {
    names: &[step_type::SET_DYNAMIC_VARIABLES],
    check,
    plan,
    run: execute,
};

/// The step property holding the rules, as exported.
pub const RULES: &str = "Rules";

/// Variables holding lists (comma-separated) of the machine's addresses.
const LIST_VARIABLES: &[&str] = &[
    "_SMSTSMacAddresses",
    "_SMSTSIPAddresses",
    "_SMSTSDefaultGateways",
];

/// Variables whose rule values take `*` and `?` wildcards (the editor's *Make and Model*).
const WILDCARD_VARIABLES: &[&str] = &["_SMSTSMake", "_SMSTSModel"];

fn check(s: &Step) -> Vec<String> {
    let name = s.name();
    let mut out = Vec::new();
    match s.property(RULES).filter(|r| !r.trim().is_empty()) {
        None if s.property("DynamicRules").is_some() => out.push(format!(
            "Set Dynamic Variables step {name:?} has a DynamicRules property (an early tsforge \
             layout, no longer read); write the rules as the ConfigMgr console exports them: \
             property Rules (variable OSDSetDynamicVariablesRules) holding \
             <Rules><Rule><condition>…</condition><Variables><Variable Name=\"X\" \
             IsSecret=\"false\">value</Variable></Variables></Rule></Rules>"
        )),
        None => out.push(format!(
            "Set Dynamic Variables step {name:?} needs the Rules property \
             (OSDSetDynamicVariablesRules) with at least one <Rule>"
        )),
        Some(text) => match parse_rules(text) {
            Err(e) => out.push(format!("step {name:?}: {e}")),
            Ok(rules) => {
                for (i, r) in rules.iter().enumerate() {
                    for v in &r.variables {
                        if !v.name.contains('%') && crate::vars::is_read_only(&v.name) {
                            out.push(format!(
                                "step {name:?}: rule {} sets {}, which is read-only (names \
                                 starting with _SMSTS are set by the engine)",
                                i + 1,
                                v.name
                            ));
                        } else if !v.name.contains('%') && !crate::vars::valid_name(&v.name) {
                            out.push(format!(
                                "step {name:?}: rule {}: invalid variable name {:?}",
                                i + 1,
                                v.name
                            ));
                        }
                    }
                }
            }
        },
    }
    out
}

/// One variable a rule sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVariable {
    pub name: String,
    pub value: String,
    /// `IsSecret="true"`.
    pub secret: bool,
}

/// One rule: its condition (empty: always true) and the variables it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub condition: Vec<Condition>,
    pub variables: Vec<RuleVariable>,
}

/// 1-based line and column of byte `off` in `text`.
fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text[..off.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

fn local_name(e: &BytesStart) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

/// Parse the `Rules` text. Errors name the property and the line and column inside its text.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let at = |off: usize, msg: String| {
        let (l, c) = line_col(text, off);
        format!("the Rules property is not valid at line {l}, column {c} of its text: {msg}")
    };
    let mut reader = Reader::from_str(text);
    let mut rules: Vec<Rule> = Vec::new();
    // Where the reader is: the open elements, outermost first.
    let mut open: Vec<String> = Vec::new();
    let mut var: Option<RuleVariable> = None;
    let mut seen_root = false;
    loop {
        let before = reader.buffer_position() as usize;
        let ev = reader
            .read_event()
            .map_err(|e| at(before, format!("not well-formed XML: {e}")))?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let name = local_name(&e);
            let parent = open.last().map(String::as_str).unwrap_or("");
            let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
            if is(parent, "") && is(&name, "Rules") {
                if seen_root {
                    return Err(at(before, "a second <Rules> element".into()));
                }
                seen_root = true;
                no_attributes(&e).map_err(|m| at(before, m))?;
            } else if is(parent, "Rules") && is(&name, "Rule") {
                no_attributes(&e).map_err(|m| at(before, m))?;
                rules.push(Rule {
                    condition: Vec::new(),
                    variables: Vec::new(),
                });
            } else if is(parent, "Rule") && is(&name, "condition") {
                let rule = rules.last_mut().expect("inside a <Rule>");
                if !rule.condition.is_empty() {
                    return Err(at(before, "a second <condition> in one <Rule>".into()));
                }
                let end = if empty {
                    reader.buffer_position() as usize
                } else {
                    reader
                        .read_to_end(e.name())
                        .map_err(|err| at(before, format!("<condition> is not closed: {err}")))?;
                    reader.buffer_position() as usize
                };
                rule.condition = parse_condition(text, before, end).map_err(|m| at(before, m))?;
                continue;
            } else if is(parent, "Rule") && is(&name, "Variables") {
                no_attributes(&e).map_err(|m| at(before, m))?;
            } else if is(parent, "Variables") && is(&name, "Variable") {
                let v = variable_attrs(&e).map_err(|m| at(before, m))?;
                if empty {
                    rules.last_mut().expect("inside a <Rule>").variables.push(v);
                } else {
                    var = Some(v);
                }
            } else {
                let expected = match parent.to_ascii_lowercase().as_str() {
                    "" => "<Rules>",
                    "rules" => "<Rule>",
                    "rule" => "<condition> or <Variables>",
                    "variables" => "<Variable Name=\"…\" IsSecret=\"…\">",
                    _ => "text only",
                };
                let inside = if parent.is_empty() {
                    "as the root".to_string()
                } else {
                    format!("inside <{parent}>")
                };
                return Err(at(
                    before,
                    format!("unexpected <{name}> {inside} (expected {expected})"),
                ));
            }
            if !empty {
                open.push(name);
            }
            continue;
        }
        match ev {
            Event::Text(t) => {
                let s = t
                    .unescape()
                    .map_err(|e| at(before, format!("bad text: {e}")))?;
                match var.as_mut() {
                    Some(v) => v.value.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => {
                        let where_ = open.last().map(String::as_str).unwrap_or("the document");
                        return Err(at(
                            before,
                            format!("unexpected text {:?} in <{where_}>", s.trim()),
                        ));
                    }
                }
            }
            Event::CData(t) => match var.as_mut() {
                Some(v) => v.value.push_str(&String::from_utf8_lossy(&t)),
                None => return Err(at(before, "unexpected CDATA section".into())),
            },
            Event::End(_) => {
                if let Some(name) = open.pop() {
                    if name.eq_ignore_ascii_case("Variable") {
                        if let Some(v) = var.take() {
                            rules.last_mut().expect("inside a <Rule>").variables.push(v);
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(at(0, "no <Rules> element".into()));
    }
    if let Some(name) = open.last() {
        return Err(at(text.len(), format!("<{name}> is not closed")));
    }
    Ok(rules)
}

fn no_attributes(e: &BytesStart) -> Result<(), String> {
    if let Some(a) = e.attributes().flatten().next() {
        return Err(format!(
            "<{}> has an attribute {} this step does not know",
            local_name(e),
            String::from_utf8_lossy(a.key.as_ref())
        ));
    }
    Ok(())
}

fn variable_attrs(e: &BytesStart) -> Result<RuleVariable, String> {
    let mut name = None;
    let mut secret = false;
    for a in e.attributes() {
        let a = a.map_err(|err| format!("bad attribute in <Variable>: {err}"))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|err| format!("bad value of {key} in <Variable>: {err}"))?
            .into_owned();
        if key.eq_ignore_ascii_case("Name") {
            name = Some(value);
        } else if key.eq_ignore_ascii_case("IsSecret") {
            secret = match crate::sequence::model::parse_bool(&value) {
                Some(b) => b,
                None => {
                    return Err(format!(
                        "IsSecret={value:?} in <Variable> is not true or false"
                    ))
                }
            };
        } else {
            return Err(format!(
                "<Variable> has an attribute {key} this step does not know (it takes Name and IsSecret)"
            ));
        }
    }
    match name {
        Some(n) if !n.trim().is_empty() => Ok(RuleVariable {
            name: n,
            value: String::new(),
            secret,
        }),
        _ => Err("<Variable> without a Name".into()),
    }
}

/// The `<condition>` element at `text[start..end]`, read by the sequence crate's own condition
/// reader (the tree is the one steps carry).
fn parse_condition(text: &str, start: usize, end: usize) -> Result<Vec<Condition>, String> {
    let raw = text.get(start..end).unwrap_or("");
    let doc = format!("<sequence><step>{raw}</step></sequence>");
    let seq = crate::sequence::xml::parse(&doc, std::path::Path::new("Rules"))
        .map_err(|e| format!("in <condition>: {}", e.message))?;
    let cond = match seq.items.first() {
        Some(crate::sequence::model::Node::Step(s)) => s.condition.clone(),
        _ => Vec::new(),
    };
    crate::sequence::model::check_condition_depth(&cond)?;
    Ok(cond)
}

/// Whether a rule's condition holds (an empty condition always does).
pub fn holds(conditions: &[Condition], vars: &Vars) -> Result<bool, ConditionError> {
    for c in conditions {
        if !holds_one(c, vars)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn holds_one(c: &Condition, vars: &Vars) -> Result<bool, ConditionError> {
    match c {
        Condition::Operator { kind, children, .. } => match kind {
            OperatorKind::And => holds(children, vars),
            OperatorKind::Or => {
                for ch in children {
                    if holds_one(ch, vars)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            OperatorKind::Not => Ok(!holds(children, vars)?),
        },
        Condition::Expression(e) if e.kind.eq_ignore_ascii_case(expr_type::VARIABLE) => {
            let get = |k: &str| e.get(k).map(|v| vars.expand(v));
            let name = get("Variable").unwrap_or_default();
            let op = get("Operator").unwrap_or_else(|| "equals".into());
            let value = get("Value").unwrap_or_default();
            let is = |list: &[&str]| list.iter().any(|n| n.eq_ignore_ascii_case(&name));
            let mac = name.eq_ignore_ascii_case("_SMSTSMacAddresses");
            let wrap = |m: String| ConditionError {
                kind: condition::short_kind(&e.kind).to_string(),
                line: e.pos.line,
                column: e.pos.column,
                message: m,
            };
            if is(LIST_VARIABLES) && !op.to_ascii_lowercase().ends_with("exists") {
                let norm = |s: &str| {
                    if mac {
                        s.replace('-', ":")
                    } else {
                        s.to_string()
                    }
                };
                let items: Vec<String> = vars
                    .get(&name)
                    .unwrap_or("")
                    .split([',', ';'])
                    .map(|s| norm(s.trim()))
                    .filter(|s| !s.is_empty())
                    .collect();
                let value = norm(&value);
                if op.eq_ignore_ascii_case("notEquals") {
                    for i in &items {
                        if condition::compare_variable(Some(i), "equals", &value).map_err(wrap)? {
                            return Ok(false);
                        }
                    }
                    return Ok(true);
                }
                for i in &items {
                    if condition::compare_variable(Some(i), &op, &value).map_err(wrap)? {
                        return Ok(true);
                    }
                }
                // Unknown operators fail even when there is nothing to compare.
                condition::compare_variable(None, &op, &value).map_err(wrap)?;
                return Ok(false);
            }
            if is(WILDCARD_VARIABLES)
                && op.eq_ignore_ascii_case("equals")
                && value.contains(['*', '?'])
            {
                return Ok(condition::like(vars.get(&name).unwrap_or(""), &value));
            }
            condition::eval_expression(e, vars)
        }
        Condition::Expression(e) => condition::eval_expression(e, vars),
    }
}

/// Put the machine facts the step gathers into the variables: a fact already set in this run
/// (by the engine at start, or by the administrator with `--var`) is kept.
fn gather(vars: &mut Vars) -> Vec<String> {
    let mut set = Vec::new();
    for (k, v) in crate::machine::hardware_vars() {
        if vars.get(&k).is_none_or(str::is_empty) {
            vars.set(&k, v);
            set.push(k);
        }
    }
    set
}

/// What the dry run shows: each rule, whether it would apply, and what it would set (secret
/// values masked). The plan's variables get the values, so later conditions see them.
fn plan(step: &Step, p: &mut Plan) -> String {
    let rules = match step.property(RULES).map(parse_rules) {
        Some(Ok(r)) => r,
        Some(Err(e)) => return format!("cannot plan: {e}"),
        None => return "cannot plan: no Rules property".into(),
    };
    gather(p.vars);
    let mut lines = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let head = if rule.condition.is_empty() {
            format!("rule {} (no condition) applies", i + 1)
        } else {
            match holds(&rule.condition, p.vars) {
                Ok(true) => format!("rule {} applies", i + 1),
                Ok(false) => {
                    lines.push(format!("rule {} does not apply", i + 1));
                    continue;
                }
                Err(e) => {
                    lines.push(format!("rule {} cannot be evaluated here: {e}", i + 1));
                    continue;
                }
            }
        };
        let sets: Vec<String> = rule
            .variables
            .iter()
            .map(|v| {
                let name = p.vars.expand(&v.name);
                let value = p.vars.expand(&v.value);
                if v.secret {
                    p.vars.mark_secret(&name);
                }
                let _ = p.vars.set_from_step(&name, value.clone());
                let shown = if p.vars.is_secret(&name) {
                    crate::vars::MASK.to_string()
                } else {
                    value
                };
                format!("{name} = {shown}")
            })
            .collect();
        lines.push(if sets.is_empty() {
            format!("{head}: sets nothing")
        } else {
            format!("{head}: {}", sets.join(", "))
        });
    }
    if lines.is_empty() {
        lines.push("no rules".into());
    }
    lines
        .iter()
        .map(|l| format!("\n{}{l}", p.indent))
        .collect::<String>()
}

pub fn execute(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "SetDynamicVariables";
    let Some(text) = step.property(RULES).filter(|t| !t.trim().is_empty()) else {
        return ActionResult::failed(
            "Set Dynamic Variables step has no Rules property (OSDSetDynamicVariablesRules)",
        );
    };
    let rules = match parse_rules(text) {
        Ok(r) => r,
        Err(e) => return ActionResult::failed(e),
    };
    for k in gather(ctx.vars) {
        let v = ctx.vars.get(&k).unwrap_or("").to_string();
        ctx.log.log(Level::Info, C, &format!("Gathered {k} = {v}"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let applies = match holds(&rule.condition, ctx.vars) {
            Ok(b) => b,
            Err(e) => return ActionResult::failed(format!("rule {}: {e}", i + 1)),
        };
        ctx.log.log(
            Level::Info,
            C,
            &format!(
                "Rule {} {}",
                i + 1,
                match (applies, rule.condition.is_empty()) {
                    (true, true) => "has no condition: applies",
                    (true, false) => "applies",
                    _ => "does not apply",
                }
            ),
        );
        if !applies {
            continue;
        }
        for v in &rule.variables {
            let name = ctx.vars.expand(&v.name);
            let value = ctx.vars.expand(&v.value);
            if v.secret {
                ctx.vars.mark_secret(&name);
            }
            if let Err(e) = super::set_variable(ctx, C, &name, value) {
                return ActionResult::failed(format!("rule {}: {e}", i + 1));
            }
        }
    }
    ActionResult::ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The exported shape of the rules: property `Rules`, <Rules><Rule>[<condition>]<Variables>
    // <Variable Name IsSecret>; rule types and their matching from
    // https://learn.microsoft.com/en-us/mem/configmgr/osd/understand/task-sequence-steps#BKMK_SetDynamicVariables
    const RULES_TEXT: &str = "<Rules>\
        <Rule><condition><operator type=\"or\">\
          <expression type=\"SMS_TaskSequence_VariableConditionExpression\"><variable name=\"Operator\">equals</variable><variable name=\"Value\">5892087</variable><variable name=\"Variable\">_SMSTSSerialNumber</variable></expression>\
          <expression type=\"SMS_TaskSequence_VariableConditionExpression\"><variable name=\"Operator\">equals</variable><variable name=\"Value\">26-78-13-5A-A4-22</variable><variable name=\"Variable\">_SMSTSMacAddresses</variable></expression>\
        </operator></condition>\
        <Variables><Variable Name=\"OSDComputerName\" IsSecret=\"false\">LAB-01</Variable>\
        <Variable Name=\"Pw\" IsSecret=\"true\">s3cret</Variable></Variables></Rule>\
        <Rule><Variables><Variable Name=\"Always\" IsSecret=\"false\">a &amp; b</Variable></Variables></Rule>\
        </Rules>";

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let mut v = Vars::new();
        for (k, val) in pairs {
            v.set(k, *val);
        }
        v
    }

    #[test]
    fn exported_rules_parse() {
        let rules = parse_rules(RULES_TEXT).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].condition.len(), 1);
        assert_eq!(
            rules[0].variables,
            vec![
                RuleVariable {
                    name: "OSDComputerName".into(),
                    value: "LAB-01".into(),
                    secret: false
                },
                RuleVariable {
                    name: "Pw".into(),
                    value: "s3cret".into(),
                    secret: true
                }
            ]
        );
        assert!(rules[1].condition.is_empty());
        assert_eq!(rules[1].variables[0].value, "a & b");
    }

    #[test]
    fn computer_rule_matches_any_listed_mac_or_the_serial() {
        let rules = parse_rules(RULES_TEXT).unwrap();
        let c = &rules[0].condition;
        // The page's example writes the MAC with dashes; the variable lists colons.
        let v = vars(&[("_SMSTSMacAddresses", "00:11:22:33:44:55,26:78:13:5A:A4:22")]);
        assert!(holds(c, &v).unwrap());
        let v = vars(&[("_SMSTSSerialNumber", "5892087")]);
        assert!(holds(c, &v).unwrap());
        let v = vars(&[
            ("_SMSTSSerialNumber", "1"),
            ("_SMSTSMacAddresses", "00:11:22:33:44:55"),
        ]);
        assert!(!holds(c, &v).unwrap());
    }

    #[test]
    fn make_and_model_take_wildcards() {
        let text = "<Rules><Rule><condition><operator type=\"and\">\
            <expression type=\"SMS_TaskSequence_VariableConditionExpression\"><variable name=\"Operator\">equals</variable><variable name=\"Value\">Dell Inc.</variable><variable name=\"Variable\">_SMSTSMake</variable></expression>\
            <expression type=\"SMS_TaskSequence_VariableConditionExpression\"><variable name=\"Operator\">equals</variable><variable name=\"Value\">DELL*900?</variable><variable name=\"Variable\">_SMSTSModel</variable></expression>\
            </operator></condition><Variables/></Rule></Rules>";
        let c = parse_rules(text).unwrap().remove(0).condition;
        for (model, want) in [
            ("DELL-ABC-9001", true),
            ("DELL9009", true),
            ("DELL900", false),
        ] {
            let v = vars(&[("_SMSTSMake", "Dell Inc."), ("_SMSTSModel", model)]);
            assert_eq!(holds(&c, &v).unwrap(), want, "{model}");
        }
        let v = vars(&[("_SMSTSMake", "HP"), ("_SMSTSModel", "DELL9009")]);
        assert!(!holds(&c, &v).unwrap());
    }

    #[test]
    fn malformed_rules_are_errors_with_a_position() {
        for (text, want) in [
            ("", "no <Rules> element"),
            ("<rules/>x", "unexpected text"),
            ("<Rules><Rule><Variable Name=\"A\"/></Rule></Rules>", "line 1, column 14"),
            ("<Rules><Rule><Variables><Variable IsSecret=\"false\">v</Variable></Variables></Rule></Rules>", "without a Name"),
            ("<Rules><Rule><Variables><Variable Name=\"A\" IsSecret=\"maybe\"/></Variables></Rule></Rules>", "is not true or false"),
            ("<Rules><Rule><Variables><Variable Name=\"A\" Color=\"red\"/></Variables></Rule></Rules>", "attribute Color"),
            ("<Rules>\n<Rule><condition><operator type=\"xor\"/></condition></Rule></Rules>", "line 2, column 7"),
            ("<Rules><Rule>", "is not closed"),
        ] {
            let e = parse_rules(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with("the Rules property is not valid"), "{e}");
        }
    }
}
