//! File trees that images are captured from ([`TreeSource`]) and applied into ([`TreeSink`]).
//!
//! [`RelPath`] is the only path type the image code hands to a tree: a relative path with `/`
//! separators whose components were checked (no `..`, `.`, empty or absolute forms, no NUL;
//! on Windows also no backslash, drive or `:`), so a sink can join it to its root without
//! escaping it.
//! [`DirSource`] and [`DirSink`] implement the traits for a directory; the FAT file system of
//! the disk layer gets its own implementations later. [`NullSink`] discards everything
//! (`verify`).

use super::dirfs::Dir;
pub use super::meta::{Meta, Special};
use anyhow::{bail, Context, Result};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Longest path (and link target) a tree may hold, in bytes: Linux's `PATH_MAX`. Windows
/// allows longer paths only through `\\?\` names, which images do not need; the limit keeps
/// a hostile manifest from holding huge names.
pub const MAX_PATH: usize = 4096;

/// A checked relative path inside a tree: components joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// Checks `s` and returns it as a path, or says what is wrong with it.
    pub fn new(s: &str) -> Result<RelPath, String> {
        if s.is_empty() {
            return Err("empty path".into());
        }
        if s.starts_with('/') {
            return Err("absolute path".into());
        }
        if s.len() > MAX_PATH {
            return Err(format!("path of {} bytes, longer than {MAX_PATH}", s.len()));
        }
        for c in s.split('/') {
            check_component(c)?;
        }
        Ok(RelPath(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
    /// The number of components (`a/b` has depth 2).
    pub fn depth(&self) -> usize {
        self.components().count()
    }
    /// The parent path, `None` for a top-level name.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rsplit_once('/').map(|(p, _)| RelPath(p.to_string()))
    }
    /// `child` below this path (`child` must be a single checked component).
    pub fn join(&self, child: &str) -> Result<RelPath, String> {
        check_component(child)?;
        let len = self.0.len() + 1 + child.len();
        if len > MAX_PATH {
            return Err(format!("path of {len} bytes, longer than {MAX_PATH}"));
        }
        Ok(RelPath(format!("{}/{child}", self.0)))
    }
    /// The path below `root` on this platform.
    pub fn to_path(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in self.components() {
            p.push(c);
        }
        p
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: not empty, `.` or `..`; no NUL or `/`. On Windows also no `\` (a
/// path separator there), no drive prefix (`C:`) and no `:` at all (alternate data streams).
/// On Linux and other Unix systems these are ordinary name bytes, and an operating system's
/// tree holds them (systemd's escaped unit names such as `system-systemd\x2dcryptsetup.slice`):
/// they are captured and applied as they are. An image holding them is refused by apply on
/// Windows, before anything is written, naming the entry.
fn check_component(c: &str) -> Result<(), String> {
    check_component_for(c, cfg!(windows))
}

/// [`check_component`] with the platform's rules chosen by `windows` (so both are tested).
fn check_component_for(c: &str, windows: bool) -> Result<(), String> {
    match c {
        "" => return Err("empty path component (`//` or a trailing `/`)".into()),
        "." | ".." => return Err(format!("`{c}` component")),
        _ => {}
    }
    if c.contains('\0') {
        return Err("NUL in a name".into());
    }
    if !windows {
        return Ok(());
    }
    if c.contains('\\') {
        return Err("backslash in a name (a path separator on Windows)".into());
    }
    let b = c.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err("drive prefix (`X:`)".into());
    }
    if c.contains(':') {
        return Err("`:` in a name (not allowed on Windows)".into());
    }
    Ok(())
}

