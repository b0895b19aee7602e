//! tsforge's native YAML sequence format: reader and writer.
//!
//! The format is described in `docs/sequence-format.md`. Both directions map to the one model of
//! `model.rs`, and the mapping is lossless: for any model `m` (without duplicate attribute names,
//! which XML cannot express either), `parse(&write(&m), f) == m`.
//!
//! The code is in layers: `tree` (YAML text → a tree of positioned nodes, through
//! `saphyr-parser`; general YAML), `read` (that tree → model: the format's keys, short forms and
//! messages) and `write` (model → YAML text). This module holds the public API, [`parse`] and
//! [`write()`], the tables both directions share, and the round-trip tests.

mod read;
mod tree;
mod write;

pub use write::write;

use crate::error::ParseError;
use crate::model::Sequence;
use std::path::Path;

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

/// Read a YAML sequence. `file` is used in error messages only.
pub fn parse(text: &str, file: &Path) -> Result<Sequence, ParseError> {
    let root = tree::load(text, file)?;
    read::to_model(root, file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Pos, Step, Variable};

    fn p(text: &str) -> Result<Sequence, ParseError> {
        parse(text, Path::new("t.yaml"))
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
}
