//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};

/// An external checker (sgdisk, fsck.fat, mtools, …): its path, or `None` after printing
/// `SKIP <tool>`. With `TSFORGE_REQUIRE_TOOLS=1` (CI) a missing tool fails the test instead.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("TSFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{name} is missing (TSFORGE_REQUIRE_TOOLS=1); run scripts/setup.sh");
        }
        eprintln!("SKIP {name}: not installed");
    }
    found
}
