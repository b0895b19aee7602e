//! *Apply Operating System Image* (`SMS_TaskSequence_ApplyOperatingSystemAction`) and *Apply
//! Data Image* (`SMS_TaskSequence_ApplyDataImageAction`).
//!
//! Properties (as exported): `ImagePackageID` (an image package on one of the run's
//! distribution points) or, in YAML, `ImagePath`; `ImageIndex` (WIM); the destination from
//! `DestinationVariable` (the variable holding a location such as `OSDisk` = `DISK:N`),
//! `DestinationDisk` + `DestinationPartition`, or `Destination` (any location), else `OSDisk`.

use super::disks::{check_disk, resolve_disk, Reporter, FORMATTED_VAR};
use super::{ActionResult, Ctx, StepType};
use crate::disk::fat;
use crate::image::Progress;
use crate::log::Level;
use crate::sequence::model::{step_type, Step};
use crate::volume::Location;
use std::path::PathBuf;

pub const TYPE: StepType = StepType {
    names: &[step_type::APPLY_OS_IMAGE, step_type::APPLY_DATA_IMAGE],
    check,
    plan: super::plan_action_text,
    run: apply,
};

fn check(s: &Step) -> Vec<String> {
    if super::blank(s, "ImagePath") && super::blank(s, "ImagePackageID") {
        return vec![format!(
            "apply image step {:?} needs ImagePath or ImagePackageID",
            s.name()
        )];
    }
    Vec::new()
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
                match super::packages::fetch(ctx, C, &found.manifest.id) {
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
