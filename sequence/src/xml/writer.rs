//! The XML writer: model → ConfigMgr/MDT task sequence XML.
//!
//! It produces the shape recorded in [`Sequence::shape`], with 2-space indentation and escaped
//! text, so that `parse(&write(&seq)) == seq` for every model `parse` produces.
//!
//! It uses the model, and the reader (`super::reader`) only to tell whether a wrapper property's
//! value reads back as markup (so that it can be written verbatim).

use super::reader::{is_ws_char, Ctx, Expected, Kid, Loc, Parser};
use crate::model::{layout, Condition, Extra, Node, Part, Sequence, Shape, Variable, WmiProperty};
use std::path::Path;

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>";

/// What [`is_markup`] parses: a value wrapped in `<x>` (its messages are never shown).
const FRAGMENT: Expected = Expected {
    root: "<x>",
    empty: "empty fragment",
};

/// Write a sequence as XML in the shape it was read from (`seq.shape`).
pub fn write(seq: &Sequence) -> String {
    let mut w = String::with_capacity(4096);
    w.push_str(XML_DECL);
    w.push('\n');
    match &seq.shape {
        Shape::Sequence => write_sequence(&mut w, seq, 0),
        Shape::PackageWrapper { properties } => {
            w.push_str("<SmsTaskSequencePackage");
            for (k, v) in properties {
                if let Some(a) = k.strip_prefix('@') {
                    push_attr(&mut w, a, v);
                }
            }
            w.push_str(">\n");
            let mut done = false;
            for (k, v) in properties.iter().filter(|(k, _)| !k.starts_with('@')) {
                if !done && k.to_ascii_lowercase().as_str() > "sequencedata" {
                    write_sequence_data(&mut w, seq);
                    done = true;
                }
                indent(&mut w, 1);
                if v.is_empty() {
                    w.push_str(&format!("<{k} />\n"));
                } else if is_markup(v) {
                    w.push_str(&format!("<{k}>{v}</{k}>\n"));
                } else {
                    w.push_str(&format!("<{k}>{}</{k}>\n", esc_text(v)));
                }
            }
            if !done {
                write_sequence_data(&mut w, seq);
            }
            w.push_str("</SmsTaskSequencePackage>\n");
        }
        Shape::WmiInstance {
            class_name,
            properties,
        } => {
            w.push_str("<INSTANCE");
            push_attr(&mut w, "CLASSNAME", class_name);
            for p in properties {
                if let (Some(a), None) = (p.name.strip_prefix('@'), &p.raw) {
                    push_attr(&mut w, a, p.value.as_deref().unwrap_or(""));
                }
            }
            w.push_str(">\n");
            let mut done = false;
            for p in properties
                .iter()
                .filter(|p| !(p.name.starts_with('@') && p.raw.is_none()))
            {
                if !done && p.name.to_ascii_lowercase().as_str() > "sequence" {
                    write_sequence_property(&mut w, seq);
                    done = true;
                }
                indent(&mut w, 1);
                write_wmi_property(&mut w, p);
                w.push('\n');
            }
            if !done {
                write_sequence_property(&mut w, seq);
            }
            w.push_str("</INSTANCE>\n");
        }
    }
    w
}

fn write_sequence_data(w: &mut String, seq: &Sequence) {
    indent(w, 1);
    w.push_str("<SequenceData>\n");
    write_sequence(w, seq, 2);
    indent(w, 1);
    w.push_str("</SequenceData>\n");
}

fn write_sequence_property(w: &mut String, seq: &Sequence) {
    let mut inner = String::new();
    write_sequence(&mut inner, seq, 0);
    let inner = inner.trim_end_matches('\n');
    indent(w, 1);
    w.push_str("<PROPERTY NAME=\"Sequence\" TYPE=\"string\"><VALUE><![CDATA[");
    w.push_str(&inner.replace("]]>", "]]]]><![CDATA[>"));
    w.push_str("]]></VALUE></PROPERTY>\n");
}

