//! Apply: image → tree, reading the archive once from front to back.
//!
//! The manifest (first entry) is read and checked completely before anything is written:
//! every path is a [`RelPath`], listed once, inside a directory listed before it; link targets
//! are kept verbatim (the sink never follows a link while writing); sizes and hashes are well
//! formed. Then directories are created, each
//! `d/<sha256 prefix>` entry is streamed into its first path while being hashed (a mismatch
//! removes the file and fails naming it), copied to its other paths, and the central directory
//! is checked against the entries read. Links and directory times come last, so no file is
//! ever written through a link. Hard links, device nodes and FIFOs come after the contents
//! and before the links: a hard link names a file listed before it, complete by then.
//!
//! The manifest is parsed as it is decompressed, each entry checked and turned into a compact
//! [`Item`] at once, within the limits of `format` ([`MAX_MANIFEST`] bytes, [`MAX_ENTRIES`]
//! paths, [`MAX_VALUE`] bytes for any one value): what a manifest costs in memory stays
//! proportionate to a real tree, whatever a small hostile image claims.

use super::format::{
    self, Compression, Counted, EntryType, LocalHeader, ManifestEntry, Next, DATA_PREFIX,
    FORMAT_ID, MANIFEST_NAME, MAX_ENTRIES, MAX_MANIFEST, METHOD_DEFLATE, METHOD_STORED,
    METHOD_ZSTD, NAME_DIGITS, PACK_PREFIX, READ_VERSIONS,
};
use super::tree::{check_symlink_target, Meta, RelPath, Special, TreeSink};
use super::xattrs;
use super::{ImageInfo, Progress};
use crate::sys::{hex, BUFFER_SIZE};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// sha256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One path of a checked manifest. Kept small: a manifest may list a million paths, and the
/// plan holds them all for the whole apply.
pub(super) struct Item {
    path: RelPath,
    kind: EntryType,
    meta: Meta,
    size: u64,
    /// Symbolic links: the target; hard links: the path of the file they name.
    target: Option<Box<str>>,
    /// Device nodes: (major, minor). Hard links: (index of the target's item, 0).
    dev: (u32, u32),
}

/// Largest device numbers Linux has: a 12-bit major and a 20-bit minor (the kernel's
/// `dev_t`, `MINORBITS` = 20 in include/linux/kdev_t.h). Larger numbers in a manifest are
/// corrupt.
pub const MAX_MAJOR: u32 = (1 << 12) - 1;
pub const MAX_MINOR: u32 = (1 << 20) - 1;

/// A file with content: its sha256, its size and its index in the manifest.
struct FileRef {
    sha: [u8; 32],
    size: u64,
    item: u32,
    /// The pack holding the content, [`NO_PACK`] when it has an entry of its own.
    pack: u32,
}

/// [`FileRef::pack`] of a content stored in an entry of its own.
const NO_PACK: u32 = u32::MAX;

/// A checked manifest.
pub(super) struct Plan {
    name: String,
    description: String,
    created: i64,
    tsforge_version: String,
    compression: Compression,
    /// The manifest's own local header (checked again against the central directory).
    header: LocalHeader,
    items: Vec<Item>,
    /// The root directory's own metadata, applied to the target's root last.
    root: Option<Meta>,
    /// Files with content, sorted by (sha256, manifest order): each run of one sha256 is a
    /// content, written into the run's first file (the first in the manifest) and copied to
    /// the others.
    files: Vec<FileRef>,
    /// Where each content's run starts in `files`, in sha256 order.
    contents: Vec<u32>,
    /// The contents each pack holds (indices into `contents`), in the order of their first
    /// path in the manifest: the order of their bytes in the pack's entry.
    packs: Vec<Vec<u32>>,
}

