//! ConfigMgr 2007 / MDT task sequence XML: reader and writer.
//!
//! Three file shapes are read, chosen from the root element:
//!
//! * `<sequence>` as the root (MDT `ts.xml`, templates, our own output) → [`Shape::Sequence`];
//! * `<SmsTaskSequencePackage>` with the sequence under `<SequenceData>` (MDT's ConfigMgr
//!   templates) → [`Shape::PackageWrapper`]; the other child elements are kept as
//!   (name, text) pairs, a child holding markup keeps that markup as raw XML text, and
//!   attributes of the wrapper element itself (`xmlns:xsi`, …) are kept as pairs whose name is
//!   the attribute name prefixed with `@` (element names cannot start with `@`);
//! * ConfigMgr's *Export Task Sequence* `object.xml`, a WMI `<INSTANCE>` (found anywhere in the
//!   document) whose `Sequence` property holds the sequence XML as text → [`Shape::WmiInstance`].
//!   The sequence text is parsed a second time; positions in errors and in the model still point
//!   into the outer file (exactly for a CDATA value, entity by entity for an escaped value).
//!   `<PROPERTY>`s with a single plain `<VALUE>` keep its text; any other content of a
//!   `<PROPERTY>` (`<VALUE.ARRAY>`, qualifiers, …) is kept as raw XML in `raw`. Other children of
//!   the instance (`<PROPERTY.ARRAY>`, `<PROPERTY.REFERENCE>`, `<QUALIFIER>`, …) are kept as a
//!   whole element in `raw` (with `name`/`attrs` filled from their attributes for
//!   `PROPERTY.*`, empty otherwise); attributes of `<INSTANCE>` other than `CLASSNAME` become
//!   properties named `@attribute` with the attribute value as `value`.
//!
//! The reader is a small, strict, non-validating XML 1.0 parser written for this purpose (rather
//! than on top of a streaming tokenizer) so that every node knows the exact byte range it was read
//! from: that is what gives exact `line:column` positions, verbatim raw XML for elements tsforge
//! does not interpret, and the offset mapping into an outer file for `object.xml`. It handles the
//! predefined entities and character references, CDATA sections, comments, processing
//! instructions and CRLF or LF line ends (normalised to LF as XML requires; attribute values
//! are normalised as XML requires too: a literal tab or line end becomes a space, while `&#10;`
//! stays a line feed). DTDs are rejected. It never panics and limits nesting to
//! [`MAX_DEPTH`] levels.
//!
//! Text is kept exactly: variable values and `<action>` text are not trimmed (a whitespace-only
//! value is a value); only whitespace between the child elements of containers is ignored.
//!
//! The writer produces the shape recorded in [`Sequence::shape`], with 2-space indentation and
//! escaped text, so that `parse(&write(&seq)) == seq` for every model `parse` produces.

use super::model::{
    Condition, Expression, Group, Node, OperatorKind, Pos, Sequence, Shape, Step, Variable,
    WmiProperty,
};
use crate::error::ParseError;
use std::path::Path;

/// Elements nested deeper than this are rejected (protects the recursive reader's stack).
pub const MAX_DEPTH: usize = 256;

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>";

/// Parse ConfigMgr/MDT task sequence XML (any of the three shapes). `file` names the input in
/// errors, which carry the 1-based line and column (in characters) of the problem.
pub fn parse(text: &str, file: &Path) -> Result<Sequence, ParseError> {
    let ctx = Ctx::new(file, text);
    let loc = Loc {
        ctx: &ctx,
        map: None,
    };
    let mut p = Parser::new(text, 0, text.len(), loc, false);
    let root = p.document()?;
    let b = Builder { loc, src: text };
    match root.name {
        "sequence" => b.sequence(&root, Shape::Sequence),
        "SmsTaskSequencePackage" => b.package(&root),
        _ => match find_instance(&root) {
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

// ---------------------------------------------------------------------------------------------
// Positions
// ---------------------------------------------------------------------------------------------

/// The outer file: name, text and where its lines start.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ctx {
            file,
            text,
            line_starts,
        }
    }

    /// Line and column (1-based, column in characters) of a byte offset of the outer text.
    fn pos(&self, off: usize) -> Pos {
        let off = off.min(self.text.len());
        let idx = self.line_starts.partition_point(|&s| s <= off);
        let start = self
            .line_starts
            .get(idx.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let col = match self.text.get(start..off) {
            Some(s) => s.chars().count(),
            None => off.saturating_sub(start),
        };
        Pos::new(to_u32(idx.max(1)), to_u32(col + 1))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One piece of a decoded text: output offset `out` came from outer offset `src`; a literal
/// piece maps byte for byte, an entity maps every output byte to the `&`.
#[derive(Debug, Clone, Copy)]
struct Seg {
    out: usize,
    src: usize,
    literal: bool,
}

/// Turns offsets of the text being parsed into positions in the outer file.
#[derive(Clone, Copy)]
struct Loc<'a> {
    ctx: &'a Ctx<'a>,
    /// Present when the text being parsed is a decoded copy (an entity-escaped Sequence value).
    map: Option<&'a [Seg]>,
}

impl Loc<'_> {
    fn outer(&self, off: usize) -> usize {
        match self.map {
            None => off,
            Some(map) => {
                let idx = map.partition_point(|s| s.out <= off);
                match map.get(idx.saturating_sub(1)) {
                    Some(seg) if seg.literal => seg.src + (off - seg.out.min(off)),
                    Some(seg) => seg.src,
                    None => 0,
                }
            }
        }
    }
    fn pos(&self, off: usize) -> Pos {
        self.ctx.pos(self.outer(off))
    }
    fn at(&self, off: usize) -> String {
        let p = self.pos(off);
        format!("{}:{}", p.line, p.column)
    }
    fn err(&self, off: usize, message: impl Into<String>) -> ParseError {
        let p = self.pos(off);
        ParseError::new(self.ctx.file, p.line, p.column, message)
    }
}

// ---------------------------------------------------------------------------------------------
// The XML reader: text → a small element tree with byte ranges
// ---------------------------------------------------------------------------------------------

struct Attr<'a> {
    name: &'a str,
    value: String,
}

