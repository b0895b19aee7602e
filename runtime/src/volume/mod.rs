//! Apply and capture at the level administrators think in: an image file onto a *location*
//! (a folder, a whole disk, or partition N of a disk), and a location back into an image.
//! Shared by `tsforge apply`/`capture` and the task-sequence image steps.
//!
//! What a partition holds is read from its own bytes first ([`fs`]: FAT, ext2/3/4, XFS, NTFS;
//! anything else is an error naming what was found), with the disk opened read-only.
//!
//! | image kind ([`detect`]) | folder | FAT partition | ext2/3/4, XFS or NTFS partition | whole disk |
//! | --- | --- | --- | --- | --- |
//! | tsforge image | yes | yes, through `fatfs`, no mount | Linux, root: mounted (`mount -t ext4\|xfs\|ntfs-3g`; an image file's partition through a loop device), applied, unmounted | refused |
//! | WIM | `wimlib-imagex`/DISM | with a scratch folder ([`apply_in`]): extracted there, then as a tsforge image; else refused | NTFS: `wimlib-imagex` writes the volume itself (NTFS volume mode: security descriptors, streams, reparse points), onto the partition node or, for an image file, a loop device (root); ext2/3/4, XFS: mounted (root), extracted as a folder | refused |
//! | raw `.img`/`.raw`/`.iso`/`.bin`/`.dd` (`.zst`, `.gz`), or `--raw` | refused | written over the partition | written over the partition | written over the disk |
//!
//! Capture reads a folder, a FAT partition (extracted to a scratch folder first, see
//! `image::fat`) or, on Linux as root, an ext2/3/4, XFS or NTFS partition (mounted read-only
//! with its type, through a loop device for an image file) into a tsforge image, or into a WIM
//! when the output ends in `.wim` (NTFS: read by `wimlib-imagex` from the partition itself,
//! keeping what a mounted copy loses). The run's state folder `_SMSTaskSequence` at the
//! partition's root is always left out (the FAT copy removes it, a mount uses a
//! [`image::CaptureFilter`], a WIM a capture configuration's `[ExclusionList]`) and listed as
//! left out; ext4's `lost+found` belongs to the file system and is captured.
//!
//! Not as root, an apply or capture that needs a mount or loop device fails before anything
//! is opened for writing, saying so (`disk.img:2 holds ext4: applying to it mounts it, which
//! needs root; …`).

use crate::disk::{fat, layout, Disk, DiskRange};
use crate::image::{self, CaptureOptions, DirSink, DirSource, ImageInfo, Progress};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

pub mod fs;
pub mod location;
mod mount;

pub use mount::Mount;

pub use fs::FileSystem;
pub use location::Location;
use mount::{LoopDevice, Part};

/// The folder a running sequence keeps its state in on a volume of the deployed disk
/// (ConfigMgr's name; `engine::home`). Capture leaves it out.
pub const STATE_FOLDER: &str = "_SMSTaskSequence";

/// What an image file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Tsforge,
    Wim,
    Raw,
}

/// Names of raw images (each may end in a compression extension of [`RAW_COMPRESSED`]).
pub const RAW_EXTENSIONS: &[&str] = &["img", "raw", "iso", "bin", "dd"];
/// Compression extensions after a raw image's own. zstd and gzip are read; xz and bzip2 are
/// recognised so that the error says how to convert them.
pub const RAW_COMPRESSED: &[&str] = &["zst", "zstd", "gz", "xz", "bz2"];
const WIM_EXTENSIONS: &[&str] = &["wim", "esd", "swm"];
const TSFORGE_EXTENSION: &str = "tsimg";

/// What the name of `path` says it is.
fn kind_by_name(path: &Path) -> Option<ImageKind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let (stem, ext) = name.rsplit_once('.')?;
    if ext == TSFORGE_EXTENSION {
        return Some(ImageKind::Tsforge);
    }
    if WIM_EXTENSIONS.contains(&ext) {
        return Some(ImageKind::Wim);
    }
    let ext = if RAW_COMPRESSED.contains(&ext) {
        stem.rsplit_once('.')?.1
    } else {
        ext
    };
    RAW_EXTENSIONS.contains(&ext).then_some(ImageKind::Raw)
}

