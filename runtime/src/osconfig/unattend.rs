//! Windows Setup's answer file, `Windows\Panther\unattend.xml` of an applied Windows, read,
//! changed setting by setting and written back: what ConfigMgr's *Apply Windows Settings* and
//! *Apply Network Settings* do to the answer file *Apply Operating System Image* put there.
//!
//! - Place: `%WINDIR%\Panther\unattend.xml`, where the task asks ConfigMgr's steps put it and
//!   where Windows Setup keeps the answer file of an installation: "a copy of the answer file
//!   is cached to the %WINDIR%\Panther directory of the Windows installation. You can modify
//!   this file to … update system and control panel settings without booting the image"
//!   (Microsoft, *Windows Setup Automation Overview*,
//!   <https://learn.microsoft.com/en-us/previous-versions/windows/it-pro/windows-8.1-and-8/hh824950(v=win.10)>;
//!   `%WINDIR%\Panther` is also in Setup's implicit search order, *Methods for Running Windows
//!   Setup*, <https://technet.microsoft.com/library/dd744269.aspx>).
//! - Shape: `<unattend xmlns="urn:schemas-microsoft-com:unattend">`, `<settings pass="…">`,
//!   `<component name="…" processorArchitecture="…" publicKeyToken="31bf3856ad364e35"
//!   language="neutral" versionScope="nonSxS">`, then the component's settings (Microsoft,
//!   *Unattended Windows Setup Reference*: <https://learn.microsoft.com/windows-hardware/customize/desktop/unattend/>).
//! - A password hidden in the answer file (`PlainText` = `false`) is the base64 of the UTF-16LE
//!   bytes of the password followed by the setting's name: Microsoft's example for
//!   `UserAccounts/AdministratorPassword`, `cAB3AEEAZABtAGkAbgBpAHMAdAByAGEAdABvAHIAUABhAHMAcwB3AG8AcgBkAA==`,
//!   is "pw" + "AdministratorPassword"
//!   (<https://learn.microsoft.com/windows-hardware/customize/desktop/unattend/microsoft-windows-shell-setup-useraccounts>).
//!
//! Everything of the administrator's file that no setting names is written back as it was read
//! (elements, attributes, comments, text); the XML declaration is rewritten as UTF-8, the
//! encoding the file is written in.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};
use std::path::{Path, PathBuf};

/// The answer file's namespace.
pub const NS: &str = "urn:schemas-microsoft-com:unattend";
const WCM: &str = "http://schemas.microsoft.com/WMIConfig/2002/State";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The public key token of Windows' own components (Microsoft's examples).
const TOKEN: &str = "31bf3856ad364e35";
/// Where the answer file goes, below the applied OS.
pub const PATH: &str = "Windows/Panther/unattend.xml";

#[derive(Debug, Clone)]
enum Node {
    Elem(Elem),
    /// Text as read (still escaped).
    Text(String),
    /// Comments, processing instructions, CDATA, doctype: kept as read.
    Other(Event<'static>),
}

#[derive(Debug, Clone)]
struct Elem {
    name: String,
    /// Attributes as read (values still escaped).
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

impl Elem {
    fn new(name: &str) -> Elem {
        Elem {
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| local(k) == key)
            .map(|(_, v)| v.as_str())
    }

    fn child_index(&self, pred: impl Fn(&Elem) -> bool) -> Option<usize> {
        self.children
            .iter()
            .position(|n| matches!(n, Node::Elem(e) if pred(e)))
    }

    fn child_mut(&mut self, i: usize) -> &mut Elem {
        match &mut self.children[i] {
            Node::Elem(e) => e,
            _ => unreachable!("child_index finds elements only"),
        }
    }

    fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<String>()
            .trim()
            .to_string()
    }

    fn has_content(&self) -> bool {
        self.children.iter().any(|n| match n {
            Node::Text(t) => !t.trim().is_empty(),
            _ => true,
        })
    }
}

/// An answer file in memory.
#[derive(Debug, Clone)]
pub struct Unattend {
    /// Comments and processing instructions before the root element.
    prolog: Vec<Node>,
    root: Elem,
    epilog: Vec<Node>,
}

/// 1-based line and column of byte `pos` of `text`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..pos.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, col)
}

