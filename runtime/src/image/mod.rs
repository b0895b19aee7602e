//! The tsforge image format: capture a file tree into an image, apply an image to a file tree.
//!
//! An image is a ZIP archive: first a JSON manifest (`tsforge-image.json`, version 2) listing
//! every path with its size, sha256, mode, owner, extended attributes, time and link target
//! (and hard links, device nodes, FIFOs, sparse files), then each distinct content once as
//! `d/<sha256 prefix>` (zstd, deflate or stored), then the usual central directory. Because the
//! manifest comes first, [`apply`] reads the archive once, front to back (a file today, a pipe
//! or an HTTP stream later), and checks every content against its sha256 as it writes it.
//! The full specification, and the reasons for each choice, are in `docs/image-format.md`.
//!
//! Trees are reached through [`TreeSource`] and [`TreeSink`] ([`DirSource`] and [`DirSink`]
//! for directories; the FAT file system of the disk layer plugs in the same way). A Linux
//! operating system's tree is kept whole: numeric owners (applied as root; not root, they are
//! skipped with one summary warning in [`ImageInfo::warnings`]), setuid/setgid/sticky,
//! extended attributes (`security.*`, `trusted.*`, `user.*`, POSIX ACLs), hard links, device
//! nodes, FIFOs, holes of sparse files. Not kept: sockets (left out, listed by
//! [`DirSource::left_out`]), access and creation times, and what Windows needs beyond that
//! (security descriptors, streams, reparse points: Windows travels as WIM, see [`wim`]).

mod apply;
mod capture;
mod dirfs;
pub mod fat;
pub mod format;
mod meta;
pub mod raw;
pub mod tree;
pub mod wim;
pub mod xattrs;

pub use apply::apply;
pub use capture::{capture, capture_at};
pub use format::Compression;
pub use tree::{
    CaptureFilter, DirSink, DirSource, EntryKind, Meta, NullSink, OwnerNames, RelPath, SourceEntry,
    Special, TreeSink, TreeSource,
};

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// What [`capture`] puts in the image besides the tree.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub name: String,
    pub description: String,
    pub compression: Compression,
    /// Threads for hashing and compression; 0 = all cores.
    pub threads: usize,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            name: String::new(),
            description: String::new(),
            compression: Compression::Zstd,
            threads: 0,
        }
    }
}

/// Progress of a capture or an apply; rate and time left are computed by the caller.
/// Capture counts its bytes twice (hashing every file, then compressing each distinct
/// content), so `bytes_total` grows once the first pass knows how much content is distinct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
}

/// What an image holds, from its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub description: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub tsforge_version: String,
    pub compression: Compression,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Hard links: further names of files counted in `files` (manifest version 2).
    pub hardlinks: u64,
    /// Device nodes and FIFOs (manifest version 2).
    pub devices: u64,
    pub fifos: u64,
    /// Size of all files (every path counted).
    pub total_bytes: u64,
    /// Size of the distinct contents (what single-instance storage keeps), uncompressed.
    pub stored_bytes: u64,
    /// Size of the image (bytes read for `apply` from a stream).
    pub image_bytes: u64,
    /// What `apply` could not apply and skipped, one summary line each (not running as root:
    /// owners, device nodes, privileged extended attributes). Callers must show them (the CLI
    /// on stderr, the task sequence steps in their log); empty for `capture`, `info`, `verify`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Reads only the manifest of the image at `path` (fast: the manifest is the first entry).
pub fn info(path: &Path) -> Result<ImageInfo> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut r = std::io::BufReader::with_capacity(crate::sys::BUFFER_SIZE, f);
    let mut c = format::Counted {
        inner: &mut r,
        pos: 0,
    };
    let plan =
        apply::read_manifest(&mut c).with_context(|| format!("reading {}", path.display()))?;
    let mut info = plan.info();
    info.image_bytes = size;
    Ok(info)
}

/// The quick check of the image file at `path` before anything is applied from it: its
/// manifest is read and checked whole, and its end records must be where a complete image has
/// them (a truncated file fails here, not after half of it was written). The contents are
/// checked as they are applied; [`verify`] checks everything.
///
/// Errors say what is wrong without naming the file.
pub fn check_file(path: &Path) -> Result<ImageInfo> {
    let f = std::fs::File::open(path).context("opening it")?;
    let len = f.metadata().context("reading its size")?.len();
    let mut r = std::io::BufReader::with_capacity(crate::sys::BUFFER_SIZE, f);
    let mut c = format::Counted {
        inner: &mut r,
        pos: 0,
    };
    let plan = apply::read_manifest(&mut c)?;
    format::check_end(&mut r, len)?;
    let mut info = plan.info();
    info.image_bytes = len;
    Ok(info)
}

/// Reads the whole image at `path` and checks every content against its sha256, writing
/// nothing: the same checks as [`apply`].
pub fn verify(path: &Path) -> Result<ImageInfo> {
    verify_with_progress(path, &mut |_| {})
}

/// [`verify`] with progress reports.
pub fn verify_with_progress(path: &Path, progress: &mut dyn FnMut(&Progress)) -> Result<ImageInfo> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = std::io::BufReader::with_capacity(crate::sys::BUFFER_SIZE, f);
    apply(&mut r, &mut NullSink, progress).with_context(|| format!("verifying {}", path.display()))
}
