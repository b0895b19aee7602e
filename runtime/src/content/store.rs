//! Finding packages on the distribution points, streaming their files verified block by
//! block, and keeping verified copies in the run's cache (with resumable partial downloads).

use super::http::{is_url, join_url, Http, HttpError, HttpOptions};
use super::manifest::{
    FileEntry, PackageManifest, BLOCK_SIZE, FILES_DIR, INDEX_FILE, INDEX_SIG_FILE, PACKAGE_FILE,
    PACKAGE_SIG_FILE,
};
use crate::sys::hex;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Where packages come from: a folder (the medium, a mounted share) or a static HTTP(S) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Dir(PathBuf),
    Url(String),
}

impl Origin {
    pub fn parse(s: &str) -> Origin {
        if is_url(s) {
            Origin::Url(s.trim().trim_end_matches('/').to_string())
        } else {
            Origin::Dir(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Dir(d) => write!(f, "{}", d.display()),
            Origin::Url(u) => f.write_str(u),
        }
    }
}

/// A package found on a distribution point.
#[derive(Debug, Clone)]
pub struct Found {
    pub origin: Origin,
    pub manifest: PackageManifest,
}

/// A package's verified local copy.
#[derive(Debug, Clone)]
pub struct LocalPackage {
    /// The folder holding the package's files.
    pub dir: PathBuf,
    pub manifest: PackageManifest,
    /// True when the cache already held it.
    pub from_cache: bool,
    /// Bytes transferred for this call.
    pub fetched: u64,
    /// Bytes kept from an earlier, interrupted download.
    pub resumed: u64,
}

/// Download progress: bytes of the package done (kept and fetched) and total.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Packages for one run: the distribution points, tried in order, and the cache.
pub struct Store {
    pub origins: Vec<Origin>,
    /// `<state>/cache`: `<ID>/tsforge-package.json` + `<ID>/files/…` per package (a
    /// distribution point itself), `.partial/` for downloads in progress.
    pub cache: PathBuf,
    http: Http,
    /// When set (hex ed25519 public key), every package manifest (and index) must carry a
    /// valid signature by this key (`docs/content.md`, "Signed packages").
    pub public_key: Option<String>,
}

const MANIFEST_LIMIT: u64 = 64 << 20;

/// A package manifest or an index that is unsigned or whose signature does not match the
/// key the run requires. The message names the package, the distribution point and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignatureError(pub String);

/// Checks the signature `rel_sig` of `bytes` (the file `what` at `origin`) against `key`.
fn check_signed(
    http: &Http,
    origin: &Origin,
    what: &str,
    bytes: &[u8],
    rel_sig: &str,
    key: &str,
) -> Result<()> {
    let (sig, shown) = read_small(http, origin, rel_sig)?;
    let Some(sig) = sig else {
        return Err(SignatureError(format!(
            "{what} from the distribution point {origin} is unsigned ({shown} is not there); \
             only content signed with the key {key} is accepted here"
        ))
        .into());
    };
    if !crate::media::signature_valid(key, bytes, &sig)? {
        return Err(SignatureError(format!(
            "{what} from the distribution point {origin}: the signature does not match ({shown} \
             was made with another key, or the manifest was changed after it was signed); only \
             content signed with the key {key} is accepted here"
        ))
        .into());
    }
    Ok(())
}

impl Store {
    /// Fails only when the HTTPS trust settings cannot be read.
    pub fn new(origins: Vec<Origin>, cache: PathBuf, opts: HttpOptions) -> Result<Self> {
        Ok(Store {
            origins,
            cache,
            http: Http::new(opts)?,
            public_key: None,
        })
    }

    /// Require every package (and index) read to be signed with `key` (hex), when given.
    pub fn with_public_key(mut self, key: Option<String>) -> Self {
        self.public_key = key;
        self
    }

    /// The package `id` from the first distribution point that has it.
    pub fn find(&self, id: &str) -> Result<Found> {
        super::manifest::check_id(id)?;
        if self.origins.is_empty() {
            bail!(
                "package {id} is needed but no distribution point is given (use --content DIR|URL \
                 or the variable SMSTSContentLocations)"
            );
        }
        let mut tried = Vec::new();
        for origin in &self.origins {
            let rel = format!("{id}/{PACKAGE_FILE}");
            let (bytes, shown) = match read_small(&self.http, origin, &rel) {
                Ok((Some(b), shown)) => (b, shown),
                Ok((None, shown)) => {
                    tried.push(format!("{shown}: not there"));
                    continue;
                }
                Err(e) => {
                    tried.push(format!("{e:#}"));
                    continue;
                }
            };
            if let Some(key) = &self.public_key {
                check_signed(
                    &self.http,
                    origin,
                    &format!("package {id}"),
                    &bytes,
                    &format!("{id}/{PACKAGE_SIG_FILE}"),
                    key,
                )?;
            }
            let manifest = PackageManifest::parse(&bytes, &shown)?;
            if !manifest.id.eq_ignore_ascii_case(id) {
                bail!("{shown} describes package {}, not {id}", manifest.id);
            }
            return Ok(Found {
                origin: origin.clone(),
                manifest,
            });
        }
        bail!(
            "package {id} was not found on any distribution point:\n  {}",
            tried.join("\n  ")
        )
    }

