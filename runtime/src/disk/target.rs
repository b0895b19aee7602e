//! A disk (an image file or a block device) and byte ranges of it.
//!
//! [`Disk`] opens `/dev/sdX`, `\\.\PhysicalDriveN` (through std's `File`, no IOCTLs) or an
//! image file, and knows its size and logical sector size. [`DiskRange`] is a partition (or the
//! whole disk) that reads, writes and seeks like a file but never leaves its range: a write that
//! would cross the end fails with an error naming the range, like coreos-installer's
//! `LimitWriter` (`src/io/limit.rs`), so even a buggy caller stays inside its partition.
//!
//! `DiskRange` caches [`CACHE_BLOCK_SIZE`] blocks (write-back, least recently used), because FAT
//! drivers make many small accesses (a FAT entry, a directory entry, one cluster) that must not
//! each become a system call. Flushing is explicit: call [`DiskRange::finish`] (flush + sync)
//! or `Write::flush` and check the result; `Drop` only flushes as a last resort and reports it.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One cache block. 256 KiB, as in coreos-installer (`src/io/mod.rs`): 8 KiB (std's default)
/// costs a system call per few FAT clusters and measurably slows sequential image writes;
/// beyond ~1 MiB the gain is nil while a cache of [`CACHE_BLOCKS`] blocks grows.
pub const CACHE_BLOCK_SIZE: usize = 256 * 1024;

/// Blocks kept by a [`DiskRange`] (16 × 256 KiB = 4 MiB): enough for the FAT, the directory
/// being filled and the file data being written to stay cached at once.
const CACHE_BLOCKS: usize = 16;

/// An image file or block device opened for partitioning and file-system work.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    file: File,
    size: u64,
    sector_size: u64,
    block_device: bool,
    writable: bool,
}

impl Disk {
    /// Open an image file or a block device. Read-only unless `writable`.
    pub fn open(path: &Path, writable: bool) -> Result<Disk> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading metadata of {}", path.display()))?;
        let block_device = is_block_device(&meta, path);
        let size = if meta.is_file() {
            meta.len()
        } else {
            // Devices report a length of 0 in their metadata; the end of the device is the size.
            // (On Windows, seeking to the end of \\.\PhysicalDriveN is not supported by every
            // driver; the error then says so.)
            let end = file.seek(SeekFrom::End(0)).with_context(|| {
                format!("finding the size of {} (seek to its end)", path.display())
            })?;
            file.seek(SeekFrom::Start(0))
                .with_context(|| format!("seeking in {}", path.display()))?;
            end
        };
        let sector_size = if block_device {
            device_sector_size(path)
        } else {
            512
        };
        Ok(Disk {
            path: path.to_path_buf(),
            file,
            size,
            sector_size,
            block_device,
            writable,
        })
    }

    /// Create a sparse image file of `size` bytes (it must not exist) and open it for writing.
    pub fn create_image(path: &Path, size: u64) -> Result<Disk> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating image {}", path.display()))?;
        file.set_len(size)
            .with_context(|| format!("setting the size of {} to {size} bytes", path.display()))?;
        Ok(Disk {
            path: path.to_path_buf(),
            file,
            size,
            sector_size: 512,
            block_device: false,
            writable: true,
        })
    }

    /// Treat an image file as having this logical sector size (512 or 4096), e.g. to prepare
    /// an image for a 4Kn disk. Block devices keep the size the kernel reports.
    pub fn with_sector_size(mut self, sector_size: u64) -> Result<Disk> {
        if sector_size != 512 && sector_size != 4096 {
            bail!("unsupported sector size {sector_size}: use 512 or 4096");
        }
        if self.block_device && sector_size != self.sector_size {
            bail!(
                "{} is a block device with {}-byte sectors; its sector size cannot be changed",
                self.path.display(),
                self.sector_size
            );
        }
        self.sector_size = sector_size;
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Logical sector size: 512 for image files (unless set with [`Disk::with_sector_size`]);
    /// for Linux block devices `/sys/class/block/<dev>/queue/logical_block_size`.
    pub fn sector_size(&self) -> u64 {
        self.sector_size
    }
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// A byte range of this disk, checked against its size.
    pub fn range(&self, offset: u64, len: u64) -> Result<DiskRange> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.size) {
            bail!(
                "range {offset}+{len} is outside {} ({} bytes)",
                self.path.display(),
                self.size
            );
        }
        let file = self
            .file
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", self.path.display()))?;
        Ok(DiskRange::new(
            file,
            offset,
            len,
            self.writable,
            format!("{} bytes {offset}..{}", self.path.display(), offset + len),
        ))
    }

    /// The whole disk as a range.
    pub fn whole(&self) -> Result<DiskRange> {
        self.range(0, self.size)
    }

    /// Flush everything written to stable storage (fsync), so late write errors surface here.
    pub fn sync(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

#[cfg(unix)]
fn is_block_device(meta: &std::fs::Metadata, _path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}

#[cfg(windows)]
fn is_block_device(_meta: &std::fs::Metadata, path: &Path) -> bool {
    let s = path.to_string_lossy().to_ascii_lowercase();
    s.starts_with(r"\\.\physicaldrive") || s.starts_with(r"\\?\physicaldrive")
}

#[cfg(not(any(unix, windows)))]
fn is_block_device(_meta: &std::fs::Metadata, _path: &Path) -> bool {
    false
}

/// The kernel's logical block size for a device node (Linux sysfs); 512 when unknown (and on
/// Windows, where reading it needs an IOCTL: 4Kn disks are rare there and documented as a limit).
fn device_sector_size(path: &Path) -> u64 {
    #[cfg(target_os = "linux")]
    {
        if let Some(name) = std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        {
            let base = Path::new("/sys/class/block").join(&name);
            // A partition has no queue/ of its own: use its disk's.
            for q in [
                base.join("queue/logical_block_size"),
                base.join("../queue/logical_block_size"),
            ] {
                if let Some(n) = std::fs::read_to_string(&q)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    if n >= 512 && n.is_power_of_two() {
                        return n;
                    }
                }
            }
        }
    }
    let _ = path;
    512
}

