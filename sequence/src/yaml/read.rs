//! Reading, stage 2: the positioned tree of `tree` → the model.
//!
//! The tree is interpreted key by key, so every group, step, variable and condition gets its
//! `Pos` and every semantic error (unknown key, with a suggestion for a likely typo; wrong kind
//! of value; attribute given twice; …) points at the key or value at fault. Scalars resolve as
//! `docs/sequence-format.md` says (null, `true`/`false` spellings).
//!
//! It uses the tree of `tree`, the model and [`ParseError`]; it does not write YAML.

use super::tree::{YKind, YNode};
use super::{FILE_OPTS, FOLDER_OPTS};
use crate::error::ParseError;
use crate::model::{
    check_order, expr_type, normalize_order, step_type, Attrs, Condition, Expression, Extra, Group,
    Node, OperatorKind, Part, Parts, Pos, Sequence, Shape, Step, StepElement, Variable,
    WmiProperty, GROUP_ATTRS, STEP_ATTRS,
};
use std::path::Path;

const NULLS: &[&str] = &["", "~", "null", "Null", "NULL"];
const TRUES: &[&str] = &["true", "True", "TRUE"];
const FALSES: &[&str] = &["false", "False", "FALSE"];

fn is_null(n: &YNode) -> bool {
    matches!(&n.kind, YKind::Scalar { text, plain: true } if NULLS.contains(&text.as_str()))
}

fn describe(n: &YNode) -> &'static str {
    match &n.kind {
        YKind::Scalar { .. } if is_null(n) => "nothing (null)",
        YKind::Scalar { .. } => "a string",
        YKind::Seq(_) => "a list",
        YKind::Map(_) => "a mapping",
    }
}

/// One mapping entry: the key as written, where the key is, and the value node.
struct Entry<'n> {
    key: String,
    kpos: Pos,
    val: &'n YNode,
}

