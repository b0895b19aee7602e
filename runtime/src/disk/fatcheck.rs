//! A read-only consistency check of a FAT16/FAT32 file system, run after tsforge writes one
//! (apply, resume): what `fsck.fat -n` checks first, without the tool (the boot environment may
//! not have it) and without repairing anything.
//!
//! Written by hand because `fatfs` has no checker and reading through `fatfs` hides exactly the
//! damage that matters (it skips entries it cannot parse). Checked, walking every directory
//! from the root on the raw bytes: every cluster chain stays inside the data area, ends with an
//! end-of-chain mark and never reaches a free or bad cluster; no cluster belongs to two chains
//! (cross-links) and no directory is reached twice; a file's chain has exactly the clusters
//! its size needs; short names hold only characters FAT allows; every long-name run is complete
//! (sequence numbers, checksum of the short name that follows); and no cluster is marked used
//! in the FAT without belonging to a chain (lost clusters). Problems are collected, up to
//! [`MAX_PROBLEMS`], with the path they were found at.

use super::target::DiskRange;
use super::{le16, le32};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Seek, SeekFrom};
#[cfg(test)]
use std::path::Path;

/// The check stops collecting after this many problems.
pub const MAX_PROBLEMS: usize = 50;

/// What the check found: an empty list means consistent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub problems: Vec<String>,
    pub files: u64,
    pub dirs: u64,
    /// With [`check_and_hash`]: every file's path (long name where there is one), size and
    /// sha256 of its content as stored.
    pub contents: Vec<(String, u64, [u8; 32])>,
    /// With [`check_and_hash`]: every directory's path.
    pub dir_paths: Vec<String>,
    /// Directories with bytes after their end-of-directory mark (an entry whose first byte is
    /// 0). Readers stop at the mark, so reading is safe; but `fatfs` writes a new entry over the
    /// mark without writing a new one after it, so those bytes would become entries. A volume
    /// with any is not written into (see [`Report::is_clean_for_writing`]).
    pub after_end: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
    /// Clean, and no directory holds bytes after its end mark (what formatters and `fatfs`
    /// leave: zeros).
    pub fn is_clean_for_writing(&self) -> bool {
        self.problems.is_empty() && self.after_end.is_empty()
    }
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

struct Fs<'a> {
    range: &'a mut DiskRange,
    fat32: bool,
    fat_start: u64,
    root_start: u64,
    root_entries: u64,
    data_start: u64,
    cluster_bytes: u64,
    /// Highest valid cluster number.
    max_cluster: u64,
    root_cluster: u64,
}

