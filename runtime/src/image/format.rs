//! The bytes of a tsforge image: ZIP records (PKWARE APPNOTE 6.3.x: local file headers,
//! central directory, Zip64 extensions) and the JSON manifest. `docs/image-format.md` is the
//! specification; this module is its only writer and reader.
//!
//! Why our own ZIP code instead of the `zip` crate: capture compresses entries on several
//! threads and then writes the finished bytes in a fixed order, and the crate's writer only
//! compresses what is written through it, on one thread. Apply reads the archive once, front to
//! back, trusting nothing but the manifest, and needs every length checked against it; the
//! subset of ZIP we write (no data descriptors, no encryption, one disk) makes that reader
//! short. `zipinfo` and `unzip -t` check our output in the tests.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Name of the manifest entry, the first entry of every image.
pub const MANIFEST_NAME: &str = "tsforge-image.json";
/// Prefix of content entries: `d/` + the first 32 hex digits (128 bits) of the content's
/// sha256. The manifest holds the full hash, checked while the content streams; the short name
/// only finds the manifest's content (every byte of the ZIP headers is paid twice per content,
/// so 64-digit names cost about 1 % of a typical Windows image).
pub const DATA_PREFIX: &str = "d/";

/// Hex digits of the sha256 in a content entry's name.
pub const NAME_DIGITS: usize = 32;

/// The entry name of a content, from its sha256 in lowercase hex.
pub fn content_name(sha256_hex: &str) -> String {
    let digits = sha256_hex.get(..NAME_DIGITS).unwrap_or(sha256_hex);
    format!("{DATA_PREFIX}{digits}")
}
/// `format` field of the manifest.
/// Prefix of the entries that hold a pack of small contents (`p/0`, `p/1`, …).
pub const PACK_PREFIX: &str = "p/";

/// The entry name of pack `n`.
pub fn pack_name(n: u32) -> String {
    format!("{PACK_PREFIX}{n}")
}

pub const FORMAT_ID: &str = "tsforge-image";
/// Manifest `version` this code writes. Version 2 added owners, extended attributes, sparse
/// files, hard links, device nodes and FIFOs; a version-1 manifest is a version-2 manifest
/// without them, so both are read ([`READ_VERSIONS`]).
pub const FORMAT_VERSION: u32 = 2;
/// Manifest versions this code reads.
pub const READ_VERSIONS: [u32; 2] = [1, 2];
/// Largest manifest apply accepts (uncompressed): a Windows image of 300,000 paths takes
/// about 70 MiB of JSON. The JSON is parsed as it streams, never held whole.
pub const MAX_MANIFEST: u64 = 128 << 20;
/// Most paths a manifest may list. With [`MAX_MANIFEST`] this bounds what apply holds in
/// memory for the manifest (about 200 bytes a path, plus the path itself), whatever the
/// image: a small image cannot declare millions of paths of a few bytes of JSON each.
pub const MAX_ENTRIES: usize = 1_000_000;

pub const SIG_LOCAL: u32 = 0x0403_4b50;
pub const SIG_CENTRAL: u32 = 0x0201_4b50;
pub const SIG_EOCD: u32 = 0x0605_4b50;
pub const SIG_EOCD64: u32 = 0x0606_4b50;
pub const SIG_LOCATOR64: u32 = 0x0706_4b50;

pub const METHOD_STORED: u16 = 0;
pub const METHOD_DEFLATE: u16 = 8;
pub const METHOD_ZSTD: u16 = 93;

/// "Version made by" of every central directory record: Unix (3), APPNOTE 6.3.
pub const MADE_BY: u16 = (3 << 8) | 63;
/// External attributes of every central directory record: a regular file, `rw-r--r--`.
pub const EXTERNAL_ATTRIBUTES: u32 = 0o100644 << 16;

/// An entry whose uncompressed size reaches this gets Zip64 sizes in its local header
/// (decided before compressing; compressed data never grows by 64 MiB over its input).
pub const ZIP64_LOCAL_THRESHOLD: u64 = 0xFFFF_FFFF - (64 << 20);

/// Compression of content entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Zstandard (ZIP method 93): the default; fast, small. Info-ZIP cannot unpack it
    Zstd,
    /// Deflate (ZIP method 8): any ZIP tool reads it; slower and larger
    Deflate,
    /// Stored, no compression
    None,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Deflate => "deflate",
            Compression::None => "none",
        }
    }
    pub fn method(self) -> u16 {
        match self {
            Compression::Zstd => METHOD_ZSTD,
            Compression::Deflate => METHOD_DEFLATE,
            Compression::None => METHOD_STORED,
        }
    }
}

