//! The disk and image steps: *Format and Partition Disk*, *Apply Operating System Image*,
//! *Apply Data Image* and *Capture Operating System Image*, on image files and block devices
//! alike (the disk layer makes no difference between them).
//!
//! Disk numbers (`DiskIndex`, `DestinationDisk`) resolve through `--disk N=PATH` first, then
//! through the machine's disks in the order `tsforge disk list` shows (internal disks first,
//! the boot medium never first). A block device holding the boot medium or a mounted file
//! system is refused unless the run was started with `--allow-mounted`.
//!
//! Apply properties (as exported): `ImagePackageID` (a folder `<content>/<ID>` under one of
//! the `--content` folders, holding one image file) or, in YAML, `ImagePath`; `ImageIndex` (WIM);
//! the destination from `DestinationVariable` (the variable holding a location such as
//! `OSDisk` = `DISK:N`), `DestinationDisk` + `DestinationPartition`, or `Destination` (any
//! location). Capture properties: `CaptureSource` (a location; default the `OSDisk` variable),
//! `CaptureDestination` (default the `OSDCaptureDestination` variable), `ImageName`,
//! `ImageDescription`, `ImageVersion`, `ImageCreator`, `Compression` (`zstd`, `deflate`, `none`).

use super::partition_disk::{self, DiskRequest, SizeReq, Style};
use super::{ActionResult, Ctx};
use crate::disk::{fat, layout, preflight, select, Disk};
use crate::image::{CaptureOptions, Compression, Progress};
use crate::log::Level;
use crate::sequence::model::Step;
use crate::volume::Location;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Resolve disk number `index` to a path: `--disk` first, then the machine's disks.
/// The partitions (`DISK:N`, `;`-separated) whose file system a *Format and Partition Disk*
/// step of this run made.
pub const FORMATTED_VAR: &str = "_TSForgeFormattedVolumes";

/// Set by *Format and Partition Disk* to the disk it partitioned.
pub const PARTITIONED_DISK_VAR: &str = "_TSForgePartitionedDisk";

pub fn resolve_disk(index: u32, ctx: &Ctx) -> Result<PathBuf, String> {
    resolve_disk_in(index, ctx.targets)
}

/// `resolve_disk` for callers without a step context (the dry-run plan).
pub fn resolve_disk_path(index: u32, targets: &super::RunTargets) -> Result<PathBuf, String> {
    resolve_disk_in(index, targets)
}

fn resolve_disk_in(index: u32, targets: &super::RunTargets) -> Result<PathBuf, String> {
    if let Some((_, p)) = targets.disks.iter().find(|(n, _)| *n == index) {
        return Ok(p.clone());
    }
    let disks = select::enumerate().map_err(|e| format!("listing the machine's disks: {e:#}"))?;
    let found = disks.iter().find(|d| d.index == index).ok_or_else(|| {
        format!(
            "there is no disk {index} on this machine ({} disks found; `tsforge disk list` shows \
             them, `--disk {index}=PATH` maps it to an image file or device)",
            disks.len()
        )
    })?;
    Ok(found.path.clone())
}

/// Refuse the boot medium and block devices in use (`select::check_target`: mounted, swap,
/// held by dm/md, any block device including loop devices and partitions); image files pass.
fn check_disk(path: &std::path::Path, ctx: &mut Ctx, component: &str) -> Result<(), String> {
    let what = match select::inspect(path) {
        Ok(Some(t)) => t.describe(),
        Ok(None) => format!("image file {}", path.display()),
        Err(e) => return Err(format!("checking {}: {e:#}", path.display())),
    };
    ctx.log
        .log(Level::Info, component, &format!("Target disk: {what}"));
    select::check_target(path, ctx.targets.allow_mounted, false)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// Progress for a person and the log: bytes, files, rate, time left; logged at most every
/// 5 seconds (and at the end), so a large image does not flood smsts.log.
struct Reporter {
    component: &'static str,
    started: Instant,
    last: Instant,
}

impl Reporter {
    fn new(component: &'static str) -> Self {
        let now = Instant::now();
        Reporter {
            component,
            started: now,
            last: now,
        }
    }
    fn line(&self, p: &Progress) -> String {
        let files = (p.files_total > 0).then_some((p.files_done, p.files_total));
        crate::sys::rate_line(p.bytes_done, 0, p.bytes_total, files, self.started)
    }
    fn update(&mut self, ctx_log: &mut crate::log::Logger, p: &Progress) {
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            let line = self.line(p);
            ctx_log.log(Level::Info, self.component, &format!("Progress: {line}"));
            ctx_log.say(&format!("  {line}"));
        }
    }
}

