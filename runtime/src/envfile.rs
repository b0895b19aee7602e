//! How a step's process hands variables back to the engine.
//!
//! The engine gives every process the environment variable `TSFORGE_ENV_FILE`, naming an empty
//! file. The process appends lines to it, directly or through `tsforge env set NAME VALUE`:
//! - `NAME=VALUE` sets NAME to everything after the first `=`;
//! - `NAME<<DELIM`, then value lines, then a line `DELIM`, sets a multi-line value.
//!
//! When the process ends the engine applies the lines in order (`_SMSTS*` names are refused,
//! as for every step). `NAME=` (an empty value) deletes NAME, as setting any task sequence
//! variable to an empty value does. `TSFORGE_VAR_NAMES` lists the names of all task sequence variables,
//! separated by newlines, so `tsforge env list` can tell them from the rest of the environment.

use std::io::Write;
use std::path::Path;

pub const ENV_FILE: &str = "TSFORGE_ENV_FILE";
pub const VAR_NAMES: &str = "TSFORGE_VAR_NAMES";

/// `(name, value)` assignments in file order.
pub type Assignments = Vec<(String, String)>;
/// `(1-based line, message)` for lines that could not be read.
pub type LineErrors = Vec<(usize, String)>;

/// Parse an env file. Returns the assignments and, for bad lines, `(line number, message)`.
pub fn parse(text: &str) -> (Assignments, LineErrors) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        // The last `<<` separates: a name may itself end in `<` (fuzz K2).
        if let Some((name, delim)) = line
            .rsplit_once("<<")
            .filter(|(n, d)| !n.contains('=') && !d.is_empty())
        {
            let mut value = Vec::new();
            let mut closed = false;
            for (_, l) in lines.by_ref() {
                let l = l.trim_end_matches('\r');
                if l == delim {
                    closed = true;
                    break;
                }
                value.push(l);
            }
            if closed {
                out.push((name.to_string(), value.join("\n")));
            } else {
                errors.push((i + 1, format!("{name}<<{delim}: no closing line {delim:?}")));
            }
        } else if let Some((name, value)) = line.split_once('=') {
            out.push((name.to_string(), value.to_string()));
        } else {
            errors.push((i + 1, format!("expected NAME=VALUE, found {line:?}")));
        }
    }
    (out, errors)
}

/// Append one assignment in the format above (multi-line values use a delimiter that does
/// not occur in the value).
pub fn append(path: &Path, name: &str, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    let text = if value.contains('\n') || value.contains('\r') {
        let mut delim = "TSFORGE_EOF".to_string();
        while value.lines().any(|l| l == delim) {
            delim.push('_');
        }
        format!("{name}<<{delim}\n{value}\n{delim}\n")
    } else {
        format!("{name}={value}\n")
    };
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simple_and_multiline_and_reports_bad_lines() {
        let (vars, errors) = parse("A=1\nB=x=y\n\nC<<EOF\nl1\nl2\nEOF\nbad line\nD=\r\n");
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), "l1\nl2".into()),
                ("D".into(), "".into())
            ]
        );
        assert_eq!(
            errors,
            vec![(8, "expected NAME=VALUE, found \"bad line\"".into())]
        );
    }

    #[test]
    fn multiline_value_of_a_name_ending_in_lt_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        append(&p, "A<", "x\ny").unwrap();
        let (vars, errors) = parse(&std::fs::read_to_string(&p).unwrap());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(vars, vec![("A<".into(), "x\ny".into())]);
    }

    #[test]
    fn append_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        append(&p, "X", "a=b").unwrap();
        append(&p, "Y", "line1\nTSFORGE_EOF\nline3").unwrap();
        let (vars, errors) = parse(&std::fs::read_to_string(&p).unwrap());
        assert!(errors.is_empty());
        assert_eq!(vars[1].1, "line1\nTSFORGE_EOF\nline3");
        assert_eq!(vars[0], ("X".into(), "a=b".into()));
    }
}
