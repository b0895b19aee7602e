//! FAT16/FAT32 on a [`DiskRange`]: format, then create directories and files, read and list
//! them, through the `fatfs` crate (0.3, Microsoft's "FAT: General Overview of On-Disk Format"
//! 1.03), with long file names.
//!
//! What we add to `fatfs`: the FAT type chosen from the size (FAT16 below 512 MiB, FAT32 from
//! there, as Windows' `format` does), the volume label also written as the root directory's
//! label entry (where Windows, mtools and `fsck.fat` look first; `fatfs` 0.3 writes it only to
//! the boot sector), the "hidden sectors" field set to the partition's start (BIOS boot code
//! needs it), and reproducible timestamps.
//!
//! [`format_in_memory`] prepares what [`format()`] writes without writing it, for the one-pass
//! builder in `fatbuild` (same boot sector, label, volume ID and geometry).
//!
//! Limits: 512-byte FAT sectors (on a 4Kn disk the file system still works for Linux and
//! mtools, but Windows expects 4096-byte FAT sectors there); timestamps have FAT's 2-second
//! resolution, local time without zone (we store UTC); times before 1980 become 1980-01-01.
//! New files get the time of `SOURCE_DATE_EPOCH` when set, else the current time.

use super::target::DiskRange;
use super::{format_size, GIB, MIB};
use super::{le16, le32};
use anyhow::{anyhow, bail, Context, Result};
use std::cell::RefCell;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

pub use fatfs::{Date, DateTime, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    Fat16,
    Fat32,
}

impl std::fmt::Display for FatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FatKind::Fat16 => "FAT16",
            FatKind::Fat32 => "FAT32",
        })
    }
}

/// The largest FAT16 partition `fatfs` formats (found by trying every size near 2 GiB: the
/// 65,524 clusters of 32 KiB FAT16 allows, plus its FATs and root directory).
pub const FAT16_MAX: u64 = 2 * GIB - 80 * 1024;

/// Below this size `format(…, None)` picks FAT16, from it FAT32 (Windows' rule).
pub const FAT32_FROM: u64 = 512 * MIB;

/// The FAT type `format` chooses for a partition of `size` bytes.
pub fn default_kind(size: u64) -> FatKind {
    if size < FAT32_FROM {
        FatKind::Fat16
    } else {
        FatKind::Fat32
    }
}

/// An 11-byte label: ASCII letters, digits, space and `! # $ % & ' ( ) - @ ^ _ { } ~`, upper-cased.
pub fn label_bytes(label: &str) -> Result<[u8; 11]> {
    let up = label.to_ascii_uppercase();
    if up.len() > 11 {
        bail!("FAT label {label:?} is longer than 11 characters");
    }
    let mut out = [b' '; 11];
    for (i, b) in up.bytes().enumerate() {
        let ok = b.is_ascii_alphanumeric() || b" !#$%&'()-@^_{}~".contains(&b);
        if !ok {
            bail!(
                "FAT label {label:?} contains {:?}; use letters, digits, spaces and ! # $ % & ' ( ) - @ ^ _ {{ }} ~",
                b as char
            );
        }
        out[i] = b;
    }
    Ok(out)
}

/// Format `range` as FAT16/FAT32 (`None`: by size, see [`default_kind`]) with `label`.
pub fn format(mut range: DiskRange, label: &str, kind: Option<FatKind>) -> Result<()> {
    let name = range.name().to_string();
    let (label, kind, opts) = format_options(&name, range.len(), label, kind, None)?;
    range.seek(SeekFrom::Start(0))?;
    fatfs::format_volume(&mut range, opts)
        .with_context(|| format!("formatting {name} as {kind}"))?;
    let hidden = hidden_sectors(range.offset());
    finish_boot_sector(&mut range, &label, hidden, now_unix())
        .with_context(|| format!("formatting {name}"))?;
    range
        .finish()
        .with_context(|| format!("writing the file system to {name}"))
}

/// The checks and `fatfs` options of [`format()`] for a partition `name` of `size` bytes:
/// (label bytes, FAT type, options). `epoch` fixes the volume serial number (see [`volume_id`]).
fn format_options(
    name: &str,
    size: u64,
    label: &str,
    kind: Option<FatKind>,
    epoch: Option<i64>,
) -> Result<([u8; 11], FatKind, fatfs::FormatVolumeOptions)> {
    let label = label_bytes(label)?;
    let kind = kind.unwrap_or_else(|| default_kind(size));
    match kind {
        FatKind::Fat16 if size > FAT16_MAX => bail!(
            "{name}: FAT16 holds at most 2 GiB less 80 KiB (65,524 clusters of 32 KiB and the \
             FATs; `fatfs` refuses more) and this partition is {}; use fat32",
            format_size(size)
        ),
        FatKind::Fat16 if size < 3 * MIB => bail!(
            "{name}: {} is too small for FAT16 (at least 3 MiB)",
            format_size(size)
        ),
        FatKind::Fat32 if size < 34 * MIB => bail!(
            "{name}: {} is too small for FAT32 (at least 34 MiB: 65,525 clusters); use fat16",
            format_size(size)
        ),
        _ => {}
    }
    let total_sectors = u32::try_from(size / 512)
        .map_err(|_| anyhow!("{name}: FAT with 512-byte sectors holds at most 2 TiB"))?;
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(match kind {
            FatKind::Fat16 => fatfs::FatType::Fat16,
            FatKind::Fat32 => fatfs::FatType::Fat32,
        })
        .bytes_per_sector(512)
        .total_sectors(total_sectors)
        .volume_label(label)
        .volume_id(volume_id(&label, epoch))
        .media(0xf8)
        .drive_num(0x80);
    Ok((label, kind, opts))
}

