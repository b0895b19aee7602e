//! Non-FAT file systems (NTFS, ext2/3/4, XFS, exFAT) through the platform's formatter, found
//! through [`crate::tools`]. FAT is written natively by the disk layer and is not handled here.
//!
//! [`format_image_range`] formats the byte range `offset..offset + len` of a disk image file or
//! block device:
//!
//! - a block device on Linux: the whole device (offset 0, its full length) is formatted as it
//!   is; a range must be a partition the kernel knows, found in `/sys/class/block` by its start
//!   and size, and `mkfs.<fs>` runs on the partition's node;
//! - a range of an image file (how the tests run, without root): ext2/3/4 are written in place
//!   with mke2fs's `-E offset=`; the others (mkfs.ntfs has no offset option: `-p` only records
//!   the start sector in the boot sector) are formatted in a temporary file of `len` bytes next
//!   to the image, which is then copied into the range. The copy is sparse-aware for a quick
//!   format: only the regions the formatter wrote are copied (SEEK_DATA/SEEK_HOLE on Linux).
//!   Bytes outside the range are never touched.
//! - Windows: `format.com X: /FS:NTFS /V:label /Q /Y` needs the volume's drive letter, which
//!   the disk layer assigns (diskpart) before calling this with the path `X:`; image-file
//!   ranges are not supported there.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::tools::{self, Tool};

/// A file system an external formatter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Ntfs,
    Ext4,
    Ext3,
    Ext2,
    Xfs,
    Exfat,
}

impl FsKind {
    /// From a ConfigMgr name (`NTFS`, as in *Format and Partition Disk*) or a Linux name
    /// (`ntfs`, `ext4`, `xfs`, `exfat`), in any case. FAT names are refused with a pointer to
    /// the native FAT writer.
    pub fn parse(s: &str) -> Result<FsKind> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "ntfs" => FsKind::Ntfs,
            "ext4" => FsKind::Ext4,
            "ext3" => FsKind::Ext3,
            "ext2" => FsKind::Ext2,
            "xfs" => FsKind::Xfs,
            "exfat" => FsKind::Exfat,
            "fat32" | "fat16" | "fat12" | "fat" | "vfat" | "msdos" => bail!(
                "{s} is written natively by the disk layer, not by an external formatter"
            ),
            _ => bail!("unknown file system {s:?}; known: NTFS, ext4, ext3, ext2, XFS, exFAT (and FAT32, written natively)"),
        })
    }

    /// The name a user writes (and `mkfs.<name>`'s suffix).
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ntfs => "ntfs",
            FsKind::Ext4 => "ext4",
            FsKind::Ext3 => "ext3",
            FsKind::Ext2 => "ext2",
            FsKind::Xfs => "xfs",
            FsKind::Exfat => "exfat",
        }
    }

    /// The Linux formatter.
    pub fn mkfs(self) -> Tool {
        match self {
            FsKind::Ntfs => Tool::MkfsNtfs,
            FsKind::Ext4 => Tool::MkfsExt4,
            FsKind::Ext3 => Tool::MkfsExt3,
            FsKind::Ext2 => Tool::MkfsExt2,
            FsKind::Xfs => Tool::MkfsXfs,
            FsKind::Exfat => Tool::MkfsExfat,
        }
    }

    #[cfg_attr(windows, allow(dead_code))]
    fn is_ext(self) -> bool {
        matches!(self, FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4)
    }
}

impl std::fmt::Display for FsKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FsKind {
    /// The smallest partition, in bytes, the formatter makes a working file system on.
    pub fn min_size(self) -> u64 {
        match self {
            // mkntfs(8): "Minimum NTFS volume size is 1MiB"; its last sector holds the backup
            // boot sector, so 1 MiB exactly is refused.
            FsKind::Ntfs => (1 << 20) + 512,
            // mke2fs documents no minimum; 1.47 fails below about 104 KiB (too few inodes for
            // the reserved ones). 128 KiB leaves a margin for other versions.
            FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => 128 << 10,
            // xfsprogs 5.19 and later: "Filesystem must be larger than 300MB" (MiB of data).
            FsKind::Xfs => 300 << 20,
            // exfatprogs puts the FAT and the cluster heap on 1 MiB boundaries: below about
            // 2 MiB + 16 KiB it fails or writes a volume its own fsck rejects.
            FsKind::Exfat => 3 << 20,
        }
    }