struct Block {
    /// Offset of the block inside the range (a multiple of CACHE_BLOCK_SIZE).
    start: u64,
    data: Vec<u8>,
    /// `data[..filled]` holds the current content (read from the disk or written since).
    filled: usize,
    /// Bytes written but not yet on the disk.
    dirty: Option<(usize, usize)>,
    last_used: u64,
}

/// A byte range of a disk that reads, writes and seeks like a file, never outside the range.
/// See the module documentation for caching and flushing.
pub struct DiskRange {
    file: File,
    offset: u64,
    len: u64,
    pos: u64,
    writable: bool,
    name: String,
    blocks: Vec<Block>,
    clock: u64,
}

impl std::fmt::Debug for DiskRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskRange")
            .field("name", &self.name)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish()
    }
}

impl DiskRange {
    fn new(file: File, offset: u64, len: u64, writable: bool, name: String) -> DiskRange {
        DiskRange {
            file,
            offset,
            len,
            pos: 0,
            writable,
            name,
            blocks: Vec::new(),
            clock: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Where the range starts on its disk, in bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// The disk and byte range, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Write every cached change to the disk, then sync it (fsync). Check the result: this is
    /// where late write errors show up.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        if self.writable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Write every cached change to the disk and sync it, keeping the range open (a write
    /// barrier: what was written before is on the disk before anything written after).
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.writable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Write zeros for real over `[at, at+len)` of the range (devices may not zero on discard,
    /// and a hole punched in an image file we did not create would change its allocation).
    pub fn write_zeros(&mut self, at: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; CACHE_BLOCK_SIZE];
        self.seek(SeekFrom::Start(at))?;
        let mut left = len;
        while left > 0 {
            let n = left.min(CACHE_BLOCK_SIZE as u64) as usize;
            self.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Write `buf` at `at` straight to the disk (one system call, no cache), after writing out
    /// and forgetting cached blocks it overlaps. For large sequential writes such as a file
    /// system built in one pass; bounds-checked like every write.
    pub fn write_all_at(&mut self, at: u64, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} was opened read-only", self.name),
            ));
        }
        let end = at.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(self.past_end(at, buf.len()));
        }
        self.settle(at, at + buf.len() as u64, true)?;
        write_at(&self.file, buf, self.offset + at)
    }

    /// Ask the kernel to start writing `[at, at + len)` of the range out now, without waiting
    /// (Linux: `posix_fadvise(DONTNEED)`, which starts writeback of dirty pages). Large
    /// sequential writers call it as they go, so the final sync in [`DiskRange::finish`] finds
    /// little left to do. Best effort: a hint that fails changes nothing.
    pub fn start_writeback(&self, at: u64, len: u64) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
            if let (Ok(off), Ok(len)) = (i64::try_from(self.offset + at), i64::try_from(len)) {
                let _ = posix_fadvise(
                    &self.file,
                    off,
                    len,
                    PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                );
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (at, len);
    }

    fn past_end(&self, pos: u64, n: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "write of {n} bytes at {pos} would pass the end of {} ({} bytes); refused",
                self.name, self.len
            ),
        )
    }

    fn block_len(&self, start: u64) -> usize {
        (self.len - start).min(CACHE_BLOCK_SIZE as u64) as usize
    }

    fn flush_block(file: &File, base: u64, b: &mut Block) -> io::Result<()> {
        if let Some((lo, hi)) = b.dirty {
            write_at(file, &b.data[lo..hi], base + b.start + lo as u64)?;
            b.dirty = None;
        }
        Ok(())
    }

    /// Index of the cached block starting at `start`, loading (without reading) if needed.
    fn block(&mut self, start: u64) -> io::Result<usize> {
        self.clock += 1;
        if let Some(i) = self.blocks.iter().position(|b| b.start == start) {
            self.blocks[i].last_used = self.clock;
            return Ok(i);
        }
        let len = self.block_len(start);
        let data = if self.blocks.len() >= CACHE_BLOCKS {
            let lru = self
                .blocks
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.last_used)
                .map(|(i, _)| i)
                .unwrap_or(0);
            Self::flush_block(&self.file, self.offset, &mut self.blocks[lru])?;
            let mut old = self.blocks.swap_remove(lru);
            old.data.resize(len, 0);
            old.data
        } else {
            vec![0u8; len]
        };
        self.blocks.push(Block {
            start,
            data,
            filled: 0,
            dirty: None,
            last_used: self.clock,
        });
        Ok(self.blocks.len() - 1)
    }

    /// Make sure `blocks[i].data[..upto]` is valid, reading what is missing from the disk.
    fn fill(&mut self, i: usize, upto: usize) -> io::Result<()> {
        let b = &mut self.blocks[i];
        if b.filled < upto {
            // Read up to the end of the block: the next small access is likely nearby.
            let end = b.data.len();
            read_at(
                &self.file,
                &mut b.data[b.filled..end],
                self.offset + b.start + b.filled as u64,
            )?;
            b.filled = end;
        }
        Ok(())
    }

    /// Flush dirty blocks overlapping `[lo, hi)` and, if `drop`, forget them.
    fn settle(&mut self, lo: u64, hi: u64, drop: bool) -> io::Result<()> {
        let mut i = 0;
        while i < self.blocks.len() {
            let b = &mut self.blocks[i];
            let overlaps = b.start < hi && b.start + b.data.len() as u64 > lo;
            if overlaps {
                Self::flush_block(&self.file, self.offset, b)?;
                if drop {
                    self.blocks.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        Ok(())
    }
}

impl Read for DiskRange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        let pos = self.pos;
        if n >= CACHE_BLOCK_SIZE {
            // Large read: straight from the disk, after writing out what overlaps it.
            self.settle(pos, pos + n as u64, false)?;
            read_at(&self.file, &mut buf[..n], self.offset + pos)?;
            self.pos += n as u64;
            return Ok(n);
        }
        let start = pos - pos % CACHE_BLOCK_SIZE as u64;
        let i = self.block(start)?;
        let o = (pos - start) as usize;
        let m = n.min(self.blocks[i].data.len() - o);
        self.fill(i, o + m)?;
        buf[..m].copy_from_slice(&self.blocks[i].data[o..o + m]);
        self.pos += m as u64;
        Ok(m)
    }
}

