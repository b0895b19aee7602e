//! Partition layouts: plan (pure arithmetic, checked before anything is written), write, read.
//!
//! GPT follows UEFI 2.10 chapter 5 (protective MBR, primary header at LBA 1, 128 entries of
//! 128 bytes, backup entries and header at the end), written through the `gpt` crate. MBR is
//! the classic four primary entries, written through `mbrman`; extended/logical partitions are
//! not created (an extended entry on an existing disk is listed as such, not walked).
//!
//! Every partition starts on a 1 MiB boundary (what Windows, parted and sgdisk use: right for
//! 512-byte and 4 KiB sectors and for SSD erase blocks). [`plan`] checks the whole layout fits
//! before [`write_table`] touches the disk; `write_table` wipes old signatures first (both GPT
//! copies and the MBR) and writes the new table last, so a disk interrupted halfway shows no
//! table at all rather than a table over half-written data.

use super::target::Disk;
use super::{format_size, MIB};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom, Write};

/// Alignment of every partition start.
pub const ALIGN: u64 = MIB;
/// GPT partition entries (the common value; UEFI requires room for at least 16 KiB of them).
const GPT_ENTRIES: u64 = 128;
const GPT_ENTRY_SIZE: u64 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Gpt,
    Mbr,
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TableKind::Gpt => "gpt",
            TableKind::Mbr => "mbr",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeSpec {
    Bytes(u64),
    /// Percent of the space left after the fixed-size partitions.
    Percent(u32),
    /// Everything left (at most one partition).
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    EfiSystem,
    MicrosoftReserved,
    BasicData,
    WindowsRecovery,
    LinuxFilesystem,
    LinuxSwap,
    /// Any GPT type GUID.
    GptType(String),
    /// Any MBR type byte.
    MbrType(u8),
}

pub const GUID_EFI: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const GUID_MSR: &str = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE";
pub const GUID_BASIC: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
pub const GUID_RECOVERY: &str = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC";
pub const GUID_LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
pub const GUID_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";

const KNOWN_GPT: [(&str, &str); 6] = [
    (GUID_EFI, "EFI system"),
    (GUID_MSR, "Microsoft reserved"),
    (GUID_BASIC, "Microsoft basic data"),
    (GUID_RECOVERY, "Windows recovery"),
    (GUID_LINUX, "Linux filesystem"),
    (GUID_SWAP, "Linux swap"),
];

const KNOWN_MBR: [(u8, &str); 12] = [
    (0x01, "FAT12"),
    (0x04, "FAT16 <32M"),
    (0x05, "Extended"),
    (0x06, "FAT16"),
    (0x07, "NTFS/exFAT"),
    (0x0b, "FAT32"),
    (0x0c, "FAT32 (LBA)"),
    (0x0e, "FAT16 (LBA)"),
    (0x0f, "Extended (LBA)"),
    (0x27, "Windows recovery"),
    (0x82, "Linux swap"),
    (0x83, "Linux"),
];

impl PartKind {
    /// The GPT type GUID (upper case), or an error for MBR-only kinds.
    pub fn gpt_guid(&self) -> Result<String> {
        Ok(match self {
            PartKind::EfiSystem => GUID_EFI.into(),
            PartKind::MicrosoftReserved => GUID_MSR.into(),
            PartKind::BasicData => GUID_BASIC.into(),
            PartKind::WindowsRecovery => GUID_RECOVERY.into(),
            PartKind::LinuxFilesystem => GUID_LINUX.into(),
            PartKind::LinuxSwap => GUID_SWAP.into(),
            PartKind::GptType(g) => match uuid::Uuid::parse_str(g) {
                Ok(u) => u.hyphenated().to_string().to_ascii_uppercase(),
                Err(_) => bail!("invalid GPT type GUID {g:?} (expected e.g. {GUID_BASIC})"),
            },
            PartKind::MbrType(t) => {
                bail!("MBR type 0x{t:02x} cannot be used in a GPT; use a GPT type GUID")
            }
        })
    }