/// The manifest (`tsforge-image.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub name: String,
    pub description: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub tsforge_version: String,
    pub compression: Compression,
    /// The captured root directory's own metadata (version 2): an entry of type `dir` with
    /// the path `""`, applied to the target's root last (an operating system's `/` has its
    /// owner, mode, times and labels too). Absent in version 1 and when the source has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<ManifestEntry>,
    pub entries: Vec<ManifestEntry>,
}

/// One path of the tree. Directories come before what they hold. Every field after `type` is
/// optional; which ones an entry may have depends on its type (docs/image-format.md,
/// *Manifest*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Files: content size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Files with content: sha256 of the content, lowercase hex (also the data entry's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symbolic links: the target, `/` separators. Hard links: the manifest path of the
    /// earlier `file` entry they share an inode with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Unix permission bits (`0o7777` mask), absent when the source had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Modification time, nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
    /// Numeric owner and group (version 2; what apply uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The names of `uid` and `gid` in the captured tree's own `etc/passwd` and `etc/group`
    /// (version 2; for people reading the manifest: apply uses the numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Device nodes: the device number (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<u32>,
    /// Extended attributes, name → base64 of the value, names sorted (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<std::collections::BTreeMap<String, String>>,
    /// Files: `true` when the source file had holes; apply writes it sparse (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<bool>,
    /// Files whose content is stored in a pack (version 2): the pack's number, the data entry
    /// `p/<number>` holding small contents one after the other (see [`pack_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<u32>,
}

impl ManifestEntry {
    /// An entry with only a path and a type.
    pub fn new(path: String, kind: EntryType) -> ManifestEntry {
        ManifestEntry {
            path,
            kind,
            size: None,
            sha256: None,
            target: None,
            mode: None,
            mtime_ns: None,
            uid: None,
            gid: None,
            user: None,
            group: None,
            major: None,
            minor: None,
            xattrs: None,
            sparse: None,
            pack: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Dir,
    File,
    Symlink,
    /// Version 2: another name of an earlier `file` entry (`target`).
    Hardlink,
    /// Version 2: device nodes (`major`, `minor`) and named pipes.
    Chardev,
    Blockdev,
    Fifo,
}

impl EntryType {
    /// The manifest's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Dir => "dir",
            EntryType::File => "file",
            EntryType::Symlink => "symlink",
            EntryType::Hardlink => "hardlink",
            EntryType::Chardev => "chardev",
            EntryType::Blockdev => "blockdev",
            EntryType::Fifo => "fifo",
        }
    }
}

/// MS-DOS date and time fields for `unix` seconds (UTC), clamped to 1980–2107.
pub fn dos_time(unix: i64) -> (u16, u16) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if y < 1980 {
        return (0, (1 << 5) | 1);
    }
    if y > 2107 {
        return ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31);
    }
    let time = ((secs / 3600) << 11) | (((secs % 3600) / 60) << 5) | ((secs % 60) / 2);
    let date = ((y - 1980) << 9) | (m << 5) | d;
    (time as u16, date as u16)
}

/// What the central directory needs to know about a written entry.
#[derive(Debug, Clone)]
pub struct CentralRecord {
    pub name: String,
    pub method: u16,
    pub crc: u32,
    pub csize: u64,
    pub usize: u64,
    pub offset: u64,
    pub zip64_local: bool,
}

fn version_needed(method: u16, zip64: bool) -> u16 {
    match method {
        METHOD_ZSTD => 63,
        _ if zip64 => 45,
        _ => 20,
    }
}

