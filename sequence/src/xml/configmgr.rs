//! The ConfigMgr/MDT mapping: the reader's element tree → the model.
//!
//! Everything that knows ConfigMgr's vocabulary on the way in lives here: the three file shapes
//! chosen from the root element (`<sequence>`, `<SmsTaskSequencePackage>` with its
//! `<SequenceData>`, an object.xml `<INSTANCE>` with its `<PROPERTY NAME="Sequence">`), the
//! elements of a sequence (`<globalVarList>`, `<group>`, `<step>` and the console's
//! `<subtasksequence>` form of *Run Task Sequence*, `<condition>`, `<operator>`,
//! `<expression>`, `<action>`, `<defaultVarList>`, `<variable>`) and which of their attributes
//! are structural (`name`, `type`, `NAME`, `CLASSNAME`). Children it does not know are kept as
//! raw XML; attributes, known or not, are kept in order.
//!
//! It uses the reader (`super::reader`: element tree, positions, decoding of XML held as text),
//! the model and [`ParseError`]; it does not write XML.

use super::reader::{
    self, all_ws, is_ws, is_ws_char, normalize_newlines, sl, El, Expected, Kid, Loc, Parser, Text,
};
use crate::error::ParseError;
use crate::model::{
    normalize_order, Condition, Expression, Extra, Group, Node, OperatorKind, Part, Pos, Sequence,
    Shape, Step, StepElement, Variable, WmiProperty,
};

/// What a sequence file must hold: `<sequence>` or one of the wrappers around it.
pub(super) const FILE: Expected = Expected {
    root: "<sequence>",
    empty: "empty file: expected an XML root element such as <sequence>",
};

/// What the sequence XML held as text (an object.xml `Sequence` value, a `<SequenceData>`) must
/// hold.
const EMBEDDED: Expected = Expected {
    root: "<sequence>",
    empty: "the Sequence property is empty: expected a <sequence> element",
};

/// The model of a document whose root element is `root` (any of the three shapes). `loc` and
/// `src` are those the element tree was read with.
pub(super) fn to_model(root: &El<'_>, loc: Loc<'_>, src: &str) -> Result<Sequence, ParseError> {
    let b = Builder { loc, src };
    match root.name {
        "sequence" => b.sequence(root, Shape::Sequence),
        "SmsTaskSequencePackage" => b.package(root),
        _ => match find_instance(root) {
            Some(inst) => b.wmi_instance(inst),
            None => Err(loc.err(
                root.start,
                format!(
                    "unknown root element <{}>: expected <sequence>, <SmsTaskSequencePackage> \
                     or an object.xml <INSTANCE CLASSNAME=\"SMS_TaskSequencePackage\">",
                    root.name
                ),
            )),
        },
    }
}

#[derive(Clone, Copy)]
struct Builder<'a> {
    loc: Loc<'a>,
    /// The text the element tree's offsets refer to.
    src: &'a str,
}

impl<'a> Builder<'a> {
    fn pos(&self, off: usize) -> Pos {
        self.loc.pos(off)
    }

    fn raw(&self, el: &El<'_>) -> String {
        normalize_newlines(sl(self.src, el.start, el.end))
    }

    /// An element kept as raw XML, with its position.
    fn extra(&self, el: &El<'_>) -> Extra {
        Extra::new(self.raw(el), self.pos(el.start))
    }

    fn raw_inner(&self, el: &El<'_>) -> String {
        normalize_newlines(sl(self.src, el.inner.0, el.inner.1).trim_matches(is_ws_char))
    }

    /// Non-whitespace text directly inside a container is an error.
    fn stray_text(&self, t: &Text, parent: &El<'_>) -> Result<(), ParseError> {
        if all_ws(&t.value) {
            return Ok(());
        }
        let lead = sl(self.src, t.start, t.end)
            .bytes()
            .take_while(|&b| is_ws(b))
            .count();
        let mut snippet: String = t.value.trim().chars().take(40).collect();
        if t.value.trim().chars().count() > 40 {
            snippet.push('…');
        }
        Err(self.loc.err(
            t.start + lead,
            format!(
                "unexpected text {snippet:?} inside {}: only elements belong here",
                parent.describe()
            ),
        ))
    }

