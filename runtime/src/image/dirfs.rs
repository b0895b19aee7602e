//! The file operations of [`DirSink`](super::tree::DirSink), per platform.
//!
//! Paths arrive as checked relative paths (`a/b/c`, no `.`, `..` or empty component).
//!
//! **Unix:** a link inside the target is never followed, whatever the image or the existing
//! target holds. Every path is reached from the target's root one component at a time: each
//! directory is opened relative to its parent with `O_DIRECTORY | O_NOFOLLOW` (`openat`), files
//! are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, directories with `mkdirat`, links with
//! `symlinkat`; modes and times are set through an open descriptor, or with
//! `AT_SYMLINK_NOFOLLOW` for a link. So a link, absolute or `../..`, cannot make apply write
//! outside the root. The directories opened by the last walk stay open: entries come in manifest
//! order, so the next entry's parent is usually open already.
//!
//! Each file, device node, FIFO and directory gets its metadata in this order: owner
//! (`fchown`, root only, and only when the ids differ from the new file's), mode (`fchmod`),
//! extended attributes (`fsetxattr`), times (`futimens`). Changing the owner clears the
//! setuid and setgid bits and `security.capability`, so the mode and the attributes come after
//! it; the times come last because setting anything else changes them. Links get their owner
//! with `fchownat(…, AT_SYMLINK_NOFOLLOW)` and their attributes with `lsetxattr` through
//! `/proc/self/fd/<parent's descriptor>/<name>` (the parent is reached without following; the
//! last component is not followed by `lsetxattr`). Hard links are made with `linkat(parent of
//! the target, name, parent of the link, name, 0)`, device nodes with `mknodat`, FIFOs with
//! `mkfifoat`, sparse files by seeking over runs of zeros (`cp --sparse=always`).
//!
//! **Not root** (an administrator's machine): owners, device nodes and `security.*` /
//! `trusted.*` attributes are skipped and counted, and [`Dir::warnings`] reports them in one
//! line; `user.*` and ACL attributes, modes, times and FIFOs are still applied.
//!
//! **Elsewhere (Windows):** paths are joined to the root and written with `std::fs`; an
//! existing link at an image path is removed (never followed) before the path is written.
//! Hard links are made with `std::fs::hard_link`; owners, extended attributes, device nodes
//! and FIFOs are skipped and counted in the same summary warning.

pub(super) use imp::{writer, Dir};

/// What a sink skipped because it may not apply it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Skipped {
    pub owners: u64,
    pub devices: u64,
    pub fifos: u64,
    pub xattrs: u64,
}

impl Skipped {
    /// The summary line, `None` when nothing was skipped. `why` starts it (`not running as
    /// root`), `fix` ends it.
    pub fn warning(&self, why: &str, xattr_kind: &str, fix: &str) -> Option<String> {
        let mut parts = Vec::new();
        let n = |k: u64, one: &str, many: &str| {
            format!("{} {}", thousands(k), if k == 1 { one } else { many })
        };
        if self.owners > 0 {
            parts.push(format!("the owners of {}", n(self.owners, "path", "paths")));
        }
        if self.devices > 0 {
            parts.push(n(self.devices, "device node", "device nodes"));
        }
        if self.fifos > 0 {
            parts.push(n(self.fifos, "FIFO", "FIFOs"));
        }
        if self.xattrs > 0 {
            parts.push(n(
                self.xattrs,
                &format!("{xattr_kind} extended attribute"),
                &format!("{xattr_kind} extended attributes"),
            ));
        }
        let list = match parts.len() {
            0 => return None,
            1 => parts.remove(0),
            k => {
                let last = parts.remove(k - 1);
                format!("{} and {last}", parts.join(", "))
            }
        };
        Some(format!("{why}: {list} were not applied; {fix}"))
    }
}

