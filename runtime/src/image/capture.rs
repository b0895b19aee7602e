//! Capture: tree → image.
//!
//! Two passes over the source. The first hashes every file on all threads: the manifest,
//! which must come first in the archive, needs every sha256, and the hashes find duplicate
//! contents. The second compresses each distinct content on all threads into memory (files up
//! to [`IN_MEMORY_MAX`]) and one thread writes the finished entries in manifest order; larger
//! files are compressed by the writing thread itself, zstd with its own worker threads. The
//! second pass hashes again and fails if a file changed in between.

use super::format::{
    Compression, EntryType, Manifest, ManifestEntry, ZipWriter, FORMAT_ID, FORMAT_VERSION,
    MANIFEST_NAME, METHOD_DEFLATE, METHOD_STORED, METHOD_ZSTD,
};
use super::tree::{EntryKind, Meta, OwnerNames, RelPath, SourceEntry, Special, TreeSource};
use super::{CaptureOptions, ImageInfo, Progress};
use crate::sys::{hex, BUFFER_SIZE};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

/// zstd level: 3 is zstd's default; see bench/image/README.md for the measurements.
pub const ZSTD_LEVEL: i32 = 3;
/// Files up to this size are compressed in memory by the worker threads.
pub const IN_MEMORY_MAX: u64 = 32 << 20;
/// Compressed bytes the worker threads may hold ahead of the writer.
const IN_FLIGHT_MAX: u64 = 256 << 20;
/// The first bytes compressed on trial to detect already-compressed data.
const TRIAL: usize = 64 << 10;
/// Contents up to this size go into packs (`p/<n>` entries holding several contents one after
/// the other, compressed as one): compressing a file alone loses the context its neighbours
/// give (kernel modules, man pages and libraries resemble each other), and each entry costs
/// two headers. Measured on the Debian 12 reference system (676 MiB; bench/image/os.sh):
/// every content alone 248.0 MB; packs of contents up to 256 KiB closed at 4 MiB 217.5 MB;
/// up to 1 MiB at 8 MiB 213.6 MB; up to 4 MiB at 16 MiB 212.7 MB, and the fastest of the
/// three (zstd runs faster on the more redundant input). tar + zstd -3: 218.6 MB.
pub const PACK_MEMBER_MAX: u64 = 4 << 20;
/// A pack is closed once it holds this much (so a pack is at most 20 MiB, well inside
/// [`IN_MEMORY_MAX`]: packs are always compressed in memory).
pub const PACK_TARGET: u64 = 16 << 20;
const _: () = assert!(PACK_TARGET + PACK_MEMBER_MAX <= IN_MEMORY_MAX);

