//! Writing a medium: the same [`MediaTree`] and [`BootSpec`] (from a template, with the
//! `tsforge/` folder added) as a folder ([`dir`]), a raw USB disk image ([`usb`]), an ISO
//! ([`iso`]) or a PXE server root ([`pxe`], optionally as a `.zip`).
//!
//! Every writer works the same way: check everything that can be checked first (file sizes
//! against the format's limits, boot files, the label), write into a hidden temporary name
//! next to the output (`.NAME.tsforge-tmp`), sync, and only then rename it to the output. An
//! error, or a panic, removes the temporary again, so a partial output is never left under
//! the name the user asked for. An existing output is refused unless `force` is set.
//!
//! Every writer takes `epoch` (seconds since 1970, UTC: `SOURCE_DATE_EPOCH`, else now) and
//! uses it for every timestamp and for the identifiers that would otherwise be random (FAT
//! serial, MBR disk signature, GPT GUIDs), so the same tree and epoch give byte-identical
//! output. Progress is reported as `(bytes done, bytes in all)`; each returns an
//! [`OutputSummary`] for the build summary.
//!
//! Left out for now: writing straight to a USB device (`--device`: it needs the disk-safety
//! checks of STYLE §4 — removable, not the system disk, not mounted — before the first write;
//! write the image with `dd` or a disk imager meanwhile).

pub mod dir;
pub mod iso;
pub mod pxe;
pub mod usb;

pub use dir::{write_dir, DirOptions};
pub use iso::{write_iso, IsoOutputOptions};
pub use pxe::{write_pxe, PxeOptions};
pub use usb::{write_usb, PartitionTable, UsbOptions};

use crate::source::{copy_exact, CopyError, Source};
use crate::tree::MediaTree;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tsforge_runtime::sys::BUFFER_SIZE;

/// The callback every writer reports progress to: `(bytes done, bytes in all)`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// The volume label used when none is given (ISO and FAT).
pub const DEFAULT_LABEL: &str = "TSFORGE";

/// Which kind of medium was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Dir,
    Usb,
    Iso,
    Pxe,
    PxeZip,
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputKind::Dir => "folder",
            OutputKind::Usb => "USB disk image",
            OutputKind::Iso => "ISO image",
            OutputKind::Pxe => "PXE root folder",
            OutputKind::PxeZip => "PXE root (zip)",
        })
    }
}

/// One thing placed in the output: a partition, a boot record, a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// What it is ("partition 1: FAT32 \"TSFORGE\"", "boot.ipxe", "BIOS boot: isolinux/isolinux.bin").
    pub what: String,
    /// Byte offset in an image, when it has one.
    pub offset: Option<u64>,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a writer made, for the build summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSummary {
    pub kind: OutputKind,
    /// The output as written (after the rename).
    pub path: PathBuf,
    /// Size of the output: the image or archive, or the bytes of all files in a folder.
    pub bytes: u64,
    /// Files of the medium written (for PXE: files in the root).
    pub files: u64,
    /// Bytes of those files.
    pub content_bytes: u64,
    /// What went where.
    pub placed: Vec<Placed>,
    /// Things the user should know (no BIOS boot and why, files to add by hand, …).
    pub notes: Vec<String>,
}

impl OutputSummary {
    /// Human-readable lines: the output, then what went where, then the notes.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{} {}: {} ({} files, {} of content)",
            self.kind,
            self.path.display(),
            tsforge_runtime::disk::format_size(self.bytes),
            self.files,
            tsforge_runtime::disk::format_size(self.content_bytes)
        )];
        for p in &self.placed {
            let at = p
                .offset
                .map(|o| format!(" at byte {o}"))
                .unwrap_or_default();
            out.push(format!(
                "  {}{at}: {}",
                p.what,
                tsforge_runtime::disk::format_size(p.bytes)
            ));
        }
        for n in &self.notes {
            out.push(format!("  note: {n}"));
        }
        out
    }
}

