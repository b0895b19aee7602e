//! Helpers shared by the builder's integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The tool's full path, or `None` after printing SKIP (a panic under TSFORGE_REQUIRE_TOOLS=1).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("TSFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{name} is missing (TSFORGE_REQUIRE_TOOLS=1, so this is a failure); run scripts/setup.sh");
        }
        eprintln!("SKIP {name}: not installed (scripts/setup.sh installs it)");
    }
    found
}

/// Run `cmd` with stdin closed; its stdout, or a panic showing the command and its output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Deterministic, not very compressible test content of `len` bytes.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