/// [`capture_at`] with the creation time from `SOURCE_DATE_EPOCH`, or now.
pub fn capture(
    src: &dyn TreeSource,
    out: &Path,
    opts: &CaptureOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageInfo> {
    capture_at(
        src,
        out,
        opts,
        crate::sys::source_date_epoch_or_now()?,
        progress,
    )
}

/// Captures `src` into the image `out` (written as `out.tmp`, synced, then renamed over
/// `out`); `created` is the creation time (Unix seconds) in the manifest and on every entry.
pub fn capture_at(
    src: &dyn TreeSource,
    out: &Path,
    opts: &CaptureOptions,
    created: i64,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageInfo> {
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a file name", out.display()))?;
    let tmp: PathBuf = out.with_file_name(format!("{}.tmp", name.to_string_lossy()));
    let r = capture_to(src, &tmp, opts, created, progress);
    match r {
        Ok(info) => {
            crate::sys::rename_durable(&tmp, out)?;
            Ok(info)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn threads(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Sorts by components, so a directory comes right before what it holds.
fn path_order(a: &RelPath, b: &RelPath) -> std::cmp::Ordering {
    a.components().cmp(b.components())
}

/// A distinct content to store.
struct Job<'a> {
    hash: [u8; 32],
    /// CRC-32 of the content as pass 1 read it: pass 2 checks the bytes it reads against it
    /// (and the ZIP record needs it anyway), rather than hashing everything a second time.
    crc: u32,
    path: &'a RelPath,
    size: u64,
}

/// What pass 2 writes as one entry: a content alone (`d/<hash>`), or a pack of small
/// contents (`p/<n>`, indices into the jobs, in job order).
enum Unit {
    One(usize),
    Pack { n: u32, jobs: Vec<usize>, size: u64 },
}

impl Unit {
    fn size(&self, jobs: &[Job]) -> u64 {
        match self {
            Unit::One(j) => jobs[*j].size,
            Unit::Pack { size, .. } => *size,
        }
    }
    fn files(&self) -> u64 {
        match self {
            Unit::One(_) => 1,
            Unit::Pack { jobs, .. } => jobs.len() as u64,
        }
    }
    /// What compressing it holds in memory ahead of the writer: its size, or nothing for a
    /// content too large for memory (the writer streams it).
    fn cost(&self, jobs: &[Job]) -> u64 {
        match self {
            Unit::One(j) if jobs[*j].size > IN_MEMORY_MAX => 0,
            u => u.size(jobs),
        }
    }
}

/// The entries pass 2 writes, in the order of their first content: contents of at most
/// [`PACK_MEMBER_MAX`] bytes gathered into packs of about [`PACK_TARGET`] (none with
/// `Compression::None`: nothing to gain), the others alone.
fn units(jobs: &[Job], compression: Compression) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut open: Option<usize> = None;
    let mut packs = 0u32;
    for (i, j) in jobs.iter().enumerate() {
        if compression == Compression::None || j.size > PACK_MEMBER_MAX {
            units.push(Unit::One(i));
            continue;
        }
        let u = match open {
            Some(u) => u,
            None => {
                units.push(Unit::Pack {
                    n: packs,
                    jobs: Vec::new(),
                    size: 0,
                });
                packs += 1;
                units.len() - 1
            }
        };
        if let Unit::Pack { jobs: m, size, .. } = &mut units[u] {
            m.push(i);
            *size += j.size;
            open = (*size < PACK_TARGET).then_some(u);
        }
    }
    units
}

/// A compressed entry ready to write.
struct Packed {
    method: u16,
    crc: u32,
    data: Vec<u8>,
}

enum Done {
    Packed(Packed),
    /// Too large for memory: the writer compresses it.
    Large,
}

/// The capture itself, into `tmp`: the entries, pass 1, the manifest, pass 2 (see the module's
/// documentation).
fn capture_to(
    src: &dyn TreeSource,
    tmp: &Path,
    opts: &CaptureOptions,
    created: i64,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageInfo> {
    let entries = sorted_entries(src)?;
    let files: Vec<&SourceEntry> = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { size } if size > 0))
        .collect();
    let total_bytes: u64 = files.iter().map(|e| size_of(e)).sum();
    let files_total = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .count() as u64;
    let mut c = Capture {
        src,
        tmp,
        nthreads: threads(opts.threads),
        compression: opts.compression,
        p: Progress {
            bytes_done: 0,
            bytes_total: total_bytes * 2,
            files_done: 0,
            files_total: files_total * 2,
        },
        progress,
    };
    c.report();

    // Pass 1: hash every file.
    let sums = c.hash_files(&files)?;
    let jobs = distinct_contents(&files, &sums)?;
    let units = units(&jobs, opts.compression);
    let hashes: Vec<[u8; 32]> = sums.iter().map(|s| s.0).collect();
    let stored_bytes: u64 = jobs.iter().map(|j| j.size).sum();
    c.p.bytes_total = total_bytes + stored_bytes;
    c.p.files_done = files_total;
    c.p.files_total = files_total + jobs.len() as u64;
    c.report();

    // The manifest, the archive's first entry.
    let names = src.owner_names();
    let root = src.root_meta()?;
    let mut pack_of: HashMap<[u8; 32], u32> = HashMap::new();
    for u in &units {
        if let Unit::Pack {
            n, jobs: members, ..
        } = u
        {
            for j in members {
                pack_of.insert(jobs[*j].hash, *n);
            }
        }
    }
    let (m, counts) = manifest(
        root.as_ref(),
        &entries,
        Stored {
            files: &files,
            hashes: &hashes,
            pack_of: &pack_of,
        },
        &names,
        opts,
        created,
    );
    let json = serde_json::to_vec(&m).context("serializing the manifest")?;
    let mut zw = c.create_archive(&json, created)?;

    // Pass 2: compress distinct contents on the workers, write them here in order.
    c.write_contents(&jobs, &units, &mut zw)?;
    let image_bytes = c.finish_archive(zw)?;
    Ok(ImageInfo {
        name: m.name,
        description: m.description,
        created,
        tsforge_version: m.tsforge_version,
        compression: m.compression,
        files: files_total,
        dirs: counts.dirs,
        symlinks: counts.symlinks,
        hardlinks: counts.hardlinks,
        devices: counts.devices,
        fifos: counts.fifos,
        total_bytes,
        stored_bytes,
        image_bytes,
        // What the source left out is the source's to report (`TreeSource::left_out`): the
        // callers list it (stderr, smsts.log) next to the options that caused it.
        warnings: Vec::new(),
    })
}

/// The source's entries in [`path_order`]; a path listed twice is refused. The names of a
/// file with several (same [`SourceEntry::inode`]) become one `File`, the first in path
/// order, and `Hardlink`s to it: their content is read once.
fn sorted_entries(src: &dyn TreeSource) -> Result<Vec<SourceEntry>> {
    let mut entries = src.entries()?;
    entries.sort_by(|a, b| path_order(&a.path, &b.path));
    if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
        bail!("the source lists {} twice", w[0].path);
    }
    let mut first: HashMap<(u64, u64), RelPath> = HashMap::new();
    for e in &mut entries {
        let (Some(key), EntryKind::File { .. }) = (e.inode, &e.kind) else {
            continue;
        };
        match first.get(&key) {
            Some(target) => {
                e.kind = EntryKind::Hardlink {
                    target: target.clone(),
                }
            }
            None => {
                first.insert(key, e.path.clone());
            }
        }
    }
    Ok(entries)
}

/// Distinct contents, in the order of their first path. Entry names carry 128 bits of the
/// hash: two different contents sharing them would make the image unreadable, so refuse (it
/// does not happen by chance).
fn distinct_contents<'e>(files: &[&'e SourceEntry], sums: &[Sums]) -> Result<Vec<Job<'e>>> {
    let mut seen: HashMap<[u8; 32], ()> = HashMap::new();
    let mut jobs: Vec<Job> = Vec::new();
    for (e, (h, crc)) in files.iter().zip(sums) {
        if seen.insert(*h, ()).is_none() {
            jobs.push(Job {
                hash: *h,
                crc: *crc,
                path: &e.path,
                size: size_of(e),
            });
        }
    }
    let mut names = std::collections::HashSet::with_capacity(jobs.len());
    for j in &jobs {
        if !names.insert(super::format::content_name(&hex(&j.hash))) {
            bail!("two different contents share the first 128 bits of their sha256");
        }
    }
    Ok(jobs)
}

