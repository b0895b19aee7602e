//! Where the bytes of a file put on boot media come from: a file on the build machine, read
//! (streamed) only while the output is written, or bytes the builder made in memory (a
//! generated config, a manifest). Shared by the ISO ([`crate::iso`]) and initramfs
//! ([`crate::cpio`]) writers, together with the check of the `/`-separated paths inside them.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The content of one file on the media.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on the build machine, opened and read when the output is written (symbolic links
    /// are followed). Its size is taken when the output is planned; a file that changes size
    /// before it has been copied is an error.
    Path(PathBuf),
    /// Bytes held in memory (cheap to clone).
    Bytes(Arc<[u8]>),
}

impl Source {
    /// A file on the build machine.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        Source::Path(path.into())
    }

    /// Bytes held in memory.
    pub fn bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        Source::Bytes(bytes.into())
    }

    /// The size in bytes: the file's current size, or the length of the bytes.
    pub fn size(&self) -> io::Result<u64> {
        match self {
            Source::Path(p) => {
                let meta = std::fs::metadata(p)?;
                if meta.is_dir() {
                    return Err(io::Error::other("is a directory, not a file"));
                }
                Ok(meta.len())
            }
            Source::Bytes(b) => Ok(b.len() as u64),
        }
    }

    /// A reader over the content.
    pub fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        match self {
            Source::Path(p) => Ok(Box::new(File::open(p)?)),
            Source::Bytes(b) => Ok(Box::new(&b[..])),
        }
    }

    /// For messages: the host path, or `<N bytes in memory>`.
    pub fn describe(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Bytes(b) => format!("<{} bytes in memory>", b.len()),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Source::Bytes(b) => write!(f, "Bytes(<{} bytes>)", b.len()),
        }
    }
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Self {
        Source::Path(p)
    }
}

impl From<&Path> for Source {
    fn from(p: &Path) -> Self {
        Source::Path(p.to_path_buf())
    }
}

impl From<Vec<u8>> for Source {
    fn from(b: Vec<u8>) -> Self {
        Source::Bytes(b.into())
    }
}

impl From<&[u8]> for Source {
    fn from(b: &[u8]) -> Self {
        Source::Bytes(b.into())
    }
}

/// Copy exactly `size` bytes of `source` to `out` through `buf`, calling `progress` with the
/// number of bytes after every write. A source that ends early or holds more than `size` bytes
/// (it changed after it was planned) is an error.
pub(crate) fn copy_exact(
    source: &Source,
    size: u64,
    out: &mut dyn io::Write,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64),
) -> Result<(), CopyError> {
    let mut reader = source.open().map_err(CopyError::Read)?;
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => return Err(CopyError::Changed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        left -= n as u64;
        progress(n as u64);
    }
    let mut probe = [0u8; 1];
    loop {
        match reader.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(CopyError::Changed),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        }
    }
}

/// Why [`copy_exact`] failed; the writers turn it into an error naming the file.
#[derive(Debug)]
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
    Changed,
}

/// The components of a `/`-separated path inside an ISO or archive. A leading `/` is allowed
/// and ignored; empty components (`a//b`, a trailing `/`), `.`, `..`, backslashes and NUL
/// characters are refused, with the reason.
pub(crate) fn split_path(path: &str) -> Result<Vec<&str>, &'static str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Err("the path is empty");
    }
    let parts: Vec<&str> = rest.split('/').collect();
    for p in &parts {
        match *p {
            "" => return Err("the path has an empty component (`//` or a trailing `/`)"),
            "." | ".." => return Err("`.` and `..` are not allowed in paths"),
            _ if p.contains('\\') => return Err("use `/`, not `\\`, between path components"),
            _ if p.contains('\0') => return Err("the path contains a NUL character"),
            _ => {}
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_accepts_and_refuses() {
        assert_eq!(split_path("/a/b.txt").unwrap(), ["a", "b.txt"]);
        assert_eq!(split_path("a").unwrap(), ["a"]);
        for bad in ["", "/", "a//b", "a/", "../a", "a/./b", "a\\b", "a\0"] {
            assert!(split_path(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn copy_exact_detects_a_changed_source() {
        let src = Source::bytes(vec![1u8; 10]);
        let mut buf = [0u8; 4];
        let mut out = Vec::new();
        let mut seen = 0;
        copy_exact(&src, 10, &mut out, &mut buf, &mut |n| seen += n).unwrap();
        assert_eq!((out.len(), seen), (10, 10));
        assert!(matches!(
            copy_exact(&src, 9, &mut Vec::new(), &mut buf, &mut |_| {}),
            Err(CopyError::Changed)
        ));
        assert!(matches!(
            copy_exact(&src, 11, &mut Vec::new(), &mut buf, &mut |_| {}),
            Err(CopyError::Changed)
        ));
    }
}