    /// What formatting a partition of `len` bytes as this file system with `label` would
    /// refuse, checked before anything is written: the size ([`FsKind::min_size`]) and the
    /// label (NTFS: 128 UTF-16 units; ext2/3/4: 16 bytes, which mke2fs would silently cut;
    /// XFS: 12 bytes; exFAT: 11 UTF-16 units).
    pub fn check_volume(self, len: u64, label: &str) -> Result<()> {
        if len < self.min_size() {
            bail!(
                "{} bytes is too small for {self}: mkfs.{self} needs at least {} bytes",
                len,
                self.min_size()
            );
        }
        let (max, units, n) = match self {
            FsKind::Ntfs => (128, "UTF-16 characters", label.encode_utf16().count()),
            FsKind::Exfat => (11, "UTF-16 characters", label.encode_utf16().count()),
            FsKind::Xfs => (12, "bytes", label.len()),
            FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => (16, "bytes", label.len()),
        };
        if n > max {
            bail!("{self} label {label:?} is {n} {units} long; {self} labels hold at most {max}");
        }
        Ok(())
    }

    /// Whether [`format_image_range`] can format `target` (a disk path) as this file system
    /// on this machine, checked before anything is written: on Linux the formatter is
    /// installed; on Windows formatting needs a drive letter, which a disk path is not.
    pub fn check_formatter(self, target: &Path) -> Result<()> {
        #[cfg(not(windows))]
        {
            let _ = target;
            tools::find(self.mkfs())?;
            Ok(())
        }
        #[cfg(windows)]
        {
            if platform::drive_letter(target).is_none() {
                bail!(
                    "formatting {self} on Windows needs the volume's drive letter, and {} is a \
                     disk; format it on Linux (mkfs.{self}) or with diskpart after partitioning",
                    target.display()
                );
            }
            tools::find(Tool::Format)?;
            Ok(())
        }
    }
}

/// Format `offset..offset + len` of `path` (an image file or block device; on Windows a drive
/// letter `X:`) as `fs` with volume label `label`. `quick: false` writes the whole range
/// (NTFS: every sector zeroed; ext: inode tables and journal initialised now).
pub fn format_image_range(
    path: &Path,
    offset: u64,
    len: u64,
    fs: FsKind,
    label: &str,
    quick: bool,
) -> Result<()> {
    let what = format!(
        "formatting {} bytes at offset {offset} of {} as {fs}",
        len,
        path.display()
    );
    platform::format(path, offset, len, fs, label, quick, &what)
}

/// The formatter's arguments for formatting the whole of `dev` (a file or a device node) of
/// `len` bytes, `offset` being where it starts on its disk (NTFS records it for booting).
#[cfg_attr(windows, allow(dead_code))]
fn mkfs_args(
    fs: FsKind,
    dev: &Path,
    disk_offset: u64,
    len: u64,
    label: &str,
    quick: bool,
    in_place_offset: Option<u64>,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    match fs {
        FsKind::Ntfs => {
            push("-F");
            if quick {
                push("-Q");
            }
            if !label.is_empty() {
                push("-L");
                push(label);
            }
            // What Windows needs to boot from the volume.
            push("-p");
            push(&(disk_offset / 512).to_string());
            push("-s");
            push("512");
            push("-H");
            push("255");
            push("-S");
            push("63");
            a.push(dev.as_os_str().to_owned());
            a.push(OsString::from((len / 512).to_string()));
        }
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            push("-F");
            push("-q");
            if !label.is_empty() {
                push("-L");
                push(label);
            }
            let mut ext = Vec::new();
            if let Some(off) = in_place_offset {
                ext.push(format!("offset={off}"));
                // Discarding an image file's range only punches holes in it: no use, and
                // slow on some file systems.
                ext.push("nodiscard".to_string());
            }
            if !quick {
                ext.push("lazy_itable_init=0".to_string());
                if fs != FsKind::Ext2 {
                    ext.push("lazy_journal_init=0".to_string());
                }
            }
            if !ext.is_empty() {
                push("-E");
                push(&ext.join(","));
            }
            a.push(dev.as_os_str().to_owned());
            a.push(OsString::from(format!("{}k", len / 1024)));
        }
        FsKind::Xfs => {
            push("-f");
            push("-q");
            if !label.is_empty() {
                push("-L");
                push(label);
            }
            a.push(dev.as_os_str().to_owned());
        }
        FsKind::Exfat => {
            if !label.is_empty() {
                push("-L");
                push(label);
            }
            if !quick {
                push("--full-format");
            }
            a.push(dev.as_os_str().to_owned());
        }
    }
    a
}

#[cfg(not(windows))]
mod platform {
    use super::*;