/// The kind of an image file, decided only on positive evidence (docs/image-format.md,
/// "Which images apply takes"), so that a damaged image is an error rather than bytes written
/// over a disk:
///
/// - `raw` (`--raw`): a raw image, whatever it holds;
/// - a file that starts like a ZIP, or is named `.tsimg`: a tsforge image, whose manifest and
///   end records are checked here ([`crate::image::check_file`]); if they are wrong this is an
///   error that names the file and what is wrong;
/// - a file that starts with the WIM header (`MSWIM`): a WIM; named `.wim`, `.esd` or `.swm`
///   without that header: an error;
/// - named `.img`, `.raw`, `.iso`, `.bin` or `.dd`, optionally compressed (`.img.zst`,
///   `.img.gz`, …): a raw image;
/// - anything else: an error listing the kinds and `--raw`.
pub fn detect(path: &Path, raw: bool) -> Result<ImageKind> {
    let shown = path.display();
    let head = read_head(path)?;
    if raw {
        return Ok(ImageKind::Raw);
    }
    let by_name = kind_by_name(path);
    if detect_head(&head) == Some(ImageKind::Tsforge) || by_name == Some(ImageKind::Tsforge) {
        return match crate::image::check_file(path) {
            Ok(_) => Ok(ImageKind::Tsforge),
            Err(e) => bail!("{shown}: not a valid tsforge image ({e:#}); nothing was written"),
        };
    }
    if detect_head(&head) == Some(ImageKind::Wim) {
        return Ok(ImageKind::Wim);
    }
    match by_name {
        Some(ImageKind::Wim) => bail!(
            "{shown}: not a valid WIM (it does not start with the MSWIM header); nothing was \
             written"
        ),
        Some(ImageKind::Raw) => Ok(ImageKind::Raw),
        _ => bail!(
            "{shown}: not a recognised image; nothing was written. apply takes a tsforge image \
             (a ZIP whose first entry is tsforge-image.json, usually .tsimg), a WIM (.wim) or a \
             raw disk or partition image named .img, .raw, .iso, .bin or .dd (optionally \
             compressed: .img.zst, .img.gz); to write any file byte for byte onto a disk or \
             partition, pass --raw"
        ),
    }
}

/// Whether `path` says it is a tsforge image or a WIM, by its first bytes or its name
/// (whether or not it is a valid one).
pub fn claims_tsforge_or_wim(path: &Path) -> bool {
    let head = read_head(path).unwrap_or_default();
    detect_head(&head).is_some()
        || matches!(
            kind_by_name(path),
            Some(ImageKind::Tsforge | ImageKind::Wim)
        )
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut head = [0u8; 64];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(head[..n].to_vec())
}

/// What the first bytes of an image say it is: a ZIP (a tsforge image, or a damaged one) or a
/// WIM; `None` for anything else (a raw image says nothing about itself).
pub fn detect_head(head: &[u8]) -> Option<ImageKind> {
    if head.starts_with(b"MSWIM\0\0\0") {
        return Some(ImageKind::Wim);
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(ImageKind::Tsforge);
    }
    None
}

/// Partition `number` of `disk` as a byte range, with its table entry.
pub fn partition_range(disk: &Disk, number: u32) -> Result<(DiskRange, layout::PartitionInfo)> {
    let table = layout::read_table(disk)?
        .with_context(|| format!("{} has no partition table", disk.path().display()))?;
    let part = table
        .partitions
        .into_iter()
        .find(|p| p.number == number)
        .with_context(|| format!("{} has no partition {number}", disk.path().display()))?;
    Ok((disk.range(part.start, part.len)?, part))
}

