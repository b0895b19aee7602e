//! Build a FAT16/FAT32 file system holding a host directory tree in one planned pass, without
//! `fatfs`: [`build`] walks the tree, lays out every directory and file (each contiguous, in a
//! fixed order), checks that it fits, and only then writes, front to back, in large writes.
//!
//! Same file system as [`fat::format`] followed by [`fat::FatFs::copy_tree`] (the boot sector
//! comes from the same code: [`fat::format_in_memory`]), but `fatfs` scans a directory linearly
//! for every file it creates and reads FAT entries one at a time, which made copying a large
//! tree slower than `mcopy`. Here the FATs are generated in 1 MiB chunks, directories are built
//! in memory and file data is streamed through one 4 MiB buffer.
//!
//! Names: long names as VFAT long-name entries (UTF-16, checksum of the short name); short
//! names made as Windows does (upper-cased, spaces and extra periods dropped, characters not
//! allowed in 8.3 names replaced by `_`, `NAME~1.EXT`, `~2`, … when the name does not fit or
//! is taken; Windows switches to a hash after `~4`, we keep counting). A name that already is
//! a valid upper-case 8.3 name is stored as it is, without a long name. Names that differ only
//! in case get different short names, but Windows will see them as the same name: avoid them.
//! Symbolic links are followed; other special files and names that are not UTF-8 or not valid
//! in FAT (`"*/:<>?\|`, control characters, a trailing period or space) are refused.
//!
//! Timestamps: each file's and directory's modification time (UTC, FAT's 2-second
//! resolution; [`fat::now_unix`] when the host has none), also as creation and access date;
//! the label entry gets [`fat::now_unix`] (`SOURCE_DATE_EPOCH` when set). [`build_with`] takes
//! one fixed time for every entry instead (reproducible media from files whose times vary).
//!
//! Write order: the reserved sectors (boot sector, FSInfo, backup) are zeroed first; then both
//! FATs, the directories and the file data go out front to back (writeback of each 4 MiB chunk
//! is started at once, so the sync at the end is short); after a sync the reserved sectors are
//! written last, and synced. On an error they are zeroed again, so a half-built partition never
//! looks like a file system.
//!
//! On a device, everything the file system reads is written (reserved sectors, both FATs in
//! full, every directory cluster including its unused slots); only the unused end of each
//! file's last cluster and the free clusters keep whatever was there.

use super::fat::{self, FatKind, Geometry};
use super::target::DiskRange;
use super::{format_size, MIB};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What [`build`] put into the file system (`dirs` does not count the root).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_LONG_NAME: u8 = 0x0f;
/// A directory holds at most 65,536 entries (2 MiB), Microsoft's FAT specification.
const MAX_DIR_SLOTS: u64 = 65_536;
/// Deeper than this is a symbolic-link loop (FAT paths stop at 260 characters anyway).
const MAX_DEPTH: usize = 128;
/// The write buffer: file data of many small files goes out in one write.
const OUT_BUFFER: usize = 4 * MIB as usize;
/// FAT entries are generated and written this many bytes at a time.
const FAT_CHUNK: u64 = MIB;

enum Target {
    Dir(usize),
    File(usize),
}

struct Entry {
    name: String,
    short: [u8; 11],
    /// Needs long-name entries (the name is not its own short name).
    long: bool,
    mtime: i64,
    target: Target,
}

struct DirNode {
    path: PathBuf,
    parent: usize,
    mtime: i64,
    entries: Vec<Entry>,
    first: u64,
    clusters: u64,
}

struct FileNode {
    path: PathBuf,
    size: u64,
    first: u64,
    clusters: u64,
}

#[derive(Default)]
struct Tree {
    dirs: Vec<DirNode>,
    files: Vec<FileNode>,
}

