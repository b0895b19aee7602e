//! A small, deterministic ISO 9660 writer for boot media: a primary tree, a Joliet tree with
//! the real names, El Torito boot entries for BIOS and UEFI, and an optional isohybrid MBR so
//! the same image boots from a USB stick.
//!
//! ```no_run
//! use tsforge_builder::iso::{BiosBoot, Hybrid, IsoBuilder, IsoOptions, Source, UefiBoot};
//! # fn main() -> Result<(), tsforge_builder::iso::IsoError> {
//! let mut options = IsoOptions::new("TSFORGE", 1_700_000_000);
//! options.bios_boot = Some(BiosBoot::etfsboot("Boot/etfsboot.com"));
//! options.uefi_boot = Some(UefiBoot::new("EFI/Microsoft/Boot/efisys.bin"));
//! options.hybrid = Some(Hybrid::default());
//! let mut iso = IsoBuilder::new(options);
//! iso.add_file("Boot/etfsboot.com", Source::path("winpe/media/Boot/etfsboot.com"))?;
//! iso.add_file("EFI/Microsoft/Boot/efisys.bin", Source::path("winpe/efisys.bin"))?;
//! iso.add_file("tsforge/sequence.yaml", Source::bytes(b"steps: []\n".to_vec()))?;
//! let plan = iso.plan()?; // reads every source's size, lays the image out, checks limits
//! let out = std::fs::File::create("tsforge.iso.tmp").map_err(tsforge_builder::iso::IsoError::Write)?;
//! plan.write(out, |done, total| eprintln!("{done}/{total}"))?;
//! # Ok(()) }
//! ```
//!
//! **Why not a crate.** `hadris-iso`, the most complete pure-Rust writer found (El Torito,
//! Joliet, hybrid MBR/GPT), takes file contents as in-memory `Vec<u8>`s (in 2.5, streaming
//! sources sit behind an `unstable-streaming` feature), and its writer API has been
//! reorganised across 1.x, the 2.0 release candidates and 2.x (`write::IsoImageWriter` became
//! `sync::write::IsoImageWriter`, `InputFiles` was joined by `InputTree`): a multi-GB
//! `boot.wim` would have to be loaded whole, and the code would follow a moving target. What
//! boot media need is small: one planned pass (every size and address known before the first
//! byte is written) and one sequential write, so the output may be a pipe and file contents
//! stream through one buffer.
//!
//! **Layout.** Sectors 0–15: system area (zero, or the hybrid MBR in the first 512 bytes);
//! 16: primary volume descriptor; 17: El Torito boot record (when booting, El Torito 1.0 §2.0
//! requires sector 17); then the Joliet supplementary volume descriptor and the terminator;
//! the four path tables (primary L and M, Joliet L and M); the primary directories and the
//! Joliet directories, each in path-table order; the boot catalog; the file data, each file in
//! one extent, in the order of its path; zero padding (to a whole MiB when hybrid). Both trees
//! point at the same file extents. Every directory and file carries the one fixed timestamp,
//! so identical input gives byte-identical output.
//!
//! **Names.** ECMA-119 (2nd edition, 1987) file identifiers are made from the real names:
//! upper-cased, characters outside `A–Z 0–9 _` replaced by `_`, name and extension cut to
//! 30 characters together (31 for directories, §7.5–7.6, "level 2"), `;1` appended to files.
//! Names that clash after that get `_1`, `_2`, … at the end of the name part. The Joliet tree
//! (Joliet specification, Microsoft 1995: escape sequence `%/E`, UCS-2 big-endian) keeps the
//! names as given, up to 64 UCS-2 characters, without `;1`; names Joliet cannot hold
//! (control characters, `* / : ; ? \`, characters outside the Basic Multilingual Plane) are
//! refused. Windows and Linux read the Joliet tree; BIOS boot loaders such as ISOLINUX read
//! the primary tree and compare names without regard to case, so `isolinux/isolinux.cfg`,
//! recorded as `ISOLINUX/ISOLINUX.CFG;1`, is still found. Names that differ only in case are
//! kept apart in both trees, but Windows will see them as one name: avoid them.
//!
//! **Boot.** El Torito 1.0 (Phoenix/IBM, 1995): the boot record volume descriptor (§2.0,
//! Figure 7) points at a one-sector catalog with a validation entry (§2.1, Figure 2), the
//! initial/default entry (§2.2, Figure 3) and, when there are both a BIOS and a UEFI image, a
//! final section header for platform 0xEF (§2.3, Figure 4) with one section entry (§2.4,
//! Figure 5). All entries are "no emulation". A UEFI entry's sector count is the image size in
//! 512-byte sectors; an image larger than 65,535 sectors (32 MiB) gets 0, which UEFI firmware
//! reads as "the partition runs to the end of the disc" (UEFI specification, "ISO-9660 and
//! El Torito"; EDK II does this for counts below 2), instead of a truncated count that would
//! hide the end of the FAT. The boot-info table (`-boot-info-table` in mkisofs/xorriso, used
//! by ISOLINUX) is 56 bytes at offset 8 of the boot file: the primary volume descriptor's
//! sector, the file's sector, its length and the 32-bit little-endian sum of its words from
//! offset 64; it is patched into the copy written to the ISO, never into the source.
//!
//! **Hybrid MBR** (isohybrid): the caller's boot code (at most 440 bytes; syslinux's
//! `isohdpfx.bin` is 432) goes first; with a BIOS entry, bytes 432–439 hold the boot image's
//! address in 512-byte sectors, which `isohdpfx.bin` loads; then a disk signature derived from
//! label and timestamp; partition 1, active, from sector 0 over the whole image; and, with a
//! UEFI entry, partition 2 of type 0xEF over the EFI image, so UEFI firmware finds the ESP on
//! a USB stick. Partition 1 then has type 0x00 (as xorriso and Debian's images do), because
//! firmware such as EDK II rejects an MBR whose non-empty partitions overlap; without a UEFI
//! image it has type 0x17, syslinux isohybrid's default. No GPT is written.
//!
//! **Left out on purpose:** Rock Ridge (Linux reads the Joliet names; POSIX modes and
//! symbolic links are not needed on boot media), multi-extent files (a file over 4 GiB − 1
//! byte is refused with its name), UDF, emulated floppy/hard-disk boot entries, more than one
//! boot entry per platform, and ECMA-119's depth limit of 8 directory levels (not enforced;
//! Linux, Windows and xorriso read deeper trees). Writing to a temporary file and renaming it
//! is the caller's job.

pub use crate::source::Source;
use crate::source::{copy_exact, split_path, CopyError};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{self, BufWriter, Read, Write};
use tsforge_runtime::log::civil_from_days;
use tsforge_runtime::sys::BUFFER_SIZE;

