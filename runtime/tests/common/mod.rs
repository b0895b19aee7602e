//! Helpers shared by the runtime's integration tests.

use std::path::{Path, PathBuf};

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