/// Replace everything in `range` with a FAT file system (`kind`: by size when `None`, as
/// [`fat::format`] chooses) labelled `label`, holding the content of the host directory `src`.
/// Nothing is written when the tree cannot be read, has a name FAT cannot hold, or does not
/// fit; the error says why (and how much space is missing).
pub fn build(
    range: DiskRange,
    src: &Path,
    label: &str,
    kind: Option<FatKind>,
) -> Result<BuildStats> {
    build_with(range, src, label, kind, None, &mut |_, _| {})
}

/// [`build`], with `epoch` (seconds since 1970, UTC), when given, as the time of every file,
/// directory and the label entry and as the seed of the volume serial number (the host files'
/// own times are ignored), and `progress` called with (file bytes copied, file bytes in all)
/// as the data is written.
pub fn build_with(
    mut range: DiskRange,
    src: &Path,
    label: &str,
    kind: Option<FatKind>,
    epoch: Option<i64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BuildStats> {
    let name = range.name().to_string();
    let mut formatted =
        fat::format_in_memory_at(&name, range.len(), range.offset(), label, kind, epoch)?;
    let g = formatted.geometry;
    let meta = std::fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", src.display());
    }
    let mut tree = Tree::default();
    walk(&mut tree, src, 0, mtime_of(&meta), 0)?;
    if let Some(t) = epoch {
        for d in &mut tree.dirs {
            d.mtime = t;
            for e in &mut d.entries {
                e.mtime = t;
            }
        }
    }
    let next_free = plan(&mut tree, &g, src, &name)?;

    // Reserved sectors, with FSInfo's free cluster count and next free cluster filled in.
    let mut reserved = formatted.reserved.clone();
    if g.kind == FatKind::Fat32 {
        let info = (u64::from(u16::from_le_bytes([reserved[48], reserved[49]])) * 512) as usize;
        let max = g.clusters() + 1;
        let free = (max + 1 - next_free) as u32;
        let hint = if next_free <= max {
            next_free as u32
        } else {
            u32::MAX
        };
        reserved[info + 488..info + 492].copy_from_slice(&free.to_le_bytes());
        reserved[info + 492..info + 496].copy_from_slice(&hint.to_le_bytes());
    }
    // The boot sectors are zeroed first and written last, after everything else is on the
    // disk (STYLE §4): an interrupted build leaves nothing that looks like a file system.
    let zeros = vec![0u8; reserved.len()];
    range
        .write_all_at(0, &zeros)
        .with_context(|| format!("clearing the boot sectors on {name}"))?;
    let result = write_tree(
        &mut range,
        &mut formatted,
        &tree,
        next_free,
        &name,
        progress,
    )
    .and_then(|stats| {
        range
            .sync()
            .and_then(|()| range.write_all_at(0, &reserved))
            .with_context(|| format!("writing the boot sectors on {name}"))?;
        Ok(stats)
    });
    match result {
        Ok(stats) => {
            range
                .finish()
                .with_context(|| format!("writing the file system to {name}"))?;
            Ok(stats)
        }
        Err(e) => {
            // Best effort: the error that stopped us is the one to report.
            let _ = range.write_all_at(0, &zeros).and_then(|()| range.finish());
            Err(e)
        }
    }
}