/// How many entries of each kind besides files a manifest lists.
#[derive(Default)]
struct Counts {
    dirs: u64,
    symlinks: u64,
    hardlinks: u64,
    devices: u64,
    fifos: u64,
}

/// The manifest: the options, then every entry in order, files with their hash (`hashes`
/// belong to `files`, the non-empty ones), owners with their names in `names`; and the counts
/// of the other kinds.
/// The metadata fields of a manifest entry, from `meta` (names from the tree's own
/// `etc/passwd` and `etc/group`).
fn put_meta(me: &mut ManifestEntry, meta: &Meta, names: &OwnerNames) {
    me.mode = meta.mode;
    me.mtime_ns = meta.mtime_ns;
    me.uid = meta.uid;
    me.gid = meta.gid;
    me.user = meta.uid.and_then(|u| names.users.get(&u).cloned());
    me.group = meta.gid.and_then(|g| names.groups.get(&g).cloned());
    if !meta.xattrs.is_empty() {
        me.xattrs = Some(
            meta.xattrs
                .iter()
                .map(|(k, v)| (k.clone(), super::xattrs::encode(v)))
                .collect(),
        );
    }
}

/// The files with content, their hashes (in the same order) and the pack of each packed hash.
struct Stored<'a> {
    files: &'a [&'a SourceEntry],
    hashes: &'a [[u8; 32]],
    pack_of: &'a HashMap<[u8; 32], u32>,
}