fn to_specs(req: &DiskRequest) -> Vec<layout::PartitionSpec> {
    let last = req.partitions.len().saturating_sub(1);
    req.partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let fs = p.fs.as_deref().unwrap_or("");
            let kind = match (p.kind.to_ascii_lowercase().as_str(), req.style) {
                ("efi", _) => layout::PartKind::EfiSystem,
                ("msr", _) => layout::PartKind::MicrosoftReserved,
                ("recovery", Style::Gpt) => layout::PartKind::WindowsRecovery,
                ("recovery", Style::Mbr) => layout::PartKind::MbrType(0x27),
                (_, Style::Gpt) if fs.starts_with("EXT") || fs == "XFS" => {
                    layout::PartKind::LinuxFilesystem
                }
                (_, Style::Gpt) => layout::PartKind::BasicData,
                (_, Style::Mbr) => layout::PartKind::MbrType(match fs {
                    "FAT32" | "FAT" => 0x0C,
                    "FAT16" => 0x0E,
                    f if f.starts_with("EXT") || f == "XFS" => 0x83,
                    _ => 0x07,
                }),
            };
            let size = match p.size {
                SizeReq::Bytes(b) => layout::SizeSpec::Bytes(b),
                SizeReq::Percent(100) if i == last => layout::SizeSpec::Rest,
                SizeReq::Percent(n) => layout::SizeSpec::Percent(n),
            };
            layout::PartitionSpec {
                name: p.name.clone(),
                kind,
                size,
                active: p.bootable,
            }
        })
        .collect()
}

/// A partition's file system as *Format and Partition Disk* makes it.
#[derive(Debug, Clone, Copy)]
enum NewFs {
    /// Written natively (`None`: FAT16 or FAT32 by size).
    Fat(Option<fat::FatKind>),
    /// Through the platform's formatter.
    External(crate::fsformat::FsKind),
}

/// Every planned file system checked before the first write (see `disk::preflight`): known
/// file system, size within its limits, label it can hold, formatter installed, and the tool
/// that makes the kernel read the new table. The dry run and the step make the same checks,
/// so the dry run fails where the step would, and the step fails with the old table intact.
fn check_formats(
    path: &std::path::Path,
    disk: &Disk,
    planned: &[layout::PlannedPartition],
    req: &DiskRequest,
) -> anyhow::Result<Vec<Option<NewFs>>> {
    use anyhow::Context;
    crate::disk::reread::check_available(disk)?;
    let mut out = Vec::new();
    for (p, r) in planned.iter().zip(&req.partitions) {
        out.push(match r.fs.as_deref() {
            None => None,
            Some(fs @ ("FAT32" | "FAT16" | "FAT")) => {
                let kind = match fs {
                    "FAT32" => Some(fat::FatKind::Fat32),
                    "FAT16" => Some(fat::FatKind::Fat16),
                    _ => None,
                };
                preflight::fat(p, &r.label, kind)?;
                Some(NewFs::Fat(kind))
            }
            Some(other) => {
                let kind = crate::fsformat::FsKind::parse(other).with_context(|| {
                    format!(
                        "{}: Partitions{}FileSystem",
                        preflight::name(p),
                        p.number - 1
                    )
                })?;
                preflight::external(p, kind, &r.label, path)?;
                Some(NewFs::External(kind))
            }
        });
    }
    Ok(out)
}

