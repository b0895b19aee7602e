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
//! **Elsewhere (Windows):** paths are joined to the root and written with `std::fs`; an
//! existing link at an image path is removed (never followed) before the path is written.

pub(super) use imp::Dir;

/// Seconds and nanoseconds of a time in nanoseconds since the Unix epoch.
fn split_ns(ns: i64) -> (i64, u32) {
    (
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

#[cfg(unix)]
mod imp {
    use super::split_ns;
    use anyhow::{bail, Context, Result};
    use nix::errno::Errno;
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, utimensat, Mode, SFlag};
    use nix::sys::stat::{FileStat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};
    use std::ffi::{CStr, CString};
    use std::fs::File;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
    }

    impl Dir {
        pub fn open(root: &Path) -> Result<Dir> {
            let root_fd = nix::fcntl::open(root, DIR_FLAGS, Mode::empty())
                .with_context(|| format!("opening directory {}", root.display()))?;
            Ok(Dir {
                root: root.to_path_buf(),
                root_fd,
                open: Vec::new(),
                last_file: None,
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
        /// stays open until [`Dir::finish_file`] sets its mode and times through it.
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

        pub fn finish_file(
            &mut self,
            path: &str,
            mode: Option<u32>,
            mtime: Option<i64>,
        ) -> Result<()> {
            let f = match self.last_file.take() {
                Some((p, f)) if p == path => f,
                _ => self.open_file(path)?,
            };
            set_meta(f.as_fd(), mode, mtime)
                .with_context(|| format!("setting the mode and times of {}", self.show(path)))
        }

        fn open_file(&mut self, path: &str) -> Result<File> {
            let (comps, name) = split(path);
            self.walk(&comps)?;
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
            let fd = openat(self.cur(), name, flags, Mode::empty())
                .with_context(|| format!("opening {}", self.show(path)))?;
            Ok(File::from(fd))
        }

        pub fn copy_file(
            &mut self,
            from: &str,
            to: &str,
            mode: Option<u32>,
            mtime: Option<i64>,
        ) -> Result<()> {
            self.last_file = None;
            let mut src = self.open_file(from)?;
            let mut dst = File::from(self.new_file(to)?);
            std::io::copy(&mut src, &mut dst)
                .with_context(|| format!("copying {} to {}", self.show(from), self.show(to)))?;
            set_meta(dst.as_fd(), mode, mtime)
                .with_context(|| format!("setting the mode and times of {}", self.show(to)))
        }

        pub fn remove_file(&mut self, path: &str) -> Result<()> {
            self.last_file = None;
            let (comps, name) = split(path);
            self.walk(&comps)?;
            unlinkat(self.cur(), name, UnlinkatFlags::NoRemoveDir)
                .with_context(|| format!("removing {}", self.show(path)))
        }

        pub fn symlink(&mut self, path: &str, target: &str, mtime: Option<i64>) -> Result<()> {
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
            if let Some(ns) = mtime {
                let t = timespec(ns);
                utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
                    .with_context(|| format!("setting the times of {}", self.show(path)))?;
            }
            Ok(())
        }

        /// Sets a directory's mode and times, through a descriptor opened without following.
        pub fn set_dir_meta(
            &mut self,
            path: &str,
            mode: Option<u32>,
            mtime: Option<i64>,
        ) -> Result<()> {
            let comps: Vec<&str> = path.split('/').collect();
            self.walk(&comps)?;
            set_meta(self.cur(), mode, mtime)
                .with_context(|| format!("setting the mode and times of {}", self.show(path)))
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

    fn set_meta(fd: BorrowedFd<'_>, mode: Option<u32>, mtime: Option<i64>) -> nix::Result<()> {
        if let Some(m) = mode {
            fchmod(fd, Mode::from_bits_truncate((m & 0o7777) as _))?;
        }
        if let Some(ns) = mtime {
            let t = timespec(ns);
            futimens(fd, &t, &t)?;
        }
        Ok(())
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
    use super::split_ns;
    use anyhow::{Context, Result};
    use std::fs::{self, File};
    use std::path::{Path, PathBuf};

    /// A target directory, written through paths joined to its root.
    #[derive(Debug)]
    pub struct Dir {
        root: PathBuf,
    }

    impl Dir {
        pub fn open(root: &Path) -> Result<Dir> {
            Ok(Dir {
                root: root.to_path_buf(),
            })
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

        pub fn create_file(&mut self, path: &str) -> Result<File> {
            let p = self.path(path);
            self.clear(&p)?;
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
                .with_context(|| format!("creating {}", p.display()))
        }

        pub fn finish_file(
            &mut self,
            path: &str,
            _mode: Option<u32>,
            mtime: Option<i64>,
        ) -> Result<()> {
            self.apply_meta(&self.path(path), mtime, false)
        }

        pub fn copy_file(
            &mut self,
            from: &str,
            to: &str,
            _mode: Option<u32>,
            mtime: Option<i64>,
        ) -> Result<()> {
            let (f, t) = (self.path(from), self.path(to));
            self.clear(&t)?;
            fs::copy(&f, &t)
                .with_context(|| format!("copying {} to {}", f.display(), t.display()))?;
            self.apply_meta(&t, mtime, false)
        }

        pub fn remove_file(&mut self, path: &str) -> Result<()> {
            let p = self.path(path);
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))
        }

        pub fn symlink(&mut self, path: &str, target: &str, mtime: Option<i64>) -> Result<()> {
            let p = self.path(path);
            self.clear(&p)?;
            make_symlink(&p, target)?;
            self.apply_meta(&p, mtime, true)
        }

        pub fn set_dir_meta(
            &mut self,
            path: &str,
            _mode: Option<u32>,
            mtime: Option<i64>,
        ) -> Result<()> {
            self.apply_meta(&self.path(path), mtime, false)
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
