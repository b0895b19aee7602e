//! Images and FAT file systems: apply an image straight into a FAT partition through `fatfs`
//! (no mount, no root), and read a FAT partition back as a tree to capture.
//!
//! FAT keeps less than an image does: no permissions, no symbolic links (apply refuses an
//! image that has one, naming it), modification times to 2 seconds, and names matched without
//! regard to case. Capture from FAT first extracts the tree into a scratch folder: the `fatfs`
//! handle is single-threaded, while capture hashes and compresses on every core.

use super::tree::{Meta, RelPath, TreeSink};
use crate::disk::fat::{fat_time, FatFs, TimeOverride};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// A [`TreeSink`] writing into a mounted FAT file system. Call [`FatFs::close`] afterwards.
pub struct FatSink<'a> {
    fs: &'a FatFs,
    /// Stamps the file being written with its image time until `finish_file`.
    time: Option<TimeOverride>,
}

impl<'a> FatSink<'a> {
    pub fn new(fs: &'a FatFs) -> Self {
        FatSink { fs, time: None }
    }
}

fn fat_stamp(meta: &Meta) -> Option<crate::disk::fat::DateTime> {
    meta.mtime_ns
        .map(|ns| fat_time(ns.div_euclid(1_000_000_000)))
}

impl TreeSink for FatSink<'_> {
    fn create_dir(&mut self, path: &RelPath, _meta: &Meta) -> Result<()> {
        self.fs.create_dir_all(path.as_str()).map(|_| ())
    }
    fn create_file(&mut self, path: &RelPath, meta: &Meta) -> Result<Box<dyn Write + '_>> {
        self.time = Some(TimeOverride::set(fat_stamp(meta)));
        Ok(Box::new(self.fs.create_file(path.as_str())?))
    }
    fn finish_file(&mut self, _path: &RelPath, _meta: &Meta) -> Result<()> {
        self.time = None;
        Ok(())
    }
    fn copy_file(&mut self, from: &RelPath, to: &RelPath, meta: &Meta) -> Result<()> {
        let _t = TimeOverride::set(fat_stamp(meta));
        self.fs.copy_within(from.as_str(), to.as_str()).map(|_| ())
    }
    fn remove_file(&mut self, path: &RelPath) -> Result<()> {
        self.time = None;
        self.fs.remove(path.as_str())
    }
    fn symlink(&mut self, path: &RelPath, target: &str, _meta: &Meta) -> Result<()> {
        bail!("{path} is a symbolic link (to {target}) and FAT cannot hold symbolic links")
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