/// Bytes in one ISO 9660 logical sector (ECMA-119 §6.1.2 allows others; everyone uses 2048).
pub const SECTOR_SIZE: u64 = 2048;
const SECTOR: usize = SECTOR_SIZE as usize;
/// The largest file ISO 9660 holds in one extent (the data length field is 32 bits).
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;
/// A boot file with a boot-info table is read whole into memory; ISOLINUX's is ~40 KiB.
const MAX_BOOT_INFO_FILE: u64 = 16 << 20;
/// Longest Joliet name in UCS-2 characters (Joliet specification).
pub const MAX_JOLIET_NAME: usize = 64;
/// Sector of the primary volume descriptor (ECMA-119 §6.2.1 and §8.4).
const PVD_SECTOR: u32 = 16;

/// What went wrong planning or writing an ISO. Every variant that concerns one file names its
/// path inside the ISO (and the source on the build machine where there is one).
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// A path inside the ISO is malformed.
    #[error("{path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The same file was added twice.
    #[error("{path}: added twice (each path in the ISO holds one file)")]
    Duplicate { path: String },
    /// A path is used both as a file and as a directory.
    #[error("{path}: used both as a file and as a directory")]
    FileDirConflict { path: String },
    /// A name the Joliet tree cannot hold.
    #[error("{path}: {reason}")]
    InvalidName { path: String, reason: String },
    /// A source could not be read (missing, unreadable, a directory).
    #[error("{path}: cannot read {source_desc}: {error}")]
    Read {
        path: String,
        source_desc: String,
        error: io::Error,
    },
    /// A file too large for one ISO 9660 extent.
    #[error(
        "{path}: {source_desc} is {size} bytes, over the ISO 9660 limit of 4 GiB - 1 \
         (4294967295 bytes) for one file; split it (e.g. `wimlib-imagex split` for a WIM) \
         or use USB media"
    )]
    FileTooLarge {
        path: String,
        source_desc: String,
        size: u64,
    },
    /// A source changed size between planning and writing.
    #[error(
        "{path}: {source_desc} changed size while the ISO was written (planned {size} bytes); \
         build from a tree nothing else is writing to"
    )]
    Changed {
        path: String,
        source_desc: String,
        size: u64,
    },
    /// The volume label cannot be recorded.
    #[error("volume label {label:?}: {reason}")]
    Label { label: String, reason: String },
    /// The timestamp is outside what ISO 9660 dates can hold.
    #[error("timestamp {0}: ISO 9660 dates run from 1900 to 2155; set SOURCE_DATE_EPOCH to a time in that range")]
    Timestamp(i64),
    /// A boot image is missing from the tree or unusable.
    #[error("{platform} boot image {path}: {reason}")]
    BootImage {
        platform: &'static str,
        path: String,
        reason: String,
    },
    /// The hybrid MBR boot code is too long.
    #[error("hybrid MBR boot code is {0} bytes; at most 440 fit before the disk signature (isohdpfx.bin is 432)")]
    BootCode(usize),
    /// The image exceeds a format limit (sector count, directory count).
    #[error("{0}")]
    TooLarge(String),
    /// Writing the output failed.
    #[error("writing the ISO: {0}")]
    Write(io::Error),
}

/// How many 512-byte sectors a BIOS firmware loads from a no-emulation boot image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSize {
    /// This many 512-byte sectors (4 is one CD sector, what `etfsboot.com` expects).
    Sectors(u16),
    /// The whole file, rounded up to 512-byte sectors (at most 65,535 sectors, 32 MiB).
    WholeFile,
}

/// The BIOS El Torito entry (platform 0x00, no emulation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiosBoot {
    /// The boot image: a file added to the ISO, e.g. `Boot/etfsboot.com`.
    pub image: String,
    /// How much of it the firmware loads.
    pub load_size: LoadSize,
    /// Patch a boot-info table into the image (ISOLINUX needs it, `etfsboot.com` must not
    /// have it).
    pub boot_info_table: bool,
}

impl BiosBoot {
    /// Windows PE: `etfsboot.com`, 4 sectors loaded, no boot-info table.
    pub fn etfsboot(image: impl Into<String>) -> Self {
        BiosBoot {
            image: image.into(),
            load_size: LoadSize::Sectors(4),
            boot_info_table: false,
        }
    }

    /// ISOLINUX: `isolinux/isolinux.bin`, loaded whole, with a boot-info table.
    pub fn isolinux(image: impl Into<String>) -> Self {
        BiosBoot {
            image: image.into(),
            load_size: LoadSize::WholeFile,
            boot_info_table: true,
        }
    }
}

/// The UEFI El Torito entry (platform 0xEF, no emulation): a FAT image that firmware mounts as
/// the EFI System Partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiBoot {
    /// The ESP image: a file added to the ISO, e.g. `EFI/Microsoft/Boot/efisys.bin` or
    /// `boot/efi.img`.
    pub image: String,
}

impl UefiBoot {
    /// An entry for the ESP image at `image` inside the ISO.
    pub fn new(image: impl Into<String>) -> Self {
        UefiBoot {
            image: image.into(),
        }
    }
}

/// An isohybrid MBR in the first 512 bytes, so the image also boots when written to a disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hybrid {
    /// x86 boot code for the MBR's first bytes (at most 440; syslinux's `isohdpfx.bin`, 432
    /// bytes, loads the BIOS boot image). `None` leaves them zero: the image then boots from
    /// disk under UEFI only.
    pub boot_code: Option<Vec<u8>>,
}

/// Everything about the image except its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoOptions {
    /// Volume label: 1–32 ASCII letters, digits, `_`, `-`, `.` or spaces, recorded as given
    /// in the primary descriptor and (first 16 characters) in the Joliet one.
    pub label: String,
    /// Seconds since 1970-01-01 UTC for every date in the image (use `SOURCE_DATE_EPOCH`).
    pub timestamp: i64,
    /// BIOS El Torito entry.
    pub bios_boot: Option<BiosBoot>,
    /// UEFI El Torito entry.
    pub uefi_boot: Option<UefiBoot>,
    /// isohybrid MBR.
    pub hybrid: Option<Hybrid>,
}