impl Plan {
    pub(super) fn info(&self) -> ImageInfo {
        let count = |k| self.items.iter().filter(|i| i.kind == k).count() as u64;
        let devices = count(EntryType::Chardev) + count(EntryType::Blockdev);
        ImageInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            created: self.created,
            tsforge_version: self.tsforge_version.clone(),
            compression: self.compression,
            files: count(EntryType::File),
            dirs: count(EntryType::Dir),
            symlinks: count(EntryType::Symlink),
            hardlinks: count(EntryType::Hardlink),
            devices,
            fifos: count(EntryType::Fifo),
            total_bytes: self
                .items
                .iter()
                .fold(0u64, |t, i| t.saturating_add(i.size)),
            stored_bytes: (0..self.contents.len())
                .fold(0u64, |t, c| t.saturating_add(self.run(c)[0].size)),
            image_bytes: 0,
            warnings: Vec::new(),
        }
    }

    /// The files holding content `c` (an index into `contents`), first-written first.
    fn run(&self, c: usize) -> &[FileRef] {
        let start = self.contents[c] as usize;
        let end = self
            .contents
            .get(c + 1)
            .map_or(self.files.len(), |e| *e as usize);
        &self.files[start..end]
    }

    /// The pack stored as entry `name` (`p/` and its number in decimal, no leading zero).
    fn pack_named(&self, name: &str) -> Option<usize> {
        let digits = name.strip_prefix(PACK_PREFIX)?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        let n: usize = digits.parse().ok()?;
        (n < self.packs.len()).then_some(n)
    }

    /// The size of pack `k`'s data: its contents one after the other.
    fn pack_size(&self, k: usize) -> u64 {
        self.packs[k]
            .iter()
            .fold(0u64, |t, c| t.saturating_add(self.run(*c as usize)[0].size))
    }

    /// The content stored as entry `name` (`d/` and 32 hex digits of its sha256).
    fn content_named(&self, name: &str) -> Option<usize> {
        let digits = name.strip_prefix(DATA_PREFIX)?;
        if digits.len() != NAME_DIGITS || !is_hex(digits) {
            return None;
        }
        let mut prefix = [0u8; NAME_DIGITS / 2];
        decode_hex(digits, &mut prefix)?;
        let key = |c: &u32| &self.files[*c as usize].sha[..NAME_DIGITS / 2];
        let i = self.contents.partition_point(|c| key(c) < &prefix[..]);
        (self.contents.get(i).map(key) == Some(&prefix[..])).then_some(i)
    }
}

/// `s`, or its start when it is too long to be quoted whole in a message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && is_hex(s)
}

/// Lowercase hex digits into `out` (exactly twice as many digits as bytes).
fn decode_hex(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    let d = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        *o = d(pair[0])? << 4 | d(pair[1])?;
    }
    Some(())
}

/// The manifest as read: the same fields as [`format::Manifest`], but the entries are checked
/// and turned into the plan's compact form one at a time as the JSON streams in, never held
/// as a whole list of [`ManifestEntry`]s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestIn {
    format: String,
    #[serde(deserialize_with = "version_seen")]
    version: u32,
    name: String,
    description: String,
    created: i64,
    tsforge_version: String,
    compression: Compression,
    #[serde(default)]
    root: Option<ManifestEntry>,
    entries: Entries,
}

thread_local! {
    /// The `version` of the manifest being read, once the parser has passed it (capture writes
    /// it before the entries): entries of a newer format are then skipped unread, so the
    /// error says "a newer format" rather than naming a field this tsforge does not know.
    static VERSION_SEEN: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

fn version_seen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    VERSION_SEEN.with(|s| s.set(Some(v)));
    Ok(v)
}

/// The error for a manifest `version` this tsforge does not read.
fn version_error(v: u32) -> String {
    let newest = READ_VERSIONS[READ_VERSIONS.len() - 1];
    if v > newest {
        format!(
            "the image has manifest version {v}, a newer format than this tsforge reads \
             (versions 1 to {newest}): apply it with a newer tsforge"
        )
    } else {
        format!("the image has manifest version {v}, which no tsforge writes: it is corrupt")
    }
}