impl Write for DiskRange {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} was opened read-only", self.name),
            ));
        }
        let pos = self.pos;
        let end = pos.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(self.past_end(pos, buf.len()));
        }
        let n = buf.len();
        if n >= CACHE_BLOCK_SIZE {
            self.settle(pos, pos + n as u64, true)?;
            write_at(&self.file, buf, self.offset + pos)?;
            self.pos += n as u64;
            return Ok(n);
        }
        let start = pos - pos % CACHE_BLOCK_SIZE as u64;
        let i = self.block(start)?;
        let o = (pos - start) as usize;
        let m = n.min(self.blocks[i].data.len() - o);
        let filled = self.blocks[i].filled;
        if o > filled {
            // A gap between what is valid and this write: read just the gap, so a block that
            // is being filled sequentially (file data) is never read from the disk.
            let b = &mut self.blocks[i];
            read_at(
                &self.file,
                &mut b.data[filled..o],
                self.offset + b.start + filled as u64,
            )?;
            b.filled = o;
        }
        let b = &mut self.blocks[i];
        b.data[o..o + m].copy_from_slice(&buf[..m]);
        b.filled = b.filled.max(o + m);
        b.dirty = Some(match b.dirty {
            None => (o, o + m),
            Some((lo, hi)) => (lo.min(o), hi.max(o + m)),
        });
        self.pos += m as u64;
        Ok(m)
    }

    /// Writes every cached change to the disk (no fsync; see [`DiskRange::finish`]).
    fn flush(&mut self) -> io::Result<()> {
        for b in &mut self.blocks {
            Self::flush_block(&self.file, self.offset, b)?;
        }
        Ok(())
    }
}