struct El<'a> {
    name: &'a str,
    attrs: Vec<Attr<'a>>,
    kids: Vec<Kid<'a>>,
    /// Offset of `<`.
    start: usize,
    /// Content range (between the start tag's `>` and the end tag's `<`; empty for `<x/>`).
    inner: (usize, usize),
    /// Offset just after the final `>`.
    end: usize,
}

enum Kid<'a> {
    El(El<'a>),
    Text(Text),
    /// A comment or processing instruction.
    Misc,
}

struct Text {
    value: String,
    start: usize,
    end: usize,
    /// Content range of the CDATA section when the run is one CDATA section with at most
    /// whitespace around it.
    sole_cdata: Option<(usize, usize)>,
}

impl<'a> El<'a> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }
    fn attrs_except(&self, skip: &str) -> Vec<(String, String)> {
        self.attrs
            .iter()
            .filter(|a| a.name != skip)
            .map(|a| (a.name.to_string(), a.value.clone()))
            .collect()
    }
    fn elements(&self) -> impl Iterator<Item = &El<'a>> {
        self.kids.iter().filter_map(|k| match k {
            Kid::El(e) => Some(e),
            _ => None,
        })
    }
    /// `<group name="Install">`, for messages.
    fn describe(&self) -> String {
        describe(self.name, &self.attrs)
    }
}