/// The entries of a manifest being read. The first entry that is wrong stops the building
/// (the rest of the list is skipped without being kept) and is reported after the JSON is
/// read, so a JSON error and a corrupt manifest are told apart from a refused entry.
#[derive(Default)]
struct Entries {
    items: Vec<Item>,
    files: Vec<FileRef>,
    error: Option<String>,
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Entries::default();
                if let Some(v) = VERSION_SEEN.with(|s| s.get()) {
                    if !READ_VERSIONS.contains(&v) {
                        out.error = Some(version_error(v));
                    }
                }
                loop {
                    if out.error.is_some() {
                        if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                            break;
                        }
                        continue;
                    }
                    let Some(e) = seq.next_element::<ManifestEntry>()? else {
                        break;
                    };
                    if out.items.len() >= MAX_ENTRIES {
                        out.error = Some(format!(
                            "the manifest lists more than {MAX_ENTRIES} paths: corrupt, or a \
                             tree too big for one image"
                        ));
                        continue;
                    }
                    let index = out.items.len() as u32;
                    match check_entry(e, index) {
                        Ok((item, file)) => {
                            out.items.push(item);
                            out.files.extend(file);
                        }
                        Err(msg) => out.error = Some(msg),
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Counts and checksums what is read through it.
struct Crc<R> {
    inner: R,
    crc: crc32fast::Hasher,
    n: u64,
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.crc.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

/// Longest run of manifest bytes without a JSON structural character (`,:{}[]`): far longer
/// than any value of a real manifest (paths are at most [`super::tree::MAX_PATH`] bytes), and
/// the bound on what the JSON parser buffers for one string, whatever the manifest holds.
const MAX_VALUE: usize = 1 << 20;

/// Fails the read when a run of bytes without a structural character exceeds [`MAX_VALUE`].
struct ValueLimit<R> {
    inner: R,
    run: usize,
}

#[derive(Debug)]
struct ValueTooLong;

impl std::fmt::Display for ValueTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a value longer than {} MiB", MAX_VALUE >> 20)
    }
}

impl std::error::Error for ValueTooLong {}

impl<R: Read> Read for ValueLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        for b in &buf[..k] {
            if matches!(b, b',' | b':' | b'{' | b'}' | b'[' | b']') {
                self.run = 0;
            } else {
                self.run += 1;
                if self.run > MAX_VALUE {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, ValueTooLong));
                }
            }
        }
        Ok(k)
    }
}

/// Reads and checks the manifest, the first entry of the image. The JSON is parsed as it is
/// decompressed (never held whole); its size and CRC-32 are checked once it has been read.
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
            "the manifest claims {} bytes, more than the limit of {} MiB: the image is corrupt, \
             or its tree too big for one image",
            h.usize,
            MAX_MANIFEST >> 20
        );
    }
    let end = r.pos.saturating_add(h.csize);
    VERSION_SEEN.with(|s| s.set(None));
    let (parsed, n, crc) = {
        let dec = decoder(r, &h)?;
        let mut c = Crc {
            inner: dec.take(h.usize.saturating_add(1)),
            crc: crc32fast::Hasher::new(),
            n: 0,
        };
        let parsed = serde_json::from_reader::<_, ManifestIn>(io::BufReader::with_capacity(
            64 << 10,
            ValueLimit {
                inner: &mut c,
                run: 0,
            },
        ));
        // Whatever the parser did not read still counts for the size and the CRC-32.
        let parsed = match parsed {
            Err(e) if e.is_io() => {
                let e = io::Error::from(e);
                if e.get_ref().is_some_and(|i| i.is::<ValueTooLong>()) {
                    bail!("the manifest holds {e}: the image is corrupt");
                }
                return Err(read_error(e, MANIFEST_NAME));
            }
            p => p,
        };
        io::copy(&mut c, &mut io::sink()).map_err(|e| read_error(e, MANIFEST_NAME))?;
        (parsed, c.n, c.crc.finalize())
    };
    finish_entry(r, end, MANIFEST_NAME)?;
    if n != h.usize || crc != h.crc {
        bail!("the manifest is corrupt (its size or CRC-32 does not match its header)");
    }
    let m = parsed.context("the manifest is not valid")?;
    check_manifest(m, h)
}

