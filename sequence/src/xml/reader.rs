//! The XML reader: text → a small element tree in which every node knows the byte range it was
//! read from, and the positions (`line:column` in the outer file) those ranges map to.
//!
//! A small, strict, non-validating XML 1.0 parser written for this purpose (rather than on top of
//! a streaming tokenizer) so that every node knows the exact byte range it was read from: that is
//! what gives exact `line:column` positions, verbatim raw XML for elements tsforge does not
//! interpret, and the offset mapping into an outer file for XML held as text by an element
//! ([`decode_content`], [`Loc`]). It handles the predefined entities and character references,
//! CDATA sections, comments, processing instructions and CRLF or LF line ends (normalised to LF
//! as XML requires; attribute values are normalised as XML requires too: a literal tab or line
//! end becomes a space, while `&#10;` stays a line feed). DTDs are rejected. It never panics and
//! limits nesting to [`MAX_DEPTH`] levels.
//!
//! General XML only: it knows no ConfigMgr/MDT element (the caller says which root element it
//! expects, for messages, through [`Expected`]; messages name an element by its `name` attribute
//! when it has one). It uses `std`, [`ParseError`] and the model's [`Pos`], nothing else of the
//! crate.

use crate::error::ParseError;
use crate::model::Pos;
use std::path::Path;

/// Elements nested deeper than this are rejected (protects the recursive reader's stack).
pub const MAX_DEPTH: usize = 256;

// ---------------------------------------------------------------------------------------------
// Positions
// ---------------------------------------------------------------------------------------------

/// The outer file: name, text and where its lines start.
pub(super) struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
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
pub(super) struct Seg {
    out: usize,
    src: usize,
    literal: bool,
}

/// Turns offsets of the text being parsed into positions in the outer file.
#[derive(Clone, Copy)]
pub(super) struct Loc<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    /// Present when the text being parsed is a decoded copy (XML held as entity-escaped text by an
    /// element, see [`decode_content`]).
    pub(super) map: Option<&'a [Seg]>,
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
    pub(super) fn pos(&self, off: usize) -> Pos {
        self.ctx.pos(self.outer(off))
    }
    fn at(&self, off: usize) -> String {
        let p = self.pos(off);
        format!("{}:{}", p.line, p.column)
    }
    pub(super) fn err(&self, off: usize, message: impl Into<String>) -> ParseError {
        let p = self.pos(off);
        ParseError::new(self.ctx.file, p.line, p.column, message)
    }
}

// ---------------------------------------------------------------------------------------------
// The XML reader: text → a small element tree with byte ranges
// ---------------------------------------------------------------------------------------------

pub(super) struct Attr<'a> {
    pub(super) name: &'a str,
    pub(super) value: String,
}

pub(super) struct El<'a> {
    pub(super) name: &'a str,
    pub(super) attrs: Vec<Attr<'a>>,
    pub(super) kids: Vec<Kid<'a>>,
    /// Offset of `<`.
    pub(super) start: usize,
    /// Content range (between the start tag's `>` and the end tag's `<`; empty for `<x/>`).
    pub(super) inner: (usize, usize),
    /// Offset just after the final `>`.
    pub(super) end: usize,
}

pub(super) enum Kid<'a> {
    El(El<'a>),
    Text(Text),
    /// A comment or processing instruction.
    Misc,
}

pub(super) struct Text {
    pub(super) value: String,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Content range of the CDATA section when the run is one CDATA section with at most
    /// whitespace around it.
    pub(super) sole_cdata: Option<(usize, usize)>,
}

impl<'a> El<'a> {
    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }
    pub(super) fn attrs_except(&self, skip: &str) -> Vec<(String, String)> {
        self.attrs
            .iter()
            .filter(|a| a.name != skip)
            .map(|a| (a.name.to_string(), a.value.clone()))
            .collect()
    }
    pub(super) fn elements(&self) -> impl Iterator<Item = &El<'a>> {
        self.kids.iter().filter_map(|k| match k {
            Kid::El(e) => Some(e),
            _ => None,
        })
    }
    /// `<group name="Install">`, for messages.
    pub(super) fn describe(&self) -> String {
        describe(self.name, &self.attrs)
    }
}

fn describe(name: &str, attrs: &[Attr<'_>]) -> String {
    match attrs.iter().find(|a| a.name == "name") {
        Some(a) => format!("<{name} name=\"{}\">", a.value),
        None => format!("<{name}>"),
    }
}

pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

pub(super) fn is_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

pub(super) fn all_ws(s: &str) -> bool {
    s.bytes().all(is_ws)
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// `s[a..b]`, or `""` if the range is not valid (never panics).
pub(super) fn sl(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or("")
}

/// CRLF and lone CR → LF.
pub(super) fn normalize_newlines(s: &str) -> String {
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

/// What the caller expects the document to hold, for the messages about a missing root element.
#[derive(Clone, Copy)]
pub(super) struct Expected {
    /// A root element to name as an example, such as `<sequence>`.
    pub(super) root: &'static str,
    /// The message for a document without any element.
    pub(super) empty: &'static str,
}

/// The reader proper: a cursor over the text being parsed.
pub(super) struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    loc: Loc<'a>,
}

impl<'a> Parser<'a> {
    /// A parser over `text[start..end]` whose offsets are offsets of `text`.
    pub(super) fn new(text: &'a str, start: usize, end: usize, loc: Loc<'a>) -> Self {
        let s = text.get(..end).unwrap_or(text);
        Parser {
            s,
            b: s.as_bytes(),
            i: start.min(s.len()),
            loc,
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
    pub(super) fn document(&mut self, expected: Expected) -> Result<El<'a>, ParseError> {
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
                    format!(
                        "unexpected end tag before the root element (expected a start tag such as {})",
                        expected.root
                    ),
                ));
            } else if self.peek() == Some(b'<') {
                break;
            } else if self.peek().is_none() {
                return Err(self.err(self.i, expected.empty));
            } else {
                return Err(self.err(
                    self.i,
                    format!(
                        "expected '<' to start the root element (such as {}), found {}",
                        expected.root,
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

/// Decode `src[a..b]`, the content of an element holding XML as text, a second time: references
/// resolved, CDATA sections unwrapped, comments and processing instructions skipped. Returns the
/// text and the map from its offsets to offsets of the outer file (for a [`Loc`] over the text).
/// A tag in the content is an error at the tag, with the message `markup` gives.
pub(super) fn decode_content(
    src: &str,
    (a, b): (usize, usize),
    loc: Loc<'_>,
    markup: impl FnOnce() -> String,
) -> Result<(String, Vec<Seg>), ParseError> {
    let mut map = vec![Seg {
        out: 0,
        src: loc.outer(a),
        literal: false,
    }];
    let mut inner = String::new();
    let mut p = Parser::new(src, a, b, loc);
    while p.peek().is_some() {
        if p.starts("<!--") || p.starts("<?") {
            p.misc()?;
        } else {
            let mut local = Vec::new();
            let t = p.text_run(Some(&mut local))?;
            if p.i == t.start {
                // A tag: element content is not text.
                return Err(loc.err(p.i, markup()));
            }
            let base = inner.len();
            map.extend(local.into_iter().map(|s| Seg {
                out: s.out + base,
                src: loc.outer(s.src),
                literal: s.literal && loc.map.is_none(),
            }));
            inner.push_str(&t.value);
        }
    }
    Ok((inner, map))
}