    /// The MBR type byte, or an error for GPT-only kinds.
    pub fn mbr_type(&self) -> Result<u8> {
        Ok(match self {
            PartKind::EfiSystem => 0xef,
            PartKind::BasicData => 0x07,
            PartKind::WindowsRecovery => 0x27,
            PartKind::LinuxFilesystem => 0x83,
            PartKind::LinuxSwap => 0x82,
            PartKind::MbrType(0) => bail!("MBR type 0x00 marks an unused entry"),
            PartKind::MbrType(t) => *t,
            PartKind::MicrosoftReserved => {
                bail!("the Microsoft reserved partition (msr) exists only on GPT disks; drop it or use --table gpt")
            }
            PartKind::GptType(g) => {
                bail!("GPT type {g} cannot be used in an MBR; use an MBR type byte such as 0x0c")
            }
        })
    }

    /// A name for listings: the human name of a known type.
    pub fn describe(&self, table: TableKind) -> String {
        match table {
            TableKind::Gpt => match self.gpt_guid() {
                Ok(g) => gpt_type_name(&g),
                Err(_) => format!("{self:?}"),
            },
            TableKind::Mbr => match self.mbr_type() {
                Ok(t) => mbr_type_name(t),
                Err(_) => format!("{self:?}"),
            },
        }
    }
}

/// "EFI system" for a known GUID, the GUID itself otherwise.
pub fn gpt_type_name(guid: &str) -> String {
    KNOWN_GPT
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(guid))
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| guid.to_ascii_uppercase())
}