    /// A raw reader of `file` of `found` from byte `start` (not verified).
    fn open_raw(
        &self,
        found: &Found,
        file: &FileEntry,
        start: u64,
    ) -> Result<Box<dyn Read + Send>> {
        let rel = format!("{}/{FILES_DIR}/{}", found.manifest.id, file.path);
        match &found.origin {
            Origin::Dir(d) => {
                let p = d.join(&rel);
                let mut f = File::open(&p).with_context(|| format!("opening {}", p.display()))?;
                f.seek(SeekFrom::Start(start))?;
                Ok(Box::new(f))
            }
            Origin::Url(u) => Ok(Box::new(self.http.range_reader(
                &join_url(u, &rel),
                start,
                file.size,
            ))),
        }
    }

    /// Where `file` of `found` is read from, for messages.
    pub fn shown(found: &Found, file: &FileEntry) -> String {
        let rel = format!("{}/{FILES_DIR}/{}", found.manifest.id, file.path);
        match &found.origin {
            Origin::Dir(d) => d.join(rel).display().to_string(),
            Origin::Url(u) => join_url(u, &rel),
        }
    }

    /// `file` of `found` as a stream whose every byte was checked against the manifest before
    /// it is returned. Fetching and checking run on their own thread, a few blocks ahead of the
    /// reader. A mismatch or a failed fetch is an `InvalidData`/other I/O error naming the file.
    pub fn stream(&self, found: &Found, file: &FileEntry) -> Result<VerifiedStream> {
        let raw = self.open_raw(found, file, 0)?;
        let shown = Self::shown(found, file);
        let entry = file.clone();
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
        let handle = std::thread::Builder::new()
            .name("tsforge-fetch".into())
            .spawn(move || {
                let mut raw = raw;
                for i in 0..entry.block_count() {
                    let r = read_block(&mut raw, &entry, i, &shown);
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        return;
                    }
                }
            })
            .context("starting the download thread")?;
        Ok(VerifiedStream {
            rx,
            cur: Vec::new(),
            off: 0,
            done: false,
            _thread: handle,
        })
    }