/// The file's bytes as text: UTF-8 (with or without a byte-order mark) or UTF-16 with one.
fn decode(bytes: &[u8], shown: &str) -> Result<String> {
    let utf16 = |le: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .map(|c| {
                let pair = [c[0], *c.get(1).unwrap_or(&0)];
                if le {
                    u16::from_le_bytes(pair)
                } else {
                    u16::from_be_bytes(pair)
                }
            })
            .collect();
        String::from_utf16(&units).with_context(|| format!("{shown}: invalid UTF-16"))
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            String::from_utf8(rest.to_vec()).with_context(|| format!("{shown}: invalid UTF-8"))
        }
        _ => String::from_utf8(bytes.to_vec()).map_err(|e| {
            let (l, c) = line_col(
                &String::from_utf8_lossy(bytes),
                e.utf8_error().valid_up_to(),
            );
            anyhow::anyhow!(
                "{shown}: line {l}, column {c}: not UTF-8 (nor UTF-16 with a byte-order mark)"
            )
        }),
    }
}

fn owned(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

impl Unattend {
    /// A new, empty answer file.
    pub fn new() -> Unattend {
        let mut root = Elem::new("unattend");
        root.attrs.push(("xmlns".into(), NS.into()));
        Unattend {
            prolog: Vec::new(),
            root,
            epilog: Vec::new(),
        }
    }

    /// Read an answer file; `shown` names it in errors, which give the line and column.
    pub fn parse(bytes: &[u8], shown: &str) -> Result<Unattend> {
        let text = decode(bytes, shown)?;
        let mut reader = Reader::from_str(&text);
        reader.config_mut().check_end_names = true;
        let mut stack: Vec<Elem> = Vec::new();
        let mut prolog = Vec::new();
        let mut epilog = Vec::new();
        let mut root: Option<Elem> = None;
        let at = |pos: u64| {
            let (l, c) = line_col(&text, pos as usize);
            format!("{shown}: line {l}, column {c}")
        };
        loop {
            let before = reader.buffer_position();
            let ev = match reader.read_event() {
                Ok(e) => e,
                Err(e) => bail!("{}: not well-formed XML: {e}", at(reader.error_position())),
            };
            let node = match ev {
                Event::Eof => break,
                Event::Decl(_) => continue,
                Event::Start(s) | Event::Empty(s) if root.is_some() => {
                    let _ = s;
                    bail!("{}: a second root element after </unattend>", at(before));
                }
                Event::Start(s) => {
                    stack.push(elem_of(&s, &at, before)?);
                    continue;
                }
                Event::Empty(s) => Node::Elem(elem_of(&s, &at, before)?),
                Event::End(_) => {
                    let e = stack.pop().expect("quick-xml checks end names");
                    Node::Elem(e)
                }
                Event::Text(t) => Node::Text(owned(&t.into_inner())),
                other => Node::Other(other.into_owned()),
            };
            match stack.last_mut() {
                Some(parent) => parent.children.push(node),
                None => match node {
                    Node::Elem(e) => root = Some(e),
                    Node::Text(t) if t.trim().is_empty() => {}
                    Node::Text(t) => bail!(
                        "{}: text {:?} outside the root element",
                        at(before),
                        t.trim()
                    ),
                    n if root.is_none() => prolog.push(n),
                    n => epilog.push(n),
                },
            }
        }
        if let Some(open) = stack.last() {
            bail!(
                "{}: not well-formed XML: <{}> is not closed",
                at(text.len() as u64),
                open.name
            );
        }
        let Some(root) = root else {
            bail!("{shown}: no XML element (an answer file is <unattend xmlns=\"{NS}\">)");
        };
        if local(&root.name) != "unattend" {
            bail!(
                "{shown}: the root element is <{}>, not <unattend xmlns=\"{NS}\">: not an answer file",
                root.name
            );
        }
        Ok(Unattend {
            prolog,
            root,
            epilog,
        })
    }

    /// Read the answer file at `path`.
    pub fn read(path: &Path) -> Result<Unattend> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Unattend::parse(&bytes, &path.display().to_string())
    }

    /// The text of the file, UTF-8.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        let decl = BytesDecl::new("1.0", Some("utf-8"), None);
        w.write_event(Event::Decl(decl)).expect("writing to memory");
        w.get_mut().push(b'\n');
        for n in &self.prolog {
            write_node(&mut w, n);
        }
        write_elem(&mut w, &self.root);
        for n in &self.epilog {
            write_node(&mut w, n);
        }
        let mut out = w.into_inner();
        out.push(b'\n');
        out
    }

    /// The `processorArchitecture` of the file's components (`amd64` when it has none).
    fn architecture(&self) -> String {
        for s in self.root.children.iter() {
            if let Node::Elem(s) = s {
                for c in &s.children {
                    if let Node::Elem(c) = c {
                        if let Some(a) = c.attr("processorArchitecture") {
                            return a.to_string();
                        }
                    }
                }
            }
        }
        "amd64".into()
    }

    /// The component `name` of pass `pass`, made when missing.
    fn component(&mut self, pass: &str, name: &str) -> &mut Elem {
        let arch = self.architecture();
        let si = match self
            .root
            .child_index(|e| local(&e.name) == "settings" && e.attr("pass") == Some(pass))
        {
            Some(i) => i,
            None => {
                let mut s = Elem::new("settings");
                s.attrs.push(("pass".into(), pass.into()));
                self.root.children.push(Node::Elem(s));
                self.root.children.len() - 1
            }
        };
        let settings = self.root.child_mut(si);
        let ci = match settings
            .child_index(|e| local(&e.name) == "component" && e.attr("name") == Some(name))
        {
            Some(i) => i,
            None => {
                let mut c = Elem::new("component");
                for (k, v) in [
                    ("name", name),
                    ("processorArchitecture", arch.as_str()),
                    ("publicKeyToken", TOKEN),
                    ("language", "neutral"),
                    ("versionScope", "nonSxS"),
                    ("xmlns:wcm", WCM),
                    ("xmlns:xsi", XSI),
                ] {
                    c.attrs.push((k.into(), v.into()));
                }
                settings.children.push(Node::Elem(c));
                settings.children.len() - 1
            }
        };
        settings.child_mut(ci)
    }

    /// Set `path` (element names below the component) of component `component` in pass `pass`
    /// to `value`. Returns whether the file had a value there already (which is replaced).
    pub fn set(&mut self, pass: &str, component: &str, path: &[&str], value: &str) -> bool {
        let mut here = self.component(pass, component);
        for name in path {
            let i = match here.child_index(|e| local(&e.name) == *name) {
                Some(i) => i,
                None => {
                    here.children.push(Node::Elem(Elem::new(name)));
                    here.children.len() - 1
                }
            };
            here = here.child_mut(i);
        }
        let had = here.has_content();
        here.children = vec![Node::Text(quick_xml::escape::escape(value).into_owned())];
        had
    }

    /// Remove `path` from component `component` of pass `pass`; whether it was there.
    pub fn remove(&mut self, pass: &str, component: &str, path: &[&str]) -> bool {
        fn walk(e: &mut Elem, path: &[&str]) -> bool {
            let Some((first, rest)) = path.split_first() else {
                return false;
            };
            let Some(i) = e.child_index(|c| local(&c.name) == *first) else {
                return false;
            };
            if rest.is_empty() {
                e.children.remove(i);
                true
            } else {
                walk(e.child_mut(i), rest)
            }
        }
        let Some(si) = self
            .root
            .child_index(|e| local(&e.name) == "settings" && e.attr("pass") == Some(pass))
        else {
            return false;
        };
        let settings = self.root.child_mut(si);
        let Some(ci) = settings
            .child_index(|e| local(&e.name) == "component" && e.attr("name") == Some(component))
        else {
            return false;
        };
        walk(settings.child_mut(ci), path)
    }

    /// The text of `path` in component `component` of pass `pass` (unescaped), if present.
    pub fn get(&self, pass: &str, component: &str, path: &[&str]) -> Option<String> {
        let find = |e: &Elem, pred: &dyn Fn(&Elem) -> bool| {
            e.children.iter().find_map(|n| match n {
                Node::Elem(c) if pred(c) => Some(c.clone()),
                _ => None,
            })
        };
        let s = find(&self.root, &|e| {
            local(&e.name) == "settings" && e.attr("pass") == Some(pass)
        })?;
        let mut here = find(&s, &|e| {
            local(&e.name) == "component" && e.attr("name") == Some(component)
        })?;
        for name in path {
            here = find(&here, &|e| local(&e.name) == *name)?;
        }
        quick_xml::escape::unescape(&here.text())
            .ok()
            .map(|s| s.into_owned())
    }
}