/// The planned layout of a partition step, for `--dry-run` and the log.
pub fn describe_plan(
    step: &Step,
    vars: &crate::vars::Vars,
    targets: &super::RunTargets,
) -> Result<Vec<String>, String> {
    let req = partition_disk::parse(step, vars)?;
    let path = resolve_disk_in(req.disk_index, targets)?;
    let disk = Disk::open(&path, false).map_err(|e| format!("{e:#}"))?;
    let table = match req.style {
        Style::Gpt => layout::TableKind::Gpt,
        Style::Mbr => layout::TableKind::Mbr,
    };
    let planned = layout::plan(disk.size(), disk.sector_size(), table, &to_specs(&req))
        .map_err(|e| format!("{e:#}"))?;
    check_formats(&path, &disk, &planned, &req).map_err(|e| format!("{e:#}"))?;
    let mut out = vec![format!(
        "disk {} = {} ({} bytes), {:?} table",
        req.disk_index,
        path.display(),
        disk.size(),
        req.style
    )];
    for (p, r) in planned.iter().zip(&req.partitions) {
        out.push(format!(
            "partition {}: {} at {} MiB, {} MiB, {}{}{}",
            p.number,
            p.spec.kind.describe(table),
            p.start >> 20,
            p.len >> 20,
            r.fs.as_deref().unwrap_or("unformatted"),
            if r.label.is_empty() {
                String::new()
            } else {
                format!(" \"{}\"", r.label)
            },
            r.volume_variable
                .as_deref()
                .map(|v| format!(" -> %{v}%"))
                .unwrap_or_default()
        ));
    }
    Ok(out)
}

/// *Format and Partition Disk*.
pub fn partition(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "PartitionDisk";
    let req = match partition_disk::parse(step, ctx.vars) {
        Ok(r) => r,
        Err(e) => return ActionResult::failed(e),
    };
    let path = match resolve_disk(req.disk_index, ctx) {
        Ok(p) => p,
        Err(e) => return ActionResult::failed(e),
    };
    if let Err(e) = check_disk(&path, ctx, C) {
        return ActionResult::failed(e);
    }
    // (variables to set, partitions formatted as DISK:N)
    type Made = (Vec<(String, String)>, Vec<String>);
    let result = (|| -> anyhow::Result<Made> {
        let mut disk = Disk::open(&path, true)?;
        let table = match req.style {
            Style::Gpt => layout::TableKind::Gpt,
            Style::Mbr => layout::TableKind::Mbr,
        };
        // The whole plan is checked before the first write.
        let planned = layout::plan(disk.size(), disk.sector_size(), table, &to_specs(&req))?;
        let formats = check_formats(&path, &disk, &planned, &req)?;
        for (p, r) in planned.iter().zip(&req.partitions) {
            ctx.log.log(
                Level::Info,
                C,
                &format!(
                    "Partition {}: {} at byte {}, {} bytes, {}",
                    p.number,
                    p.spec.kind.describe(table),
                    p.start,
                    p.len,
                    r.fs.as_deref().unwrap_or("unformatted")
                ),
            );
        }
        layout::write_table(&mut disk, table, &planned)?;
        if disk.is_block_device() {
            crate::disk::reread::reread(&disk, planned.len() as u32)?;
        }
        let mut vars = Vec::new();
        let mut formatted = Vec::new();
        for ((p, r), new_fs) in planned.iter().zip(&req.partitions).zip(&formats) {
            let fs = r.fs.as_deref().unwrap_or("");
            match *new_fs {
                None => {}
                Some(NewFs::Fat(kind)) => {
                    let range = disk.range(p.start, p.len)?;
                    fat::format(range, &r.label, kind)?;
                    ctx.log.log(
                        Level::Info,
                        C,
                        &format!("Formatted partition {} as {fs}", p.number),
                    );
                }
                Some(NewFs::External(kind)) => {
                    disk.sync()?;
                    crate::fsformat::format_image_range(
                        &path, p.start, p.len, kind, &r.label, r.quick,
                    )?;
                    ctx.log.log(
                        Level::Info,
                        C,
                        &format!("Formatted partition {} as {fs}", p.number),
                    );
                }
            }
            if r.fs.is_some() {
                formatted.push(Location::partition_text(&path, p.number));
            }
            if let Some(var) = &r.volume_variable {
                vars.push((var.clone(), Location::partition_text(&path, p.number)));
            }
        }
        disk.sync()?;
        Ok((vars, formatted))
    })();
    match result {
        Ok((vars, formatted)) => {
            for (name, value) in vars {
                if let Err(e) = super::set_variable(ctx, C, &name, value) {
                    return ActionResult::failed(e.to_string());
                }
            }
            // Where the engine looks for a partition to keep the run's state on.
            ctx.vars
                .set(PARTITIONED_DISK_VAR, path.display().to_string());
            // The file systems this run made (an interrupted apply may rebuild these).
            let mut made: Vec<String> = ctx
                .vars
                .get(FORMATTED_VAR)
                .unwrap_or("")
                .split(';')
                .filter(|s| !s.is_empty() && !s.starts_with(&format!("{}:", path.display())))
                .map(str::to_string)
                .collect();
            made.extend(formatted);
            ctx.vars.set(FORMATTED_VAR, made.join(";"));
            ActionResult::ok()
        }
        Err(e) => ActionResult::failed(format!("partitioning {}: {e:#}", path.display())),
    }
}

