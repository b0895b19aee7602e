//! tsforge's native YAML sequence format: reader and writer.
//!
//! The format is described in `docs/sequence-format.md`. Both directions map to the one model of
//! `model.rs`, and the mapping is lossless: for any model `m` (without duplicate attribute names,
//! which XML cannot express either), `parse(&write(&m), f) == m`.
//!
//! Reading goes through `saphyr-parser`'s event API: the events are assembled into a small tree
//! whose every node carries its line and column, and that tree is then interpreted, so every
//! group, step, variable and condition gets its `Pos` and every semantic error (unknown key,
//! wrong kind of value, …) points at the key or value at fault.
//!
//! Writing is a small hand-written emitter for the fixed block structure; any string that a YAML
//! reader could take for something else is written double-quoted with escapes.

use super::model::{
    expr_type, step_type, Attrs, Condition, Expression, Group, Node, OperatorKind, Pos, Sequence,
    Shape, Step, Variable, WmiProperty, GROUP_ATTRS, STEP_ATTRS,
};
use crate::error::ParseError;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput};
use std::collections::HashMap;
use std::path::Path;

// ------------------------------------------------------------------------------------------------
// Reading, stage 1: YAML events → a tree of positioned nodes.

#[derive(Debug, Clone)]
struct YNode {
    pos: Pos,
    kind: YKind,
}

#[derive(Debug, Clone)]
enum YKind {
    /// `plain`: a plain (unquoted, untagged-as-string) scalar, subject to null/bool resolution.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<YNode>),
    Map(Vec<(YNode, YNode)>),
}

/// Deepest nesting accepted (guards the recursive reader against stack exhaustion).
const MAX_DEPTH: usize = 256;
/// Most nodes a document may expand to through aliases (guards against "billion laughs").
const MAX_NODES: usize = 2_000_000;

fn pos_of(span: &Span) -> Pos {
    Pos::new(span.start.line() as u32, span.start.col() as u32 + 1)
}

fn size_of(n: &YNode) -> usize {
    match &n.kind {
        YKind::Scalar { .. } => 1,
        YKind::Seq(items) => 1 + items.iter().map(size_of).sum::<usize>(),
        YKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| size_of(k) + size_of(v))
                .sum::<usize>()
        }
    }
}

struct Loader<'a> {
    parser: Parser<'a, StrInput<'a>>,
    file: &'a Path,
    anchors: HashMap<usize, (YNode, usize)>,
    nodes: usize,
}

impl<'a> Loader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), ParseError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => {
                let m = e.marker();
                Err(ParseError::new(
                    self.file,
                    m.line() as u32,
                    m.col() as u32 + 1,
                    format!("YAML syntax error: {}", e.info()),
                ))
            }
            None => Err(ParseError::new(
                self.file,
                1,
                1,
                "YAML syntax error: unexpected end of input",
            )),
        }
    }

    fn err(&self, pos: Pos, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.file, pos.line, pos.column, msg)
    }

    fn anchor(&mut self, id: usize, node: &YNode) {
        if id > 0 {
            self.anchors.insert(id, (node.clone(), size_of(node)));
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<YNode, ParseError> {
        let pos = pos_of(&span);
        if depth > MAX_DEPTH {
            return Err(self.err(
                pos,
                format!("YAML nested more than {MAX_DEPTH} levels deep, tsforge's limit"),
            ));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err(
                pos,
                format!("YAML document too large: more than {MAX_NODES} nodes, tsforge's limit"),
            ));
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let node = YNode {
                    pos,
                    kind: YKind::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain && !tagged_str,
                    },
                };
                self.anchor(anchor, &node);
                Ok(node)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                let node = YNode {
                    pos,
                    kind: YKind::Seq(items),
                };
                self.anchor(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(ev, span, depth + 1)?;
                    let (ev, span) = self.next()?;
                    let value = self.node(ev, span, depth + 1)?;
                    entries.push((key, value));
                }
                let node = YNode {
                    pos,
                    kind: YKind::Map(entries),
                };
                self.anchor(anchor, &node);
                Ok(node)
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((node, size)) => {
                    self.nodes += size;
                    if self.nodes > MAX_NODES {
                        return Err(self.err(pos, "YAML document too large (alias expansion)"));
                    }
                    let mut node = node.clone();
                    node.pos = pos;
                    Ok(node)
                }
                None => Err(self.err(pos, "YAML alias refers to an unknown anchor")),
            },
            _ => Err(self.err(pos, "YAML syntax error: unexpected event")),
        }
    }

    /// The document's root node; `None` for a stream without a document.
    fn document(&mut self) -> Result<Option<YNode>, ParseError> {
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err(self.err(
                            pos_of(&span),
                            "a sequence file holds a single YAML document (found a second `---`)",
                        ));
                    }
                    let (ev, span) = self.next()?;
                    root = Some(self.node(ev, span, 0)?);
                }
                _ => return Err(self.err(pos_of(&span), "YAML syntax error: unexpected event")),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Reading, stage 2: positioned tree → model.

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
];
const STEP_EXTRA_KEYS: &[&str] = &[
    "attributes",
    "action",
    "run",
    "properties",
    "condition",
    "xml_extra",
];
const GROUP_EXTRA_KEYS: &[&str] = &["group", "attributes", "condition", "xml_extra", "steps"];
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

