//! `envfile::parse` on arbitrary text never panics, and what `envfile::append` writes for a
//! (name, value) parses back to the same pair (names without `=`, `<<` or line breaks; values
//! without carriage returns, which the reader strips on purpose for Windows-written files).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use tsforge_runtime::envfile::{append, parse};

#[path = "known.rs"]
mod known;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| std::env::temp_dir().join(format!("tsforge-fuzz-env-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (assignments, errors) = parse(&text);
    let lines = text.lines().count().max(1);
    for (line, _) in &errors {
        assert!(*line >= 1 && *line <= lines);
    }
    let _ = assignments;

    // Round trip: first line (up to a NUL) is the name, the rest the value.
    let (name, value) = match text.split_once('\0') {
        Some((n, v)) => (n, v),
        None => return,
    };
    if name.trim().is_empty()
        || name.contains(['=', '\n', '\r'])
        || name.contains("<<")
        || value.contains('\r')
    {
        return;
    }
    let p = scratch();
    let _ = std::fs::remove_file(p);
    append(p, name, value).expect("append");
    let (back, errors) = parse(&std::fs::read_to_string(p).unwrap());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(back, vec![(name.to_string(), value.to_string())]);
});