/// Where an apply step's image comes from.
enum ImageSource {
    /// `ImagePath`: a file.
    Path(PathBuf),
    /// `ImagePackageID`: an image package on a distribution point.
    Package(crate::content::Found),
}

fn image_source(step: &Step, ctx: &Ctx) -> Result<ImageSource, String> {
    let get = |k: &str| {
        step.property(k)
            .map(|v| ctx.vars.expand(v))
            .filter(|v| !v.trim().is_empty())
    };
    if let Some(p) = get("ImagePath") {
        return Ok(ImageSource::Path(PathBuf::from(p)));
    }
    let Some(id) = get("ImagePackageID") else {
        return Err("neither ImagePath nor ImagePackageID names the image".into());
    };
    let store = ctx.store().map_err(|e| format!("{e:#}"))?;
    let found = store.find(id.trim()).map_err(|e| format!("{e:#}"))?;
    if found.manifest.kind != crate::content::PackageKind::Image || found.manifest.files.len() != 1
    {
        return Err(format!(
            "package {} is not an image package (it is a {} package of {} files); build image \
             packages from an image file with `tsforge package build IMAGE --id ID`",
            found.manifest.id,
            found.manifest.kind,
            found.manifest.files.len()
        ));
    }
    Ok(ImageSource::Package(found))
}

fn destination(step: &Step, ctx: &Ctx) -> Result<Location, String> {
    let get = |k: &str| {
        step.property(k)
            .map(|v| ctx.vars.expand(v))
            .filter(|v| !v.trim().is_empty())
    };
    if let Some(var) = get("DestinationVariable") {
        let value = ctx
            .vars
            .get(&var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "DestinationVariable names {var}, which is not set (a partition step sets it)"
                )
            })?;
        return Ok(Location::parse(value));
    }
    if let (Some(d), Some(p)) = (get("DestinationDisk"), get("DestinationPartition")) {
        let disk: u32 = d
            .trim()
            .parse()
            .map_err(|_| format!("DestinationDisk {d:?} is not a disk number"))?;
        let number: u32 = p
            .trim()
            .parse()
            .map_err(|_| format!("DestinationPartition {p:?} is not a partition number"))?;
        return Ok(Location::Partition {
            disk: resolve_disk(disk, ctx)?,
            number,
        });
    }
    if let Some(l) = get("Destination") {
        return Ok(Location::parse(&l));
    }
    if let Some(v) = ctx.vars.get("OSDisk").filter(|v| !v.is_empty()) {
        return Ok(Location::parse(v));
    }
    Err(
        "no destination: set DestinationVariable (e.g. OSDisk), DestinationDisk and \
         DestinationPartition, or Destination"
            .into(),
    )
}

fn disk_of(l: &Location) -> Option<&std::path::Path> {
    match l {
        Location::Dir(_) => None,
        Location::Disk(d) | Location::Partition { disk: d, .. } => Some(d),
    }
}

