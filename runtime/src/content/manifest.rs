//! The files of a distribution point: the index (`tsforge-dp.json`) and each package's
//! manifest (`<ID>/tsforge-package.json`). `docs/content.md` is the specification.

use crate::sys::hex;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the index and manifest layout; readers refuse a newer one.
pub const FORMAT: u32 = 1;
/// The distribution point's index, at its root.
pub const INDEX_FILE: &str = "tsforge-dp.json";
/// A package's manifest, in the package folder.
pub const PACKAGE_FILE: &str = "tsforge-package.json";
/// The ed25519 signature (64 bytes) of the package manifest's bytes (`package build --sign`).
pub const PACKAGE_SIG_FILE: &str = "tsforge-package.json.sig";
/// The ed25519 signature (64 bytes) of the index's bytes.
pub const INDEX_SIG_FILE: &str = "tsforge-dp.json.sig";
/// The folder, inside the package folder, that holds the package's files.
pub const FILES_DIR: &str = "files";
/// Files larger than this carry one sha256 per block of this size, so a download is checked
/// (and a partial one resumed) block by block: 4 MiB keeps a 4 GiB image's manifest near
/// 70 KiB and a re-fetch after a bad block short.
pub const BLOCK_SIZE: u64 = 4 << 20;

/// What a package holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    /// Files for command lines, programs, drivers.
    Files,
    /// One OS or data image (tsforge image or WIM).
    Image,
}

impl std::fmt::Display for PackageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PackageKind::Files => "files",
            PackageKind::Image => "image",
        })
    }
}

/// A program of a package (*Install Package* runs it by name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    pub command_line: String,
}

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path with `/` separators, under the package's `files/` folder.
    pub path: String,
    pub size: u64,
    /// sha256 of the whole file, lowercase hex.
    pub sha256: String,
    /// sha256 of each [`BLOCK_SIZE`] block, for files larger than one block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<String>,
}

impl FileEntry {
    /// Number of blocks (at least one, also for an empty file).
    pub fn block_count(&self) -> u64 {
        self.size.div_ceil(BLOCK_SIZE).max(1)
    }
    /// Length of block `i`.
    pub fn block_len(&self, i: u64) -> u64 {
        let start = i * BLOCK_SIZE;
        self.size.saturating_sub(start).min(BLOCK_SIZE)
    }
    /// The expected sha256 of block `i`.
    pub fn block_hash(&self, i: u64) -> &str {
        if self.blocks.is_empty() {
            &self.sha256
        } else {
            &self.blocks[i as usize]
        }
    }
}

/// `<ID>/tsforge-package.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageManifest {
    pub format: u32,
    pub id: String,
    pub name: String,
    pub version: u32,
    pub kind: PackageKind,
    /// Seconds since 1970 (`SOURCE_DATE_EPOCH` when set).
    pub created: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<Program>,
    /// Sorted by path.
    pub files: Vec<FileEntry>,
    /// The package's own hash: sha256 of this manifest serialized with `hash` empty.
    pub hash: String,
}

impl PackageManifest {
    /// Bytes of all files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The hash this manifest should carry.
    pub fn compute_hash(&self) -> String {
        let mut m = self.clone();
        m.hash.clear();
        let bytes = serde_json::to_vec(&m).expect("a manifest serializes");
        hex(&Sha256::digest(&bytes))
    }

    /// Parse and check a manifest read from `origin` (named in errors): format, package ID,
    /// file paths (relative, no `..`), block lists, and the package hash.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let m: PackageManifest = serde_json::from_slice(bytes)
            .with_context(|| format!("{origin} is not a tsforge package manifest"))?;
        if m.format > FORMAT {
            bail!(
                "{origin}: package format {} is newer than this tsforge reads ({FORMAT}); \
                 update tsforge",
                m.format
            );
        }
        check_id(&m.id).with_context(|| origin.to_string())?;
        for f in &m.files {
            check_rel_path(&f.path).with_context(|| origin.to_string())?;
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{origin}: file {} has no valid sha256", f.path);
            }
            let want_blocks = if f.size > BLOCK_SIZE {
                f.size.div_ceil(BLOCK_SIZE) as usize
            } else {
                0
            };
            if f.blocks.len() != want_blocks {
                bail!(
                    "{origin}: file {} ({} bytes) lists {} block hashes, expected {want_blocks}",
                    f.path,
                    f.size,
                    f.blocks.len()
                );
            }
        }
        let want = m.compute_hash();
        if m.hash != want {
            bail!(
                "{origin}: the package hash {} does not match its contents ({want}); the manifest \
                 was changed after it was built",
                m.hash
            );
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        v.push(b'\n');
        v
    }

    /// The program named `name` (ASCII case ignored).
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub kind: PackageKind,
    pub files: u64,
    pub size: u64,
    pub hash: String,
}

