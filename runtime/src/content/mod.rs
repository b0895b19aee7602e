//! Content packages and distribution points (`docs/content.md`).
//!
//! A *package* is a folder of files with an ID and a version, described by a manifest that
//! lists every file with its size and sha256 (and a sha256 per 4 MiB block for large files);
//! an *image package* holds one tsforge image or WIM. A *distribution point* is a folder of
//! packages plus an index, read from a directory or from any static HTTP(S) server: there is
//! no tsforge server protocol. Steps get packages through [`Store`]: streamed (images, verified
//! block by block on a fetch thread) or copied into the run's cache (verified, resumable).

pub mod build;
pub mod http;
pub mod manifest;
pub mod store;

pub use http::HttpOptions;
pub use manifest::{PackageKind, PackageManifest};
pub use store::{Found, LocalPackage, Origin, Store};

use std::path::{Path, PathBuf};

/// The distribution points of a run: its `--content` locations, then `SMSTSContentLocations`
/// (comma or semicolon separated, or `SMSTSContentLocations1`, `…2`, … one per variable).
pub fn origins(locations: &[String], vars: &crate::vars::Vars) -> Vec<Origin> {
    let mut out: Vec<Origin> = locations.iter().map(|s| Origin::parse(s)).collect();
    let mut add = |v: &str| {
        for part in v.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()) {
            let o = Origin::parse(part);
            if !out.contains(&o) {
                out.push(o);
            }
        }
    };
    if let Some(v) = vars.get("SMSTSContentLocations") {
        add(v);
    }
    for i in 1.. {
        match vars.get(&format!("SMSTSContentLocations{i}")) {
            Some(v) => add(v),
            None => break,
        }
    }
    out
}

/// The cache folder of a run (inside its state directory, so it moves with the state).
pub fn cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cache")
}
