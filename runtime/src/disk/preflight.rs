//! Checks of a planned layout's file systems, made before the first write so a layout either
//! goes on the disk whole or not at all: every failure that formatting could meet after the
//! table is written and that can be known before (a size outside the file system's limits, a
//! label it cannot hold, an unknown file system, a formatter that is not installed) stops the
//! command while the old table is still there. `tsforge disk partition` (dry run and `--yes`
//! alike) and the *Format and Partition Disk* step use these.

use super::fat::{self, FatKind};
use super::layout::PlannedPartition;
use crate::fsformat::FsKind;
use anyhow::{Context, Result};
use std::path::Path;

/// "partition 3 (Windows)" for messages.
pub fn name(p: &PlannedPartition) -> String {
    if p.spec.name.is_empty() {
        format!("partition {}", p.number)
    } else {
        format!("partition {} ({})", p.number, p.spec.name)
    }
}

/// Whether [`fat::format`] will succeed on `p` with `label` and `kind` (`None`: chosen by
/// size): runs the formatter on a sparse in-memory copy (`fat::format_in_memory`, the same
/// checks and the same `fatfs` call, without the disk), so every limit it enforces is met.
/// The FAT type it gets.
pub fn fat(p: &PlannedPartition, label: &str, kind: Option<FatKind>) -> Result<FatKind> {
    let f = fat::format_in_memory(&name(p), p.len, p.start, label, kind)?;
    Ok(f.geometry.kind)
}

/// Whether `fs` can be made on `p` with `label` on this machine, `target` being the disk
/// path the formatter will be given: size, label and the formatter itself
/// ([`FsKind::check_volume`], [`FsKind::check_formatter`]).
pub fn external(p: &PlannedPartition, fs: FsKind, label: &str, target: &Path) -> Result<()> {
    fs.check_volume(p.len, label)
        .and_then(|()| fs.check_formatter(target))
        .with_context(|| format!("{} as {fs}", name(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::layout::{PartKind, PartitionSpec, SizeSpec};
    use crate::disk::{MIB, TIB};

    fn part(len: u64) -> PlannedPartition {
        PlannedPartition {
            number: 2,
            start: MIB,
            len,
            spec: PartitionSpec {
                name: "data".into(),
                kind: PartKind::BasicData,
                size: SizeSpec::Bytes(len),
                active: false,
            },
        }
    }

    /// The limits are the formatter's own: whatever passes formats, whatever fails names the
    /// partition and the limit.
    #[test]
    fn fat_limits_are_the_formatters() {
        for (len, kind, want) in [
            (26 * MIB, Some(FatKind::Fat32), Err("too small for FAT32")),
            (34 * MIB, Some(FatKind::Fat32), Ok(FatKind::Fat32)),
            (2 * MIB, Some(FatKind::Fat16), Err("too small for FAT16")),
            (3 * MIB, Some(FatKind::Fat16), Ok(FatKind::Fat16)),
            (100 * MIB, None, Ok(FatKind::Fat16)),
            (3 * TIB, Some(FatKind::Fat32), Err("at most 2 TiB")),
            (3 * TIB, None, Err("at most 2 TiB")),
        ] {
            let got = fat(&part(len), "DATA", kind);
            match (want, got) {
                (Ok(k), Ok(g)) => assert_eq!(g, k, "{len}"),
                (Err(w), Err(e)) => {
                    let e = format!("{e:#}");
                    assert!(e.contains(w) && e.contains("partition 2 (data)"), "{e}");
                }
                (w, g) => panic!("{len} {kind:?}: want {w:?}, got {g:?}"),
            }
        }
        let e = format!("{:#}", fat(&part(64 * MIB), "a/b", None).unwrap_err());
        assert!(e.contains("label"), "{e}");
    }

    #[test]
    fn external_limits() {
        let t = Path::new("disk.img");
        for (fs, len, label, want) in [
            (FsKind::Ntfs, MIB, "", "too small for ntfs"),
            (FsKind::Ext4, 64 << 10, "", "too small for ext4"),
            (FsKind::Xfs, 200 * MIB, "", "too small for xfs"),
            (FsKind::Exfat, 2 * MIB, "", "too small for exfat"),
            (FsKind::Ext4, 64 * MIB, "a-label-of-17-chr", "at most 16"),
            (FsKind::Xfs, 400 * MIB, "thirteen-char", "at most 12"),
            (FsKind::Exfat, 64 * MIB, "twelve chars", "at most 11"),
            (FsKind::Ntfs, 64 * MIB, &"x".repeat(129), "at most 128"),
        ] {
            let e = format!("{:#}", external(&part(len), fs, label, t).unwrap_err());
            assert!(e.contains(want) && e.contains("partition 2 (data)"), "{e}");
        }
        for (fs, len, label) in [
            (FsKind::Ntfs, MIB + 512, "Windows"),
            (FsKind::Ext4, 128 << 10, "sixteen-chars-ok"),
            (FsKind::Xfs, 300 * MIB, "twelve-chars"),
            (FsKind::Exfat, 3 * MIB, "ELEVENCHARS"),
        ] {
            fs.check_volume(len, label)
                .unwrap_or_else(|e| panic!("{fs} {len}: {e:#}"));
        }
    }
}