/// "Hidden sectors": the partition's start in 512-byte sectors.
fn hidden_sectors(offset: u64) -> u32 {
    u32::try_from(offset / 512).unwrap_or(u32::MAX)
}

/// The layout [`format()`] gives a partition, read from its boot sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub kind: FatKind,
    pub bytes_per_sector: u64,
    pub sectors_per_cluster: u64,
    pub reserved_sectors: u64,
    pub fats: u64,
    /// Sectors of one FAT.
    pub fat_sectors: u64,
    /// Entries of the fixed root directory (FAT16); 0 on FAT32.
    pub root_entries: u64,
    pub total_sectors: u64,
    /// The root directory's first cluster (FAT32); 0 on FAT16.
    pub root_cluster: u64,
}

impl Geometry {
    /// The layout a FAT boot sector (its first 512 bytes) describes.
    pub fn parse_boot_sector(bs: &[u8; 512]) -> Result<Geometry> {
        Geometry::parse(bs)
    }

    fn parse(bs: &[u8]) -> Result<Geometry> {
        let fat16_size = le16(bs, 22);
        let kind = if fat16_size == 0 {
            FatKind::Fat32
        } else {
            FatKind::Fat16
        };
        let total16 = le16(bs, 19);
        let g = Geometry {
            kind,
            bytes_per_sector: le16(bs, 11),
            sectors_per_cluster: u64::from(bs[13]),
            reserved_sectors: le16(bs, 14),
            fats: u64::from(bs[16]),
            fat_sectors: if kind == FatKind::Fat32 {
                le32(bs, 36)
            } else {
                fat16_size
            },
            root_entries: le16(bs, 17),
            total_sectors: if total16 != 0 { total16 } else { le32(bs, 32) },
            root_cluster: if kind == FatKind::Fat32 {
                le32(bs, 44)
            } else {
                0
            },
        };
        if g.bytes_per_sector == 0 || g.sectors_per_cluster == 0 {
            bail!("not a FAT boot sector");
        }
        Ok(g)
    }
    pub fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * self.bytes_per_sector
    }
    /// Byte offset of the first FAT.
    pub fn fat_start(&self) -> u64 {
        self.reserved_sectors * self.bytes_per_sector
    }
    pub fn fat_bytes(&self) -> u64 {
        self.fat_sectors * self.bytes_per_sector
    }
    /// Byte offset of the fixed root directory (FAT16; on FAT32 where the data area starts).
    pub fn root_dir_start(&self) -> u64 {
        self.fat_start() + self.fats * self.fat_bytes()
    }
    /// Byte offset of cluster 2.
    pub fn data_start(&self) -> u64 {
        let root = (self.root_entries * 32).div_ceil(self.bytes_per_sector) * self.bytes_per_sector;
        self.root_dir_start() + root
    }
    /// Data clusters (numbered 2 ..= clusters + 1).
    pub fn clusters(&self) -> u64 {
        (self.total_sectors * self.bytes_per_sector).saturating_sub(self.data_start())
            / self.cluster_bytes()
    }
    pub fn cluster_pos(&self, cluster: u64) -> u64 {
        self.data_start() + (cluster - 2) * self.cluster_bytes()
    }
}

/// What [`format()`] would write to a partition, prepared in memory (nothing is written): the
/// geometry, the reserved sectors (boot sector, FSInfo, backup boot sector, with "hidden
/// sectors" set), the FAT as formatted (entries 0 and 1, FAT32's root cluster, the unusable
/// entries at its end) and the root directory's volume label entry. For one-pass builders
/// (`fatbuild`) that lay out the rest themselves. Checks and errors are those of [`format()`].
pub struct Formatted {
    pub geometry: Geometry,
    pub reserved: Vec<u8>,
    pub label_entry: [u8; 32],
    fat: MemDev,
}

impl Formatted {
    /// Bytes `[at, at + buf.len())` of the freshly formatted first FAT.
    pub fn read_fat(&mut self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = self.geometry.fat_start();
        self.fat.seek(SeekFrom::Start(start + at))?;
        self.fat.read_exact(buf)
    }
}

/// See [`Formatted`]: `name` (for messages), the partition's `size` and `offset` on its disk.
pub fn format_in_memory(
    name: &str,
    size: u64,
    offset: u64,
    label: &str,
    kind: Option<FatKind>,
) -> Result<Formatted> {
    format_in_memory_at(name, size, offset, label, kind, None)
}

