//! Raw disk and partition images (`.img`, zstd- or gzip-compressed), written onto a byte range
//! (a partition or a whole disk) the way coreos-installer's `image_copy_default` writes a disk
//! (`src/download.rs`):
//!
//! - the compression is detected from the magic bytes, not the file name;
//! - an image known to be bigger than the target is refused before the first write (the
//!   uncompressed file's length, zstd's frame content size, gzip's ISIZE: ISIZE is the size
//!   modulo 2^32, so it is a lower bound and still proves an image too big); otherwise the write
//!   stops with an error as soon as it would pass the end of the target;
//! - the first MiB of the target is zeroed first and the image's first MiB written last, after
//!   the whole image was written and its sha256 verified, so a half-written or unverified disk
//!   has no partition table or boot sector and cannot boot;
//! - zero runs are written for real (discard may not zero a device), unless the caller says the
//!   target is a fresh, zero-filled file it created (`sparse`).
//!
//! The sha256 is that of the image file as stored (compressed or not): what `sha256sum FILE`
//! prints and what a content package's manifest records.
//!
//! The target is any `Write + Seek` of known length, such as the disk layer's byte range of a
//! file or block device, which also enforces the range. Position 0 is the start of the target.
//! The caller syncs the target after success (`sync_all`), since a `dyn Write` cannot.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use sha2::{Digest, Sha256};

use crate::sys::{hex, DEVICE_BUFFER_SIZE as BUFFER_SIZE};

/// The part of the target written last.
pub const FIRST_PART: u64 = 1 << 20;

/// Granularity of the zero-run check for sparse writes.
const SPARSE_BLOCK: usize = 4096;

/// A writer that can seek: what an image is written to.
pub trait WriteSeek: Write + Seek {}
impl<T: Write + Seek + ?Sized> WriteSeek for T {}

/// How an image file is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Gzip,
}

impl Compression {
    /// Detect from the first bytes of a file. Formats we recognise but cannot read are errors
    /// that say so, rather than being written to disk as raw data.
    pub fn detect(magic: &[u8]) -> Result<Compression> {
        let zstd_skippable =
            magic.len() >= 4 && magic[0] & 0xf0 == 0x50 && magic[1..4] == [0x2a, 0x4d, 0x18];
        if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || zstd_skippable {
            Ok(Compression::Zstd)
        } else if magic.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            bail!("xz-compressed images are not supported; decompress it (xz -d) or recompress it with zstd")
        } else if magic.starts_with(b"BZh") && magic.len() >= 4 && magic[3].is_ascii_digit() {
            bail!("bzip2-compressed images are not supported; decompress it (bzip2 -d) or recompress it with zstd")
        } else {
            Ok(Compression::None)
        }
    }
}

/// Options for [`apply`].
#[derive(Default)]
pub struct ApplyOptions<'a> {
    /// The sha256 of the image file as stored; the first MiB is written only if it matches.
    pub expected_sha256: Option<[u8; 32]>,
    /// Seek over all-zero blocks instead of writing them. Only for a target known to read as
    /// zeros (an image file tsforge just created); never for a device.
    pub sparse: bool,
    /// Called after each chunk with the bytes written so far and the total when known.
    pub progress: Option<&'a mut dyn FnMut(u64, Option<u64>)>,
}