/// Checks one manifest entry on its own and turns it into an [`Item`] (and a [`FileRef`] for
/// a file with content): the fields its type may have, and their values.
fn check_entry(e: ManifestEntry, index: u32) -> Result<(Item, Option<FileRef>), String> {
    let bad = |what: String| format!("manifest entry {:?}: {what}", shorten(&e.path));
    let path = RelPath::new(&e.path).map_err(bad)?;
    // The fields each type may have (beyond path and type); any other is refused, so nothing
    // in a manifest is silently ignored.
    let allowed: &[&str] = match e.kind {
        EntryType::Dir => &["mode", "mtime_ns", "owner", "xattrs"],
        EntryType::File => &[
            "size", "sha256", "mode", "mtime_ns", "owner", "xattrs", "sparse", "pack",
        ],
        EntryType::Symlink => &["target", "mode", "mtime_ns", "owner", "xattrs"],
        EntryType::Hardlink => &["target"],
        EntryType::Chardev | EntryType::Blockdev => {
            &["major", "minor", "mode", "mtime_ns", "owner", "xattrs"]
        }
        EntryType::Fifo => &["mode", "mtime_ns", "owner", "xattrs"],
    };
    let owner = e.uid.is_some() || e.gid.is_some() || e.user.is_some() || e.group.is_some();
    let present = [
        ("size", e.size.is_some()),
        ("sha256", e.sha256.is_some()),
        ("target", e.target.is_some()),
        ("mode", e.mode.is_some()),
        ("mtime_ns", e.mtime_ns.is_some()),
        ("owner", owner),
        ("xattrs", e.xattrs.is_some()),
        ("sparse", e.sparse.is_some()),
        ("major", e.major.is_some()),
        ("minor", e.minor.is_some()),
        ("pack", e.pack.is_some()),
    ];
    if let Some((field, _)) = present.iter().find(|(f, p)| *p && !allowed.contains(f)) {
        let field = match *field {
            "owner" => "uid, gid, user or group",
            f => f,
        };
        return Err(bad(format!(
            "a {} entry cannot have a {field} field{}",
            e.kind.as_str(),
            if e.kind == EntryType::Hardlink {
                " (a hard link shares its target's metadata)"
            } else {
                ""
            }
        )));
    }
    let mut xattrs = Vec::new();
    for (name, value) in e.xattrs.iter().flatten() {
        xattrs::check_name(name).map_err(bad)?;
        let v = xattrs::decode(value).ok_or_else(|| {
            bad(format!(
                "the value of extended attribute {name} is not base64 (RFC 4648, with padding)"
            ))
        })?;
        if v.len() > xattrs::VALUE_MAX {
            return Err(bad(format!(
                "extended attribute {name} has a value of {} bytes, more than Linux allows \
                 ({})",
                v.len(),
                xattrs::VALUE_MAX
            )));
        }
        xattrs.push((name.clone(), v));
    }
    let meta = Meta {
        mode: e.mode.map(|m| m & 0o7777),
        mtime_ns: e.mtime_ns,
        uid: e.uid,
        gid: e.gid,
        xattrs,
        sparse: e.sparse == Some(true),
    };
    let mut item = Item {
        path,
        kind: e.kind,
        meta,
        size: 0,
        target: None,
        dev: (0, 0),
    };
    let mut file = None;
    match e.kind {
        EntryType::Dir | EntryType::Fifo => {}
        EntryType::File => {
            let size = e.size.ok_or_else(|| bad("a file without a size".into()))?;
            item.size = size;
            match (&e.sha256, size) {
                (_, 0) if e.pack.is_some() => {
                    return Err(bad("an empty file has no content to keep in a pack".into()))
                }
                (None, 0) => {}
                (Some(h), 0) if h == EMPTY_SHA256 => {}
                (Some(h), s) if s > 0 && is_hash(h) => {
                    let mut sha = [0u8; 32];
                    decode_hex(h, &mut sha).ok_or_else(|| bad("a malformed sha256".into()))?;
                    if e.pack == Some(NO_PACK) {
                        return Err(bad(format!("pack number {NO_PACK} is out of range")));
                    }
                    file = Some(FileRef {
                        sha,
                        size,
                        item: index,
                        pack: e.pack.unwrap_or(NO_PACK),
                    });
                }
                _ => return Err(bad("a missing or malformed sha256".into())),
            }
        }
        EntryType::Symlink => {
            let t = e
                .target
                .as_deref()
                .ok_or_else(|| bad("a link without a target".into()))?;
            check_symlink_target(t).map_err(bad)?;
            item.target = Some(t.into());
        }
        EntryType::Hardlink => {
            let t = e
                .target
                .as_deref()
                .ok_or_else(|| bad("a hard link without a target".into()))?;
            let t = RelPath::new(t).map_err(|w| {
                bad(format!(
                    "hard link target {:?}: {w} (a hard link names a path of the image)",
                    shorten(t)
                ))
            })?;
            item.target = Some(t.as_str().into());
        }
        EntryType::Chardev | EntryType::Blockdev => {
            let (Some(major), Some(minor)) = (e.major, e.minor) else {
                return Err(bad(
                    "a device node without a major and a minor number".into()
                ));
            };
            if major > MAX_MAJOR || minor > MAX_MINOR {
                return Err(bad(format!(
                    "device number {major}:{minor} is out of range (Linux has majors up to \
                     {MAX_MAJOR} and minors up to {MAX_MINOR})"
                )));
            }
            item.dev = (major, minor);
        }
    }
    Ok((item, file))
}