/// Everything but the reserved sectors: both FATs, the directories, the file data.
fn write_tree(
    range: &mut DiskRange,
    formatted: &mut fat::Formatted,
    tree: &Tree,
    next_free: u64,
    name: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BuildStats> {
    let g = formatted.geometry;
    let io_err = |what: &str| format!("{what} on {name}");
    write_fats(range, formatted, tree, next_free).with_context(|| io_err("writing the FATs"))?;

    // Directories, then file data, in cluster order.
    let mut out = Out {
        range,
        pos: 0,
        buf: vec![0u8; OUT_BUFFER],
        len: 0,
    };
    let mut first_dir = 0;
    if g.kind == FatKind::Fat16 {
        let bytes = dir_bytes(tree, 0, &g, &formatted.label_entry)?;
        out.range
            .write_all_at(g.root_dir_start(), &bytes)
            .with_context(|| io_err("writing the root directory"))?;
        first_dir = 1;
    }
    out.pos = g.data_start();
    for d in first_dir..tree.dirs.len() {
        let bytes = dir_bytes(tree, d, &g, &formatted.label_entry)?;
        debug_assert_eq!(out.pos + out.len as u64, g.cluster_pos(tree.dirs[d].first));
        out.put(&bytes)
            .with_context(|| io_err("writing directories"))?;
    }
    let cb = g.cluster_bytes();
    let mut stats = BuildStats {
        files: tree.files.len() as u64,
        dirs: tree.dirs.len() as u64 - 1,
        bytes: 0,
    };
    let total: u64 = tree.files.iter().map(|f| f.size).sum();
    let mut done = 0u64;
    progress(0, total);
    for f in &tree.files {
        if f.clusters == 0 {
            continue;
        }
        debug_assert_eq!(out.pos + out.len as u64, g.cluster_pos(f.first));
        let mut file = std::fs::File::open(&f.path)
            .with_context(|| format!("opening {}", f.path.display()))?;
        out.copy_from(&mut file, f.size, &mut |n| {
            done += n;
            progress(done, total);
        })
        .with_context(|| format!("copying {} to {name}", f.path.display()))?;
        out.zeros(f.clusters * cb - f.size)
            .with_context(|| io_err("writing file data"))?;
        stats.bytes += f.size;
    }
    out.flush().with_context(|| io_err("writing file data"))?;
    Ok(stats)
}

fn mtime_of(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or_else(fat::now_unix)
}

/// Add the directory `path` and everything below it to `tree` (depth first, sorted by name).
fn walk(tree: &mut Tree, path: &Path, parent: usize, mtime: i64, depth: usize) -> Result<usize> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: more than {MAX_DEPTH} directory levels (a symbolic link loop?)",
            path.display()
        );
    }
    let id = tree.dirs.len();
    tree.dirs.push(DirNode {
        path: path.to_path_buf(),
        parent,
        mtime,
        entries: Vec::new(),
        first: 0,
        clusters: 0,
    });
    let mut items = Vec::new();
    for e in
        std::fs::read_dir(path).with_context(|| format!("reading directory {}", path.display()))?
    {
        let e = e.with_context(|| format!("reading directory {}", path.display()))?;
        let p = e.path();
        let name = e.file_name().into_string().map_err(|_| {
            anyhow!(
                "{}: the name is not valid UTF-8 and cannot be stored in FAT",
                p.display()
            )
        })?;
        // `DirEntry::metadata` looks the name up relative to the directory (cheaper than
        // from `/`) but does not follow symbolic links: those are looked up again.
        let meta = e.metadata().ok().filter(|m| !m.file_type().is_symlink());
        items.push((name, p, meta));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::with_capacity(items.len());
    for (name, p, meta) in items {
        check_long_name(&name).map_err(|why| {
            anyhow!(
                "{}: the name {name:?} cannot be stored in FAT ({why})",
                p.display()
            )
        })?;
        let meta = match meta {
            Some(m) => m,
            None => std::fs::metadata(&p)
                .with_context(|| format!("reading metadata of {}", p.display()))?,
        };
        let mtime = mtime_of(&meta);
        let target = if meta.is_dir() {
            Target::Dir(walk(tree, &p, id, mtime, depth + 1)?)
        } else if meta.is_file() {
            if meta.len() > u64::from(u32::MAX) {
                bail!(
                    "{} is {}; a FAT file holds at most 4 GiB - 1 byte",
                    p.display(),
                    format_size(meta.len())
                );
            }
            tree.files.push(FileNode {
                path: p,
                size: meta.len(),
                first: 0,
                clusters: 0,
            });
            Target::File(tree.files.len() - 1)
        } else {
            bail!(
                "{} is not a file or directory (special files cannot go into FAT)",
                p.display()
            );
        };
        entries.push(Entry {
            name,
            short: [b' '; 11],
            long: true,
            mtime,
            target,
        });
    }
    assign_short_names(&mut entries)
        .with_context(|| format!("naming the entries of {}", path.display()))?;
    tree.dirs[id].entries = entries;
    Ok(id)
}