fn manifest(
    root: Option<&Meta>,
    entries: &[SourceEntry],
    stored: Stored,
    names: &OwnerNames,
    opts: &CaptureOptions,
    created: i64,
) -> (Manifest, Counts) {
    let Stored {
        files,
        hashes,
        pack_of,
    } = stored;
    let mut by_path: HashMap<&RelPath, [u8; 32]> = HashMap::new();
    for (e, h) in files.iter().zip(hashes) {
        by_path.insert(&e.path, *h);
    }
    let mut m = Manifest {
        format: FORMAT_ID.into(),
        version: FORMAT_VERSION,
        name: opts.name.clone(),
        description: opts.description.clone(),
        created,
        tsforge_version: env!("CARGO_PKG_VERSION").into(),
        compression: opts.compression,
        root: root.map(|meta| {
            let mut me = ManifestEntry::new(String::new(), EntryType::Dir);
            put_meta(&mut me, meta, names);
            me
        }),
        entries: Vec::with_capacity(entries.len()),
    };
    let mut n = Counts::default();
    for e in entries {
        let mut me = ManifestEntry::new(e.path.as_str().to_string(), EntryType::Dir);
        match &e.kind {
            EntryKind::Dir => n.dirs += 1,
            EntryKind::File { size } => {
                me.kind = EntryType::File;
                me.size = Some(*size);
                me.sha256 = by_path.get(&e.path).map(|h| hex(h));
                me.pack = by_path.get(&e.path).and_then(|h| pack_of.get(h)).copied();
                me.sparse = e.meta.sparse.then_some(true);
            }
            EntryKind::Symlink { target } => {
                n.symlinks += 1;
                me.kind = EntryType::Symlink;
                me.target = Some(target.clone());
            }
            EntryKind::Hardlink { target } => {
                // A hard link has no metadata of its own: it is its target's inode.
                n.hardlinks += 1;
                me.kind = EntryType::Hardlink;
                me.target = Some(target.as_str().to_string());
                m.entries.push(me);
                continue;
            }
            EntryKind::Special(Special::Device {
                block,
                major,
                minor,
            }) => {
                n.devices += 1;
                me.kind = if *block {
                    EntryType::Blockdev
                } else {
                    EntryType::Chardev
                };
                me.major = Some(*major);
                me.minor = Some(*minor);
            }
            EntryKind::Special(Special::Fifo) => {
                n.fifos += 1;
                me.kind = EntryType::Fifo;
            }
        }
        put_meta(&mut me, &e.meta, names);
        m.entries.push(me);
    }
    (m, n)
}

/// The archive being written.
type Archive = ZipWriter<BufWriter<fs::File>>;

/// One capture under way: the source, the output being written, and the progress both passes
/// report.
struct Capture<'a> {
    src: &'a dyn TreeSource,
    tmp: &'a Path,
    nthreads: usize,
    compression: Compression,
    p: Progress,
    progress: &'a mut dyn FnMut(&Progress),
}