/// The checks that need the whole manifest: format and version, each path listed once and
/// inside a directory listed before it, each content with one size and one entry name.
fn check_manifest(m: ManifestIn, header: LocalHeader) -> Result<Plan> {
    if m.format != FORMAT_ID {
        bail!("the manifest's format is {:?}, not {FORMAT_ID:?}", m.format);
    }
    if !READ_VERSIONS.contains(&m.version) {
        bail!(version_error(m.version));
    }
    let Entries {
        mut items,
        mut files,
        error,
    } = m.entries;
    if let Some(e) = error {
        bail!(e);
    }
    let root = m
        .root
        .map(check_root)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    items.shrink_to_fit();
    files.shrink_to_fit();
    let bad = |i: usize, what: String| {
        anyhow::anyhow!("manifest entry {:?}: {what}", items[i].path.as_str())
    };
    // Paths in byte order (4 bytes a path, where a map would copy every path).
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    order.sort_unstable_by(|a, b| {
        items[*a as usize]
            .path
            .as_str()
            .cmp(items[*b as usize].path.as_str())
            .then(a.cmp(b))
    });
    if let Some(w) = order
        .windows(2)
        .filter(|w| items[w[0] as usize].path == items[w[1] as usize].path)
        .map(|w| w[1] as usize)
        .min()
    {
        return Err(bad(w, "listed twice".into()));
    }
    let find = |p: &str| {
        order
            .binary_search_by(|j| items[*j as usize].path.as_str().cmp(p))
            .ok()
            .map(|k| order[k] as usize)
    };
    let mut links = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if let Some((parent, _)) = it.path.as_str().rsplit_once('/') {
            match find(parent) {
                Some(j) if j < i && items[j].kind == EntryType::Dir => {}
                _ => {
                    return Err(bad(
                        i,
                        format!("{parent} is not a directory listed before it"),
                    ))
                }
            }
        }
        // A hard link names a file of the image that comes before it: never a path outside
        // the image (the target is a checked relative path), a directory, a link, a device or
        // another hard link, so `linkat` only ever links a file apply has just written.
        if let (EntryType::Hardlink, Some(t)) = (it.kind, &it.target) {
            match find(t) {
                Some(j) if j < i && items[j].kind == EntryType::File => links.push((i, j)),
                Some(j) if j < i => {
                    return Err(bad(
                        i,
                        format!(
                            "hard link target {t} is a {} entry; a hard link must name a file",
                            items[j].kind.as_str()
                        ),
                    ))
                }
                Some(_) => {
                    return Err(bad(
                        i,
                        format!(
                            "hard link target {t} comes after the link; it must be a file \
                             listed before it"
                        ),
                    ))
                }
                None => {
                    return Err(bad(
                        i,
                        format!("hard link target {t} is not a path of the image"),
                    ))
                }
            }
        }
    }
    drop(order);
    files.sort_unstable_by(|a, b| a.sha.cmp(&b.sha).then(a.item.cmp(&b.item)));
    let mut contents = Vec::new();
    for (k, f) in files.iter().enumerate() {
        match k.checked_sub(1).map(|p| &files[p]) {
            Some(prev) if prev.sha == f.sha => {
                if prev.size != f.size {
                    return Err(bad(
                        f.item as usize,
                        format!("content {} listed with two sizes", hex(&f.sha)),
                    ));
                }
                if prev.pack != f.pack {
                    return Err(bad(
                        f.item as usize,
                        format!(
                            "content {} is said to be in two places (two packs, or a pack and \
                             an entry of its own)",
                            hex(&f.sha)
                        ),
                    ));
                }
            }
            Some(prev) if prev.sha[..NAME_DIGITS / 2] == f.sha[..NAME_DIGITS / 2] => {
                bail!(
                    "the manifest lists two contents with the same entry name: the image is \
                     corrupt"
                );
            }
            _ => contents.push(k as u32),
        }
    }
    for (i, j) in links {
        items[i].dev = (j as u32, 0);
    }
    let packs = group_packs(&files, &contents, &items)?;
    Ok(Plan {
        name: m.name,
        description: m.description,
        created: m.created,
        tsforge_version: m.tsforge_version,
        compression: m.compression,
        header,
        items,
        root,
        files,
        contents,
        packs,
    })
}