fn check_long_name(name: &str) -> std::result::Result<(), String> {
    if name.encode_utf16().count() > 255 {
        return Err("longer than 255 UTF-16 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| (c as u32) < 0x20 || "\"*/:<>?\\|".contains(c))
    {
        return Err(format!("contains {c:?}"));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err("ends with a period or space, which Windows drops".into());
    }
    Ok(())
}

/// Characters allowed in a short name besides A–Z and 0–9.
const SHORT_EXTRA: &[u8] = b"$%'-_@~`!(){}^#&";

fn short_char_ok(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || SHORT_EXTRA.contains(&b)
}

/// `name` as a short name if it already is a valid upper-case 8.3 name (`README.TXT`).
fn exact_short(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = match name.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (name, None),
    };
    let ok = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(short_char_ok);
    if !ok(base, 8) || ext.is_some_and(|e| !ok(e, 3)) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    if let Some(e) = ext {
        out[8..8 + e.len()].copy_from_slice(e.as_bytes());
    }
    Some(out)
}

/// The Windows basis name of a long name, and whether it holds the name without loss (apart
/// from case), in which case no numeric tail is needed.
fn basis_name(name: &str) -> ([u8; 11], bool) {
    let mut fits = true;
    let trimmed = name.trim_start_matches('.');
    if trimmed.len() != name.len() {
        fits = false;
    }
    let (base, ext) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let mut out = [b' '; 11];
    let fill = |out: &mut [u8; 11], part: &str, at: usize, max: usize, fits: &mut bool| -> usize {
        let mut n = 0;
        for c in part.chars() {
            if c == ' ' || c == '.' {
                *fits = false;
                continue;
            }
            let b = if c.is_ascii() {
                let b = c.to_ascii_uppercase() as u8;
                if short_char_ok(b) {
                    b
                } else {
                    *fits = false;
                    b'_'
                }
            } else {
                *fits = false;
                b'_'
            };
            if n == max {
                *fits = false;
                break;
            }
            out[at + n] = b;
            n += 1;
        }
        n
    };
    if fill(&mut out, base, 0, 8, &mut fits) == 0 {
        out[0] = b'_';
        fits = false;
    }
    fill(&mut out, ext, 8, 3, &mut fits);
    (out, fits)
}

/// `basis` with `~n` at the end of its first part (`LONGNA~1`).
fn with_tail(basis: &[u8; 11], n: u32) -> [u8; 11] {
    let tail = format!("~{n}");
    let len = basis[..8]
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |i| i + 1);
    let keep = len.min(8 - tail.len());
    let mut out = *basis;
    out[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
    out[keep + tail.len()..8].fill(b' ');
    out
}

fn assign_short_names(entries: &mut [Entry]) -> Result<()> {
    let mut taken = HashSet::new();
    for e in entries.iter_mut() {
        if let Some(s) = exact_short(&e.name) {
            e.short = s;
            e.long = false;
            taken.insert(s);
        }
    }
    let mut tails: HashMap<[u8; 11], u32> = HashMap::new();
    for e in entries.iter_mut().filter(|e| e.long) {
        let (basis, fits) = basis_name(&e.name);
        if fits && taken.insert(basis) {
            e.short = basis;
            continue;
        }
        let n = tails.entry(basis).or_insert(1);
        loop {
            if *n > 999_999 {
                bail!("no free short name left for {:?}", e.name);
            }
            let candidate = with_tail(&basis, *n);
            *n += 1;
            if taken.insert(candidate) {
                e.short = candidate;
                break;
            }
        }
    }
    Ok(())
}

fn long_slots(e: &Entry) -> u64 {
    if e.long {
        (e.name.encode_utf16().count() as u64).div_ceil(13)
    } else {
        0
    }
}

/// 32-byte slots of directory `d`: `.` and `..` (or the root's label), then the entries.
fn dir_slots(tree: &Tree, d: usize) -> u64 {
    let own = if d == 0 { 1 } else { 2 };
    own + tree.dirs[d]
        .entries
        .iter()
        .map(|e| 1 + long_slots(e))
        .sum::<u64>()
}