/// `12131` as `12,131`.
fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds and nanoseconds of a time in nanoseconds since the Unix epoch.
fn split_ns(ns: i64) -> (i64, u32) {
    (
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

#[cfg(unix)]
mod imp {
    use super::{split_ns, Skipped};
    use crate::image::meta::{Meta, Special};
    use anyhow::{bail, Context, Result};
    use nix::errno::Errno;
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::utimensat;
    use nix::sys::stat::{fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat};
    use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat};
    use nix::unistd::{Gid, Uid, UnlinkatFlags};
    use std::ffi::{CStr, CString};
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
    use std::path::{Path, PathBuf};

    const DIR_FLAGS: OFlag = OFlag::O_RDONLY
        .union(OFlag::O_DIRECTORY)
        .union(OFlag::O_NOFOLLOW)
        .union(OFlag::O_CLOEXEC);

    /// A target directory, written through descriptors.
    #[derive(Debug)]
    pub struct Dir {
        root: PathBuf,
        root_fd: OwnedFd,
        /// The directories of the last walk from the root down: (name, descriptor).
        open: Vec<(String, OwnedFd)>,
        /// The file created last, kept to set its mode and times through its descriptor.
        last_file: Option<(String, File)>,
        /// Running as root: owners, device nodes and privileged attributes are applied.
        root_user: bool,
        /// The effective user and group: what a new file gets (outside a setgid directory).
        ids: (u32, u32),
        skipped: Skipped,
    }

    impl Dir {
        pub fn open(root: &Path) -> Result<Dir> {
            let root_fd = nix::fcntl::open(root, DIR_FLAGS, Mode::empty())
                .with_context(|| format!("opening directory {}", root.display()))?;
            let ids = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            Ok(Dir {
                root: root.to_path_buf(),
                root_fd,
                open: Vec::new(),
                last_file: None,
                root_user: ids.0 == 0,
                ids,
                skipped: Skipped::default(),
            })
        }

        fn show(&self, path: &str) -> String {
            self.root.join(path).display().to_string()
        }

        /// The directory the last walk ended in.
        fn cur(&self) -> BorrowedFd<'_> {
            self.open
                .last()
                .map_or(self.root_fd.as_fd(), |(_, fd)| fd.as_fd())
        }

        /// Opens the directory `comps` (from the root), reusing what the last walk opened.
        fn walk(&mut self, comps: &[&str]) -> Result<()> {
            let keep = self
                .open
                .iter()
                .zip(comps)
                .take_while(|((n, _), c)| n == *c)
                .count();
            self.open.truncate(keep);
            for (i, c) in comps.iter().enumerate().skip(keep) {
                match openat(self.cur(), *c, DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => self.open.push((c.to_string(), fd)),
                    Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => bail!(
                        "{}: is a symbolic link or not a directory where the image has a \
                         directory ({e}); apply never follows a link inside the target",
                        self.show(&comps[..=i].join("/"))
                    ),
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("opening directory {}", self.show(&comps[..=i].join("/")))
                        })
                    }
                }
            }
            Ok(())
        }

        pub fn create_dir(&mut self, path: &str) -> Result<()> {
            let (comps, name) = split(path);
            self.walk(&comps)?;
            let dir = self.cur();
            let mk = || mkdirat(dir, name, Mode::from_bits_truncate(0o777));
            match mk() {
                Ok(()) => return Ok(()),
                Err(Errno::EEXIST) => {
                    if stat(dir, name).is_ok_and(|s| is_dir(&s)) {
                        return Ok(());
                    }
                    remove(dir, name).with_context(|| format!("replacing {}", self.show(path)))?;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating directory {}", self.show(path)))
                }
            }
            mk().with_context(|| format!("creating directory {}", self.show(path)))
        }

        /// Creates `path` (replacing what is there, never following it) for writing; the file
        /// stays open until [`Dir::finish_file`] sets its metadata through it.
        pub fn create_file(&mut self, path: &str) -> Result<&File> {
            self.last_file = None;
            let f = File::from(self.new_file(path)?);
            Ok(&self.last_file.insert((path.to_string(), f)).1)
        }

        fn new_file(&mut self, path: &str) -> Result<OwnedFd> {
            let (comps, name) = split(path);
            self.walk(&comps)?;
            let dir = self.cur();
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let mk = || openat(dir, name, flags, Mode::from_bits_truncate(0o666));
            match mk() {
                Err(Errno::EEXIST) => {
                    remove(dir, name).with_context(|| format!("replacing {}", self.show(path)))?;
                    mk()
                }
                r => r,
            }
            .with_context(|| format!("creating {}", self.show(path)))
        }

        pub fn finish_file(&mut self, path: &str, meta: &Meta) -> Result<()> {
            let f = match self.last_file.take() {
                Some((p, f)) if p == path => f,
                _ => self.open_file(path)?,
            };
            self.set_meta(&f, meta, path)
        }

        fn open_file(&mut self, path: &str) -> Result<File> {
            let (comps, name) = split(path);
            self.walk(&comps)?;
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
            let fd = openat(self.cur(), name, flags, Mode::empty())
                .with_context(|| format!("opening {}", self.show(path)))?;
            Ok(File::from(fd))
        }

        pub fn copy_file(&mut self, from: &str, to: &str, meta: &Meta) -> Result<()> {
            self.last_file = None;
            let mut src = self.open_file(from)?;
            let dst = File::from(self.new_file(to)?);
            let what = || format!("copying {} to {}", self.show(from), self.show(to));
            if meta.sparse {
                let mut w = Sparse::new(&dst);
                std::io::copy(&mut src, &mut w).with_context(what)?;
                w.flush().with_context(what)?;
            } else {
                std::io::copy(&mut src, &mut &dst).with_context(what)?;
            }
            self.set_meta(&dst, meta, to)
        }

        pub fn remove_file(&mut self, path: &str) -> Result<()> {
            self.last_file = None;
            let (comps, name) = split(path);
            self.walk(&comps)?;
            unlinkat(self.cur(), name, UnlinkatFlags::NoRemoveDir)
                .with_context(|| format!("removing {}", self.show(path)))
        }

        /// `path` becomes another name of the file `target`: `linkat` from the target's parent
        /// to the link's parent, without following anything.
        pub fn hardlink(&mut self, path: &str, target: &str) -> Result<()> {
            self.last_file = None;
            let (tcomps, tname) = split(target);
            self.walk(&tcomps)?;
            let tdir = self
                .cur()
                .try_clone_to_owned()
                .with_context(|| format!("opening the directory of {}", self.show(target)))?;
            let (comps, name) = split(path);
            self.walk(&comps)?;
            let dir = self.cur();
            let link = || linkat(tdir.as_fd(), tname, dir, name, AtFlags::empty());
            let what = || {
                format!(
                    "creating hard link {} to {}",
                    self.show(path),
                    self.show(target)
                )
            };
            match link() {
                Ok(()) => Ok(()),
                Err(Errno::EEXIST) => {
                    remove(dir, name).with_context(|| format!("replacing {}", self.show(path)))?;
                    link().with_context(what)
                }
                Err(e) => Err(e).with_context(what),
            }
        }

        /// A device node (`mknodat`; skipped when not root) or a FIFO (`mkfifoat`), then its
        /// owner, mode, attributes and times, by name in its parent, never following a link.
        pub fn special(&mut self, path: &str, kind: Special, meta: &Meta) -> Result<()> {
            self.last_file = None;
            if matches!(kind, Special::Device { .. }) && !self.root_user {
                self.skipped.devices += 1;
                return Ok(());
            }
            let (comps, name) = split(path);
            self.walk(&comps)?;
            let dir = self.cur();
            let perm = Mode::from_bits_truncate(0o600);
            let mk = || match kind {
                Special::Device {
                    block,
                    major,
                    minor,
                } => {
                    let k = if block {
                        SFlag::S_IFBLK
                    } else {
                        SFlag::S_IFCHR
                    };
                    mknodat(dir, name, k, perm, makedev(major, minor))
                }
                Special::Fifo => mkfifoat(dir, name, perm),
            };
            let what = || format!("creating {}", self.show(path));
            match mk() {
                Ok(()) => {}
                Err(Errno::EEXIST) => {
                    remove(dir, name).with_context(|| format!("replacing {}", self.show(path)))?;
                    mk().with_context(what)?;
                }
                Err(e) => return Err(e).with_context(what),
            }
            self.set_meta_at(name, meta, path, true)
        }

        pub fn symlink(&mut self, path: &str, target: &str, meta: &Meta) -> Result<()> {
            self.last_file = None;
            let (comps, name) = split(path);
            self.walk(&comps)?;
            let dir = self.cur();
            let what = || format!("creating symbolic link {} -> {target}", self.show(path));
            match symlinkat(target, dir, name) {
                Ok(()) => {}
                Err(Errno::EEXIST) => {
                    remove(dir, name).with_context(|| format!("replacing {}", self.show(path)))?;
                    symlinkat(target, dir, name).with_context(what)?;
                }
                Err(e) => return Err(e).with_context(what),
            }
            self.set_meta_at(name, meta, path, false)
        }

        /// Sets a directory's metadata, through a descriptor opened without following.
        pub fn set_dir_meta(&mut self, path: &str, meta: &Meta) -> Result<()> {
            let comps: Vec<&str> = match path {
                // The target's root itself (the image's `root` metadata).
                "" => Vec::new(),
                p => p.split('/').collect(),
            };
            self.last_file = None;
            self.walk(&comps)?;
            let fd = self.cur();
            // `fsetxattr` needs a `File`; a second descriptor only when there are attributes.
            let file = match meta.xattrs.is_empty() {
                true => None,
                false => {
                    Some(File::from(fd.try_clone_to_owned().with_context(|| {
                        format!("opening directory {}", self.show(path))
                    })?))
                }
            };
            let mut skipped = self.skipped;
            let r = apply_meta(
                fd,
                file.as_ref(),
                meta,
                self.root_user,
                self.ids,
                &mut skipped,
            );
            self.skipped = skipped;
            r.with_context(|| format!("setting the metadata of {}", self.show(path)))
        }

        fn set_meta(&mut self, f: &File, meta: &Meta, path: &str) -> Result<()> {
            let r = apply_meta(
                f.as_fd(),
                Some(f),
                meta,
                self.root_user,
                self.ids,
                &mut self.skipped,
            );
            r.with_context(|| format!("setting the metadata of {}", self.show(path)))
        }

        /// The metadata of `name` in the current directory (a link, a device node or a FIFO),
        /// set by name without following it; `mode` only for a node (`!link`).
        fn set_meta_at(&mut self, name: &str, meta: &Meta, path: &str, node: bool) -> Result<()> {
            let mut skipped = self.skipped;
            let r = self.set_meta_at_in(name, meta, path, node, &mut skipped);
            self.skipped = skipped;
            r
        }

        fn set_meta_at_in(
            &self,
            name: &str,
            meta: &Meta,
            path: &str,
            node: bool,
            skipped: &mut Skipped,
        ) -> Result<()> {
            let dir = self.cur();
            let show = self.show(path);
            let ctx = || format!("setting the metadata of {show}");
            if let Some((uid, gid)) = owner(meta) {
                if !self.root_user {
                    if (uid, gid) != self.ids {
                        skipped.owners += 1;
                    }
                } else {
                    let now = stat(dir, name).with_context(ctx)?;
                    if (now.st_uid, now.st_gid) != (uid, gid) {
                        fchownat(
                            dir,
                            name,
                            Some(Uid::from_raw(uid)),
                            Some(Gid::from_raw(gid)),
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .with_context(|| format!("setting the owner of {show} to {uid}:{gid}"))?;
                    }
                }
            }
            if let (true, Some(m)) = (node, meta.mode) {
                let mode = Mode::from_bits_truncate((m & 0o7777) as _);
                match fchmodat(dir, name, mode, FchmodatFlags::NoFollowSymlink) {
                    // A C library that cannot do it without following: the node was just
                    // created by this call, there is no link to follow.
                    Err(Errno::EOPNOTSUPP) => {
                        fchmodat(dir, name, mode, FchmodatFlags::FollowSymlink)
                    }
                    r => r,
                }
                .with_context(|| format!("setting the mode of {show}"))?;
            }
            if !meta.xattrs.is_empty() {
                let at = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
                for (k, v) in &meta.xattrs {
                    if !self.root_user && crate::image::xattrs::privileged(k) {
                        skipped.xattrs += 1;
                        continue;
                    }
                    xattr::set(&at, k, v)
                        .with_context(|| format!("setting extended attribute {k} of {show}"))?;
                }
            }
            if let Some(ns) = meta.mtime_ns {
                let t = timespec(ns);
                utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
                    .with_context(|| format!("setting the times of {show}"))?;
            }
            Ok(())
        }

        /// What was skipped, as one summary line.
        pub fn warnings(&self) -> Vec<String> {
            self.skipped
                .warning(
                    "not running as root",
                    "security/trusted",
                    "apply as root (the boot environment does) to keep them",
                )
                .into_iter()
                .collect()
        }
    }

    /// The owner an entry asks for: the image's ids, the missing one taken from the file.
    fn owner(meta: &Meta) -> Option<(u32, u32)> {
        match (meta.uid, meta.gid) {
            (None, None) => None,
            (u, g) => Some((u.unwrap_or(u32::MAX), g.unwrap_or(u32::MAX))),
        }
    }

    /// Owner, mode, extended attributes, times — in this order (see the module
    /// documentation) — through the descriptor `fd` (`file`: the same, for `fsetxattr`).
    fn apply_meta(
        fd: BorrowedFd<'_>,
        file: Option<&File>,
        meta: &Meta,
        root_user: bool,
        ids: (u32, u32),
        skipped: &mut Skipped,
    ) -> Result<()> {
        if let Some((uid, gid)) = owner(meta) {
            if !root_user {
                if (uid, gid) != ids {
                    skipped.owners += 1;
                }
            } else {
                // A new file belongs to the effective ids (the group of a setgid directory):
                // look only when those are what the image wants.
                let differs = (uid, gid) != ids || {
                    let s = fstat(fd).context("reading the owner")?;
                    (s.st_uid, s.st_gid) != (uid, gid)
                };
                if differs {
                    let keep = |v: u32| (v != u32::MAX).then_some(v);
                    fchown(
                        fd,
                        keep(uid).map(Uid::from_raw),
                        keep(gid).map(Gid::from_raw),
                    )
                    .with_context(|| format!("setting the owner to {uid}:{gid}"))?;
                }
            }
        }
        if let Some(m) = meta.mode {
            fchmod(fd, Mode::from_bits_truncate((m & 0o7777) as _)).context("setting the mode")?;
        }
        if let Some(f) = file {
            use xattr::FileExt;
            for (k, v) in &meta.xattrs {
                if !root_user && crate::image::xattrs::privileged(k) {
                    skipped.xattrs += 1;
                    continue;
                }
                f.set_xattr(k, v)
                    .with_context(|| format!("setting extended attribute {k}"))?;
            }
        }
        if let Some(ns) = meta.mtime_ns {
            let t = timespec(ns);
            futimens(fd, &t, &t).context("setting the times")?;
        }
        Ok(())
    }

    /// Linux's 64-bit `dev_t` of a device number (makedev(3)): the inverse of the split
    /// capture makes.
    fn makedev(major: u32, minor: u32) -> nix::libc::dev_t {
        let (ma, mi) = (u64::from(major), u64::from(minor));
        (((ma & 0xffff_f000) << 32)
            | ((ma & 0xfff) << 8)
            | ((mi & 0xffff_ff00) << 12)
            | (mi & 0xff)) as nix::libc::dev_t
    }

    /// Writes a sparse file like `cp --sparse=always`: every 4 KiB block (at a multiple of
    /// 4 KiB in the file) that holds only zeros is skipped by writing the next data further
    /// on; `flush` sets the length, so trailing zeros become a hole too.
    pub struct Sparse<'a> {
        f: &'a File,
        buf: Vec<u8>,
        /// Bytes handed to the writer so far (the logical size).
        pos: u64,
    }

    const BLOCK: usize = 4096;
    const SPARSE_BUF: usize = 1 << 20;

    impl<'a> Sparse<'a> {
        pub fn new(f: &'a File) -> Sparse<'a> {
            Sparse {
                f,
                buf: Vec::with_capacity(SPARSE_BUF),
                pos: 0,
            }
        }

        /// Writes the buffer (which starts at a block boundary): runs of non-zero blocks at
        /// their offsets, zero blocks not at all.
        fn drain(&mut self) -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            let start = self.pos - self.buf.len() as u64;
            let mut run: Option<usize> = None;
            for (i, block) in self.buf.chunks(BLOCK).enumerate() {
                let zero = block.iter().all(|b| *b == 0);
                match (zero, run) {
                    (false, None) => run = Some(i * BLOCK),
                    (true, Some(r)) => {
                        self.f
                            .write_all_at(&self.buf[r..i * BLOCK], start + r as u64)?;
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(r) = run {
                self.f.write_all_at(&self.buf[r..], start + r as u64)?;
            }
            self.buf.clear();
            Ok(())
        }
    }

    impl Write for Sparse<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let k = b.len().min(SPARSE_BUF - self.buf.len());
            self.buf.extend_from_slice(&b[..k]);
            self.pos += k as u64;
            if self.buf.len() == SPARSE_BUF {
                self.drain()?;
            }
            Ok(k)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.drain()?;
            self.f.set_len(self.pos)
        }
    }

    /// The writer for a new file's content: [`Sparse`] for a sparse file, else buffered.
    pub fn writer(f: &File, sparse: bool) -> Box<dyn Write + '_> {
        if sparse {
            Box::new(Sparse::new(f))
        } else {
            Box::new(std::io::BufWriter::with_capacity(
                crate::sys::BUFFER_SIZE,
                f,
            ))
        }
    }

    /// The parent's components and the last name of `path`.
    fn split(path: &str) -> (Vec<&str>, &str) {
        let mut comps: Vec<&str> = path.split('/').collect();
        let name = comps.pop().unwrap_or_default();
        (comps, name)
    }

    fn timespec(ns: i64) -> TimeSpec {
        let (s, n) = split_ns(ns);
        TimeSpec::new(s as _, n as _)
    }

    fn stat<P: nix::NixPath + ?Sized>(dir: BorrowedFd<'_>, name: &P) -> nix::Result<FileStat> {
        fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    fn is_dir(s: &FileStat) -> bool {
        s.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
    }

    /// Removes `name` in `dir`: a file or a link (never followed), or a directory with
    /// everything in it.
    fn remove<P: nix::NixPath + ?Sized>(dir: BorrowedFd<'_>, name: &P) -> nix::Result<()> {
        match stat(dir, name) {
            Ok(s) if is_dir(&s) => remove_tree(dir, name),
            Ok(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir),
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_tree<P: nix::NixPath + ?Sized>(parent: BorrowedFd<'_>, name: &P) -> nix::Result<()> {
        let fd = openat(parent, name, DIR_FLAGS, Mode::empty())?;
        let mut d = nix::dir::Dir::from_fd(fd)?;
        let mut names: Vec<CString> = Vec::new();
        for e in d.iter() {
            let n = e?.file_name().to_owned();
            if n.as_bytes() != b"." && n.as_bytes() != b".." {
                names.push(n);
            }
        }
        for n in &names {
            remove(d.as_fd(), n.as_c_str() as &CStr)?;
        }
        drop(d);
        unlinkat(parent, name, UnlinkatFlags::RemoveDir)
    }
}

#[cfg(not(unix))]
mod imp {
    use super::{split_ns, Skipped};
    use crate::image::meta::{Meta, Special};
    use anyhow::{Context, Result};
    use std::fs::{self, File};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// A target directory, written through paths joined to its root.
    #[derive(Debug)]
    pub struct Dir {
        root: PathBuf,
        skipped: Skipped,
        /// The file being written (closed when the next one is created or on drop).
        last_file: Option<File>,
    }

    /// The writer for a new file's content (written whole: no holes here).
    pub fn writer(f: &File, _sparse: bool) -> Box<dyn Write + '_> {
        Box::new(std::io::BufWriter::with_capacity(
            crate::sys::BUFFER_SIZE,
            f,
        ))
    }

    impl Dir {
        pub fn open(root: &Path) -> Result<Dir> {
            Ok(Dir {
                root: root.to_path_buf(),
                skipped: Skipped::default(),
                last_file: None,
            })
        }

        /// Counts what this system cannot apply: Unix owners and extended attributes.
        fn skip_meta(&mut self, meta: &Meta) {
            if meta.uid.is_some() || meta.gid.is_some() {
                self.skipped.owners += 1;
            }
            self.skipped.xattrs += meta.xattrs.len() as u64;
        }

        pub fn hardlink(&mut self, path: &str, target: &str) -> Result<()> {
            let (p, t) = (self.path(path), self.path(target));
            self.clear(&p)?;
            fs::hard_link(&t, &p)
                .with_context(|| format!("creating hard link {} to {}", p.display(), t.display()))
        }

        pub fn special(&mut self, _path: &str, kind: Special, _meta: &Meta) -> Result<()> {
            match kind {
                Special::Device { .. } => self.skipped.devices += 1,
                Special::Fifo => self.skipped.fifos += 1,
            }
            Ok(())
        }

        pub fn warnings(&self) -> Vec<String> {
            self.skipped
                .warning(
                    "on this system",
                    "",
                    "Windows has no Unix owners, extended attributes, device nodes or FIFOs \
                     (apply the image on Linux to keep them)",
                )
                .into_iter()
                .collect()
        }

        fn path(&self, rel: &str) -> PathBuf {
            let mut p = self.root.clone();
            for c in rel.split('/') {
                p.push(c);
            }
            p
        }

        /// Removes whatever is at `p` (a file, a link — never followed — or a directory).
        fn clear(&self, p: &Path) -> Result<()> {
            match fs::symlink_metadata(p) {
                Ok(md) if md.is_dir() => {
                    fs::remove_dir_all(p).with_context(|| format!("replacing {}", p.display()))
                }
                Ok(_) => fs::remove_file(p).with_context(|| format!("replacing {}", p.display())),
                Err(_) => Ok(()),
            }
        }

        fn apply_meta(&self, p: &Path, mtime: Option<i64>, link: bool) -> Result<()> {
            if let Some(ns) = mtime {
                let (s, n) = split_ns(ns);
                let t = filetime::FileTime::from_unix_time(s, n);
                let r = if link {
                    filetime::set_symlink_file_times(p, t, t)
                } else {
                    filetime::set_file_times(p, t, t)
                };
                r.with_context(|| format!("setting the times of {}", p.display()))?;
            }
            Ok(())
        }

        pub fn create_dir(&mut self, path: &str) -> Result<()> {
            let p = self.path(path);
            match fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => return Ok(()),
                Ok(_) => self.clear(&p)?,
                Err(_) => {}
            }
            fs::create_dir(&p).with_context(|| format!("creating directory {}", p.display()))
        }

        pub fn create_file(&mut self, path: &str) -> Result<&File> {
            let p = self.path(path);
            self.clear(&p)?;
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
                .with_context(|| format!("creating {}", p.display()))?;
            Ok(self.last_file.insert(f))
        }

        pub fn finish_file(&mut self, path: &str, meta: &Meta) -> Result<()> {
            self.last_file = None;
            self.skip_meta(meta);
            self.apply_meta(&self.path(path), meta.mtime_ns, false)
        }

        pub fn copy_file(&mut self, from: &str, to: &str, meta: &Meta) -> Result<()> {
            let (f, t) = (self.path(from), self.path(to));
            self.clear(&t)?;
            fs::copy(&f, &t)
                .with_context(|| format!("copying {} to {}", f.display(), t.display()))?;
            self.skip_meta(meta);
            self.apply_meta(&t, meta.mtime_ns, false)
        }

        pub fn remove_file(&mut self, path: &str) -> Result<()> {
            let p = self.path(path);
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))
        }

        pub fn symlink(&mut self, path: &str, target: &str, meta: &Meta) -> Result<()> {
            let p = self.path(path);
            self.clear(&p)?;
            make_symlink(&p, target)?;
            self.skip_meta(meta);
            self.apply_meta(&p, meta.mtime_ns, true)
        }

        pub fn set_dir_meta(&mut self, path: &str, meta: &Meta) -> Result<()> {
            self.skip_meta(meta);
            self.apply_meta(&self.path(path), meta.mtime_ns, false)
        }
    }

    #[cfg(windows)]
    fn make_symlink(p: &Path, target: &str) -> Result<()> {
        let t = target.replace('/', "\\");
        let is_dir = p.parent().map(|d| d.join(&t).is_dir()).unwrap_or(false);
        let r = if is_dir {
            std::os::windows::fs::symlink_dir(&t, p)
        } else {
            std::os::windows::fs::symlink_file(&t, p)
        };
        r.with_context(|| {
            format!(
                "creating symbolic link {} -> {target} (Windows needs Developer Mode or the \
                 SeCreateSymbolicLinkPrivilege to create links)",
                p.display()
            )
        })
    }

    #[cfg(not(windows))]
    fn make_symlink(p: &Path, target: &str) -> Result<()> {
        anyhow::bail!(
            "cannot create symbolic link {} -> {target} on this platform",
            p.display()
        )
    }
}