/// "FAT32 (LBA) (0x0c)" for a known type byte, "0xNN" otherwise.
pub fn mbr_type_name(t: u8) -> String {
    match KNOWN_MBR.iter().find(|(b, _)| *b == t) {
        Some((_, n)) => format!("{n} (0x{t:02x})"),
        None if t == 0xef => format!("EFI system (0x{t:02x})"),
        None => format!("0x{t:02x}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub name: String,
    pub kind: PartKind,
    pub size: SizeSpec,
    /// MBR: the boot flag. GPT: the "legacy BIOS bootable" attribute (bit 2).
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPartition {
    /// 1-based.
    pub number: u32,
    /// Bytes from the start of the disk.
    pub start: u64,
    /// Bytes.
    pub len: u64,
    pub spec: PartitionSpec,
}

/// Bytes usable for partitions: `[first, end)`.
fn usable(disk_size: u64, sector_size: u64, table: TableKind) -> Result<(u64, u64)> {
    if sector_size < 512 || !sector_size.is_power_of_two() || ALIGN % sector_size != 0 {
        bail!("unsupported sector size {sector_size} (512 or 4096 expected)");
    }
    let end = match table {
        TableKind::Gpt => {
            // Backup entries + backup header at the end of the disk.
            let entry_sectors = (GPT_ENTRIES * GPT_ENTRY_SIZE).div_ceil(sector_size);
            let reserved = (entry_sectors + 1) * sector_size;
            let last = (disk_size / sector_size) * sector_size;
            last.saturating_sub(reserved)
        }
        TableKind::Mbr => (disk_size / sector_size) * sector_size,
    };
    Ok((ALIGN, end))
}

fn label(i: usize, p: &PartitionSpec) -> String {
    if p.name.is_empty() {
        format!("partition {}", i + 1)
    } else {
        format!("partition {} ({})", i + 1, p.name)
    }
}

/// Lay out `parts` in order on a disk of `disk_size` bytes. Starts are aligned to 1 MiB, sizes
/// rounded up to whole sectors; `Percent` shares and `Rest` divide what the fixed sizes leave
/// (rounded down to 1 MiB, so the next start stays aligned). Fails, naming the partition and
/// the shortfall, when the layout does not fit; nothing is written here.
pub fn plan(
    disk_size: u64,
    sector_size: u64,
    table: TableKind,
    parts: &[PartitionSpec],
) -> Result<Vec<PlannedPartition>> {
    let (first, end) = usable(disk_size, sector_size, table)?;
    if parts.is_empty() {
        bail!("no partitions given");
    }
    if table == TableKind::Mbr && parts.len() > 4 {
        bail!(
            "an MBR holds at most 4 primary partitions and {} were given (extended/logical \
             partitions are not supported); use --table gpt or fewer partitions",
            parts.len()
        );
    }
    if parts.len() as u64 > GPT_ENTRIES {
        bail!("a GPT holds at most {GPT_ENTRIES} partitions");
    }
    let rests = parts.iter().filter(|p| p.size == SizeSpec::Rest).count();
    if rests > 1 {
        bail!("only one partition may have size=rest");
    }
    if table == TableKind::Mbr && parts.iter().filter(|p| p.active).count() > 1 {
        bail!("only one MBR partition may be active (boot flag)");
    }
    let mut percent_total = 0u32;
    for (i, p) in parts.iter().enumerate() {
        match table {
            TableKind::Gpt => {
                p.kind.gpt_guid().with_context(|| label(i, p))?;
                if p.name.encode_utf16().count() > 36 {
                    bail!(
                        "{}: GPT names hold at most 36 UTF-16 characters",
                        label(i, p)
                    );
                }
            }
            TableKind::Mbr => {
                p.kind.mbr_type().with_context(|| label(i, p))?;
            }
        }
        match p.size {
            SizeSpec::Bytes(0) => bail!("{}: size is 0", label(i, p)),
            SizeSpec::Percent(n) if n == 0 || n > 100 => {
                bail!("{}: percentage {n}% is outside 1..100", label(i, p))
            }
            SizeSpec::Percent(n) => percent_total += n,
            _ => {}
        }
    }
    if percent_total > 100 {
        bail!("the percentages add up to {percent_total}%, more than 100%");
    }
    let round_up = |n: u64, to: u64| n.div_ceil(to).checked_mul(to);
    // Space for the fixed-size partitions, each rounded up to the alignment (the next one
    // starts on the next boundary).
    let mut fixed = 0u64;
    for p in parts {
        if let SizeSpec::Bytes(n) = p.size {
            fixed = round_up(n, ALIGN)
                .and_then(|r| fixed.checked_add(r))
                .unwrap_or(u64::MAX);
        }
    }
    let aligned_end = end - end % ALIGN;
    let flexible = aligned_end.saturating_sub(first).saturating_sub(fixed);

    let mut out = Vec::with_capacity(parts.len());
    let mut pos = first;
    let mut percent_used = 0u64;
    for (i, p) in parts.iter().enumerate() {
        let start = round_up(pos, ALIGN).unwrap_or(u64::MAX);
        let len = match p.size {
            SizeSpec::Bytes(n) => round_up(n, sector_size).unwrap_or(u64::MAX),
            SizeSpec::Percent(n) => {
                let share = (u128::from(flexible) * u128::from(n) / 100) as u64;
                let share = share - share % ALIGN;
                percent_used += share;
                if share == 0 {
                    bail!(
                        "{}: {n}% of the {} left after the fixed-size partitions is less \
                         than 1 MiB",
                        label(i, p),
                        format_size(flexible)
                    );
                }
                share
            }
            SizeSpec::Rest => {
                // Everything after the other partitions, up to the aligned end.
                let after: u64 = parts[i + 1..]
                    .iter()
                    .map(|q| match q.size {
                        SizeSpec::Bytes(n) => round_up(n, ALIGN).unwrap_or(u64::MAX),
                        SizeSpec::Percent(n) => {
                            let s = (u128::from(flexible) * u128::from(n) / 100) as u64;
                            s - s % ALIGN
                        }
                        SizeSpec::Rest => 0,
                    })
                    .fold(0u64, |a, b| a.saturating_add(b));
                let avail = aligned_end.saturating_sub(start).saturating_sub(after);
                if avail < ALIGN {
                    bail!(
                        "{} (size=rest) gets no space: the partitions before and after it \
                         already use the disk ({} usable); make them smaller or use a larger disk",
                        label(i, p),
                        format_size(aligned_end.saturating_sub(first))
                    );
                }
                avail
            }
        };
        let stop = start.saturating_add(len);
        if stop > end {
            bail!(
                "{} does not fit: it needs {} from {} but the usable space of this {} disk \
                 ends at {}: {} short (disk is {})",
                label(i, p),
                format_size(len),
                format_size(start),
                table,
                format_size(end),
                format_size(stop.saturating_sub(end)),
                format_size(disk_size)
            );
        }
        if table == TableKind::Mbr && stop / sector_size > u64::from(u32::MAX) {
            bail!(
                "{} ends beyond what an MBR can address ({} with {}-byte sectors); use --table gpt",
                label(i, p),
                format_size(u64::from(u32::MAX) * sector_size),
                sector_size
            );
        }
        out.push(PlannedPartition {
            number: i as u32 + 1,
            start,
            len,
            spec: p.clone(),
        });
        pos = stop;
    }
    let _ = percent_used;
    Ok(out)
}

/// Check a plan's invariants (also for plans not made by [`plan`]): sector-aligned, inside the
/// usable area, no overlaps.
fn check_plan(disk: &Disk, table: TableKind, parts: &[PlannedPartition]) -> Result<()> {
    let ss = disk.sector_size();
    let (first, end) = usable(disk.size(), ss, table)?;
    let mut sorted: Vec<&PlannedPartition> = parts.iter().collect();
    sorted.sort_by_key(|p| p.start);
    let mut prev_end = first;
    for p in sorted {
        let stop = p.start.saturating_add(p.len);
        if p.start % ss != 0 || p.len % ss != 0 || p.len == 0 {
            bail!(
                "partition {}: start and size must be whole sectors",
                p.number
            );
        }
        if p.start < prev_end || stop > end {
            bail!(
                "partition {} ({}..{}) overlaps another partition or the table area of {}",
                p.number,
                p.start,
                stop,
                disk.path().display()
            );
        }
        prev_end = stop;
    }
    Ok(())
}

/// Write a new partition table for `parts` (from [`plan`]). Order: wipe the old MBR/GPT areas
/// at both ends and the first MiB of each new partition (stale file-system signatures), sync,
/// then write the table, then sync again.
pub fn write_table(disk: &mut Disk, table: TableKind, parts: &[PlannedPartition]) -> Result<()> {
    if !disk.is_writable() {
        bail!("{} was opened read-only", disk.path().display());
    }
    check_plan(disk, table, parts)?;
    let ss = disk.sector_size();
    let size = disk.size();
    let path = disk.path().display().to_string();

    // 1. Wipe: the first MiB (MBR, primary GPT), the last MiB (backup GPT), the start of each
    //    new partition. Zeros are written for real.
    let mut whole = disk.whole()?;
    let head = size.min(ALIGN);
    whole
        .write_zeros(0, head)
        .with_context(|| format!("wiping the start of {path}"))?;
    let tail = size.min(ALIGN);
    whole
        .write_zeros(size - tail, tail)
        .with_context(|| format!("wiping the end of {path}"))?;
    for p in parts {
        whole
            .write_zeros(p.start, p.len.min(ALIGN))
            .with_context(|| format!("wiping the start of partition {} on {path}", p.number))?;
    }
    whole
        .flush()
        .with_context(|| format!("writing to {path}"))?;
    disk.sync()?;

    // 2. The table.
    match table {
        TableKind::Gpt => write_gpt(&mut whole, ss, size, parts)
            .with_context(|| format!("writing the GPT of {path}"))?,
        TableKind::Mbr => write_mbr(&mut whole, ss, parts)
            .with_context(|| format!("writing the MBR of {path}"))?,
    }
    whole.finish().with_context(|| format!("writing {path}"))?;
    disk.sync()
}

fn lb_size(ss: u64) -> Result<gpt::disk::LogicalBlockSize> {
    Ok(match ss {
        512 => gpt::disk::LogicalBlockSize::Lb512,
        4096 => gpt::disk::LogicalBlockSize::Lb4096,
        _ => bail!("GPT with {ss}-byte sectors is not supported (512 or 4096)"),
    })
}

fn write_gpt(
    dev: &mut super::DiskRange,
    ss: u64,
    size: u64,
    parts: &[PlannedPartition],
) -> Result<()> {
    let total = size / ss;
    // Protective MBR first (LBA 0), then headers and entries.
    let pmbr = gpt::mbr::ProtectiveMBR::with_lb_size(
        u32::try_from(total.saturating_sub(1)).unwrap_or(u32::MAX),
    );
    pmbr.overwrite_lba0(&mut *dev)
        .map_err(|e| anyhow::anyhow!("protective MBR: {e}"))?;
    let mut g = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb_size(ss)?)
        .create_from_device(&mut *dev, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for p in parts {
        let guid = p.spec.kind.gpt_guid()?;
        let ty = gpt::partition_types::Type {
            guid: uuid::Uuid::parse_str(&guid).context("partition type GUID")?,
            os: gpt::partition_types::OperatingSystem::None,
        };
        let flags = if p.spec.active { 1u64 << 2 } else { 0 };
        g.add_partition_at(&p.spec.name, p.number, p.start / ss, p.len / ss, ty, flags)
            .map_err(|e| anyhow::anyhow!("adding partition {}: {e}", p.number))?;
    }
    g.write().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn write_mbr(dev: &mut super::DiskRange, ss: u64, parts: &[PlannedPartition]) -> Result<()> {
    let sig = *uuid::Uuid::new_v4().as_bytes();
    let mut mbr = mbrman::MBR::new_from(&mut *dev, ss as u32, [sig[0], sig[1], sig[2], sig[3]])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for p in parts {
        let lba = u32::try_from(p.start / ss).context("partition start beyond the MBR limit")?;
        let sectors = u32::try_from(p.len / ss).context("partition size beyond the MBR limit")?;
        let last = lba + (sectors - 1);
        // The usual 255 heads × 63 sectors geometry; past cylinder 1023, the "use LBA" marker.
        let chs = |l: u32| {
            mbrman::CHS::from_lba_exact(l, 1023, 255, 63).unwrap_or(mbrman::CHS::new(1023, 254, 63))
        };
        mbr[p.number as usize] = mbrman::MBRPartitionEntry {
            boot: if p.spec.active {
                mbrman::BOOT_ACTIVE
            } else {
                mbrman::BOOT_INACTIVE
            },
            first_chs: chs(lba),
            sys: p.spec.kind.mbr_type()?,
            last_chs: chs(last),
            starting_lba: lba,
            sectors,
        };
    }
    mbr.write_into(&mut *dev)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub number: u32,
    pub start: u64,
    pub len: u64,
    /// Human name of a known type, else the GUID (GPT) or `0xNN` (MBR).
    pub kind: String,
    /// GPT partition name (empty on MBR).
    pub name: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    pub kind: TableKind,
    pub disk_guid: Option<String>,
    pub partitions: Vec<PartitionInfo>,
}

/// Read the partition table. `Ok(None)`: no table (no MBR signature, no GPT header). A table
/// that is present but inconsistent (bad checksums in both GPT headers, entries outside the
/// disk, overlapping entries) is an error saying what is wrong.
pub fn read_table(disk: &Disk) -> Result<Option<TableInfo>> {
    let ss = disk.sector_size();
    let path = disk.path().display().to_string();
    if disk.size() < 2 * ss {
        return Ok(None);
    }
    let mut dev = disk.whole()?;
    let mut lba0 = vec![0u8; ss as usize];
    let mut lba1 = vec![0u8; ss as usize];
    dev.read_exact(&mut lba0)
        .with_context(|| format!("reading the MBR of {path}"))?;
    dev.read_exact(&mut lba1)
        .with_context(|| format!("reading LBA 1 of {path}"))?;
    let has_sig = lba0[510] == 0x55 && lba0[511] == 0xaa;
    let entries: Vec<[u8; 16]> = (0..4)
        .map(|i| {
            let mut e = [0u8; 16];
            e.copy_from_slice(&lba0[446 + 16 * i..462 + 16 * i]);
            e
        })
        .collect();
    let protective = has_sig && entries.iter().any(|e| e[4] == 0xee);
    let gpt_sig = &lba1[..8] == b"EFI PART";
    if protective || (gpt_sig && !has_sig) {
        return read_gpt(disk, dev).map(Some);
    }
    if !has_sig {
        return Ok(None);
    }
    // A FAT/NTFS boot sector (a "superfloppy") also ends in 55 AA; its bytes 446.. are boot
    // code, not entries. Treat a sector whose entries are not all well-formed as no table only
    // when it looks like a boot sector (jump instruction, file-system name).
    let looks_like_vbr = (lba0[0] == 0xeb || lba0[0] == 0xe9)
        && (&lba0[3..11] == b"NTFS    "
            || &lba0[54..59] == b"FAT12"
            || &lba0[54..59] == b"FAT16"
            || &lba0[82..87] == b"FAT32"
            || &lba0[3..11] == b"EXFAT   ");
    let total = disk.size() / ss;
    let mut parts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ty = e[4];
        let start = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        let sectors = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
        if ty == 0 && sectors == 0 {
            continue;
        }
        let bad =
            |why: &str| anyhow::anyhow!("the MBR of {path} is corrupt: entry {} {why}", i + 1);
        if looks_like_vbr && (e[0] & 0x7f != 0 || start == 0 || sectors == 0) {
            return Ok(None);
        }
        if e[0] != 0 && e[0] != 0x80 {
            return Err(bad(&format!("has an invalid boot flag 0x{:02x}", e[0])));
        }
        if ty == 0 || sectors == 0 || start == 0 {
            return Err(bad("is half empty (type, start or size is 0)"));
        }
        if start + sectors > total {
            return Err(bad(&format!(
                "ends at sector {} but the disk has {total} sectors (truncated image?)",
                start + sectors
            )));
        }
        parts.push(PartitionInfo {
            number: i as u32 + 1,
            start: start * ss,
            len: sectors * ss,
            kind: mbr_type_name(ty),
            name: String::new(),
            active: e[0] == 0x80,
        });
    }
    check_overlaps(&parts).map_err(|e| anyhow::anyhow!("the MBR of {path} is corrupt: {e}"))?;
    Ok(Some(TableInfo {
        kind: TableKind::Mbr,
        disk_guid: Some(format!(
            "{:08x}",
            u32::from_le_bytes([lba0[440], lba0[441], lba0[442], lba0[443]])
        )),
        partitions: parts,
    }))
}

fn check_overlaps(parts: &[PartitionInfo]) -> Result<()> {
    let mut sorted: Vec<&PartitionInfo> = parts.iter().collect();
    sorted.sort_by_key(|p| p.start);
    for w in sorted.windows(2) {
        if w[0].start + w[0].len > w[1].start {
            bail!(
                "partitions {} and {} overlap ({}..{} and {}..{})",
                w[0].number,
                w[1].number,
                w[0].start,
                w[0].start + w[0].len,
                w[1].start,
                w[1].start + w[1].len
            );
        }
    }
    Ok(())
}

fn read_gpt(disk: &Disk, mut dev: super::DiskRange) -> Result<TableInfo> {
    let ss = disk.sector_size();
    let path = disk.path().display().to_string();
    dev.seek(SeekFrom::Start(0))?;
    let g = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(lb_size(ss)?)
        .open_from_device(&mut dev)
        .map_err(|e| {
            anyhow::anyhow!(
                "{path} has a protective MBR but no readable GPT ({e}); both GPT headers are \
                 missing or corrupt (wipe it and partition again, or repair with gdisk)"
            )
        })?;
    let total = disk.size() / ss;
    let header = g.header();
    if header.first_usable > header.last_usable || header.last_usable >= total {
        bail!(
            "the GPT of {path} is corrupt: usable sectors {}..{} do not fit a disk of {total} \
             sectors (truncated image?)",
            header.first_usable,
            header.last_usable
        );
    }
    let mut parts = Vec::new();
    for (&number, p) in g.partitions() {
        if !p.is_used() {
            continue;
        }
        if p.first_lba > p.last_lba
            || p.first_lba < header.first_usable
            || p.last_lba > header.last_usable
        {
            bail!(
                "the GPT of {path} is corrupt: partition {number} spans sectors {}..{}, outside \
                 the usable {}..{}",
                p.first_lba,
                p.last_lba,
                header.first_usable,
                header.last_usable
            );
        }
        let guid = p.part_type_guid.guid.hyphenated().to_string();
        parts.push(PartitionInfo {
            number,
            start: p.first_lba * ss,
            len: (p.last_lba - p.first_lba + 1) * ss,
            kind: gpt_type_name(&guid),
            name: p.name.clone(),
            active: p.flags & (1 << 2) != 0,
        });
    }
    check_overlaps(&parts).map_err(|e| anyhow::anyhow!("the GPT of {path} is corrupt: {e}"))?;
    Ok(TableInfo {
        kind: TableKind::Gpt,
        disk_guid: Some(g.guid().hyphenated().to_string().to_ascii_uppercase()),
        partitions: parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{GIB, TIB};

    fn spec(name: &str, kind: PartKind, size: SizeSpec) -> PartitionSpec {
        PartitionSpec {
            name: name.into(),
            kind,
            size,
            active: false,
        }
    }

    fn windows() -> Vec<PartitionSpec> {
        vec![
            spec("EFI", PartKind::EfiSystem, SizeSpec::Bytes(260 * MIB)),
            spec(
                "MSR",
                PartKind::MicrosoftReserved,
                SizeSpec::Bytes(16 * MIB),
            ),
            spec("Windows", PartKind::BasicData, SizeSpec::Rest),
            spec(
                "Recovery",
                PartKind::WindowsRecovery,
                SizeSpec::Bytes(500 * MIB),
            ),
        ]
    }

    fn invariants(disk_size: u64, ss: u64, table: TableKind, plan: &[PlannedPartition]) {
        let (first, end) = usable(disk_size, ss, table).unwrap();
        let mut prev = first;
        for p in plan {
            assert_eq!(p.start % ALIGN, 0, "{p:?} not aligned");
            assert_eq!(p.len % ss, 0);
            assert!(p.start >= prev && p.start + p.len <= end, "{p:?}");
            prev = p.start + p.len;
        }
    }

    #[test]
    fn gpt_windows_layout() {
        let p = plan(4 * GIB, 512, TableKind::Gpt, &windows()).unwrap();
        invariants(4 * GIB, 512, TableKind::Gpt, &p);
        assert_eq!(p[0].start, MIB);
        assert_eq!(p[0].len, 260 * MIB);
        assert_eq!(p[1].start, 261 * MIB);
        assert_eq!(p[2].start, 277 * MIB);
        // Rest leaves room for the recovery partition and ends on a MiB boundary.
        assert_eq!(p[3].len, 500 * MIB);
        assert_eq!(p[3].start, p[2].start + p[2].len);
        assert!(p[3].start + p[3].len <= 4 * GIB - 33 * 512);
        assert_eq!(p[2].len, 4 * GIB - MIB - 277 * MIB - 500 * MIB);
    }

    #[test]
    fn four_k_sectors() {
        let p = plan(4 * GIB, 4096, TableKind::Gpt, &windows()).unwrap();
        invariants(4 * GIB, 4096, TableKind::Gpt, &p);
        // Backup GPT with 4 KiB sectors: 4 entry sectors + header = 20 KiB at the end.
        assert!(p[3].start + p[3].len <= 4 * GIB - 5 * 4096);
        let odd = plan(
            64 * MIB,
            4096,
            TableKind::Gpt,
            &[spec("x", PartKind::BasicData, SizeSpec::Bytes(1000))],
        )
        .unwrap();
        assert_eq!(odd[0].len, 4096, "rounded up to a whole sector");
    }

    #[test]
    fn percent_and_rest() {
        let parts = vec![
            spec("a", PartKind::BasicData, SizeSpec::Bytes(100 * MIB)),
            spec("b", PartKind::BasicData, SizeSpec::Percent(50)),
            spec("c", PartKind::BasicData, SizeSpec::Percent(25)),
            spec("d", PartKind::BasicData, SizeSpec::Rest),
        ];
        let size = GIB + 2 * MIB;
        let p = plan(size, 512, TableKind::Mbr, &parts).unwrap();
        invariants(size, 512, TableKind::Mbr, &p);
        let flexible = size - MIB - 100 * MIB; // usable from 1 MiB to the (aligned) end
        assert_eq!(p[1].len, (flexible / 2) - (flexible / 2) % MIB);
        assert_eq!(p[2].len, (flexible / 4) - (flexible / 4) % MIB);
        assert_eq!(p[3].start + p[3].len, size - size % MIB);
        // Percentages over 100 and two rests are refused.
        let over = [
            spec("a", PartKind::BasicData, SizeSpec::Percent(60)),
            spec("b", PartKind::BasicData, SizeSpec::Percent(50)),
        ];
        assert!(plan(GIB, 512, TableKind::Gpt, &over).is_err());
        let two = [
            spec("a", PartKind::BasicData, SizeSpec::Rest),
            spec("b", PartKind::BasicData, SizeSpec::Rest),
        ];
        assert!(plan(GIB, 512, TableKind::Gpt, &two).is_err());
    }

    #[test]
    fn too_small_names_the_partition_and_shortfall() {
        let err = plan(200 * MIB, 512, TableKind::Gpt, &windows())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("partition 2 (MSR)") || err.contains("partition 1 (EFI)"),
            "{err}"
        );
        let parts = [
            spec("EFI", PartKind::EfiSystem, SizeSpec::Bytes(100 * MIB)),
            spec("big", PartKind::BasicData, SizeSpec::Bytes(GIB)),
        ];
        let err = plan(512 * MIB, 512, TableKind::Gpt, &parts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("partition 2 (big) does not fit"), "{err}");
        assert!(err.contains("short"), "{err}");
    }

    #[test]
    fn mbr_limits() {
        let five: Vec<_> = (0..5)
            .map(|i| spec(&i.to_string(), PartKind::BasicData, SizeSpec::Bytes(MIB)))
            .collect();
        assert!(plan(GIB, 512, TableKind::Mbr, &five)
            .unwrap_err()
            .to_string()
            .contains("at most 4"));
        let big = [spec("x", PartKind::BasicData, SizeSpec::Rest)];
        assert!(plan(3 * TIB, 512, TableKind::Mbr, &big)
            .unwrap_err()
            .to_string()
            .contains("--table gpt"));
        let msr = [spec("x", PartKind::MicrosoftReserved, SizeSpec::Rest)];
        assert!(plan(GIB, 512, TableKind::Mbr, &msr).is_err());
        let ok = plan(3 * TIB, 4096, TableKind::Mbr, &big).unwrap();
        assert_eq!(ok.len(), 1, "4 KiB sectors let an MBR reach 16 TiB");
    }
}