/// A file of the tree with its size, taken once when the output is planned.
pub(crate) struct PlannedFile<'a> {
    pub path: &'a str,
    pub source: &'a Source,
    pub size: u64,
}

/// Every file of `tree` with its size; an unreadable source is an error naming it.
pub(crate) fn plan_files(tree: &MediaTree) -> Result<Vec<PlannedFile<'_>>> {
    tree.iter()
        .map(|(path, source)| {
            let size = source
                .size()
                .with_context(|| format!("{path}: cannot read {}", source.describe()))?;
            Ok(PlannedFile { path, source, size })
        })
        .collect()
}

/// `epoch` as a file time (clamped at 1970).
pub(crate) fn system_time(epoch: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(epoch).unwrap_or(0))
}

/// Copy `f` to a new file at `dest` (parents created), stamped with `epoch` and synced.
/// `step` gets the number of bytes after every write.
pub(crate) fn copy_to_file(
    f: &PlannedFile<'_>,
    dest: &Path,
    epoch: i64,
    buf: &mut [u8],
    step: &mut dyn FnMut(u64),
) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating folder {}", parent.display()))?;
    }
    let mut out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    copy_exact(f.source, f.size, &mut out, buf, step).map_err(|e| copy_error(f, e, dest))?;
    out.set_modified(system_time(epoch))
        .with_context(|| format!("setting the time of {}", dest.display()))?;
    out.sync_all()
        .with_context(|| format!("writing {}", dest.display()))
}

/// A [`CopyError`] as an error naming the file of the medium, its source and the destination.
pub(crate) fn copy_error(f: &PlannedFile<'_>, e: CopyError, dest: &Path) -> anyhow::Error {
    match e {
        CopyError::Read(e) => anyhow!("{}: reading {}: {e}", f.path, f.source.describe()),
        CopyError::Write(e) => anyhow!("{}: writing {}: {e}", f.path, dest.display()),
        CopyError::Changed => anyhow!(
            "{}: {} changed size while it was copied (planned {} bytes); build from files \
             nothing else is writing to",
            f.path,
            f.source.describe(),
            f.size
        ),
    }
}

/// A fresh buffer for copying file data.
pub(crate) fn copy_buffer() -> Vec<u8> {
    vec![0u8; BUFFER_SIZE]
}

/// The output being written under a temporary name next to its destination. Dropped without
/// [`TempOutput::commit`], it removes what was written.
pub(crate) struct TempOutput {
    tmp: PathBuf,
    dest: PathBuf,
    force: bool,
    done: bool,
}