/// The local file header of `r`, exactly as [`ZipWriter`] writes it; `time` is the MS-DOS
/// (time, date) pair of every entry.
pub fn local_header(r: &CentralRecord, time: (u16, u16)) -> Vec<u8> {
    let mut h = Vec::with_capacity(30 + r.name.len() + 20);
    h.extend_from_slice(&SIG_LOCAL.to_le_bytes());
    h.extend_from_slice(&version_needed(r.method, r.zip64_local).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // flags
    h.extend_from_slice(&r.method.to_le_bytes());
    h.extend_from_slice(&time.0.to_le_bytes());
    h.extend_from_slice(&time.1.to_le_bytes());
    h.extend_from_slice(&r.crc.to_le_bytes());
    if r.zip64_local {
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        h.extend_from_slice(&u32::MAX.to_le_bytes());
    } else {
        h.extend_from_slice(&(r.csize as u32).to_le_bytes());
        h.extend_from_slice(&(r.usize as u32).to_le_bytes());
    }
    h.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
    h.extend_from_slice(&(if r.zip64_local { 20u16 } else { 0 }).to_le_bytes());
    h.extend_from_slice(r.name.as_bytes());
    if r.zip64_local {
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(&r.usize.to_le_bytes());
        h.extend_from_slice(&r.csize.to_le_bytes());
    }
    h
}

/// The central directory record of `r`, exactly as [`ZipWriter::finish`] writes it.
pub fn central_record(r: &CentralRecord, time: (u16, u16)) -> Vec<u8> {
    let mut extra = Vec::new();
    let big_u = r.usize >= 0xFFFF_FFFF;
    let big_c = r.csize >= 0xFFFF_FFFF;
    let big_o = r.offset >= 0xFFFF_FFFF;
    if big_u || big_c || big_o {
        let mut body = Vec::new();
        if big_u {
            body.extend_from_slice(&r.usize.to_le_bytes());
        }
        if big_c {
            body.extend_from_slice(&r.csize.to_le_bytes());
        }
        if big_o {
            body.extend_from_slice(&r.offset.to_le_bytes());
        }
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&(body.len() as u16).to_le_bytes());
        extra.extend_from_slice(&body);
    }
    let zip64 = !extra.is_empty() || r.zip64_local;
    let mut h = Vec::with_capacity(46 + r.name.len() + extra.len());
    h.extend_from_slice(&SIG_CENTRAL.to_le_bytes());
    h.extend_from_slice(&MADE_BY.to_le_bytes());
    h.extend_from_slice(&version_needed(r.method, zip64).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&r.method.to_le_bytes());
    h.extend_from_slice(&time.0.to_le_bytes());
    h.extend_from_slice(&time.1.to_le_bytes());
    h.extend_from_slice(&r.crc.to_le_bytes());
    h.extend_from_slice(&clamp32(r.csize).to_le_bytes());
    h.extend_from_slice(&clamp32(r.usize).to_le_bytes());
    h.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
    h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // comment
    h.extend_from_slice(&0u16.to_le_bytes()); // disk
    h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    h.extend_from_slice(&EXTERNAL_ATTRIBUTES.to_le_bytes());
    h.extend_from_slice(&clamp32(r.offset).to_le_bytes());
    h.extend_from_slice(r.name.as_bytes());
    h.extend_from_slice(&extra);
    h
}

