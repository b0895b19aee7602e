//! Images and FAT file systems: apply an image straight into a FAT partition through `fatfs`
//! (no mount, no root), and read a FAT partition back as a tree to capture.
//!
//! FAT keeps less than an image does: no permissions or owners, no symbolic links, device
//! nodes or FIFOs (apply refuses an image that has one, naming it), no extended attributes
//! (apply drops them and says how many in its warnings), no hard links (each becomes a copy of
//! its file, as on any file system without them), modification times to 2 seconds, and names
//! matched without regard to case. Capture from FAT first extracts the tree into a scratch folder: the `fatfs`
//! handle is single-threaded, while capture hashes and compresses on every core.

use super::tree::{Meta, RelPath, Special, TreeSink};
use crate::disk::fat::{fat_time, FatFs, TimeOverride};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

/// What a [`FatSink`] wrote: every file's size and sha256 as written, and every directory,
/// so [`Written::compare`] can hold the file system against them once it is closed.
#[derive(Debug, Default, Clone)]
pub struct Written {
    files: Vec<(String, u64, [u8; 32])>,
    dirs: Vec<String>,
}

impl Written {
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Compares what a read-back of the file system found (`found`: path, size, sha256 of
    /// every file, and every directory, from `disk::fatcheck::check_and_hash`) with what was
    /// written: every file there with the same size and content, every directory there.
    /// Paths are compared as FAT compares them ([`fold`]). Errors name the first paths that
    /// differ.
    pub fn compare(&self, found: &[(String, u64, [u8; 32])], dirs: &[String]) -> Result<()> {
        let files: HashMap<String, (u64, [u8; 32])> =
            found.iter().map(|(p, n, h)| (fold(p), (*n, *h))).collect();
        let dirs: std::collections::HashSet<String> = dirs.iter().map(|d| fold(d)).collect();
        let mut wrong = Vec::new();
        for (path, size, sum) in &self.files {
            match files.get(&fold(path)) {
                Some((n, h)) if n == size && h == sum => {}
                Some((n, _)) if n != size => {
                    wrong.push(format!("{path}: {n} bytes read back, {size} written"))
                }
                Some(_) => wrong.push(format!("{path}: the content read back differs")),
                None => wrong.push(format!("{path}: not found when read back")),
            }
            if wrong.len() >= 10 {
                break;
            }
        }
        for d in &self.dirs {
            if wrong.len() >= 10 {
                break;
            }
            if !dirs.contains(&fold(d)) {
                wrong.push(format!("{d}/: not found when read back"));
            }
        }
        if !wrong.is_empty() {
            bail!(
                "the files read back from the FAT file system differ from what was written:\n  {}",
                wrong.join("\n  ")
            );
        }
        Ok(())
    }
}

/// A [`TreeSink`] writing into a mounted FAT file system. Call [`FatFs::close`] afterwards,
/// then check the result with [`Written::compare`] on [`FatSink::into_written`].
///
/// FAT matches names without regard to case (and ignores trailing dots and spaces), so two
/// image paths such as `readme.txt` and `README.TXT` would land in one file: the sink refuses
/// such an image, naming both paths, before anything is written (`check_paths`).
pub struct FatSink<'a> {
    fs: &'a FatFs,
    /// Stamps the file being written with its image time until `finish_file`.
    time: Option<TimeOverride>,
    /// The file being written: its hash and size so far.
    current: Rc<RefCell<(Sha256, u64)>>,
    written: Written,
    /// Extended attributes of the image, which FAT cannot keep.
    xattrs_dropped: u64,
}

impl<'a> FatSink<'a> {
    pub fn new(fs: &'a FatFs) -> Self {
        FatSink {
            fs,
            time: None,
            current: Rc::new(RefCell::new((Sha256::new(), 0))),
            written: Written::default(),
            xattrs_dropped: 0,
        }
    }

    /// What was written, for [`Written::compare`] once the file system is closed.
    pub fn into_written(self) -> Written {
        self.written
    }
}

/// How FAT compares a path: each part upper-cased (Unicode simple case), without trailing dots
/// and spaces (Windows and `fatfs` drop them: `x.` is `x`).
pub fn fold(path: &str) -> String {
    path.split('/')
        .map(|p| p.trim_end_matches(['.', ' ']).to_uppercase())
        .collect::<Vec<_>>()
        .join("/")
}