    /// The package's files, verified, in the cache: from the cache when it already holds this
    /// version, else downloaded (resuming a partial download left by an earlier attempt).
    pub fn ensure_local(
        &self,
        found: &Found,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<LocalPackage> {
        let m = &found.manifest;
        let dest = self.cache.join(&m.id);
        if let Some(local) = cached(&dest, m) {
            return Ok(local);
        }
        let partial_root = self.cache.join(".partial");
        let partial = partial_root.join(format!("{}-{}", m.id, &m.hash[..16]));
        // Partial downloads of other versions of this package are of no use.
        if let Ok(rd) = fs::read_dir(&partial_root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with(&format!("{}-", m.id)) && e.path() != partial {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let files_dir = partial.join(FILES_DIR);
        fs::create_dir_all(&files_dir)
            .with_context(|| format!("creating {}", files_dir.display()))?;
        let total = m.size();
        let mut p = Progress { done: 0, total };
        let mut fetched = 0u64;
        let mut resumed = 0u64;
        progress(&p);
        for file in &m.files {
            let path = files_dir.join(file.path.replace('/', std::path::MAIN_SEPARATOR_STR));
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let kept = verified_prefix(&path, file)?;
            resumed += kept;
            p.done += kept;
            progress(&p);
            if kept == file.size && path.exists() {
                continue;
            }
            let mut out = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            out.set_len(kept)?;
            out.seek(SeekFrom::Start(kept))?;
            let shown = Self::shown(found, file);
            let mut raw = self.open_raw(found, file, kept)?;
            let first = kept / BLOCK_SIZE;
            for i in first..file.block_count() {
                let block = match read_block(&mut raw, file, i, &shown) {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        // Keep nothing of a file that does not match.
                        drop(out);
                        let _ = fs::remove_file(&path);
                        return Err(anyhow!(e));
                    }
                    Err(e) => return Err(anyhow!(e)),
                };
                out.write_all(&block)
                    .with_context(|| format!("writing {}", path.display()))?;
                fetched += block.len() as u64;
                p.done += block.len() as u64;
                progress(&p);
            }
            out.sync_all()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        write_synced(&partial.join(PACKAGE_FILE), &m.to_json())?;
        if dest.exists() {
            fs::remove_dir_all(&dest)
                .with_context(|| format!("removing the old cached copy {}", dest.display()))?;
        }
        fs::rename(&partial, &dest)
            .with_context(|| format!("moving {} to {}", partial.display(), dest.display()))?;
        let _ = crate::sys::sync_dir(&self.cache);
        Ok(LocalPackage {
            dir: dest.join(FILES_DIR),
            manifest: m.clone(),
            from_cache: false,
            fetched,
            resumed,
        })
    }

    /// Bytes held by the cache (complete packages and partial downloads).
    pub fn cache_size(&self) -> u64 {
        dir_size(&self.cache)
    }

    /// The distribution point's index, from the first origin (for `package list`).
    pub fn index(&self, origin: &Origin) -> Result<Option<super::manifest::DpIndex>> {
        match read_small(&self.http, origin, INDEX_FILE)? {
            (Some(b), shown) => {
                if let Some(key) = &self.public_key {
                    check_signed(
                        &self.http,
                        origin,
                        &format!("the index {INDEX_FILE}"),
                        &b,
                        INDEX_SIG_FILE,
                        key,
                    )?;
                }
                Ok(Some(super::manifest::DpIndex::parse(&b, &shown)?))
            }
            (None, _) => Ok(None),
        }
    }
}

/// A small file of a distribution point: `(None, shown)` when it is not there.
fn read_small(http: &Http, origin: &Origin, rel: &str) -> Result<(Option<Vec<u8>>, String)> {
    match origin {
        Origin::Dir(d) => {
            let p = d.join(rel);
            let shown = p.display().to_string();
            match fs::read(&p) {
                Ok(b) => Ok((Some(b), shown)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((None, shown)),
                Err(e) => Err(anyhow!("reading {shown}: {e}")),
            }
        }
        Origin::Url(u) => {
            let url = join_url(u, rel);
            match http.get_small(&url, MANIFEST_LIMIT) {
                Ok(b) => Ok((b, url)),
                Err(e @ HttpError::NotFound { .. }) => Err(anyhow!(e)),
                Err(e) => Err(anyhow!(e)),
            }
        }
    }
}

/// Reads block `i` of `file` from `r` (positioned at its start) and checks it.
fn read_block(r: &mut dyn Read, file: &FileEntry, i: u64, shown: &str) -> io::Result<Vec<u8>> {
    let len = file.block_len(i) as usize;
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < len {
        match r.read(&mut buf[n..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{shown} is shorter than the package manifest says ({} bytes, it ended at \
                         byte {})",
                        file.size,
                        i * BLOCK_SIZE + n as u64
                    ),
                ))
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("reading {shown}: {e}"))),
        }
    }
    let got = hex(&Sha256::digest(&buf));
    let want = file.block_hash(i);
    if got != want {
        let what = if file.blocks.is_empty() {
            String::new()
        } else {
            format!(
                " (block {i}, bytes {}-{})",
                i * BLOCK_SIZE,
                i * BLOCK_SIZE + len as u64
            )
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{shown}{what} does not match the package manifest: sha256 {got}, expected {want}"
            ),
        ));
    }
    Ok(buf)
}

/// How much of a partial download at `path` is good: whole blocks that match, counted from
/// the start; the file is cut there.
fn verified_prefix(path: &Path, file: &FileEntry) -> Result<u64> {
    let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else {
        return Ok(0);
    };
    let len = f.metadata()?.len();
    if len > file.size {
        f.set_len(0)?;
        return Ok(0);
    }
    let mut good = 0u64;
    let mut i = 0;
    while good < len {
        let bl = file.block_len(i);
        if good + bl > len || bl == 0 {
            break;
        }
        let mut buf = vec![0u8; bl as usize];
        f.read_exact(&mut buf)?;
        if hex(&Sha256::digest(&buf)) != file.block_hash(i) {
            break;
        }
        good += bl;
        i += 1;
    }
    if file.size == 0 && len == 0 {
        return Ok(0);
    }
    if good != len {
        f.set_len(good)?;
    }
    Ok(good)
}

/// The cached copy of `m` at `dest`, when complete and of the same package hash.
fn cached(dest: &Path, m: &PackageManifest) -> Option<LocalPackage> {
    let bytes = fs::read(dest.join(PACKAGE_FILE)).ok()?;
    let have = PackageManifest::parse(&bytes, "cache").ok()?;
    if have.hash != m.hash {
        return None;
    }
    let files = dest.join(FILES_DIR);
    for f in &m.files {
        let p = files.join(f.path.replace('/', std::path::MAIN_SEPARATOR_STR));
        if fs::metadata(&p).map(|md| md.len()).ok()? != f.size {
            return None;
        }
    }
    Some(LocalPackage {
        dir: files,
        manifest: m.clone(),
        from_cache: true,
        fetched: 0,
        resumed: 0,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))
}

fn dir_size(d: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(d) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// See [`Store::stream`].
pub struct VerifiedStream {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    off: usize,
    done: bool,
    _thread: std::thread::JoinHandle<()>,
}

impl Read for VerifiedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.off >= self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.cur = b;
                    self.off = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The thread finished every block.
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.off);
        buf[..n].copy_from_slice(&self.cur[self.off..self.off + n]);
        self.off += n;
        Ok(n)
    }
}