/// The end records after a central directory of `n` records, `cd_size` bytes long, starting
/// at `cd_start`: the Zip64 end record and locator when needed, then the end record.
pub fn end_records(n: u64, cd_start: u64, cd_size: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(56 + 20 + 22);
    if n >= 0xFFFF || cd_size >= 0xFFFF_FFFF || cd_start >= 0xFFFF_FFFF {
        let eocd64 = cd_start.wrapping_add(cd_size);
        h.extend_from_slice(&SIG_EOCD64.to_le_bytes());
        h.extend_from_slice(&44u64.to_le_bytes());
        h.extend_from_slice(&MADE_BY.to_le_bytes());
        h.extend_from_slice(&45u16.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&n.to_le_bytes());
        h.extend_from_slice(&n.to_le_bytes());
        h.extend_from_slice(&cd_size.to_le_bytes());
        h.extend_from_slice(&cd_start.to_le_bytes());
        h.extend_from_slice(&SIG_LOCATOR64.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&eocd64.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
    }
    h.extend_from_slice(&SIG_EOCD.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    let n16 = if n >= 0xFFFF { 0xFFFF } else { n as u16 };
    h.extend_from_slice(&n16.to_le_bytes());
    h.extend_from_slice(&n16.to_le_bytes());
    h.extend_from_slice(&clamp32(cd_size).to_le_bytes());
    h.extend_from_slice(&clamp32(cd_start).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h
}

fn clamp32(v: u64) -> u32 {
    if v >= 0xFFFF_FFFF {
        u32::MAX
    } else {
        v as u32
    }
}

/// Writes entries one after the other, then the central directory. Every entry is written
/// with its sizes and CRC in the local header (no data descriptor), so a reader can stream.
pub struct ZipWriter<W: Write + Seek> {
    out: W,
    pos: u64,
    time: (u16, u16),
    records: Vec<CentralRecord>,
}

impl<W: Write + Seek> ZipWriter<W> {
    /// `created`: Unix seconds used for every entry's timestamp.
    pub fn new(out: W, created: i64) -> ZipWriter<W> {
        ZipWriter {
            out,
            pos: 0,
            time: dos_time(created),
            records: Vec::new(),
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Writes a whole entry whose compressed bytes are in memory.
    pub fn add(
        &mut self,
        name: &str,
        method: u16,
        crc: u32,
        usize: u64,
        data: &[u8],
    ) -> Result<()> {
        let r = CentralRecord {
            name: name.to_string(),
            method,
            crc,
            csize: data.len() as u64,
            usize,
            offset: self.pos,
            zip64_local: usize >= ZIP64_LOCAL_THRESHOLD
                || data.len() as u64 >= ZIP64_LOCAL_THRESHOLD,
        };
        let h = local_header(&r, self.time);
        self.put(&h)?;
        self.put(data)?;
        self.records.push(r);
        Ok(())
    }

    /// Starts an entry whose data the caller streams with [`ZipWriter::write_data`]; its
    /// header is completed by [`ZipWriter::end_streamed`], which seeks back to it.
    pub fn begin_streamed(&mut self, name: &str, method: u16, usize: u64) -> Result<()> {
        let r = CentralRecord {
            name: name.to_string(),
            method,
            crc: 0,
            csize: 0,
            usize,
            offset: self.pos,
            zip64_local: usize >= ZIP64_LOCAL_THRESHOLD,
        };
        let h = local_header(&r, self.time);
        self.put(&h)?;
        self.records.push(r);
        Ok(())
    }

    pub fn write_data(&mut self, b: &[u8]) -> io::Result<()> {
        self.put(b)
    }

    pub fn end_streamed(&mut self, crc: u32) -> Result<()> {
        let end = self.pos;
        let r = self
            .records
            .last_mut()
            .context("no streamed entry started")?;
        let header_len = 30 + r.name.len() as u64 + if r.zip64_local { 20 } else { 0 };
        r.csize = end - r.offset - header_len;
        r.crc = crc;
        if !r.zip64_local && r.csize >= 0xFFFF_FFFF {
            bail!("entry {} grew past 4 GiB when compressed", r.name);
        }
        let r = r.clone();
        let h = local_header(&r, self.time);
        self.out.seek(SeekFrom::Start(r.offset))?;
        self.out.write_all(&h)?;
        self.out.seek(SeekFrom::Start(end))?;
        Ok(())
    }

    /// Writes the central directory and end records; returns the output and its size.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let cd_start = self.pos;
        let records = std::mem::take(&mut self.records);
        for r in &records {
            let h = central_record(r, self.time);
            self.put(&h)?;
        }
        let cd_size = self.pos - cd_start;
        let h = end_records(records.len() as u64, cd_start, cd_size);
        self.put(&h)?;
        self.out.flush()?;
        let size = self.pos;
        Ok((self.out, size))
    }
}

/// A reader that counts the bytes read and turns an early end into a clear error.
pub struct Counted<'a> {
    pub inner: &'a mut dyn Read,
    pub pos: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Counted<'_> {
    /// Reads exactly `buf.len()` bytes; `what` names the structure for the error.
    pub fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let at = self.pos;
        self.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                anyhow::anyhow!(
                    "the image ends in the middle of {what} (at byte {at}): it is truncated"
                )
            } else {
                anyhow::Error::new(e).context(format!("reading {what} at byte {at}"))
            }
        })
    }
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        let mut b = [0; 2];
        self.exact(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0; 4];
        self.exact(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        let mut b = [0; 8];
        self.exact(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Reads and drops `n` bytes.
    pub fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        let got = io::copy(&mut (&mut *self).take(n), &mut io::sink())
            .with_context(|| format!("reading {what}"))?;
        if got != n {
            bail!("the image ends in the middle of {what}: it is truncated");
        }
        Ok(())
    }
}