/// [`format_in_memory`] with an explicit time (seconds since 1970, UTC) for the label entry
/// and the volume serial number, for callers that are given their `SOURCE_DATE_EPOCH` as a
/// value instead of through the environment. `None`: as [`format_in_memory`].
pub fn format_in_memory_at(
    name: &str,
    size: u64,
    offset: u64,
    label: &str,
    kind: Option<FatKind>,
    epoch: Option<i64>,
) -> Result<Formatted> {
    let (label, kind, opts) = format_options(name, size, label, kind, epoch)?;
    let mut dev = MemDev::default();
    fatfs::format_volume(&mut dev, opts).with_context(|| format!("formatting {name} as {kind}"))?;
    let time = epoch.unwrap_or_else(now_unix);
    finish_boot_sector(&mut dev, &label, hidden_sectors(offset), time)
        .with_context(|| format!("formatting {name}"))?;
    let mut bs = [0u8; 512];
    dev.seek(SeekFrom::Start(0))?;
    dev.read_exact(&mut bs)?;
    let geometry = Geometry::parse(&bs).with_context(|| format!("formatting {name}"))?;
    let mut reserved = vec![0u8; geometry.fat_start() as usize];
    dev.seek(SeekFrom::Start(0))?;
    dev.read_exact(&mut reserved)?;
    let mut label_entry = [0u8; 32];
    let root = match geometry.kind {
        FatKind::Fat32 => geometry.cluster_pos(geometry.root_cluster),
        FatKind::Fat16 => geometry.root_dir_start(),
    };
    dev.seek(SeekFrom::Start(root))?;
    dev.read_exact(&mut label_entry)?;
    Ok(Formatted {
        geometry,
        reserved,
        label_entry,
        fat: dev,
    })
}

/// A sparse in-memory disk for [`format_in_memory`]: 4 KiB pages, zero pages never stored (the
/// formatter writes the whole FAT as zeros first, up to 512 MiB on a 2 TiB partition).
#[derive(Default)]
struct MemDev {
    pages: std::collections::HashMap<u64, Box<[u8; 4096]>>,
    pos: u64,
}

