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
    /// GPT: a header that failed its checks while the other copy was used, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// Read the partition table. `Ok(None)`: no table (no MBR signature, no GPT header). A table
/// that is present but damaged (both GPT headers fail their checks, see `check_gpt_header`;
/// entries outside the disk, overlapping entries) is an error saying what is wrong; never a
/// panic, whatever the bytes.
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
        damaged: None,
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

/// Partition entry arrays larger than this are refused (8192 entries of 128 bytes; tools
/// write 128 entries, 16 KiB). Bounds what a header can make the reader allocate and read.
pub const GPT_MAX_ENTRY_BYTES: u64 = MIB;

/// The fields of a GPT header that passed [`check_gpt_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GptHeader {
    first_usable: u64,
    last_usable: u64,
    entries_lba: u64,
    entries: u32,
}

/// Read and check the GPT header at `lba` (UEFI 2.10 §5.3.2) before the `gpt` crate sees it:
/// signature, revision 1.0, header size 92 (the crate's CRC covers 92 bytes), header CRC,
/// its own LBA, usable range inside the disk, 128-byte entries (the crate asserts that size),
/// at most [`GPT_MAX_ENTRY_BYTES`] of entries, the entry array inside the disk and outside
/// the usable range, and the entry array's CRC. `Ok(None)`: no GPT signature there;
/// `Err(why)`: a header that is there but damaged or unsupported.
fn check_gpt_header(
    dev: &mut super::DiskRange,
    ss: u64,
    total: u64,
    lba: u64,
) -> std::result::Result<Option<GptHeader>, String> {
    let mut sector = vec![0u8; ss as usize];
    dev.seek(SeekFrom::Start(lba * ss))
        .and_then(|_| dev.read_exact(&mut sector))
        .map_err(|e| format!("cannot be read ({e})"))?;
    if &sector[..8] != b"EFI PART" {
        return Ok(None);
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([sector[o], sector[o + 1], sector[o + 2], sector[o + 3]]);
    let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
    let revision = u32_at(8);
    if revision != 0x0001_0000 {
        return Err(format!(
            "revision {}.{} is not 1.0",
            revision >> 16,
            revision & 0xffff
        ));
    }
    let header_size = u64::from(u32_at(12));
    if !(92..=ss).contains(&header_size) {
        return Err(format!("header size {header_size} is outside 92..{ss}"));
    }
    let mut copy = sector[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != u32_at(16) {
        return Err("header checksum (CRC32) does not match".into());
    }
    if header_size != 92 {
        return Err(format!(
            "header size {header_size} is not supported (every partitioning tool writes 92)"
        ));
    }
    let my_lba = u64_at(24);
    if my_lba != lba {
        return Err(format!(
            "says it is at sector {my_lba}, but it is at sector {lba}"
        ));
    }
    let (first_usable, last_usable) = (u64_at(40), u64_at(48));
    if first_usable > last_usable || last_usable >= total || first_usable < 2 {
        return Err(format!(
            "usable sectors {first_usable}..{last_usable} do not fit a disk of {total} sectors \
             (truncated image?)"
        ));
    }
    if (first_usable..=last_usable).contains(&lba) {
        return Err(format!(
            "usable sectors {first_usable}..{last_usable} include the header itself"
        ));
    }
    let (entries_lba, entries, entry_size) = (u64_at(72), u32_at(80), u32_at(84));
    if entry_size != 128 {
        let valid = entry_size >= 128 && entry_size.is_power_of_two();
        return Err(if valid {
            format!("partition entry size {entry_size} is not supported (128 expected)")
        } else {
            format!("partition entry size {entry_size} is invalid (128 × 2^n expected)")
        });
    }
    let array_bytes = u64::from(entries) * 128;
    if array_bytes > GPT_MAX_ENTRY_BYTES {
        return Err(format!(
            "{entries} partition entries ({}) are more than the {} this reader accepts",
            format_size(array_bytes),
            format_size(GPT_MAX_ENTRY_BYTES)
        ));
    }
    let array_sectors = array_bytes.div_ceil(ss);
    let array_end = entries_lba.saturating_add(array_sectors);
    let overlaps = |lo: u64, hi: u64| entries_lba < hi && lo < array_end;
    if entries_lba == 0
        || array_end > total
        || overlaps(lba, lba + 1)
        || overlaps(first_usable, last_usable + 1)
    {
        return Err(format!(
            "the partition entries at sectors {entries_lba}..{array_end} overlap the header, the \
             usable sectors {first_usable}..{last_usable} or the end of the disk ({total} sectors)"
        ));
    }
    let mut array = vec![0u8; array_bytes as usize];
    dev.seek(SeekFrom::Start(entries_lba * ss))
        .and_then(|_| dev.read_exact(&mut array))
        .map_err(|e| format!("its partition entries cannot be read ({e})"))?;
    if crc32fast::hash(&array) != u32_at(88) {
        return Err("partition entries checksum (CRC32) does not match".into());
    }
    for (i, e) in array.chunks_exact(128).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue; // unused entry
        }
        let first = u64::from_le_bytes(e[32..40].try_into().unwrap_or_default());
        let last = u64::from_le_bytes(e[40..48].try_into().unwrap_or_default());
        if first > last || first < first_usable || last > last_usable {
            return Err(format!(
                "partition {} spans sectors {first}..{last}, outside the usable \
                 {first_usable}..{last_usable}",
                i + 1
            ));
        }
    }
    Ok(Some(GptHeader {
        first_usable,
        last_usable,
        entries_lba,
        entries,
    }))
}