impl TempOutput {
    /// Check that `dest` may be written (it does not exist, or `force`; for a file output,
    /// it is not a folder) and pick the temporary name `.NAME.tsforge-tmp` in its folder
    /// (a stale one from an interrupted run is removed).
    pub fn new(dest: &Path, force: bool, is_dir: bool) -> Result<TempOutput> {
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{}: give the output a file or folder name", dest.display()))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            bail!(
                "{}: the folder {} does not exist; create it first",
                dest.display(),
                parent.display()
            );
        }
        match std::fs::symlink_metadata(dest) {
            Ok(meta) if is_dir => {
                if !meta.is_dir() {
                    bail!("{} exists and is not a folder", dest.display());
                }
                let empty = std::fs::read_dir(dest)
                    .with_context(|| format!("reading {}", dest.display()))?
                    .next()
                    .is_none();
                if !empty && !force {
                    bail!(
                        "{} exists and is not empty; choose another folder, empty it, or use \
                         --force to replace the entries the medium has",
                        dest.display()
                    );
                }
            }
            Ok(meta) => {
                if meta.is_dir() {
                    bail!(
                        "{} is a folder; give a file name for the image",
                        dest.display()
                    );
                }
                if !force {
                    bail!(
                        "{} exists; choose another name or use --force to replace it",
                        dest.display()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!("{}: {e}", dest.display())),
        }
        let tmp = parent.join(format!(".{name}.tsforge-tmp"));
        remove_any(&tmp).with_context(|| format!("removing the stale {}", tmp.display()))?;
        Ok(TempOutput {
            tmp,
            dest: dest.to_path_buf(),
            force,
            done: false,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Move the finished output to its name. A file output replaces an existing file (only
    /// possible with `force`); a folder output moves into an empty or missing folder, or,
    /// with `force`, its top-level entries replace those of the same name in the existing
    /// folder (other entries are kept).
    pub fn commit(mut self) -> Result<PathBuf> {
        let meta = std::fs::symlink_metadata(&self.tmp)
            .with_context(|| format!("{} vanished before it was complete", self.tmp.display()))?;
        if meta.is_dir() {
            self.commit_dir()?;
        } else {
            if self.force && self.dest.exists() {
                // Windows' rename does not replace an existing file.
                std::fs::remove_file(&self.dest)
                    .with_context(|| format!("replacing {}", self.dest.display()))?;
            }
            std::fs::rename(&self.tmp, &self.dest).with_context(|| {
                format!("renaming {} to {}", self.tmp.display(), self.dest.display())
            })?;
        }
        self.done = true;
        sync_parent(&self.dest);
        Ok(self.dest.clone())
    }

    fn commit_dir(&mut self) -> Result<()> {
        let rename = |from: &Path, to: &Path| {
            std::fs::rename(from, to)
                .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
        };
        if !self.dest.exists() {
            return rename(&self.tmp, &self.dest);
        }
        let empty = std::fs::read_dir(&self.dest)?.next().is_none();
        if empty {
            std::fs::remove_dir(&self.dest)
                .with_context(|| format!("replacing the empty folder {}", self.dest.display()))?;
            return rename(&self.tmp, &self.dest);
        }
        if !self.force {
            bail!(
                "{} is no longer empty; nothing was replaced",
                self.dest.display()
            );
        }
        let mut entries: Vec<_> = std::fs::read_dir(&self.tmp)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let target = self.dest.join(e.file_name());
            remove_any(&target).with_context(|| format!("replacing {}", target.display()))?;
            rename(&e.path(), &target)?;
        }
        std::fs::remove_dir(&self.tmp).with_context(|| format!("removing {}", self.tmp.display()))
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: the error that stopped the writer is the one to report.
            let _ = remove_any(&self.tmp);
        }
    }
}

/// Remove a file or a folder tree; a missing path is fine.
pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Make the rename durable (a directory can be synced on Unix only).
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Bytes per file system entry of a folder tree: sum of sizes.
pub(crate) fn content_bytes(files: &[PlannedFile<'_>]) -> u64 {
    files.iter().map(|f| f.size).sum()
}

/// A deterministic 64-bit value from `parts` and `epoch` (SplitMix64 over FNV-1a), for the
/// identifiers that must not change between two builds of the same tree.
pub(crate) fn stable_id(parts: &[&str], epoch: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let mut x = h ^ (epoch as u64);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_output_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.img");
        {
            let t = TempOutput::new(&dest, false, false).unwrap();
            std::fs::write(t.path(), b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let t = TempOutput::new(&dest, false, false).unwrap();
        std::fs::write(t.path(), b"whole").unwrap();
        t.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        let err = TempOutput::new(&dest, false, false).err().unwrap();
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        let t = TempOutput::new(&dest, true, false).unwrap();
        std::fs::write(t.path(), b"new").unwrap();
        t.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    }

    #[test]
    fn stable_ids_depend_on_every_input() {
        let a = stable_id(&["disk", "TSFORGE"], 1);
        assert_eq!(a, stable_id(&["disk", "TSFORGE"], 1));
        assert_ne!(a, stable_id(&["disk", "TSFORGE"], 2));
        assert_ne!(a, stable_id(&["part", "TSFORGE"], 1));
        assert_ne!(stable_id(&["ab", "c"], 1), stable_id(&["a", "bc"], 1));
    }
}
