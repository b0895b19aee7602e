//! Reproducible cpio archives in the "newc" format (magic `070701`), as the Linux kernel
//! unpacks them for an initramfs (kernel documentation `early-userspace/buffer-format`),
//! optionally compressed with gzip or zstd.
//!
//! ```no_run
//! use tsforge_builder::cpio::{Compression, CpioBuilder, Source};
//! # fn main() -> Result<(), tsforge_builder::cpio::CpioError> {
//! let mut initrd = CpioBuilder::new(1_700_000_000);
//! initrd.add_file("init", Source::path("build/init"), 0o755)?;
//! initrd.add_file("tsforge/sequence.yaml", Source::bytes(b"steps: []\n".to_vec()), 0o644)?;
//! initrd.add_symlink("bin/sh", "busybox")?;
//! let out = std::fs::File::create("initrd.img.tmp").map_err(tsforge_builder::cpio::CpioError::Write)?;
//! initrd.write(out, Compression::Zstd)?;
//! # Ok(()) }
//! ```
//!
//! **Reproducible.** Entries go out sorted by path (so every directory comes before what it
//! holds, as the kernel needs), inode numbers are 1, 2, … in that order, every entry has the
//! one given mtime, owner and group 0, and device numbers 0; directories the caller did not add
//! are created with mode 0755. gzip output has no file name and mtime 0 in its header (OS byte
//! 255, "unknown", on every build host); zstd output is single-threaded. Same entries, same
//! crate versions (Cargo.lock) → same bytes.
//!
//! **Framing by the `cpio` crate** (`newc::Builder`, 110-byte header, name and data padded to
//! 4 bytes, `TRAILER!!!`); this module adds the tree, the checks, streaming from disk and
//! compression. The crate does not check that an entry got as many bytes as its header says
//! (it then silently skips the padding), so every copy goes through a helper that does.
//!
//! **Limits and omissions:** newc stores sizes and mtimes in 32 bits, so a file over 4 GiB − 1
//! byte or a timestamp outside 1970–2106 is refused. No hard links, device nodes or FIFOs
//! (the kernel's devtmpfs provides `/dev`); no xz/lz4 compression; owners are always root.

pub use crate::source::Source;
use crate::source::{copy_exact, split_path, CopyError};
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use tsforge_runtime::sys::BUFFER_SIZE;

/// Compression levels: what dracut uses by default for each (`gzip -9`, `zstd -15`).
const GZIP_LEVEL: u32 = 9;
const ZSTD_LEVEL: i32 = 15;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// How the archive is compressed. Every Linux kernel configured for an initramfs reads gzip;
/// zstd needs `CONFIG_RD_ZSTD` (common since Linux 5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The plain cpio archive.
    None,
    /// gzip, level 9, no name or timestamp in the header.
    Gzip,
    /// zstd, level 15, with a content checksum.
    Zstd,
}

/// What went wrong adding entries or writing the archive; errors about one entry name its
/// path in the archive (and the source on the build machine where there is one).
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// A path inside the archive is malformed.
    #[error("{path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The same path was added twice.
    #[error("{path}: added twice")]
    Duplicate { path: String },
    /// A path is used both as a directory and as something else.
    #[error("{path}: used both as a directory and as a file or link")]
    FileDirConflict { path: String },
    /// A mode with bits other than permissions.
    #[error("{path}: mode {mode:#o} has bits other than permissions (at most 0o7777)")]
    Mode { path: String, mode: u32 },
    /// An empty symbolic-link target.
    #[error("{path}: a symbolic link needs a non-empty target without NUL characters")]
    Symlink { path: String },
    /// A source could not be read.
    #[error("{path}: cannot read {source_desc}: {error}")]
    Read {
        path: String,
        source_desc: String,
        error: io::Error,
    },
    /// A file too large for a newc header.
    #[error("{path}: {source_desc} is {size} bytes; a newc cpio entry holds at most 4 GiB - 1")]
    FileTooLarge {
        path: String,
        source_desc: String,
        size: u64,
    },
    /// A source changed size between the check and the copy.
    #[error(
        "{path}: {source_desc} changed size while the archive was written (expected {size} bytes)"
    )]
    Changed {
        path: String,
        source_desc: String,
        size: u64,
    },
    /// The mtime does not fit newc's 32-bit field.
    #[error("mtime {0}: newc archives hold times from 1970 to 2106; set SOURCE_DATE_EPOCH to a time in that range")]
    Mtime(i64),
    /// Writing or compressing the output failed.
    #[error("writing the archive: {0}")]
    Write(io::Error),
}

