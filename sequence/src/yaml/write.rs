//! Writing: model → a small tree of YAML values → block-style text.
//!
//! A small hand-written emitter for the fixed block structure; any string that a YAML reader
//! could take for something else is written double-quoted with escapes. The short forms
//! (`run:`, short `type:` names, `variable:`/`file:`/`folder:`/`wmi:` conditions) are chosen
//! only where they read back to the same model (the mapping is lossless, see `super`).
//!
//! It uses the model and this format's shared tables (`super`); it does not read YAML.

use super::{FILE_OPTS, FOLDER_OPTS};
use crate::model::{
    expr_type, step_type, Condition, Expression, Extra, Group, Node, Part, Sequence, Shape, Step,
    StepElement, Variable, GROUP_ATTRS, STEP_ATTRS,
};

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
    if st.element != StepElement::Step {
        m.push(("element".into(), Out::Scalar(st.element.xml_name().into())));
    }
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
    if !st.order.is_empty() {
        m.push(("xml_order".into(), order_out(&st.order)));
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
    if !g.order.is_empty() {
        m.push(("xml_order".into(), order_out(&g.order)));
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

fn order_out(order: &[Part]) -> Out {
    Out::List(
        order
            .iter()
            .map(|p| Out::Scalar(p.name().to_string()))
            .collect(),
    )
}

fn strings_out(v: &[Extra]) -> Out {
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
    if !seq.order.is_empty() {
        top.push(("xml_order".into(), order_out(&seq.order)));
    }
    let mut out = String::new();
    emit_map(&mut out, &top, 0, false);
    out
}