/// Hashes what passes through to the file.
struct Hashing<W> {
    inner: W,
    state: Rc<RefCell<(Sha256, u64)>>,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut s = self.state.borrow_mut();
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn fat_stamp(meta: &Meta) -> Option<crate::disk::fat::DateTime> {
    meta.mtime_ns
        .map(|ns| fat_time(ns.div_euclid(1_000_000_000)))
}

impl TreeSink for FatSink<'_> {
    fn check_paths(&mut self, paths: &[&RelPath]) -> Result<()> {
        let mut seen: HashMap<String, &RelPath> = HashMap::with_capacity(paths.len());
        for p in paths {
            // Characters a FAT long name may not hold (Microsoft's FAT specification, "Long
            // File Name Implementation": `" * / : < > ? \ |` and control characters); Linux
            // names may hold all but `/`.
            if let Some(ch) = p
                .components()
                .flat_map(str::chars)
                .find(|c| "\"*:<>?\\|".contains(*c) || (*c as u32) < 0x20)
            {
                bail!(
                    "{p}: the character {ch:?} cannot be part of a name on FAT; nothing was \
                     written. Apply the image to a file system that holds it (ext4, XFS, a \
                     folder on Linux)"
                );
            }
            if let Some(first) = seen.insert(fold(p.as_str()), p) {
                bail!(
                    "{p} and {first} are the same name on FAT (names are matched without regard \
                     to case, trailing dots and spaces); nothing was written. Rename one of them \
                     in the image, or apply it to a file system that keeps both (ext4, NTFS, a \
                     folder)"
                );
            }
        }
        Ok(())
    }
    fn create_dir(&mut self, path: &RelPath, meta: &Meta) -> Result<()> {
        self.xattrs_dropped += meta.xattrs.len() as u64;
        self.fs.create_dir_all(path.as_str())?;
        self.written.dirs.push(path.as_str().to_string());
        Ok(())
    }
    fn create_file(&mut self, path: &RelPath, meta: &Meta) -> Result<Box<dyn Write + '_>> {
        self.time = Some(TimeOverride::set(fat_stamp(meta)));
        *self.current.borrow_mut() = (Sha256::new(), 0);
        Ok(Box::new(Hashing {
            inner: self.fs.create_file(path.as_str())?,
            state: self.current.clone(),
        }))
    }
    fn finish_file(&mut self, path: &RelPath, meta: &Meta) -> Result<()> {
        self.xattrs_dropped += meta.xattrs.len() as u64;
        self.time = None;
        let (h, n) = std::mem::replace(&mut *self.current.borrow_mut(), (Sha256::new(), 0));
        self.written
            .files
            .push((path.as_str().to_string(), n, h.finalize().into()));
        Ok(())
    }
    fn copy_file(&mut self, from: &RelPath, to: &RelPath, meta: &Meta) -> Result<()> {
        self.xattrs_dropped += meta.xattrs.len() as u64;
        let _t = TimeOverride::set(fat_stamp(meta));
        self.fs.copy_within(from.as_str(), to.as_str())?;
        let src = self
            .written
            .files
            .iter()
            .rev()
            .find(|f| f.0 == from.as_str())
            .map(|f| (f.1, f.2));
        if let Some((n, h)) = src {
            self.written.files.push((to.as_str().to_string(), n, h));
        }
        Ok(())
    }
    fn remove_file(&mut self, path: &RelPath) -> Result<()> {
        self.time = None;
        self.written.files.retain(|f| f.0 != path.as_str());
        self.fs.remove(path.as_str())
    }
    /// FAT has no hard links: the link becomes a copy of its file (same content and time).
    fn hardlink(&mut self, path: &RelPath, target: &RelPath, meta: &Meta) -> Result<()> {
        let _t = TimeOverride::set(fat_stamp(meta));
        self.fs.copy_within(target.as_str(), path.as_str())?;
        let src = self
            .written
            .files
            .iter()
            .rev()
            .find(|f| f.0 == target.as_str())
            .map(|f| (f.1, f.2));
        if let Some((n, h)) = src {
            self.written.files.push((path.as_str().to_string(), n, h));
        }
        Ok(())
    }
    fn special(&mut self, path: &RelPath, kind: Special, _meta: &Meta) -> Result<()> {
        let what = match kind {
            Special::Device { block: true, .. } => "a block device node",
            Special::Device { .. } => "a character device node",
            Special::Fifo => "a FIFO (named pipe)",
        };
        bail!("{path} is {what}, and FAT cannot hold device nodes or FIFOs")
    }
    fn symlink(&mut self, path: &RelPath, target: &str, meta: &Meta) -> Result<()> {
        let _ = meta;
        bail!("{path} is a symbolic link (to {target}) and FAT cannot hold symbolic links")
    }
    fn warnings(&mut self) -> Vec<String> {
        match self.xattrs_dropped {
            0 => Vec::new(),
            n => vec![format!(
                "FAT keeps no extended attributes: {n} extended attribute(s) of the image were \
                 not applied"
            )],
        }
    }
    fn set_times(&mut self, _path: &RelPath, _meta: &Meta) -> Result<()> {
        // fatfs stamps directories when they are created; FAT directory times are not kept.
        Ok(())
    }
}

/// Copy the whole FAT tree into `dir` (which must exist), keeping modification times.
/// Returns the number of files.
pub fn extract_to_dir(fs: &FatFs, dir: &Path) -> Result<u64> {
    fn walk(fs: &FatFs, rel: &str, dir: &Path, files: &mut u64) -> Result<()> {
        for e in fs.list(rel)? {
            let child_rel = if rel.is_empty() {
                e.name.clone()
            } else {
                format!("{rel}/{}", e.name)
            };
            // FAT names cannot hold '/', but refuse anything that would leave `dir`.
            if e.name.contains(['/', '\\']) || e.name == ".." || e.name == "." {
                bail!("FAT entry {child_rel:?} has a name that cannot be extracted safely");
            }
            let out = dir.join(&e.name);
            if e.is_dir {
                std::fs::create_dir(&out).with_context(|| format!("creating {}", out.display()))?;
                walk(fs, &child_rel, &out, files)?;
            } else {
                let mut f = fs.open_file(&child_rel)?;
                let mut o = std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                std::io::copy(&mut f, &mut o).with_context(|| format!("extracting {child_rel}"))?;
                let m = e.modified;
                let days = crate::log::days_from_civil(
                    m.date.year as i64,
                    m.date.month as u32,
                    m.date.day as u32,
                );
                let secs = days * 86400
                    + m.time.hour as i64 * 3600
                    + m.time.min as i64 * 60
                    + m.time.sec as i64;
                filetime::set_file_mtime(&out, filetime::FileTime::from_unix_time(secs, 0))
                    .with_context(|| format!("setting the time of {}", out.display()))?;
                *files += 1;
            }
        }
        Ok(())
    }
    let mut files = 0;
    walk(fs, "", dir, &mut files)?;
    Ok(files)
}