impl IsoOptions {
    /// A plain (non-bootable) image with this label and timestamp.
    pub fn new(label: impl Into<String>, timestamp: i64) -> Self {
        IsoOptions {
            label: label.into(),
            timestamp,
            bios_boot: None,
            uefi_boot: None,
            hybrid: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File(Source),
}

/// Collects the files of an ISO; [`IsoBuilder::plan`] lays them out.
#[derive(Debug, Clone)]
pub struct IsoBuilder {
    options: IsoOptions,
    /// Normalized path (components joined by `/`) → entry; parents are always present.
    entries: BTreeMap<String, Entry>,
}

impl IsoBuilder {
    /// An empty image.
    pub fn new(options: IsoOptions) -> Self {
        IsoBuilder {
            options,
            entries: BTreeMap::new(),
        }
    }

    /// The options the image will be built with.
    pub fn options(&self) -> &IsoOptions {
        &self.options
    }

    /// Add a file at `path` (`/`-separated, a leading `/` is ignored); its directories are
    /// created as needed. The source is only looked at by [`IsoBuilder::plan`].
    pub fn add_file(&mut self, path: &str, source: impl Into<Source>) -> Result<(), IsoError> {
        let key = self.add_parents(path)?;
        match self.entries.get(&key) {
            Some(Entry::File(_)) => Err(IsoError::Duplicate { path: key }),
            Some(Entry::Dir) => Err(IsoError::FileDirConflict { path: key }),
            None => {
                self.entries.insert(key, Entry::File(source.into()));
                Ok(())
            }
        }
    }

    /// Add a directory (needed only for empty ones: files create their directories).
    pub fn add_dir(&mut self, path: &str) -> Result<(), IsoError> {
        let key = self.add_parents(path)?;
        match self.entries.get(&key) {
            Some(Entry::File(_)) => Err(IsoError::FileDirConflict { path: key }),
            _ => {
                self.entries.insert(key, Entry::Dir);
                Ok(())
            }
        }
    }

    /// Check `path`, create its parent directories, return its normalized form.
    fn add_parents(&mut self, path: &str) -> Result<String, IsoError> {
        let parts = split_path(path).map_err(|reason| IsoError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        })?;
        let mut key = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push('/');
            }
            key.push_str(part);
            if i + 1 == parts.len() {
                break;
            }
            match self.entries.get(&key) {
                Some(Entry::File(_)) => return Err(IsoError::FileDirConflict { path: key }),
                Some(Entry::Dir) => {}
                None => {
                    self.entries.insert(key.clone(), Entry::Dir);
                }
            }
        }
        Ok(key)
    }

    /// Check every source (it must exist and be at most [`MAX_FILE_SIZE`] bytes), every name,
    /// the label and the boot configuration, and lay the image out. Nothing is written;
    /// errors name the file concerned.
    pub fn plan(&self) -> Result<IsoPlan, IsoError> {
        plan(self)
    }
}

/// A laid-out image, ready to be written by [`IsoPlan::write`].
#[derive(Debug, Clone)]
pub struct IsoPlan {
    /// Sectors 0 up to the first file sector: system area, descriptors, path tables,
    /// directories, boot catalog.
    head: Vec<u8>,
    /// File contents in sector order (empty files are not listed).
    data: Vec<PlannedFile>,
    total_sectors: u32,
    /// The BIOS boot image whose boot-info table the plan filled in, if any.
    patched_path: Option<String>,
}

#[derive(Debug, Clone)]
struct PlannedFile {
    path: String,
    source: Source,
    size: u64,
}

impl IsoPlan {
    /// The file whose bytes on the ISO differ from its source (the BIOS boot image with its
    /// boot-info table filled in), with those bytes: a manifest of the medium must list them.
    pub fn patched_file(&self) -> Option<(&str, &[u8])> {
        let p = self.patched_path.as_deref()?;
        self.data
            .iter()
            .find(|f| f.path == p)
            .and_then(|f| match &f.source {
                Source::Bytes(b) => Some((p, &b[..])),
                Source::Path(_) => None,
            })
    }

    /// Sectors 0 up to the first file sector, as they will be written: system area (hybrid
    /// MBR), volume descriptors, path tables, directories, boot catalog. It depends on the
    /// files' names, sizes and order, not on their contents.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The size of the image in bytes.
    pub fn size(&self) -> u64 {
        u64::from(self.total_sectors) * SECTOR_SIZE
    }