impl Default for Unattend {
    fn default() -> Self {
        Unattend::new()
    }
}

fn elem_of(s: &BytesStart, at: &dyn Fn(u64) -> String, pos: u64) -> Result<Elem> {
    let mut e = Elem::new(&owned(s.name().as_ref()));
    for a in s.attributes() {
        let a = a.map_err(|err| anyhow::anyhow!("{}: bad attribute: {err}", at(pos)))?;
        e.attrs
            .push((owned(a.key.as_ref()), owned(a.value.as_ref())));
    }
    Ok(e)
}

fn write_node(w: &mut Writer<Vec<u8>>, n: &Node) {
    match n {
        Node::Elem(e) => write_elem(w, e),
        Node::Text(t) => w
            .write_event(Event::Text(BytesText::from_escaped(t.as_str())))
            .expect("writing to memory"),
        Node::Other(ev) => w.write_event(ev.clone()).expect("writing to memory"),
    }
}

fn write_elem(w: &mut Writer<Vec<u8>>, e: &Elem) {
    let mut start = BytesStart::new(e.name.as_str());
    for (k, v) in &e.attrs {
        // Values are kept escaped as read: written as they are.
        start.push_attribute(Attribute::from((k.as_bytes(), v.as_bytes())));
    }
    if e.children.is_empty() {
        w.write_event(Event::Empty(start))
            .expect("writing to memory");
        return;
    }
    w.write_event(Event::Start(start))
        .expect("writing to memory");
    for c in &e.children {
        write_node(w, c);
    }
    w.write_event(Event::End(BytesEnd::new(e.name.as_str())))
        .expect("writing to memory");
}