/// Write the image file `image` onto `target` (`target_len` bytes long, from position 0).
/// Returns the number of image bytes written (uncompressed).
pub fn apply(
    image: &Path,
    target: &mut dyn WriteSeek,
    target_len: u64,
    opts: ApplyOptions<'_>,
) -> Result<u64> {
    let shown = image.display();
    let file = File::open(image).with_context(|| format!("opening image {shown}"))?;
    let file_len = file
        .metadata()
        .with_context(|| format!("reading the size of image {shown}"))?
        .len();
    let mut src = BufReader::with_capacity(BUFFER_SIZE, Tap::new(file));
    let head = src
        .fill_buf()
        .with_context(|| format!("reading image {shown}"))?;
    let compression = Compression::detect(head).with_context(|| format!("image {shown}"))?;
    let size = match compression {
        Compression::None => SizeHint::Exact(file_len),
        Compression::Zstd => zstd_content_size(head),
        Compression::Gzip => gzip_isize(image, file_len)?,
    };
    let what = match compression {
        Compression::None => "",
        Compression::Zstd => " (zstd, uncompressed size)",
        Compression::Gzip => " (gzip, uncompressed size)",
    };
    if let SizeHint::Exact(n) | SizeHint::AtLeast(n) = size {
        if n > target_len {
            bail!(
                "image {shown} holds {}{what}, more than the target's {}; nothing was written",
                bytes(n),
                bytes(target_len)
            );
        }
    }
    let total = match size {
        SizeHint::Exact(n) => Some(n),
        _ => None,
    };
    let mut writer = ImageWriter::new(target, target_len, opts.sparse, total, opts.progress)
        .with_context(|| format!("zeroing the first MiB of the target for image {shown}"))?;
    let copied = match compression {
        Compression::None => writer.copy_from(&mut src),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(&mut src)
                .context("starting the zstd decoder")?;
            writer.copy_from(&mut dec)
        }
        Compression::Gzip => {
            let mut dec = flate2::bufread::MultiGzDecoder::new(&mut src);
            writer.copy_from(&mut dec)
        }
    };
    copied.with_context(|| format!("writing image {shown}"))?;
    // Whatever the decoder did not read is still part of the file and its hash.
    let trailing =
        io::copy(&mut src, &mut io::sink()).with_context(|| format!("reading image {shown}"))?;
    if trailing > 0 && compression != Compression::None {
        bail!("image {shown}: {trailing} bytes of trailing data after the compressed stream; the file is damaged");
    }
    let tap = src.into_inner();
    if tap.read != file_len {
        bail!(
            "image {shown} changed while it was written ({} read, {} expected)",
            tap.read,
            file_len
        );
    }
    let digest: [u8; 32] = tap.hasher.finalize().into();
    if let Some(expected) = opts.expected_sha256 {
        if digest != expected {
            bail!(
                "image {shown}: sha256 is {}, expected {}; the image is damaged or not the one \
                 expected. The first MiB of the target was left zeroed, so it cannot boot",
                hex(&digest),
                hex(&expected)
            );
        }
    }
    writer
        .finish()
        .with_context(|| format!("writing the first MiB of image {shown}"))
}

/// What we know about an image's uncompressed size before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeHint {
    Exact(u64),
    AtLeast(u64),
    Unknown,
}

/// The first zstd frame's content size, when its header records it.
fn zstd_content_size(head: &[u8]) -> SizeHint {
    match zstd::zstd_safe::get_frame_content_size(head) {
        // A file may hold more frames; the first one alone is a lower bound.
        Ok(Some(n)) => SizeHint::AtLeast(n),
        _ => SizeHint::Unknown,
    }
}

/// gzip's ISIZE (the last four bytes): the size modulo 2^32, a lower bound.
fn gzip_isize(image: &Path, file_len: u64) -> Result<SizeHint> {
    if file_len < 18 {
        return Ok(SizeHint::Unknown);
    }
    let mut f = File::open(image).with_context(|| format!("opening image {}", image.display()))?;
    let mut tail = [0u8; 4];
    f.seek(SeekFrom::Start(file_len - 4))
        .and_then(|_| f.read_exact(&mut tail))
        .with_context(|| format!("reading the gzip trailer of image {}", image.display()))?;
    Ok(SizeHint::AtLeast(u64::from(u32::from_le_bytes(tail))))
}

