//! Windows driver folders for `--driver DIR` on Windows PE media: every INF file of the folder
//! is read and the files it names are checked before anything is built.
//!
//! What is checked, from Microsoft's INF reference:
//! - `[SourceDisksFiles]` and `[SourceDisksFiles.amd64]` (the x64 platform's; the `.x86`,
//!   `.ia64`, `.arm` and `.arm64` sections are for other platforms and not checked):
//!   `filename=diskid[,[subdir][,size]]`; the file is at the `path` of its `diskid` in
//!   `[SourceDisksNames]`/`[SourceDisksNames.amd64]`
//!   (`diskid = disk-description[,[tag-or-cab-file],[unused],[path],…]`), then `subdir`,
//!   relative to the INF's folder (the installation root). A `diskid` no SourceDisksNames
//!   section defines, a `%strkey%` file name (not allowed there) and a missing file are errors
//!   naming the INF, its line and the file. When the disk's tag is a `.cab` file, the files
//!   are inside it and the cabinet itself is checked instead.
//!   <https://learn.microsoft.com/en-us/windows-hardware/drivers/install/inf-sourcedisksfiles-section>,
//!   <https://learn.microsoft.com/en-us/windows-hardware/drivers/install/inf-sourcedisksnames-section>
//! - `[Version]` `CatalogFile` (and `CatalogFile.NTamd64`/`.NT`): the catalog must be there,
//!   since an x64 Windows PE loads signed drivers only.
//!   <https://learn.microsoft.com/en-us/windows-hardware/drivers/install/inf-version-section>
//!
//! INF files are UTF-16 (with a byte order mark) or 8-bit text; `;` starts a comment outside
//! quotes; a `\` at the end of a line continues it. Names are matched ignoring ASCII case, as
//! Windows does.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One line of an INF: (1-based line number, key, values), in a section.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    key: Option<String>,
    values: Vec<String>,
}

/// The INF's sections: lower-case name → entries (a section may appear several times).
fn parse(text: &str) -> HashMap<String, Vec<Entry>> {
    let mut sections: HashMap<String, Vec<Entry>> = HashMap::new();
    let mut current: Option<String> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, raw)) = lines.next() {
        let mut line = strip_comment(raw).trim().to_string();
        // `\` at the end continues the line.
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(strip_comment(next).trim()),
                None => break,
            }
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            if let Some(end) = line.find(']') {
                current = Some(line[1..end].trim().to_ascii_lowercase());
                continue;
            }
        }
        let Some(section) = &current else { continue };
        let (key, rest) = match split_outside_quotes(line, '=') {
            Some((k, v)) => (Some(unquote(k.trim())), v),
            None => (None, line),
        };
        let values = split_all_outside_quotes(rest, ',')
            .into_iter()
            .map(|v| unquote(v.trim()))
            .collect();
        sections.entry(section.clone()).or_default().push(Entry {
            line: n + 1,
            key,
            values,
        });
    }
    sections
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn split_outside_quotes(s: &str, sep: char) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

fn split_all_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((a, b)) = split_outside_quotes(rest, sep) {
        out.push(a);
        rest = b;
    }
    out.push(rest);
    out
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

/// An INF file's text: UTF-16 little- or big-endian with its byte order mark, UTF-8 (with or
/// without one), else Windows-1252 read as Latin-1 (the names checked are ASCII).
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let utf16 = |le: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    Ok(match bytes.as_slice() {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => match std::str::from_utf8(&bytes) {
            Ok(s) => s.to_string(),
            Err(_) => bytes.iter().map(|&b| b as char).collect(),
        },
    })
}

/// `rel` (`\`- or `/`-separated) under `dir`, each name matched ignoring ASCII case; `None`
/// when a component is missing.
pub fn find_ignoring_case(dir: &Path, rel: &str) -> Option<PathBuf> {
    let mut at = dir.to_path_buf();
    for part in rel
        .split(['\\', '/'])
        .filter(|p| !p.is_empty() && *p != ".")
    {
        if part == ".." {
            at = at.parent()?.to_path_buf();
            continue;
        }
        let exact = at.join(part);
        if exact.exists() {
            at = exact;
            continue;
        }
        let found = std::fs::read_dir(&at)
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(part))?;
        at = found.path();
    }
    Some(at)
}