    pub(super) fn format(
        path: &Path,
        offset: u64,
        len: u64,
        fs: FsKind,
        label: &str,
        quick: bool,
        what: &str,
    ) -> Result<()> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("{what}: reading {}", path.display()))?;
        if len == 0 {
            bail!("{what}: the range is empty");
        }
        let end = offset
            .checked_add(len)
            .with_context(|| format!("{what}: offset + length overflows"))?;
        if is_block_device(&meta) {
            let size = device_size(path)
                .with_context(|| format!("{what}: reading the size of {}", path.display()))?;
            if end > size {
                bail!(
                    "{what}: the range ends at {end}, past the end of {} ({size} bytes)",
                    path.display()
                );
            }
            let node = if offset == 0 && len == size {
                path.to_path_buf()
            } else {
                partition_node(path, offset, len).with_context(|| what.to_string())?
            };
            let args = mkfs_args(fs, &node, offset, len, label, quick, None);
            tools::run(fs.mkfs(), args, what)?;
            return Ok(());
        }
        if !meta.is_file() {
            bail!(
                "{what}: {} is neither a file nor a block device",
                path.display()
            );
        }
        if end > meta.len() {
            bail!(
                "{what}: the range ends at {end}, past the end of the image file ({} bytes)",
                meta.len()
            );
        }
        if fs.is_ext() {
            let args = mkfs_args(fs, path, offset, len, label, quick, Some(offset));
            tools::run(fs.mkfs(), args, what)?;
            return Ok(());
        }
        // Find the tool before creating a temporary file of `len` bytes.
        tools::find(fs.mkfs()).with_context(|| what.to_string())?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".tsforge-format-")
            .tempfile_in(dir)
            .with_context(|| format!("{what}: creating a temporary file in {}", dir.display()))?;
        tmp.as_file().set_len(len).with_context(|| {
            format!("{what}: sizing the temporary file {}", tmp.path().display())
        })?;
        let args = mkfs_args(fs, tmp.path(), offset, len, label, quick, None);
        tools::run(fs.mkfs(), args, what)?;
        // mkfs.xfs on a sparse file leaves what it expects to read as zeros (its log) as
        // holes; skipping them on a used disk leaves old bytes there, and the kernel refuses
        // the mount ("log inconsistent"). XFS is copied whole.
        let quick_copy = quick && fs != FsKind::Xfs;
        copy_into_range(tmp.path(), path, offset, len, quick_copy)
            .with_context(|| format!("{what}: copying the formatted volume into place"))?;
        Ok(())
    }

    fn is_block_device(meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_block_device()
    }

    fn device_size(path: &Path) -> std::io::Result<u64> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::End(0))
    }

    /// The kernel's partition of disk `disk` that starts at `offset` and is `len` bytes long.
    #[cfg(target_os = "linux")]
    fn partition_node(disk: &Path, offset: u64, len: u64) -> Result<std::path::PathBuf> {
        let canon =
            std::fs::canonicalize(disk).with_context(|| format!("resolving {}", disk.display()))?;
        let name = canon
            .file_name()
            .with_context(|| format!("{} has no device name", canon.display()))?
            .to_string_lossy()
            .into_owned();
        let sys = Path::new("/sys/class/block").join(&name);
        let read_u64 =
            |p: &Path| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        let entries =
            std::fs::read_dir(&sys).with_context(|| format!("listing {}", sys.display()))?;
        for e in entries.flatten() {
            let part = e.path();
            if !part.join("partition").exists() {
                continue;
            }
            let (Some(start), Some(size)) =
                (read_u64(&part.join("start")), read_u64(&part.join("size")))
            else {
                continue;
            };
            // sysfs counts 512-byte sectors whatever the device's sector size.
            if start.checked_mul(512) == Some(offset) && size.checked_mul(512) == Some(len) {
                return Ok(Path::new("/dev").join(e.file_name()));
            }
        }
        bail!(
            "no partition of {} starts at byte {offset} with {len} bytes; if the partition \
             table was just written, run `partx -u {}` so the kernel sees it",
            disk.display(),
            disk.display()
        )
    }

    #[cfg(not(target_os = "linux"))]
    fn partition_node(disk: &Path, _offset: u64, _len: u64) -> Result<std::path::PathBuf> {
        bail!(
            "formatting a partition of block device {} is supported on Linux only",
            disk.display()
        )
    }

    /// The regions of `f` (of `len` bytes) that hold data, as (start, end); everything when
    /// the platform cannot tell.
    #[cfg(target_os = "linux")]
    pub(super) fn data_regions(f: &File, len: u64) -> Vec<(u64, u64)> {
        use nix::errno::Errno;
        use nix::unistd::{lseek, Whence};
        let mut out = Vec::new();
        let mut pos: u64 = 0;
        while pos < len {
            let start = match lseek(f, pos as i64, Whence::SeekData) {
                Ok(s) => s as u64,
                Err(Errno::ENXIO) => break,
                Err(_) => return vec![(0, len)],
            };
            if start >= len {
                break;
            }
            let end = match lseek(f, start as i64, Whence::SeekHole) {
                Ok(e) => (e as u64).min(len),
                Err(_) => len,
            };
            out.push((start, end));
            pos = end;
        }
        out
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn data_regions(_f: &File, len: u64) -> Vec<(u64, u64)> {
        vec![(0, len)]
    }
}