impl Fs<'_> {
    /// The raw FAT entry of `c`.
    fn entry(&mut self, c: u64) -> io::Result<u64> {
        let mut b = [0u8; 4];
        if self.fat32 {
            self.range.seek(SeekFrom::Start(self.fat_start + c * 4))?;
            self.range.read_exact(&mut b)?;
            Ok(u64::from(u32::from_le_bytes(b) & 0x0fff_ffff))
        } else {
            self.range.seek(SeekFrom::Start(self.fat_start + c * 2))?;
            self.range.read_exact(&mut b[..2])?;
            Ok(u64::from(u16::from_le_bytes([b[0], b[1]])))
        }
    }
    fn is_eoc(&self, v: u64) -> bool {
        if self.fat32 {
            v >= 0x0fff_fff8
        } else {
            v >= 0xfff8
        }
    }
    fn is_bad(&self, v: u64) -> bool {
        v == if self.fat32 { 0x0fff_fff7 } else { 0xfff7 }
    }
    fn cluster_pos(&self, c: u64) -> u64 {
        self.data_start + (c - 2) * self.cluster_bytes
    }

    /// sha256 of the first `size` bytes of the clusters of `chain`, reading each run of
    /// consecutive clusters with one read (up to 4 MiB).
    fn hash(&mut self, chain: &[u64], size: u64, buf: &mut Vec<u8>) -> io::Result<[u8; 32]> {
        const MAX_RUN: u64 = 4 << 20;
        let mut h = Sha256::new();
        let mut left = size;
        let mut i = 0;
        while i < chain.len() && left > 0 {
            let mut n = 1;
            while i + n < chain.len()
                && chain[i + n] == chain[i] + n as u64
                && (n as u64 + 1) * self.cluster_bytes <= MAX_RUN
            {
                n += 1;
            }
            let len = (n as u64 * self.cluster_bytes).min(left) as usize;
            if buf.len() < len {
                buf.resize(len, 0);
            }
            self.range
                .seek(SeekFrom::Start(self.cluster_pos(chain[i])))?;
            self.range.read_exact(&mut buf[..len])?;
            h.update(&buf[..len]);
            left -= len as u64;
            i += n;
        }
        Ok(h.finalize().into())
    }

    /// Follows the chain from `first`, marking its clusters in `used`; problems name `path`.
    fn chain(&mut self, first: u64, path: &str, used: &mut [u64], r: &mut Report) -> Vec<u64> {
        let mut out = Vec::new();
        let mut c = first;
        loop {
            if c < 2 || c > self.max_cluster {
                r.problem(format!(
                    "{path}: cluster chain points at {c}, outside the volume"
                ));
                return out;
            }
            let (w, bit) = ((c / 64) as usize, c % 64);
            if used[w] & (1 << bit) != 0 {
                r.problem(format!(
                    "{path}: cluster {c} also belongs to another file or directory (cross-linked)"
                ));
                return out;
            }
            used[w] |= 1 << bit;
            out.push(c);
            let next = match self.entry(c) {
                Ok(v) => v,
                Err(e) => {
                    r.problem(format!("{path}: reading the FAT entry of cluster {c}: {e}"));
                    return out;
                }
            };
            if self.is_eoc(next) {
                return out;
            }
            if next == 0 {
                r.problem(format!("{path}: cluster chain reaches free cluster {c}"));
                return out;
            }
            if self.is_bad(next) {
                r.problem(format!(
                    "{path}: cluster chain reaches a cluster marked bad"
                ));
                return out;
            }
            c = next;
        }
    }
}

/// FAT's short-name checksum over the 11 name bytes.
fn lfn_checksum(name: &[u8]) -> u8 {
    name.iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
}

/// Characters a short name may hold (Microsoft FAT specification, 6.1); 0x05 stands for 0xE5
/// in the first byte.
fn short_name_ok(name: &[u8]) -> bool {
    if name[0] == b' ' {
        return false;
    }
    name.iter().enumerate().all(|(i, &b)| {
        let lower = b.is_ascii_lowercase();
        (b >= 0x20 || (i == 0 && b == 0x05)) && !lower && !b"\"*+,./:;<=>?[\\]|".contains(&b)
    })
}