/// Check one INF: every file its x64 (and undecorated) SourceDisksFiles sections name, and
/// its catalog, is in its folder. Returns how many files were checked.
pub fn check_inf(inf: &Path) -> Result<usize> {
    let text = read_text(inf)?;
    let sections = parse(&text);
    let dir = inf.parent().unwrap_or(Path::new("."));
    let at = |line: usize| format!("{}:{line}", inf.display());

    // diskid → (path, cab file)
    let mut disks: HashMap<String, (String, Option<String>)> = HashMap::new();
    for name in ["sourcedisksnames", "sourcedisksnames.amd64"] {
        for e in sections.get(name).into_iter().flatten() {
            let Some(id) = &e.key else { continue };
            let tag = e.values.get(1).filter(|t| !t.is_empty()).cloned();
            let path = e.values.get(3).cloned().unwrap_or_default();
            let cab = tag.filter(|t| t.to_ascii_lowercase().ends_with(".cab"));
            disks.insert(id.trim().to_string(), (path, cab));
        }
    }
    let mut checked = 0;
    for name in ["sourcedisksfiles", "sourcedisksfiles.amd64"] {
        let shown = if name.ends_with("amd64") {
            "[SourceDisksFiles.amd64]"
        } else {
            "[SourceDisksFiles]"
        };
        for e in sections.get(name).into_iter().flatten() {
            let file = e.key.clone().unwrap_or_else(|| e.values[0].clone());
            if file.contains('%') {
                bail!(
                    "{}: {shown} names the file {file:?} with a %strkey% token; Microsoft's \
                     INF SourceDisksFiles section requires the file's exact name",
                    at(e.line)
                );
            }
            let diskid = if e.key.is_some() {
                e.values
                    .first()
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            let Some((disk_path, cab)) = disks.get(&diskid) else {
                bail!(
                    "{}: {shown} puts {file} on disk {diskid:?}, which no [SourceDisksNames] \
                     section of the INF defines",
                    at(e.line)
                );
            };
            let subdir = if e.key.is_some() {
                e.values.get(1).cloned().unwrap_or_default()
            } else {
                String::new()
            };
            let rel = match cab {
                Some(cab) => format!("{disk_path}\\{cab}"),
                None => format!("{disk_path}\\{subdir}\\{file}"),
            };
            if find_ignoring_case(dir, &rel).is_none_or(|p| !p.is_file()) {
                let what = match cab {
                    Some(cab) => format!("{file} (in the cabinet {cab})"),
                    None => file.clone(),
                };
                bail!(
                    "{}: {shown} names {what}, which is not in the driver folder (looked for \
                     {})",
                    at(e.line),
                    dir.join(rel.replace('\\', "/").trim_start_matches('/'))
                        .display()
                );
            }
            checked += 1;
        }
    }
    for e in sections.get("version").into_iter().flatten() {
        let Some(key) = &e.key else { continue };
        let k = key.to_ascii_lowercase();
        if !matches!(
            k.as_str(),
            "catalogfile" | "catalogfile.nt" | "catalogfile.ntamd64"
        ) {
            continue;
        }
        let cat = e.values.first().cloned().unwrap_or_default();
        if cat.is_empty() {
            continue;
        }
        if find_ignoring_case(dir, &cat).is_none_or(|p| !p.is_file()) {
            bail!(
                "{}: [Version] {key} names {cat}, which is not in the driver folder (an x64 \
                 Windows PE loads signed drivers only)",
                at(e.line)
            );
        }
        checked += 1;
    }
    Ok(checked)
}

/// The INF files under `dir` (with subfolders), sorted, as paths relative to `dir`.
pub fn inf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("inf")) {
                out.push(p.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_comments_quotes_and_continuations() {
        let s = parse(
            "[Version]\r\nSignature=\"$Windows NT$\" ; comment\r\n[SourceDisksFiles]\r\n\
             a.sys = 1,,123\r\n\"b;c.sys\"=1 ; x\r\n[Strings]\r\nx = \"one, \\\r\n two\"\r\n",
        );
        let files = &s["sourcedisksfiles"];
        assert_eq!(files[0].key.as_deref(), Some("a.sys"));
        assert_eq!(files[0].values, ["1", "", "123"]);
        assert_eq!(files[0].line, 4);
        assert_eq!(files[1].key.as_deref(), Some("b;c.sys"));
        assert_eq!(s["version"][0].values, ["$Windows NT$"]);
        assert_eq!(s["strings"][0].values, ["one, two"]);
    }
}