    /// The text content of an element that may hold only text (comments are skipped).
    fn leaf_text(&self, el: &El<'_>) -> Result<String, ParseError> {
        let mut out = String::new();
        for k in &el.kids {
            match k {
                Kid::Text(t) => out.push_str(&t.value),
                Kid::Misc => {}
                Kid::El(e) => {
                    return Err(self.loc.err(
                        e.start,
                        format!(
                            "{} may contain only text, found <{}>",
                            el.describe(),
                            e.name
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn sequence(&self, el: &El<'_>, shape: Shape) -> Result<Sequence, ParseError> {
        let mut seq = Sequence {
            attrs: el.attrs_except(""),
            shape,
            pos: self.pos(el.start),
            ..Sequence::default()
        };
        for k in &el.kids {
            match k {
                Kid::Text(t) => self.stray_text(t, el)?,
                Kid::Misc => {}
                Kid::El(e) => match e.name {
                    "globalVarList" => {
                        seq.global_vars.extend(self.var_list(e)?);
                        note(
                            &mut seq.order,
                            Part::GlobalVars,
                            !seq.global_vars.is_empty(),
                        );
                    }
                    "group" | "step" | "subtasksequence" => {
                        seq.items.push(self.node(e)?);
                        seq.order.push(Part::Node);
                    }
                    _ => {
                        seq.extra_xml.push(self.extra(e));
                        seq.order.push(Part::Extra);
                    }
                },
            }
        }
        seq.order = normalize_order(std::mem::take(&mut seq.order), &seq.parts());
        Ok(seq)
    }

    fn var_list(&self, el: &El<'_>) -> Result<Vec<Variable>, ParseError> {
        let mut vars = Vec::new();
        for k in &el.kids {
            match k {
                Kid::Text(t) => self.stray_text(t, el)?,
                Kid::Misc => {}
                Kid::El(e) if e.name == "variable" => vars.push(self.variable(e)?),
                Kid::El(e) => {
                    return Err(self.loc.err(
                        e.start,
                        format!(
                            "<{}> is not allowed inside <{}>: expected <variable name=\"…\">",
                            e.name, el.name
                        ),
                    ))
                }
            }
        }
        Ok(vars)
    }

    fn variable(&self, el: &El<'_>) -> Result<Variable, ParseError> {
        let Some(name) = el.attr("name") else {
            return Err(self.loc.err(
                el.start,
                "<variable> has no name attribute (expected <variable name=\"…\">)",
            ));
        };
        Ok(Variable {
            name: name.to_string(),
            attrs: el.attrs_except("name"),
            value: self.leaf_text(el)?,
            pos: self.pos(el.start),
        })
    }

    fn node(&self, el: &El<'_>) -> Result<Node, ParseError> {
        if el.name == "group" {
            self.group(el).map(Node::Group)
        } else {
            self.step(el).map(Node::Step)
        }
    }

    fn group(&self, el: &El<'_>) -> Result<Group, ParseError> {
        let mut g = Group {
            attrs: el.attrs_except(""),
            pos: self.pos(el.start),
            ..Group::default()
        };
        for k in &el.kids {
            match k {
                Kid::Text(t) => self.stray_text(t, el)?,
                Kid::Misc => {}
                Kid::El(e) => match e.name {
                    "condition" => {
                        g.condition.extend(self.condition_list(e)?);
                        note(&mut g.order, Part::Condition, !g.condition.is_empty());
                    }
                    "group" | "step" | "subtasksequence" => {
                        g.children.push(self.node(e)?);
                        g.order.push(Part::Node);
                    }
                    _ => {
                        g.extra_xml.push(self.extra(e));
                        g.order.push(Part::Extra);
                    }
                },
            }
        }
        g.order = normalize_order(std::mem::take(&mut g.order), &g.parts());
        Ok(g)
    }

    fn step(&self, el: &El<'_>) -> Result<Step, ParseError> {
        let mut s = Step {
            element: StepElement::from_xml(el.name).unwrap_or_default(),
            attrs: el.attrs_except(""),
            pos: self.pos(el.start),
            ..Step::default()
        };
        for k in &el.kids {
            match k {
                Kid::Text(t) => self.stray_text(t, el)?,
                Kid::Misc => {}
                Kid::El(e) => match e.name {
                    "condition" => {
                        s.condition.extend(self.condition_list(e)?);
                        note(&mut s.order, Part::Condition, !s.condition.is_empty());
                    }
                    "action" => {
                        if s.action.is_some() {
                            return Err(self.loc.err(
                                e.start,
                                format!("second <action> in {}: a step has one", el.describe()),
                            ));
                        }
                        s.action = Some(self.leaf_text(e)?);
                        s.order.push(Part::Action);
                    }
                    "defaultVarList" => {
                        s.vars.extend(self.var_list(e)?);
                        note(&mut s.order, Part::Vars, !s.vars.is_empty());
                    }
                    "step" | "group" | "subtasksequence" => {
                        return Err(self.loc.err(
                            e.start,
                            format!(
                                "<{}> is not allowed inside {}: steps do not nest \
                                 (put them in a <group>)",
                                e.name,
                                el.describe()
                            ),
                        ))
                    }
                    _ => {
                        s.extra_xml.push(self.extra(e));
                        s.order.push(Part::Extra);
                    }
                },
            }
        }
        s.order = normalize_order(std::mem::take(&mut s.order), &s.parts());
        Ok(s)
    }

    fn condition_list(&self, el: &El<'_>) -> Result<Vec<Condition>, ParseError> {
        let mut out = Vec::new();
        for k in &el.kids {
            match k {
                Kid::Text(t) => self.stray_text(t, el)?,
                Kid::Misc => {}
                Kid::El(e) => out.push(self.condition(e, el)?),
            }
        }
        Ok(out)
    }

    fn condition(&self, el: &El<'_>, parent: &El<'_>) -> Result<Condition, ParseError> {
        match el.name {
            "operator" => {
                let Some(t) = el.attr("type") else {
                    return Err(self.loc.err(
                        el.start,
                        "<operator> has no type attribute (expected type=\"and\", \"or\" or \"not\")",
                    ));
                };
                let Some(kind) = OperatorKind::from_xml(t) else {
                    return Err(self.loc.err(
                        el.start,
                        format!("unknown operator type {t:?}: expected \"and\", \"or\" or \"not\""),
                    ));
                };
                Ok(Condition::Operator {
                    kind,
                    attrs: el.attrs_except("type"),
                    children: self.condition_list(el)?,
                    pos: self.pos(el.start),
                })
            }
            "expression" => {
                let Some(t) = el.attr("type") else {
                    return Err(self.loc.err(
                        el.start,
                        "<expression> has no type attribute \
                         (expected e.g. type=\"SMS_TaskSequence_VariableConditionExpression\")",
                    ));
                };
                Ok(Condition::Expression(Expression {
                    kind: t.to_string(),
                    attrs: el.attrs_except("type"),
                    vars: self.var_list(el)?,
                    pos: self.pos(el.start),
                }))
            }
            other => Err(self.loc.err(
                el.start,
                format!(
                    "<{other}> is not allowed inside <{}>: expected <operator> or <expression>",
                    parent.name
                ),
            )),
        }
    }

    /// A wrapper property's value: its text, or its markup verbatim when it has any.
    fn property_text(&self, el: &El<'_>) -> String {
        if el.kids.iter().any(|k| !matches!(k, Kid::Text(_))) {
            self.raw_inner(el)
        } else {
            el.kids
                .iter()
                .filter_map(|k| match k {
                    Kid::Text(t) => Some(t.value.as_str()),
                    _ => None,
                })
                .collect()
        }
    }

    fn package(&self, root: &El<'_>) -> Result<Sequence, ParseError> {
        let mut properties: Vec<(String, String)> = root
            .attrs
            .iter()
            .map(|a| (format!("@{}", a.name), a.value.clone()))
            .collect();
        let mut seq = None;
        for e in root.elements() {
            if e.name != "SequenceData" {
                properties.push((e.name.to_string(), self.property_text(e)));
                continue;
            }
            if seq.is_some() {
                return Err(self.loc.err(
                    e.start,
                    "second <SequenceData> in <SmsTaskSequencePackage>: a package holds one sequence",
                ));
            }
            seq = Some(self.sequence_holder(e)?);
        }
        let Some(mut seq) = seq else {
            return Err(self.loc.err(
                root.start,
                "<SmsTaskSequencePackage> has no <SequenceData> element holding the <sequence>",
            ));
        };
        seq.shape = Shape::PackageWrapper { properties };
        Ok(seq)
    }

    /// `<SequenceData>`: a `<sequence>` element, or the sequence XML as (escaped) text.
    fn sequence_holder(&self, holder: &El<'_>) -> Result<Sequence, ParseError> {
        let mut found = None;
        for k in &holder.kids {
            match k {
                Kid::El(e) if e.name == "sequence" && found.is_none() => found = Some(e),
                Kid::El(e) => {
                    return Err(self.loc.err(
                        e.start,
                        format!(
                            "<{}> is not allowed inside <{}>: expected one <sequence>",
                            e.name, holder.name
                        ),
                    ))
                }
                _ => {}
            }
        }
        match found {
            Some(s) => {
                for k in &holder.kids {
                    if let Kid::Text(t) = k {
                        self.stray_text(t, holder)?;
                    }
                }
                self.sequence(s, Shape::Sequence)
            }
            None => self.embedded_sequence(holder),
        }
    }

    /// Parse the sequence XML held as text by `holder` (a `<VALUE>` or `<SequenceData>`).
    fn embedded_sequence(&self, holder: &El<'_>) -> Result<Sequence, ParseError> {
        let texts: Vec<&Text> = holder
            .kids
            .iter()
            .filter_map(|k| match k {
                Kid::Text(t) => Some(t),
                _ => None,
            })
            .collect();
        // One CDATA section: its content is a slice of our text, parse it in place.
        if let ([t], None) = (texts.as_slice(), self.loc.map) {
            if let Some((cs, ce)) = t.sole_cdata {
                let mut p = Parser::new(self.src, cs, ce, self.loc);
                let root = p.document(EMBEDDED)?;
                return self.embedded_root(&root, *self);
            }
        }
        // Otherwise decode the text again, recording where each piece came from.
        let (inner, map) = reader::decode_content(self.src, holder.inner, self.loc, || {
            format!(
                "{} must hold the sequence XML as text (CDATA or escaped), found markup",
                holder.describe()
            )
        })?;
        let ctx = self.loc.ctx;
        let loc = Loc {
            ctx,
            map: Some(&map),
        };
        let mut p = Parser::new(&inner, 0, inner.len(), loc);
        let root = p.document(EMBEDDED)?;
        self.embedded_root(&root, Builder { loc, src: &inner })
    }

    fn embedded_root(&self, root: &El<'_>, b: Builder<'_>) -> Result<Sequence, ParseError> {
        if root.name != "sequence" {
            return Err(b.loc.err(
                root.start,
                format!(
                    "the embedded sequence XML must have <sequence> as its root, found <{}>",
                    root.name
                ),
            ));
        }
        b.sequence(root, Shape::Sequence)
    }

    fn wmi_instance(&self, inst: &El<'_>) -> Result<Sequence, ParseError> {
        let class_name = inst.attr("CLASSNAME").unwrap_or("").to_string();
        let mut properties: Vec<WmiProperty> = inst
            .attrs
            .iter()
            .filter(|a| a.name != "CLASSNAME")
            .map(|a| WmiProperty {
                name: format!("@{}", a.name),
                attrs: Vec::new(),
                value: Some(a.value.clone()),
                raw: None,
            })
            .collect();
        let is_prop = |e: &El<'_>, exact: bool| {
            e.name == "PROPERTY"
                && e.attr("NAME").is_some_and(|n| {
                    if exact {
                        n == "Sequence"
                    } else {
                        n.eq_ignore_ascii_case("Sequence")
                    }
                })
        };
        let seq_el = inst
            .elements()
            .find(|e| is_prop(e, true))
            .or_else(|| inst.elements().find(|e| is_prop(e, false)));
        let Some(seq_el) = seq_el else {
            return Err(self.loc.err(
                inst.start,
                format!(
                    "<INSTANCE CLASSNAME=\"{class_name}\"> has no <PROPERTY NAME=\"Sequence\"> \
                     holding the task sequence"
                ),
            ));
        };
        for e in inst.elements() {
            if std::ptr::eq(e, seq_el) {
                continue;
            }
            if e.name == "PROPERTY" {
                let Some(name) = e.attr("NAME").filter(|n| !n.is_empty()) else {
                    return Err(self.loc.err(e.start, "<PROPERTY> has no NAME attribute"));
                };
                let els: Vec<&El<'_>> = e.elements().collect();
                let plain_text = e.kids.iter().all(|k| match k {
                    Kid::Text(t) => all_ws(&t.value),
                    Kid::El(_) => true,
                    Kid::Misc => false,
                });
                let (value, raw) = match els.as_slice() {
                    [] if plain_text => (None, None),
                    [v] if plain_text
                        && v.name == "VALUE"
                        && v.attrs.is_empty()
                        && v.kids.iter().all(|k| matches!(k, Kid::Text(_))) =>
                    {
                        (Some(self.leaf_text(v)?), None)
                    }
                    _ => {
                        let raw = self.raw_inner(e);
                        if raw.starts_with("<PROPERTY") {
                            return Err(self.loc.err(
                                e.start,
                                format!("<PROPERTY NAME=\"{name}\"> cannot contain a property"),
                            ));
                        }
                        (None, Some(raw))
                    }
                };
                properties.push(WmiProperty {
                    name: name.to_string(),
                    attrs: e.attrs_except("NAME"),
                    value,
                    raw,
                });
            } else if e.name.starts_with("PROPERTY.") {
                properties.push(WmiProperty {
                    name: e.attr("NAME").unwrap_or("").to_string(),
                    attrs: e.attrs_except("NAME"),
                    value: None,
                    raw: Some(self.raw(e)),
                });
            } else {
                properties.push(WmiProperty {
                    name: String::new(),
                    attrs: Vec::new(),
                    value: None,
                    raw: Some(self.raw(e)),
                });
            }
        }
        let Some(value) = seq_el.elements().find(|v| v.name == "VALUE") else {
            return Err(self.loc.err(
                seq_el.start,
                "the Sequence property has no <VALUE> holding the task sequence XML",
            ));
        };
        let mut seq = self.embedded_sequence(value)?;
        seq.shape = Shape::WmiInstance {
            class_name,
            properties,
        };
        Ok(seq)
    }
}

/// Record where a list (`<condition>`, `<globalVarList>`, `<defaultVarList>`) sits: where it
/// first holds something (several of one list are merged into one, written where the first
/// non-empty one was; an empty one is not written back).
fn note(order: &mut Vec<Part>, part: Part, filled: bool) {
    if filled && !order.contains(&part) {
        order.push(part);
    }
}

/// The first `<INSTANCE>` element, depth first.
fn find_instance<'e, 'a>(el: &'e El<'a>) -> Option<&'e El<'a>> {
    if el.name == "INSTANCE" {
        return Some(el);
    }
    el.elements().find_map(find_instance)
}