/// A password as the answer file hides it (`PlainText` = `false`): base64 of the UTF-16LE
/// bytes of the password followed by `setting`, the element's name (`AdministratorPassword`).
pub fn hide_password(password: &str, setting: &str) -> String {
    let bytes: Vec<u8> = format!("{password}{setting}")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Where the answer file of the Windows at `root` is (or goes): `Windows/Panther/unattend.xml`,
/// each name matched ignoring case as Windows does.
pub fn path_in(root: &Path) -> PathBuf {
    if let Some(p) = super::find_nocase(root, PATH) {
        return p;
    }
    if let Some(p) = super::find_nocase(root, "Windows/Panther") {
        return p.join("unattend.xml");
    }
    match super::find_nocase(root, "Windows") {
        Some(w) => w.join("Panther").join("unattend.xml"),
        None => root.join(PATH),
    }
}

/// The answer file of the Windows at `root`: the one there (the administrator's, put there by
/// *Apply Operating System Image*, or the image's own), else a new one. Also whether it existed.
pub fn load(root: &Path) -> Result<(Unattend, PathBuf, bool)> {
    let path = path_in(root);
    if path.is_file() {
        Ok((Unattend::read(&path)?, path, true))
    } else {
        Ok((Unattend::new(), path, false))
    }
}

/// Write `u` to `path` (its folder made when missing), through a temporary file renamed into
/// place so a failure leaves the old file whole.
pub fn save(u: &Unattend, path: &Path) -> Result<()> {
    let dir = path.parent().context("answer file path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(".unattend.xml.tsforge-tmp");
    std::fs::write(&tmp, u.to_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// One setting a step puts into the answer file.
#[derive(Debug, Clone)]
pub struct Change {
    pub pass: &'static str,
    pub component: &'static str,
    /// Element names below the component.
    pub path: &'static [&'static str],
    /// `None`: the element is removed (a workgroup join removes a domain join's settings).
    pub value: Option<String>,
    /// Never shown in the log (passwords).
    pub secret: bool,
}

impl Change {
    pub fn set(
        pass: &'static str,
        component: &'static str,
        path: &'static [&'static str],
        value: impl Into<String>,
    ) -> Change {
        Change {
            pass,
            component,
            path,
            value: Some(value.into()),
            secret: false,
        }
    }

    pub fn secret(mut self) -> Change {
        self.secret = true;
        self
    }

    pub fn remove(
        pass: &'static str,
        component: &'static str,
        path: &'static [&'static str],
    ) -> Change {
        Change {
            pass,
            component,
            path,
            value: None,
            secret: false,
        }
    }

    /// `specialize/Microsoft-Windows-Shell-Setup/ComputerName`.
    pub fn name(&self) -> String {
        format!("{}/{}/{}", self.pass, self.component, self.path.join("/"))
    }
}

/// Put `changes` into the answer file of the Windows at `root` (the one there, else a new
/// one), each line of what was done in `report`: set, replaced (the file had its own value) or
/// removed. Nothing is written when the file there cannot be read.
pub fn apply(root: &Path, changes: &[Change], report: &mut super::Report) -> Result<PathBuf> {
    use crate::log::Level;
    let (mut u, path, existed) = load(root)?;
    report.push(
        Level::Info,
        if existed {
            format!("Answer file {} found: merging into it", path.display())
        } else {
            format!("No answer file at {}: writing a new one", path.display())
        },
    );
    for c in changes {
        match &c.value {
            Some(v) => {
                let replaced = u.set(c.pass, c.component, c.path, v);
                let shown = if c.secret {
                    "(hidden)".to_string()
                } else {
                    format!("{v:?}")
                };
                let line = if replaced {
                    format!(
                        "{} = {shown} (replaces the answer file's own value)",
                        c.name()
                    )
                } else {
                    format!("{} = {shown}", c.name())
                };
                report.push(Level::Info, line);
            }
            None => {
                if u.remove(c.pass, c.component, c.path) {
                    report.push(
                        Level::Info,
                        format!("{} removed from the answer file", c.name()),
                    );
                }
            }
        }
    }
    save(&u, &path)?;
    report.push(Level::Info, format!("Wrote {}", path.display()));
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's example value, "pw" hidden as `AdministratorPassword`:
    /// <https://learn.microsoft.com/windows-hardware/customize/desktop/unattend/microsoft-windows-shell-setup-useraccounts>.
    #[test]
    fn hides_passwords_as_microsofts_example() {
        assert_eq!(
            hide_password("pw", "AdministratorPassword"),
            "cAB3AEEAZABtAGkAbgBpAHMAdAByAGEAdABvAHIAUABhAHMAcwB3AG8AcgBkAA=="
        );
        // LocalAccount's Password example: "password" + "Password".
        assert_eq!(
            hide_password("password", "Password"),
            "cABhAHMAcwB3AG8AcgBkAFAAYQBzAHMAdwBvAHIAZAA="
        );
    }

    #[test]
    fn merges_keeping_everything_else() {
        let src = br#"<?xml version="1.0" encoding="utf-8"?>
<!-- made by SIM -->
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="x86" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ComputerName>OLD</ComputerName>
      <CopyProfile>true</CopyProfile>
    </component>
  </settings>
</unattend>"#;
        let mut u = Unattend::parse(src, "a.xml").unwrap();
        assert!(u.set(
            "specialize",
            "Microsoft-Windows-Shell-Setup",
            &["ComputerName"],
            "NEW&1"
        ));
        assert!(!u.set(
            "oobeSystem",
            "Microsoft-Windows-Shell-Setup",
            &["UserAccounts", "AdministratorPassword", "PlainText"],
            "false"
        ));
        let out = u.to_bytes();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("<!-- made by SIM -->"), "{text}");
        assert!(text.contains("<CopyProfile>true</CopyProfile>"), "{text}");
        assert!(
            text.contains("<ComputerName>NEW&amp;1</ComputerName>"),
            "{text}"
        );
        let again = Unattend::parse(&out, "b.xml").unwrap();
        assert_eq!(
            again
                .get(
                    "specialize",
                    "Microsoft-Windows-Shell-Setup",
                    &["ComputerName"]
                )
                .as_deref(),
            Some("NEW&1")
        );
        // The new component takes the file's architecture.
        assert!(text.contains(
            r#"<component name="Microsoft-Windows-Shell-Setup" processorArchitecture="x86""#
        ));
        assert_eq!(text.matches("processorArchitecture=\"x86\"").count(), 2);
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let e = Unattend::parse(b"<unattend>\n  <settings>\n</unattend>", "admin.xml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admin.xml: line 3, column"), "{e}");
        let e = Unattend::parse(b"<foo/>", "x.xml").unwrap_err().to_string();
        assert!(e.contains("root element is <foo>"), "{e}");
        let e = Unattend::parse(b"<unattend>\n<a>\n", "y.xml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("y.xml: line 3") && e.contains("<a> is not closed"),
            "{e}"
        );
    }
}
