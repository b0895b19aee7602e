//! Apply: image → tree, reading the archive once from front to back.
//!
//! The manifest (first entry) is read and checked completely before anything is written:
//! every path is a [`RelPath`], listed once, inside a directory listed before it; link targets
//! stay inside the tree; sizes and hashes are well formed. Then directories are created, each
//! `d/<sha256 prefix>` entry is streamed into its first path while being hashed (a mismatch
//! removes the file and fails naming it), copied to its other paths, and the central directory
//! is checked against the entries read. Links and directory times come last, so no file is
//! ever written through a link.

use super::format::{
    self, Counted, EntryType, LocalHeader, Manifest, Next, FORMAT_ID, FORMAT_VERSION,
    MANIFEST_NAME, MAX_MANIFEST, METHOD_DEFLATE, METHOD_STORED, METHOD_ZSTD,
};
use super::tree::{check_symlink_target, Meta, RelPath, TreeSink};
use super::{ImageInfo, Progress, BUFFER_SIZE};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

/// sha256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(super) struct Item {
    path: RelPath,
    kind: EntryType,
    meta: Meta,
    size: u64,
    target: String,
}

/// A checked manifest.
pub(super) struct Plan {
    manifest: Manifest,
    items: Vec<Item>,
    /// sha256 (hex) → (size, indexes of the files with that content).
    contents: HashMap<String, (u64, Vec<usize>)>,
}