impl Seek for DiskRange {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seek before the start of {}", self.name),
            )),
        }
    }
}

impl Drop for DiskRange {
    fn drop(&mut self) {
        if self.blocks.iter().any(|b| b.dirty.is_some()) {
            // A caller forgot `finish`/`flush`: write it out anyway, but say so, because an
            // error here cannot reach anyone.
            let result = self.flush();
            eprintln!(
                "tsforge: warning: {} dropped with unflushed writes (flush result: {result:?})",
                self.name
            );
        }
    }
}

#[cfg(unix)]
fn read_at(file: &File, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    while !buf.is_empty() {
        match file.read_at(buf, at) {
            // Past the end of a file or device: the range was checked against the size when
            // it was made, so this is a truncated image or a shrunk device.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("unexpected end of disk at byte {at} (truncated image?)"),
                ))
            }
            Ok(n) => {
                buf = &mut buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, at)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, at) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("unexpected end of disk at byte {at} (truncated image?)"),
                ))
            }
            Ok(n) => {
                buf = &mut buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut at: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(size: u64) -> (tempfile::TempDir, Disk) {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::create_image(&dir.path().join("d.img"), size).unwrap();
        (dir, disk)
    }

    #[test]
    fn range_refuses_writes_past_its_end() {
        let (_d, disk) = image(4 * 1024 * 1024);
        let mut r = disk.range(1024 * 1024, 4096).unwrap();
        r.write_all(&[1u8; 4000]).unwrap();
        let err = r.write_all(&[2u8; 200]).unwrap_err();
        assert!(err.to_string().contains("would pass the end of"), "{err}");
        r.seek(SeekFrom::Start(5000)).unwrap();
        assert!(r.write(&[1]).is_err());
        // Large writes are checked too.
        r.seek(SeekFrom::Start(0)).unwrap();
        assert!(r.write_all(&vec![0u8; CACHE_BLOCK_SIZE * 2]).is_err());
        r.finish().unwrap();
        // Nothing outside the range changed.
        let bytes = std::fs::read(disk.path()).unwrap();
        assert!(bytes[..1024 * 1024].iter().all(|&b| b == 0));
        assert!(bytes[1024 * 1024 + 4096..].iter().all(|&b| b == 0));
        assert!(bytes[1024 * 1024..1024 * 1024 + 4000]
            .iter()
            .all(|&b| b == 1));
        assert!(disk.range(4 * 1024 * 1024 - 10, 11).is_err());
        assert!(disk.range(u64::MAX, 2).is_err());
    }

    #[test]
    fn cached_io_matches_a_plain_file() {
        // Random small and large reads/writes against a Vec model.
        let size = 3 * CACHE_BLOCK_SIZE as u64 + 12345;
        let (_d, disk) = image(4 * 1024 * 1024);
        let mut r = disk.range(777, size).unwrap();
        let mut model = vec![0u8; size as usize];
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            let big = round % 50 == 0;
            let len = if big {
                CACHE_BLOCK_SIZE + (next() % 1000) as usize
            } else {
                1 + (next() % 9000) as usize
            };
            let pos = next() % (size - len as u64);
            r.seek(SeekFrom::Start(pos)).unwrap();
            if next() % 2 == 0 {
                let fill = (next() & 0xff) as u8;
                let data = vec![fill; len];
                r.write_all(&data).unwrap();
                model[pos as usize..pos as usize + len].copy_from_slice(&data);
            } else {
                let mut got = vec![0u8; len];
                r.read_exact(&mut got).unwrap();
                assert_eq!(
                    got,
                    model[pos as usize..pos as usize + len],
                    "round {round}"
                );
            }
        }
        r.finish().unwrap();
        let bytes = std::fs::read(disk.path()).unwrap();
        assert_eq!(&bytes[777..777 + size as usize], &model[..]);
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let (_d, disk) = image(1024 * 1024);
        let ro = Disk::open(disk.path(), false).unwrap();
        let mut r = ro.whole().unwrap();
        assert!(r.write(&[1]).unwrap_err().to_string().contains("read-only"));
        let mut b = [0u8; 16];
        r.read_exact(&mut b).unwrap();
    }
}