/// Edit distance between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key nearest to `key`, if it is near enough to be a likely typo.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let nk = norm(key);
    known
        .iter()
        .map(|k| (distance(&nk, &norm(k)), *k))
        .filter(|(d, _)| *d <= 2.max(nk.chars().count() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

const TOP_KEYS: &[&str] = &[
    "name",
    "attributes",
    "source",
    "variables",
    "steps",
    "xml_extra",
    "xml_order",
];
const STEP_EXTRA_KEYS: &[&str] = &[
    "element",
    "attributes",
    "action",
    "run",
    "properties",
    "condition",
    "xml_extra",
    "xml_order",
];
const GROUP_EXTRA_KEYS: &[&str] = &[
    "group",
    "attributes",
    "condition",
    "xml_extra",
    "xml_order",
    "steps",
];
const VAR_KEYS: &[&str] = &["value", "property", "hidden", "attributes"];
const COND_FORMS: &[&str] = &[
    "variable",
    "file",
    "folder",
    "wmi",
    "expression",
    "and",
    "or",
    "not",
];
const COND_KEYS: &[&str] = &[
    "variable",
    "file",
    "folder",
    "wmi",
    "expression",
    "and",
    "or",
    "not",
    "operator",
    "value",
    "version",
    "version_operator",
    "date_time",
    "date_time_operator",
    "namespace",
    "properties",
    "attributes",
];
const SOURCE_KEYS: &[&str] = &["shape", "class", "properties"];
const WMI_PROP_KEYS: &[&str] = &["name", "attributes", "value", "raw"];

struct Reader<'a> {
    file: &'a Path,
}

type R<T> = Result<T, ParseError>;

impl Reader<'_> {
    fn err(&self, pos: Pos, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.file, pos.line, pos.column, msg)
    }

    fn unknown(&self, e: &Entry, known: &[&str], what: &str) -> ParseError {
        let hint = match suggest(&e.key, known) {
            Some(k) => format!(" (did you mean `{k}`?)"),
            None => format!(
                " (expected one of: {})",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.err(e.kpos, format!("unknown key `{}` in {what}{hint}", e.key))
    }

    /// A scalar as a string: plain nulls read as "", plain booleans as `true`/`false`, anything
    /// else (numbers included) as written.
    fn string(&self, n: &YNode, what: &str) -> R<String> {
        match &n.kind {
            YKind::Scalar { text, plain } => {
                if *plain {
                    if NULLS.contains(&text.as_str()) {
                        return Ok(String::new());
                    }
                    if TRUES.contains(&text.as_str()) {
                        return Ok("true".into());
                    }
                    if FALSES.contains(&text.as_str()) {
                        return Ok("false".into());
                    }
                }
                Ok(text.clone())
            }
            _ => Err(self.err(
                n.pos,
                format!("expected a string for {what}, found {}", describe(n)),
            )),
        }
    }

    /// A string, or `None` for a null.
    fn opt_string(&self, n: &YNode, what: &str) -> R<Option<String>> {
        if is_null(n) {
            Ok(None)
        } else {
            self.string(n, what).map(Some)
        }
    }

    /// A mapping's entries (a null counts as an empty mapping). Keys are taken as written.
    fn entries<'n>(&self, n: &'n YNode, what: &str) -> R<Vec<Entry<'n>>> {
        let items = match &n.kind {
            YKind::Map(items) => items,
            _ if is_null(n) => return Ok(Vec::new()),
            _ => {
                return Err(self.err(
                    n.pos,
                    format!("expected a mapping for {what}, found {}", describe(n)),
                ))
            }
        };
        let mut out: Vec<Entry<'n>> = Vec::with_capacity(items.len());
        for (k, v) in items {
            let YKind::Scalar { text, .. } = &k.kind else {
                return Err(self.err(k.pos, "mapping keys must be plain strings"));
            };
            if out.iter().any(|e| e.key == *text) {
                return Err(self.err(k.pos, format!("duplicate key `{text}` in {what}")));
            }
            out.push(Entry {
                key: text.clone(),
                kpos: k.pos,
                val: v,
            });
        }
        Ok(out)
    }

    /// Name/value pairs: a mapping, or a list of single-entry mappings (which allows repeated
    /// names).
    fn pairs<'n>(&self, n: &'n YNode, what: &str) -> R<Vec<Entry<'n>>> {
        match &n.kind {
            YKind::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    let mut one = self.entries(item, what)?;
                    if one.len() != 1 {
                        return Err(self.err(
                            item.pos,
                            format!(
                                "each list item of {what} is a mapping with exactly one \
                                 `name: value` entry (found {})",
                                one.len()
                            ),
                        ));
                    }
                    out.push(one.remove(0));
                }
                Ok(out)
            }
            _ => self.entries(n, what),
        }
    }

    fn list<'n>(&self, n: &'n YNode, what: &str) -> R<&'n [YNode]> {
        match &n.kind {
            YKind::Seq(items) => Ok(items),
            _ if is_null(n) => Ok(&[]),
            _ => Err(self.err(
                n.pos,
                format!("expected a list for {what}, found {}", describe(n)),
            )),
        }
    }

    /// `xml_extra:`: raw XML strings, each with its position.
    fn extras(&self, n: &YNode) -> R<Vec<Extra>> {
        self.list(n, "`xml_extra`")?
            .iter()
            .map(|i| Ok(Extra::new(self.string(i, "`xml_extra`")?, i.pos)))
            .collect()
    }

    /// `xml_order:`: the child elements' order, as names ([`Part::name`]).
    fn order(&self, n: &YNode) -> R<(Vec<Part>, Pos)> {
        let mut out = Vec::new();
        for i in self.list(n, "`xml_order`")? {
            let name = self.string(i, "`xml_order`")?;
            let part = Part::from_name(&name).ok_or_else(|| {
                self.err(
                    i.pos,
                    format!(
                        "unknown part `{name}` in `xml_order` (expected one of: {})",
                        Part::ALL
                            .iter()
                            .map(|p| format!("`{}`", p.name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            out.push(part);
        }
        Ok((out, n.pos))
    }

    /// An `xml_order` read at `pos`, checked against what the container holds.
    fn finish_order(&self, order: Option<(Vec<Part>, Pos)>, parts: &Parts) -> R<Vec<Part>> {
        let Some((order, pos)) = order else {
            return Ok(Vec::new());
        };
        check_order(&order, parts).map_err(|e| self.err(pos, e))?;
        Ok(normalize_order(order, parts))
    }

    fn push_attr(&self, attrs: &mut Attrs, name: &str, value: String, pos: Pos) -> R<()> {
        if attrs.iter().any(|(k, _)| k == name) {
            return Err(self.err(pos, format!("attribute `{name}` is given twice")));
        }
        attrs.push((name.to_string(), value));
        Ok(())
    }

    /// `attributes:`: XML attribute names as written, appended in order.
    fn raw_attrs(&self, n: &YNode, attrs: &mut Attrs) -> R<()> {
        for a in self.entries(n, "`attributes`")? {
            let v = self.string(a.val, &format!("attribute `{}`", a.key))?;
            self.push_attr(attrs, &a.key, v, a.kpos)?;
        }
        Ok(())
    }

    fn sequence(&self, root: &YNode) -> R<Sequence> {
        if !matches!(root.kind, YKind::Map(_)) {
            return Err(self.err(
                root.pos,
                format!(
                    "expected a mapping with `steps:` at the top level, found {}",
                    describe(root)
                ),
            ));
        }
        let mut seq = Sequence {
            pos: root.pos,
            ..Default::default()
        };
        let mut order = None;
        for e in self.entries(root, "the top level")? {
            match e.key.as_str() {
                "xml_order" => order = Some(self.order(e.val)?),
                "name" => {
                    let v = self.string(e.val, "`name`")?;
                    self.push_attr(&mut seq.attrs, "name", v, e.kpos)?;
                }
                "attributes" => self.raw_attrs(e.val, &mut seq.attrs)?,
                "source" => seq.shape = self.source(e.val)?,
                "variables" => seq.global_vars = self.vars(e.val, false, "`variables`")?,
                "steps" => seq.items = self.nodes(e.val)?,
                "xml_extra" => seq.extra_xml = self.extras(e.val)?,
                _ => return Err(self.unknown(&e, TOP_KEYS, "the top level")),
            }
        }
        seq.order = self.finish_order(order, &seq.parts())?;
        Ok(seq)
    }

    fn source(&self, n: &YNode) -> R<Shape> {
        let es = self.entries(n, "`source`")?;
        for e in &es {
            if !SOURCE_KEYS.contains(&e.key.as_str()) {
                return Err(self.unknown(e, SOURCE_KEYS, "`source`"));
            }
        }
        let Some(shape) = es.iter().find(|e| e.key == "shape") else {
            return Err(self.err(
                n.pos,
                "`source` needs `shape: sequence|package|wmi-instance`",
            ));
        };
        let get = |k: &str| es.iter().find(|e| e.key == k);
        let kind = self.string(shape.val, "`shape`")?;
        match kind.as_str() {
            "sequence" => {
                if let Some(e) = get("class").or_else(|| get("properties")) {
                    return Err(self.err(
                        e.kpos,
                        format!("`{}` does not belong with `shape: sequence`", e.key),
                    ));
                }
                Ok(Shape::Sequence)
            }
            "package" => {
                if let Some(e) = get("class") {
                    return Err(self.err(e.kpos, "`class` does not belong with `shape: package`"));
                }
                let mut properties = Vec::new();
                if let Some(p) = get("properties") {
                    for e in self.pairs(p.val, "`properties`")? {
                        let v = self.string(e.val, &format!("property `{}`", e.key))?;
                        properties.push((e.key, v));
                    }
                }
                Ok(Shape::PackageWrapper { properties })
            }
            "wmi-instance" => {
                let class_name = match get("class") {
                    Some(e) => self.string(e.val, "`class`")?,
                    None => String::new(),
                };
                let mut properties = Vec::new();
                if let Some(p) = get("properties") {
                    for item in self.list(p.val, "`properties`")? {
                        properties.push(self.wmi_property(item)?);
                    }
                }
                Ok(Shape::WmiInstance {
                    class_name,
                    properties,
                })
            }
            _ => Err(self.err(
                shape.val.pos,
                format!(
                    "unknown shape `{kind}` (expected `sequence`, `package` or `wmi-instance`)"
                ),
            )),
        }
    }

    fn wmi_property(&self, n: &YNode) -> R<WmiProperty> {
        let mut p = WmiProperty {
            name: String::new(),
            attrs: Vec::new(),
            value: None,
            raw: None,
        };
        for e in self.entries(n, "a WMI property")? {
            match e.key.as_str() {
                "name" => p.name = self.string(e.val, "`name`")?,
                "attributes" => self.raw_attrs(e.val, &mut p.attrs)?,
                "value" => p.value = self.opt_string(e.val, "`value`")?,
                "raw" => p.raw = self.opt_string(e.val, "`raw`")?,
                _ => return Err(self.unknown(&e, WMI_PROP_KEYS, "a WMI property")),
            }
        }
        Ok(p)
    }

    /// Variables (`variables:`, `properties:`). With `property_default`, a variable gets the
    /// attribute `property` = its name unless it states its own `property` (null = none).
    fn vars(&self, n: &YNode, property_default: bool, what: &str) -> R<Vec<Variable>> {
        let mut out = Vec::new();
        for e in self.pairs(n, what)? {
            let mut v = Variable {
                name: e.key.clone(),
                attrs: Vec::new(),
                value: String::new(),
                pos: e.kpos,
            };
            match &e.val.kind {
                YKind::Map(_) => {
                    let mut explicit_property = false;
                    let fwhat = format!("`{}`", e.key);
                    for f in self.entries(e.val, &fwhat)? {
                        match f.key.as_str() {
                            "value" => v.value = self.string(f.val, "`value`")?,
                            "property" => {
                                explicit_property = true;
                                if let Some(p) = self.opt_string(f.val, "`property`")? {
                                    self.push_attr(&mut v.attrs, "property", p, f.kpos)?;
                                }
                            }
                            "hidden" => {
                                let h = self.string(f.val, "`hidden`")?;
                                self.push_attr(&mut v.attrs, "hidden", h, f.kpos)?;
                            }
                            "attributes" => {
                                explicit_property |= self
                                    .entries(f.val, "`attributes`")?
                                    .iter()
                                    .any(|a| a.key == "property");
                                self.raw_attrs(f.val, &mut v.attrs)?;
                            }
                            _ => {
                                return Err(self.unknown(
                                    &f,
                                    VAR_KEYS,
                                    &format!("the long form of `{}`", e.key),
                                ))
                            }
                        }
                    }
                    if property_default && !explicit_property {
                        v.attrs.insert(0, ("property".into(), v.name.clone()));
                    }
                }
                YKind::Seq(_) => {
                    return Err(self.err(
                        e.val.pos,
                        format!(
                            "expected a string (or a mapping with `value:`) for `{}`, found a list",
                            e.key
                        ),
                    ))
                }
                YKind::Scalar { .. } => {
                    v.value = self.string(e.val, &format!("`{}`", e.key))?;
                    if property_default {
                        v.attrs.push(("property".into(), v.name.clone()));
                    }
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    fn nodes(&self, n: &YNode) -> R<Vec<Node>> {
        self.list(n, "`steps`")?
            .iter()
            .map(|i| self.node(i))
            .collect()
    }

    fn node(&self, n: &YNode) -> R<Node> {
        if !matches!(n.kind, YKind::Map(_)) {
            return Err(self.err(
                n.pos,
                format!(
                    "expected a step or a group (a mapping), found {}",
                    describe(n)
                ),
            ));
        }
        let es = self.entries(n, "a step")?;
        if es.iter().any(|e| e.key == "group") {
            self.group(n, es).map(Node::Group)
        } else {
            self.step(n, es).map(Node::Step)
        }
    }

    fn group(&self, n: &YNode, es: Vec<Entry>) -> R<Group> {
        let mut g = Group {
            pos: n.pos,
            ..Default::default()
        };
        let mut order = None;
        for e in es {
            match e.key.as_str() {
                "xml_order" => order = Some(self.order(e.val)?),
                "group" => {
                    if let Some(name) = self.opt_string(e.val, "`group`")? {
                        self.push_attr(&mut g.attrs, "name", name, e.kpos)?;
                    }
                }
                "attributes" => self.raw_attrs(e.val, &mut g.attrs)?,
                "condition" => g.condition = self.conditions(e.val)?,
                "xml_extra" => g.extra_xml = self.extras(e.val)?,
                "steps" => g.children = self.nodes(e.val)?,
                k => {
                    if let Some((xml, _)) = GROUP_ATTRS.iter().find(|(_, y)| *y == k) {
                        let v = self.string(e.val, &format!("`{k}`"))?;
                        self.push_attr(&mut g.attrs, xml, v, e.kpos)?;
                    } else {
                        let known: Vec<&str> = GROUP_ATTRS
                            .iter()
                            .map(|(_, y)| *y)
                            .chain(GROUP_EXTRA_KEYS.iter().copied())
                            .collect();
                        return Err(self.unknown(&e, &known, "a group"));
                    }
                }
            }
        }
        g.order = self.finish_order(order, &g.parts())?;
        Ok(g)
    }

    fn step(&self, n: &YNode, es: Vec<Entry>) -> R<Step> {
        let mut s = Step {
            pos: n.pos,
            ..Default::default()
        };
        let mut run: Option<Variable> = None;
        let mut order = None;
        for e in es {
            match e.key.as_str() {
                "xml_order" => order = Some(self.order(e.val)?),
                "element" => {
                    let v = self.string(e.val, "`element`")?;
                    s.element = StepElement::from_xml(&v).ok_or_else(|| {
                        self.err(
                            e.val.pos,
                            format!("unknown element `{v}` (expected `step` or `subtasksequence`)"),
                        )
                    })?;
                }
                "attributes" => self.raw_attrs(e.val, &mut s.attrs)?,
                "action" => s.action = self.opt_string(e.val, "`action`")?,
                "run" => {
                    let cmd = self.string(e.val, "`run`")?;
                    self.push_attr(
                        &mut s.attrs,
                        "type",
                        step_type::RUN_COMMAND_LINE.into(),
                        e.kpos,
                    )?;
                    let mut v = Variable::property("CommandLine", cmd);
                    v.pos = e.kpos;
                    run = Some(v);
                }
                "properties" => s.vars = self.vars(e.val, true, "`properties`")?,
                "condition" => s.condition = self.conditions(e.val)?,
                "xml_extra" => s.extra_xml = self.extras(e.val)?,
                "steps" => {
                    return Err(self.err(
                        e.kpos,
                        "`steps:` is only allowed in a group, and this mapping has no `group:` \
                         key, so it is a step",
                    ))
                }
                k => {
                    if let Some((xml, _)) = STEP_ATTRS.iter().find(|(_, y)| *y == k) {
                        let mut v = self.string(e.val, &format!("`{k}`"))?;
                        if *xml == "type" {
                            v = step_type::from_short(&v).to_string();
                        }
                        self.push_attr(&mut s.attrs, xml, v, e.kpos)?;
                    } else {
                        let known: Vec<&str> = STEP_ATTRS
                            .iter()
                            .map(|(_, y)| *y)
                            .chain(STEP_EXTRA_KEYS.iter().copied())
                            .collect();
                        return Err(self.unknown(&e, &known, "a step"));
                    }
                }
            }
        }
        if let Some(v) = run {
            s.vars.insert(0, v);
        }
        s.order = self.finish_order(order, &s.parts())?;
        Ok(s)
    }

    /// `condition:`: one condition (a mapping) or a list of them.
    fn conditions(&self, n: &YNode) -> R<Vec<Condition>> {
        match &n.kind {
            YKind::Map(_) => Ok(vec![self.condition(n)?]),
            YKind::Seq(items) => items.iter().map(|i| self.condition(i)).collect(),
            _ if is_null(n) => Ok(Vec::new()),
            _ => Err(self.err(
                n.pos,
                format!(
                    "expected a condition (a mapping) or a list of conditions, found {}",
                    describe(n)
                ),
            )),
        }
    }

    fn condition(&self, n: &YNode) -> R<Condition> {
        if !matches!(n.kind, YKind::Map(_)) {
            return Err(self.err(
                n.pos,
                format!("expected a condition (a mapping), found {}", describe(n)),
            ));
        }
        let es = self.entries(n, "a condition")?;
        for e in &es {
            if !COND_KEYS.contains(&e.key.as_str()) {
                return Err(self.unknown(e, COND_KEYS, "a condition"));
            }
        }
        let forms: Vec<&Entry> = es
            .iter()
            .filter(|e| COND_FORMS.contains(&e.key.as_str()))
            .collect();
        let form =
            match forms.as_slice() {
                [one] => *one,
                [] => return Err(self.err(
                    n.pos,
                    "a condition needs one of `variable`, `file`, `folder`, `wmi`, `expression`, \
                     `and`, `or`, `not`",
                )),
                [a, b, ..] => {
                    return Err(self.err(
                        b.kpos,
                        format!(
                            "a condition has exactly one of `variable`, `file`, `folder`, `wmi`, \
                         `expression`, `and`, `or`, `not`; this one has both `{}` and `{}`",
                            a.key, b.key
                        ),
                    ))
                }
            };
        let allowed: &[&str] = match form.key.as_str() {
            "variable" => &["operator", "value"],
            "file" => &[
                "version",
                "version_operator",
                "date_time",
                "date_time_operator",
            ],
            "folder" => &["date_time", "date_time_operator"],
            "wmi" => &["namespace"],
            "expression" => &["properties"],
            _ => &[],
        };
        let mut attrs = Vec::new();
        for e in &es {
            if e.key == form.key {
                continue;
            }
            if e.key == "attributes" {
                self.raw_attrs(e.val, &mut attrs)?;
            } else if !allowed.contains(&e.key.as_str()) {
                return Err(self.err(
                    e.kpos,
                    format!(
                        "`{}` does not belong in a `{}:` condition (allowed here: {})",
                        e.key,
                        form.key,
                        allowed
                            .iter()
                            .chain(["attributes"].iter())
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let get = |k: &str| es.iter().find(|e| e.key == k);
        let var = |name: &str, e: &Entry| -> R<Variable> {
            let mut v = Variable::new(name, self.string(e.val, &format!("`{}`", e.key))?);
            v.pos = e.kpos;
            Ok(v)
        };
        let mut expr = Expression {
            kind: String::new(),
            attrs,
            vars: Vec::new(),
            pos: n.pos,
        };
        match form.key.as_str() {
            "and" | "or" | "not" => {
                let kind = match form.key.as_str() {
                    "and" => OperatorKind::And,
                    "or" => OperatorKind::Or,
                    _ => OperatorKind::Not,
                };
                return Ok(Condition::Operator {
                    kind,
                    attrs: expr.attrs,
                    children: self.conditions(form.val)?,
                    pos: n.pos,
                });
            }
            "variable" => {
                expr.kind = expr_type::VARIABLE.into();
                match get("operator") {
                    Some(e) => expr.vars.push(var("Operator", e)?),
                    None => {
                        let mut v = Variable::new("Operator", "equals");
                        v.pos = form.kpos;
                        expr.vars.push(v);
                    }
                }
                if let Some(e) = get("value") {
                    expr.vars.push(var("Value", e)?);
                }
                expr.vars.push(var("Variable", form)?);
            }
            "file" | "folder" => {
                let (kind, opts) = if form.key == "file" {
                    (expr_type::FILE, FILE_OPTS)
                } else {
                    (expr_type::FOLDER, FOLDER_OPTS)
                };
                expr.kind = kind.into();
                expr.vars.push(var("Path", form)?);
                for (key, name) in opts {
                    if let Some(e) = get(key) {
                        expr.vars.push(var(name, e)?);
                    }
                }
            }
            "wmi" => {
                expr.kind = expr_type::WMI.into();
                if let Some(e) = get("namespace") {
                    expr.vars.push(var("Namespace", e)?);
                }
                expr.vars.push(var("Query", form)?);
            }
            _ => {
                expr.kind = self.string(form.val, "`expression`")?;
                if let Some(e) = get("properties") {
                    expr.vars = self.vars(e.val, false, "`properties`")?;
                }
            }
        }
        Ok(Condition::Expression(expr))
    }
}

/// The model of a document's root node (`None`: a stream without a document). `file` is used in
/// error messages only.
pub(super) fn to_model(root: Option<YNode>, file: &Path) -> Result<Sequence, ParseError> {
    let root = match root {
        Some(r) if !is_null(&r) => r,
        _ => {
            return Err(ParseError::new(
                file,
                1,
                1,
                "empty file: expected a mapping with `steps:`",
            ))
        }
    };
    Reader { file }.sequence(&root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn p(text: &str) -> Result<Sequence, ParseError> {
        parse(text, Path::new("t.yaml"))
    }

    fn err_at(text: &str) -> (u32, u32, String) {
        let e = p(text).unwrap_err();
        (e.line, e.column, e.message)
    }

    #[test]
    fn scalars_resolve_as_documented() {
        let s = p("steps:\n  - name: x\n    continue_on_error: True\n    timeout: 0x10\n    description: ~\n").unwrap();
        let Node::Step(st) = &s.items[0] else {
            panic!()
        };
        assert_eq!(
            st.attrs,
            vec![
                ("name".to_string(), "x".to_string()),
                ("continueOnError".into(), "true".into()),
                ("timeout".into(), "0x10".into()),
                ("description".into(), "".into()),
            ]
        );
    }

    #[test]
    fn positions_are_recorded() {
        let s = p(
            "steps:\n  - name: a\n    properties:\n      X: 1\n    condition:\n      variable: V\n",
        )
        .unwrap();
        let Node::Step(st) = &s.items[0] else {
            panic!()
        };
        assert_eq!((st.pos.line, st.pos.column), (2, 5));
        assert_eq!((st.vars[0].pos.line, st.vars[0].pos.column), (4, 7));
        assert_eq!(
            (st.condition[0].pos().line, st.condition[0].pos().column),
            (6, 7)
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("continue_on_eror", &["continue_on_error", "condition"]),
            Some("continue_on_error")
        );
        assert_eq!(
            suggest("continueOnError", &["continue_on_error"]),
            Some("continue_on_error")
        );
        assert_eq!(suggest("zzzzzz", &["name", "type"]), None);
    }

    #[test]
    fn xml_order_must_name_what_the_node_holds() {
        let s = p("steps:\n  - action: a\n    properties: {X: \"1\"}\n    xml_order: [defaultVarList, action]\n").unwrap();
        let Node::Step(st) = &s.items[0] else {
            panic!()
        };
        assert_eq!(
            st.order,
            [crate::model::Part::Vars, crate::model::Part::Action]
        );
        // The default order is the same as none.
        let s = p("steps:\n  - action: a\n    xml_order: [action]\n").unwrap();
        let Node::Step(st) = &s.items[0] else {
            panic!()
        };
        assert!(st.order.is_empty());
        let (line, col, msg) = err_at("steps:\n  - action: a\n    xml_order: [action, extra]\n");
        assert_eq!((line, col), (3, 16), "{msg}");
        assert!(
            msg.contains("lists `extra` 1 time(s), but there are 0"),
            "{msg}"
        );
        let (line, col, msg) = err_at("xml_order: [steps]\nsteps: []\n");
        assert_eq!((line, col), (1, 13), "{msg}");
        assert!(msg.contains("unknown part `steps`"), "{msg}");
    }

    #[test]
    fn empty_and_non_mapping_documents() {
        assert!(err_at("").2.starts_with("empty file"));
        assert!(err_at("# only a comment\n").2.starts_with("empty file"));
        assert!(err_at("---\n").2.starts_with("empty file"));
        assert_eq!(err_at("- a\n").0, 1);
        assert!(err_at("- a\n").2.contains("found a list"));
        assert!(err_at("a: 1\n---\nb: 2\n")
            .2
            .contains("single YAML document"));
    }
}
