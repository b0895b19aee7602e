//! Known limits the fuzzers would otherwise keep finding. (K1, a panic on multi-byte variable
//! names, and K2, env-file names ending in `<`, are fixed and have regression tests.) With
//! `FUZZ_SKIP_KNOWN=1` in the environment (fuzz/run.sh sets it unless told otherwise) the
//! targets step around them, so a run looks for *new* bugs instead of finding the same one
//! again. Remove an entry once its bug is fixed.
#![allow(dead_code)]

use std::sync::OnceLock;

pub fn skip() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var_os("FUZZ_SKIP_KNOWN").is_some_and(|v| v != "0"))
}

/// A plain XML name (ASCII subset: enough to tell typos and junk from real attribute names).
pub fn xml_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':' || !f.is_ascii())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "._:-".contains(ch) || !ch.is_ascii())
}

/// K3: the YAML reader accepts any string as an attribute name (`attributes: {"a b": x}`), and
/// the XML writer writes it verbatim, so `convert --to xml` writes XML that does not parse.
/// K4: the same for raw XML taken from YAML (`xml_extra`, WMI `raw`, wrapper properties): it
/// is not checked to be well-formed and is written as is.
/// `tsforge convert` refuses such models and `tsforge validate` reports them; the library's
/// `xml::write` still cannot represent them, so the XML round-trip check skips them.
pub fn k3_k4_model(seq: &tsforge_runtime::sequence::Sequence) -> bool {
    use tsforge_runtime::sequence::{Attrs, Condition, Node, Shape, Variable};
    if !skip() {
        return false;
    }
    fn bad(a: &Attrs) -> bool {
        a.iter().any(|(k, _)| !xml_name(k))
    }
    fn vars(v: &[Variable]) -> bool {
        v.iter().any(|v| bad(&v.attrs))
    }
    fn cond(c: &[Condition]) -> bool {
        c.iter().any(|c| match c {
            Condition::Operator {
                attrs, children, ..
            } => bad(attrs) || cond(children),
            Condition::Expression(e) => bad(&e.attrs) || vars(&e.vars),
        })
    }
    fn nodes(n: &[Node]) -> bool {
        n.iter().any(|n| match n {
            Node::Group(g) => {
                bad(&g.attrs) || !g.extra_xml.is_empty() || cond(&g.condition) || nodes(&g.children)
            }
            Node::Step(s) => {
                bad(&s.attrs) || !s.extra_xml.is_empty() || cond(&s.condition) || vars(&s.vars)
            }
        })
    }
    seq.shape != Shape::Sequence
        || !seq.extra_xml.is_empty()
        || bad(&seq.attrs)
        || vars(&seq.global_vars)
        || nodes(&seq.items)
}