/// Optional variables of the short `file:` form, as (YAML key, variable name), in the order the
/// reader writes them after `Path`.
const FILE_OPTS: &[(&str, &str)] = &[
    ("version", "Version"),
    ("version_operator", "VersionOperator"),
    ("date_time", "DateTime"),
    ("date_time_operator", "DateTimeOperator"),
];
const FOLDER_OPTS: &[(&str, &str)] = &[
    ("date_time", "DateTime"),
    ("date_time_operator", "DateTimeOperator"),
];

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

    fn strings(&self, n: &YNode, what: &str) -> R<Vec<String>> {
        self.list(n, what)?
            .iter()
            .map(|i| self.string(i, what))
            .collect()
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
        for e in self.entries(root, "the top level")? {
            match e.key.as_str() {
                "name" => {
                    let v = self.string(e.val, "`name`")?;
                    self.push_attr(&mut seq.attrs, "name", v, e.kpos)?;
                }
                "attributes" => self.raw_attrs(e.val, &mut seq.attrs)?,
                "source" => seq.shape = self.source(e.val)?,
                "variables" => seq.global_vars = self.vars(e.val, false, "`variables`")?,
                "steps" => seq.items = self.nodes(e.val)?,
                "xml_extra" => seq.extra_xml = self.strings(e.val, "`xml_extra`")?,
                _ => return Err(self.unknown(&e, TOP_KEYS, "the top level")),
            }
        }
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
        for e in es {
            match e.key.as_str() {
                "group" => {
                    if let Some(name) = self.opt_string(e.val, "`group`")? {
                        self.push_attr(&mut g.attrs, "name", name, e.kpos)?;
                    }
                }
                "attributes" => self.raw_attrs(e.val, &mut g.attrs)?,
                "condition" => g.condition = self.conditions(e.val)?,
                "xml_extra" => g.extra_xml = self.strings(e.val, "`xml_extra`")?,
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
        Ok(g)
    }

    fn step(&self, n: &YNode, es: Vec<Entry>) -> R<Step> {
        let mut s = Step {
            pos: n.pos,
            ..Default::default()
        };
        let mut run: Option<Variable> = None;
        for e in es {
            match e.key.as_str() {
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
                "xml_extra" => s.extra_xml = self.strings(e.val, "`xml_extra`")?,
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

/// Read a YAML sequence. `file` is used in error messages only.
pub fn parse(text: &str, file: &Path) -> Result<Sequence, ParseError> {
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        file,
        anchors: HashMap::new(),
        nodes: 0,
    };
    let root = loader.document()?;
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

// ------------------------------------------------------------------------------------------------
// Writing: model → a small tree of YAML values → block-style text.

enum Out {
    /// A scalar, already in its final written form (quoted if needed).
    Scalar(String),
    Map(Vec<(String, Out)>),
    List(Vec<Out>),
}

/// Whether `s` can be written as a plain scalar and read back as the same string, by tsforge
/// and by any YAML 1.1 or 1.2 reader.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let last = s.chars().next_back().unwrap_or(first);
    if first == ' ' || last == ' ' || last == ':' {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`+=".contains(first) || first.is_ascii_digit() {
        return false;
    }
    if s.chars().any(needs_escape) || s.contains(['\t', '\n', '\r']) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.starts_with("...") || s.starts_with("<<") {
        return false;
    }
    if first == '.' {
        let second = s.chars().nth(1);
        if second.is_some_and(|c| c.is_ascii_digit()) {
            return false;
        }
        let lower = s.to_ascii_lowercase();
        if lower == ".inf" || lower == ".nan" {
            return false;
        }
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    )
}

/// Characters that are written as escapes inside double quotes (and never plain).
fn needs_escape(c: char) -> bool {
    let u = c as u32;
    u < 0x20
        || u == 0x7f
        || (0x80..=0x9f).contains(&u)
        || matches!(u, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff)
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => {
                let u = c as u32;
                if u < 0x100 {
                    out.push_str(&format!("\\x{u:02X}"));
                } else {
                    out.push_str(&format!("\\u{u:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

/// A string value: always read back as a string.
fn s_out(s: &str) -> Out {
    Out::Scalar(quote(s))
}

/// An attribute value: `true`/`false` and canonical decimal integers are written bare.
fn a_out(s: &str) -> Out {
    let canonical_int = {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty()
            && digits.len() <= 18
            && digits.bytes().all(|b| b.is_ascii_digit())
            && ((digits == "0" && s == "0") || !digits.starts_with('0'))
    };
    if s == "true" || s == "false" || canonical_int {
        Out::Scalar(s.to_string())
    } else {
        s_out(s)
    }
}

fn null_out() -> Out {
    Out::Scalar("~".into())
}

fn raw_attrs_out(attrs: &[(String, String)]) -> Out {
    Out::Map(attrs.iter().map(|(k, v)| (k.clone(), s_out(v))).collect())
}

/// A sequence of variables: a mapping, or a list of single-entry mappings when names repeat.
fn vars_out(vars: &[Variable], property_default: bool) -> Out {
    let entry = |v: &Variable| -> (String, Out) {
        let short = if property_default {
            v.attrs.len() == 1 && v.attrs[0].0 == "property" && v.attrs[0].1 == v.name
        } else {
            v.attrs.is_empty()
        };
        if short {
            return (v.name.clone(), s_out(&v.value));
        }
        let mut m = vec![("value".to_string(), s_out(&v.value))];
        let tail = v
            .attrs
            .iter()
            .position(|(k, _)| k != "property" && k != "hidden")
            .unwrap_or(v.attrs.len());
        for (k, val) in &v.attrs[..tail] {
            let out = if k == "hidden" {
                a_out(val)
            } else {
                s_out(val)
            };
            m.push((k.clone(), out));
        }
        if tail < v.attrs.len() {
            m.push(("attributes".into(), raw_attrs_out(&v.attrs[tail..])));
        }
        if property_default && !v.attrs.iter().any(|(k, _)| k == "property") {
            m.push(("property".into(), null_out()));
        }
        (v.name.clone(), Out::Map(m))
    };
    let unique = vars
        .iter()
        .enumerate()
        .all(|(i, v)| vars[..i].iter().all(|w| w.name != v.name));
    if unique {
        Out::Map(vars.iter().map(entry).collect())
    } else {
        Out::List(vars.iter().map(|v| Out::Map(vec![entry(v)])).collect())
    }
}

/// Whether `names` are some of `order`'s names, each once, in `order`'s order.
fn ordered_subset(names: &[&str], order: &[(&str, &str)]) -> bool {
    let mut next = 0;
    for n in names {
        match order[next..].iter().position(|(_, o)| o == n) {
            Some(i) => next += i + 1,
            None => return false,
        }
    }
    true
}

fn expression_out(e: &Expression) -> Out {
    let names: Vec<&str> = e.vars.iter().map(|v| v.name.as_str()).collect();
    let val = |name: &str| {
        e.vars
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
            .unwrap_or_default()
    };
    let mut m: Vec<(String, Out)> = Vec::new();
    let plain_vars = e.vars.iter().all(|v| v.attrs.is_empty());
    let kind = e.kind.as_str();
    let mut short = plain_vars;
    if short && kind == expr_type::VARIABLE && names.len() >= 2 && {
        names == ["Operator", "Value", "Variable"] || names == ["Operator", "Variable"]
    } {
        m.push(("variable".into(), s_out(val("Variable"))));
        if val("Operator") != "equals" {
            m.push(("operator".into(), s_out(val("Operator"))));
        }
        if names.len() == 3 {
            m.push(("value".into(), s_out(val("Value"))));
        }
    } else if short
        && (kind == expr_type::FILE || kind == expr_type::FOLDER)
        && names.first() == Some(&"Path")
        && ordered_subset(
            &names[1..],
            if kind == expr_type::FILE {
                FILE_OPTS
            } else {
                FOLDER_OPTS
            },
        )
    {
        let (key, opts) = if kind == expr_type::FILE {
            ("file", FILE_OPTS)
        } else {
            ("folder", FOLDER_OPTS)
        };
        m.push((key.into(), s_out(val("Path"))));
        for (ykey, name) in opts {
            if names.contains(name) {
                m.push((ykey.to_string(), s_out(val(name))));
            }
        }
    } else if short
        && kind == expr_type::WMI
        && (names == ["Query"] || names == ["Namespace", "Query"])
    {
        m.push(("wmi".into(), s_out(val("Query"))));
        if names.len() == 2 {
            m.push(("namespace".into(), s_out(val("Namespace"))));
        }
    } else {
        short = false;
    }
    if !short {
        m.push(("expression".into(), s_out(kind)));
        if !e.vars.is_empty() {
            m.push(("properties".into(), vars_out(&e.vars, false)));
        }
    }
    if !e.attrs.is_empty() {
        m.push(("attributes".into(), raw_attrs_out(&e.attrs)));
    }
    Out::Map(m)
}

fn condition_out(c: &Condition) -> Out {
    match c {
        Condition::Operator {
            kind,
            attrs,
            children,
            ..
        } => {
            let mut m = vec![(
                kind.as_xml().to_string(),
                Out::List(children.iter().map(condition_out).collect()),
            )];
            if !attrs.is_empty() {
                m.push(("attributes".into(), raw_attrs_out(attrs)));
            }
            Out::Map(m)
        }
        Condition::Expression(e) => expression_out(e),
    }
}

fn conditions_out(cs: &[Condition]) -> Out {
    match cs {
        [one] => condition_out(one),
        _ => Out::List(cs.iter().map(condition_out).collect()),
    }
}

/// Attributes as YAML keys, as long as they are known (exact name) and come first; the rest, from
/// the first attribute that cannot be a key on, go under `attributes:` with their XML names.
/// `key_for` returns the key and value to write, or `None` when the attribute must go to the tail.
fn attrs_out(
    attrs: &[(String, String)],
    m: &mut Vec<(String, Out)>,
    mut key_for: impl FnMut(&str, &str) -> Option<(String, Out)>,
) {
    let mut tail = attrs.len();
    for (i, (k, v)) in attrs.iter().enumerate() {
        match key_for(k, v) {
            Some(entry) => m.push(entry),
            None => {
                tail = i;
                break;
            }
        }
    }
    if tail < attrs.len() {
        m.push(("attributes".into(), raw_attrs_out(&attrs[tail..])));
    }
}

fn known_attr_value(xml: &str, v: &str) -> Out {
    if xml == "name" || xml == "description" {
        s_out(v)
    } else {
        a_out(v)
    }
}

fn step_out(st: &Step) -> Out {
    let mut m = Vec::new();
    let run_var = st.vars.first().filter(|v| {
        v.name == "CommandLine"
            && v.attrs.len() == 1
            && v.attrs[0] == ("property".into(), "CommandLine".into())
    });
    let mut used_run = false;
    attrs_out(&st.attrs, &mut m, |k, v| {
        let (xml, ykey) = STEP_ATTRS.iter().find(|(x, _)| *x == k)?;
        if *xml != "type" {
            return Some((ykey.to_string(), known_attr_value(xml, v)));
        }
        if step_type::from_short(v) != v {
            // The raw type is spelled like a short name: only `attributes:` keeps it verbatim.
            return None;
        }
        if v == step_type::RUN_COMMAND_LINE {
            if let Some(rv) = run_var {
                used_run = true;
                return Some(("run".into(), s_out(&rv.value)));
            }
        }
        let out = match step_type::to_short(v) {
            Some(short) if step_type::from_short(short) == v => Out::Scalar(short.to_string()),
            _ => s_out(v),
        };
        Some(("type".into(), out))
    });
    if let Some(a) = &st.action {
        m.push(("action".into(), s_out(a)));
    }
    let vars = if used_run {
        &st.vars[1..]
    } else {
        &st.vars[..]
    };
    if !vars.is_empty() {
        m.push(("properties".into(), vars_out(vars, true)));
    }
    if !st.condition.is_empty() {
        m.push(("condition".into(), conditions_out(&st.condition)));
    }
    if !st.extra_xml.is_empty() {
        m.push(("xml_extra".into(), strings_out(&st.extra_xml)));
    }
    Out::Map(m)
}

fn group_out(g: &Group) -> Out {
    let mut m = Vec::new();
    let rest = match g.attrs.first() {
        Some((k, v)) if k == "name" => {
            m.push(("group".into(), s_out(v)));
            &g.attrs[1..]
        }
        _ => {
            m.push(("group".into(), null_out()));
            &g.attrs[..]
        }
    };
    attrs_out(rest, &mut m, |k, v| {
        let (xml, ykey) = GROUP_ATTRS.iter().find(|(x, _)| *x == k)?;
        Some((ykey.to_string(), known_attr_value(xml, v)))
    });
    if !g.condition.is_empty() {
        m.push(("condition".into(), conditions_out(&g.condition)));
    }
    if !g.extra_xml.is_empty() {
        m.push(("xml_extra".into(), strings_out(&g.extra_xml)));
    }
    m.push(("steps".into(), nodes_out(&g.children)));
    Out::Map(m)
}

fn nodes_out(nodes: &[Node]) -> Out {
    Out::List(
        nodes
            .iter()
            .map(|n| match n {
                Node::Group(g) => group_out(g),
                Node::Step(s) => step_out(s),
            })
            .collect(),
    )
}

fn strings_out(v: &[String]) -> Out {
    Out::List(v.iter().map(|s| s_out(s)).collect())
}

fn source_out(shape: &Shape) -> Option<Out> {
    match shape {
        Shape::Sequence => None,
        Shape::PackageWrapper { properties } => {
            let mut m = vec![("shape".to_string(), Out::Scalar("package".into()))];
            if !properties.is_empty() {
                let unique = properties
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| properties[..i].iter().all(|(j, _)| j != k));
                let pairs = properties.iter().map(|(k, v)| (k.clone(), s_out(v)));
                let out = if unique {
                    Out::Map(pairs.collect())
                } else {
                    Out::List(pairs.map(|p| Out::Map(vec![p])).collect())
                };
                m.push(("properties".into(), out));
            }
            Some(Out::Map(m))
        }
        Shape::WmiInstance {
            class_name,
            properties,
        } => {
            let mut m = vec![
                ("shape".to_string(), Out::Scalar("wmi-instance".into())),
                ("class".to_string(), s_out(class_name)),
            ];
            if !properties.is_empty() {
                let list = properties
                    .iter()
                    .map(|p| {
                        let mut pm = vec![("name".to_string(), s_out(&p.name))];
                        if !p.attrs.is_empty() {
                            pm.push(("attributes".into(), raw_attrs_out(&p.attrs)));
                        }
                        if let Some(v) = &p.value {
                            pm.push(("value".into(), s_out(v)));
                        }
                        if let Some(r) = &p.raw {
                            pm.push(("raw".into(), s_out(r)));
                        }
                        Out::Map(pm)
                    })
                    .collect();
                m.push(("properties".into(), Out::List(list)));
            }
            Some(Out::Map(m))
        }
    }
}

/// Longest key written as an implicit `key:`; longer ones use the explicit `? key` form (YAML
/// limits implicit keys to 1024 characters).
const MAX_IMPLICIT_KEY: usize = 1000;

fn emit_map(out: &mut String, entries: &[(String, Out)], indent: usize, first_inline: bool) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 || !first_inline {
            out.push_str(&" ".repeat(indent));
        }
        let key = quote(k);
        if key.chars().count() > MAX_IMPLICIT_KEY {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        } else {
            out.push_str(&key);
        }
        out.push(':');
        emit_after_colon(out, v, indent);
    }
}

fn emit_after_colon(out: &mut String, v: &Out, indent: usize) {
    match v {
        Out::Scalar(t) => {
            out.push(' ');
            out.push_str(t);
            out.push('\n');
        }
        Out::Map(e) if e.is_empty() => out.push_str(" {}\n"),
        Out::List(l) if l.is_empty() => out.push_str(" []\n"),
        Out::Map(e) => {
            out.push('\n');
            emit_map(out, e, indent + 2, false);
        }
        Out::List(l) => {
            out.push('\n');
            emit_list(out, l, indent + 2);
        }
    }
}

fn emit_list(out: &mut String, items: &[Out], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Out::Map(e) if !e.is_empty() => {
                out.push(' ');
                emit_map(out, e, indent + 2, true);
            }
            other => emit_after_colon(out, other, indent),
        }
    }
}

/// Write a sequence as YAML. `parse(&write(m))` gives back `m` (positions aside).
pub fn write(seq: &Sequence) -> String {
    let mut top: Vec<(String, Out)> = Vec::new();
    let mut attrs = &seq.attrs[..];
    if let Some((k, v)) = attrs.first() {
        if k == "name" {
            top.push(("name".into(), s_out(v)));
            attrs = &attrs[1..];
        }
    }
    if !attrs.is_empty() {
        top.push(("attributes".into(), raw_attrs_out(attrs)));
    }
    if let Some(src) = source_out(&seq.shape) {
        top.push(("source".into(), src));
    }
    if !seq.global_vars.is_empty() {
        top.push(("variables".into(), vars_out(&seq.global_vars, false)));
    }
    top.push(("steps".into(), nodes_out(&seq.items)));
    if !seq.extra_xml.is_empty() {
        top.push(("xml_extra".into(), strings_out(&seq.extra_xml)));
    }
    let mut out = String::new();
    emit_map(&mut out, &top, 0, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Sequence, ParseError> {
        parse(text, Path::new("t.yaml"))
    }

    fn err_at(text: &str) -> (u32, u32, String) {
        let e = p(text).unwrap_err();
        (e.line, e.column, e.message)
    }

    #[test]
    fn tricky_strings_round_trip_as_values_and_keys() {
        let tricky = [
            "",
            " ",
            " x ",
            "True",
            "true",
            "no",
            "NO",
            "null",
            "~",
            "0",
            "3010",
            "1e3",
            "0x10",
            "-1",
            "+1",
            ".5",
            ".inf",
            "a: b",
            "a:",
            "#",
            "a #b",
            "- x",
            "? x",
            "&a",
            "*a",
            "!x",
            "|",
            ">",
            "'",
            "\"",
            "%x%",
            "@x",
            "`x`",
            "{a}",
            "[a]",
            "a\tb",
            "\t",
            "a\nb",
            "a\r\nb",
            "\u{0}\u{1}\u{7f}\u{85}\u{2028}\u{feff}",
            "日本語 é",
            "...",
            "---",
            "<<",
            "\\\\server\\share\\%_SMSTSClientGuid%-smsts.log",
            "C:\\Windows",
            "cp \"a\" 'b'",
            "=",
        ];
        for t in tricky {
            let mut seq = Sequence::default();
            seq.attrs.push(("name".into(), t.into()));
            seq.global_vars.push(Variable::new(t, t));
            seq.items.push(Node::Step(Step {
                attrs: vec![
                    ("timeout".into(), t.into()),
                    ("continueOnError".into(), t.into()),
                ],
                action: Some(t.into()),
                ..Default::default()
            }));
            let text = write(&seq);
            let back = p(&text).unwrap_or_else(|e| panic!("{t:?}: {e}\n{text}"));
            assert_eq!(back, seq, "{t:?}\n{text}");
        }
    }

    #[test]
    fn long_keys_use_explicit_form() {
        let long = "k".repeat(3000);
        let mut seq = Sequence::default();
        seq.global_vars.push(Variable::new(long.clone(), "v"));
        seq.global_vars.push(Variable {
            name: long.clone() + "x",
            attrs: vec![("hidden".into(), "true".into())],
            value: "v".into(),
            pos: Pos::default(),
        });
        let text = write(&seq);
        assert!(text.contains("? "));
        assert_eq!(p(&text).unwrap(), seq);
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

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        let s = p("variables:\n  A: &x hello\n  B: *x\nsteps: []\n").unwrap();
        assert_eq!(s.global_vars[1].value, "hello");
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(p(&bomb).unwrap_err().message.contains("too large"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("steps: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(p(&text).is_err());
    }
}