/// The packs of a manifest: for each pack number, its contents in the order of their first
/// path. The numbers must run from 0 without a gap (each pack holds a content).
fn group_packs(files: &[FileRef], contents: &[u32], items: &[Item]) -> Result<Vec<Vec<u32>>> {
    let mut packs: Vec<Vec<u32>> = Vec::new();
    for (c, start) in contents.iter().enumerate() {
        let f = &files[*start as usize];
        if f.pack == NO_PACK {
            continue;
        }
        let k = f.pack as usize;
        if k >= contents.len() {
            bail!(
                "manifest entry {:?}: pack number {k} is larger than the number of contents \
                 ({}): the image is corrupt",
                items[f.item as usize].path.as_str(),
                contents.len()
            );
        }
        if packs.len() <= k {
            packs.resize_with(k + 1, Vec::new);
        }
        packs[k].push(c as u32);
    }
    if let Some(k) = packs.iter().position(Vec::is_empty) {
        bail!(
            "the manifest names pack {} but no content in pack {k}: the image is corrupt",
            packs.len() - 1
        );
    }
    // `files` holds each content's first path first (sorted by sha256, then manifest order).
    for p in &mut packs {
        p.sort_unstable_by_key(|c| files[contents[*c as usize] as usize].item);
    }
    Ok(packs)
}

