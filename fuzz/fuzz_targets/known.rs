//! Bugs the fuzzers already found and that are reported but not fixed yet. With
//! `FUZZ_SKIP_KNOWN=1` in the environment (fuzz/run.sh sets it unless told otherwise) the
//! targets step around them, so a run looks for *new* bugs instead of finding the same one
//! again. Remove an entry once its bug is fixed.
#![allow(dead_code)]

use std::sync::OnceLock;

pub fn skip() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var_os("FUZZ_SKIP_KNOWN").is_some_and(|v| v != "0"))
}

/// K1: `vars::is_read_only` slices `name[..6]` and panics when byte 6 is inside a character
/// (`Compté`). Reached from `set_from_step`, `validate` (Set Task Sequence Variable's
/// VariableName) and `tsforge env set`.
pub fn k1_name(name: &str) -> bool {
    skip() && name.len() >= 6 && !name.is_char_boundary(6)
}

/// K2: `envfile::append` of a multi-line value for a name ending in `<` writes
/// `NAME<<<DELIM`, which `envfile::parse` reads as NAME without its `<` and delimiter `<DELIM`:
/// the value is lost and the line reported as unclosed.
pub fn k2_name(name: &str) -> bool {
    skip() && name.ends_with('<')
}