impl Capture<'_> {
    /// Reports the progress so far.
    fn report(&mut self) {
        (self.progress)(&self.p);
    }

    /// Pass 1: hashes every file on all threads (the manifest needs every sha256 before the
    /// contents, and the hashes find duplicates), reporting each file; the hashes in `files`'
    /// order.
    fn hash_files(&mut self, files: &[&SourceEntry]) -> Result<Vec<Sums>> {
        let mut hashes: Vec<Sums> = vec![([0; 32], 0); files.len()];
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<(usize, Result<Sums>)>();
        let src = self.src;
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..self.nthreads.min(files.len().max(1)) {
                let tx = tx.clone();
                let next = &next;
                s.spawn(move || hash_worker(src, files, next, tx));
            }
            drop(tx);
            for (i, r) in rx {
                hashes[i] = r?;
                self.p.bytes_done += size_of(files[i]);
                self.p.files_done += 1;
                self.report();
            }
            Ok(())
        })?;
        if self.p.files_done != files.len() as u64 {
            bail!("hashing stopped early (a worker thread failed)");
        }
        Ok(hashes)
    }

    /// Creates the archive at `tmp` with the manifest (deflated) as its first entry.
    fn create_archive(&self, json: &[u8], created: i64) -> Result<Archive> {
        let tmp = self.tmp;
        let f = fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut zw = ZipWriter::new(BufWriter::with_capacity(4 << 20, f), created);
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(json)?;
        let data = enc.finish()?;
        zw.add(
            MANIFEST_NAME,
            METHOD_DEFLATE,
            crc32fast::hash(json),
            json.len() as u64,
            &data,
        )
        .with_context(|| format!("writing {}", tmp.display()))?;
        Ok(zw)
    }

    /// Pass 2: the worker threads compress the distinct contents into memory, within the
    /// [`Window`]; this thread writes them in manifest order (see [`Self::write_in_order`]).
    fn write_contents(&mut self, jobs: &[Job], units: &[Unit], zw: &mut Archive) -> Result<()> {
        let window = Window::new();
        let (src, compression) = (self.src, self.compression);
        let (tx, rx) = mpsc::channel::<(usize, Result<Done>)>();
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..self.nthreads.min(units.len().max(1)) {
                let tx = tx.clone();
                let window = &window;
                s.spawn(move || compress_worker(src, jobs, units, window, compression, tx));
            }
            drop(tx);
            let r = self.write_in_order(jobs, units, &rx, &window, zw);
            window.stop();
            r
        })
    }

    /// The writing side of pass 2: each unit's result in order (keeping those that arrive
    /// early), written into the archive; a content too large for memory is compressed here,
    /// streamed. Reports each unit.
    fn write_in_order(
        &mut self,
        jobs: &[Job],
        units: &[Unit],
        rx: &mpsc::Receiver<(usize, Result<Done>)>,
        window: &Window,
        zw: &mut Archive,
    ) -> Result<()> {
        let tmp = self.tmp;
        let mut pending: BTreeMap<usize, Result<Done>> = BTreeMap::new();
        for (i, u) in units.iter().enumerate() {
            let done = loop {
                if let Some(d) = pending.remove(&i) {
                    break d;
                }
                let (k, d) = rx.recv().context("a compression thread stopped")?;
                pending.insert(k, d);
            };
            let size = u.size(jobs);
            let name = match u {
                Unit::One(j) => super::format::content_name(&hex(&jobs[*j].hash)),
                Unit::Pack { n, .. } => super::format::pack_name(*n),
            };
            match (done?, u) {
                (Done::Packed(pk), _) => {
                    zw.add(&name, pk.method, pk.crc, size, &pk.data)
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    window.written(u.cost(jobs));
                }
                (Done::Large, Unit::One(j)) => {
                    write_large(
                        self.src,
                        &jobs[*j],
                        &name,
                        self.compression,
                        self.nthreads,
                        zw,
                    )
                    .with_context(|| format!("writing {}", tmp.display()))?;
                    window.written(0);
                }
                (Done::Large, Unit::Pack { .. }) => bail!("a pack is never streamed"),
            }
            self.p.bytes_done += size;
            self.p.files_done += u.files();
            self.report();
        }
        Ok(())
    }

    /// Ends the archive (central directory) and syncs it: the image's size in bytes.
    fn finish_archive(&self, zw: Archive) -> Result<u64> {
        let tmp = self.tmp;
        let (bw, image_bytes) = zw
            .finish()
            .with_context(|| format!("writing {}", tmp.display()))?;
        let f = bw
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        Ok(image_bytes)
    }
}