    /// Write the image to `out`, front to back, and return `out`. `progress` gets
    /// `(bytes written, image size)` after every write. File contents are read now, in
    /// buffer-sized pieces; a source that has changed size since [`IsoBuilder::plan`] is an
    /// error naming it.
    pub fn write<W: Write>(
        &self,
        mut out: W,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<W, IsoError> {
        let total = self.size();
        let mut done = 0u64;
        {
            let mut w = BufWriter::with_capacity(BUFFER_SIZE, &mut out);
            w.write_all(&self.head).map_err(IsoError::Write)?;
            done += self.head.len() as u64;
            progress(done, total);
            let mut buf = vec![0u8; BUFFER_SIZE];
            for f in &self.data {
                let mut step = |n: u64| {
                    done += n;
                    progress(done, total);
                };
                copy_exact(&f.source, f.size, &mut w, &mut buf, &mut step).map_err(
                    |e| match e {
                        CopyError::Read(error) => IsoError::Read {
                            path: f.path.clone(),
                            source_desc: f.source.describe(),
                            error,
                        },
                        CopyError::Write(e) => IsoError::Write(e),
                        CopyError::Changed => IsoError::Changed {
                            path: f.path.clone(),
                            source_desc: f.source.describe(),
                            size: f.size,
                        },
                    },
                )?;
                let pad = pad_len(f.size);
                write_zeros(&mut w, pad)?;
                done += pad;
            }
            write_zeros(&mut w, total - done)?;
            done = total;
            progress(done, total);
            w.flush().map_err(IsoError::Write)?;
        }
        Ok(out)
    }
}

fn write_zeros(w: &mut dyn Write, mut n: u64) -> Result<(), IsoError> {
    let zeros = [0u8; SECTOR];
    while n > 0 {
        let k = n.min(SECTOR_SIZE) as usize;
        w.write_all(&zeros[..k]).map_err(IsoError::Write)?;
        n -= k as u64;
    }
    Ok(())
}

/// Bytes from `len` up to the next sector boundary.
fn pad_len(len: u64) -> u64 {
    (SECTOR_SIZE - len % SECTOR_SIZE) % SECTOR_SIZE
}

fn sectors(len: u64) -> u64 {
    len.div_ceil(SECTOR_SIZE)
}

// ---------------------------------------------------------------------------------------------
// The tree.

struct Dir {
    /// The name as given and the path from the root ("" for the root).
    name: String,
    path: String,
    parent: usize,
    dirs: Vec<usize>,
    files: Vec<usize>,
}

struct FileNode {
    path: String,
    name: String,
    source: Source,
    size: u64,
    lba: u32,
}

#[derive(Clone, Copy)]
enum Child {
    Dir(usize),
    File(usize),
}

/// One of the two directory hierarchies (primary or Joliet) laid out.
struct TreeLayout {
    /// Per directory: its children with their identifiers, in recording order (ECMA-119 §9.3).
    children: Vec<Vec<(Vec<u8>, Child)>>,
    /// Per directory: its own identifier (`[0]` for the root).
    ident: Vec<Vec<u8>>,
    /// Directories in path-table order (ECMA-119 §6.9.1): by level, parent, identifier.
    order: Vec<usize>,
    /// Per directory: its path-table number (1-based).
    number: Vec<u16>,
    /// Per directory: its parent (the root is its own parent).
    parent: Vec<usize>,
    /// Per directory: its extent length in bytes (whole sectors) and first sector.
    len: Vec<u32>,
    lba: Vec<u32>,
    path_table_len: u32,
}

fn plan(b: &IsoBuilder) -> Result<IsoPlan, IsoError> {
    let opts = &b.options;
    check_label(&opts.label)?;
    let date = IsoDate::new(opts.timestamp)?;
    let (dirs, mut files) = collect_tree(&b.entries)?;
    let bios = match &opts.bios_boot {
        Some(bb) => Some((boot_file(&files, "BIOS", &bb.image)?, bb)),
        None => None,
    };
    let uefi = match &opts.uefi_boot {
        Some(ub) => Some(boot_file(&files, "UEFI", &ub.image)?),
        None => None,
    };
    if let Some(code) = opts.hybrid.as_ref().and_then(|h| h.boot_code.as_ref()) {
        if code.len() > 440 {
            return Err(IsoError::BootCode(code.len()));
        }
    }
    let mut primary = layout_tree(&dirs, &files, primary_names)?;
    let mut joliet = layout_tree(&dirs, &files, joliet_names)?;

    // Addresses, in the order of the module documentation's layout.
    let booting = bios.is_some() || uefi.is_some();
    let mut next = u64::from(PVD_SECTOR) + 1 + u64::from(booting) + 2;
    let mut path_tables_at = [0u64; 4];
    for (k, t) in [&primary, &primary, &joliet, &joliet]
        .into_iter()
        .enumerate()
    {
        path_tables_at[k] = next;
        next += sectors(u64::from(t.path_table_len));
    }
    for t in [&mut primary, &mut joliet] {
        for &d in &t.order {
            t.lba[d] = sector_u32(next)?;
            next += u64::from(t.len[d]) / SECTOR_SIZE;
        }
    }
    let catalog = booting.then_some(next);
    next += u64::from(booting);
    let head_sectors = next;
    // File data in path order; empty files get no sectors and address 0.
    let mut data_order: Vec<usize> = (0..files.len()).collect();
    data_order.sort_by(|&x, &y| files[x].path.cmp(&files[y].path));
    for &i in &data_order {
        if files[i].size > 0 {
            files[i].lba = sector_u32(next)?;
            next += sectors(files[i].size);
        }
    }
    if opts.hybrid.is_some() {
        // Whole MiB (one cylinder of isohybrid's 64 heads x 32 sectors): some BIOSes want
        // a disk size that is a whole number of cylinders.
        next = next.div_ceil(512) * 512;
    }
    let total_sectors = sector_u32(next)?;

    let bios_entry = match bios {
        Some((i, bb)) => Some(bios_entry(&files[i], bb)?),
        None => None,
    };
    let uefi_entry = match uefi {
        Some(i) => Some(uefi_entry(&files[i])?),
        None => None,
    };
    let mut patched = match bios {
        Some((i, bb)) if bb.boot_info_table => Some((i, boot_info_table(&files[i])?)),
        _ => None,
    };

    // The head: everything before the first file sector.
    let head_len = usize::try_from(head_sectors * SECTOR_SIZE)
        .map_err(|_| IsoError::TooLarge("the directories do not fit in memory".into()))?;
    let mut head = vec![0u8; head_len];
    let mut put = |sector: u64, bytes: &[u8]| {
        let at = (sector * SECTOR_SIZE) as usize; // inside `head`, whose size was checked
        head[at..at + bytes.len()].copy_from_slice(bytes);
    };
    let mut vd = u64::from(PVD_SECTOR);
    let [pl, pm, jl, jm] = path_tables_at.map(|s| s as u32); // below `head_sectors`
    put(
        vd,
        &volume_descriptor(false, &opts.label, total_sectors, &primary, pl, pm, &date),
    );
    vd += 1;
    if let Some(catalog) = catalog {
        put(vd, &boot_record(catalog as u32));
        vd += 1;
        put(catalog, &boot_catalog(bios_entry, uefi_entry));
    }
    put(
        vd,
        &volume_descriptor(true, &opts.label, total_sectors, &joliet, jl, jm, &date),
    );
    put(vd + 1, &[255, b'C', b'D', b'0', b'0', b'1', 1]); // terminator (§8.3)
    for (t, l, m) in [(&primary, pl, pm), (&joliet, jl, jm)] {
        let (lt, mt) = path_tables(t);
        put(u64::from(l), &lt);
        put(u64::from(m), &mt);
        for &d in &t.order {
            put(u64::from(t.lba[d]), &directory(t, d, &files, &date));
        }
    }
    if let Some(h) = &opts.hybrid {
        let efi = uefi.map(|i| (files[i].lba, files[i].size));
        let mbr = hybrid_mbr(h, opts, total_sectors, bios_entry.map(|e| e.lba), efi);
        put(0, &mbr);
    }

    let patched_path = patched.as_ref().map(|(i, _)| files[*i].path.clone());
    let data = data_order
        .into_iter()
        .filter(|&i| files[i].size > 0)
        .map(|i| PlannedFile {
            path: files[i].path.clone(),
            source: match patched.take_if(|(p, _)| *p == i) {
                Some((_, bytes)) => Source::Bytes(bytes.into()),
                None => files[i].source.clone(),
            },
            size: files[i].size,
        })
        .collect();
    Ok(IsoPlan {
        head,
        data,
        total_sectors,
        patched_path,
    })
}

/// The directories and files of `entries`, each file's size read (and checked).
fn collect_tree(entries: &BTreeMap<String, Entry>) -> Result<(Vec<Dir>, Vec<FileNode>), IsoError> {
    let mut dirs = vec![Dir {
        name: String::new(),
        path: String::new(),
        parent: 0,
        dirs: Vec::new(),
        files: Vec::new(),
    }];
    let mut files: Vec<FileNode> = Vec::new();
    let mut dir_index: HashMap<&str, usize> = HashMap::from([("", 0)]);
    // A parent sorts before its children (a prefix sorts first), so it is always known.
    for (path, entry) in entries {
        let (parent_path, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = dir_index[parent_path];
        match entry {
            Entry::Dir => {
                let i = dirs.len();
                dirs[parent].dirs.push(i);
                dir_index.insert(path, i);
                dirs.push(Dir {
                    name: name.to_string(),
                    path: path.clone(),
                    parent,
                    dirs: Vec::new(),
                    files: Vec::new(),
                });
            }
            Entry::File(source) => {
                let size = source.size().map_err(|error| IsoError::Read {
                    path: path.clone(),
                    source_desc: source.describe(),
                    error,
                })?;
                if size > MAX_FILE_SIZE {
                    return Err(IsoError::FileTooLarge {
                        path: path.clone(),
                        source_desc: source.describe(),
                        size,
                    });
                }
                dirs[parent].files.push(files.len());
                files.push(FileNode {
                    path: path.clone(),
                    name: name.to_string(),
                    source: source.clone(),
                    size,
                    lba: 0,
                });
            }
        }
    }
    if dirs.len() > usize::from(u16::MAX) {
        return Err(IsoError::TooLarge(format!(
            "{} directories; the ISO 9660 path table numbers at most 65535",
            dirs.len()
        )));
    }
    Ok((dirs, files))
}

/// The index of the boot image `image`, which must be a non-empty file in the tree.
fn boot_file(files: &[FileNode], platform: &'static str, image: &str) -> Result<usize, IsoError> {
    let key = split_path(image).map(|p| p.join("/")).unwrap_or_default();
    let bad = |reason: &str| IsoError::BootImage {
        platform,
        path: image.to_string(),
        reason: reason.to_string(),
    };
    let i = files
        .iter()
        .position(|f| f.path == key)
        .ok_or_else(|| bad("not a file added to the ISO; add it with add_file"))?;
    if files[i].size == 0 {
        return Err(bad("the file is empty"));
    }
    Ok(i)
}

fn bios_entry(f: &FileNode, bb: &BiosBoot) -> Result<BootEntry, IsoError> {
    let sectors = match bb.load_size {
        LoadSize::Sectors(n) => n,
        LoadSize::WholeFile => {
            u16::try_from(f.size.div_ceil(512)).map_err(|_| IsoError::BootImage {
                platform: "BIOS",
                path: f.path.clone(),
                reason: format!(
                    "{} bytes cannot be loaded whole (El Torito loads at most 65535 sectors \
                     of 512 bytes); give a load size in sectors",
                    f.size
                ),
            })?
        }
    };
    Ok(BootEntry {
        lba: f.lba,
        sectors,
    })
}

fn uefi_entry(f: &FileNode) -> Result<BootEntry, IsoError> {
    // Over 65535 sectors: 0, "to the end of the disc" (see the module documentation).
    let sectors = u16::try_from(f.size.div_ceil(512)).unwrap_or(0);
    Ok(BootEntry {
        lba: f.lba,
        sectors,
    })
}

fn sector_u32(s: u64) -> Result<u32, IsoError> {
    u32::try_from(s).map_err(|_| {
        IsoError::TooLarge("the image would exceed 2^32 sectors (8 TiB), ISO 9660's limit".into())
    })
}

fn check_label(label: &str) -> Result<(), IsoError> {
    let bad = |reason: &str| IsoError::Label {
        label: label.to_string(),
        reason: reason.to_string(),
    };
    if label.is_empty() || label.len() > 32 {
        return Err(bad("must be 1 to 32 characters long"));
    }
    if !label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
    {
        return Err(bad(
            "use ASCII letters, digits, `_`, `-`, `.` and spaces only",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Names.

/// A child of a directory to be named in one tree.
#[derive(Clone, Copy)]
struct ToName<'a> {
    /// The name as given, and the full path (for messages).
    name: &'a str,
    path: &'a str,
    is_dir: bool,
}

/// An identifier as recorded, and the key that orders it within its directory (§9.3).
struct Ident {
    id: Vec<u8>,
    key: Vec<u8>,
}

/// Names all children of one directory, in the order given.
type NameFn = fn(&[ToName<'_>]) -> Result<Vec<Ident>, IsoError>;

/// Primary-tree identifiers (ECMA-119 §7.5, §7.6, "level 2"), unique within the directory.
fn primary_names(kids: &[ToName<'_>]) -> Result<Vec<Ident>, IsoError> {
    // Named in the order of the names as given (directories first on a tie), so which name
    // gets a `_N` suffix does not depend on the order files were added.
    let mut order: Vec<usize> = (0..kids.len()).collect();
    order.sort_by(|&a, &b| (kids[a].name, !kids[a].is_dir).cmp(&(kids[b].name, !kids[b].is_dir)));
    // What readers compare: a file without extension loses its trailing period.
    let mut used: HashSet<String> = HashSet::new();
    let mut out: Vec<Option<Ident>> = (0..kids.len()).map(|_| None).collect();
    for i in order {
        let k = kids[i];
        let (base, ext) = match k.name.rsplit_once('.') {
            Some((base, ext)) if !k.is_dir => (d_chars(base), d_chars(ext)),
            _ => (d_chars(k.name), String::new()),
        };
        let ext: String = if base.len() + ext.len() > 30 {
            ext.chars().take(8).collect()
        } else {
            ext
        };
        let base_max = if k.is_dir { 31 } else { 30 - ext.len() };
        let seen = |b: &str| match ext.as_str() {
            "" => b.to_string(),
            e => format!("{b}.{e}"),
        };
        let mut chosen: String = base.chars().take(base_max).collect();
        let mut n = 0u32;
        while used.contains(&seen(&chosen)) || (chosen.is_empty() && ext.is_empty()) {
            n += 1;
            let suffix = format!("_{n}");
            chosen = base
                .chars()
                .take(base_max.saturating_sub(suffix.len()))
                .collect::<String>()
                + &suffix;
        }
        used.insert(seen(&chosen));
        let id = if k.is_dir {
            chosen.clone().into_bytes()
        } else {
            format!("{chosen}.{ext};1").into_bytes()
        };
        // §9.3: name, then extension, each compared as if padded with spaces; d-characters
        // all sort after the space, so byte order of name, NUL, extension is the same.
        let key = [chosen.as_bytes(), &[0], ext.as_bytes()].concat();
        out[i] = Some(Ident { id, key });
    }
    Ok(out.into_iter().flatten().collect())
}

/// Upper-case, every character outside `A–Z 0–9 _` replaced by `_` (ECMA-119 d-characters).
fn d_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

/// Joliet identifiers: the names in UCS-2 big-endian, checked.
fn joliet_names(kids: &[ToName<'_>]) -> Result<Vec<Ident>, IsoError> {
    kids.iter()
        .map(|k| {
            let id = joliet_name(k.name).map_err(|reason| IsoError::InvalidName {
                path: k.path.to_string(),
                reason,
            })?;
            Ok(Ident {
                key: id.clone(),
                id,
            })
        })
        .collect()
}

fn joliet_name(name: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(name.len() * 2);
    for c in name.chars() {
        let Ok(unit) = u16::try_from(u32::from(c)) else {
            return Err(format!(
                "the name {name:?} has {c:?}, which Joliet (UCS-2) cannot hold"
            ));
        };
        if unit < 0x20 || matches!(c, '*' | '/' | ':' | ';' | '?' | '\\') {
            return Err(format!(
                "the name {name:?} has {c:?}, which Joliet does not allow (control \
                 characters and * / : ; ? \\)"
            ));
        }
        out.extend_from_slice(&unit.to_be_bytes());
    }
    let count = out.len() / 2;
    if count > MAX_JOLIET_NAME {
        return Err(format!(
            "the name {name:?} is {count} characters long; Joliet holds at most \
             {MAX_JOLIET_NAME}: shorten it"
        ));
    }
    Ok(out)
}

fn layout_tree(dirs: &[Dir], files: &[FileNode], names: NameFn) -> Result<TreeLayout, IsoError> {
    let n = dirs.len();
    let mut children = Vec::with_capacity(n);
    let mut ident = vec![vec![0u8]; n];
    for d in dirs {
        let kids: Vec<(ToName, Child)> = (d.dirs.iter())
            .map(|&i| (&dirs[i].name, &dirs[i].path, true, Child::Dir(i)))
            .chain(
                d.files
                    .iter()
                    .map(|&i| (&files[i].name, &files[i].path, false, Child::File(i))),
            )
            .map(|(name, path, is_dir, c)| (ToName { name, path, is_dir }, c))
            .collect();
        let to_name: Vec<ToName> = kids.iter().map(|k| k.0).collect();
        let mut named: Vec<(Ident, Child)> = names(&to_name)?
            .into_iter()
            .zip(kids.into_iter().map(|k| k.1))
            .collect();
        named.sort_by(|a, b| (&a.0.key, &a.0.id).cmp(&(&b.0.key, &b.0.id)));
        for (id, c) in &named {
            if let Child::Dir(i) = c {
                ident[*i] = id.id.clone();
            }
        }
        children.push(
            named
                .into_iter()
                .map(|(id, c)| (id.id, c))
                .collect::<Vec<_>>(),
        );
    }

    // Path-table order: breadth first, children in recording order (§6.9.1).
    let mut order = Vec::with_capacity(n);
    let mut queue = VecDeque::from([0usize]);
    while let Some(d) = queue.pop_front() {
        order.push(d);
        queue.extend(children[d].iter().filter_map(|(_, c)| match c {
            Child::Dir(i) => Some(*i),
            Child::File(_) => None,
        }));
    }
    let mut number = vec![0u16; n];
    for (k, &d) in order.iter().enumerate() {
        number[d] = (k + 1) as u16; // at most 65535 directories, checked in collect_tree
    }
    let mut len = vec![0u32; n];
    for d in 0..n {
        let bytes = place_records(children[d].iter().map(|(id, _)| record_len(id.len()))).0;
        len[d] = u32::try_from(bytes).map_err(|_| {
            IsoError::TooLarge(format!(
                "directory {:?} has too many entries for one ISO 9660 extent",
                dirs[d].path
            ))
        })?;
    }
    let path_table_len: usize = order
        .iter()
        .map(|&d| 8 + ident[d].len() + ident[d].len() % 2)
        .sum();
    let path_table_len = u32::try_from(path_table_len)
        .map_err(|_| IsoError::TooLarge("the path table exceeds 4 GiB".into()))?;
    Ok(TreeLayout {
        children,
        ident,
        order,
        number,
        parent: dirs.iter().map(|d| d.parent).collect(),
        len,
        lba: vec![0; n],
        path_table_len,
    })
}

// ---------------------------------------------------------------------------------------------
// Structures.

/// A directory record's length for an identifier of `id_len` bytes (ECMA-119 §9.1: 33 bytes,
/// the identifier, a padding byte when its length is even).
fn record_len(id_len: usize) -> usize {
    33 + id_len + (1 - id_len % 2)
}

/// Offsets of `.`, `..` and then each record, none crossing a sector boundary (§6.8.1.1), and
/// the extent's length in whole sectors: `(length, offsets)`.
fn place_records(lens: impl Iterator<Item = usize>) -> (usize, Vec<usize>) {
    let mut pos = 0usize;
    let mut offsets = Vec::new();
    for l in [34usize, 34].into_iter().chain(lens) {
        if pos % SECTOR + l > SECTOR {
            pos = pos.next_multiple_of(SECTOR);
        }
        offsets.push(pos);
        pos += l;
    }
    (pos.next_multiple_of(SECTOR), offsets)
}

/// 32-bit value in both byte orders (ECMA-119 §7.3.3).
fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

/// 16-bit value in both byte orders (§7.2.3).
fn both16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

/// A directory record (§9.1).
fn dir_record(id: &[u8], lba: u32, len: u32, is_dir: bool, date: &IsoDate) -> Vec<u8> {
    let mut r = vec![0u8; record_len(id.len())];
    r[0] = r.len() as u8;
    r[2..10].copy_from_slice(&both32(lba));
    r[10..18].copy_from_slice(&both32(len));
    r[18..25].copy_from_slice(&date.record);
    r[25] = if is_dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1)); // volume sequence number
    r[32] = id.len() as u8;
    r[33..33 + id.len()].copy_from_slice(id);
    r
}

fn directory(t: &TreeLayout, d: usize, files: &[FileNode], date: &IsoDate) -> Vec<u8> {
    let kids = &t.children[d];
    let (len, offsets) = place_records(kids.iter().map(|(id, _)| record_len(id.len())));
    let mut out = vec![0u8; len];
    let parent = t.parent[d];
    let mut records = vec![
        dir_record(&[0], t.lba[d], t.len[d], true, date),
        dir_record(&[1], t.lba[parent], t.len[parent], true, date),
    ];
    for (id, c) in kids {
        records.push(match *c {
            Child::Dir(i) => dir_record(id, t.lba[i], t.len[i], true, date),
            // Sizes were checked against MAX_FILE_SIZE when planned.
            Child::File(i) => dir_record(id, files[i].lba, files[i].size as u32, false, date),
        });
    }
    for (r, off) in records.iter().zip(offsets) {
        out[off..off + r.len()].copy_from_slice(r);
    }
    out
}

/// The L (little-endian) and M (big-endian) path tables (§9.4).
fn path_tables(t: &TreeLayout) -> (Vec<u8>, Vec<u8>) {
    let mut l = Vec::with_capacity(t.path_table_len as usize);
    let mut m = Vec::with_capacity(t.path_table_len as usize);
    for &d in &t.order {
        let id = &t.ident[d];
        let parent = t.number[t.parent[d]];
        for (table, big) in [(&mut l, false), (&mut m, true)] {
            table.push(id.len() as u8);
            table.push(0);
            if big {
                table.extend_from_slice(&t.lba[d].to_be_bytes());
                table.extend_from_slice(&parent.to_be_bytes());
            } else {
                table.extend_from_slice(&t.lba[d].to_le_bytes());
                table.extend_from_slice(&parent.to_le_bytes());
            }
            table.extend_from_slice(id);
            if id.len() % 2 == 1 {
                table.push(0);
            }
        }
    }
    (l, m)
}

/// Dates in the two ISO 9660 forms.
struct IsoDate {
    /// §9.1.5: years since 1900, month, day, hour, minute, second, UTC offset.
    record: [u8; 7],
    /// §8.4.26.1: "YYYYMMDDHHMMSScc" and the UTC offset.
    volume: [u8; 17],
}

impl IsoDate {
    fn new(t: i64) -> Result<Self, IsoError> {
        let (y, mo, d) = civil_from_days(t.div_euclid(86_400));
        let s = t.rem_euclid(86_400);
        let (h, mi, se) = (s / 3600, s / 60 % 60, s % 60);
        if !(1900..=2155).contains(&y) {
            return Err(IsoError::Timestamp(t));
        }
        let record = [
            (y - 1900) as u8,
            mo as u8,
            d as u8,
            h as u8,
            mi as u8,
            se as u8,
            0,
        ];
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{se:02}00");
        let mut volume = [0u8; 17];
        volume[..16].copy_from_slice(text.as_bytes());
        Ok(IsoDate { record, volume })
    }
}

/// "Not specified" date for the expiration and effective fields (§8.4.26.1).
const NO_DATE: [u8; 17] = *b"0000000000000000\0";

/// Fill a text field: ASCII padded with spaces, or UCS-2 big-endian padded with UCS-2 spaces
/// (and a final zero byte when the field has an odd length).
fn text_field(field: &mut [u8], text: &str, joliet: bool) {
    if joliet {
        for pair in field.chunks_mut(2) {
            if pair.len() == 2 {
                pair.copy_from_slice(&[0, b' ']);
            } else {
                pair[0] = 0;
            }
        }
        for (pair, c) in field.chunks_exact_mut(2).zip(text.encode_utf16()) {
            pair.copy_from_slice(&c.to_be_bytes());
        }
    } else {
        field.fill(b' ');
        let n = text.len().min(field.len());
        field[..n].copy_from_slice(&text.as_bytes()[..n]);
    }
}

/// The primary (§8.4) or Joliet supplementary (§8.5 and the Joliet specification) volume
/// descriptor.
fn volume_descriptor(
    joliet: bool,
    label: &str,
    total_sectors: u32,
    t: &TreeLayout,
    path_l: u32,
    path_m: u32,
    date: &IsoDate,
) -> [u8; SECTOR] {
    let mut v = [0u8; SECTOR];
    v[0] = if joliet { 2 } else { 1 };
    v[1..6].copy_from_slice(b"CD001");
    v[6] = 1;
    text_field(&mut v[8..40], "", joliet); // system identifier
    text_field(&mut v[40..72], label, joliet); // volume identifier
    v[80..88].copy_from_slice(&both32(total_sectors));
    if joliet {
        v[88..91].copy_from_slice(b"%/E"); // UCS-2 level 3
    }
    v[120..124].copy_from_slice(&both16(1)); // volume set size
    v[124..128].copy_from_slice(&both16(1)); // volume sequence number
    v[128..132].copy_from_slice(&both16(SECTOR as u16));
    v[132..140].copy_from_slice(&both32(t.path_table_len));
    v[140..144].copy_from_slice(&path_l.to_le_bytes());
    v[148..152].copy_from_slice(&path_m.to_be_bytes());
    let root = dir_record(&[0], t.lba[0], t.len[0], true, date);
    v[156..190].copy_from_slice(&root);
    text_field(&mut v[190..318], "", joliet); // volume set
    text_field(&mut v[318..446], "", joliet); // publisher
    text_field(&mut v[446..574], "", joliet); // data preparer
    text_field(&mut v[574..702], "TSFORGE", joliet); // application
    text_field(&mut v[702..739], "", joliet); // copyright file
    text_field(&mut v[739..776], "", joliet); // abstract file
    text_field(&mut v[776..813], "", joliet); // bibliographic file
    v[813..830].copy_from_slice(&date.volume); // creation
    v[830..847].copy_from_slice(&date.volume); // modification
    v[847..864].copy_from_slice(&NO_DATE); // expiration
    v[864..881].copy_from_slice(&NO_DATE); // effective
    v[881] = 1; // file structure version
    v
}

/// El Torito boot record volume descriptor (§2.0, Figure 7).
fn boot_record(catalog: u32) -> [u8; SECTOR] {
    let mut v = [0u8; SECTOR];
    v[1..6].copy_from_slice(b"CD001");
    v[6] = 1;
    let id = b"EL TORITO SPECIFICATION";
    v[7..7 + id.len()].copy_from_slice(id);
    v[0x47..0x4B].copy_from_slice(&catalog.to_le_bytes());
    v
}

#[derive(Clone, Copy)]
struct BootEntry {
    lba: u32,
    /// Virtual (512-byte) sectors to load.
    sectors: u16,
}

const PLATFORM_X86: u8 = 0x00;
const PLATFORM_EFI: u8 = 0xEF;

/// The boot catalog (§2.1–2.4).
fn boot_catalog(bios: Option<BootEntry>, uefi: Option<BootEntry>) -> [u8; SECTOR] {
    let mut c = [0u8; SECTOR];
    let (first_platform, first) = match (bios, uefi) {
        (Some(b), _) => (PLATFORM_X86, b),
        (None, Some(u)) => (PLATFORM_EFI, u),
        (None, None) => unreachable!("the catalog is written only when booting"),
    };
    // Validation entry (Figure 2): the 16-bit words of the entry sum to zero.
    c[0] = 1;
    c[1] = first_platform;
    c[30] = 0x55;
    c[31] = 0xAA;
    let sum = c[..32].chunks_exact(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    c[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    // Initial/default entry (Figure 3).
    boot_entry(&mut c[32..64], first);
    if let (Some(_), Some(u)) = (bios, uefi) {
        // Final section header (Figure 4) for EFI with one section entry (Figure 5).
        c[64] = 0x91;
        c[65] = PLATFORM_EFI;
        c[66..68].copy_from_slice(&1u16.to_le_bytes());
        boot_entry(&mut c[96..128], u);
    }
    c
}

/// A bootable no-emulation entry, load segment 0 (= 0x7C0), system type 0.
fn boot_entry(e: &mut [u8], b: BootEntry) {
    e[0] = 0x88;
    e[6..8].copy_from_slice(&b.sectors.to_le_bytes());
    e[8..12].copy_from_slice(&b.lba.to_le_bytes());
}

/// The boot file with its boot-info table filled in (see the module documentation).
fn boot_info_table(f: &FileNode) -> Result<Vec<u8>, IsoError> {
    let bad = |reason: String| IsoError::BootImage {
        platform: "BIOS",
        path: f.path.clone(),
        reason,
    };
    if f.size < 64 {
        return Err(bad(format!(
            "{} bytes is too small for a boot-info table (it ends at byte 64)",
            f.size
        )));
    }
    if f.size > MAX_BOOT_INFO_FILE {
        return Err(bad(format!(
            "{} bytes is too large for a boot image with a boot-info table (at most 16 MiB)",
            f.size
        )));
    }
    let read_err = |error| IsoError::Read {
        path: f.path.clone(),
        source_desc: f.source.describe(),
        error,
    };
    let mut bytes = Vec::with_capacity(f.size as usize);
    f.source
        .open()
        .and_then(|r| r.take(f.size + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 != f.size {
        return Err(IsoError::Changed {
            path: f.path.clone(),
            source_desc: f.source.describe(),
            size: f.size,
        });
    }
    let sum = bytes[64..].chunks(4).fold(0u32, |s, w| {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        s.wrapping_add(u32::from_le_bytes(word))
    });
    let len = f.size as u32; // at most 16 MiB, checked above
    bytes[8..12].copy_from_slice(&PVD_SECTOR.to_le_bytes());
    bytes[12..16].copy_from_slice(&f.lba.to_le_bytes());
    bytes[16..20].copy_from_slice(&len.to_le_bytes());
    bytes[20..24].copy_from_slice(&sum.to_le_bytes());
    bytes[24..64].fill(0);
    Ok(bytes)
}

/// The isohybrid MBR (see the module documentation).
fn hybrid_mbr(
    h: &Hybrid,
    opts: &IsoOptions,
    total_sectors: u32,
    bios_lba: Option<u32>,
    efi: Option<(u32, u64)>,
) -> [u8; 512] {
    let mut m = [0u8; 512];
    if let Some(code) = &h.boot_code {
        m[..code.len()].copy_from_slice(code);
    }
    if let Some(lba) = bios_lba {
        m[432..440].copy_from_slice(&(u64::from(lba) * 4).to_le_bytes());
    }
    m[440..444].copy_from_slice(&disk_signature(&opts.label, opts.timestamp).to_le_bytes());
    m[444] = 0;
    m[445] = 0;
    // An MBR counts at most 2^32 512-byte sectors (2 TiB); a larger image gets a partition
    // that stops there (`mbr_partition` saturates).
    let disk_sectors = u64::from(total_sectors) * 4;
    let iso_type = if efi.is_some() { 0x00 } else { 0x17 };
    mbr_partition(&mut m[446..462], true, iso_type, 0, disk_sectors);
    if let Some((lba, size)) = efi {
        mbr_partition(
            &mut m[462..478],
            false,
            0xEF,
            u64::from(lba) * 4,
            size.div_ceil(512),
        );
    }
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

/// One MBR partition entry, CHS computed for isohybrid's 64 heads x 32 sectors geometry.
fn mbr_partition(e: &mut [u8], active: bool, kind: u8, start: u64, len: u64) {
    let start32 = u32::try_from(start).unwrap_or(u32::MAX);
    let len32 = u32::try_from(len).unwrap_or(u32::MAX - start32);
    e[0] = if active { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&chs(u64::from(start32)));
    e[4] = kind;
    e[5..8].copy_from_slice(&chs(u64::from(start32) + u64::from(len32).max(1) - 1));
    e[8..12].copy_from_slice(&start32.to_le_bytes());
    e[12..16].copy_from_slice(&len32.to_le_bytes());
}

fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 64;
    const SECTORS: u64 = 32;
    let (mut c, mut h, mut s) = (
        lba / (HEADS * SECTORS),
        lba / SECTORS % HEADS,
        lba % SECTORS + 1,
    );
    if c > 1023 {
        (c, h, s) = (1023, HEADS - 1, SECTORS);
    }
    [
        h as u8,
        (s as u8) | (((c >> 2) & 0xC0) as u8),
        (c & 0xFF) as u8,
    ]
}

/// A non-zero disk signature that depends only on label and timestamp (FNV-1a).
fn disk_signature(label: &str, timestamp: i64) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in label.bytes().chain(timestamp.to_le_bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dirs: &[&str], files: &[&str]) -> Vec<String> {
        let kid = |name, is_dir| ToName {
            name,
            path: name,
            is_dir,
        };
        let kids: Vec<ToName> = (dirs.iter().map(|n| kid(n, true)))
            .chain(files.iter().map(|n| kid(n, false)))
            .collect();
        primary_names(&kids)
            .unwrap()
            .into_iter()
            .map(|i| String::from_utf8(i.id).unwrap())
            .collect()
    }

    #[test]
    fn primary_names_are_d_characters_and_unique() {
        assert_eq!(
            names(&["efi", "Boot"], &["isolinux.cfg", "README", "a-b.tar.gz"]),
            ["EFI", "BOOT", "ISOLINUX.CFG;1", "README.;1", "A_B_TAR.GZ;1"]
        );
        // Clashes after upper-casing (the name that sorts first keeps the plain form), and a
        // file against a directory of the same name.
        assert_eq!(
            names(&["Docs"], &["docs", "a.txt", "A.TXT"]),
            ["DOCS", "DOCS_1.;1", "A_1.TXT;1", "A.TXT;1"]
        );
        let long = "x".repeat(40) + ".extension";
        let got = names(&[], &[&long]);
        assert_eq!(got[0], format!("{}.EXTENSIO;1", "X".repeat(22)));
    }

    #[test]
    fn joliet_names_refuse_what_joliet_cannot_hold() {
        assert!(joliet_name("ok name (1).txt").is_ok());
        assert!(joliet_name("a:b").is_err());
        assert!(joliet_name("emoji 😀").is_err());
        assert!(joliet_name(&"n".repeat(64)).is_ok());
        assert!(joliet_name(&"n".repeat(65))
            .unwrap_err()
            .contains("65 characters"));
    }

    #[test]
    fn records_never_cross_a_sector() {
        let (len, offsets) = place_records(std::iter::repeat_n(100, 40));
        // 19 records after `.` and `..` fill 2036 bytes of the first sector, 20 the second.
        assert_eq!(len, 3 * SECTOR);
        for (o, l) in offsets.iter().zip([34, 34].into_iter().chain([100; 40])) {
            assert_eq!(o / SECTOR, (o + l - 1) / SECTOR, "record at {o} crosses");
        }
    }

    #[test]
    fn dates() {
        let d = IsoDate::new(0).unwrap();
        assert_eq!(d.record, [70, 1, 1, 0, 0, 0, 0]);
        assert_eq!(&d.volume[..16], b"1970010100000000");
        let d = IsoDate::new(1_700_000_000).unwrap();
        assert_eq!(&d.volume[..16], b"2023111422132000");
        assert!(IsoDate::new(i64::MAX / 2).is_err());
    }

    #[test]
    fn validation_entry_sums_to_zero() {
        let e = BootEntry {
            lba: 40,
            sectors: 4,
        };
        let c = boot_catalog(Some(e), Some(e));
        let sum = c[..32].chunks_exact(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!((c[64], c[65]), (0x91, 0xEF));
    }

    #[test]
    fn chs_saturates() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(64 * 32), [0, 1, 1]);
        assert_eq!(chs(u64::from(u32::MAX)), [63, 32 | 0xC0, 0xFF]);
    }
}