impl Read for MemDev {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (page, o) = (self.pos / 4096, (self.pos % 4096) as usize);
        let n = buf.len().min(4096 - o);
        match self.pages.get(&page) {
            Some(p) => buf[..n].copy_from_slice(&p[o..o + n]),
            None => buf[..n].fill(0),
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for MemDev {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (page, o) = (self.pos / 4096, (self.pos % 4096) as usize);
        let n = buf.len().min(4096 - o);
        let data = &buf[..n];
        if let Some(p) = self.pages.get_mut(&page) {
            p[o..o + n].copy_from_slice(data);
        } else if data.iter().any(|&b| b != 0) {
            let mut p = Box::new([0u8; 4096]);
            p[o..o + n].copy_from_slice(data);
            self.pages.insert(page, p);
        }
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for MemDev {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self
                .pos
                .checked_add_signed(d)
                .ok_or(io::ErrorKind::InvalidInput)?,
            SeekFrom::End(_) => return Err(io::ErrorKind::Unsupported.into()),
        };
        Ok(self.pos)
    }
}

/// A volume serial number: random, or derived from the label and `epoch` (else
/// `SOURCE_DATE_EPOCH`) so reproducible builds stay byte-identical.
fn volume_id(label: &[u8; 11], epoch: Option<i64>) -> u32 {
    match epoch.map(|t| t as u64).or_else(source_date_epoch) {
        Some(t) => {
            let mut h: u32 = 0x811c_9dc5; // FNV-1a
            for b in label.iter().chain(t.to_le_bytes().iter()) {
                h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
            }
            h
        }
        None => {
            let u = uuid::Uuid::new_v4();
            let b = u.as_bytes();
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
    }
}

/// `SOURCE_DATE_EPOCH` when set to a time not before 1970.
fn source_date_epoch() -> Option<u64> {
    crate::sys::source_date_epoch().and_then(|t| u64::try_from(t).ok())
}

/// Set "hidden sectors" to the partition's start (boot sector and FAT32's backup) and add the
/// root directory's volume label entry.
fn finish_boot_sector<D: Read + Write + Seek>(
    range: &mut D,
    label: &[u8; 11],
    hidden: u32,
    time: i64,
) -> io::Result<()> {
    let mut bs = [0u8; 512];
    range.seek(SeekFrom::Start(0))?;
    range.read_exact(&mut bs)?;
    let bytes_per_sector = le16(&bs, 11);
    let sectors_per_cluster = u64::from(bs[13]);
    let reserved = le16(&bs, 14);
    let fats = u64::from(bs[16]);
    let fat16_size = le16(&bs, 22);
    let is_fat32 = fat16_size == 0;
    let fat_size = if is_fat32 { le32(&bs, 36) } else { fat16_size };
    let mut sectors = vec![0u64];
    if is_fat32 {
        sectors.push(le16(&bs, 50));
    }
    for s in sectors {
        range.seek(SeekFrom::Start(s * bytes_per_sector + 28))?;
        range.write_all(&hidden.to_le_bytes())?;
    }
    let root = if is_fat32 {
        let root_cluster = le32(&bs, 44);
        let data = reserved + fats * fat_size;
        (data + (root_cluster - 2) * sectors_per_cluster) * bytes_per_sector
    } else {
        (reserved + fats * fat_size) * bytes_per_sector
    };
    let mut entry = [0u8; 32];
    entry[..11].copy_from_slice(label);
    entry[11] = 0x08; // ATTR_VOLUME_ID
    let (date, time) = dos_date_time(time);
    entry[22..24].copy_from_slice(&time.to_le_bytes());
    entry[24..26].copy_from_slice(&date.to_le_bytes());
    range.seek(SeekFrom::Start(root))?;
    range.write_all(&entry)?;
    Ok(())
}

/// A Unix time (seconds, UTC) as a FAT timestamp, clamped to 1980..2107.
pub fn fat_time(unix: i64) -> DateTime {
    const MIN: i64 = 315_532_800; // 1980-01-01
    const MAX: i64 = 4_354_819_198; // 2107-12-31 23:59:58
    let t = unix.clamp(MIN, MAX);
    let (y, m, d) = crate::log::civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    DateTime {
        date: Date {
            year: y as u16,
            month: m as u16,
            day: d as u16,
        },
        time: Time {
            hour: (s / 3600) as u16,
            min: (s / 60 % 60) as u16,
            sec: (s % 60) as u16,
            millis: 0,
        },
    }
}

/// `SOURCE_DATE_EPOCH` when set, else the current time.
pub fn now_unix() -> i64 {
    match source_date_epoch() {
        Some(t) => i64::try_from(t).unwrap_or(i64::MAX),
        None => crate::sys::unix_now(),
    }
}

/// A Unix time as FAT's (date, time) words (see [`fat_time`]).
pub fn dos_date_time(unix: i64) -> (u16, u16) {
    let dt = fat_time(unix);
    let date = ((dt.date.year - 1980) << 9) | (dt.date.month << 5) | dt.date.day;
    let time = (dt.time.hour << 11) | (dt.time.min << 5) | (dt.time.sec / 2);
    (date, time)
}

thread_local! {
    /// The time the next created/written files get (see [`TimeOverride`]).
    static OVERRIDE: std::cell::Cell<Option<DateTime>> = const { std::cell::Cell::new(None) };
}

/// While alive, `fatfs` stamps created and written files with this time (fatfs 0.3 deprecates
/// setting times on a file in favour of its clock, so the clock is what we steer).
pub struct TimeOverride;

impl TimeOverride {
    pub fn set(t: Option<DateTime>) -> TimeOverride {
        OVERRIDE.with(|o| o.set(t));
        TimeOverride
    }
}

impl Drop for TimeOverride {
    fn drop(&mut self) {
        OVERRIDE.with(|o| o.set(None));
    }
}

/// `fatfs`'s clock: an override for the file being copied, else `SOURCE_DATE_EPOCH` or now, UTC.
#[derive(Debug)]
struct Clock;

impl fatfs::TimeProvider for Clock {
    fn get_current_date(&self) -> Date {
        self.get_current_date_time().date
    }
    fn get_current_date_time(&self) -> DateTime {
        OVERRIDE
            .with(|o| o.get())
            .unwrap_or_else(|| fat_time(now_unix()))
    }
}

static CLOCK: Clock = Clock;

/// The stream `fatfs` works on: the range, shared so [`FatFs::close`] can flush and sync it
/// after unmounting (`fatfs` keeps its device until it is dropped), and the FAT32 root
/// directory's chain (see [`RootChain`]).
#[derive(Debug, Clone)]
pub struct FatIo(Rc<RefCell<DiskRange>>, Rc<RefCell<Option<RootChain>>>);

/// Works around a `fatfs` 0.3.6 bug that corrupts FAT32 volumes on used disks: when the root
/// directory grows past its clusters, `fatfs` links a new cluster to it without zeroing it (it
/// zeroes new clusters only for streams that have a directory entry, and FAT32's root has
/// none), so whatever the disk held there before reads as directory entries: garbage names,
/// lost files, `fsck.fat` errors. On a zero-filled disk the bug is invisible.
///
/// This follows the root's chain and watches writes to the first FAT: when the entry of the
/// chain's last cluster is written with a link to a new cluster, the new cluster is zeroed
/// right then, before `fatfs` writes the first entry into it (it allocates, then writes).
#[derive(Debug, Clone, Copy)]
pub struct RootChain {
    /// Byte offset of the first FAT in the range.
    fat_start: u64,
    fat_bytes: u64,
    data_start: u64,
    cluster_bytes: u64,
    max_cluster: u64,
    /// The root directory's last cluster.
    tail: u64,
}

impl RootChain {
    /// For a FAT32 range (`None` for FAT16, whose root has a fixed size and is zeroed by the
    /// formatter), following the root's chain from its first cluster.
    fn find(range: &mut DiskRange) -> io::Result<Option<RootChain>> {
        let mut bs = [0u8; 512];
        range.seek(SeekFrom::Start(0))?;
        range.read_exact(&mut bs)?;
        let g = match Geometry::parse(&bs) {
            Ok(g) if g.kind == FatKind::Fat32 => g,
            _ => return Ok(None),
        };
        let mut chain = RootChain {
            fat_start: g.fat_start(),
            fat_bytes: g.fat_bytes(),
            data_start: g.data_start(),
            cluster_bytes: g.cluster_bytes(),
            max_cluster: g.clusters() + 1,
            tail: g.root_cluster,
        };
        // Bounded: a loop in a damaged chain stops after as many steps as there are clusters.
        for _ in 0..=g.clusters() {
            match chain.next(range, chain.tail)? {
                Some(n) => chain.tail = n,
                None => break,
            }
        }
        Ok(Some(chain))
    }

    /// The cluster the FAT links `cluster` to, if it is a data cluster.
    fn next(&self, range: &mut DiskRange, cluster: u64) -> io::Result<Option<u64>> {
        let mut b = [0u8; 4];
        range.seek(SeekFrom::Start(self.fat_start + cluster * 4))?;
        range.read_exact(&mut b)?;
        let n = u64::from(u32::from_le_bytes(b) & 0x0fff_ffff);
        Ok((2..=self.max_cluster).contains(&n).then_some(n))
    }

    /// After a write of `len` bytes at `at`: zero every cluster newly linked to the root.
    fn after_write(&mut self, range: &mut DiskRange, at: u64, len: u64) -> io::Result<()> {
        let entry = self.fat_start + self.tail * 4;
        if at >= entry + 4 || at + len <= entry || at >= self.fat_start + self.fat_bytes {
            return Ok(());
        }
        let back = range.stream_position()?;
        let mut steps = 0;
        while let Some(n) = self.next(range, self.tail)? {
            steps += 1;
            if steps > self.max_cluster {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the root directory's cluster chain loops",
                ));
            }
            range.write_zeros(
                self.data_start + (n - 2) * self.cluster_bytes,
                self.cluster_bytes,
            )?;
            self.tail = n;
        }
        range.seek(SeekFrom::Start(back))?;
        Ok(())
    }
}