/// The manifest's `root`: a `dir` entry with the path `""`, checked as any directory entry
/// is (its fields, its extended attributes); its metadata.
fn check_root(mut e: ManifestEntry) -> Result<Meta, String> {
    if !e.path.is_empty() || e.kind != EntryType::Dir {
        return Err(format!(
            "the manifest's root must be a dir entry with the path \"\" (it is a {} entry \
             with the path {:?})",
            e.kind.as_str(),
            shorten(&e.path)
        ));
    }
    // A name that passes the path checks, for the checks and their messages only.
    e.path = "(root)".into();
    check_entry(e, 0).map(|(item, _)| item.meta)
}

/// The decompressing reader for an entry's data (exactly `csize` bytes of the stream).
fn decoder<'a>(r: &'a mut Counted<'_>, h: &LocalHeader) -> Result<Box<dyn Read + 'a>> {
    let raw = Exact {
        inner: r,
        left: h.csize,
    };
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

/// At most `left` bytes of `inner`; the stream ending before them is an
/// [`io::ErrorKind::UnexpectedEof`] (the image is truncated), never a short entry.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let k = self.inner.read(&mut buf[..want])?;
        if k == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= k as u64;
        Ok(k)
    }
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

/// Writes contents into the sink as their entries are read.
struct Writing<'a> {
    plan: &'a Plan,
    sink: &'a mut dyn TreeSink,
    buf: &'a mut [u8],
    p: &'a mut Progress,
    progress: &'a mut dyn FnMut(&Progress),
}

