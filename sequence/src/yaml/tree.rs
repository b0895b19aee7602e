//! Reading, stage 1: YAML text → a small tree of positioned nodes.
//!
//! Reading goes through `saphyr-parser`'s event API: the events are assembled into a tree whose
//! every node carries its line and column, aliases expanded. The limits that keep a hostile
//! document from exhausting the stack or memory are enforced here ([`MAX_DEPTH`], [`MAX_NODES`]).
//!
//! General YAML: nothing here knows the sequence format's keys or values (that is `read`'s
//! part); only the rule that a file holds one document is checked here. It uses
//! `saphyr-parser`, [`ParseError`] and the model's [`Pos`].

use crate::error::ParseError;
use crate::model::Pos;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub(super) struct YNode {
    pub(super) pos: Pos,
    pub(super) kind: YKind,
}

#[derive(Debug, Clone)]
pub(super) enum YKind {
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

/// The single YAML document of `text` as a tree; `None` for a stream without a document.
/// `file` is used in error messages only.
pub(super) fn load(text: &str, file: &Path) -> Result<Option<YNode>, ParseError> {
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        file,
        anchors: HashMap::new(),
        nodes: 0,
    };
    loader.document()
}

#[cfg(test)]
mod tests {
    use crate::error::ParseError;
    use crate::model::Sequence;
    use crate::yaml::parse;
    use std::path::Path;

    fn p(text: &str) -> Result<Sequence, ParseError> {
        parse(text, Path::new("t.yaml"))
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