/// A short name as Windows shows it: byte 12 of the entry may ask for a lower-case base (0x08)
/// or extension (0x10).
fn display_short(name: &[u8], case: u8) -> String {
    let mut base = String::from_utf8_lossy(&name[..8]).trim_end().to_string();
    let mut ext = String::from_utf8_lossy(&name[8..11]).trim_end().to_string();
    if case & 0x08 != 0 {
        base = base.to_ascii_lowercase();
    }
    if case & 0x10 != 0 {
        ext = ext.to_ascii_lowercase();
    }
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// Checks the FAT file system in `range` (read only).
pub fn check(range: &mut DiskRange) -> io::Result<Report> {
    walk(range, false)
}

/// [`check`], and hashes every file's content on the way ([`Report::contents`]): the
/// read-back after an apply, in one pass over the raw clusters (contiguous runs read at once)
/// instead of opening every file through `fatfs`.
pub fn check_and_hash(range: &mut DiskRange) -> io::Result<Report> {
    walk(range, true)
}

fn walk(range: &mut DiskRange, hash: bool) -> io::Result<Report> {
    let mut bs = [0u8; 512];
    range.seek(SeekFrom::Start(0))?;
    range.read_exact(&mut bs)?;
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    if bs[510..512] != [0x55, 0xaa] {
        return Err(bad(
            "no boot sector signature (55 AA): not a FAT file system",
        ));
    }
    let bps = le16(&bs, 11);
    let spc = u64::from(bs[13]);
    let reserved = le16(&bs, 14);
    let fats = u64::from(bs[16]);
    let root_entries = le16(&bs, 17);
    let fat32 = le16(&bs, 22) == 0;
    let fat_size = if fat32 { le32(&bs, 36) } else { le16(&bs, 22) };
    let total = if le16(&bs, 19) != 0 {
        le16(&bs, 19)
    } else {
        le32(&bs, 32)
    };
    if !matches!(bps, 512 | 1024 | 2048 | 4096) || !spc.is_power_of_two() || spc > 128 {
        return Err(bad("the boot sector's sector or cluster size is invalid"));
    }
    if reserved == 0 || fats == 0 || fat_size == 0 {
        return Err(bad("the boot sector's FAT layout is invalid"));
    }
    if total * bps > range.len() {
        return Err(bad(
            "the boot sector claims more sectors than the partition has",
        ));
    }
    let fat_start = reserved * bps;
    let root_start = fat_start + fats * fat_size * bps;
    let data_start = root_start + (root_entries * 32).div_ceil(bps) * bps;
    let cluster_bytes = spc * bps;
    let clusters = (total * bps).saturating_sub(data_start) / cluster_bytes;
    if !fat32 && clusters < 4085 {
        return Err(bad(
            "a FAT12 volume (fewer than 4,085 clusters): tsforge checks FAT16 and FAT32",
        ));
    }
    let fat_entries = fat_size * bps / if fat32 { 4 } else { 2 };
    if clusters + 2 > fat_entries {
        return Err(bad("the FAT is too small for the volume's clusters"));
    }
    let mut fs = Fs {
        range,
        fat32,
        fat_start,
        root_start,
        root_entries,
        data_start,
        cluster_bytes,
        max_cluster: clusters + 1,
        root_cluster: if fat32 { le32(&bs, 44) } else { 0 },
    };
    let mut used = vec![0u64; ((clusters + 2) / 64 + 1) as usize];
    let mut report = Report::default();
    let mut data_buf = Vec::new();
    // (first cluster, 0 = root; path)
    let mut todo: Vec<(u64, String)> = vec![(0, String::new())];
    while let Some((first, path)) = todo.pop() {
        let shown = if path.is_empty() { "/" } else { &path };
        let buf = if first == 0 && !fat32 {
            let mut b = vec![0u8; (fs.root_entries * 32) as usize];
            fs.range.seek(SeekFrom::Start(fs.root_start))?;
            fs.range.read_exact(&mut b)?;
            b
        } else {
            let start = if first == 0 { fs.root_cluster } else { first };
            let clusters = fs.chain(start, shown, &mut used, &mut report);
            let mut b = vec![0u8; clusters.len() * fs.cluster_bytes as usize];
            for (i, c) in clusters.iter().enumerate() {
                let at = i * fs.cluster_bytes as usize;
                fs.range.seek(SeekFrom::Start(fs.cluster_pos(*c)))?;
                fs.range
                    .read_exact(&mut b[at..at + fs.cluster_bytes as usize])?;
            }
            b
        };
        report.dirs += 1;
        // Long-name run in progress: (expected next sequence number, checksum, name parts).
        let mut lfn: Option<(u8, u8, Vec<u16>)> = None;
        let mut labels = 0;
        for (i, e) in buf.chunks_exact(32).enumerate() {
            if e[0] == 0 {
                if buf[i * 32..].iter().any(|&b| b != 0) {
                    report.after_end.push(format!(
                        "{shown}: bytes after the end of the directory (entry {i})"
                    ));
                }
                break;
            }
            if e[0] == 0xe5 {
                lfn = None;
                continue;
            }
            let attr = e[11];
            if attr & 0x3f == 0x0f {
                let seq = e[0] & 0x1f;
                let sum = e[13];
                let mut units = Vec::with_capacity(13);
                for r in [1..11, 14..26, 28..32] {
                    for pair in e[r].chunks_exact(2) {
                        units.push(u16::from_le_bytes([pair[0], pair[1]]));
                    }
                }
                if e[0] & 0x40 != 0 {
                    if let Some((next, ..)) = lfn {
                        report.problem(format!(
                            "{shown}: entry {i}: a long name starts before the previous one \
                             (expected part {next}) ended"
                        ));
                    }
                    if seq == 0 || seq > 20 {
                        report.problem(format!("{shown}: entry {i}: long-name part {seq}"));
                        lfn = None;
                        continue;
                    }
                    let mut parts = units;
                    parts.truncate(13);
                    lfn = Some((seq - 1, sum, parts));
                } else {
                    match lfn.take() {
                        Some((next, s, mut parts)) if next == seq && s == sum && seq > 0 => {
                            units.append(&mut parts);
                            lfn = Some((seq - 1, sum, units));
                        }
                        _ => report.problem(format!(
                            "{shown}: entry {i}: long-name fragment outside a long-name sequence"
                        )),
                    }
                }
                continue;
            }
            let name = &e[..11];
            let pending = lfn.take();
            if attr & 0x08 != 0 {
                // The volume label: once, in the root, without a long name.
                if !path.is_empty() {
                    report.problem(format!(
                        "{shown}: entry {i}: a volume label outside the root"
                    ));
                } else if attr & 0x10 != 0 || labels > 0 || pending.is_some() {
                    report.problem(format!(
                        "{shown}: entry {i}: invalid volume label entry {:?}",
                        String::from_utf8_lossy(name)
                    ));
                }
                labels += 1;
                continue;
            }
            if name == b".          " || name == b"..         " {
                continue;
            }
            if attr & 0xc0 != 0 || !short_name_ok(name) {
                report.problem(format!(
                    "{shown}: entry {i}: invalid short name {:?}",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            let long = match pending {
                Some((0, sum, units)) if sum == lfn_checksum(name) => {
                    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
                    Some(String::from_utf16_lossy(&units[..end]))
                }
                Some(_) => {
                    report.problem(format!(
                        "{shown}: entry {i}: the long name before {} does not belong to it \
                         (checksum or sequence)",
                        display_short(name, e[12])
                    ));
                    None
                }
                None => None,
            };
            let child_name = long.unwrap_or_else(|| display_short(name, e[12]));
            let child = if path.is_empty() {
                child_name
            } else {
                format!("{path}/{child_name}")
            };
            let hi = if fat32 { le16(e, 20) } else { 0 };
            let cluster = (hi << 16) | le16(e, 26);
            let size = le32(e, 28);
            if attr & 0x10 != 0 {
                if cluster == 0 {
                    report.problem(format!("{child}: a directory without clusters"));
                } else {
                    if hash {
                        report.dir_paths.push(child.clone());
                    }
                    todo.push((cluster, child));
                }
            } else {
                report.files += 1;
                let need = size.div_ceil(fs.cluster_bytes);
                if cluster == 0 {
                    if size != 0 {
                        report.problem(format!("{child}: {size} bytes but no clusters"));
                    } else if hash {
                        report.contents.push((child, 0, Sha256::digest([]).into()));
                    }
                    continue;
                }
                let chain = fs.chain(cluster, &child, &mut used, &mut report);
                let got = chain.len() as u64;
                if got != need {
                    report.problem(format!(
                        "{child}: {size} bytes need {need} clusters, the chain has {got}"
                    ));
                } else if hash {
                    let sum = fs.hash(&chain, size, &mut data_buf)?;
                    report.contents.push((child, size, sum));
                }
            }
        }
        if lfn.is_some() {
            report.problem(format!("{shown}: a long name is not followed by its entry"));
        }
    }
    // Lost clusters: used in the FAT, in no chain.
    let mut lost = 0u64;
    for c in 2..=fs.max_cluster {
        let v = fs.entry(c)?;
        if v != 0 && !fs.is_bad(v) && used[(c / 64) as usize] & (1 << (c % 64)) == 0 {
            lost += 1;
        }
    }
    if lost > 0 {
        report.problem(format!(
            "{lost} clusters are marked used but belong to no file or directory (lost clusters)"
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{fat, Disk, MIB};
    use std::io::Write;

    /// A FAT32 file system on a disk image filled with a pattern (not zeros), holding a few
    /// files; returns the image path, the partition's offset and length.
    fn volume(dir: &Path) -> (std::path::PathBuf, u64, u64) {
        let img = dir.join("d.img");
        let disk = Disk::create_image(&img, 64 * MIB).unwrap();
        let mut w = disk.whole().unwrap();
        let junk: Vec<u8> = (0..MIB).map(|i| (i * 131 % 251) as u8 | 1).collect();
        for _ in 0..64 {
            w.write_all(&junk).unwrap();
        }
        w.finish().unwrap();
        let (off, len) = (MIB, 40 * MIB);
        fat::format(
            disk.range(off, len).unwrap(),
            "T",
            Some(fat::FatKind::Fat32),
        )
        .unwrap();
        let fs = fat::open(disk.range(off, len).unwrap()).unwrap();
        for i in 0..40 {
            let body = vec![b'x'; i * 700];
            fs.write_file(
                &format!("dir/a long file name {i}.txt"),
                &mut &body[..],
                None,
            )
            .unwrap();
        }
        fs.close().unwrap();
        (img, off, len)
    }

    fn check_image(img: &Path, off: u64, len: u64) -> Report {
        let disk = Disk::open(img, false).unwrap();
        check(&mut disk.range(off, len).unwrap()).unwrap()
    }

    fn patch(img: &Path, at: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
        f.write_all_at(bytes, at).unwrap();
    }

    /// The first cluster and byte offset of the first file entry of `dir` (its first cluster).
    fn first_file(img: &Path, off: u64) -> (u64, u64, u64) {
        let disk = Disk::open(img, false).unwrap();
        let mut r = disk.range(off, 40 * MIB).unwrap();
        let mut bs = [0u8; 512];
        r.read_exact(&mut bs).unwrap();
        let g = crate::disk::fat::Geometry::parse_boot_sector(&bs).unwrap();
        // The root holds the label and `dir`'s long name and entry.
        let mut root = vec![0u8; g.cluster_bytes() as usize];
        r.seek(SeekFrom::Start(g.cluster_pos(g.root_cluster)))
            .unwrap();
        r.read_exact(&mut root).unwrap();
        let e = root
            .chunks_exact(32)
            .find(|e| e[11] == 0x10)
            .expect("dir's entry");
        let dir = (le16(e, 20) << 16) | le16(e, 26);
        let mut head = vec![0u8; g.cluster_bytes() as usize];
        r.seek(SeekFrom::Start(g.cluster_pos(dir))).unwrap();
        r.read_exact(&mut head).unwrap();
        let (i, e) = head
            .chunks_exact(32)
            .enumerate()
            .find(|(_, e)| e[0] != 0xe5 && e[11] & 0x1f == 0 && le32(e, 28) > 0)
            .expect("a file entry");
        let file = (le16(e, 20) << 16) | le16(e, 26);
        (dir, off + g.cluster_pos(dir) + i as u64 * 32, file)
    }

    #[test]
    fn a_written_volume_is_clean() {
        let t = tempfile::tempdir().unwrap();
        let (img, off, len) = volume(t.path());
        let r = check_image(&img, off, len);
        assert!(r.is_clean(), "{:?}", r.problems);
        assert_eq!(r.files, 40);
        assert_eq!(r.dirs, 2);
    }

    #[test]
    fn garbage_in_a_directory_is_found() {
        let t = tempfile::tempdir().unwrap();
        let (img, off, len) = volume(t.path());
        let (_, entry, _) = first_file(&img, off);
        // Another valid short name under the long name: its checksum no longer matches.
        let disk = Disk::open(&img, false).unwrap();
        let mut name = [0u8; 11];
        let mut r = disk.whole().unwrap();
        r.seek(SeekFrom::Start(entry)).unwrap();
        r.read_exact(&mut name).unwrap();
        name[0] = if name[0] == b'Q' { b'R' } else { b'Q' };
        patch(&img, entry, &name);
        let r = check_image(&img, off, len);
        assert!(
            r.problems.iter().any(|p| p.contains("does not belong")),
            "{:?}",
            r.problems
        );
        // Old bytes where an entry should be: a short name with forbidden characters.
        patch(&img, entry, b"A*B?    TXT");
        let r = check_image(&img, off, len);
        assert!(
            r.problems.iter().any(|p| p.contains("invalid short name")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn bytes_after_the_end_mark_keep_a_volume_from_being_written() {
        let t = tempfile::tempdir().unwrap();
        let (img, off, len) = volume(t.path());
        // The root holds the label and `dir` (3 slots); slot 10 is past its end mark.
        let disk = Disk::open(&img, false).unwrap();
        let mut range = disk.range(off, len).unwrap();
        let r = check(&mut range).unwrap();
        assert!(r.is_clean_for_writing(), "{:?}", r.after_end);
        let mut bs = [0u8; 512];
        range.seek(SeekFrom::Start(0)).unwrap();
        range.read_exact(&mut bs).unwrap();
        let g = crate::disk::fat::Geometry::parse_boot_sector(&bs).unwrap();
        drop((range, disk));
        patch(
            &img,
            off + g.cluster_pos(g.root_cluster) + 10 * 32 + 5,
            b"old",
        );
        let r = check_image(&img, off, len);
        assert!(r.is_clean(), "{:?}", r.problems);
        assert!(!r.is_clean_for_writing());
        assert!(
            r.after_end[0].contains("after the end"),
            "{:?}",
            r.after_end
        );
    }

    #[test]
    fn cross_links_wrong_sizes_and_lost_clusters_are_found() {
        let t = tempfile::tempdir().unwrap();
        let (img, off, len) = volume(t.path());
        let (dir, entry, _) = first_file(&img, off);
        // The file's entry points at the directory's own cluster: cross-linked.
        patch(&img, entry + 26, &(dir as u16).to_le_bytes());
        patch(&img, entry + 20, &((dir >> 16) as u16).to_le_bytes());
        let r = check_image(&img, off, len);
        assert!(
            r.problems.iter().any(|p| p.contains("cross-linked")),
            "{:?}",
            r.problems
        );
        // Its old cluster is now used in the FAT by nothing.
        assert!(
            r.problems.iter().any(|p| p.contains("lost clusters")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn checksum_matches_the_specification_example() {
        // "FILENAMETXT": the checksum fsck.fat and Windows compute.
        let mut s = 0u8;
        for &b in b"FILENAMETXT" {
            s = (if s & 1 != 0 { 0x80 } else { 0 }) + (s >> 1);
            s = s.wrapping_add(b);
        }
        assert_eq!(lfn_checksum(b"FILENAMETXT"), s);
    }

    #[test]
    fn short_names() {
        assert!(short_name_ok(b"README  TXT"));
        assert!(short_name_ok(b"\x05BC     TXT"));
        assert!(!short_name_ok(b"readme  txt"));
        assert!(!short_name_ok(b"A*B     TXT"));
        assert!(!short_name_ok(b"  A     TXT"));
        assert!(!short_name_ok(b"A\x01B     TX"));
    }
}
