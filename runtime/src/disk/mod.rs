//! The disk layer: a disk (image file or block device) and byte ranges of it, partition
//! tables, FAT file systems, disk selection and safety checks.
//!
//! - [`target`]: [`Disk`] (an image file or block device) and [`DiskRange`] (a bounds-checked,
//!   buffered byte range of it: a partition). Every other module goes through these, so every
//!   disk operation is tested on sparse image files without root.
//! - [`layout`]: plan a GPT or MBR layout (1 MiB alignment, every size checked before the first
//!   write), write it (old signatures wiped first, the table last) and read it back. GPT follows
//!   UEFI 2.10 chapter 5 through the `gpt` crate; MBR through `mbrman` (primary partitions only).
//! - [`fat`]: FAT16/FAT32 format and file access through the `fatfs` crate.
//! - [`fatcheck`]: a read-only consistency check of a FAT file system (what `fsck.fat -n`
//!   checks first), run after every apply onto FAT.
//! - [`fatbuild`]: a FAT file system holding a host directory tree, built in one pass.
//! - [`select`]: enumerate disks (Linux `/sys/block`; `\\.\PhysicalDriveN` on Windows), find
//!   the disk the runner booted from, parse disk selectors and refuse unsafe targets.
//! - [`preflight`]: check each planned partition's file system (size limits, label, formatter
//!   installed) before the first write.
//! - [`reread`]: make the kernel read a new partition table and wait for the partition nodes.
//! - [`cli`]: `tsforge disk list|show|partition|build-fat` (and the hidden `copy-in`).
//!
//! Left out on purpose: resizing or keeping existing partitions (a layout replaces the whole
//! table), MBR extended/logical partitions (listed, not walked or created), NTFS and other file
//! systems (an external formatter's job).

pub mod fat;
pub mod fatbuild;
pub mod fatcheck;
pub mod layout;
pub mod preflight;
pub mod reread;
pub mod select;
pub mod target;

pub use layout::{PartKind, PartitionSpec, SizeSpec, TableKind};
pub use target::{Disk, DiskRange};

use anyhow::{bail, Result};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// Parse a size: plain bytes (`4096`), or a number with a unit. `KiB`, `MiB`, `GiB`, `TiB`
/// (also `K`, `M`, `G`, `T`) are binary (powers of 1024); `kB`, `MB`, `GB`, `TB` are decimal
/// (powers of 1000), as in `parted`. Case-insensitive, fractions allowed (`1.5GiB`), rounded
/// down to a byte.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        bail!(
            "invalid size {s:?}: expected a number with an optional unit, e.g. 512MiB, 32GiB, 4096"
        );
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "t" | "tib" => TIB,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => bail!(
            "invalid size {s:?}: unknown unit {unit:?} (use KiB, MiB, GiB, TiB, or kB, MB, GB, TB)"
        ),
    };
    let value = match num.split_once('.') {
        None => num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)),
        Some((int, frac)) => {
            let int: u64 = if int.is_empty() {
                Some(0)
            } else {
                int.parse().ok()
            }
            .unwrap_or(u64::MAX);
            let frac_ok =
                !frac.is_empty() && frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit());
            if int == u64::MAX || !frac_ok {
                None
            } else {
                let f: u64 = frac.parse().unwrap_or(0);
                let scale = 10u64.pow(frac.len() as u32);
                int.checked_mul(mult).and_then(|whole| {
                    let part = (u128::from(f) * u128::from(mult) / u128::from(scale)) as u64;
                    whole.checked_add(part)
                })
            }
        }
    };
    match value {
        Some(v) => Ok(v),
        None => bail!("invalid size {s:?}: not a number or too large"),
    }
}

/// A size for people: `260 MiB`, `3.7 GiB`, `512 B`.
pub fn format_size(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)];
    for (name, unit) in UNITS {
        if n >= unit {
            return if n % unit == 0 {
                format!("{} {name}", n / unit)
            } else {
                format!("{:.1} {name}", n as f64 / unit as f64)
            };
        }
    }
    format!("{n} B")
}

/// The little-endian 16-bit number at `at` in `b` (FAT's on-disk fields).
pub(crate) fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The little-endian 32-bit number at `at` in `b`.
pub(crate) fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        for (input, want) in [
            ("4096", 4096),
            ("512MiB", 512 * MIB),
            ("32GiB", 32 * GIB),
            ("32 gib", 32 * GIB),
            ("100MB", 100_000_000),
            ("1.5GiB", 3 * GIB / 2),
            ("2T", 2 * TIB),
            ("16M", 16 * MIB),
        ] {
            assert_eq!(parse_size(input).unwrap(), want, "{input}");
        }
        for bad in [
            "",
            "MiB",
            "12XB",
            "1.2.3G",
            "99999999999999999999",
            "20000000TiB",
            "-5",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes_format() {
        assert_eq!(format_size(260 * MIB), "260 MiB");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(3 * GIB / 2), "1.5 GiB");
    }
}