#[derive(Debug, Clone)]
enum Kind {
    /// `explicit`: added with [`CpioBuilder::add_dir`], not only implied by a child.
    Dir {
        explicit: bool,
    },
    File(Source),
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// Permission bits.
    mode: u32,
}

/// Collects the entries of an archive; [`CpioBuilder::write`] writes it.
#[derive(Debug, Clone)]
pub struct CpioBuilder {
    mtime: i64,
    /// Normalized path → entry; parents are always present.
    entries: BTreeMap<String, Node>,
}

impl CpioBuilder {
    /// An empty archive whose entries all get `mtime` (seconds since 1970, UTC).
    pub fn new(mtime: i64) -> Self {
        CpioBuilder {
            mtime,
            entries: BTreeMap::new(),
        }
    }

    /// Add a directory with permission bits `mode` (e.g. `0o755`). Directories that files
    /// need are created anyway, with 0755; this sets another mode or adds an empty one.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        let key = self.add_parents(path, mode)?;
        match self.entries.get(&key).map(|n| &n.kind) {
            Some(Kind::Dir { explicit: true }) => Err(CpioError::Duplicate { path: key }),
            Some(Kind::File(_) | Kind::Symlink(_)) => Err(CpioError::FileDirConflict { path: key }),
            _ => {
                self.entries.insert(
                    key,
                    Node {
                        kind: Kind::Dir { explicit: true },
                        mode,
                    },
                );
                Ok(())
            }
        }
    }

    /// Add a regular file with permission bits `mode` (e.g. `0o644`, `0o755` for programs).
    /// The source is read (and its size checked) only by [`CpioBuilder::write`].
    pub fn add_file(
        &mut self,
        path: &str,
        source: impl Into<Source>,
        mode: u32,
    ) -> Result<(), CpioError> {
        let key = self.add_parents(path, mode)?;
        self.insert_leaf(
            key,
            Node {
                kind: Kind::File(source.into()),
                mode,
            },
        )
    }

    /// Add a symbolic link at `path` pointing at `target` (stored as given, relative or
    /// absolute).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        let key = self.add_parents(path, 0o777)?;
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::Symlink { path: key });
        }
        self.insert_leaf(
            key,
            Node {
                kind: Kind::Symlink(target.to_string()),
                mode: 0o777,
            },
        )
    }

    fn insert_leaf(&mut self, key: String, node: Node) -> Result<(), CpioError> {
        match self.entries.get(&key).map(|n| &n.kind) {
            Some(Kind::Dir { .. }) => Err(CpioError::FileDirConflict { path: key }),
            Some(_) => Err(CpioError::Duplicate { path: key }),
            None => {
                self.entries.insert(key, node);
                Ok(())
            }
        }
    }

    /// Check `path` and `mode`, create missing parent directories, return the normalized path.
    fn add_parents(&mut self, path: &str, mode: u32) -> Result<String, CpioError> {
        let parts = split_path(path).map_err(|reason| CpioError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        })?;
        let full = parts.join("/");
        if mode & !0o7777 != 0 {
            return Err(CpioError::Mode { path: full, mode });
        }
        let mut key = String::new();
        for part in &parts[..parts.len() - 1] {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(part);
            match self.entries.get(&key).map(|n| &n.kind) {
                Some(Kind::Dir { .. }) => {}
                Some(_) => return Err(CpioError::FileDirConflict { path: key }),
                None => {
                    self.entries.insert(
                        key.clone(),
                        Node {
                            kind: Kind::Dir { explicit: false },
                            mode: 0o755,
                        },
                    );
                }
            }
        }
        Ok(full)
    }

    /// Write the archive to `out`, compressed as asked, and return `out`. Every source is
    /// checked (it exists, at most 4 GiB − 1 bytes) before the first byte is written; file
    /// contents are then streamed.
    pub fn write<W: Write>(&self, out: W, compression: Compression) -> Result<W, CpioError> {
        let mtime = u32::try_from(self.mtime).map_err(|_| CpioError::Mtime(self.mtime))?;
        let mut sizes = Vec::with_capacity(self.entries.len());
        for (path, node) in &self.entries {
            sizes.push(match &node.kind {
                Kind::Dir { .. } => 0,
                Kind::Symlink(t) => t.len() as u32, // a path, far below 4 GiB
                Kind::File(source) => {
                    let size = source.size().map_err(|error| CpioError::Read {
                        path: path.clone(),
                        source_desc: source.describe(),
                        error,
                    })?;
                    u32::try_from(size).map_err(|_| CpioError::FileTooLarge {
                        path: path.clone(),
                        source_desc: source.describe(),
                        size,
                    })?
                }
            });
        }

        let buffered = BufWriter::with_capacity(BUFFER_SIZE, out);
        let buffered = match compression {
            Compression::None => {
                let mut w = buffered;
                self.write_archive(&mut w, mtime, &sizes)?;
                w
            }
            Compression::Gzip => {
                let mut w =
                    flate2::GzBuilder::new().write(buffered, flate2::Compression::new(GZIP_LEVEL));
                self.write_archive(&mut w, mtime, &sizes)?;
                w.finish().map_err(CpioError::Write)?
            }
            Compression::Zstd => {
                let mut w = zstd::Encoder::new(buffered, ZSTD_LEVEL).map_err(CpioError::Write)?;
                w.include_checksum(true).map_err(CpioError::Write)?;
                self.write_archive(&mut w, mtime, &sizes)?;
                w.finish().map_err(CpioError::Write)?
            }
        };
        buffered
            .into_inner()
            .map_err(|e| CpioError::Write(e.into_error()))
    }

    fn write_archive(&self, w: &mut dyn Write, mtime: u32, sizes: &[u32]) -> Result<(), CpioError> {
        let mut buf = vec![0u8; BUFFER_SIZE];
        for (ino, ((path, node), &size)) in (1u32..).zip(self.entries.iter().zip(sizes)) {
            let (kind_bits, nlink) = match node.kind {
                Kind::Dir { .. } => (S_IFDIR, 2),
                Kind::File(_) => (S_IFREG, 1),
                Kind::Symlink(_) => (S_IFLNK, 1),
            };
            let mut entry = cpio::newc::Builder::new(path)
                .ino(ino)
                .mode(kind_bits | node.mode)
                .uid(0)
                .gid(0)
                .nlink(nlink)
                .mtime(mtime)
                .write(&mut *w, size);
            match &node.kind {
                Kind::Dir { .. } => {}
                Kind::Symlink(target) => entry
                    .write_all(target.as_bytes())
                    .map_err(CpioError::Write)?,
                Kind::File(source) => {
                    copy_exact(source, u64::from(size), &mut entry, &mut buf, &mut |_| {}).map_err(
                        |e| match e {
                            CopyError::Read(error) => CpioError::Read {
                                path: path.clone(),
                                source_desc: source.describe(),
                                error,
                            },
                            CopyError::Write(e) => CpioError::Write(e),
                            CopyError::Changed => CpioError::Changed {
                                path: path.clone(),
                                source_desc: source.describe(),
                                size: u64::from(size),
                            },
                        },
                    )?
                }
            }
            entry.finish().map_err(CpioError::Write)?;
        }
        cpio::newc::trailer(&mut *w).map_err(CpioError::Write)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(b: &CpioBuilder) -> Vec<u8> {
        b.write(Vec::new(), Compression::None).unwrap()
    }

    #[test]
    fn header_fields_and_padding() {
        let mut b = CpioBuilder::new(0x1234_5678);
        b.add_file("a/b", Source::bytes(b"hello".to_vec()), 0o640)
            .unwrap();
        let out = archive(&b);
        // First entry: the implied directory "a", inode 1, mode 040755, nlink 2.
        let h = std::str::from_utf8(&out[..110]).unwrap();
        assert_eq!(&h[..6], "070701");
        assert_eq!(&h[6..14], "00000001");
        assert_eq!(&h[14..22], "000041ed");
        assert_eq!(&h[38..46], "00000002");
        assert_eq!(&h[46..54], "12345678");
        // Every entry starts on a 4-byte boundary, and the archive ends with the trailer.
        assert_eq!(out.len() % 4, 0);
        let trailer = out.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
        assert_eq!((trailer - 110) % 4, 0);
    }

    #[test]
    fn refuses_bad_entries() {
        let mut b = CpioBuilder::new(0);
        b.add_file("x", Source::bytes(vec![1]), 0o644).unwrap();
        assert!(matches!(
            b.add_file("x", Source::bytes(vec![1]), 0o644),
            Err(CpioError::Duplicate { .. })
        ));
        assert!(matches!(
            b.add_file("x/y", Source::bytes(vec![1]), 0o644),
            Err(CpioError::FileDirConflict { .. })
        ));
        assert!(matches!(
            b.add_file("z", Source::bytes(vec![1]), 0o100644),
            Err(CpioError::Mode { .. })
        ));
        assert!(matches!(
            b.add_symlink("l", ""),
            Err(CpioError::Symlink { .. })
        ));
        assert!(matches!(
            b.add_dir("../up", 0o755),
            Err(CpioError::InvalidPath { .. })
        ));
        assert!(matches!(
            CpioBuilder::new(-1).write(Vec::new(), Compression::None),
            Err(CpioError::Mtime(-1))
        ));
    }
}