fn describe(name: &str, attrs: &[Attr<'_>]) -> String {
    match attrs.iter().find(|a| a.name == "name") {
        Some(a) => format!("<{name} name=\"{}\">", a.value),
        None => format!("<{name}>"),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn all_ws(s: &str) -> bool {
    s.bytes().all(is_ws)
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// `s[a..b]`, or `""` if the range is not valid (never panics).
fn sl(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or("")
}

/// CRLF and lone CR → LF.
fn normalize_newlines(s: &str) -> String {
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s.to_string()
    }
}

/// Append `s[a..b]` (literal text) to `out`, normalising line ends and recording the mapping.
fn push_literal(out: &mut String, s: &str, a: usize, b: usize, mut map: Option<&mut Vec<Seg>>) {
    let piece = sl(s, a, b);
    if let Some(m) = map.as_deref_mut() {
        m.push(Seg {
            out: out.len(),
            src: a,
            literal: true,
        });
    }
    let bytes = piece.as_bytes();
    let mut run = 0;
    let mut k = 0;
    while k < bytes.len() {
        if bytes[k] == b'\r' {
            out.push_str(sl(piece, run, k));
            out.push('\n');
            k += if bytes.get(k + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            run = k;
            if let Some(m) = map.as_deref_mut() {
                m.push(Seg {
                    out: out.len(),
                    src: a + k,
                    literal: true,
                });
            }
        } else {
            k += 1;
        }
    }
    out.push_str(sl(piece, run, bytes.len()));
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    loc: Loc<'a>,
    /// Parsing the text of an object.xml `Sequence` property (for messages).
    embedded: bool,
}

impl<'a> Parser<'a> {
    /// A parser over `text[start..end]` whose offsets are offsets of `text`.
    fn new(text: &'a str, start: usize, end: usize, loc: Loc<'a>, embedded: bool) -> Self {
        let s = text.get(..end).unwrap_or(text);
        Parser {
            s,
            b: s.as_bytes(),
            i: start.min(s.len()),
            loc,
            embedded,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn starts(&self, pat: &str) -> bool {
        self.b
            .get(self.i..)
            .is_some_and(|r| r.starts_with(pat.as_bytes()))
    }

    fn find(&self, from: usize, pat: &str) -> Option<usize> {
        self.s.get(from..)?.find(pat).map(|k| from + k)
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
        self.i > start
    }

    fn name(&mut self) -> Option<&'a str> {
        let start = self.i;
        if !self.peek().is_some_and(is_name_start) {
            return None;
        }
        while self.peek().is_some_and(is_name_char) {
            self.i += 1;
        }
        let s: &'a str = self.s;
        s.get(start..self.i)
    }

    /// What is at the cursor, for messages.
    fn found(&self) -> String {
        match self.s.get(self.i..).and_then(|r| r.chars().next()) {
            None => "end of file".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn err(&self, off: usize, msg: impl Into<String>) -> ParseError {
        self.loc.err(off, msg)
    }

    /// Skip `<!-- … -->` or `<? … ?>` at the cursor.
    fn misc(&mut self) -> Result<(), ParseError> {
        let start = self.i;
        let (close, what) = if self.starts("<!--") {
            ("-->", "comment")
        } else {
            ("?>", "processing instruction")
        };
        match self.find(start + 2, close) {
            Some(k) => {
                self.i = k + close.len();
                Ok(())
            }
            None => Err(self.err(
                start,
                format!("{what} is never closed (expected {close} before the end of the file)"),
            )),
        }
    }

    /// The whole document: prolog, exactly one root element, epilog.
    fn document(&mut self) -> Result<El<'a>, ParseError> {
        if self.starts("\u{feff}") {
            self.i += 3;
        }
        loop {
            self.skip_ws();
            if self.starts("<?") || self.starts("<!--") {
                self.misc()?;
            } else if self.starts("<!DOCTYPE") {
                return Err(self.err(self.i, "DOCTYPE declarations are not supported"));
            } else if self.starts("</") {
                return Err(self.err(
                    self.i,
                    "unexpected end tag before the root element (expected a start tag such as <sequence>)",
                ));
            } else if self.peek() == Some(b'<') {
                break;
            } else if self.peek().is_none() {
                let msg = if self.embedded {
                    "the Sequence property is empty: expected a <sequence> element"
                } else {
                    "empty file: expected an XML root element such as <sequence>"
                };
                return Err(self.err(self.i, msg));
            } else {
                return Err(self.err(
                    self.i,
                    format!(
                        "expected '<' to start the root element (such as <sequence>), found {}",
                        self.found()
                    ),
                ));
            }
        }
        let root = self.element()?;
        loop {
            self.skip_ws();
            if self.peek().is_none() {
                return Ok(root);
            }
            if self.starts("<?") || self.starts("<!--") {
                self.misc()?;
                continue;
            }
            let what = if self.starts("</") {
                "end tag".to_string()
            } else if self.peek() == Some(b'<') {
                "second root element".to_string()
            } else {
                format!("text {}", self.found())
            };
            return Err(self.err(
                self.i,
                format!(
                    "unexpected {what} after the root element {} (closed at {}): \
                     a document has exactly one root element",
                    root.describe(),
                    self.loc.at(root.end.saturating_sub(1))
                ),
            ));
        }
    }

    /// A start tag at the cursor (`<`): name, attributes, and whether it is empty (`/>`).
    fn start_tag(&mut self) -> Result<(&'a str, Vec<Attr<'a>>, bool), ParseError> {
        let start = self.i;
        self.i += 1;
        let Some(name) = self.name() else {
            return Err(self.err(
                self.i,
                format!("expected an element name after '<', found {}", self.found()),
            ));
        };
        let mut attrs: Vec<Attr<'a>> = Vec::new();
        loop {
            let had_ws = self.skip_ws();
            match self.peek() {
                None => {
                    return Err(self.err(
                        self.i,
                        format!(
                            "end of file inside the start tag <{name}> begun at {} (expected '>')",
                            self.loc.at(start)
                        ),
                    ))
                }
                Some(b'>') => {
                    self.i += 1;
                    return Ok((name, attrs, false));
                }
                Some(b'/') => {
                    if self.starts("/>") {
                        self.i += 2;
                        return Ok((name, attrs, true));
                    }
                    return Err(self.err(
                        self.i,
                        format!("expected '/>' or '>' to end the start tag <{name}>"),
                    ));
                }
                Some(_) => {
                    let aoff = self.i;
                    let Some(an) = self.name() else {
                        return Err(self.err(
                            aoff,
                            format!(
                                "expected an attribute name, '>' or '/>' in <{name}>, found {}",
                                self.found()
                            ),
                        ));
                    };
                    if !had_ws {
                        return Err(self.err(
                            aoff,
                            format!("expected whitespace before attribute {an} in <{name}>"),
                        ));
                    }
                    self.skip_ws();
                    if self.peek() != Some(b'=') {
                        return Err(self.err(
                            self.i,
                            format!(
                                "expected '=' after attribute name {an} in <{name}>, found {}",
                                self.found()
                            ),
                        ));
                    }
                    self.i += 1;
                    self.skip_ws();
                    let quote = match self.peek() {
                        Some(q @ (b'"' | b'\'')) => q,
                        _ => {
                            return Err(self.err(
                                self.i,
                                format!(
                                "expected a quoted value for attribute {an} in <{name}>, found {}",
                                self.found()
                            ),
                            ))
                        }
                    };
                    let qoff = self.i;
                    let vstart = qoff + 1;
                    let close = self
                        .b
                        .get(vstart..)
                        .and_then(|r| r.iter().position(|&c| c == quote))
                        .map(|k| vstart + k);
                    let Some(close) = close else {
                        return Err(self.err(
                            qoff,
                            format!(
                                "the value of attribute {an} in <{name}> is never closed (missing {})",
                                quote as char
                            ),
                        ));
                    };
                    let value = self.attr_value(vstart, close)?;
                    if attrs.iter().any(|a| a.name == an) {
                        return Err(self.err(aoff, format!("duplicate attribute {an} in <{name}>")));
                    }
                    attrs.push(Attr { name: an, value });
                    self.i = close + 1;
                }
            }
        }
    }

    /// An element starting at `<` at the cursor, with everything inside it. Iterative (an
    /// explicit stack of open elements), so hostile nesting cannot exhaust the call stack.
    fn element(&mut self) -> Result<El<'a>, ParseError> {
        let mut open: Vec<El<'a>> = Vec::new();
        loop {
            // At a start tag.
            let start = self.i;
            let (name, attrs, empty) = self.start_tag()?;
            let mut el = El {
                name,
                attrs,
                kids: Vec::new(),
                start,
                inner: (self.i, self.i),
                end: self.i,
            };
            if !empty {
                if open.len() >= MAX_DEPTH {
                    return Err(self.err(
                        start,
                        format!("elements are nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
                open.push(el);
            } else if let Some(parent) = open.last_mut() {
                parent.kids.push(Kid::El(el));
            } else {
                return Ok(el);
            }
            // Content of the innermost open element, up to its next child start tag.
            while let Some(cur) = open.last_mut() {
                if self.peek().is_none() {
                    return Err(self.err(
                        self.i,
                        format!(
                            "unexpected end of file: {} opened at {} is not closed (expected </{}>)",
                            cur.describe(),
                            self.loc.at(cur.start),
                            cur.name
                        ),
                    ));
                }
                if self.starts("</") {
                    let close = self.i;
                    self.i += 2;
                    let Some(en) = self.name() else {
                        return Err(self.err(
                            self.i,
                            format!(
                                "expected an element name after '</', found {}",
                                self.found()
                            ),
                        ));
                    };
                    if en != cur.name {
                        return Err(self.err(
                            close,
                            format!(
                                "expected </{}> to close {} opened at {}, found </{en}>",
                                cur.name,
                                cur.describe(),
                                self.loc.at(cur.start)
                            ),
                        ));
                    }
                    self.skip_ws();
                    if self.peek() != Some(b'>') {
                        return Err(self.err(
                            self.i,
                            format!("expected '>' to end </{en}>, found {}", self.found()),
                        ));
                    }
                    self.i += 1;
                    cur.inner.1 = close;
                    cur.end = self.i;
                    el = match open.pop() {
                        Some(done) => done,
                        None => break,
                    };
                    match open.last_mut() {
                        Some(parent) => parent.kids.push(Kid::El(el)),
                        None => return Ok(el),
                    }
                } else if self.starts("<!--") || self.starts("<?") {
                    self.misc()?;
                    cur.kids.push(Kid::Misc);
                } else if self.starts("<![CDATA[") || self.peek() != Some(b'<') {
                    let t = self.text_run(None)?;
                    if let Some(cur) = open.last_mut() {
                        cur.kids.push(Kid::Text(t));
                    }
                } else if self.starts("<!") {
                    return Err(self.err(
                        self.i,
                        "unexpected '<!' markup: only comments (<!-- -->) and CDATA sections \
                         are allowed in content",
                    ));
                } else {
                    break; // a child start tag
                }
            }
        }
    }

    /// Character data (text, references and CDATA sections) up to the next tag.
    fn text_run(&mut self, mut map: Option<&mut Vec<Seg>>) -> Result<Text, ParseError> {
        let start = self.i;
        let mut out = String::new();
        let mut cdata = None;
        let mut cdata_count = 0usize;
        let mut other = false;
        loop {
            match self.peek() {
                None => break,
                Some(b'<') => {
                    if !self.starts("<![CDATA[") {
                        break;
                    }
                    let cs = self.i + 9;
                    let Some(ce) = self.find(cs, "]]>") else {
                        return Err(self.err(
                            self.i,
                            "CDATA section is never closed (expected ]]> before the end of the file)",
                        ));
                    };
                    push_literal(&mut out, self.s, cs, ce, map.as_deref_mut());
                    cdata_count += 1;
                    cdata = Some((cs, ce));
                    self.i = ce + 3;
                }
                Some(b'&') => {
                    let amp = self.i;
                    let c = self.reference()?;
                    if let Some(m) = map.as_deref_mut() {
                        m.push(Seg {
                            out: out.len(),
                            src: amp,
                            literal: false,
                        });
                    }
                    out.push(c);
                    other = true;
                }
                Some(_) => {
                    let a = self.i;
                    let k = self
                        .b
                        .get(a..)
                        .and_then(|r| r.iter().position(|&c| c == b'<' || c == b'&'))
                        .map_or(self.b.len(), |k| a + k);
                    if !all_ws(sl(self.s, a, k)) {
                        other = true;
                    }
                    push_literal(&mut out, self.s, a, k, map.as_deref_mut());
                    self.i = k;
                }
            }
        }
        Ok(Text {
            value: out,
            start,
            end: self.i,
            sole_cdata: if cdata_count == 1 && !other {
                cdata
            } else {
                None
            },
        })
    }

    /// An entity or character reference at the cursor (`&`); moves past its `;`.
    fn reference(&mut self) -> Result<char, ParseError> {
        let amp = self.i;
        let body_start = amp + 1;
        let semi = self.b.get(body_start..).and_then(|r| {
            r.iter()
                .take(32)
                .position(|&c| !(is_name_char(c) || c == b'#'))
                .filter(|&k| r.get(k) == Some(&b';'))
        });
        let Some(len) = semi else {
            return Err(self.err(
                amp,
                "bad entity: '&' must start a reference such as &amp; or &#x20; ending with ';' \
                 (write a literal & as &amp;)",
            ));
        };
        let body = sl(self.s, body_start, body_start + len);
        let c = match body {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                let code = if let Some(hex) = body.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = body.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return Err(self.err(
                        amp,
                        format!(
                            "bad entity &{body};: only &amp; &lt; &gt; &quot; &apos; and \
                             character references (&#NN; or &#xHH;) are defined"
                        ),
                    ));
                };
                code.filter(|&c| c != 0)
                    .filter(|_| !body.contains('+') && !body.contains('-'))
                    .and_then(char::from_u32)
            }
        };
        let Some(c) = c else {
            return Err(self.err(
                amp,
                format!("bad character reference &{body};: not a valid character"),
            ));
        };
        self.i = body_start + len + 1;
        Ok(c)
    }

    /// Decode an attribute value `s[a..b]` (between the quotes).
    fn attr_value(&mut self, a: usize, b: usize) -> Result<String, ParseError> {
        let saved = self.i;
        let mut out = String::new();
        self.i = a;
        while self.i < b {
            match self.peek() {
                Some(b'<') => {
                    return Err(self.err(
                        self.i,
                        "'<' is not allowed in an attribute value (write it as &lt;)",
                    ))
                }
                Some(b'&') => {
                    let c = self.reference()?;
                    out.push(c);
                }
                Some(_) => {
                    let start = self.i;
                    while self.i < b && !matches!(self.peek(), Some(b'<' | b'&') | None) {
                        self.i += 1;
                    }
                    let piece = sl(self.s, start, self.i);
                    out.push_str(&piece.replace("\r\n", " ").replace(['\r', '\n', '\t'], " "));
                }
                None => break,
            }
        }
        self.i = saved;
        Ok(out)
    }
}

/// The first `<INSTANCE>` element, depth first.
fn find_instance<'e, 'a>(el: &'e El<'a>) -> Option<&'e El<'a>> {
    if el.name == "INSTANCE" {
        return Some(el);
    }
    el.elements().find_map(find_instance)
}

// ---------------------------------------------------------------------------------------------
// Element tree → model
// ---------------------------------------------------------------------------------------------

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
                    "globalVarList" => seq.global_vars.extend(self.var_list(e)?),
                    "group" | "step" => seq.items.push(self.node(e)?),
                    _ => seq.extra_xml.push(self.raw(e)),
                },
            }
        }
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
                    "condition" => g.condition.extend(self.condition_list(e)?),
                    "group" | "step" => g.children.push(self.node(e)?),
                    _ => g.extra_xml.push(self.raw(e)),
                },
            }
        }
        Ok(g)
    }

    fn step(&self, el: &El<'_>) -> Result<Step, ParseError> {
        let mut s = Step {
            attrs: el.attrs_except(""),
            pos: self.pos(el.start),
            ..Step::default()
        };
        for k in &el.kids {
            match k {
                Kid::Text(t) => self.stray_text(t, el)?,
                Kid::Misc => {}
                Kid::El(e) => match e.name {
                    "condition" => s.condition.extend(self.condition_list(e)?),
                    "action" => {
                        if s.action.is_some() {
                            return Err(self.loc.err(
                                e.start,
                                format!("second <action> in {}: a step has one", el.describe()),
                            ));
                        }
                        s.action = Some(self.leaf_text(e)?);
                    }
                    "defaultVarList" => s.vars.extend(self.var_list(e)?),
                    "step" | "group" => {
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
                    _ => s.extra_xml.push(self.raw(e)),
                },
            }
        }
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
        let (a, b) = holder.inner;
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
                let mut p = Parser::new(self.src, cs, ce, self.loc, true);
                let root = p.document()?;
                return self.embedded_root(&root, *self);
            }
        }
        // Otherwise decode the text again, recording where each piece came from.
        let mut map = vec![Seg {
            out: 0,
            src: self.loc.outer(a),
            literal: false,
        }];
        let mut inner = String::new();
        let mut p = Parser::new(self.src, a, b, self.loc, true);
        while p.peek().is_some() {
            if p.starts("<!--") || p.starts("<?") {
                p.misc()?;
            } else {
                let mut local = Vec::new();
                let t = p.text_run(Some(&mut local))?;
                if p.i == t.start {
                    // A tag: element content is not sequence text.
                    return Err(self.loc.err(
                        p.i,
                        format!(
                            "{} must hold the sequence XML as text (CDATA or escaped), found markup",
                            holder.describe()
                        ),
                    ));
                }
                let base = inner.len();
                map.extend(local.into_iter().map(|s| Seg {
                    out: s.out + base,
                    src: self.loc.outer(s.src),
                    literal: s.literal && self.loc.map.is_none(),
                }));
                inner.push_str(&t.value);
            }
        }
        let ctx = self.loc.ctx;
        let loc = Loc {
            ctx,
            map: Some(&map),
        };
        let mut p = Parser::new(&inner, 0, inner.len(), loc, true);
        let root = p.document()?;
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