impl Read for FatIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}
impl Write for FatIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut range = self.0.borrow_mut();
        let at = range.stream_position()?;
        let n = range.write(buf)?;
        if let Some(root) = self.1.borrow_mut().as_mut() {
            root.after_write(&mut range, at, n as u64)?;
        }
        Ok(n)
    }
    /// Nothing: `fatfs` flushes its device after every file, which would write the cache out
    /// 15,000 times for 15,000 files. The cache is written by [`FatFs::close`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Seek for FatIo {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.borrow_mut().seek(to)
    }
}

pub type Dir<'a> = fatfs::Dir<'a, FatIo>;
pub type File<'a> = fatfs::File<'a, FatIo>;

/// One entry of [`FatFs::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: DateTime,
}

/// A mounted FAT file system on a [`DiskRange`]. Call [`FatFs::close`] when done: it writes the
/// FSInfo sector and clears the dirty flag, flushes the cache and syncs, and reports errors.
/// Until then, written data may sit in the range's cache (a `flush` of a `fatfs` file does
/// not reach the disk): `close` is the commit point.
pub struct FatFs {
    fs: fatfs::FileSystem<FatIo>,
    io: FatIo,
    name: String,
    /// The copy buffer, allocated once (a fresh zeroed MiB per file costs more than the copy).
    buf: RefCell<Vec<u8>>,
}

/// Mount the FAT file system in `range`.
pub fn open(range: DiskRange) -> Result<FatFs> {
    let name = range.name().to_string();
    let io = FatIo(Rc::new(RefCell::new(range)), Rc::new(RefCell::new(None)));
    io.0.borrow_mut().seek(SeekFrom::Start(0))?;
    let opts = fatfs::FsOptions::new()
        .update_accessed_date(false)
        .time_provider(&CLOCK);
    let fs = fatfs::FileSystem::new(io.clone(), opts)
        .with_context(|| format!("{name} does not hold a readable FAT file system"))?;
    // Only once `fatfs` accepted the boot sector: the chain is followed on a real FAT.
    let root = RootChain::find(&mut io.0.borrow_mut())
        .with_context(|| format!("reading the root directory of {name}"))?;
    *io.1.borrow_mut() = root;
    Ok(FatFs {
        fs,
        io,
        name,
        buf: RefCell::new(Vec::new()),
    })
}

/// [`open`] a FAT file system that tsforge did not just make (a medium, a partition to
/// capture, one found on a used disk): the raw consistency check (`fatcheck`) runs first and a
/// damaged volume is an error listing what is wrong, because `fatfs` trusts what it reads.
pub fn open_checked(range: DiskRange) -> Result<FatFs> {
    let name = range.name().to_string();
    let mut range = range;
    let report = super::fatcheck::check(&mut range)
        .with_context(|| format!("{name} does not hold a readable FAT file system"))?;
    if !report.is_clean() {
        bail!(
            "{name} holds a damaged FAT file system:\n  {}",
            report.problems.join("\n  ")
        );
    }
    open(range)
}