/// Counts and hashes what is read through it.
struct Tap<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R> Tap<R> {
    fn new(inner: R) -> Tap<R> {
        Tap {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Writes the stream after the first MiB, keeps the first MiB for the end, and refuses to
/// write past the target.
struct ImageWriter<'t, 'p> {
    target: &'t mut dyn WriteSeek,
    target_len: u64,
    sparse: bool,
    total: Option<u64>,
    progress: Option<&'p mut dyn FnMut(u64, Option<u64>)>,
    first: Vec<u8>,
    done: u64,
    /// The target's position, when known (after our own writes and seeks).
    pos: Option<u64>,
}

impl<'t, 'p> ImageWriter<'t, 'p> {
    fn new(
        target: &'t mut dyn WriteSeek,
        target_len: u64,
        sparse: bool,
        total: Option<u64>,
        progress: Option<&'p mut dyn FnMut(u64, Option<u64>)>,
    ) -> io::Result<Self> {
        // Zero the first MiB for real, even for a sparse target: whatever was there (a
        // partition table, a boot sector) must be gone until the verified image replaces it.
        let zero_len = FIRST_PART.min(target_len) as usize;
        target.seek(SeekFrom::Start(0))?;
        target.write_all(&vec![0u8; zero_len])?;
        target.flush()?;
        Ok(ImageWriter {
            target,
            target_len,
            sparse,
            total,
            progress,
            first: Vec::with_capacity(zero_len),
            done: 0,
            pos: Some(zero_len as u64),
        })
    }

    fn copy_from(&mut self, src: &mut dyn Read) -> Result<()> {
        let mut buf = vec![0u8; BUFFER_SIZE];
        loop {
            let n = read_full(src, &mut buf)?;
            if n == 0 {
                break;
            }
            self.write_chunk(&buf[..n])?;
            if let Some(p) = self.progress.as_mut() {
                let total = self.total.filter(|t| *t >= self.done);
                p(self.done, total);
            }
        }
        Ok(())
    }

    fn write_chunk(&mut self, mut chunk: &[u8]) -> Result<()> {
        let end = self.done + chunk.len() as u64;
        if end > self.target_len {
            bail!(
                "the image is bigger than the target ({}): it does not fit; stopped after \
                 {} and left the first MiB of the target zeroed",
                bytes(self.target_len),
                bytes(self.done)
            );
        }
        if self.done < FIRST_PART {
            let keep = ((FIRST_PART - self.done) as usize).min(chunk.len());
            self.first.extend_from_slice(&chunk[..keep]);
            self.done += keep as u64;
            chunk = &chunk[keep..];
        }
        while !chunk.is_empty() {
            let n = if self.sparse {
                let n = chunk.len().min(SPARSE_BLOCK);
                if chunk[..n].iter().all(|b| *b == 0) {
                    self.done += n as u64;
                    chunk = &chunk[n..];
                    continue;
                }
                // Write the run of non-zero blocks in one call.
                let mut n = n;
                while n < chunk.len() {
                    let m = (chunk.len() - n).min(SPARSE_BLOCK);
                    if chunk[n..n + m].iter().all(|b| *b == 0) {
                        break;
                    }
                    n += m;
                }
                n
            } else {
                chunk.len()
            };
            if self.pos != Some(self.done) {
                self.target.seek(SeekFrom::Start(self.done))?;
            }
            self.target.write_all(&chunk[..n])?;
            self.done += n as u64;
            self.pos = Some(self.done);
            chunk = &chunk[n..];
        }
        Ok(())
    }

    fn finish(self) -> io::Result<u64> {
        self.target.seek(SeekFrom::Start(0))?;
        self.target.write_all(&self.first)?;
        self.target.flush()?;
        Ok(self.done)
    }
}

/// Read until `buf` is full or the stream ends.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{n} bytes, {:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_by_magic() {
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x50, 0x2a, 0x4d, 0x18]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0xeb, 0x63, 0x90]).unwrap(),
            Compression::None
        );
        assert_eq!(Compression::detect(&[]).unwrap(), Compression::None);
        let e = Compression::detect(b"\xfd7zXZ\0").unwrap_err().to_string();
        assert!(e.contains("xz"), "{e}");
    }

    #[test]
    fn sparse_skips_zero_blocks_but_writes_data() {
        let mut img = vec![0u8; 3 << 20];
        img[(1 << 20) + 5] = 7;
        img[(2 << 20) + 4096 * 3] = 9;
        img[10] = 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.img");
        std::fs::write(&path, &img).unwrap();
        // 0xff marks bytes that were skipped.
        let mut target = io::Cursor::new(vec![0xffu8; 4 << 20]);
        let opts = ApplyOptions {
            sparse: true,
            ..Default::default()
        };
        let n = apply(&path, &mut target, 4 << 20, opts).unwrap();
        assert_eq!(n, 3 << 20);
        let t = target.into_inner();
        assert_eq!(&t[..1 << 20], &img[..1 << 20], "first MiB written for real");
        assert_eq!(
            &t[(1 << 20)..(1 << 20) + 4096],
            &img[(1 << 20)..(1 << 20) + 4096]
        );
        assert_eq!(t[(1 << 20) + 4096], 0xff, "zero block skipped");
        assert_eq!(t[(2 << 20) + 4096 * 3], 9);
    }
}