fn write_wmi_property(w: &mut String, p: &WmiProperty) {
    if let Some(raw) = &p.raw {
        if raw_is_whole_element(raw) || (p.name.is_empty() && p.attrs.is_empty()) {
            w.push_str(raw);
            return;
        }
    }
    w.push_str("<PROPERTY");
    push_attr(w, "NAME", &p.name);
    for (k, v) in &p.attrs {
        push_attr(w, k, v);
    }
    match (&p.raw, &p.value) {
        (Some(raw), _) => {
            w.push('>');
            w.push_str(raw);
            w.push_str("</PROPERTY>");
        }
        (None, Some(v)) => {
            w.push_str("><VALUE>");
            w.push_str(&esc_text(v));
            w.push_str("</VALUE></PROPERTY>");
        }
        (None, None) => w.push_str(" />"),
    }
}

/// A raw WMI value that is a whole `<PROPERTY.ARRAY>`/`<PROPERTY.REFERENCE>` element.
fn raw_is_whole_element(raw: &str) -> bool {
    raw.strip_prefix("<PROPERTY")
        .is_some_and(|r| r.starts_with(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
}

/// Does a wrapper property value read back as markup (so it can be written verbatim)?
fn is_markup(v: &str) -> bool {
    if !v.contains('<') || v.contains('\r') || v.trim_matches(is_ws_char) != v {
        return false;
    }
    let doc = format!("<x>{v}</x>");
    let ctx = Ctx::new(Path::new(""), &doc);
    let loc = Loc {
        ctx: &ctx,
        map: None,
    };
    let mut p = Parser::new(&doc, 0, doc.len(), loc);
    match p.document(FRAGMENT) {
        Ok(root) => root.kids.iter().any(|k| !matches!(k, Kid::Text(_))),
        Err(_) => false,
    }
}

fn indent(w: &mut String, level: usize) {
    for _ in 0..level {
        w.push_str("  ");
    }
}

fn push_attr(w: &mut String, name: &str, value: &str) {
    w.push(' ');
    w.push_str(name);
    w.push_str("=\"");
    for c in value.chars() {
        match c {
            '&' => w.push_str("&amp;"),
            '<' => w.push_str("&lt;"),
            '>' => w.push_str("&gt;"),
            '"' => w.push_str("&quot;"),
            '\t' => w.push_str("&#9;"),
            '\n' => w.push_str("&#10;"),
            '\r' => w.push_str("&#13;"),
            c => w.push(c),
        }
    }
    w.push('"');
}

fn push_attrs(w: &mut String, attrs: &[(String, String)]) {
    for (k, v) in attrs {
        push_attr(w, k, v);
    }
}

fn esc_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

fn write_sequence(w: &mut String, seq: &Sequence, level: usize) {
    indent(w, level);
    w.push_str("<sequence");
    push_attrs(w, &seq.attrs);
    if seq.global_vars.is_empty() && seq.items.is_empty() && seq.extra_xml.is_empty() {
        w.push_str(" />\n");
        return;
    }
    w.push_str(">\n");
    let mut k = Kids::default();
    for part in layout(&seq.order, &seq.parts()) {
        match part {
            Part::GlobalVars => write_var_list(w, "globalVarList", &seq.global_vars, level + 1),
            Part::Node => k.node(w, &seq.items, level + 1),
            Part::Extra => k.extra(w, &seq.extra_xml, level + 1),
            Part::Condition | Part::Action | Part::Vars => {}
        }
    }
    indent(w, level);
    w.push_str("</sequence>\n");
}

/// How many groups/steps and raw elements of a container were written so far.
#[derive(Default)]
struct Kids {
    nodes: usize,
    extras: usize,
}

impl Kids {
    fn node(&mut self, w: &mut String, nodes: &[Node], level: usize) {
        if let Some(n) = nodes.get(self.nodes) {
            write_node(w, n, level);
            self.nodes += 1;
        }
    }
    fn extra(&mut self, w: &mut String, extra: &[Extra], level: usize) {
        if let Some(x) = extra.get(self.extras) {
            indent(w, level);
            w.push_str(x);
            w.push('\n');
            self.extras += 1;
        }
    }
}

fn write_var_list(w: &mut String, tag: &str, vars: &[Variable], level: usize) {
    indent(w, level);
    w.push_str(&format!("<{tag}>\n"));
    for v in vars {
        write_variable(w, v, level + 1);
    }
    indent(w, level);
    w.push_str(&format!("</{tag}>\n"));
}

fn write_variable(w: &mut String, v: &Variable, level: usize) {
    indent(w, level);
    w.push_str("<variable");
    push_attr(w, "name", &v.name);
    push_attrs(w, &v.attrs);
    if v.value.is_empty() {
        w.push_str(" />\n");
    } else {
        w.push('>');
        w.push_str(&esc_text(&v.value));
        w.push_str("</variable>\n");
    }
}

fn write_conditions(w: &mut String, conds: &[Condition], level: usize) {
    if conds.is_empty() {
        return;
    }
    indent(w, level);
    w.push_str("<condition>\n");
    for c in conds {
        write_condition(w, c, level + 1);
    }
    indent(w, level);
    w.push_str("</condition>\n");
}

fn write_condition(w: &mut String, c: &Condition, level: usize) {
    indent(w, level);
    match c {
        Condition::Operator {
            kind,
            attrs,
            children,
            ..
        } => {
            w.push_str("<operator");
            push_attr(w, "type", kind.as_xml());
            push_attrs(w, attrs);
            if children.is_empty() {
                w.push_str(" />\n");
                return;
            }
            w.push_str(">\n");
            for ch in children {
                write_condition(w, ch, level + 1);
            }
            indent(w, level);
            w.push_str("</operator>\n");
        }
        Condition::Expression(e) => {
            w.push_str("<expression");
            push_attr(w, "type", &e.kind);
            push_attrs(w, &e.attrs);
            if e.vars.is_empty() {
                w.push_str(" />\n");
                return;
            }
            w.push_str(">\n");
            for v in &e.vars {
                write_variable(w, v, level + 1);
            }
            indent(w, level);
            w.push_str("</expression>\n");
        }
    }
}

fn write_node(w: &mut String, n: &Node, level: usize) {
    indent(w, level);
    match n {
        Node::Group(g) => {
            w.push_str("<group");
            push_attrs(w, &g.attrs);
            if g.condition.is_empty() && g.children.is_empty() && g.extra_xml.is_empty() {
                w.push_str(" />\n");
                return;
            }
            w.push_str(">\n");
            let mut k = Kids::default();
            for part in layout(&g.order, &g.parts()) {
                match part {
                    Part::Condition => write_conditions(w, &g.condition, level + 1),
                    Part::Node => k.node(w, &g.children, level + 1),
                    Part::Extra => k.extra(w, &g.extra_xml, level + 1),
                    Part::GlobalVars | Part::Action | Part::Vars => {}
                }
            }
            indent(w, level);
            w.push_str("</group>\n");
        }
        Node::Step(s) => {
            let tag = s.element.xml_name();
            w.push('<');
            w.push_str(tag);
            push_attrs(w, &s.attrs);
            if s.condition.is_empty()
                && s.action.is_none()
                && s.vars.is_empty()
                && s.extra_xml.is_empty()
            {
                w.push_str(" />\n");
                return;
            }
            w.push_str(">\n");
            let mut k = Kids::default();
            for part in layout(&s.order, &s.parts()) {
                match part {
                    Part::Condition => write_conditions(w, &s.condition, level + 1),
                    Part::Action => {
                        if let Some(a) = &s.action {
                            indent(w, level + 1);
                            w.push_str("<action>");
                            w.push_str(&esc_text(a));
                            w.push_str("</action>\n");
                        }
                    }
                    Part::Vars => write_var_list(w, "defaultVarList", &s.vars, level + 1),
                    Part::Extra => k.extra(w, &s.extra_xml, level + 1),
                    Part::GlobalVars | Part::Node => {}
                }
            }
            indent(w, level);
            w.push_str("</");
            w.push_str(tag);
            w.push_str(">\n");
        }
    }
}
