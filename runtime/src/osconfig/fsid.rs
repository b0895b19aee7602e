//! The identity of a file system, read from its own superblock: the type and the UUID that
//! `/etc/fstab` and the kernel's `root=UUID=` name it by.
//!
//! Read natively rather than through `blkid`: the same bytes `blkid` reads, with no program to
//! carry in the boot environment and no loop device needed for a partition of an image file
//! (the tests compare the result with `blkid -s UUID`). The places:
//!
//! - ext2/3/4: the superblock at byte 1024, magic `0xEF53` at 0x38, `s_uuid` at 0x68 (104);
//!   ext4 when an ext4-only incompatible feature is set (extents 0x40, 64bit 0x80, flex_bg
//!   0x200), ext3 when it has a journal (compat 0x4), else ext2;
//! - XFS: the superblock at 0, magic `XFSB`, `sb_uuid` at 32;
//! - btrfs: the superblock at 64 KiB, magic `_BHRfS_M` at 0x40, `fsid` at 0x20;
//! - FAT: the boot sector; FAT32 (16-bit FAT size 0 at 0x16) keeps the volume ID at 0x43
//!   after the extended boot signature 0x29 at 0x42, FAT12/16 at 0x27 after 0x29 at 0x26;
//!   written `XXXX-XXXX` (upper-case hex, high half first), as `blkid` and fstab write it;
//! - NTFS: `NTFS    ` at byte 3 of the boot sector, the volume serial number (8 bytes) at
//!   0x48, written as 16 upper-case hex digits;
//! - Linux swap: `SWAPSPACE2` at the end of the first 4 KiB page, UUID at 1024 + 12.

use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, SeekFrom};

/// A file system's type (as fstab names it) and UUID (as fstab's `UUID=` takes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsId {
    pub kind: &'static str,
    pub uuid: String,
}

fn read_at(r: &mut (impl Read + Seek), at: u64, buf: &mut [u8]) -> Option<()> {
    r.seek(SeekFrom::Start(at)).ok()?;
    r.read_exact(buf).ok()
}

fn uuid_text(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Read the file system at the start of `r` (a partition). `what` names it in errors.
pub fn read(r: &mut (impl Read + Seek), what: &str) -> Result<FsId> {
    let mut sb = [0u8; 1024];
    if read_at(r, 1024, &mut sb).is_some() && sb[0x38] == 0x53 && sb[0x39] == 0xef {
        let le = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().unwrap());
        let (compat, incompat) = (le(0x5c), le(0x60));
        let kind = if incompat & (0x40 | 0x80 | 0x200) != 0 {
            "ext4"
        } else if compat & 0x4 != 0 {
            "ext3"
        } else {
            "ext2"
        };
        return Ok(FsId {
            kind,
            uuid: uuid_text(&sb[0x68..0x78]),
        });
    }
    let mut page = [0u8; 4096];
    if read_at(r, 0, &mut page).is_some() && &page[4086..4096] == b"SWAPSPACE2" {
        return Ok(FsId {
            kind: "swap",
            uuid: uuid_text(&page[1036..1052]),
        });
    }
    let mut head = [0u8; 512];
    read_at(r, 0, &mut head).with_context(|| format!("reading the first sector of {what}"))?;
    if &head[..4] == b"XFSB" {
        return Ok(FsId {
            kind: "xfs",
            uuid: uuid_text(&head[32..48]),
        });
    }
    let mut bt = [0u8; 0x48];
    if read_at(r, 0x10000, &mut bt).is_some() && &bt[0x40..0x48] == b"_BHRfS_M" {
        return Ok(FsId {
            kind: "btrfs",
            uuid: uuid_text(&bt[0x20..0x30]),
        });
    }
    if &head[3..11] == b"NTFS    " {
        let v = u64::from_le_bytes(head[0x48..0x50].try_into().unwrap());
        return Ok(FsId {
            kind: "ntfs",
            uuid: format!("{v:016X}"),
        });
    }
    if head[510] == 0x55 && head[511] == 0xaa && head[0x0b..0x0d] != [0, 0] {
        let fat32 = u16::from_le_bytes([head[0x16], head[0x17]]) == 0;
        let (sig, id) = if fat32 { (0x42, 0x43) } else { (0x26, 0x27) };
        if head[sig] == 0x29 || head[sig] == 0x28 {
            let v = u32::from_le_bytes(head[id..id + 4].try_into().unwrap());
            return Ok(FsId {
                kind: "vfat",
                uuid: format!("{:04X}-{:04X}", v >> 16, v & 0xffff),
            });
        }
    }
    bail!(
        "{what} holds no file system tsforge can name by UUID (looked for ext2/3/4, XFS, btrfs \
         FAT with a volume ID, NTFS and swap)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_ext4_xfs_btrfs_and_fat() {
        let mut ext = vec![0u8; 4096];
        ext[1024 + 0x38] = 0x53;
        ext[1024 + 0x39] = 0xef;
        ext[1024 + 0x60] = 0x40; // extents
        for i in 0..16 {
            ext[1024 + 0x68 + i] = i as u8;
        }
        let id = read(&mut Cursor::new(ext), "p").unwrap();
        assert_eq!(id.kind, "ext4");
        assert_eq!(id.uuid, "00010203-0405-0607-0809-0a0b0c0d0e0f");

        let mut xfs = vec![0u8; 0x20000];
        xfs[..4].copy_from_slice(b"XFSB");
        xfs[32..48].copy_from_slice(&[0xab; 16]);
        assert_eq!(read(&mut Cursor::new(xfs), "p").unwrap().kind, "xfs");

        let mut fat = vec![0u8; 4096];
        fat[0x0b] = 0; // 512 bytes per sector
        fat[0x0c] = 2;
        fat[510] = 0x55;
        fat[511] = 0xaa;
        fat[0x42] = 0x29;
        fat[0x43..0x47].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        let id = read(&mut Cursor::new(fat.clone()), "p").unwrap();
        assert_eq!((id.kind, id.uuid.as_str()), ("vfat", "1234-ABCD"));
        // FAT16: the size of one FAT in the BPB is not 0, the ID sits at 0x27.
        fat[0x16] = 32;
        fat[0x26] = 0x29;
        fat[0x27..0x2b].copy_from_slice(&0x0bad_f00du32.to_le_bytes());
        assert_eq!(read(&mut Cursor::new(fat), "p").unwrap().uuid, "0BAD-F00D");

        let err = read(&mut Cursor::new(vec![0u8; 8192]), "partition 2 of d.img").unwrap_err();
        assert!(format!("{err:#}").contains("partition 2 of d.img holds no file system"));
    }
}