/// A local file header as read from the stream.
#[derive(Debug, Clone)]
pub struct LocalHeader {
    pub name: String,
    pub method: u16,
    pub crc: u32,
    pub csize: u64,
    pub usize: u64,
    pub offset: u64,
    /// Both sizes are in a Zip64 extra field.
    pub zip64_local: bool,
    /// MS-DOS (time, date).
    pub time: (u16, u16),
}

impl LocalHeader {
    /// The record the writer kept for this entry: what its central directory record must say.
    pub fn record(&self) -> CentralRecord {
        CentralRecord {
            name: self.name.clone(),
            method: self.method,
            crc: self.crc,
            csize: self.csize,
            usize: self.usize,
            offset: self.offset,
            zip64_local: self.zip64_local,
        }
    }
}

/// What follows the data entries: the first signature is read by the caller.
pub enum Next {
    Entry(LocalHeader),
    CentralDirectory,
}

/// Reads the next record signature and, for an entry, its local header.
pub fn read_next(r: &mut Counted) -> Result<Next> {
    let offset = r.pos;
    let mut sig = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r
            .read(&mut sig[got..])
            .with_context(|| format!("reading the image at byte {offset}"))?;
        if n == 0 {
            bail!(
                "the image ends at byte {} before its central directory: it is truncated",
                r.pos
            );
        }
        got += n;
    }
    match u32::from_le_bytes(sig) {
        SIG_LOCAL => {}
        SIG_CENTRAL => return Ok(Next::CentralDirectory),
        other => bail!(
            "unexpected record {other:#010x} at byte {offset} (expected a ZIP local file header): \
             not a tsforge image, or corrupt"
        ),
    }
    let what = "a local file header";
    let version = r.u16(what)?;
    let flags = r.u16(what)?;
    let method = r.u16(what)?;
    let time = r.u16(what)?;
    let date = r.u16(what)?;
    let crc = r.u32(what)?;
    let csize32 = r.u32(what)?;
    let usize32 = r.u32(what)?;
    let name_len = r.u16(what)?;
    let extra_len = r.u16(what)?;
    let mut name = vec![0u8; usize::from(name_len)];
    r.exact(&mut name, what)?;
    let name = String::from_utf8(name)
        .map_err(|_| anyhow::anyhow!("entry name at byte {offset} is not UTF-8"))?;
    let mut extra = vec![0u8; usize::from(extra_len)];
    r.exact(&mut extra, what)?;
    if flags & 0x0001 != 0 {
        bail!("entry {name} is encrypted; tsforge images are never encrypted");
    }
    if flags & 0x0008 != 0 {
        bail!("entry {name} uses a data descriptor; tsforge images record sizes in the header");
    }
    let (mut csize, mut usize) = (u64::from(csize32), u64::from(usize32));
    let zip64_local = csize32 == u32::MAX || usize32 == u32::MAX;
    if zip64_local {
        let mut found = false;
        let mut e = &extra[..];
        while e.len() >= 4 {
            let id = u16::from_le_bytes([e[0], e[1]]);
            let len = usize::from(u16::from_le_bytes([e[2], e[3]]));
            let body = e
                .get(4..4 + len)
                .with_context(|| format!("entry {name}: extra field runs past its header"))?;
            if id == 1 {
                let mut b = body;
                let mut take = || -> Result<u64> {
                    let v = b
                        .get(..8)
                        .with_context(|| format!("entry {name}: Zip64 extra field too short"))?;
                    let v = u64::from_le_bytes(v.try_into().expect("slice of 8 bytes"));
                    b = &b[8..];
                    Ok(v)
                };
                if usize32 == u32::MAX {
                    usize = take()?;
                }
                if csize32 == u32::MAX {
                    csize = take()?;
                }
                found = true;
            }
            e = &e[4 + len..];
        }
        if !found {
            bail!("entry {name}: sizes say Zip64 but there is no Zip64 extra field");
        }
    }
    let h = LocalHeader {
        name,
        method,
        crc,
        csize,
        usize,
        offset,
        zip64_local,
        time: (time, date),
    };
    // Everything else must be what the writer writes (docs/image-format.md, "ZIP records"):
    // a header that differs was damaged or made by another tool.
    let mut actual = Vec::with_capacity(30 + h.name.len() + extra.len());
    actual.extend_from_slice(&sig);
    for v in [version, flags, method, time, date] {
        actual.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, csize32, usize32] {
        actual.extend_from_slice(&v.to_le_bytes());
    }
    actual.extend_from_slice(&name_len.to_le_bytes());
    actual.extend_from_slice(&extra_len.to_le_bytes());
    actual.extend_from_slice(h.name.as_bytes());
    actual.extend_from_slice(&extra);
    let expected = local_header(&h.record(), h.time);
    if let Some(field) = first_difference(&actual, &expected, LOCAL_FIELDS) {
        bail!(
            "the local header of entry {} (at byte {offset}) is not what tsforge writes, in its \
             {field}: the image is corrupt",
            h.name
        );
    }
    Ok(Next::Entry(h))
}