/// `a/b/c` with no empty, `.` or `..` parts (and `\` taken as `/`).
fn clean(path: &str) -> Result<String> {
    let parts: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        bail!("path {path:?} contains '..'");
    }
    Ok(parts.join("/"))
}

impl FatFs {
    pub fn root_dir(&self) -> Dir<'_> {
        self.fs.root_dir()
    }

    pub fn kind(&self) -> Option<FatKind> {
        match self.fs.fat_type() {
            fatfs::FatType::Fat16 => Some(FatKind::Fat16),
            fatfs::FatType::Fat32 => Some(FatKind::Fat32),
            fatfs::FatType::Fat12 => None,
        }
    }

    /// The label from the boot sector, without trailing spaces.
    pub fn label(&self) -> String {
        self.fs.volume_label().trim_end().to_string()
    }

    /// Open a directory (`""` or `/` = root).
    pub fn dir(&self, path: &str) -> Result<Dir<'_>> {
        let p = clean(path)?;
        if p.is_empty() {
            return Ok(self.root_dir());
        }
        self.root_dir()
            .open_dir(&p)
            .with_context(|| format!("opening directory {p} on {}", self.name))
    }

    /// Create a directory and its parents (existing ones are fine).
    pub fn create_dir_all(&self, path: &str) -> Result<Dir<'_>> {
        let p = clean(path)?;
        let mut dir = self.root_dir();
        for part in p.split('/').filter(|s| !s.is_empty()) {
            dir = dir
                .create_dir(part)
                .with_context(|| format!("creating directory {p} on {}", self.name))?;
        }
        Ok(dir)
    }

    /// Create (or truncate) a file and copy `data` into it; returns the bytes written.
    /// `modified` sets the created and modified times (else the clock's time).
    pub fn write_file(
        &self,
        path: &str,
        data: &mut dyn Read,
        modified: Option<DateTime>,
    ) -> Result<u64> {
        let p = clean(path)?;
        let (parent, _) = p.rsplit_once('/').unwrap_or(("", &p));
        let dir = self.create_dir_all(parent)?;
        let leaf = p.rsplit('/').next().unwrap_or(&p);
        let _time = TimeOverride::set(modified);
        let mut f = dir
            .create_file(leaf)
            .with_context(|| format!("creating {p} on {}", self.name))?;
        f.truncate()
            .with_context(|| format!("truncating {p} on {}", self.name))?;
        let n = self
            .copy(data, &mut f)
            .with_context(|| format!("writing {p} on {}", self.name))?;
        f.flush()
            .with_context(|| format!("writing {p} on {}", self.name))?;
        Ok(n)
    }

    /// Create (or truncate) a file, creating its parent directories; the caller writes it.
    pub fn create_file(&self, path: &str) -> Result<File<'_>> {
        let p = clean(path)?;
        let (parent, leaf) = p.rsplit_once('/').unwrap_or(("", &p));
        let dir = self.create_dir_all(parent)?;
        let mut f = dir
            .create_file(leaf)
            .with_context(|| format!("creating {p} on {}", self.name))?;
        f.truncate()
            .with_context(|| format!("truncating {p} on {}", self.name))?;
        Ok(f)
    }

    /// Open an existing file for reading.
    pub fn open_file(&self, path: &str) -> Result<File<'_>> {
        let p = clean(path)?;
        self.root_dir()
            .open_file(&p)
            .with_context(|| format!("opening {p} on {}", self.name))
    }

    /// Remove a file (or an empty directory).
    pub fn remove(&self, path: &str) -> Result<()> {
        let p = clean(path)?;
        self.root_dir()
            .remove(&p)
            .with_context(|| format!("removing {p} on {}", self.name))
    }

    /// Copy `src` to `dst` inside the file system (for content stored once in an image).
    pub fn copy_within(&self, src: &str, dst: &str) -> Result<u64> {
        let mut from = self.open_file(src)?;
        let mut to = self.create_file(dst)?;
        let n = self
            .copy(&mut from, &mut to)
            .with_context(|| format!("copying {src} to {dst} on {}", self.name))?;
        to.flush()
            .with_context(|| format!("writing {dst} on {}", self.name))?;
        Ok(n)
    }

    /// The whole content of a file.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let p = clean(path)?;
        let mut f = self
            .root_dir()
            .open_file(&p)
            .with_context(|| format!("opening {p} on {}", self.name))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .with_context(|| format!("reading {p} on {}", self.name))?;
        Ok(out)
    }

    /// The entries of a directory, without `.` and `..`, in on-disk order.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let dir = self.dir(path)?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.with_context(|| format!("reading directory {path} on {}", self.name))?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            out.push(Entry {
                name,
                is_dir: e.is_dir(),
                size: e.len(),
                modified: e.modified(),
            });
        }
        Ok(out)
    }

    /// Copy a host directory tree into `dest` (created if needed), in sorted order so the
    /// result is reproducible. Symbolic links are followed; other special files are refused.
    /// Returns (files, bytes).
    pub fn copy_tree(&self, src: &Path, dest: &str) -> Result<(u64, u64)> {
        let dest = clean(dest)?;
        self.create_dir_all(&dest)?;
        let mut files = 0;
        let mut bytes = 0;
        self.copy_dir(src, &dest, &mut files, &mut bytes)?;
        Ok((files, bytes))
    }

    fn copy_dir(&self, src: &Path, dest: &str, files: &mut u64, bytes: &mut u64) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .with_context(|| format!("reading directory {}", src.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading directory {}", src.display()))?;
        entries.sort_by_key(|e| e.file_name());
        let dir = self.dir(dest)?;
        for e in entries {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let target = if dest.is_empty() {
                name.clone()
            } else {
                format!("{dest}/{name}")
            };
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("reading metadata of {}", path.display()))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| fat_time(d.as_secs() as i64));
            if meta.is_dir() {
                dir.create_dir(&name)
                    .with_context(|| format!("creating directory {target} on {}", self.name))?;
                self.copy_dir(&path, &target, files, bytes)?;
            } else if meta.is_file() {
                let mut src_file = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let _time = TimeOverride::set(mtime);
                let mut f = dir
                    .create_file(&name)
                    .with_context(|| format!("creating {target} on {}", self.name))?;
                f.truncate()?;
                *bytes += self
                    .copy(&mut src_file, &mut f)
                    .with_context(|| format!("copying {} to {target}", path.display()))?;
                f.flush()
                    .with_context(|| format!("writing {target} on {}", self.name))?;
                *files += 1;
            } else {
                bail!("{} is not a file or directory", path.display());
            }
        }
        Ok(())
    }

    /// Copy with a 1 MiB buffer: `fatfs` writes at most one cluster per call, so a large buffer
    /// lets it run cluster after cluster without going back to the source.
    fn copy(&self, src: &mut dyn Read, dst: &mut dyn Write) -> io::Result<u64> {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            buf.resize(MIB as usize, 0);
        }
        let mut total = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            dst.write_all(&buf[..n])?;
            total += n as u64;
        }
    }

    /// Unmount: write the FSInfo sector, clear the dirty flag, flush the cache, sync.
    pub fn close(self) -> Result<()> {
        let FatFs { fs, io, name, .. } = self;
        fs.unmount()
            .with_context(|| format!("unmounting the file system on {name}"))?;
        let mut range = Rc::try_unwrap(io.0)
            .map_err(|_| anyhow!("{name}: the file system is still in use"))?
            .into_inner();
        fix_dot_entries(&mut range)
            .with_context(|| format!("repairing directory entries on {name}"))?;
        range
            .finish()
            .with_context(|| format!("writing the file system to {name}"))
    }
}