/// *Apply Operating System Image* and *Apply Data Image*. A tsforge image from a package is
/// streamed from the distribution point onto the target, each block checked against the
/// package manifest before it is used; WIM and raw images from a package are fetched into the
/// cache (verified) first, as wimlib and DISM read files, not streams.
pub fn apply(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "ApplyImage";
    let (source, target) = match (image_source(step, ctx), destination(step, ctx)) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => return ActionResult::failed(e),
    };
    if let Some(d) = disk_of(&target) {
        if let Err(e) = check_disk(d, ctx, C) {
            return ActionResult::failed(e);
        }
    }
    let index = match step
        .property("ImageIndex")
        .map(|v| ctx.vars.expand(v))
        .filter(|v| !v.trim().is_empty())
    {
        None => 1,
        Some(v) => {
            use crate::sequence::model::{limits, parse_in_range};
            match parse_in_range("ImageIndex", &v, 1, limits::MAX_INDEX, "") {
                Ok(n) => n as u32,
                Err(e) => return ActionResult::failed(e),
            }
        }
    };
    // Data images may land on a partition that already holds files.
    let force = true;
    let (image, stream) = match source {
        ImageSource::Path(p) => (p, None),
        ImageSource::Package(found) => {
            let file = found.manifest.files[0].clone();
            let shown = crate::content::Store::shown(&found, &file);
            let store = match ctx.store() {
                Ok(s) => s,
                Err(e) => return ActionResult::failed(format!("{e:#}")),
            };
            let head = match store.stream(&found, &file) {
                Ok(mut s) => {
                    let mut head = [0u8; 64];
                    let n = read_up_to(&mut s, &mut head);
                    match n {
                        Ok(n) => (crate::volume::detect_head(&head[..n]), s, head, n),
                        Err(e) => return ActionResult::failed(format!("{e}")),
                    }
                }
                Err(e) => return ActionResult::failed(format!("{e:#}")),
            };
            // A ZIP is streamed (a damaged one fails on its manifest before anything is
            // written); anything else is fetched, and its kind decided by `volume::detect`.
            if head.0 == Some(crate::volume::ImageKind::Tsforge) {
                let (_, s, head, n) = head;
                let reader: Box<dyn std::io::Read> = Box::new(std::io::Read::chain(
                    std::io::Cursor::new(head[..n].to_vec()),
                    s,
                ));
                (PathBuf::from(shown), Some(reader))
            } else {
                drop(head);
                match super::package_steps::fetch(ctx, C, &found.manifest.id) {
                    Ok(local) => (local.dir.join(&file.path), None),
                    Err(e) => return ActionResult::failed(e),
                }
            }
        }
    };
    ctx.log.log(
        Level::Info,
        C,
        &format!(
            "Applying {}{} (index {index}) to {target}",
            image.display(),
            if stream.is_some() {
                ", streamed and verified block by block,"
            } else {
                ""
            }
        ),
    );
    if ctx.interrupted {
        if let Err(e) = rebuild_interrupted(&target, ctx, C) {
            return ActionResult::failed(e);
        }
    }
    let mut rep = Reporter::new(C);
    let mut last = Progress::default();
    let log = &mut *ctx.log;
    let mut progress = |p: &Progress| {
        last = *p;
        rep.update(log, p);
    };
    let r = match stream {
        Some(mut reader) => {
            crate::volume::apply_tsforge_stream(&mut *reader, &target, force, &mut progress)
                .map(Some)
        }
        None => crate::volume::apply(&image, index, &target, force, false, &mut progress),
    };
    match r {
        Ok(info) => {
            let summary = rep.line(&last);
            let what = info
                .map(|i| format!(" ({} files, image {:?})", i.files, i.name))
                .unwrap_or_default();
            ctx.log.log(
                Level::Info,
                C,
                &format!("Applied {} to {target}{what}: {summary}", image.display()),
            );
            ActionResult::ok()
        }
        Err(e) => ActionResult::failed(format!("applying {} to {target}: {e:#}", image.display())),
    }
}