/// (offset, length, name) of the fields of a record, for naming the one that differs. A
/// difference past the last field is in the variable part (name, extra field).
type Fields = &'static [(usize, usize, &'static str)];

const LOCAL_FIELDS: Fields = &[
    (0, 4, "signature"),
    (4, 2, "version needed to extract"),
    (6, 2, "flags"),
    (8, 2, "compression method"),
    (10, 2, "time"),
    (12, 2, "date"),
    (14, 4, "CRC-32"),
    (18, 4, "compressed size"),
    (22, 4, "uncompressed size"),
    (26, 2, "name length"),
    (28, 2, "extra field length"),
    (30, usize::MAX, "name or Zip64 extra field (sizes)"),
];

const CENTRAL_FIELDS: Fields = &[
    (0, 4, "signature"),
    (4, 2, "version made by"),
    (6, 2, "version needed to extract"),
    (8, 2, "flags"),
    (10, 2, "compression method"),
    (12, 2, "time"),
    (14, 2, "date"),
    (16, 4, "CRC-32"),
    (20, 4, "compressed size"),
    (24, 4, "uncompressed size"),
    (28, 2, "name length"),
    (30, 2, "extra field length"),
    (32, 2, "comment length"),
    (34, 2, "disk number"),
    (36, 2, "internal attributes"),
    (38, 4, "external attributes"),
    (42, 4, "local header offset"),
    (46, usize::MAX, "name or Zip64 extra field (sizes, offset)"),
];

const EOCD64_FIELDS: Fields = &[
    (0, 4, "Zip64 end of central directory signature"),
    (4, 8, "Zip64 end record size"),
    (12, 2, "Zip64 end record version made by"),
    (14, 2, "Zip64 end record version needed"),
    (16, 4, "Zip64 end record disk number"),
    (20, 4, "Zip64 end record disk of the central directory"),
    (24, 8, "Zip64 end record entry count on this disk"),
    (32, 8, "Zip64 end record entry count"),
    (40, 8, "Zip64 end record central directory size"),
    (48, 8, "Zip64 end record central directory offset"),
    (56, 4, "Zip64 end locator signature"),
    (60, 4, "Zip64 end locator disk number"),
    (64, 8, "Zip64 end locator offset of the Zip64 end record"),
    (72, 4, "Zip64 end locator disk count"),
];

const EOCD_FIELDS: Fields = &[
    (0, 4, "end of central directory signature"),
    (4, 2, "end record disk number"),
    (6, 2, "end record disk of the central directory"),
    (8, 2, "end record entry count on this disk"),
    (10, 2, "end record entry count"),
    (12, 4, "end record central directory size"),
    (16, 4, "end record central directory offset"),
    (20, 2, "end record comment length"),
];

/// The name of the first field where `actual` and `expected` differ, `None` when they are
/// equal.
fn first_difference(actual: &[u8], expected: &[u8], fields: Fields) -> Option<&'static str> {
    if actual == expected {
        return None;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    Some(
        fields
            .iter()
            .rev()
            .find(|(o, _, _)| *o <= at)
            .map_or("record", |f| f.2),
    )
}