impl Plan {
    pub(super) fn info(&self) -> ImageInfo {
        let m = &self.manifest;
        let count = |k| self.items.iter().filter(|i| i.kind == k).count() as u64;
        ImageInfo {
            name: m.name.clone(),
            description: m.description.clone(),
            created: m.created,
            tsforge_version: m.tsforge_version.clone(),
            compression: m.compression,
            files: count(EntryType::File),
            dirs: count(EntryType::Dir),
            symlinks: count(EntryType::Symlink),
            total_bytes: self.items.iter().map(|i| i.size).sum(),
            stored_bytes: self.contents.values().map(|c| c.0).sum(),
            image_bytes: 0,
        }
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads and checks the manifest, the first entry of the image.
pub(super) fn read_manifest(r: &mut Counted) -> Result<Plan> {
    let h = match format::read_next(r)? {
        Next::Entry(h) => h,
        Next::CentralDirectory => bail!("the archive is empty: not a tsforge image"),
    };
    if h.name != MANIFEST_NAME {
        bail!(
            "the first entry is {:?}, not {MANIFEST_NAME}: not a tsforge image",
            h.name
        );
    }
    if h.usize > MAX_MANIFEST {
        bail!(
            "the manifest claims {} bytes (more than {MAX_MANIFEST}): corrupt image",
            h.usize
        );
    }
    let mut json = Vec::with_capacity(h.usize as usize);
    let end = r.pos + h.csize;
    {
        let mut dec = decoder(r, &h)?;
        (&mut dec)
            .take(h.usize + 1)
            .read_to_end(&mut json)
            .map_err(|e| read_error(e, MANIFEST_NAME))?;
    }
    finish_entry(r, end, MANIFEST_NAME)?;
    if json.len() as u64 != h.usize || crc32fast::hash(&json) != h.crc {
        bail!("the manifest is corrupt (its size or CRC-32 does not match its header)");
    }
    let m: Manifest = serde_json::from_slice(&json).context("the manifest is not valid")?;
    check_manifest(m)
}

fn check_manifest(m: Manifest) -> Result<Plan> {
    if m.format != FORMAT_ID {
        bail!("the manifest's format is {:?}, not {FORMAT_ID:?}", m.format);
    }
    if m.version != FORMAT_VERSION {
        bail!(
            "the image has format version {}; this tsforge reads version {FORMAT_VERSION} \
             (use a newer tsforge)",
            m.version
        );
    }
    let mut items = Vec::with_capacity(m.entries.len());
    let mut kinds: HashMap<RelPath, EntryType> = HashMap::with_capacity(m.entries.len());
    let mut contents: HashMap<String, (u64, Vec<usize>)> = HashMap::new();
    for e in &m.entries {
        let bad = |what: String| anyhow::anyhow!("manifest entry {:?}: {what}", e.path);
        let path = RelPath::new(&e.path).map_err(&bad)?;
        if kinds.contains_key(&path) {
            return Err(bad("listed twice".into()));
        }
        if let Some(parent) = path.parent() {
            if kinds.get(&parent) != Some(&EntryType::Dir) {
                return Err(bad(format!("{parent} is not a directory listed before it")));
            }
        }
        let meta = Meta {
            mode: e.mode.map(|m| m & 0o7777),
            mtime_ns: e.mtime_ns,
        };
        let mut item = Item {
            path: path.clone(),
            kind: e.kind,
            meta,
            size: 0,
            target: String::new(),
        };
        match e.kind {
            EntryType::Dir => {
                if e.size.is_some() || e.sha256.is_some() || e.target.is_some() {
                    return Err(bad("a directory with a size, hash or target".into()));
                }
            }
            EntryType::File => {
                let size = e.size.ok_or_else(|| bad("a file without a size".into()))?;
                if e.target.is_some() {
                    return Err(bad("a file with a link target".into()));
                }
                item.size = size;
                match (&e.sha256, size) {
                    (None, 0) => {}
                    (Some(h), 0) if h == EMPTY_SHA256 => {}
                    (Some(h), s) if s > 0 && is_hash(h) => {
                        let c = contents.entry(h.clone()).or_insert((size, Vec::new()));
                        if c.0 != size {
                            return Err(bad(format!("content {h} listed with two sizes")));
                        }
                        c.1.push(items.len());
                    }
                    _ => return Err(bad("a missing or malformed sha256".into())),
                }
            }
            EntryType::Symlink => {
                let t = e
                    .target
                    .as_ref()
                    .ok_or_else(|| bad("a link without a target".into()))?;
                if e.size.is_some() || e.sha256.is_some() {
                    return Err(bad("a link with a size or hash".into()));
                }
                check_symlink_target(&path, t).map_err(&bad)?;
                item.target = t.clone();
            }
        }
        kinds.insert(path, e.kind);
        items.push(item);
    }
    Ok(Plan {
        manifest: m,
        items,
        contents,
    })
}

/// The decompressing reader for an entry's data (exactly `csize` bytes of the stream).
fn decoder<'a>(r: &'a mut Counted<'_>, h: &LocalHeader) -> Result<Box<dyn Read + 'a>> {
    let raw = r.take(h.csize);
    Ok(match h.method {
        METHOD_STORED => Box::new(raw),
        METHOD_DEFLATE => Box::new(flate2::read::DeflateDecoder::new(raw)),
        METHOD_ZSTD => {
            // zstd's default window limit (128 MiB) bounds the memory a hostile frame can ask for.
            let d = zstd::stream::read::Decoder::with_buffer(io::BufReader::with_capacity(
                BUFFER_SIZE,
                raw,
            ))
            .context("starting a zstd decoder")?;
            Box::new(d.single_frame())
        }
        m => bail!(
            "entry {} uses compression method {m}; tsforge images use stored (0), deflate (8) \
             or zstd (93)",
            h.name
        ),
    })
}

fn read_error(e: io::Error, name: &str) -> anyhow::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        anyhow::anyhow!("the image ends in the middle of entry {name}: it is truncated")
    } else {
        anyhow::Error::new(e).context(format!("reading entry {name}: corrupt compressed data"))
    }
}

/// Skips what the decoder left of an entry's data, so the stream is at the next record.
fn finish_entry(r: &mut Counted, end: u64, name: &str) -> Result<()> {
    if r.pos < end {
        r.skip(end - r.pos, &format!("entry {name}"))?;
    }
    Ok(())
}

