//! The monitor's one integration test binary: a real server on 127.0.0.1:0, in-process on its
//! own tokio runtime, spoken to over HTTP(S) with ureq and raw TCP as runners and pages do.

mod common;

mod api;
mod auth;
mod page;
mod postgres;
mod restart;
mod tls;

/// With `autotests = false`, a test file not declared above would never be compiled: every
/// `tests/*.rs` file must be a module of this binary.
#[test]
fn every_test_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rs").filter(|s| *s != "main") {
            if !main
                .lines()
                .any(|l| l.trim_end().ends_with(&format!("mod {stem};")))
            {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "tests/main.rs does not declare {missing:?}"
    );
}