/// Checks a symbolic link target: any bytes a Linux link may hold, kept verbatim (absolute,
/// `..` anywhere, dangling: an operating system's tree has all of them), except that it must
/// not be empty or hold a NUL, and must fit [`MAX_PATH`]. Where it points does not matter:
/// apply never follows a link while it writes (`dirfs`).
pub fn check_symlink_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("empty symbolic link target".into());
    }
    if target.len() > MAX_PATH {
        return Err(format!(
            "symbolic link target of {} bytes, longer than {MAX_PATH}",
            target.len()
        ));
    }
    if target.contains('\0') {
        return Err("NUL in a symbolic link target".into());
    }
    Ok(())
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
    },
    Symlink {
        target: String,
    },
    /// Another name of the file `target`, which comes before it in path order (set by capture
    /// from [`SourceEntry::inode`]; a source lists every name as a `File`).
    Hardlink {
        target: RelPath,
    },
    Special(Special),
}

/// One entry of a source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub path: RelPath,
    pub kind: EntryKind,
    pub meta: Meta,
    /// Files with more than one name: (device, inode), the same for every name of the file,
    /// so capture stores one `file` and `hardlink`s to it.
    pub inode: Option<(u64, u64)>,
}

/// Names of numeric owners, from the captured tree's own `etc/passwd` and `etc/group`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerNames {
    pub users: std::collections::HashMap<u32, String>,
    pub groups: std::collections::HashMap<u32, String>,
}

/// A tree to capture from: implemented for a directory here; a FAT file system gets an impl
/// later. `Sync` because capture reads files from several threads at once.
pub trait TreeSource: Sync {
    /// Every entry below the root (not the root itself), in any order.
    fn entries(&self) -> Result<Vec<SourceEntry>>;
    /// Opens a file listed by `entries` for reading.
    fn open(&self, path: &RelPath) -> Result<Box<dyn Read + Send + '_>>;
    /// The names of the tree's own users and groups, where it has them (an operating system's
    /// `etc/passwd` and `etc/group`); none by default.
    fn owner_names(&self) -> OwnerNames {
        OwnerNames::default()
    }
    /// What the last `entries` left out, one line each (`PATH (a socket)`), for the caller to
    /// list (stderr, smsts.log) next to the options that caused it.
    fn left_out(&self) -> Vec<String> {
        Vec::new()
    }
    /// The root directory's own metadata (owner, mode, times, extended attributes), where the
    /// source has one; `None` by default.
    fn root_meta(&self) -> Result<Option<Meta>> {
        Ok(None)
    }
}