#[cfg(windows)]
mod platform {
    use super::*;

    pub(super) fn format(
        path: &Path,
        offset: u64,
        len: u64,
        fs: FsKind,
        label: &str,
        quick: bool,
        what: &str,
    ) -> Result<()> {
        let _ = (offset, len);
        let Some(letter) = drive_letter(path) else {
            bail!(
                "{what}: on Windows a volume is formatted by its drive letter (\"X:\"), which \
                 the disk layer assigns first; formatting a range of an image file needs \
                 Linux (mkfs.{fs})"
            );
        };
        let fs_name = match fs {
            FsKind::Ntfs => "NTFS",
            FsKind::Exfat => "exFAT",
            _ => bail!("{what}: Windows cannot format {fs}"),
        };
        let mut args = vec![
            OsString::from(format!("{letter}:")),
            OsString::from(format!("/FS:{fs_name}")),
            OsString::from(format!("/V:{label}")),
        ];
        if quick {
            args.push(OsString::from("/Q"));
        }
        args.push(OsString::from("/Y"));
        tools::run(Tool::Format, args, what)?;
        Ok(())
    }

    pub(super) fn drive_letter(p: &Path) -> Option<char> {
        let s = p.to_str()?;
        let s = s.strip_suffix('\\').unwrap_or(s);
        let mut c = s.chars();
        let (l, colon) = (c.next()?, c.next()?);
        (l.is_ascii_alphabetic() && colon == ':' && c.next().is_none())
            .then_some(l.to_ascii_uppercase())
    }

    #[allow(dead_code)]
    pub(super) fn data_regions(_f: &File, len: u64) -> Vec<(u64, u64)> {
        vec![(0, len)]
    }
}

/// Copy the formatted volume `src` (`len` bytes) into `offset..offset + len` of `dst`. A quick
/// format copies only the regions the formatter wrote; a full one copies everything.
#[cfg_attr(windows, allow(dead_code))]
fn copy_into_range(src: &Path, dst: &Path, offset: u64, len: u64, quick: bool) -> Result<()> {
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut out = OpenOptions::new()
        .write(true)
        .open(dst)
        .with_context(|| format!("opening {} for writing", dst.display()))?;
    let regions = if quick {
        platform::data_regions(&input, len)
    } else {
        vec![(0, len)]
    };
    let mut buf = vec![0u8; crate::sys::DEVICE_BUFFER_SIZE];
    for (start, end) in regions {
        input.seek(SeekFrom::Start(start))?;
        out.seek(SeekFrom::Start(offset + start))?;
        let mut left = end - start;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            input
                .read_exact(&mut buf[..n])
                .with_context(|| format!("reading {}", src.display()))?;
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", dst.display()))?;
            left -= n as u64;
        }
    }
    out.sync_all()
        .with_context(|| format!("syncing {}", dst.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(FsKind::parse("NTFS").unwrap(), FsKind::Ntfs);
        assert_eq!(FsKind::parse("Ext4").unwrap(), FsKind::Ext4);
        assert_eq!(FsKind::parse("exFAT").unwrap(), FsKind::Exfat);
        let e = FsKind::parse("FAT32").unwrap_err().to_string();
        assert!(e.contains("natively"), "{e}");
        let e = FsKind::parse("btrfs").unwrap_err().to_string();
        assert!(e.contains("known: NTFS"), "{e}");
    }

    #[test]
    fn ext_in_place_args() {
        let a = mkfs_args(
            FsKind::Ext4,
            Path::new("d.img"),
            1 << 20,
            64 << 20,
            "root",
            true,
            Some(1 << 20),
        );
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            a,
            [
                "-F",
                "-q",
                "-L",
                "root",
                "-E",
                "offset=1048576,nodiscard",
                "d.img",
                "65536k"
            ]
        );
    }

    #[test]
    fn ntfs_args_record_the_start_sector() {
        let a = mkfs_args(
            FsKind::Ntfs,
            Path::new("t"),
            1 << 20,
            64 << 20,
            "Windows",
            true,
            None,
        );
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            a,
            [
                "-F", "-Q", "-L", "Windows", "-p", "2048", "-s", "512", "-H", "255", "-S", "63",
                "t", "131072"
            ]
        );
    }
}