impl IndexEntry {
    pub fn of(m: &PackageManifest) -> Self {
        IndexEntry {
            id: m.id.clone(),
            name: m.name.clone(),
            version: m.version,
            kind: m.kind,
            files: m.files.len() as u64,
            size: m.size(),
            hash: m.hash.clone(),
        }
    }
}

/// `tsforge-dp.json`: the packages of a distribution point, sorted by ID. Static HTTP servers
/// do not list folders in a common format, so `package list URL` reads this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DpIndex {
    pub format: u32,
    pub packages: Vec<IndexEntry>,
}

impl DpIndex {
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let i: DpIndex = serde_json::from_slice(bytes)
            .with_context(|| format!("{origin} is not a tsforge distribution point index"))?;
        if i.format > FORMAT {
            bail!(
                "{origin}: index format {} is newer than this tsforge reads ({FORMAT})",
                i.format
            );
        }
        Ok(i)
    }
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("an index serializes");
        v.push(b'\n');
        v
    }
    /// Add or replace `e`, keeping the list sorted by ID.
    pub fn upsert(&mut self, e: IndexEntry) {
        self.packages.retain(|p| !p.id.eq_ignore_ascii_case(&e.id));
        self.packages.push(e);
        self.packages.sort_by(|a, b| a.id.cmp(&b.id));
    }
}

/// A package ID: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, not starting with `.`
/// (ConfigMgr's are 8 characters: site code + 5 hex digits, e.g. `LAB00019`).
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        bail!("{id:?} is not a package ID (1-64 letters, digits, '-', '_' or '.', e.g. TSF00001)");
    }
    Ok(())
}

/// A file path inside a package: relative, `/`-separated, no empty, `.` or `..` component,
/// no backslash, colon or NUL (so it cannot leave the package folder on any system).
pub fn check_rel_path(p: &str) -> Result<()> {
    let bad = p.is_empty()
        || p.starts_with('/')
        || p.contains(['\\', ':', '\0'])
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        bail!("{p:?} is not a safe relative file path for a package");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PackageManifest {
        let mut m = PackageManifest {
            format: FORMAT,
            id: "TSF00001".into(),
            name: "Tools".into(),
            version: 1,
            kind: PackageKind::Files,
            created: 0,
            programs: vec![Program {
                name: "Install".into(),
                command_line: "setup.cmd".into(),
            }],
            files: vec![FileEntry {
                path: "a/b.txt".into(),
                size: 3,
                sha256: hex(&Sha256::digest(b"abc")),
                blocks: vec![],
            }],
            hash: String::new(),
        };
        m.hash = m.compute_hash();
        m
    }

    #[test]
    fn manifest_roundtrips_and_detects_changes() {
        let m = sample();
        let back = PackageManifest::parse(&m.to_json(), "m").unwrap();
        assert_eq!(back, m);
        let changed = String::from_utf8(m.to_json())
            .unwrap()
            .replace("setup.cmd", "evil.cmd");
        let e = PackageManifest::parse(changed.as_bytes(), "DP/TSF00001/tsforge-package.json")
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("does not match its contents"),
            "{e:#}"
        );
    }

    #[test]
    fn unsafe_paths_and_ids_are_refused() {
        for p in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a\\b",
            "C:x",
            "a//b",
            "./a",
        ] {
            assert!(check_rel_path(p).is_err(), "{p:?}");
        }
        check_rel_path("drivers/net/e1000.inf").unwrap();
        for id in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_id(id).is_err(), "{id:?}");
        }
        check_id("LAB00019").unwrap();
        let mut m = sample();
        m.files[0].path = "../../x".into();
        m.hash = m.compute_hash();
        let e = PackageManifest::parse(&m.to_json(), "m").unwrap_err();
        assert!(format!("{e:#}").contains("not a safe relative"), "{e:#}");
    }

    #[test]
    fn blocks() {
        let f = FileEntry {
            path: "x".into(),
            size: BLOCK_SIZE * 2 + 5,
            sha256: String::new(),
            blocks: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(f.block_count(), 3);
        assert_eq!(f.block_len(2), 5);
        assert_eq!(f.block_hash(1), "b");
        let empty = FileEntry {
            path: "e".into(),
            size: 0,
            sha256: "z".into(),
            blocks: vec![],
        };
        assert_eq!(empty.block_count(), 1);
        assert_eq!(empty.block_len(0), 0);
        assert_eq!(empty.block_hash(0), "z");
    }
}
