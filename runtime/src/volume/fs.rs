//! Which file system a partition holds, read from the partition's own first bytes before
//! anything mounts it, so that logs and errors name it ("partition 2 of disk.img holds ext4")
//! and the mount names its type explicitly instead of letting `mount` guess.
//!
//! | file system | signature | source |
//! | --- | --- | --- |
//! | ext2, ext3, ext4 | `s_magic` 0xEF53 (little-endian) at byte 0x38 of the superblock, which starts at byte 1024; ext4 when an incompatible or read-only-compatible feature ext3 lacks is set, ext3 with a journal (`COMPAT_HAS_JOURNAL`), else ext2 (what `blkid` reports) | Linux, Documentation/filesystems/ext4/super.rst |
//! | XFS | `sb_magicnum` `XFSB` (0x58465342, big-endian) at byte 0 | Linux, fs/xfs/libxfs/xfs_format.h |
//! | NTFS | OEM ID `NTFS    ` at byte 3 of the boot sector | the NTFS boot sector layout |
//!
//! FAT is found before this by `disk::fat::open` (tsforge writes FAT itself). Some file systems
//! tsforge does not mount are named in the error when their signature is there (exFAT, btrfs,
//! LUKS, swap); anything else is an error showing the first bytes.

use std::io::{Read, Seek, SeekFrom};

/// A file system tsforge mounts to apply into or capture from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSystem {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Ntfs,
}

impl FileSystem {
    /// The `-t` type given to `mount`. NTFS goes through ntfs-3g (FUSE, `mount.ntfs-3g`), the
    /// driver that writes NTFS on every kernel (older kernels have no `ntfs3`).
    pub fn mount_type(self) -> &'static str {
        match self {
            FileSystem::Ext2 => "ext2",
            FileSystem::Ext3 => "ext3",
            FileSystem::Ext4 => "ext4",
            FileSystem::Xfs => "xfs",
            FileSystem::Ntfs => "ntfs-3g",
        }
    }
}

impl std::fmt::Display for FileSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileSystem::Ext2 => "ext2",
            FileSystem::Ext3 => "ext3",
            FileSystem::Ext4 => "ext4",
            FileSystem::Xfs => "XFS",
            FileSystem::Ntfs => "NTFS",
        })
    }
}

/// How many bytes [`identify`] looks at: up to btrfs's superblock (64 KiB + 0x48).
pub const HEAD_LEN: usize = 0x10100;

const EXT_SUPERBLOCK: usize = 1024;
// Offsets inside the ext superblock (Documentation/filesystems/ext4/super.rst).
const EXT_MAGIC: usize = 0x38;
const EXT_FEATURE_COMPAT: usize = 0x5C;
const EXT_FEATURE_INCOMPAT: usize = 0x60;
const EXT_FEATURE_RO_COMPAT: usize = 0x64;
const EXT_COMPAT_HAS_JOURNAL: u32 = 0x4;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x8;
/// The incompatible features ext3 knows: filetype, recover, meta_bg.
const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x10;
/// The read-only-compatible features ext3 knows: sparse_super, large_file, btree_dir.
const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The file system whose signature `head` (the partition's first bytes, up to [`HEAD_LEN`])
/// carries; `Err` says what was found instead, as a phrase that follows "holds".
pub fn identify(head: &[u8]) -> Result<FileSystem, String> {
    let at = |off: usize, sig: &[u8]| head.get(off..off + sig.len()) == Some(sig);
    if at(3, b"NTFS    ") {
        return Ok(FileSystem::Ntfs);
    }
    if at(0, b"XFSB") {
        return Ok(FileSystem::Xfs);
    }
    if at(EXT_SUPERBLOCK + EXT_MAGIC, &[0x53, 0xEF]) && head.len() >= EXT_SUPERBLOCK + 0x68 {
        let sb = &head[EXT_SUPERBLOCK..];
        let compat = le32(sb, EXT_FEATURE_COMPAT);
        let incompat = le32(sb, EXT_FEATURE_INCOMPAT);
        let ro_compat = le32(sb, EXT_FEATURE_RO_COMPAT);
        if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
            return Err("an ext3/ext4 external journal, not a file system".into());
        }
        return Ok(
            if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
                FileSystem::Ext4
            } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
                FileSystem::Ext3
            } else {
                FileSystem::Ext2
            },
        );
    }
    let unsupported = if at(3, b"EXFAT   ") {
        Some("exFAT")
    } else if at(0x10040, b"_BHRfS_M") {
        Some("btrfs")
    } else if at(0, b"LUKS\xBA\xBE") {
        Some("a LUKS encrypted volume")
    } else if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        Some("Linux swap")
    } else {
        None
    };
    if let Some(what) = unsupported {
        return Err(format!(
            "{what}, which tsforge does not apply to or capture (it writes FAT, and mounts ext2, \
             ext3, ext4, XFS and NTFS)"
        ));
    }
    if head.iter().all(|&b| b == 0) {
        return Err("only zero bytes at its start: no file system (format it first)".into());
    }
    let first: Vec<String> = head.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Err(format!(
        "no file system tsforge recognises: its first bytes ({}) carry no FAT, ext2/3/4, XFS or \
         NTFS signature (format it first)",
        first.join(" ")
    ))
}