/// A tree to apply into. `apply` calls, in order: `create_dir` for every directory (parents
/// first), `create_file` + write + `finish_file` (or `copy_file` for the second and later
/// paths with the same content, `remove_file` when the content fails its check), then, once
/// every content is complete: `hardlink` for every hard link, `special` for every device node
/// and FIFO, `symlink` for every link, `set_times` for every directory (deepest first), then
/// `finish`, then `warnings`.
pub trait TreeSink {
    fn create_dir(&mut self, path: &RelPath, meta: &Meta) -> Result<()>;
    /// Creates (or replaces) a file; the caller writes its content and flushes the writer.
    /// A `meta.sparse` file is written with holes where the sink can.
    fn create_file(&mut self, path: &RelPath, meta: &Meta) -> Result<Box<dyn Write + '_>>;
    /// The content of `path` is complete: set its owner, mode, extended attributes and times.
    fn finish_file(&mut self, path: &RelPath, meta: &Meta) -> Result<()>;
    /// Creates `to` with the content of the finished file `from`.
    fn copy_file(&mut self, from: &RelPath, to: &RelPath, meta: &Meta) -> Result<()>;
    /// Removes a file whose content failed verification.
    fn remove_file(&mut self, path: &RelPath) -> Result<()>;
    /// Makes `path` another name of the finished file `target` (a hard link); `meta` is the
    /// target's (a sink without hard links makes a copy with it).
    fn hardlink(&mut self, path: &RelPath, target: &RelPath, meta: &Meta) -> Result<()>;
    /// Creates a device node or a FIFO.
    fn special(&mut self, path: &RelPath, kind: Special, meta: &Meta) -> Result<()>;
    fn symlink(&mut self, path: &RelPath, target: &str, meta: &Meta) -> Result<()>;
    /// Sets a directory's owner, mode, extended attributes and times once everything inside it
    /// exists.
    fn set_times(&mut self, path: &RelPath, meta: &Meta) -> Result<()>;
    /// Called with every path of the image before anything is written: a sink refuses here
    /// what it cannot hold (FAT: two names that differ only in case).
    fn check_paths(&mut self, _paths: &[&RelPath]) -> Result<()> {
        Ok(())
    }
    /// Sets the target root's own owner, mode, extended attributes and times (the image's
    /// `root`), after every directory; a sink without such a root ignores it.
    fn set_root_meta(&mut self, _meta: &Meta) -> Result<()> {
        Ok(())
    }
    /// Everything was written.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// After `finish`: what the sink could not apply and skipped (not running as root: owners,
    /// device nodes, privileged extended attributes), as one summary line each. `apply`
    /// returns them in [`super::ImageInfo::warnings`]; callers show or log them.
    fn warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// What a directory capture leaves out (`tsforge capture --exclude`, `--exclude-from`,
/// `--cross-file-systems`).
#[derive(Debug, Clone, Default)]
pub struct CaptureFilter {
    /// Paths left out, with what is below them. A pattern holding a `/` is a path from the
    /// root of the capture (a leading `/` is optional: `/var/cache/*`); one without matches a
    /// name at any depth (`*.tmp`, `lost+found`). `*` is any run of characters except `/`, `?`
    /// one character; letters compare exactly, as Linux file names do.
    pub exclude: Vec<String>,
    /// Descend into directories on other file systems (mount points); by default their
    /// directory is captured, empty, and what is mounted there is left out — so capturing `/`
    /// of a running system leaves out `/proc`, `/sys`, `/dev`, `/run` and other mounts.
    pub cross_file_systems: bool,
}

impl CaptureFilter {
    /// Does `path` (relative to the root, `/`-separated) match one of the patterns?
    pub fn excludes(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.exclude.iter().any(|p| {
            let anchored = p.trim_start_matches('/');
            if p.contains('/') {
                wildcard(anchored.trim_end_matches('/'), path)
            } else {
                wildcard(p, name)
            }
        })
    }
}

/// `*` (any run of characters except `/`) and `?` (one character except `/`).
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == t[j] || (p[i] == '?' && t[j] != '/')) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star.filter(|(_, sj)| t[*sj] != '/') {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

/// A directory to capture, and what to leave out of it.
#[derive(Debug)]
pub struct DirSource(
    pub PathBuf,
    pub CaptureFilter,
    std::sync::Mutex<Vec<String>>,
);

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> DirSource {
        DirSource::with_filter(root, CaptureFilter::default())
    }
    pub fn with_filter(root: impl Into<PathBuf>, filter: CaptureFilter) -> DirSource {
        DirSource(root.into(), filter, std::sync::Mutex::new(Vec::new()))
    }
    /// What the last `entries` left out, one line each (`PATH (matches --exclude)`, `PATH/*
    /// (another file system)`), so the caller can say so: nothing is left out silently.
    pub fn left_out(&self) -> Vec<String> {
        self.2.lock().map(|l| l.clone()).unwrap_or_default()
    }
    fn note(&self, line: String) {
        if let Ok(mut l) = self.2.lock() {
            l.push(line);
        }
    }
    fn walk(
        &self,
        dir: &Path,
        rel: Option<&RelPath>,
        root_dev: Option<u64>,
        out: &mut Vec<SourceEntry>,
    ) -> Result<()> {
        let rd =
            fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
        for e in rd {
            let e = e.with_context(|| format!("reading directory {}", dir.display()))?;
            let full = e.path();
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                bail!(
                    "{}: the name is not valid UTF-8; image manifests hold UTF-8 names only \
                     (rename the file)",
                    full.display()
                );
            };
            let path = match rel {
                None => RelPath::new(&name),
                Some(r) => r.join(&name),
            }
            .map_err(|e| anyhow::anyhow!("{}: cannot be captured: {e}", full.display()))?;
            if self.1.excludes(path.as_str()) {
                self.note(format!("{} (matches --exclude)", path.as_str()));
                continue;
            }
            let md = fs::symlink_metadata(&full)
                .with_context(|| format!("reading metadata of {}", full.display()))?;
            let ft = md.file_type();
            if is_socket(&ft) {
                // A socket exists only while its program runs: nothing to keep.
                self.note(format!("{} (a socket)", path.as_str()));
                continue;
            }
            let mut meta = meta_of(&md);
            meta.xattrs = super::xattrs::read(&full)?;
            if ft.is_symlink() {
                let t = fs::read_link(&full)
                    .with_context(|| format!("reading symbolic link {}", full.display()))?;
                let Some(t) = t.to_str() else {
                    bail!("{}: link target is not valid UTF-8", full.display());
                };
                let target = if cfg!(windows) {
                    t.replace('\\', "/")
                } else {
                    t.to_string()
                };
                check_symlink_target(&target)
                    .map_err(|e| anyhow::anyhow!("{}: cannot be captured: {e}", full.display()))?;
                out.push(SourceEntry {
                    path,
                    kind: EntryKind::Symlink { target },
                    meta,
                    inode: None,
                });
            } else if ft.is_dir() {
                out.push(SourceEntry {
                    path: path.clone(),
                    kind: EntryKind::Dir,
                    meta,
                    inode: None,
                });
                if !self.1.cross_file_systems && device(&md) != root_dev {
                    self.note(format!("{}/* (another file system)", path.as_str()));
                    continue;
                }
                self.walk(&full, Some(&path), root_dev, out)?;
            } else if ft.is_file() {
                meta.sparse = is_sparse(&md);
                out.push(SourceEntry {
                    path,
                    kind: EntryKind::File { size: md.len() },
                    meta,
                    inode: inode(&md),
                });
            } else if let Some(special) = special_of(&md) {
                out.push(SourceEntry {
                    path,
                    kind: EntryKind::Special(special),
                    meta,
                    inode: None,
                });
            } else {
                bail!(
                    "{}: not a file, directory, symbolic link, device node, FIFO or socket; \
                     images cannot hold it",
                    full.display()
                );
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn is_socket(ft: &fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_socket()
}

#[cfg(not(unix))]
fn is_socket(_ft: &fs::FileType) -> bool {
    false
}

/// A regular file whose allocated blocks hold less than its size: it has holes.
#[cfg(unix)]
fn is_sparse(md: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.blocks().saturating_mul(512) < md.len()
}

#[cfg(not(unix))]
fn is_sparse(_md: &fs::Metadata) -> bool {
    false
}

/// (device, inode) of a file with more than one name.
#[cfg(unix)]
fn inode(md: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    (md.nlink() > 1).then(|| (md.dev(), md.ino()))
}

#[cfg(not(unix))]
fn inode(_md: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// A device node or FIFO. The device number is split the way Linux's C library does
/// (`major(3)`/`minor(3)` of a 64-bit `dev_t`: the major in bits 8–19 and 32–43, the minor in
/// bits 0–7 and 20–31 and 44–63).
#[cfg(unix)]
fn special_of(md: &fs::Metadata) -> Option<Special> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = md.file_type();
    let dev = md.rdev();
    let major = (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32;
    let minor = (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32;
    if ft.is_char_device() || ft.is_block_device() {
        Some(Special::Device {
            block: ft.is_block_device(),
            major,
            minor,
        })
    } else if ft.is_fifo() {
        Some(Special::Fifo)
    } else {
        None
    }
}

#[cfg(not(unix))]
fn special_of(_md: &fs::Metadata) -> Option<Special> {
    None
}

/// The file system (device) an entry is on; `None` where the platform does not say (Windows:
/// mount points are not looked for there).
#[cfg(unix)]
fn device(md: &fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(md.dev())
}

#[cfg(not(unix))]
fn device(_md: &fs::Metadata) -> Option<u64> {
    None
}

fn meta_of(md: &fs::Metadata) -> Meta {
    let mtime_ns = md
        .modified()
        .ok()
        .and_then(|t| match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).ok(),
            Err(e) => i64::try_from(e.duration().as_nanos()).ok().map(|n| -n),
        });
    let (uid, gid) = owner_of(md);
    Meta {
        mode: mode_of(md),
        mtime_ns,
        uid,
        gid,
        xattrs: Vec::new(),
        sparse: false,
    }
}

#[cfg(unix)]
fn owner_of(md: &fs::Metadata) -> (Option<u32>, Option<u32>) {
    use std::os::unix::fs::MetadataExt;
    (Some(md.uid()), Some(md.gid()))
}

#[cfg(not(unix))]
fn owner_of(_md: &fs::Metadata) -> (Option<u32>, Option<u32>) {
    (None, None)
}

/// `name → id` lines of an `etc/passwd` or `etc/group` file (`name:password:id:…`, see
/// passwd(5) and group(5)) as `id → name`, the first name of each id; `None` when the file is
/// not a regular file of the tree (missing, or a link, which would point outside it).
fn id_names(path: &Path) -> Option<std::collections::HashMap<u32, String>> {
    if !fs::symlink_metadata(path).ok()?.is_file() {
        return None;
    }
    let text = fs::read_to_string(path).ok()?;
    let mut m = std::collections::HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let (false, Ok(id)) = (name.is_empty() || name.starts_with('#'), id.parse::<u32>()) {
            m.entry(id).or_insert_with(|| name.to_string());
        }
    }
    Some(m)
}

#[cfg(unix)]
fn mode_of(md: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(md.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_md: &fs::Metadata) -> Option<u32> {
    None
}

impl TreeSource for DirSource {
    fn entries(&self) -> Result<Vec<SourceEntry>> {
        let md = fs::metadata(&self.0).with_context(|| format!("reading {}", self.0.display()))?;
        if !md.is_dir() {
            bail!("{} is not a directory", self.0.display());
        }
        if let Ok(mut l) = self.2.lock() {
            l.clear();
        }
        let mut out = Vec::new();
        self.walk(&self.0, None, device(&md), &mut out)?;
        Ok(out)
    }
    fn root_meta(&self) -> Result<Option<Meta>> {
        let md = fs::metadata(&self.0).with_context(|| format!("reading {}", self.0.display()))?;
        let mut meta = meta_of(&md);
        meta.xattrs = super::xattrs::read(&self.0)?;
        Ok(Some(meta))
    }
    fn open(&self, path: &RelPath) -> Result<Box<dyn Read + Send + '_>> {
        let p = path.to_path(&self.0);
        let f = fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        Ok(Box::new(f))
    }
    fn left_out(&self) -> Vec<String> {
        DirSource::left_out(self)
    }
    fn owner_names(&self) -> OwnerNames {
        OwnerNames {
            users: id_names(&self.0.join("etc/passwd")).unwrap_or_default(),
            groups: id_names(&self.0.join("etc/group")).unwrap_or_default(),
        }
    }
}

/// A directory to apply into. [`DirSink::new`] refuses a non-empty directory unless `force`;
/// with `force`, files, links and directories of the image replace what is at their paths
/// (an existing link is removed, never followed), and other files stay. On Unix no link inside
/// the directory is ever followed while writing (see `dirfs`), so whatever the image holds,
/// nothing is written outside it.
#[derive(Debug)]
pub struct DirSink {
    root: PathBuf,
    /// Open while writing; closed by `finish` (a mounted target must be unmountable then).
    dir: Option<Dir>,
    /// What `finish` found skipped, until `warnings` takes it.
    warnings: Vec<String>,
    /// The directory already held files (other than a new file system's `lost+found` and the
    /// run's `_SMSTaskSequence`): the
    /// image is applied over them (`force`), and the directory keeps its own owner, mode and
    /// times — a data image or a folder of seed files applied onto a deployed OS must not make
    /// its `/` the image's (e.g. 0700).
    merging: bool,
}

impl DirSink {
    /// Creates `root` if needed; refuses it when it is not empty, unless `force`.
    pub fn new(root: impl Into<PathBuf>, force: bool) -> Result<DirSink> {
        let root = root.into();
        let mut merging = false;
        match fs::symlink_metadata(&root) {
            Ok(md) if md.is_dir() => {
                let mut rd = fs::read_dir(&root)
                    .with_context(|| format!("reading directory {}", root.display()))?;
                merging = fs::read_dir(&root)
                    .with_context(|| format!("reading directory {}", root.display()))?
                    .flatten()
                    .any(|e| e.file_name() != "lost+found" && e.file_name() != "_SMSTaskSequence");
                if rd.next().is_some() && !force {
                    bail!(
                        "{} is not empty; apply into an empty or new directory, or pass --force \
                         to replace the image's paths and keep other files",
                        root.display()
                    );
                }
            }
            Ok(_) => bail!("{} exists and is not a directory", root.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&root)
                    .with_context(|| format!("creating {}", root.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
        }
        let dir = Some(Dir::open(&root)?);
        Ok(DirSink {
            root,
            dir,
            warnings: Vec::new(),
            merging,
        })
    }

    /// The open target, opened again after `finish`.
    fn dir(&mut self) -> Result<&mut Dir> {
        let d = match self.dir.take() {
            Some(d) => d,
            None => Dir::open(&self.root)?,
        };
        Ok(self.dir.insert(d))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl TreeSink for DirSink {
    fn create_dir(&mut self, path: &RelPath, _meta: &Meta) -> Result<()> {
        self.dir()?.create_dir(path.as_str())
    }
    fn create_file(&mut self, path: &RelPath, meta: &Meta) -> Result<Box<dyn Write + '_>> {
        let f = self.dir()?.create_file(path.as_str())?;
        Ok(super::dirfs::writer(f, meta.sparse))
    }
    fn finish_file(&mut self, path: &RelPath, meta: &Meta) -> Result<()> {
        self.dir()?.finish_file(path.as_str(), meta)
    }
    fn copy_file(&mut self, from: &RelPath, to: &RelPath, meta: &Meta) -> Result<()> {
        self.dir()?.copy_file(from.as_str(), to.as_str(), meta)
    }
    fn remove_file(&mut self, path: &RelPath) -> Result<()> {
        self.dir()?.remove_file(path.as_str())
    }
    fn hardlink(&mut self, path: &RelPath, target: &RelPath, _meta: &Meta) -> Result<()> {
        self.dir()?.hardlink(path.as_str(), target.as_str())
    }
    fn special(&mut self, path: &RelPath, kind: Special, meta: &Meta) -> Result<()> {
        self.dir()?.special(path.as_str(), kind, meta)
    }
    fn symlink(&mut self, path: &RelPath, target: &str, meta: &Meta) -> Result<()> {
        self.dir()?.symlink(path.as_str(), target, meta)
    }
    fn set_root_meta(&mut self, meta: &Meta) -> Result<()> {
        if self.merging {
            self.warnings.push(format!(
                "{} already held files: the image was applied over them and the folder keeps \
                 its own owner, mode and times (the image's root folder metadata is applied \
                 only to an empty target)",
                self.root.display()
            ));
            return Ok(());
        }
        self.dir()?.set_dir_meta("", meta)
    }
    fn set_times(&mut self, path: &RelPath, meta: &Meta) -> Result<()> {
        self.dir()?.set_dir_meta(path.as_str(), meta)
    }
    /// Closes every descriptor of the target (what was skipped is kept for `warnings`).
    fn finish(&mut self) -> Result<()> {
        if let Some(d) = self.dir.take() {
            self.warnings.extend(d.warnings());
        }
        Ok(())
    }
    fn warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

/// Discards everything: `verify` applies into it.
#[derive(Debug, Default)]
pub struct NullSink;

impl TreeSink for NullSink {
    fn create_dir(&mut self, _: &RelPath, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn create_file(&mut self, _: &RelPath, _: &Meta) -> Result<Box<dyn Write + '_>> {
        Ok(Box::new(std::io::sink()))
    }
    fn finish_file(&mut self, _: &RelPath, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn copy_file(&mut self, _: &RelPath, _: &RelPath, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn remove_file(&mut self, _: &RelPath) -> Result<()> {
        Ok(())
    }
    fn hardlink(&mut self, _: &RelPath, _: &RelPath, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn special(&mut self, _: &RelPath, _: Special, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn symlink(&mut self, _: &RelPath, _: &str, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn set_times(&mut self, _: &RelPath, _: &Meta) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::CaptureFilter;

    #[test]
    fn exclusion_patterns() {
        let f = CaptureFilter {
            exclude: vec![
                "/var/cache/*".into(),
                "*.tmp".into(),
                "lost+found".into(),
                "home/?ob".into(),
            ],
            cross_file_systems: false,
        };
        for (path, want) in [
            ("var/cache/apt", true),
            ("var/cache", false),
            ("var/cachet/x", false),
            ("a/b/c.tmp", true),
            ("c.tmp", true),
            ("c.tmpx", false),
            ("x.tmp/inside", false), // below an excluded directory is never walked
            ("lost+found", true),
            ("mnt/lost+found", true),
            ("home/bob", true),
            ("home/rob", true),
            ("home/bobby", false),
            ("home/b/ob", false),
        ] {
            assert_eq!(f.excludes(path), want, "{path}");
        }
        // `*` never crosses a `/`.
        let g = CaptureFilter {
            exclude: vec!["/etc/*.conf".into()],
            cross_file_systems: false,
        };
        assert!(g.excludes("etc/a.conf"));
        assert!(!g.excludes("etc/sub/a.conf"));
        assert!(!CaptureFilter::default().excludes("anything"));
    }

    use super::*;

    #[test]
    fn rel_path_rules() {
        for ok in [
            "a",
            "a/b",
            "ü/日本",
            "ab:c",
            ".hidden",
            "a..b",
            "a\\b",
            "C:",
            "c:x/y",
        ] {
            if cfg!(windows) && (ok.contains(':') || ok.contains('\\')) {
                continue;
            }
            assert!(RelPath::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "./a", "a/..", "../x", "a/\0"] {
            assert!(RelPath::new(bad).is_err(), "{bad:?}");
        }
    }

    /// systemd's escaped names hold `\`, and any Linux name may hold `:`: ordinary bytes on
    /// Unix, refused on Windows (a separator, a drive, a stream).
    #[test]
    fn backslash_and_colon_are_names_on_unix_and_refused_on_windows() {
        for name in [
            "system-systemd\\x2dcryptsetup.slice",
            "..\\escape",
            "C:",
            "c:x",
            "a:b",
        ] {
            assert!(check_component_for(name, false).is_ok(), "{name}");
            assert!(check_component_for(name, true).is_err(), "{name}");
        }
        for bad in ["", ".", "..", "a\0b"] {
            assert!(check_component_for(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn symlink_targets() {
        for ok in [
            "x",
            "../x",
            "../../../../x",
            "x/../../..",
            "/lib/systemd/system/ssh.service",
            "/",
            "a\\b",
            "C:/x",
            "..",
        ] {
            assert!(check_symlink_target(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a\0b"] {
            assert!(check_symlink_target(bad).is_err(), "{bad:?}");
        }
        assert!(check_symlink_target(&"x".repeat(MAX_PATH)).is_ok());
        let e = check_symlink_target(&"x".repeat(MAX_PATH + 1)).unwrap_err();
        assert!(e.contains("longer than 4096"), "{e}");
    }
}