/// A disk range that reads zeros in one byte range: hides a damaged GPT header from the `gpt`
/// crate, so it reads the other copy. Writes are refused (reading only).
#[derive(Debug)]
struct Hidden<'a> {
    inner: &'a mut super::DiskRange,
    start: u64,
    end: u64,
}

impl Read for Hidden<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.inner.stream_position()?;
        let n = self.inner.read(buf)?;
        let (lo, hi) = (pos.max(self.start), (pos + n as u64).min(self.end));
        if lo < hi {
            buf[(lo - pos) as usize..(hi - pos) as usize].fill(0);
        }
        Ok(n)
    }
}

impl Write for Hidden<'_> {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "reading a partition table only",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Hidden<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

fn read_gpt(disk: &Disk, mut dev: super::DiskRange) -> Result<TableInfo> {
    let ss = disk.sector_size();
    let path = disk.path().display().to_string();
    let total = disk.size() / ss;
    // Both headers are checked here first: the crate trusts a header whose CRC matches
    // (an entry size other than 128 panics it, a huge entry count makes it allocate and read
    // gigabytes), so it only ever sees headers that passed.
    let primary = check_gpt_header(&mut dev, ss, total, 1);
    let backup = if total >= 3 {
        check_gpt_header(&mut dev, ss, total, total - 1)
    } else {
        Ok(None)
    };
    let hide = match (&primary, &backup) {
        (Ok(Some(_)), _) => None,
        (_, Ok(Some(_))) => Some((ss, 2 * ss)),
        _ => {
            let why = |r: &std::result::Result<Option<GptHeader>, String>| match r {
                Ok(_) => "missing".to_string(),
                Err(e) => e.clone(),
            };
            bail!(
                "{path} has a damaged GPT: primary header: {}; backup header: {} (repartition \
                 the disk, or repair it with gdisk)",
                why(&primary),
                why(&backup)
            );
        }
    };
    dev.seek(SeekFrom::Start(0))?;
    let (start, end) = hide.unwrap_or((0, 0));
    let device = Hidden {
        inner: &mut dev,
        start,
        end,
    };
    let g = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(lb_size(ss)?)
        .open_from_device(device)
        .map_err(|e| anyhow::anyhow!("{path} has a damaged GPT: {e}"))?;
    let header = g.header();
    let checked = match (&primary, &backup) {
        (Ok(Some(h)), _) | (_, Ok(Some(h))) => *h,
        _ => bail!("{path}: no GPT header passed the checks"),
    };
    let seen = GptHeader {
        first_usable: header.first_usable,
        last_usable: header.last_usable,
        entries_lba: header.part_start,
        entries: header.num_parts,
    };
    if seen != checked {
        bail!("{path}: the GPT header read ({seen:?}) is not the one checked ({checked:?})");
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
    let damaged = match (&primary, &backup) {
        (Err(e), _) => Some(format!("primary GPT header: {e}; the backup was used")),
        (_, Err(e)) => Some(format!("backup GPT header: {e}")),
        (Ok(None), _) => Some("primary GPT header missing; the backup was used".into()),
        (_, Ok(None)) => Some("backup GPT header missing".into()),
        _ => None,
    };
    Ok(TableInfo {
        kind: TableKind::Gpt,
        damaged,
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

    /// A 64 MiB image file (512-byte sectors) with a valid two-partition GPT written by
    /// `write_table`, and its partitions as read back.
    fn gpt_image(dir: &std::path::Path) -> (std::path::PathBuf, Vec<PartitionInfo>) {
        let path = dir.join("gpt.img");
        let mut disk = Disk::create_image(&path, 64 * MIB).unwrap();
        let parts = [
            spec("EFI", PartKind::EfiSystem, SizeSpec::Bytes(10 * MIB)),
            spec("data", PartKind::BasicData, SizeSpec::Rest),
        ];
        let planned = plan(disk.size(), 512, TableKind::Gpt, &parts).unwrap();
        write_table(&mut disk, TableKind::Gpt, &planned).unwrap();
        let t = read_table(&Disk::open(&path, false).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(t.damaged, None);
        (path, t.partitions)
    }

    /// Change the GPT header at `lba` with `f` (given the 512-byte sector), then give it a
    /// valid CRC again, as a hostile or buggy tool would.
    fn patch_header(path: &std::path::Path, lba: u64, f: &dyn Fn(&mut [u8])) {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut h = [0u8; 512];
        file.seek(SeekFrom::Start(lba * 512)).unwrap();
        file.read_exact(&mut h).unwrap();
        f(&mut h);
        let size = u32::from_le_bytes(h[12..16].try_into().unwrap()).clamp(92, 512) as usize;
        h[16..20].fill(0);
        let crc = crc32fast::hash(&h[..size]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        file.seek(SeekFrom::Start(lba * 512)).unwrap();
        file.write_all(&h).unwrap();
    }

    fn put32(h: &mut [u8], at: usize, v: u32) {
        h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(h: &mut [u8], at: usize, v: u64) {
        h[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Headers with valid CRCs and a bad field: with only the primary damaged the backup is
    /// read (and the damage reported); with both damaged `read_table` is an error naming the
    /// field. Never a panic (the `gpt` crate asserts a 128-byte entry size) and never a huge
    /// allocation (an entry count of 2^32).
    #[test]
    fn damaged_gpt_headers_are_refused_or_the_backup_is_used() {
        let total = 64 * MIB / 512;
        type Patch = Box<dyn Fn(&mut [u8])>;
        let cases: Vec<(&str, Patch, &str)> = vec![
            (
                "entry size 0",
                Box::new(|h| put32(h, 84, 0)),
                "entry size 0 is invalid",
            ),
            (
                "entry size 64",
                Box::new(|h| put32(h, 84, 64)),
                "entry size 64 is invalid",
            ),
            (
                "entry size 129",
                Box::new(|h| put32(h, 84, 129)),
                "entry size 129 is invalid",
            ),
            (
                "entry size 256",
                Box::new(|h| put32(h, 84, 256)),
                "256 is not supported",
            ),
            (
                "entry size 2^30",
                Box::new(|h| put32(h, 84, 1 << 30)),
                "1073741824 is not supported",
            ),
            (
                "entry size max",
                Box::new(|h| put32(h, 84, u32::MAX)),
                "is invalid",
            ),
            (
                "2^32-1 entries",
                Box::new(|h| put32(h, 80, u32::MAX)),
                "more than the 1 MiB",
            ),
            (
                "8193 entries",
                Box::new(|h| put32(h, 80, 8193)),
                "more than the 1 MiB",
            ),
            (
                "header size 0",
                Box::new(|h| put32(h, 12, 0)),
                "header size 0",
            ),
            (
                "header size 91",
                Box::new(|h| put32(h, 12, 91)),
                "header size 91",
            ),
            (
                "header size 93",
                Box::new(|h| put32(h, 12, 93)),
                "93 is not supported",
            ),
            (
                "header size 4096",
                Box::new(|h| put32(h, 12, 4096)),
                "header size 4096",
            ),
            (
                "revision 2.0",
                Box::new(|h| put32(h, 8, 0x0002_0000)),
                "revision 2.0",
            ),
            (
                "own LBA",
                Box::new(|h| put64(h, 24, 7)),
                "says it is at sector 7",
            ),
            (
                "first > last usable",
                Box::new(|h| put64(h, 40, 131_070)),
                "do not fit a disk",
            ),
            (
                "partitions outside the usable sectors",
                Box::new(|h| put64(h, 40, 100_000)),
                "partition 1 spans sectors 2048..22527, outside the usable",
            ),
            (
                "last usable past the end",
                Box::new(move |h| put64(h, 48, total)),
                "do not fit a disk",
            ),
            (
                "first usable 0",
                Box::new(|h| put64(h, 40, 0)),
                "do not fit a disk",
            ),
            (
                "entries at LBA 0",
                Box::new(|h| put64(h, 72, 0)),
                "partition entries at",
            ),
            (
                "entries past the end",
                Box::new(move |h| put64(h, 72, total - 2)),
                "partition entries at",
            ),
            (
                "entries in the usable area",
                Box::new(|h| put64(h, 72, 4096)),
                "partition entries at",
            ),
            (
                "entries at 2^64-1",
                Box::new(|h| put64(h, 72, u64::MAX)),
                "partition entries at",
            ),
            (
                "entries checksum",
                Box::new(|h| {
                    let c = u32::from_le_bytes(h[88..92].try_into().unwrap());
                    put32(h, 88, c ^ 1)
                }),
                "entries checksum",
            ),
        ];
        for (what, patch, want) in &cases {
            let dir = tempfile::tempdir().unwrap();
            let (path, good) = gpt_image(dir.path());
            patch_header(&path, 1, patch.as_ref());
            let t = read_table(&Disk::open(&path, false).unwrap())
                .unwrap_or_else(|e| panic!("{what}: the backup should have been used: {e:#}"))
                .unwrap();
            assert_eq!(t.partitions, good, "{what}: read from the backup");
            let d = t.damaged.unwrap_or_default();
            assert!(d.contains("primary") && d.contains(want), "{what}: {d}");

            patch_header(&path, total - 1, patch.as_ref());
            let err = read_table(&Disk::open(&path, false).unwrap())
                .map(|t| format!("{t:?}"))
                .expect_err(what);
            let err = format!("{err:#}");
            assert!(
                err.contains("damaged GPT") && err.contains(want),
                "{what}: {err}"
            );
        }
    }

    /// Hostile MBRs: entries past the end, overflowing u32 fields, overlaps, an extended
    /// partition whose first EBR points to itself (not walked, so no loop) and a protective
    /// entry without a GPT are errors or listings, never a panic or a hang.
    #[test]
    fn hostile_mbrs_do_not_panic() {
        let entry = |boot: u8, ty: u8, start: u32, len: u32| {
            let mut e = [0u8; 16];
            e[0] = boot;
            e[4] = ty;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&len.to_le_bytes());
            e
        };
        // (what, MBR entries, error wanted; None: read as a table)
        type Case<'a> = (&'a str, Vec<[u8; 16]>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "past the end",
                vec![entry(0, 0x83, 2048, 1 << 20)],
                Some("ends at sector"),
            ),
            (
                "u32 overflow",
                vec![entry(0, 0x83, u32::MAX, u32::MAX)],
                Some("ends at sector"),
            ),
            (
                "overlap",
                vec![entry(0, 0x83, 2048, 8192), entry(0, 0x83, 4096, 8192)],
                Some("overlap"),
            ),
            (
                "bad boot flag",
                vec![entry(0x7f, 0x83, 2048, 2048)],
                Some("boot flag"),
            ),
            (
                "half empty",
                vec![entry(0, 0x83, 0, 2048)],
                Some("half empty"),
            ),
            (
                "self-referencing extended",
                vec![entry(0, 0x05, 2048, 8192)],
                None,
            ),
            (
                "protective, no GPT",
                vec![entry(0, 0xee, 1, 131_071)],
                Some("GPT"),
            ),
        ];
        for (what, entries, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mbr.img");
            let mut img = vec![0u8; 64 * MIB as usize];
            for (i, e) in entries.iter().enumerate() {
                img[446 + 16 * i..462 + 16 * i].copy_from_slice(e);
            }
            img[510] = 0x55;
            img[511] = 0xaa;
            // The extended partition's EBR: one logical entry, then a link back to itself.
            let ebr = 2048 * 512;
            img[ebr + 446..ebr + 462].copy_from_slice(&entry(0, 0x83, 63, 1000));
            img[ebr + 462..ebr + 478].copy_from_slice(&entry(0, 0x05, 0, 8192));
            img[ebr + 510] = 0x55;
            img[ebr + 511] = 0xaa;
            std::fs::write(&path, &img).unwrap();
            let r = read_table(&Disk::open(&path, false).unwrap());
            match want {
                Some(w) => {
                    let e = format!("{:#}", r.expect_err(what));
                    assert!(e.contains(w), "{what}: {e}");
                }
                None => {
                    let t = r.unwrap().unwrap();
                    assert_eq!(t.partitions.len(), 1, "{what}");
                    assert!(t.partitions[0].kind.contains("Extended"), "{what}");
                }
            }
        }
    }
}