/// Read the first [`HEAD_LEN`] bytes (fewer if the partition is smaller) of `part`.
pub fn read_head(part: &mut (impl Read + Seek)) -> std::io::Result<Vec<u8>> {
    part.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    part.take(HEAD_LEN as u64).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[1024 + 0x38] = 0x53;
        b[1024 + 0x39] = 0xEF;
        b[1024 + 0x5C..1024 + 0x60].copy_from_slice(&compat.to_le_bytes());
        b[1024 + 0x60..1024 + 0x64].copy_from_slice(&incompat.to_le_bytes());
        b[1024 + 0x64..1024 + 0x68].copy_from_slice(&ro.to_le_bytes());
        b
    }

    #[test]
    fn signatures() {
        // mke2fs defaults: ext2 (no journal), ext3 (journal), ext4 (extents, 64bit, flex_bg).
        assert_eq!(identify(&ext(0x38, 0x2, 0x3)), Ok(FileSystem::Ext2));
        assert_eq!(identify(&ext(0x3C, 0x2, 0x3)), Ok(FileSystem::Ext3));
        assert_eq!(
            identify(&ext(0x3C, 0x2 | 0x40 | 0x80 | 0x200, 0x3)),
            Ok(FileSystem::Ext4)
        );
        // huge_file (ro_compat 0x8) alone makes it ext4 too.
        assert_eq!(identify(&ext(0x3C, 0x2, 0x8)), Ok(FileSystem::Ext4));
        assert!(identify(&ext(0, 0x8, 0)).unwrap_err().contains("journal"));
        let mut x = vec![0u8; 512];
        x[..4].copy_from_slice(b"XFSB");
        assert_eq!(identify(&x), Ok(FileSystem::Xfs));
        let mut n = vec![0u8; 512];
        n[..11].copy_from_slice(b"\xEB\x52\x90NTFS    ");
        assert_eq!(identify(&n), Ok(FileSystem::Ntfs));
        let mut e = vec![0u8; 512];
        e[..11].copy_from_slice(b"\xEB\x76\x90EXFAT   ");
        assert!(identify(&e).unwrap_err().starts_with("exFAT"));
        assert!(identify(&[0u8; 8192])
            .unwrap_err()
            .contains("only zero bytes"));
        let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 1) as u8).collect();
        let err = identify(&junk).unwrap_err();
        assert!(err.contains("01 08 0f 16"), "{err}");
        // A short read (a tiny partition) is no panic.
        assert!(identify(&[1, 2, 3]).is_err());
    }
}