/// Work around two `fatfs` 0.3.6 bugs in new directories (fixed upstream after 0.3.6, not
/// released: rafalh/rust-fatfs#117 and PRs #99/#100), which `fsck.fat` reports as damage:
/// it writes a long-name entry before `.` and before `..` (so `.` is not in slot 0), and on
/// FAT32 a first-level directory's `..` points at the root's cluster instead of 0. This walks
/// every directory (raw, bounded, cycle-safe) and rewrites such a first cluster as `.`, `..`,
/// then the two long-name slots marked deleted.
fn fix_dot_entries(range: &mut DiskRange) -> io::Result<()> {
    let mut bs = [0u8; 512];
    range.seek(SeekFrom::Start(0))?;
    range.read_exact(&mut bs)?;
    let bps = le16(&bs, 11);
    let spc = u64::from(bs[13]);
    let reserved = le16(&bs, 14);
    let fats = u64::from(bs[16]);
    let root_entries = le16(&bs, 17);
    let fat32 = le16(&bs, 22) == 0;
    let fat_size = if fat32 { le32(&bs, 36) } else { le16(&bs, 22) };
    if bps == 0 || spc == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a FAT boot sector",
        ));
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let first_data = reserved + fats * fat_size;
    let data_start = first_data + root_sectors;
    let cluster_bytes = spc * bps;
    let total = range.len() / bps;
    let max_cluster = (total.saturating_sub(data_start)) / spc + 1;
    let cluster_pos = |c: u64| (data_start + (c - 2) * spc) * bps;
    let root_cluster = if fat32 { le32(&bs, 44) } else { 0 };

    let next = |range: &mut DiskRange, c: u64| -> io::Result<Option<u64>> {
        let mut b = [0u8; 4];
        let n = if fat32 {
            range.seek(SeekFrom::Start(reserved * bps + c * 4))?;
            range.read_exact(&mut b)?;
            u64::from(u32::from_le_bytes(b) & 0x0fff_ffff)
        } else {
            range.seek(SeekFrom::Start(reserved * bps + c * 2))?;
            range.read_exact(&mut b[..2])?;
            u64::from(u16::from_le_bytes([b[0], b[1]]))
        };
        Ok((n >= 2 && n <= max_cluster).then_some(n))
    };
    // The byte ranges of a directory.
    let extents = |range: &mut DiskRange, first: u64| -> io::Result<Vec<(u64, u64)>> {
        if first == 0 && !fat32 {
            return Ok(vec![(first_data * bps, root_entries * 32)]);
        }
        let mut out = Vec::new();
        let mut c = Some(if first == 0 { root_cluster } else { first });
        while let Some(cl) = c {
            if cl < 2 || cl > max_cluster || out.len() as u64 > max_cluster {
                break;
            }
            out.push((cluster_pos(cl), cluster_bytes));
            c = next(range, cl)?;
        }
        Ok(out)
    };
    let mut visited = std::collections::HashSet::new();
    let mut todo = vec![0u64];
    while let Some(dir) = todo.pop() {
        if !visited.insert(dir) {
            continue;
        }
        let mut buf = Vec::new();
        for (pos, len) in extents(range, dir)? {
            let start = buf.len();
            buf.resize(start + len as usize, 0);
            range.seek(SeekFrom::Start(pos))?;
            range.read_exact(&mut buf[start..])?;
        }
        for e in buf.chunks_exact(32) {
            if e[0] == 0 {
                break;
            }
            if e[0] == 0xe5 || e[11] == 0x0f || e[11] & 0x08 != 0 || e[11] & 0x10 == 0 {
                continue;
            }
            if e[0] == b'.' && (e[1] == b' ' || e[1] == b'.') {
                continue;
            }
            let hi = if fat32 {
                u64::from(u16::from_le_bytes([e[20], e[21]]))
            } else {
                0
            };
            let c = (hi << 16) | u64::from(u16::from_le_bytes([e[26], e[27]]));
            if c < 2 || c > max_cluster {
                continue;
            }
            // This subdirectory's first four slots.
            let pos = cluster_pos(c);
            let mut head = [0u8; 128];
            if cluster_bytes < 128 {
                continue;
            }
            range.seek(SeekFrom::Start(pos))?;
            range.read_exact(&mut head)?;
            let is_dot = |s: &[u8]| &s[..11] == b".          ";
            let is_dotdot = |s: &[u8]| &s[..11] == b"..         ";
            let mut fixed = head;
            if head[11] == 0x0f && is_dot(&head[32..]) && head[75] == 0x0f && is_dotdot(&head[96..])
            {
                fixed[..32].copy_from_slice(&head[32..64]);
                fixed[32..64].copy_from_slice(&head[96..128]);
                fixed[64..96].copy_from_slice(&head[..32]);
                fixed[96..128].copy_from_slice(&head[64..96]);
                fixed[64] = 0xe5;
                fixed[96] = 0xe5;
            }
            // `..` of a first-level directory is cluster 0.
            if dir == 0 && is_dotdot(&fixed[32..]) {
                fixed[32 + 20..32 + 22].copy_from_slice(&[0, 0]);
                fixed[32 + 26..32 + 28].copy_from_slice(&[0, 0]);
            }
            if fixed != head {
                range.seek(SeekFrom::Start(pos))?;
                range.write_all(&fixed)?;
            }
            todo.push(c);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Disk;

    #[test]
    fn timestamps_convert() {
        let t = fat_time(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
        let early = fat_time(0);
        assert_eq!(
            (early.date.year, early.date.month, early.date.day),
            (1980, 1, 1)
        );
    }

    #[test]
    fn fat16_limit_is_the_formatter_s() {
        let ok = format_in_memory("p", FAT16_MAX, 0, "T", Some(FatKind::Fat16));
        assert!(ok.is_ok());
        let err = format_in_memory("p", FAT16_MAX + 512, 0, "T", Some(FatKind::Fat16))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("use fat32"), "{err}");
    }

    #[test]
    fn labels() {
        assert_eq!(&label_bytes("system").unwrap(), b"SYSTEM     ");
        assert!(label_bytes("much too long label").is_err());
        assert!(label_bytes("a/b").is_err());
    }

    #[test]
    fn format_write_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::create_image(&dir.path().join("d.img"), 64 * MIB).unwrap();
        format(disk.range(MIB, 40 * MIB).unwrap(), "data", None).unwrap();
        let fs = open(disk.range(MIB, 40 * MIB).unwrap()).unwrap();
        assert_eq!(fs.kind(), Some(FatKind::Fat16));
        assert_eq!(fs.label(), "DATA");
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs.write_file("Boot/EFI/long name file.bin", &mut &body[..], None)
            .unwrap();
        fs.write_file(
            "/small.txt",
            &mut &b"hello"[..],
            Some(fat_time(1_700_000_000)),
        )
        .unwrap();
        assert!(fs.write_file("../x", &mut &b""[..], None).is_err());
        fs.close().unwrap();
        let fs = open(disk.range(MIB, 40 * MIB).unwrap()).unwrap();
        assert_eq!(fs.read_file("boot/efi/long name file.bin").unwrap(), body);
        let root = fs.list("/").unwrap();
        let names: Vec<_> = root.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Boot", "small.txt"]);
        assert_eq!(root[1].modified.date.year, 2023);
        fs.close().unwrap();
        // Too small for FAT32: a clear error.
        let err = format(
            disk.range(MIB, 20 * MIB).unwrap(),
            "x",
            Some(FatKind::Fat32),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("use fat16"), "{err}");
    }
}