fn is_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

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
    let mut p = Parser::new(&doc, 0, doc.len(), loc, false);
    match p.document() {
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
    if !seq.global_vars.is_empty() {
        indent(w, level + 1);
        w.push_str("<globalVarList>\n");
        for v in &seq.global_vars {
            write_variable(w, v, level + 2);
        }
        indent(w, level + 1);
        w.push_str("</globalVarList>\n");
    }
    for n in &seq.items {
        write_node(w, n, level + 1);
    }
    write_extra(w, &seq.extra_xml, level + 1);
    indent(w, level);
    w.push_str("</sequence>\n");
}

fn write_extra(w: &mut String, extra: &[String], level: usize) {
    for x in extra {
        indent(w, level);
        w.push_str(x);
        w.push('\n');
    }
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
            write_conditions(w, &g.condition, level + 1);
            for c in &g.children {
                write_node(w, c, level + 1);
            }
            write_extra(w, &g.extra_xml, level + 1);
            indent(w, level);
            w.push_str("</group>\n");
        }
        Node::Step(s) => {
            w.push_str("<step");
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
            write_conditions(w, &s.condition, level + 1);
            if let Some(a) = &s.action {
                indent(w, level + 1);
                w.push_str("<action>");
                w.push_str(&esc_text(a));
                w.push_str("</action>\n");
            }
            if !s.vars.is_empty() {
                indent(w, level + 1);
                w.push_str("<defaultVarList>\n");
                for v in &s.vars {
                    write_variable(w, v, level + 2);
                }
                indent(w, level + 1);
                w.push_str("</defaultVarList>\n");
            }
            write_extra(w, &s.extra_xml, level + 1);
            indent(w, level);
            w.push_str("</step>\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attrs;

    fn p(text: &str) -> Sequence {
        parse(text, Path::new("t.xml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn perr(text: &str) -> ParseError {
        parse(text, Path::new("t.xml")).expect_err("should fail")
    }

    fn at(e: &ParseError) -> (u32, u32) {
        (e.line, e.column)
    }

    fn rt(seq: &Sequence) {
        let text = write(seq);
        let back = parse(&text, Path::new("w.xml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&back, seq, "\n{text}");
    }

    fn a(pairs: &[(&str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn step_of(seq: &Sequence, i: usize) -> &Step {
        match &seq.items[i] {
            Node::Step(s) => s,
            Node::Group(_) => panic!("not a step"),
        }
    }

    /// A model with every awkward value the writer must escape.
    fn tricky() -> Sequence {
        let step = Step {
            attrs: a(&[
                ("type", "SMS_TaskSequence_RunCommandLineAction"),
                ("name", "Quote \" amp & lt < gt > apos '"),
                ("description", "line1\nline2\ttab\r\n  indented  "),
                ("unknownAttr", ""),
            ]),
            condition: vec![Condition::Operator {
                kind: OperatorKind::Or,
                attrs: a(&[("note", "x&y")]),
                children: vec![
                    Condition::Expression(Expression {
                        kind: "SMS_TaskSequence_FutureConditionExpression".into(),
                        attrs: Vec::new(),
                        vars: vec![
                            Variable::new("Operator", "equals"),
                            Variable::new("Value", ""),
                        ],
                        pos: Pos::default(),
                    }),
                    Condition::Operator {
                        kind: OperatorKind::Not,
                        attrs: Vec::new(),
                        children: Vec::new(),
                        pos: Pos::default(),
                    },
                ],
                pos: Pos::default(),
            }],
            action: Some("  cmd /c echo a]]>b <c> & \"d\" \r\n\tünïcödé 日本 ".into()),
            vars: vec![
                Variable::property("CommandLine", "   "),
                Variable::property("Empty", ""),
                Variable::property("Newlines", "\n\nx\n\n"),
            ],
            extra_xml: vec!["<x a=\"1\"><![CDATA[a]]]]><![CDATA[>b]]></x>".into()],
            pos: Pos::default(),
        };
        Sequence {
            attrs: a(&[("version", "3.00"), ("name", "A & B \"C\"")]),
            global_vars: vec![Variable {
                name: "Pw".into(),
                attrs: a(&[("property", "Pw"), ("hidden", "true")]),
                value: " p<a>s&s ".into(),
                pos: Pos::default(),
            }],
            items: vec![
                Node::Group(Group {
                    attrs: a(&[("name", "Empty group")]),
                    ..Group::default()
                }),
                Node::Step(step),
                Node::Step(Step {
                    attrs: a(&[("name", "no action, no type")]),
                    ..Step::default()
                }),
                Node::Step(Step {
                    attrs: a(&[("name", "empty action")]),
                    action: Some(String::new()),
                    ..Step::default()
                }),
                Node::Group(Group {
                    attrs: a(&[("name", "nested")]),
                    children: vec![Node::Group(Group::default())],
                    extra_xml: vec!["<action />".into()],
                    ..Group::default()
                }),
            ],
            extra_xml: vec![
                "<referenceList>\n  <reference package=\"X\" />\n</referenceList>".into(),
            ],
            shape: Shape::Sequence,
            pos: Pos::default(),
        }
    }

    fn wmi(
        name: &str,
        attrs: &[(&str, &str)],
        value: Option<&str>,
        raw: Option<&str>,
    ) -> WmiProperty {
        WmiProperty {
            name: name.into(),
            attrs: a(attrs),
            value: value.map(String::from),
            raw: raw.map(String::from),
        }
    }

    #[test]
    fn tricky_model_round_trips_in_every_shape() {
        let mut seq = tricky();
        rt(&seq);
        seq.shape = Shape::PackageWrapper {
            properties: vec![
                (
                    "@xmlns:xsi".into(),
                    "http://www.w3.org/2001/XMLSchema-instance".into(),
                ),
                ("BootImageID".into(), "LAB00005".into()),
                ("Category".into(), String::new()),
                ("Description".into(), " a < b & c ".into()),
                (
                    "Markup".into(),
                    "<OS Name=\"x\" /><!-- c --><OS Name=\"y\" />".into(),
                ),
                ("LooksLikeMarkup".into(), "<b>bold".into()),
                ("Whitespace".into(), "  ".into()),
                ("SourceDate".into(), "2019-07-17T18:21:22".into()),
            ],
        };
        rt(&seq);
        let text = write(&seq);
        assert!(text.contains("  <Markup><OS Name=\"x\" /><!-- c --><OS Name=\"y\" /></Markup>\n"));
        assert!(text.contains("  <LooksLikeMarkup>&lt;b&gt;bold</LooksLikeMarkup>\n"));
        assert!(text.contains("  </SequenceData>\n  <Whitespace>  </Whitespace>\n"));
        seq.shape = Shape::WmiInstance {
            class_name: "SMS_TaskSequencePackage".into(),
            properties: vec![
                wmi("@xmlns:x", &[], Some("urn:x"), None),
                wmi(
                    "Name",
                    &[("TYPE", "string"), ("CLASSORIGIN", "SMS_PackageBaseclass")],
                    Some("  x ]]> & <y> "),
                    None,
                ),
                wmi("Null", &[("TYPE", "string")], None, None),
                wmi(
                    "Refs",
                    &[("TYPE", "string")],
                    None,
                    Some("<VALUE.ARRAY><VALUE>A</VALUE></VALUE.ARRAY>"),
                ),
                wmi(
                    "Arr",
                    &[("TYPE", "string")],
                    None,
                    Some("<PROPERTY.ARRAY NAME=\"Arr\" TYPE=\"string\"><VALUE.ARRAY /></PROPERTY.ARRAY>"),
                ),
                wmi(
                    "",
                    &[],
                    None,
                    Some("<QUALIFIER NAME=\"q\" TYPE=\"boolean\"><VALUE>TRUE</VALUE></QUALIFIER>"),
                ),
                wmi("Type", &[("TYPE", "uint32")], Some("4"), None),
            ],
        };
        rt(&seq);
        let text = write(&seq);
        // The `]]>` of the raw extra XML is split across CDATA sections.
        assert!(text.contains("a]]]]]]><![CDATA[><![CDATA[>b"), "{text}");
        assert!(
            text.contains("<PROPERTY NAME=\"Sequence\" TYPE=\"string\"><VALUE><![CDATA[<sequence")
        );
    }

    #[test]
    fn entities_cdata_and_line_ends() {
        let seq = p(
            "<?xml version=\"1.0\" encoding=\"utf-16\"?>\r\n<sequence>\r\n  \
             <step name=\"a&amp;b&#x41;&#66;&quot;&apos;\">\r\n    \
             <action>x &lt; y<![CDATA[ & <z> ]]>&gt;\r\nnext&#13;&#10;</action>\r\n  \
             </step>\r\n</sequence>\r\n",
        );
        let s = step_of(&seq, 0);
        assert_eq!(s.name(), "a&bAB\"'");
        assert_eq!(s.action.as_deref(), Some("x < y & <z> >\nnext\r\n"));
        assert_eq!((s.pos.line, s.pos.column), (3, 3));
        rt(&seq);
        // Attribute values: literal line ends and tabs become spaces, references do not.
        let seq = p("<sequence a=\"x\r\ny\tz&#10;w\" />");
        assert_eq!(seq.attrs, a(&[("a", "x y z\nw")]));
        rt(&seq);
    }

    #[test]
    fn whitespace_only_values_are_kept() {
        let seq = p(
            "<sequence>\n  <globalVarList>\n    <variable name=\"A\">   </variable>\n    \
             <variable name=\"B\"/>\n    <variable name=\"C\">\n</variable>\n  </globalVarList>\n  \
             <step><action> </action></step>\n</sequence>",
        );
        let vals: Vec<&str> = seq.global_vars.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(vals, ["   ", "", "\n"]);
        assert_eq!(step_of(&seq, 0).action.as_deref(), Some(" "));
        rt(&seq);
    }

    #[test]
    fn unknown_children_and_operator_case() {
        let seq = p(
            "<sequence><group name=\"g\"><foo  x='1'>t<![CDATA[c]]></foo><condition>\
             <operator type=\"AND\"><expression type=\"Weird\"><variable name=\"k\" extra=\"e\">v\
             </variable></expression></operator></condition></group><bar/></sequence>",
        );
        let Node::Group(g) = &seq.items[0] else {
            panic!("group")
        };
        assert_eq!(g.extra_xml, ["<foo  x='1'>t<![CDATA[c]]></foo>"]);
        assert_eq!(seq.extra_xml, ["<bar/>"]);
        let [Condition::Operator { kind, children, .. }] = g.condition.as_slice() else {
            panic!("operator")
        };
        assert_eq!(*kind, OperatorKind::And);
        let Condition::Expression(e) = &children[0] else {
            panic!("expression")
        };
        assert_eq!(e.kind, "Weird");
        assert_eq!(e.vars[0].attrs, a(&[("extra", "e")]));
        rt(&seq);
    }

    #[test]
    fn errors_are_positioned_and_explained() {
        let cases: &[(&str, (u32, u32), &str)] = &[
            ("", (1, 1), "empty file"),
            ("  \n  ", (2, 3), "empty file"),
            (
                "<sequence>\n  <group name=\"Install\">\n",
                (3, 1),
                "unexpected end of file: <group name=\"Install\"> opened at 2:3 is not closed (expected </group>)",
            ),
            (
                "<sequence>\n  <group name=\"Install\">\n    </step>",
                (3, 5),
                "expected </group> to close <group name=\"Install\"> opened at 2:3, found </step>",
            ),
            ("<sequence><step><action>a & b</action></step></sequence>", (1, 27), "bad entity"),
            ("<sequence><step><action>&#0;</action></step></sequence>", (1, 25), "bad character reference"),
            ("<sequence><step><action>&#xD800;</action></step></sequence>", (1, 25), "bad character reference"),
            ("<sequence a=\"1\" a=\"2\"/>", (1, 17), "duplicate attribute a"),
            ("<sequence a=\"<\"/>", (1, 14), "'<' is not allowed"),
            ("<sequence a=\"1\"b=\"2\"/>", (1, 16), "expected whitespace"),
            ("<sequence a=1/>", (1, 13), "expected a quoted value"),
            ("<sequence a=\"1/>", (1, 13), "never closed"),
            ("<sequence/><x/>", (1, 12), "second root element"),
            ("<sequence/>trailing", (1, 12), "unexpected text 't'"),
            ("<TaskSequence/>", (1, 1), "unknown root element <TaskSequence>"),
            ("<sequence><step><step/></step></sequence>", (1, 17), "<step> is not allowed inside <step>"),
            ("<sequence><globalVarList><step/></globalVarList></sequence>", (1, 26), "<step> is not allowed inside <globalVarList>"),
            ("<sequence><group>\n  hello <step/></group></sequence>", (2, 3), "unexpected text \"hello\" inside <group>"),
            ("<sequence><step><condition><operator type=\"nand\"/></condition></step></sequence>", (1, 28), "unknown operator type \"nand\""),
            ("<sequence><step><condition><operator/></condition></step></sequence>", (1, 28), "<operator> has no type"),
            ("<sequence><step><condition><expression/></condition></step></sequence>", (1, 28), "<expression> has no type"),
            ("<sequence><globalVarList><variable value=\"x\"/></globalVarList></sequence>", (1, 26), "<variable> has no name"),
            ("<sequence><step><action>a<b/></action></step></sequence>", (1, 26), "may contain only text"),
            ("<sequence><step><action/><action/></step></sequence>", (1, 26), "second <action>"),
            ("<sequence><!-- x", (1, 11), "comment is never closed"),
            ("<sequence><![CDATA[ x", (1, 11), "CDATA section is never closed"),
            ("<!DOCTYPE x><sequence/>", (1, 1), "DOCTYPE"),
            ("<sequence", (1, 10), "end of file inside the start tag"),
            ("< sequence/>", (1, 2), "expected an element name"),
            ("</sequence>", (1, 1), "unexpected end tag"),
            ("<SmsTaskSequencePackage><Name>x</Name></SmsTaskSequencePackage>", (1, 1), "no <SequenceData>"),
            (
                "<INSTANCE CLASSNAME=\"SMS_TaskSequencePackage\"><PROPERTY NAME=\"Name\"><VALUE>x</VALUE></PROPERTY></INSTANCE>",
                (1, 1),
                "no <PROPERTY NAME=\"Sequence\">",
            ),
            (
                "<INSTANCE><PROPERTY NAME=\"Sequence\"><VALUE></VALUE></PROPERTY></INSTANCE>",
                (1, 44),
                "the Sequence property is empty",
            ),
            (
                "<INSTANCE><PROPERTY NAME=\"Sequence\"><VALUE><![CDATA[<group/>]]></VALUE></PROPERTY></INSTANCE>",
                (1, 53),
                "must have <sequence> as its root",
            ),
            (
                "<INSTANCE><PROPERTY NAME=\"Sequence\"><VALUE>\n&lt;sequence&gt;&lt;step&gt;&lt;/group&gt;</VALUE></PROPERTY></INSTANCE>",
                (2, 29),
                "expected </step> to close <step> opened at 2:17, found </group>",
            ),
        ];
        for (text, pos, msg) in cases {
            let e = perr(text);
            assert_eq!(at(&e), *pos, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn columns_count_characters() {
        let e = perr("<sequence name=\"Größe\"><step>ä&x;</step></sequence>");
        assert_eq!(at(&e), (1, 31));
    }

    #[test]
    fn object_xml_with_escaped_sequence_maps_positions() {
        let text = "<?xml version=\"1.0\"?>\n\
            <INSTANCES><INSTANCE CLASSNAME=\"SMS_TaskSequencePackage\" x=\"1\">\n\
            <PROPERTY NAME=\"Name\" TYPE=\"string\"><VALUE>n</VALUE></PROPERTY>\n\
            <PROPERTY NAME=\"Sequence\" TYPE=\"string\"><VALUE>&lt;sequence version=\"3.00\"&gt;\n\
            &lt;step name=\"s &amp;amp; t\"&gt;&lt;action&gt;a&lt;/action&gt;&lt;/step&gt;\n\
            &lt;/sequence&gt;</VALUE></PROPERTY></INSTANCE></INSTANCES>";
        let seq = p(text);
        assert_eq!((seq.pos.line, seq.pos.column), (4, 48));
        let s = step_of(&seq, 0);
        assert_eq!(s.name(), "s & t");
        assert_eq!((s.pos.line, s.pos.column), (5, 1));
        let Shape::WmiInstance { properties, .. } = &seq.shape else {
            panic!("wmi shape")
        };
        assert_eq!(properties[0].name, "@x");
        assert_eq!(properties[1].value.as_deref(), Some("n"));
        rt(&seq);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        fn nested(depth: usize) -> String {
            format!(
                "<sequence>{}{}</sequence>",
                "<group>".repeat(depth),
                "</group>".repeat(depth)
            )
        }
        let text = nested(MAX_DEPTH + 10);
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || parse(&text, Path::new("deep.xml")).map(|_| ()))
            .expect("spawn");
        let e = handle.join().expect("no stack overflow").unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
        // Just under the limit parses and writes back.
        let text = nested(MAX_DEPTH - 2);
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let seq = parse(&text, Path::new("deep.xml")).expect("parses");
                parse(&write(&seq), Path::new("w.xml")).expect("written parses") == seq
            })
            .expect("spawn");
        assert!(handle.join().expect("no stack overflow"));
    }

    #[test]
    fn mutated_input_never_panics() {
        // A deterministic stand-in for the fuzz target: byte mutations of a document using every
        // feature give either a model that round-trips or a positioned error.
        let base = "<?xml version=\"1.0\"?><INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"A\" TYPE=\"s\">\
            <VALUE>&amp;x</VALUE></PROPERTY><PROPERTY NAME=\"Sequence\"><VALUE><![CDATA[<sequence v=\"1\">\
            <globalVarList><variable name=\"Ü\" hidden=\"true\">p&#x41;</variable></globalVarList>\
            <group name=\"g\"><condition><operator type=\"or\"><expression type=\"E\"><variable name=\"V\">1\
            </variable></expression></operator></condition><step type=\"T\"><action>a<![CDATA[b]]]]>\
            <![CDATA[>c]]></action></step></group></sequence>]]></VALUE></PROPERTY></INSTANCE>";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"<>/&;#x[]!?=\"' \n\r-CDATAsequence\xc3\xbc\x00";
        for _ in 0..2000 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => bytes[i] = c,
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, c),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            match parse(&text, Path::new("m.xml")) {
                Ok(seq) => {
                    let again =
                        parse(&write(&seq), Path::new("w.xml")).expect("written XML parses");
                    assert_eq!(again, seq, "{text}");
                }
                Err(e) => assert!(e.line >= 1 && e.column >= 1),
            }
        }
    }
}
