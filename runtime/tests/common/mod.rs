//! Helpers shared by the runtime's integration tests.

pub mod used;

use std::path::{Path, PathBuf};
use tsforge_runtime::tools::{self, Tool};

/// Whether a missing tool fails the test instead of skipping it: `TSFORGE_REQUIRE_TOOLS=1`
/// (what `scripts/test.sh` sets in CI) or `CI=true`.
pub fn tools_required() -> bool {
    std::env::var("TSFORGE_REQUIRE_TOOLS").as_deref() == Ok("1")
        || std::env::var("CI").as_deref() == Ok("true")
}

/// The tool's full path, or `None` after printing SKIP (a panic when [`tools_required`]).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if tools_required() {
            panic!("{name} is missing (TSFORGE_REQUIRE_TOOLS=1, so this is a failure); run scripts/setup.sh");
        }
        eprintln!("SKIP {name}: not installed (scripts/setup.sh installs it)");
    }
    found
}

/// Whether a program of the runtime's tools table is installed, found as the runtime finds
/// it; prints `SKIP` when not, and fails instead when [`tools_required`].
pub fn have(tool: Tool) -> bool {
    if tools::find(tool).is_ok() {
        return true;
    }
    if tools_required() {
        panic!("{}", tools::MissingTool::new(tool));
    }
    eprintln!("SKIP {}", tool.program());
    false
}