impl Writing<'_> {
    /// Content `c` read from `data` (its bytes, and nothing after them) into its first path,
    /// checked against its size and sha256 (on a mismatch the file is removed), then copied
    /// to the content's other paths. `entry` names the data entry in messages.
    fn content(&mut self, c: usize, data: &mut dyn Read, entry: &str) -> Result<()> {
        let plan = self.plan;
        let users = plan.run(c);
        let (sha, size) = (users[0].sha, users[0].size);
        let first = &plan.items[users[0].item as usize];
        let (n, digest) = {
            let mut w = self.sink.create_file(&first.path, &first.meta)?;
            let mut hw = HashingWriter {
                inner: &mut *w,
                hash: Sha256::new(),
                n: 0,
            };
            loop {
                let k = match data.read(self.buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_error(e, entry)),
                };
                hw.write_all(&self.buf[..k])
                    .with_context(|| format!("writing {}", first.path))?;
                self.p.bytes_done += k as u64;
                if self.p.bytes_done % (8 << 20) < k as u64 {
                    (self.progress)(self.p);
                }
            }
            hw.flush()
                .with_context(|| format!("writing {}", first.path))?;
            let digest: [u8; 32] = hw.hash.finalize().into();
            (hw.n, digest)
        };
        if n != size || digest != sha {
            self.sink.remove_file(&first.path)?;
            bail!(
                "{}: content does not match the manifest (sha256 {}, {n} bytes; expected {}, \
                 {size} bytes): the image is corrupt",
                first.path,
                hex(&digest),
                hex(&sha)
            );
        }
        self.sink.finish_file(&first.path, &first.meta)?;
        self.p.files_done += 1;
        for u in &users[1..] {
            let it = &plan.items[u.item as usize];
            self.sink.copy_file(&first.path, &it.path, &it.meta)?;
            self.p.files_done += 1;
            self.p.bytes_done += size;
        }
        (self.progress)(self.p);
        Ok(())
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
    let mut entries: Vec<LocalHeader> = vec![plan.header.clone()];

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

    let mut seen = vec![false; plan.contents.len()];
    let mut seen_packs = vec![false; plan.packs.len()];
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut w = Writing {
        plan: &plan,
        sink: &mut *sink,
        buf: &mut buf,
        p: &mut p,
        progress: &mut *progress,
    };
    loop {
        let h = match format::read_next(&mut r)? {
            Next::Entry(h) => h,
            Next::CentralDirectory => break,
        };
        let end = r.pos.saturating_add(h.csize);
        if let Some(k) = plan.pack_named(&h.name) {
            if std::mem::replace(&mut seen_packs[k], true) {
                bail!("entry {:?} appears twice: the image is corrupt", h.name);
            }
            let size = plan.pack_size(k);
            if h.usize != size {
                bail!(
                    "entry {} is {} bytes but its contents in the manifest make {size}: the \
                     image is corrupt",
                    h.name,
                    h.usize
                );
            }
            {
                let mut dec = decoder(&mut r, &h)?;
                for c in &plan.packs[k] {
                    let c = *c as usize;
                    let size = plan.run(c)[0].size;
                    w.content(c, &mut (&mut dec).take(size), &h.name)?;
                    seen[c] = true;
                }
                let mut extra = [0u8; 1];
                match dec.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => bail!(
                        "entry {} holds more than its contents: the image is corrupt",
                        h.name
                    ),
                    Err(e) => return Err(read_error(e, &h.name)),
                }
            }
            finish_entry(&mut r, end, &h.name)?;
            entries.push(h);
            continue;
        }
        let Some(c) = plan.content_named(&h.name) else {
            bail!(
                "entry {:?} (at byte {}) is not in the manifest: the image is corrupt or was \
                 modified",
                h.name,
                h.offset
            );
        };
        if std::mem::replace(&mut seen[c], true) {
            bail!("entry {:?} appears twice: the image is corrupt", h.name);
        }
        let users = plan.run(c);
        if users[0].pack != NO_PACK {
            bail!(
                "entry {:?} holds a content the manifest keeps in pack {}: the image is corrupt",
                h.name,
                users[0].pack
            );
        }
        let size = users[0].size;
        if h.usize != size {
            bail!(
                "entry {} is {} bytes but the manifest says {size}: the image is corrupt",
                h.name,
                h.usize
            );
        }
        {
            let mut dec = decoder(&mut r, &h)?;
            // One byte more than the content: a longer entry is caught as a wrong size.
            w.content(c, &mut (&mut dec).take(size.saturating_add(1)), &h.name)?;
        }
        finish_entry(&mut r, end, &h.name)?;
        entries.push(h);
    }
    let missing = seen.iter().filter(|s| !**s).count();
    if missing > 0 {
        let first_missing = (0..plan.contents.len())
            .filter(|c| !seen[*c])
            .map(|c| plan.items[plan.run(c)[0].item as usize].path.as_str())
            .min()
            .unwrap_or_default();
        bail!(
            "the image lacks the content of {missing} file(s), {first_missing} among them: it \
             is incomplete or corrupt"
        );
    }
    format::read_central(&mut r, &entries)?;

    // Every file is complete: hard links, device nodes and FIFOs, then links.
    for it in &plan.items {
        match (it.kind, &it.target) {
            (EntryType::Hardlink, _) => {
                let target = &plan.items[it.dev.0 as usize];
                sink.hardlink(&it.path, &target.path, &target.meta)?;
            }
            (EntryType::Chardev | EntryType::Blockdev, _) => {
                let kind = Special::Device {
                    block: it.kind == EntryType::Blockdev,
                    major: it.dev.0,
                    minor: it.dev.1,
                };
                sink.special(&it.path, kind, &it.meta)?;
            }
            (EntryType::Fifo, _) => sink.special(&it.path, Special::Fifo, &it.meta)?,
            _ => {}
        }
    }
    for it in &plan.items {
        if let (EntryType::Symlink, Some(t)) = (it.kind, &it.target) {
            sink.symlink(&it.path, t, &it.meta)?;
        }
    }
    for it in plan.items.iter().rev() {
        if it.kind == EntryType::Dir {
            sink.set_times(&it.path, &it.meta)?;
        }
    }
    if let Some(root) = &plan.root {
        sink.set_root_meta(root)?;
    }
    sink.finish()?;
    info.warnings = sink.warnings();
    info.image_bytes = r.pos;
    progress(&p);
    Ok(info)
}