/// Hashes what passes through, and counts it.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hash: Sha256,
    n: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        self.hash.update(&b[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Applies the image read from `image` into `sink`; see the module documentation.
pub fn apply(
    image: &mut dyn Read,
    sink: &mut dyn TreeSink,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageInfo> {
    let mut r = Counted {
        inner: image,
        pos: 0,
    };
    let plan = read_manifest(&mut r)?;
    sink.check_paths(&plan.items.iter().map(|i| &i.path).collect::<Vec<_>>())?;
    let mut info = plan.info();
    let mut p = Progress {
        bytes_done: 0,
        bytes_total: info.total_bytes,
        files_done: 0,
        files_total: info.files,
    };
    progress(&p);
    let mut entries: Vec<(String, u64)> = vec![(MANIFEST_NAME.to_string(), 0)];

    for it in &plan.items {
        match it.kind {
            EntryType::Dir => sink.create_dir(&it.path, &it.meta)?,
            EntryType::File if it.size == 0 => {
                sink.create_file(&it.path, &it.meta)?.flush()?;
                sink.finish_file(&it.path, &it.meta)?;
                p.files_done += 1;
            }
            _ => {}
        }
    }
    progress(&p);

    let mut by_name: HashMap<String, String> = HashMap::with_capacity(plan.contents.len());
    for hash in plan.contents.keys() {
        if by_name
            .insert(format::content_name(hash), hash.clone())
            .is_some()
        {
            bail!("the manifest lists two contents with the same entry name: the image is corrupt");
        }
    }
    let mut seen: HashSet<String> = HashSet::with_capacity(plan.contents.len());
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        let h = match format::read_next(&mut r)? {
            Next::Entry(h) => h,
            Next::CentralDirectory => break,
        };
        let hash = by_name.get(&h.name).map(String::as_str).unwrap_or("");
        let Some((size, users)) = plan.contents.get(hash) else {
            bail!(
                "entry {:?} (at byte {}) is not in the manifest: the image is corrupt or was \
                 modified",
                h.name,
                h.offset
            );
        };
        if !seen.insert(hash.to_string()) {
            bail!("entry {:?} appears twice: the image is corrupt", h.name);
        }
        if h.usize != *size {
            bail!(
                "entry {} is {} bytes but the manifest says {size}: the image is corrupt",
                h.name,
                h.usize
            );
        }
        entries.push((h.name.clone(), h.offset));
        let first = &plan.items[users[0]];
        let end = r.pos + h.csize;
        let (n, digest) = {
            let mut dec = decoder(&mut r, &h)?;
            let mut w = sink.create_file(&first.path, &first.meta)?;
            let mut hw = HashingWriter {
                inner: &mut *w,
                hash: Sha256::new(),
                n: 0,
            };
            let mut limited = (&mut dec).take(*size + 1);
            loop {
                let k = match limited.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_error(e, &first.path.to_string())),
                };
                hw.write_all(&buf[..k])
                    .with_context(|| format!("writing {}", first.path))?;
                p.bytes_done += k as u64;
                if p.bytes_done % (8 << 20) < k as u64 {
                    progress(&p);
                }
            }
            hw.flush()
                .with_context(|| format!("writing {}", first.path))?;
            (hw.n, hex(&hw.hash.finalize()))
        };
        finish_entry(&mut r, end, &h.name)?;
        if n != *size || digest != hash {
            sink.remove_file(&first.path)?;
            bail!(
                "{}: content does not match the manifest (sha256 {digest}, {n} bytes; expected \
                 {hash}, {size} bytes): the image is corrupt",
                first.path
            );
        }
        sink.finish_file(&first.path, &first.meta)?;
        p.files_done += 1;
        for &u in &users[1..] {
            let it = &plan.items[u];
            sink.copy_file(&first.path, &it.path, &it.meta)?;
            p.files_done += 1;
            p.bytes_done += size;
        }
        progress(&p);
    }
    if seen.len() != plan.contents.len() {
        let missing = plan
            .contents
            .iter()
            .filter(|(h, _)| !seen.contains(*h))
            .map(|(_, (_, users))| plan.items[users[0]].path.to_string())
            .min()
            .unwrap_or_default();
        bail!(
            "the image lacks the content of {} file(s), {missing} among them: it is incomplete \
             or corrupt",
            plan.contents.len() - seen.len()
        );
    }
    format::read_central(&mut r, &entries)?;

    for it in &plan.items {
        if it.kind == EntryType::Symlink {
            sink.symlink(&it.path, &it.target, &it.meta)?;
        }
    }
    for it in plan.items.iter().rev() {
        if it.kind == EntryType::Dir {
            sink.set_times(&it.path, &it.meta)?;
        }
    }
    sink.finish()?;
    info.image_bytes = r.pos;
    progress(&p);
    Ok(info)
}

fn hex(d: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(d.len() * 2);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}