/// A hashing thread of pass 1: hashes the next file not yet taken until none are left, and
/// sends each result; after a failure, or once nobody receives, it stops the others early too.
fn hash_worker(
    src: &dyn TreeSource,
    files: &[&SourceEntry],
    next: &AtomicUsize,
    tx: mpsc::Sender<(usize, Result<Sums>)>,
) {
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(e) = files.get(i) else { break };
        let r = hash_file(src, e, &mut buf);
        let failed = r.is_err();
        if tx.send((i, r)).is_err() || failed {
            // Stop the others early too.
            next.store(usize::MAX / 2, Ordering::Relaxed);
            break;
        }
    }
}

/// The jobs of pass 2 as the compression threads take them: the next one, and the compressed
/// bytes held ahead of the writer, at most [`IN_FLIGHT_MAX`].
struct Window {
    state: Mutex<WindowState>,
    cv: Condvar,
}

/// What [`Window`]'s lock guards.
struct WindowState {
    next: usize,
    written: usize,
    in_flight: u64,
    stop: bool,
}

impl Window {
    fn new() -> Window {
        Window {
            state: Mutex::new(WindowState {
                next: 0,
                written: 0,
                in_flight: 0,
                stop: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// The next job for a compression thread, waiting while the window is full; `None` once
    /// every job is taken or the writer has stopped.
    fn take(&self, units: &[Unit], jobs: &[Job]) -> Option<usize> {
        let mut w = self.state.lock().expect("window lock poisoned");
        loop {
            if w.stop || w.next >= units.len() {
                return None;
            }
            let cost = units[w.next].cost(jobs);
            // Always let the oldest unwritten job run, so one big file cannot stall the window.
            if w.in_flight == 0 || w.in_flight + cost <= IN_FLIGHT_MAX {
                w.in_flight += cost;
                w.next += 1;
                return Some(w.next - 1);
            }
            w = self.cv.wait(w).expect("window lock poisoned");
        }
    }

    /// A job was written: its `freed` bytes (0 for a large one, which never held any) leave
    /// the window.
    fn written(&self, freed: u64) {
        {
            let mut w = self.state.lock().expect("window lock poisoned");
            w.in_flight -= freed;
            w.written += 1;
        }
        self.cv.notify_all();
    }

    /// The writer is done (or failed): the threads take no more jobs.
    fn stop(&self) {
        self.state.lock().expect("window lock poisoned").stop = true;
        self.cv.notify_all();
    }
}

/// A compression thread of pass 2: compresses each job it takes into memory (one too large
/// for memory is left to the writer) and sends the result; stops when nobody receives.
fn compress_worker(
    src: &dyn TreeSource,
    jobs: &[Job],
    units: &[Unit],
    window: &Window,
    compression: Compression,
    tx: mpsc::Sender<(usize, Result<Done>)>,
) {
    let mut zc = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
    while let Some(i) = window.take(units, jobs) {
        let r = match &units[i] {
            Unit::One(j) if jobs[*j].size > IN_MEMORY_MAX => Ok(Done::Large),
            Unit::One(j) => read_one(src, &jobs[*j])
                .and_then(|data| {
                    compress(
                        data,
                        &jobs[*j].path.to_string(),
                        true,
                        compression,
                        zc.as_mut(),
                    )
                })
                .map(Done::Packed),
            Unit::Pack {
                jobs: members,
                size,
                ..
            } => read_pack(src, jobs, members, *size)
                .and_then(|data| {
                    compress(
                        data,
                        "a pack of small files",
                        false,
                        compression,
                        zc.as_mut(),
                    )
                })
                .map(Done::Packed),
        };
        if tx.send((i, r)).is_err() {
            return;
        }
    }
}

fn size_of(e: &SourceEntry) -> u64 {
    match e.kind {
        EntryKind::File { size } => size,
        _ => 0,
    }
}

fn changed(path: &RelPath) -> anyhow::Error {
    anyhow::anyhow!(
        "{path} changed while it was being captured (its size or content differs between \
         reads); capture a tree that nothing is writing to"
    )
}

/// A content's sha256 and CRC-32.
type Sums = ([u8; 32], u32);

fn hash_file(src: &dyn TreeSource, e: &SourceEntry, buf: &mut [u8]) -> Result<Sums> {
    let mut r = src.open(&e.path)?;
    let mut h = Sha256::new();
    let mut crc = crc32fast::Hasher::new();
    let mut n = 0u64;
    loop {
        let k = r.read(buf).with_context(|| format!("reading {}", e.path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        crc.update(&buf[..k]);
        n += k as u64;
    }
    if n != size_of(e) {
        return Err(changed(&e.path));
    }
    Ok((h.finalize().into(), crc.finalize()))
}

/// Reads exactly `size` bytes of `path` (fails if the file changed size).
fn read_all(src: &dyn TreeSource, path: &RelPath, size: u64) -> Result<Vec<u8>> {
    let mut r = src.open(path)?;
    let mut data = Vec::with_capacity(size as usize);
    (&mut r)
        .take(size + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("reading {path}"))?;
    if data.len() as u64 != size {
        return Err(changed(path));
    }
    Ok(data)
}

/// True when `sample` does not shrink by at least 3% with fast zstd: already compressed.
fn incompressible(sample: &[u8]) -> bool {
    match zstd::bulk::compress(sample, 1) {
        Ok(c) => c.len() as u64 * 100 >= sample.len() as u64 * 97,
        Err(_) => false,
    }
}

/// The content of job `j`, read again and checked against pass 1 (size and CRC-32).
fn read_one(src: &dyn TreeSource, j: &Job) -> Result<Vec<u8>> {
    let data = read_all(src, j.path, j.size)?;
    if crc32fast::hash(&data) != j.crc {
        return Err(changed(j.path));
    }
    Ok(data)
}

/// The contents of a pack's jobs one after the other, each read again and checked against
/// pass 1 (size and CRC-32).
fn read_pack(src: &dyn TreeSource, jobs: &[Job], members: &[usize], size: u64) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(size as usize);
    for m in members {
        let j = &jobs[*m];
        let start = data.len();
        let mut r = src.open(j.path)?;
        (&mut r)
            .take(j.size + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("reading {}", j.path))?;
        if (data.len() - start) as u64 != j.size || crc32fast::hash(&data[start..]) != j.crc {
            return Err(changed(j.path));
        }
    }
    Ok(data)
}

/// `data` as a ZIP entry's bytes: compressed, or stored when compression was not asked for,
/// when its start does not shrink by trial, or when it does not shrink at all. `what` names it
/// in messages.
fn compress(
    data: Vec<u8>,
    what: &str,
    trial: bool,
    compression: Compression,
    zc: Option<&mut zstd::bulk::Compressor<'static>>,
) -> Result<Packed> {
    let crc = crc32fast::hash(&data);
    let stored = |data: Vec<u8>| Packed {
        method: METHOD_STORED,
        crc,
        data,
    };
    if compression == Compression::None || (trial && incompressible(&data[..data.len().min(TRIAL)]))
    {
        return Ok(stored(data));
    }
    let packed = match compression {
        Compression::Zstd => {
            let c = match zc {
                Some(zc) => zc.compress(&data),
                None => zstd::bulk::compress(&data, ZSTD_LEVEL),
            }
            .with_context(|| format!("compressing {what}"))?;
            (METHOD_ZSTD, c)
        }
        _ => {
            let mut enc = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::new(6),
            );
            enc.write_all(&data)?;
            (METHOD_DEFLATE, enc.finish()?)
        }
    };
    // Keep the compressed form only when it saves something.
    if packed.1.len() >= data.len() {
        return Ok(stored(data));
    }
    Ok(Packed {
        method: packed.0,
        crc,
        data: packed.1,
    })
}

/// Forwards compressed bytes into the archive.
struct EntryData<'a, W: Write + std::io::Seek>(&'a mut ZipWriter<W>);

impl<W: Write + std::io::Seek> Write for EntryData<'_, W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write_data(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_large<W: Write + std::io::Seek>(
    src: &dyn TreeSource,
    j: &Job,
    name: &str,
    compression: Compression,
    nthreads: usize,
    zw: &mut ZipWriter<W>,
) -> Result<()> {
    let mut r = src.open(j.path)?;
    let mut buf = vec![0u8; BUFFER_SIZE.max(TRIAL)];
    let mut first = Vec::with_capacity(TRIAL);
    (&mut r)
        .take(TRIAL as u64)
        .read_to_end(&mut first)
        .with_context(|| format!("reading {}", j.path))?;
    let method = if compression == Compression::None || incompressible(&first) {
        METHOD_STORED
    } else {
        compression.method()
    };
    zw.begin_streamed(name, method, j.size)?;
    let mut crc = crc32fast::Hasher::new();
    let mut n = 0u64;
    let mut sink = match method {
        METHOD_ZSTD => {
            let mut e = zstd::stream::write::Encoder::new(EntryData(zw), ZSTD_LEVEL)?;
            e.multithread(nthreads as u32)?;
            Enc::Zstd(e)
        }
        METHOD_DEFLATE => Enc::Deflate(flate2::write::DeflateEncoder::new(
            EntryData(zw),
            flate2::Compression::new(6),
        )),
        _ => Enc::Stored(EntryData(zw)),
    };
    let mut chunk: &[u8] = &first;
    loop {
        if chunk.is_empty() {
            let k = r
                .read(&mut buf)
                .with_context(|| format!("reading {}", j.path))?;
            if k == 0 {
                break;
            }
            chunk = &buf[..k];
        }
        crc.update(chunk);
        n += chunk.len() as u64;
        sink.write_all(chunk)
            .with_context(|| format!("compressing {}", j.path))?;
        chunk = &[];
    }
    sink.finish()
        .with_context(|| format!("compressing {}", j.path))?;
    let crc = crc.finalize();
    if n != j.size || crc != j.crc {
        return Err(changed(j.path));
    }
    zw.end_streamed(crc)
}

/// The compressor of a streamed entry.
enum Enc<'a, W: Write + std::io::Seek> {
    Zstd(zstd::stream::write::Encoder<'static, EntryData<'a, W>>),
    Deflate(flate2::write::DeflateEncoder<EntryData<'a, W>>),
    Stored(EntryData<'a, W>),
}

impl<W: Write + std::io::Seek> Enc<'_, W> {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Enc::Zstd(e) => e.write_all(b),
            Enc::Deflate(e) => e.write_all(b),
            Enc::Stored(e) => e.write_all(b),
        }
    }
    fn finish(self) -> std::io::Result<()> {
        match self {
            Enc::Zstd(e) => e.finish().map(drop),
            Enc::Deflate(e) => e.finish().map(drop),
            Enc::Stored(_) => Ok(()),
        }
    }
}