/// Apply `image_path` (WIM: image `index`) onto `target`. `force` lets a folder target be
/// non-empty; `raw` writes the file as a raw image whatever its name (see [`detect`]).
/// Returns the image's manifest for tsforge images.
pub fn apply(
    image_path: &Path,
    index: u32,
    target: &Location,
    force: bool,
    raw: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Option<ImageInfo>> {
    apply_in(image_path, index, target, force, raw, None, progress)
}

/// [`apply`], with a `scratch` folder for a WIM that goes onto a partition wimlib-imagex cannot
/// write itself: a partition of an image file, or a FAT partition. The WIM image is extracted
/// into the scratch folder, kept there as an uncompressed tsforge image (every file hashed), and
/// that is applied as any tsforge image is (FAT through `fatfs` and checked afterwards, other
/// file systems mounted); the scratch copies are removed afterwards. Without `scratch` such a
/// target is refused, as by [`apply`].
pub fn apply_in(
    image_path: &Path,
    index: u32,
    target: &Location,
    force: bool,
    raw: bool,
    scratch: Option<&Path>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Option<ImageInfo>> {
    let kind = detect(image_path, raw)?;
    let shown = image_path.display();
    match (kind, target) {
        (ImageKind::Tsforge, _) => {
            let mut r = open_image(image_path)?;
            apply_tsforge_stream(&mut r, target, force, progress)
                .map(Some)
                .map_err(|e| {
                    if matches!(target, Location::Disk(_)) {
                        anyhow::anyhow!("{shown} {e:#}")
                    } else {
                        e
                    }
                })
        }
        (ImageKind::Wim, Location::Dir(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            crate::image::wim::apply(image_path, index, dir)?;
            Ok(None)
        }
        (ImageKind::Wim, Location::Partition { disk, number }) => {
            let p = probe(disk, *number)?;
            let part = p.part(disk, *number);
            match p.fs {
                None => match scratch {
                    Some(scratch) => {
                        wim_through_folder(image_path, index, target, scratch, progress).map(Some)
                    }
                    None => bail!(
                        "{shown} is a WIM and {target} holds FAT, which wimlib-imagex does not \
                         write into; apply the WIM to a folder, or from a task sequence (which \
                         extracts it through the run's scratch folder)"
                    ),
                },
                Some(FileSystem::Ntfs) if part.block_device => {
                    // wimlib-imagex's NTFS volume mode, straight onto the partition's node.
                    let node = crate::disk::reread::partition_path(disk, *number);
                    crate::image::wim::apply(image_path, index, &node)?;
                    Ok(None)
                }
                Some(FileSystem::Ntfs) => {
                    mount::require_root(
                        &part,
                        FileSystem::Ntfs,
                        "applying a WIM to it writes it through a loop device",
                        "apply to a folder",
                    )?;
                    let lo = LoopDevice::attach(&part, false)?;
                    crate::image::wim::apply(image_path, index, lo.path())?;
                    lo.detach()?;
                    Ok(None)
                }
                Some(fs) => {
                    mount::require_root(
                        &part,
                        fs,
                        "applying to it mounts it",
                        "apply to a folder",
                    )?;
                    let m = Mount::new(&part, fs, false)?;
                    crate::image::wim::apply(image_path, index, m.dir())?;
                    m.unmount()?;
                    Ok(None)
                }
            }
        }
        (ImageKind::Wim, Location::Disk(_)) => {
            bail!("{shown} is a WIM; apply it to a partition or a folder, not to {target}")
        }
        (ImageKind::Raw, Location::Dir(_)) => bail!(
            "{shown} is a raw disk or partition image; apply it to a disk or partition (DISK:N), \
             not to {target}"
        ),
        (ImageKind::Raw, Location::Partition { disk, number }) => {
            let d = Disk::open(disk, true)?;
            let (mut range, _) = partition_range(&d, *number)?;
            raw_apply(image_path, &mut range, &d, progress)?;
            range.finish().context("writing the image")?;
            d.sync()?;
            Ok(None)
        }
        (ImageKind::Raw, Location::Disk(disk)) => {
            let d = Disk::open(disk, true)?;
            let mut range = d.whole()?;
            raw_apply(image_path, &mut range, &d, progress)?;
            range.finish().context("writing the image")?;
            d.sync()?;
            Ok(None)
        }
    }
}

/// A WIM image onto a partition through a scratch folder ([`apply_in`]).
fn wim_through_folder(
    wim: &Path,
    index: u32,
    target: &Location,
    scratch: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageInfo> {
    std::fs::create_dir_all(scratch)
        .with_context(|| format!("creating the scratch folder {}", scratch.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("wim-apply-")
        .tempdir_in(scratch)
        .with_context(|| format!("creating a scratch folder in {}", scratch.display()))?;
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).with_context(|| format!("creating {}", tree.display()))?;
    crate::image::wim::apply(wim, index, &tree)?;
    let staged = tmp.path().join("image.tsimg");
    let opts = CaptureOptions {
        name: format!("image {index} of {}", wim.display()),
        description: String::new(),
        compression: image::Compression::None,
        threads: 0,
    };
    image::capture(&DirSource::new(&tree), &staged, &opts, &mut |_| {}).with_context(|| {
        format!(
            "staging image {index} of {} (extracted to {}) for {target}",
            wim.display(),
            tree.display()
        )
    })?;
    // The extracted tree is no longer needed: free its room before the partition is written.
    std::fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    let mut r = open_image(&staged)?;
    let info = apply_tsforge_stream(&mut r, target, true, progress)?;
    drop(r);
    tmp.close()
        .with_context(|| format!("removing the scratch folder in {}", scratch.display()))?;
    Ok(info)
}

/// Apply a tsforge image read from `image` (a file, or a verified stream from a distribution
/// point) onto `target`: a folder, or a partition (FAT directly; other file systems mounted).
pub fn apply_tsforge_stream(
    image: &mut dyn Read,
    target: &Location,
    force: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageInfo> {
    match target {
        Location::Dir(dir) => {
            let mut sink = DirSink::new(dir, force)?;
            image::apply(image, &mut sink, progress)
        }
        Location::Partition { disk, number } => {
            // Read-only first: what the partition holds decides how it is written, and a
            // partition to be mounted is refused before anything opens it for writing.
            let p = probe(disk, *number)?;
            if let Some(fs) = p.fs {
                let part = p.part(disk, *number);
                mount::require_root(&part, fs, "applying to it mounts it", "apply to a folder")?;
                let m = Mount::new(&part, fs, false)?;
                let mut sink = DirSink::new(m.dir(), true)?;
                let info = image::apply(image, &mut sink, progress)?;
                m.unmount()?;
                return Ok(info);
            }
            let d = Disk::open(disk, true)?;
            let (range, _) = partition_range(&d, *number)?;
            let fs = fat::open(range)
                .with_context(|| format!("opening the FAT file system of {target}"))?;
            {
                // Never write into a damaged FAT: `fatfs` trusts what it reads.
                let (mut check_range, _) = partition_range(&d, *number)?;
                let report = crate::disk::fatcheck::check(&mut check_range)
                    .with_context(|| format!("checking the FAT file system on {target}"))?;
                if !report.is_clean_for_writing() {
                    let mut found = report.problems.clone();
                    found.extend(report.after_end.iter().cloned());
                    let report = crate::disk::fatcheck::Report {
                        problems: found,
                        ..Default::default()
                    };
                    bail!(
                        "{target} holds a damaged FAT file system; nothing was written. \
                         Format it first (a Format and Partition Disk step, or `tsforge disk \
                         partition`):\n  {}",
                        report.problems.join("\n  ")
                    );
                }
            }
            let (info, written) = {
                let mut sink = image::fat::FatSink::new(&fs);
                let info = image::apply(image, &mut sink, progress)?;
                (info, sink.into_written())
            };
            fs.close()?;
            d.sync()?;
            // bench/fat-apply measures what the check costs by turning it off there; nothing
            // else sets this.
            if std::env::var_os("TSFORGE_BENCH_SKIP_APPLY_CHECK").is_none() {
                check_fat_apply(disk, *number, &written)
                    .with_context(|| format!("checking what was applied to {target}"))?;
            }
            Ok(info)
        }
        Location::Disk(_) => bail!(
            "is a tsforge image (a file tree); apply it to a partition (DISK:N) or a folder, not \
             to the whole disk {target}"
        ),
    }
}

/// After an apply onto FAT: the file system is consistent ([`fat`]'s raw check, what
/// `fsck.fat -n` checks first) and every file reads back with the size and sha256 written.
fn check_fat_apply(disk: &Path, number: u32, written: &image::fat::Written) -> Result<()> {
    let d = Disk::open(disk, false)?;
    let (mut range, _) = partition_range(&d, number)?;
    let report =
        crate::disk::fatcheck::check_and_hash(&mut range).context("checking the file system")?;
    if !report.is_clean_for_writing() {
        bail!(
            "the FAT file system is damaged after the apply:\n  {}",
            report
                .problems
                .iter()
                .chain(&report.after_end)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    written.compare(&report.contents, &report.dir_paths)
}

fn open_image(path: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::with_capacity(
        crate::sys::BUFFER_SIZE,
        f,
    ))
}

fn raw_apply(
    image_path: &Path,
    range: &mut DiskRange,
    disk: &Disk,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u64> {
    let len = range.len();
    let mut cb = |done: u64, total: Option<u64>| {
        progress(&Progress {
            bytes_done: done,
            bytes_total: total.unwrap_or(len),
            files_done: 0,
            files_total: 0,
        })
    };
    crate::image::raw::apply(
        image_path,
        range,
        len,
        crate::image::raw::ApplyOptions {
            expected_sha256: None,
            sparse: !disk.is_block_device(),
            progress: Some(&mut cb),
        },
    )
}

/// Capture `source` into `out` (a tsforge image, or a WIM when `out` ends in `.wim`).
/// `scratch` is a folder for extracting FAT partitions. Every path left out (the run's state
/// folder `_SMSTaskSequence` at a partition's root) is added to `left_out`, one line each, for
/// the caller to show. Returns the manifest of a tsforge image (`None` for a WIM).
pub fn capture(
    source: &Location,
    out: &Path,
    opts: &CaptureOptions,
    scratch: &Path,
    progress: &mut dyn FnMut(&Progress),
    left_out: &mut Vec<String>,
    leave_out: &[PathBuf],
) -> Result<Option<ImageInfo>> {
    let wim = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wim"));
    let (dir, _cleanup): (PathBuf, Option<tempfile::TempDir>) = match source {
        Location::Dir(d) => (d.clone(), None),
        Location::Partition { disk, number } => {
            let p = probe(disk, *number)?;
            if let Some(fs) = p.fs {
                return capture_mounted(
                    &p.part(disk, *number),
                    fs,
                    out,
                    wim,
                    opts,
                    progress,
                    left_out,
                );
            }
            let d = Disk::open(disk, false)?;
            let (range, _) = partition_range(&d, *number)?;
            std::fs::create_dir_all(scratch)
                .with_context(|| format!("creating {}", scratch.display()))?;
            let fs = fat::open_checked(range)
                .with_context(|| format!("reading the FAT file system of {source}"))?;
            let tmp = tempfile::Builder::new()
                .prefix("capture-")
                .tempdir_in(scratch)
                .with_context(|| format!("creating a scratch folder in {}", scratch.display()))?;
            image::fat::extract_to_dir(&fs, tmp.path())?;
            // The running sequence's own state (engine::home) is not part of what is captured.
            let state = tmp.path().join(STATE_FOLDER);
            if state.is_dir() {
                std::fs::remove_dir_all(&state)
                    .with_context(|| format!("leaving {} out", state.display()))?;
                left_out.push(STATE_LEFT_OUT.to_string());
            }
            (tmp.path().to_path_buf(), Some(tmp))
        }
        Location::Disk(_) => {
            bail!("capture reads a folder or a partition (DISK:N), not the whole {source}")
        }
    };
    if wim {
        crate::image::wim::capture(&dir, out, &opts.name, &opts.description, "xpress")?;
        return Ok(None);
    }
    let filter = match source {
        Location::Dir(_) => folder_filter(&dir, leave_out)?,
        _ => image::CaptureFilter::default(),
    };
    let src = DirSource::with_filter(&dir, filter);
    let r = image::capture(&src, out, opts, progress);
    // Every pattern of a folder's filter is the run's own (no --exclude here).
    left_out.extend(src.left_out().into_iter().map(|l| {
        l.replace(
            " (matches --exclude)",
            " (the running sequence's own files)",
        )
    }));
    r.map(Some)
}

/// What a capture of the folder `dir` by a running sequence leaves out: the run's state
/// folder at its root (as for partitions), and each of `leave_out` (the run's state
/// directory, the image being written) that lies inside it.
fn folder_filter(dir: &Path, leave_out: &[PathBuf]) -> Result<image::CaptureFilter> {
    let root = std::fs::canonicalize(dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut exclude = vec![format!("/{STATE_FOLDER}")];
    for p in leave_out {
        // The path as it will be: its folder resolved, its own name kept (it may not exist yet).
        let full = match (p.parent().map(std::fs::canonicalize), p.file_name()) {
            (Some(Ok(parent)), Some(name)) => parent.join(name),
            _ => continue,
        };
        if let Ok(rel) = full.strip_prefix(&root) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if !rel.is_empty() {
                exclude.push(format!("/{}", rel.join("/")));
            }
        }
    }
    Ok(image::CaptureFilter {
        exclude,
        cross_file_systems: false,
    })
}

/// How a left-out state folder is listed.
const STATE_LEFT_OUT: &str = "_SMSTaskSequence (the run's state folder)";

/// Capture a partition tsforge mounts (ext2/3/4, XFS, NTFS): mounted read-only and captured
/// as a folder, leaving out the state folder at its root; an NTFS partition into a WIM is read
/// by wimlib-imagex itself (NTFS volume mode: security descriptors, alternate data streams and
/// reparse points kept), through a read-only loop device for an image file.
fn capture_mounted(
    part: &Part,
    fs: FileSystem,
    out: &Path,
    wim: bool,
    opts: &CaptureOptions,
    progress: &mut dyn FnMut(&Progress),
    left_out: &mut Vec<String>,
) -> Result<Option<ImageInfo>> {
    let exclude = format!("/{STATE_FOLDER}");
    if wim && fs == FileSystem::Ntfs {
        let lo = if part.block_device {
            None
        } else {
            mount::require_root(
                part,
                fs,
                "capturing it into a WIM reads it through a loop device",
                "capture a folder",
            )?;
            Some(LoopDevice::attach(part, true)?)
        };
        let node = match &lo {
            Some(lo) => lo.path().to_path_buf(),
            None => crate::disk::reread::partition_path(part.disk, part.number),
        };
        crate::image::wim::capture_excluding(
            &node,
            out,
            &opts.name,
            &opts.description,
            "xpress",
            &[&exclude],
        )?;
        if let Some(lo) = lo {
            lo.detach()?;
        }
        // wimlib does not say whether the folder was there: the list says so.
        left_out.push(format!(
            "{STATE_LEFT_OUT}, if there is one (wimlib's exclusion list)"
        ));
        return Ok(None);
    }
    mount::require_root(part, fs, "capturing it mounts it", "capture a folder")?;
    let m = Mount::new(part, fs, true)?;
    let info = if wim {
        let there = m.dir().join(STATE_FOLDER).exists();
        crate::image::wim::capture_excluding(
            m.dir(),
            out,
            &opts.name,
            &opts.description,
            "xpress",
            &[&exclude],
        )?;
        if there {
            left_out.push(STATE_LEFT_OUT.to_string());
        }
        None
    } else {
        let src = DirSource::with_filter(
            m.dir(),
            image::CaptureFilter {
                exclude: vec![exclude.clone()],
                cross_file_systems: false,
            },
        );
        let r = image::capture(&src, out, opts, progress);
        for l in src.left_out() {
            // The one pattern here is the state folder's, not the user's --exclude.
            left_out.push(if l.starts_with(&format!("{STATE_FOLDER} ")) {
                STATE_LEFT_OUT.to_string()
            } else {
                l
            });
        }
        Some(r?)
    };
    m.unmount()?;
    Ok(info)
}

/// What [`probe`] found on a partition: its range, and its file system (`None`: FAT, which
/// tsforge reads and writes itself).
struct Probed {
    fs: Option<FileSystem>,
    block_device: bool,
    offset: u64,
    len: u64,
}

impl Probed {
    fn part<'a>(&self, disk: &'a Path, number: u32) -> Part<'a> {
        Part {
            disk,
            number,
            block_device: self.block_device,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// Which file system partition `number` of `disk` holds, read from its own bytes (the disk
/// opened read-only): FAT (`disk::fat`), or one [`fs::identify`] knows; anything else is an
/// error naming what was found.
fn probe(disk: &Path, number: u32) -> Result<Probed> {
    let d = Disk::open(disk, false)?;
    let (range, _) = partition_range(&d, number)?;
    let (offset, len) = (range.offset(), range.len());
    let block_device = d.is_block_device();
    let fat_err = match fat::open(range) {
        Ok(_) => {
            return Ok(Probed {
                fs: None,
                block_device,
                offset,
                len,
            })
        }
        Err(e) => e,
    };
    let shown = Location::Partition {
        disk: disk.to_path_buf(),
        number,
    };
    let (mut range, _) = partition_range(&d, number)?;
    let head = fs::read_head(&mut range).with_context(|| format!("reading {shown}"))?;
    match fs::identify(&head) {
        Ok(fs) => Ok(Probed {
            fs: Some(fs),
            block_device,
            offset,
            len,
        }),
        Err(what) => bail!("{shown} holds {what} (not FAT: {fat_err:#})"),
    }
}

/// Partition `number` of `disk` mounted on a temporary folder for other work on the tree it
/// holds (making an applied OS bootable, configuring it): its file system detected from its
/// bytes and named to `mount`, root required first (the error says so), unmounted by
/// [`Mount::unmount`] or on drop. A FAT partition is an error: FAT is read and written
/// directly (`disk::fat`), never mounted.
pub fn mount_partition(disk: &Path, number: u32, read_only: bool) -> Result<Mount> {
    let p = probe(disk, number)?;
    let part = p.part(disk, number);
    let Some(fs) = p.fs else {
        bail!(
            "{} holds FAT, which tsforge reads and writes without mounting",
            part.text()
        );
    };
    mount::require_root(
        &part,
        fs,
        "working on its files mounts it",
        "work on a folder",
    )?;
    Mount::new(&part, fs, read_only)
}

/// What partition `target` holds, for a log line before an apply or capture: `partition 2 of
/// disk.img holds ext4`; `None` for a folder or a whole disk, or when it
/// cannot be read (the apply or capture then says why).
pub fn describe(target: &Location) -> Option<String> {
    let Location::Partition { disk, number } = target else {
        return None;
    };
    let p = probe(disk, *number).ok()?;
    Some(match p.fs {
        None => format!("{target} holds FAT (written and read by tsforge itself, no mount)"),
        Some(fs) => format!("{target} holds {fs}"),
    })
}