/// Give every directory and file its clusters (root, directories, files; each contiguous) and
/// check the total fits. Returns the first cluster left free.
fn plan(tree: &mut Tree, g: &Geometry, src: &Path, name: &str) -> Result<u64> {
    let cb = g.cluster_bytes();
    let mut next = 2u64;
    for d in 0..tree.dirs.len() {
        let slots = dir_slots(tree, d);
        if slots > MAX_DIR_SLOTS {
            bail!(
                "{} needs {slots} directory entries (long names take one per 13 characters); \
                 a FAT directory holds at most {MAX_DIR_SLOTS}",
                tree.dirs[d].path.display()
            );
        }
        if d == 0 && g.kind == FatKind::Fat16 {
            if slots > g.root_entries {
                bail!(
                    "the top level of {} needs {slots} directory entries (long names take one \
                     per 13 characters); FAT16's root directory holds {}: use FAT32, or put the \
                     files into a subdirectory",
                    src.display(),
                    g.root_entries
                );
            }
            continue;
        }
        let clusters = (slots * 32).div_ceil(cb).max(1);
        tree.dirs[d].first = next;
        tree.dirs[d].clusters = clusters;
        next += clusters;
    }
    if g.kind == FatKind::Fat32 && tree.dirs[0].first != g.root_cluster {
        bail!("unexpected FAT32 root cluster {}", g.root_cluster);
    }
    for f in &mut tree.files {
        f.clusters = f.size.div_ceil(cb);
        if f.clusters > 0 {
            f.first = next;
            next += f.clusters;
        }
    }
    let needed = next - 2;
    if needed > g.clusters() {
        let missing = (needed - g.clusters()) * cb;
        bail!(
            "{} does not fit into {name}: it needs {} ({needed} clusters of {}), the {} file \
             system there holds {}; {} missing",
            src.display(),
            format_size(needed * cb),
            format_size(cb),
            g.kind,
            format_size(g.clusters() * cb),
            format_size(missing)
        );
    }
    Ok(next)
}

/// Both FATs, generated in chunks: the formatted FAT with every chain laid over it.
fn write_fats(
    range: &mut DiskRange,
    formatted: &mut fat::Formatted,
    tree: &Tree,
    next_free: u64,
) -> io::Result<()> {
    let g = formatted.geometry;
    let (width, eoc): (u64, u32) = match g.kind {
        FatKind::Fat32 => (4, 0x0fff_ffff),
        FatKind::Fat16 => (2, 0xffff),
    };
    // The last cluster of every chain, ascending (clusters were assigned in this order).
    let ends: Vec<u64> = tree
        .dirs
        .iter()
        .map(|d| (d.first, d.clusters))
        .chain(tree.files.iter().map(|f| (f.first, f.clusters)))
        .filter(|&(_, n)| n > 0)
        .map(|(first, n)| first + n - 1)
        .collect();
    let mut end_i = 0;
    let total = g.fat_bytes();
    let mut buf = vec![0u8; FAT_CHUNK.min(total) as usize];
    let mut at = 0;
    while at < total {
        let n = (total - at).min(FAT_CHUNK) as usize;
        let chunk = &mut buf[..n];
        formatted.read_fat(at, chunk)?;
        let first = (at / width).max(2);
        let last = ((at + n as u64) / width).min(next_free);
        for c in first..last {
            while end_i < ends.len() && ends[end_i] < c {
                end_i += 1;
            }
            let value = if ends.get(end_i) == Some(&c) {
                eoc
            } else {
                (c + 1) as u32
            };
            let o = (c * width - at) as usize;
            match width {
                4 => chunk[o..o + 4].copy_from_slice(&value.to_le_bytes()),
                _ => chunk[o..o + 2].copy_from_slice(&(value as u16).to_le_bytes()),
            }
        }
        for copy in 0..g.fats {
            range.write_all_at(g.fat_start() + copy * total + at, chunk)?;
        }
        at += n as u64;
    }
    Ok(())
}

