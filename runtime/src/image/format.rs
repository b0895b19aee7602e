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
pub const FORMAT_ID: &str = "tsforge-image";
/// Manifest `version` this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest manifest apply accepts (uncompressed), so a hostile length cannot exhaust memory.
pub const MAX_MANIFEST: u64 = 512 << 20;

pub const SIG_LOCAL: u32 = 0x0403_4b50;
pub const SIG_CENTRAL: u32 = 0x0201_4b50;
pub const SIG_EOCD: u32 = 0x0605_4b50;
pub const SIG_EOCD64: u32 = 0x0606_4b50;
pub const SIG_LOCATOR64: u32 = 0x0706_4b50;

pub const METHOD_STORED: u16 = 0;
pub const METHOD_DEFLATE: u16 = 8;
pub const METHOD_ZSTD: u16 = 93;

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
    pub entries: Vec<ManifestEntry>,
}

/// One path of the tree. Directories come before what they hold.
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
    /// Symbolic links: the target, `/` separators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Unix permission bits (`0o7777` mask), absent when the source had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Modification time, nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Dir,
    File,
    Symlink,
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

    fn local_header(&self, r: &CentralRecord) -> Vec<u8> {
        let mut h = Vec::with_capacity(30 + r.name.len() + 20);
        h.extend_from_slice(&SIG_LOCAL.to_le_bytes());
        h.extend_from_slice(&version_needed(r.method, r.zip64_local).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // flags
        h.extend_from_slice(&r.method.to_le_bytes());
        h.extend_from_slice(&self.time.0.to_le_bytes());
        h.extend_from_slice(&self.time.1.to_le_bytes());
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
        let h = self.local_header(&r);
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
        let h = self.local_header(&r);
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
        let h = self.local_header(&r);
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
            h.extend_from_slice(&((3u16 << 8) | 63).to_le_bytes()); // made by: Unix, 6.3
            h.extend_from_slice(&version_needed(r.method, zip64).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(&r.method.to_le_bytes());
            h.extend_from_slice(&self.time.0.to_le_bytes());
            h.extend_from_slice(&self.time.1.to_le_bytes());
            h.extend_from_slice(&r.crc.to_le_bytes());
            let clamp = |v: u64| if v >= 0xFFFF_FFFF { u32::MAX } else { v as u32 };
            h.extend_from_slice(&clamp(r.csize).to_le_bytes());
            h.extend_from_slice(&clamp(r.usize).to_le_bytes());
            h.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&(0o100644u32 << 16).to_le_bytes()); // regular file, rw-r--r--
            h.extend_from_slice(&clamp(r.offset).to_le_bytes());
            h.extend_from_slice(r.name.as_bytes());
            h.extend_from_slice(&extra);
            self.put(&h)?;
        }
        let cd_size = self.pos - cd_start;
        let n = records.len() as u64;
        if n >= 0xFFFF || cd_size >= 0xFFFF_FFFF || cd_start >= 0xFFFF_FFFF {
            let eocd64 = self.pos;
            let mut h = Vec::with_capacity(56 + 20);
            h.extend_from_slice(&SIG_EOCD64.to_le_bytes());
            h.extend_from_slice(&44u64.to_le_bytes());
            h.extend_from_slice(&((3u16 << 8) | 63).to_le_bytes());
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
            self.put(&h)?;
        }
        let mut h = Vec::with_capacity(22);
        h.extend_from_slice(&SIG_EOCD.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        let n16 = if n >= 0xFFFF { 0xFFFF } else { n as u16 };
        h.extend_from_slice(&n16.to_le_bytes());
        h.extend_from_slice(&n16.to_le_bytes());
        let c32 = |v: u64| if v >= 0xFFFF_FFFF { u32::MAX } else { v as u32 };
        h.extend_from_slice(&c32(cd_size).to_le_bytes());
        h.extend_from_slice(&c32(cd_start).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
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
#[derive(Debug)]
pub struct LocalHeader {
    pub name: String,
    pub method: u16,
    pub crc: u32,
    pub csize: u64,
    pub usize: u64,
    pub offset: u64,
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
    let _version = r.u16(what)?;
    let flags = r.u16(what)?;
    let method = r.u16(what)?;
    let _time = r.u16(what)?;
    let _date = r.u16(what)?;
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
    if csize32 == u32::MAX || usize32 == u32::MAX {
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
    Ok(Next::Entry(LocalHeader {
        name,
        method,
        crc,
        csize,
        usize,
        offset,
    }))
}

/// Reads the central directory (its first signature already read) and the end records up to
/// the end of the stream, checking them against the entries seen: `names` in order with their
/// local header offsets.
pub fn read_central(r: &mut Counted, entries: &[(String, u64)]) -> Result<()> {
    let cd_start = r.pos - 4;
    let mut i = 0usize;
    let mut sig = SIG_CENTRAL;
    while sig == SIG_CENTRAL {
        let what = "a central directory record";
        let mut fixed = [0u8; 42];
        r.exact(&mut fixed, what)?;
        let f = |o: usize| u16::from_le_bytes([fixed[o], fixed[o + 1]]);
        let g = |o: usize| u32::from_le_bytes(fixed[o..o + 4].try_into().expect("4 bytes"));
        let (name_len, extra_len, comment_len) = (f(24), f(26), f(28));
        let mut offset = u64::from(g(38));
        let mut name = vec![0u8; usize::from(name_len)];
        r.exact(&mut name, what)?;
        let mut extra = vec![0u8; usize::from(extra_len)];
        r.exact(&mut extra, what)?;
        r.skip(u64::from(comment_len), what)?;
        if offset == u64::from(u32::MAX) {
            // The offset is the last of the Zip64 fields present.
            let mut e = &extra[..];
            while e.len() >= 4 {
                let id = u16::from_le_bytes([e[0], e[1]]);
                let len = usize::from(u16::from_le_bytes([e[2], e[3]]));
                let Some(body) = e.get(4..4 + len) else { break };
                if id == 1 && len >= 8 {
                    offset = u64::from_le_bytes(body[len - 8..].try_into().expect("8 bytes"));
                }
                e = &e[4 + len..];
            }
        }
        let Some((ename, eoff)) = entries.get(i) else {
            bail!("the central directory lists more entries than the archive holds");
        };
        if name != ename.as_bytes() || offset != *eoff {
            bail!(
                "the central directory does not match entry {ename} (record {i}): the image is \
                 corrupt"
            );
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
    if sig == SIG_EOCD64 {
        let what = "the Zip64 end of central directory";
        let len = r.u64(what)?;
        if len != 44 {
            bail!("{what} has an unexpected size {len}");
        }
        let mut b = [0u8; 44];
        r.exact(&mut b, what)?;
        let n = u64::from_le_bytes(b[20..28].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(b[28..36].try_into().expect("8 bytes"));
        let start = u64::from_le_bytes(b[36..44].try_into().expect("8 bytes"));
        if n != entries.len() as u64 || size != cd_size || start != cd_start {
            bail!("{what} does not match the central directory: the image is corrupt");
        }
        if r.u32(what)? != SIG_LOCATOR64 {
            bail!("the Zip64 end locator is missing: the image is corrupt");
        }
        r.skip(16, "the Zip64 end locator")?;
        sig = r.u32("the end of central directory")?;
    }
    if sig != SIG_EOCD {
        bail!("the end of central directory record is missing: the image is corrupt");
    }
    let what = "the end of central directory";
    let mut b = [0u8; 18];
    r.exact(&mut b, what)?;
    let comment = u16::from_le_bytes([b[16], b[17]]);
    r.skip(u64::from(comment), what)?;
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

    #[test]
    fn dos_times() {
        assert_eq!(dos_time(0), (0, (1 << 5) | 1));
        // 2024-02-29 12:34:56 UTC
        let (t, d) = dos_time(1_709_210_096);
        assert_eq!(d, ((2024 - 1980) << 9) | (2 << 5) | 29);
        assert_eq!(t, (12 << 11) | (34 << 5) | 28);
    }
}