/// Checks the end of an image file `len` bytes long: its end records must be the ones the
/// writer writes, right at the end of the file, for a central directory that starts with a
/// central directory record and ends where they begin. The quick proof, before anything is
/// written, that the file is complete: a truncated or cut image has no end record at its end.
/// (The records themselves are checked against the entries by [`read_central`].)
pub fn check_end<F: Read + Seek>(f: &mut F, len: u64) -> Result<()> {
    const EOCD: usize = 22;
    const ZIP64: usize = 56 + 20;
    if len < EOCD as u64 {
        bail!("the file is {len} bytes long, too short for a ZIP archive: it is truncated");
    }
    let tail_len = (EOCD + ZIP64).min(len as usize);
    let mut tail = vec![0u8; tail_len];
    f.seek(SeekFrom::Start(len - tail_len as u64))
        .and_then(|_| f.read_exact(&mut tail))
        .context("reading the end of the image")?;
    let eocd = &tail[tail_len - EOCD..];
    let u16_at = |b: &[u8], o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let u32_at = |b: &[u8], o: usize| {
        u64::from(u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes")))
    };
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    if u32_at(eocd, 0) != u64::from(SIG_EOCD) {
        bail!(
            "the file does not end with an end of central directory record: it is truncated, \
             or data was appended to it"
        );
    }
    let (mut n, mut cd_size, mut cd_start) = (u16_at(eocd, 10), u32_at(eocd, 12), u32_at(eocd, 16));
    if n == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_start == 0xFFFF_FFFF {
        if tail_len < EOCD + ZIP64 || u32_at(&tail, 0) != u64::from(SIG_EOCD64) {
            bail!(
                "the end of central directory record needs a Zip64 end record, and there is \
                 none before it: the image is corrupt"
            );
        }
        (n, cd_size, cd_start) = (u64_at(&tail, 32), u64_at(&tail, 40), u64_at(&tail, 48));
    }
    let expected = end_records(n, cd_start, cd_size);
    let actual = &tail[tail_len - expected.len().min(tail_len)..];
    if let Some(field) = first_difference(
        actual,
        &expected,
        if expected.len() > EOCD {
            EOCD64_FIELDS
        } else {
            EOCD_FIELDS
        },
    ) {
        bail!("the {field} at the end of the file is wrong: the image is corrupt");
    }
    let end = cd_start
        .checked_add(cd_size)
        .and_then(|e| e.checked_add(expected.len() as u64));
    if n == 0 || end != Some(len) {
        bail!(
            "the end record places a central directory of {n} entries at bytes {cd_start} to \
             {}, but the file is {len} bytes long: it is truncated or corrupt",
            cd_start.saturating_add(cd_size)
        );
    }
    let mut sig = [0u8; 4];
    f.seek(SeekFrom::Start(cd_start))
        .and_then(|_| f.read_exact(&mut sig))
        .context("reading the central directory")?;
    if u32::from_le_bytes(sig) != SIG_CENTRAL {
        bail!(
            "there is no central directory at byte {cd_start}, where the end record places it: \
             the image is truncated or corrupt"
        );
    }
    Ok(())
}

/// Reads the central directory (its first signature already read) and the end records up to
/// the end of the stream, checking them against the entries read (`entries`, in order): every
/// record must be the one the writer writes for that entry (name, method, CRC-32, sizes,
/// local header offset, time, attributes, Zip64 fields), the end records must count them and
/// locate the directory, and nothing may follow.
pub fn read_central(r: &mut Counted, entries: &[LocalHeader]) -> Result<()> {
    let cd_start = r.pos - 4;
    let mut i = 0usize;
    let mut sig = SIG_CENTRAL;
    while sig == SIG_CENTRAL {
        let at = r.pos - 4;
        let what = "a central directory record";
        let mut rec = Vec::with_capacity(46 + 64);
        rec.extend_from_slice(&SIG_CENTRAL.to_le_bytes());
        rec.resize(46, 0);
        r.exact(&mut rec[4..], what)?;
        let Some(h) = entries.get(i) else {
            bail!(
                "the central directory lists more entries than the archive holds (record {i} at \
                 byte {at}): the image is corrupt"
            );
        };
        let expected = central_record(&h.record(), h.time);
        let mismatch = |field: &str| {
            anyhow::anyhow!(
                "the central directory record of entry {} (record {i}, at byte {at}) does not \
                 match the entry read at byte {}, in its {field}: the image is corrupt",
                h.name,
                h.offset
            )
        };
        // The fixed part first: the lengths it holds say how much to read next.
        if let Some(field) = first_difference(&rec, &expected[..46], CENTRAL_FIELDS) {
            return Err(mismatch(field));
        }
        rec.resize(expected.len(), 0);
        r.exact(&mut rec[46..], what)?;
        if let Some(field) = first_difference(&rec, &expected, CENTRAL_FIELDS) {
            return Err(mismatch(field));
        }
        i += 1;
        sig = r.u32("the central directory")?;
    }
    if i != entries.len() {
        bail!(
            "the central directory lists {i} entries, the archive holds {}: the image is corrupt",
            entries.len()
        );
    }
    let cd_size = r.pos - 4 - cd_start;
    let expected = end_records(i as u64, cd_start, cd_size);
    let what = "the end of central directory records";
    let mut actual = vec![0u8; expected.len()];
    actual[..4].copy_from_slice(&sig.to_le_bytes());
    let zip64 = expected.len() > 22;
    // A signature that is not the expected one: report it before reading further.
    if actual[..4] != expected[..4] {
        bail!(
            "{} is missing at byte {} (found {sig:#010x}): the image is corrupt",
            if zip64 {
                "the Zip64 end of central directory record"
            } else {
                "the end of central directory record"
            },
            cd_start + cd_size
        );
    }
    r.exact(&mut actual[4..], what)?;
    let (head, tail) = expected.split_at(expected.len() - 22);
    if let Some(field) = first_difference(&actual[..head.len()], head, EOCD64_FIELDS)
        .or_else(|| first_difference(&actual[head.len()..], tail, EOCD_FIELDS))
    {
        bail!(
            "the {field} does not match the central directory ({i} entries, {cd_size} bytes at \
             byte {cd_start}): the image is corrupt"
        );
    }
    let mut one = [0u8; 1];
    if r.read(&mut one)
        .context("reading past the end of the image")?
        != 0
    {
        bail!(
            "data follows the end of the archive at byte {}: the image is corrupt",
            r.pos - 1
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries past 4 GiB: Zip64 extra fields in the central directory, Zip64 end record and
    /// locator. Every byte of a record with Zip64 fields and of the end records is checked.
    #[test]
    fn zip64_central_directory_and_end_records_are_checked() {
        let time = dos_time(1_700_000_000);
        let entry = |name: &str, offset: u64, size: u64| LocalHeader {
            name: name.into(),
            method: METHOD_STORED,
            crc: 0x1234_5678,
            csize: size,
            usize: size,
            offset,
            zip64_local: size >= ZIP64_LOCAL_THRESHOLD,
            time,
        };
        let entries = vec![
            entry(MANIFEST_NAME, 0, 100),
            entry("d/00000000000000000000000000000001", 200, 5 << 30),
            entry("d/00000000000000000000000000000002", (5 << 30) + 300, 10),
        ];
        let cd_start: u64 = (5 << 30) + 400;
        let mut cd = Vec::new();
        for h in &entries {
            cd.extend_from_slice(&central_record(&h.record(), h.time));
        }
        let record2 = cd.len() - central_record(&entries[2].record(), time).len();
        let end = end_records(3, cd_start, cd.len() as u64);
        assert_eq!(end.len(), 56 + 20 + 22, "Zip64 end record and locator");
        let mut all = cd.clone();
        all.extend_from_slice(&end);
        let read = |bytes: &[u8]| {
            let mut cur = io::Cursor::new(&bytes[4..]);
            let mut r = Counted {
                inner: &mut cur,
                pos: cd_start + 4,
            };
            read_central(&mut r, &entries)
        };
        read(&all).unwrap();
        let zip64_record = central_record(&entries[1].record(), time).len();
        let checked = (46 + MANIFEST_NAME.len()..46 + MANIFEST_NAME.len() + zip64_record)
            .chain(record2..all.len());
        for at in checked {
            let mut bad = all.clone();
            bad[at] ^= 0x40;
            let err = read(&bad).expect_err(&format!("byte {at}"));
            assert!(format!("{err:#}").contains("corrupt"), "byte {at}: {err:#}");
        }
        let mut longer = all.clone();
        longer.push(0);
        assert!(read(&longer).is_err());
        // The Zip64 end record's entry count is named.
        let mut bad = all.clone();
        bad[cd.len() + 32] ^= 1;
        let err = format!("{:#}", read(&bad).unwrap_err());
        assert!(err.contains("Zip64 end record entry count"), "{err}");
    }

    #[test]
    fn dos_times() {
        assert_eq!(dos_time(0), (0, (1 << 5) | 1));
        // 2024-02-29 12:34:56 UTC
        let (t, d) = dos_time(1_709_210_096);
        assert_eq!(d, ((2024 - 1980) << 9) | (2 << 5) | 29);
        assert_eq!(t, (12 << 11) | (34 << 5) | 28);
    }
}