fn short_entry(short: &[u8; 11], attr: u8, cluster: u64, size: u64, mtime: i64) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(short);
    e[11] = attr;
    let (date, time) = fat::dos_date_time(mtime);
    e[14..16].copy_from_slice(&time.to_le_bytes());
    e[16..18].copy_from_slice(&date.to_le_bytes());
    e[18..20].copy_from_slice(&date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&time.to_le_bytes());
    e[24..26].copy_from_slice(&date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&(size as u32).to_le_bytes());
    e
}

/// The checksum of a short name that each of its long-name entries carries.
fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// The long-name entries of `name`, in on-disk order (last part first).
fn long_entries(name: &str, short: &[u8; 11], out: &mut Vec<u8>) {
    let units: Vec<u16> = name.encode_utf16().collect();
    let parts = units.len().div_ceil(13);
    let sum = lfn_checksum(short);
    for p in (0..parts).rev() {
        let mut e = [0u8; 32];
        e[0] = (p + 1) as u8 | if p + 1 == parts { 0x40 } else { 0 };
        e[11] = ATTR_LONG_NAME;
        e[13] = sum;
        for k in 0..13 {
            let i = p * 13 + k;
            let u: u16 = match i.cmp(&units.len()) {
                std::cmp::Ordering::Less => units[i],
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 0xffff,
            };
            let o = match k {
                0..=4 => 1 + 2 * k,
                5..=10 => 14 + 2 * (k - 5),
                _ => 28 + 2 * (k - 11),
            };
            e[o..o + 2].copy_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&e);
    }
}

/// Directory `d` as it goes on the disk, unused slots zeroed to the end of its last cluster
/// (FAT16's root: of its fixed region).
fn dir_bytes(tree: &Tree, d: usize, g: &Geometry, label_entry: &[u8; 32]) -> Result<Vec<u8>> {
    let dir = &tree.dirs[d];
    let size = if d == 0 && g.kind == FatKind::Fat16 {
        g.data_start() - g.root_dir_start()
    } else {
        dir.clusters * g.cluster_bytes()
    };
    let mut out = Vec::with_capacity(size as usize);
    if d == 0 {
        out.extend_from_slice(label_entry);
    } else {
        let parent = if dir.parent == 0 {
            0 // `..` of a first-level directory is cluster 0, even on FAT32
        } else {
            tree.dirs[dir.parent].first
        };
        let mut dot = [b' '; 11];
        dot[0] = b'.';
        out.extend_from_slice(&short_entry(&dot, ATTR_DIRECTORY, dir.first, 0, dir.mtime));
        dot[1] = b'.';
        out.extend_from_slice(&short_entry(&dot, ATTR_DIRECTORY, parent, 0, dir.mtime));
    }
    for e in &dir.entries {
        if e.long {
            long_entries(&e.name, &e.short, &mut out);
        }
        let entry = match e.target {
            Target::Dir(i) => short_entry(&e.short, ATTR_DIRECTORY, tree.dirs[i].first, 0, e.mtime),
            Target::File(i) => {
                let f = &tree.files[i];
                short_entry(&e.short, ATTR_ARCHIVE, f.first, f.size, e.mtime)
            }
        };
        out.extend_from_slice(&entry);
    }
    if out.len() as u64 > size {
        bail!("{}: directory larger than planned", dir.path.display());
    }
    out.resize(size as usize, 0);
    Ok(out)
}

fn read_retry(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// A sequential writer over the data area: consecutive clusters collect in one buffer that
/// goes out in one write when full.
struct Out<'a> {
    range: &'a mut DiskRange,
    /// Where `buf[0]` goes.
    pos: u64,
    buf: Vec<u8>,
    len: usize,
}

