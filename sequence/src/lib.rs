//! Task sequences: the model (`model`), the ConfigMgr/MDT XML (`xml`) and YAML (`yaml`) formats,
//! and the positioned errors they report (`error`). Validation, which needs to know the step
//! types, is the runtime's `engine::validate`.
//!
//! A leaf crate: it depends on no other tsforge crate. `tsforge-runtime` re-exports it as
//! `tsforge_runtime::sequence` (and this crate's `error` as `tsforge_runtime::error`).
//!
//! `load` reads a file in either format. The format is chosen from the content, not the file
//! name: after an optional byte-order mark (UTF-8, UTF-16 LE or BE), a document whose first
//! non-blank character is `<` is XML, anything else YAML.

pub mod error;
pub mod model;
pub mod xml;
pub mod yaml;

pub use model::*;

use crate::error::ParseError;
use std::path::Path;

/// The two source formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Xml,
    Yaml,
}

/// Decode a file's bytes to text: UTF-8 (with or without BOM) or UTF-16 LE/BE with BOM.
/// A UTF-16 file without BOM is recognised by its `<\0` / `\0<` start.
pub fn decode_text(bytes: &[u8], file: &Path) -> Result<String, ParseError> {
    let utf16 = |data: &[u8], le: bool| -> Result<String, ParseError> {
        if data.len() % 2 != 0 {
            return Err(ParseError::new(
                file,
                1,
                1,
                "UTF-16 file has an odd number of bytes (truncated?)",
            ));
        }
        let units: Vec<u16> = data
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units)
            .map_err(|_| ParseError::new(file, 1, 1, "invalid UTF-16 text (unpaired surrogate)"))
    };
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8(rest, file);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    if bytes.len() >= 2 && bytes[0] == b'<' && bytes[1] == 0 {
        return utf16(bytes, true);
    }
    if bytes.len() >= 2 && bytes[0] == 0 && bytes[1] == b'<' {
        return utf16(bytes, false);
    }
    utf8(bytes, file)
}

fn utf8(bytes: &[u8], file: &Path) -> Result<String, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() as u32 + 1;
            let col = good.iter().rev().take_while(|b| **b != b'\n').count() as u32 + 1;
            Err(ParseError::new(
                file,
                line,
                col,
                "file is not valid UTF-8 (and has no UTF-16 byte-order mark)",
            ))
        }
    }
}

/// Guess the format of decoded text.
pub fn detect(text: &str) -> Format {
    if text.trim_start().starts_with('<') {
        Format::Xml
    } else {
        Format::Yaml
    }
}

/// Parse decoded text in the given format. `file` is used in error messages only.
pub fn parse_str(text: &str, file: &Path, format: Format) -> Result<Sequence, ParseError> {
    match format {
        Format::Xml => xml::parse(text, file),
        Format::Yaml => yaml::parse(text, file),
    }
}

/// Read and parse a sequence file (XML or YAML, detected from the content).
pub fn load(path: &Path) -> Result<(Sequence, Format), ParseError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ParseError::new(path, 0, 0, format!("cannot read file: {e}")))?;
    let text = decode_text(&bytes, path)?;
    let format = detect(&text);
    Ok((parse_str(&text, path, format)?, format))
}

/// Write a sequence in the given format.
pub fn write(seq: &Sequence, format: Format) -> String {
    match format {
        Format::Xml => xml::write(seq),
        Format::Yaml => yaml::write(seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf16_le_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "<sequence/>".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_text(&bytes, Path::new("x")).unwrap(), "<sequence/>");
    }

    #[test]
    fn decodes_utf16_be_with_bom_and_utf8_bom() {
        let mut bytes = vec![0xFE, 0xFF];
        for u in "<a/>".encode_utf16() {
            bytes.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(decode_text(&bytes, Path::new("x")).unwrap(), "<a/>");
        assert_eq!(
            decode_text(b"\xEF\xBB\xBFname: x", Path::new("x")).unwrap(),
            "name: x"
        );
    }

    #[test]
    fn invalid_utf8_is_positioned() {
        let e = decode_text(b"a: 1\nb: \xff\n", Path::new("s.yaml")).unwrap_err();
        assert_eq!((e.line, e.column), (2, 4));
    }
}