/// An apply that stopped in the middle (power cut, killed runner) left a FAT file system with
/// half-written files and clusters no file owns. When this run made that file system, it is
/// made again (same label and FAT type) before the image is applied again, so the result is
/// the one an uninterrupted run gives; the run's own `_SMSTaskSequence` copy there is written
/// again at the next checkpoint. A file system the run did not make is left as it is (it may
/// hold the user's files), with a warning.
fn rebuild_interrupted(target: &Location, ctx: &mut Ctx, c: &str) -> Result<(), String> {
    let Location::Partition { disk, number } = target else {
        return Ok(());
    };
    let text = Location::partition_text(disk, *number);
    let ours = ctx
        .vars
        .get(FORMATTED_VAR)
        .unwrap_or("")
        .split(';')
        .any(|s| s == text);
    let d = crate::disk::Disk::open(disk, true).map_err(|e| format!("{e:#}"))?;
    let (range, _) = crate::volume::partition_range(&d, *number).map_err(|e| format!("{e:#}"))?;
    let Ok(fs) = fat::open(range) else {
        return Ok(());
    };
    let (label, kind) = (fs.label(), fs.kind());
    drop(fs);
    if !ours {
        ctx.log.log(
            Level::Warning,
            c,
            &format!(
                "This apply was interrupted before; {target} was not formatted by this run, so \
                 it is applied over again as it is (a half-written file from the interruption \
                 is overwritten, clusters it held may stay lost until a file system check)"
            ),
        );
        return Ok(());
    }
    let (range, _) = crate::volume::partition_range(&d, *number).map_err(|e| format!("{e:#}"))?;
    fat::format(range, &label, kind).map_err(|e| format!("rebuilding {target}: {e:#}"))?;
    d.sync().map_err(|e| format!("{e:#}"))?;
    ctx.log.log(
        Level::Info,
        c,
        &format!(
            "This apply was interrupted before (restart, power cut or killed runner): the FAT \
             file system of {target}, made by this run, was made again (label {label:?}) so no \
             half-written file remains"
        ),
    );
    Ok(())
}

fn read_up_to(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// *Capture Operating System Image*.
pub fn capture(step: &Step, ctx: &mut Ctx) -> ActionResult {
    const C: &str = "CaptureImage";
    let get = |k: &str| {
        step.property(k)
            .map(|v| ctx.vars.expand(v))
            .filter(|v| !v.trim().is_empty())
    };
    let Some(source) = get("CaptureSource").or_else(|| ctx.vars.get("OSDisk").map(str::to_string))
    else {
        return ActionResult::failed(
            "no capture source: set CaptureSource (a folder or DISK:N) or the OSDisk variable",
        );
    };
    let Some(dest) = get("CaptureDestination")
        .or_else(|| ctx.vars.get("OSDCaptureDestination").map(str::to_string))
        .filter(|d| !d.trim().is_empty())
    else {
        return ActionResult::failed(
            "no capture destination: set CaptureDestination or the OSDCaptureDestination variable",
        );
    };
    let compression = match get("Compression").as_deref().map(str::to_ascii_lowercase) {
        None => Compression::Zstd,
        Some(c) if c == "zstd" => Compression::Zstd,
        Some(c) if c == "deflate" => Compression::Deflate,
        Some(c) if c == "none" => Compression::None,
        Some(c) => {
            return ActionResult::failed(format!("Compression {c:?} is not zstd, deflate or none"))
        }
    };
    let mut description = get("ImageDescription").unwrap_or_default();
    for (k, label) in [("ImageVersion", "version"), ("ImageCreator", "created by")] {
        if let Some(v) = get(k) {
            if !description.is_empty() {
                description.push_str("; ");
            }
            description.push_str(&format!("{label} {v}"));
        }
    }
    let opts = CaptureOptions {
        name: get("ImageName").unwrap_or_else(|| "Captured image".into()),
        description,
        compression,
        threads: 0,
    };
    let source = Location::parse(&source);
    let out = PathBuf::from(dest);
    ctx.log.log(
        Level::Info,
        C,
        &format!("Capturing {source} into {}", out.display()),
    );
    let scratch = ctx.state_dir.join("scratch");
    let mut rep = Reporter::new(C);
    let mut last = Progress::default();
    let log = &mut *ctx.log;
    let r = crate::volume::capture(&source, &out, &opts, &scratch, &mut |p| {
        last = *p;
        rep.update(log, p);
    });
    match r {
        Ok(info) => {
            let what = info
                .map(|i| {
                    format!(
                        ": {} files, {} MiB ({} MiB distinct) into {} MiB",
                        i.files,
                        i.total_bytes >> 20,
                        i.stored_bytes >> 20,
                        i.image_bytes >> 20
                    )
                })
                .unwrap_or_default();
            ctx.log.log(
                Level::Info,
                C,
                &format!("Captured {source} into {}{what}", out.display()),
            );
            ActionResult::ok()
        }
        Err(e) => ActionResult::failed(format!("capturing {source} into {}: {e:#}", out.display())),
    }
}