impl Out<'_> {
    fn room(&mut self) -> io::Result<usize> {
        if self.len == self.buf.len() {
            self.flush()?;
        }
        Ok(self.buf.len() - self.len)
    }

    fn put(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.room()?.min(data.len());
            self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let m = (self.room()? as u64).min(n) as usize;
            self.buf[self.len..self.len + m].fill(0);
            self.len += m;
            n -= m as u64;
        }
        Ok(())
    }

    /// Exactly `n` bytes of `file`, which must end there. The last read asks for one byte
    /// more when the buffer has room, so a file that grew is noticed without an extra read.
    fn copy_from(
        &mut self,
        file: &mut std::fs::File,
        mut n: u64,
        copied: &mut dyn FnMut(u64),
    ) -> io::Result<()> {
        loop {
            let room = self.room()?;
            let ask = (room as u64).min(n + 1) as usize;
            let got = read_retry(file, &mut self.buf[self.len..self.len + ask])?;
            if got as u64 > n {
                return Err(io::Error::other("the file grew while it was being copied"));
            }
            if got == 0 && n > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was being copied",
                ));
            }
            self.len += got;
            n -= got as u64;
            copied(got as u64);
            // A short read of a regular file is its end; an empty one certainly is.
            if n == 0 && (got < ask || got == 0) {
                return Ok(());
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.range.write_all_at(self.pos, &self.buf[..self.len])?;
        self.range.start_writeback(self.pos, self.len as u64);
        self.pos += self.len as u64;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            short: [b' '; 11],
            long: true,
            mtime: 0,
            target: Target::File(0),
        }
    }

    fn shorts(names: &[&str]) -> Vec<(String, bool)> {
        let mut es: Vec<Entry> = names.iter().map(|n| entry(n)).collect();
        assign_short_names(&mut es).unwrap();
        es.iter()
            .map(|e| (String::from_utf8_lossy(&e.short).into_owned(), e.long))
            .collect()
    }

    #[test]
    fn short_names_the_windows_way() {
        let got = shorts(&[
            "README.TXT",
            "readme.txt",
            "Readme.txt",
            "long file name.html",
            "long file name 2.html",
            "a+b.c",
            ".bashrc",
            "x.tar.gz",
            "ÉTÉ.doc",
            "file.txt",
        ]);
        let want = [
            ("README  TXT", false),
            ("README~1TXT", true),
            ("README~2TXT", true),
            ("LONGFI~1HTM", true),
            ("LONGFI~2HTM", true),
            ("A_B~1   C  ", true),
            ("BASHRC~1   ", true),
            ("XTAR~1  GZ ", true),
            ("_T_~1   DOC", true),
            ("FILE    TXT", true),
        ];
        let want: Vec<(String, bool)> = want.iter().map(|(s, l)| (s.to_string(), *l)).collect();
        assert_eq!(got, want);
        assert_eq!(with_tail(b"ABCDEFGHTXT", 123), *b"ABCD~123TXT");
    }

    #[test]
    fn checksum_and_long_entries() {
        // fatgen103's algorithm, checked against mkfs/mtools output for "README  TXT".
        let s = *b"README  TXT";
        let mut sum = 0u8;
        for b in s {
            sum = (if sum & 1 != 0 { 0x80u8 } else { 0 })
                .wrapping_add(sum >> 1)
                .wrapping_add(b);
        }
        assert_eq!(lfn_checksum(&s), sum);
        let mut out = Vec::new();
        long_entries("a name of 14 c", &s, &mut out);
        assert_eq!(out.len(), 64);
        assert_eq!(out[0], 0x42);
        assert_eq!(out[32], 0x01);
        assert_eq!(&out[33..35], &[b'a', 0]);
        assert_eq!(&out[1..5], &[b'c', 0, 0, 0], "name end, then a NUL");
        assert_eq!(&out[5..7], &[0xff, 0xff], "then 0xFFFF padding");
    }

    #[test]
    fn bad_names_refused() {
        assert!(check_long_name("a:b").is_err());
        assert!(check_long_name("trailing.").is_err());
        assert!(check_long_name(&"x".repeat(256)).is_err());
        assert!(check_long_name("ünïcode name ✓.txt").is_ok());
    }
}
