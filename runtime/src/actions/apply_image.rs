//! *Apply Operating System Image* (`SMS_TaskSequence_ApplyOperatingSystemAction`) and *Apply
//! Data Image* (`SMS_TaskSequence_ApplyDataImageAction`).
//!
//! Properties (as exported), from Microsoft's
//! [SMS_TaskSequence_ApplyOperatingSystemAction class](https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applyoperatingsystemaction-server-wmi-class)
//! and the step's page in
//! [Task sequence steps](https://learn.microsoft.com/mem/configmgr/osd/understand/task-sequence-steps#BKMK_ApplyOperatingSystemImage):
//!
//! - the image form (*Apply operating system from a captured image*): `ImagePackageID` (an image
//!   package on one of the run's distribution points) or, in YAML, `ImagePath`; `ImageIndex`
//!   (WIM; action variable `OSDImageIndex`);
//! - the install form (*Apply operating system image from an original installation source*, an
//!   OS install package: Windows setup files), OS step only: `InstallPackageID` and
//!   `InstallEditionIndex` (action variable `OSDInstallEditionIndex`, required with
//!   `InstallPackageID`; 0 is Microsoft's default, "Windows Setup determines the edition from
//!   the product key"). tsforge applies `sources/install.wim` (or `install.esd`, or the split
//!   `install.swm`, `install2.swm`, …) of the package at that edition; with 0, the only edition
//!   of a single-edition image, else an error (docs/engine.md);
//! - the answer file: `ConfigFilePackage` + `ConfigFileName` (action variable
//!   `OSDConfigFileName`; required with `ConfigFilePackage`), copied from its package to
//!   `Windows\Panther\unattend.xml` of an applied Windows (see [`place_answer_file`]);
//! - the destination from `DestinationVariable` (the variable holding a location such as
//!   `OSDisk` = `DISK:N`), `DestinationDisk` + `DestinationPartition`, or `Destination` (any
//!   location), else `OSDisk`.
//!
//! The `<action>` line (`OSDApplyOS.exe /image:…` or `/install:PKG,%OSDInstallEditionIndex%`)
//! is what ConfigMgr generates from these properties (the class's `CommandLine` qualifier);
//! exports always carry the properties, so tsforge reads only them.

use super::disks::{check_disk, resolve_disk_path, Reporter, FORMATTED_VAR};
use super::{ActionResult, Ctx, Plan, RunTargets, StepType};
use crate::content::PackageManifest;
use crate::disk::fat;
use crate::image::Progress;
use crate::log::Level;
use crate::sequence::model::{limits, parse_in_range, step_type, Step};
use crate::vars::Vars;
use crate::volume::Location;
use std::path::PathBuf;

pub const TYPE: StepType = StepType {
    names: &[step_type::APPLY_OS_IMAGE, step_type::APPLY_DATA_IMAGE],
    check,
    plan,
    run: apply,
};

fn is_os_step(s: &Step) -> bool {
    s.kind()
        .map(step_type::from_short)
        .is_some_and(|k| k.eq_ignore_ascii_case(step_type::APPLY_OS_IMAGE))
}

fn check(s: &Step) -> Vec<String> {
    let mut out = Vec::new();
    let name = s.name();
    let image = !super::blank(s, "ImagePath") || !super::blank(s, "ImagePackageID");
    let install = is_os_step(s) && !super::blank(s, "InstallPackageID");
    match (image, install) {
        (false, false) if is_os_step(s) => out.push(format!(
            "Apply Operating System Image step {name:?} needs ImagePackageID (an image package) \
             or InstallPackageID (an OS install package of Windows setup files); ImagePath \
             names an image file in YAML (the <action> command line is not read: exports \
             carry these properties)"
        )),
        (false, false) => out.push(format!(
            "apply image step {name:?} needs ImagePath or ImagePackageID"
        )),
        (true, true) => out.push(format!(
            "Apply Operating System Image step {name:?} names both an image \
             ({}) and an OS install package (InstallPackageID); keep one",
            if super::blank(s, "ImagePackageID") {
                "ImagePath"
            } else {
                "ImagePackageID"
            }
        )),
        _ => {}
    }
    if install {
        match s.property("InstallEditionIndex").map(str::trim) {
            None | Some("") => out.push(format!(
                "Apply Operating System Image step {name:?}: InstallPackageID needs \
                 InstallEditionIndex, the edition of the package's install image (1 for the \
                 first)"
            )),
            Some(v) if v.contains('%') => {}
            Some(v) => {
                if let Err(e) = parse_in_range("InstallEditionIndex", v, 0, limits::MAX_INDEX, "") {
                    out.push(format!("step {name:?}: {e}"));
                }
            }
        }
    }
    if is_os_step(s) && !super::blank(s, "ConfigFilePackage") && super::blank(s, "ConfigFileName") {
        out.push(format!(
            "Apply Operating System Image step {name:?}: ConfigFilePackage needs \
             ConfigFileName, the answer file's name in that package"
        ));
    }
    out
}

/// A property, `%NAME%`-expanded, when not blank.
fn get(step: &Step, vars: &Vars, key: &str) -> Option<String> {
    step.property(key)
        .map(|v| vars.expand(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// What the dry run shows: which image or edition goes where, and the answer file.
fn plan(s: &Step, p: &mut Plan) -> String {
    let dest = match destination_in(s, p.vars, p.targets) {
        Ok(l) => l.to_string(),
        Err(e) => return format!("cannot plan: {e}"),
    };
    let install = is_os_step(s)
        .then(|| get(s, p.vars, "InstallPackageID"))
        .flatten();
    let what = if let Some(id) = install {
        match edition_index(s, p.vars) {
            Ok(0) => format!(
                "apply the only edition of sources/install.wim (or .esd, .swm) from OS install \
                 package {id} (InstallEditionIndex 0: an image of several editions is an error)"
            ),
            Ok(n) => format!(
                "apply edition {n} of sources/install.wim (or .esd, .swm) from OS install \
                 package {id}"
            ),
            Err(e) => return format!("cannot plan: {e}"),
        }
    } else {
        let index = get(s, p.vars, "ImageIndex").unwrap_or_else(|| "1".into());
        if let Some(path) = get(s, p.vars, "ImagePath") {
            format!("apply image {index} of {path}")
        } else if let Some(id) = get(s, p.vars, "ImagePackageID") {
            format!("apply image {index} of image package {id}")
        } else {
            return "cannot plan: no image: set ImagePackageID, InstallPackageID or ImagePath"
                .into();
        }
    };
    format!("{what} to {dest}{}", unattend_text(s, p.vars))
}

/// `, unattend: NAME from package PKG (…)` when the step names an answer file.
fn unattend_text(s: &Step, vars: &Vars) -> String {
    if !is_os_step(s) {
        return String::new();
    }
    match (
        get(s, vars, "ConfigFileName"),
        get(s, vars, "ConfigFilePackage"),
    ) {
        (None, None) => String::new(),
        (name, pkg) => format!(
            ", unattend: {} from package {} (placed at Windows\\Panther\\unattend.xml for \
             Windows Setup, then merged by Apply Windows/Network Settings)",
            name.as_deref().unwrap_or("(no ConfigFileName)"),
            pkg.as_deref().unwrap_or("(no ConfigFilePackage)")
        ),
    }
}

/// `InstallEditionIndex`, `%NAME%`-expanded: 0 (Microsoft's default: Windows Setup picks the
/// edition) to [`limits::MAX_INDEX`].
fn edition_index(step: &Step, vars: &Vars) -> Result<u32, String> {
    match get(step, vars, "InstallEditionIndex") {
        None => Err("InstallPackageID needs InstallEditionIndex (1 for the first edition)".into()),
        Some(v) => {
            parse_in_range("InstallEditionIndex", &v, 0, limits::MAX_INDEX, "").map(|n| n as u32)
        }
    }
}

/// Where an apply step's image comes from.
enum ImageSource {
    /// `ImagePath`: a file.
    Path(PathBuf),
    /// `ImagePackageID`: an image package on a distribution point.
    Package(crate::content::Found),
    /// `InstallPackageID`: an OS install package (Windows setup files).
    Install(String),
}

fn image_source(step: &Step, ctx: &Ctx) -> Result<ImageSource, String> {
    if is_os_step(step) {
        if let Some(id) = get(step, ctx.vars, "InstallPackageID") {
            return Ok(ImageSource::Install(id));
        }
    }
    if let Some(p) = get(step, ctx.vars, "ImagePath") {
        return Ok(ImageSource::Path(PathBuf::from(p)));
    }
    let Some(id) = get(step, ctx.vars, "ImagePackageID") else {
        return Err(if is_os_step(step) {
            "none of ImagePackageID, InstallPackageID and ImagePath names the image".into()
        } else {
            "neither ImagePath nor ImagePackageID names the image".into()
        });
    };
    let store = ctx.store().map_err(|e| format!("{e:#}"))?;
    let found = store.find(id.trim()).map_err(|e| format!("{e:#}"))?;
    if found.manifest.kind != crate::content::PackageKind::Image || found.manifest.files.len() != 1
    {
        return Err(format!(
            "package {} is not an image package (it is a {} package of {} files); build image \
             packages from an image file with `tsforge package build IMAGE --id ID`{}",
            found.manifest.id,
            found.manifest.kind,
            found.manifest.files.len(),
            if install_image_of(&found.manifest).is_ok() {
                "; it holds Windows setup files: name it in InstallPackageID instead"
            } else {
                ""
            }
        ));
    }
    Ok(ImageSource::Package(found))
}

/// The names Windows setup media give the install image, in the order tsforge looks for them.
const INSTALL_IMAGES: &[&str] = &[
    "sources/install.wim",
    "sources/install.esd",
    "sources/install.swm",
];

/// The install image of an OS install package: the path (as the manifest spells it) of its
/// `sources/install.wim`, `.esd` or first `.swm` part, compared ignoring case as Windows does.
/// Errors say what the package lacks.
fn install_image_of(m: &PackageManifest) -> Result<String, String> {
    let id = &m.id;
    if m.kind == crate::content::PackageKind::Image {
        let file = m.files.first().map(|f| f.path.as_str()).unwrap_or("");
        return Err(format!(
            "package {id} is an image package (one image file, {file}), not an OS install \
             package of Windows setup files: name it in ImagePackageID, or build the install \
             package from the folder holding setup.exe and sources/ with `tsforge package \
             build FOLDER --id {id}`"
        ));
    }
    for want in INSTALL_IMAGES {
        if let Some(f) = m.files.iter().find(|f| f.path.eq_ignore_ascii_case(want)) {
            return Ok(f.path.clone());
        }
    }
    let in_sources = |f: &&crate::content::manifest::FileEntry| {
        f.path
            .split_once('/')
            .is_some_and(|(d, _)| d.eq_ignore_ascii_case("sources"))
    };
    let shown = |files: Vec<&str>| {
        let n = files.len();
        let mut list = files.into_iter().take(5).collect::<Vec<_>>().join(", ");
        if n > 5 {
            list.push_str(&format!(", … ({n} files)"));
        }
        list
    };
    if m.files.iter().any(|f| in_sources(&f)) {
        Err(format!(
            "OS install package {id} has no install image: sources/install.wim is missing \
             (and there is no sources/install.esd or split sources/install.swm); its sources/ \
             folder holds {}",
            shown(
                m.files
                    .iter()
                    .filter(in_sources)
                    .map(|f| f.path.as_str())
                    .collect()
            )
        ))
    } else {
        Err(format!(
            "package {id} is not a Windows setup folder: it has no sources/ folder with \
             install.wim (or install.esd, or a split install.swm); it holds {}. Build the OS \
             install package from the folder holding setup.exe and sources/",
            if m.files.is_empty() {
                "no files".to_string()
            } else {
                shown(m.files.iter().map(|f| f.path.as_str()).collect())
            }
        ))
    }
}

fn destination(step: &Step, ctx: &Ctx) -> Result<Location, String> {
    destination_in(step, ctx.vars, ctx.targets)
}

fn destination_in(step: &Step, vars: &Vars, targets: &RunTargets) -> Result<Location, String> {
    if let Some(var) = get(step, vars, "DestinationVariable") {
        let value = vars.get(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!("DestinationVariable names {var}, which is not set (a partition step sets it)")
        })?;
        return Ok(Location::parse(value));
    }
    if let (Some(d), Some(p)) = (
        get(step, vars, "DestinationDisk"),
        get(step, vars, "DestinationPartition"),
    ) {
        let disk: u32 = d
            .trim()
            .parse()
            .map_err(|_| format!("DestinationDisk {d:?} is not a disk number"))?;
        let number: u32 = p
            .trim()
            .parse()
            .map_err(|_| format!("DestinationPartition {p:?} is not a partition number"))?;
        return Ok(Location::Partition {
            disk: resolve_disk_path(disk, targets)?,
            number,
        });
    }
    if let Some(l) = get(step, vars, "Destination") {
        return Ok(Location::parse(&l));
    }
    if let Some(v) = vars.get("OSDisk").filter(|v| !v.is_empty()) {
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
    // The install form's edition is read with the install image (`install_image`).
    let image_index = match &source {
        ImageSource::Install(_) => None,
        _ => get(step, ctx.vars, "ImageIndex"),
    };
    let mut index = match image_index {
        None => 1,
        Some(v) => match parse_in_range("ImageIndex", &v, 1, limits::MAX_INDEX, "") {
            Ok(n) => n as u32,
            Err(e) => return ActionResult::failed(e),
        },
    };
    let unattend = unattend_text(step, ctx.vars);
    if !unattend.is_empty() {
        ctx.log.log(
            Level::Info,
            C,
            &format!("Answer file{}", unattend.trim_start_matches(", unattend")),
        );
    }
    // Data images may land on a partition that already holds files.
    let force = true;
    // *Delete all content on the partition before applying the image* (the class's
    // `WipeDestinationPartition`) is not carried out: never by surprise, and not silently.
    if get(step, ctx.vars, "WipeDestinationPartition")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        ctx.log.log(
            Level::Warning,
            C,
            "WipeDestinationPartition is true, but tsforge does not delete what the destination \
             already holds: files the image does not have stay (docs/engine.md)",
        );
    }
    let (image, stream) = match source {
        ImageSource::Path(p) => (p, None),
        ImageSource::Install(id) => match install_image(step, ctx, &id) {
            Ok((path, edition)) => {
                index = edition;
                (path, None)
            }
            Err(e) => return ActionResult::failed(e),
        },
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
    if let Some(what) = crate::volume::describe(&target) {
        ctx.log.log(Level::Info, C, &what);
    }
    // The answer file's package, like the image, is fetched before anything is written.
    let answer = match fetch_answer_file(step, ctx) {
        Ok(a) => a,
        Err(e) => return ActionResult::failed(e),
    };
    if ctx.interrupted {
        if let Err(e) = rebuild_interrupted(&target, ctx, C) {
            return ActionResult::failed(e);
        }
    }
    let scratch = ctx.state_dir.join("scratch");
    let mut rep = Reporter::new(C, ctx.number);
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
        None => crate::volume::apply_in(
            &image,
            index,
            &target,
            force,
            false,
            Some(&scratch),
            &mut progress,
        ),
    };
    match r {
        Ok(info) => {
            for w in info.iter().flat_map(|i| &i.warnings) {
                ctx.log
                    .log(Level::Warning, C, &format!("{}: {w}", image.display()));
            }
            let summary = rep.line(&last);
            let what = info
                .map(|i| format!(" ({} files, image {:?})", i.files, i.name))
                .unwrap_or_default();
            ctx.log.log(
                Level::Info,
                C,
                &format!("Applied {} to {target}{what}: {summary}", image.display()),
            );
            if is_os_step(step) {
                if let Err(e) = make_bootable(&target, ctx) {
                    return ActionResult::failed(e);
                }
                if let Err(e) = place_answer_file(answer, &target, ctx) {
                    return ActionResult::failed(e);
                }
            }
            ActionResult::ok()
        }
        Err(e) => ActionResult::failed(format!("applying {} to {target}: {e:#}", image.display())),
    }
}

/// After an OS image is applied: make the volume boot, as ConfigMgr's step does ("Copy Windows
/// boot loaders into the active partition; set the boot.ini or the Boot Configuration Database
/// (BCD) to reference the newly installed OS", *Task sequence steps*, Apply Operating System
/// Image), through `osconfig`: a Linux OS gets its own boot loader on the disk's EFI system
/// partition and an fstab by UUID; Windows is refused on the linux medium (no BCD writer). A
/// partition without a recognised OS (a lab or data image) is left as applied, with a warning.
/// Then `OSDTargetSystemDrive` names the location, as Microsoft documents it for this step
/// (there a drive letter; here the `DISK:N` or folder the OS went to).
fn make_bootable(target: &Location, ctx: &mut Ctx) -> Result<(), String> {
    const C: &str = "ApplyImage";
    let text = match target {
        Location::Partition { disk, number } => {
            if !cfg!(target_os = "linux") {
                ctx.log.log(
                    Level::Warning,
                    C,
                    &format!(
                        "{target} was not made bootable: in Windows PE bcdboot makes a Windows volume bootable by its drive letter (Destination a folder such as C:\\), and this runner does not map a partition of a disk to a drive letter"
                    ),
                );
            } else {
                let opts = crate::osconfig::BootOptions::for_this_machine();
                let mut report = crate::osconfig::Report::default();
                let r = crate::osconfig::make_bootable(disk, *number, &opts, &mut report);
                for (level, line) in &report.lines {
                    ctx.log.log(*level, C, line);
                }
                match r {
                    Ok(crate::osconfig::Outcome::Linux {
                        os,
                        loader,
                        firmware_entry,
                        ..
                    }) => {
                        ctx.log.log(
                            Level::Info,
                            C,
                            &format!("{target} is bootable: {} through {loader}", os.title()),
                        );
                        // What a Restart Computer to HD sets BootNext to (osconfig::efi); an
                        // entry of an earlier apply no longer names the deployed OS.
                        use crate::osconfig::efi::BOOT_ENTRY_VAR;
                        let value = firmware_entry.unwrap_or_default();
                        if !value.is_empty() || ctx.vars.get(BOOT_ENTRY_VAR).is_some() {
                            super::set_variable(ctx, C, BOOT_ENTRY_VAR, value)
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    Ok(crate::osconfig::Outcome::NoOs(why)) => ctx.log.log(
                        Level::Warning,
                        C,
                        &format!("{why}: it was applied but not made bootable"),
                    ),
                    Err(e) => return Err(format!("making {target} bootable: {e:#}")),
                }
            }
            Location::partition_text(disk, *number)
        }
        Location::Dir(dir) => {
            let windows = cfg!(windows)
                && matches!(
                    crate::osconfig::detect(dir),
                    Ok(crate::osconfig::Os::Windows)
                );
            if !windows {
                ctx.log.log(
                    Level::Info,
                    C,
                    &format!(
                        "{target} is a folder, not a partition of a disk: it is not made bootable"
                    ),
                );
            } else if !crate::machine::in_boot_environment() {
                ctx.log.log(
                    Level::Info,
                    C,
                    &format!(
                        "{target} holds Windows; it is not made bootable here: bcdboot runs only \
                         on the target machine, in Windows PE"
                    ),
                );
            } else {
                let folder = dir.join("Windows").display().to_string();
                match crate::osconfig::windows::run_bcdboot_on_target(&folder) {
                    Ok(out) => ctx.log.log(
                        Level::Info,
                        C,
                        &format!(
                            "{target} is bootable: bcdboot {folder} copied the boot files to the \
                             firmware's system partition ({})",
                            out.lines().last().unwrap_or("no output")
                        ),
                    ),
                    Err(e) => return Err(format!("making {target} bootable: {e:#}")),
                }
            }
            dir.display().to_string()
        }
        Location::Disk(_) => return Ok(()),
    };
    super::set_variable(ctx, C, "OSDTargetSystemDrive", text).map_err(|e| e.to_string())
}

/// The administrator's answer file (`ConfigFilePackage` + `ConfigFileName`, action variable
/// `OSDConfigFileName`) copied from its package to `Windows\Panther\unattend.xml` of the
/// applied Windows, where *Apply Windows Settings* and *Apply Network Settings* merge their
/// settings into it and Windows Setup reads it. The package must be there (as for any package
/// a step names); a target that holds no Windows keeps the file out, with a warning. Done on a
/// folder, or a partition tsforge mounts (Linux); other targets are logged as not reached.
/// The administrator's answer file of an OS step, fetched before anything is written: its
/// local path, name and package; `None` when the step names none.
fn fetch_answer_file(step: &Step, ctx: &mut Ctx) -> Result<Option<AnswerFile>, String> {
    const C: &str = "ApplyImage";
    if !is_os_step(step) {
        return Ok(None);
    }
    let (Some(name), Some(pkg)) = (
        get(step, ctx.vars, "ConfigFileName"),
        get(step, ctx.vars, "ConfigFilePackage"),
    ) else {
        return Ok(None);
    };
    let rel = name.replace('\\', "/");
    if rel.starts_with('/') || rel.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(format!(
            "ConfigFileName {name:?} is not a file name inside package {pkg}"
        ));
    }
    let local = super::packages::fetch(ctx, C, &pkg)?;
    let src = local.dir.join(&rel);
    if !src.is_file() {
        return Err(format!(
            "package {pkg} has no file {name:?} (ConfigFileName, the answer file)"
        ));
    }
    Ok(Some(AnswerFile { src, name, pkg }))
}

/// An answer file fetched from its package.
struct AnswerFile {
    src: PathBuf,
    name: String,
    pkg: String,
}

fn place_answer_file(
    found: Option<AnswerFile>,
    target: &Location,
    ctx: &mut Ctx,
) -> Result<(), String> {
    const C: &str = "ApplyImage";
    let Some(AnswerFile { src, name, pkg }) = found else {
        return Ok(());
    };
    let place = |root: &std::path::Path, log: &mut crate::log::Logger| -> Result<(), String> {
        match crate::osconfig::detect(root) {
            Ok(crate::osconfig::Os::Windows) => {
                let dest = crate::osconfig::unattend::path_in(root);
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                }
                std::fs::copy(&src, &dest)
                    .map_err(|e| format!("copying {name} to {}: {e}", dest.display()))?;
                log.log(
                    Level::Info,
                    C,
                    &format!(
                        "Answer file {name} from package {pkg} placed at \
                         Windows\\Panther\\unattend.xml of {target}"
                    ),
                );
            }
            Ok(crate::osconfig::Os::Linux(os)) => log.log(
                Level::Warning,
                C,
                &format!(
                    "{target} holds {}: the answer file {name} (for Windows Setup) is not used",
                    os.title()
                ),
            ),
            Err(e) => log.log(
                Level::Warning,
                C,
                &format!("the answer file {name} was not placed: {e:#}"),
            ),
        }
        Ok(())
    };
    match target {
        Location::Dir(dir) => place(dir, ctx.log),
        Location::Partition { disk, number } if cfg!(target_os = "linux") => {
            let m = crate::volume::mount_partition(disk, *number, false)
                .map_err(|e| format!("placing the answer file on {target}: {e:#}"))?;
            let r = place(m.dir(), ctx.log);
            m.unmount()
                .map_err(|e| format!("placing the answer file on {target}: {e:#}"))?;
            r
        }
        _ => {
            ctx.log.log(
                Level::Warning,
                C,
                &format!(
                    "the answer file {name} was not placed on {target}: this runner reaches \
                     it only on a folder or, on Linux, a partition it mounts"
                ),
            );
            Ok(())
        }
    }
}

/// The install form: the edition index, the package's install image fetched into the cache
/// (the whole package, verified), the split parts checked, the edition checked against the
/// editions the image holds. Returns the image's local path and the edition to apply. Nothing
/// is written to the target before this succeeds.
fn install_image(step: &Step, ctx: &mut Ctx, id: &str) -> Result<(PathBuf, u32), String> {
    const C: &str = "ApplyImage";
    let edition = edition_index(step, ctx.vars)?;
    // The manifest says whether this is a setup folder before anything is downloaded.
    let store = ctx.store().map_err(|e| format!("{e:#}"))?;
    let found = store.find(id).map_err(|e| format!("{e:#}"))?;
    let rel = install_image_of(&found.manifest)?;
    let local = super::packages::fetch(ctx, C, &found.manifest.id)?;
    let path = local.dir.join(&rel);
    let shown = format!("{rel} of OS install package {id}");
    if crate::image::wim::split_parts_pattern(&path).is_some() {
        let parts = crate::image::wim::split_parts(&path).map_err(|e| format!("{shown}: {e:#}"))?;
        let missing: Vec<String> = parts
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| {
                p.file_name()
                    .map(|n| format!("sources/{}", n.to_string_lossy()))
                    .unwrap_or_default()
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{shown} is the first of {} parts of a split WIM; the package lacks {}",
                parts.len() + 1,
                missing.join(", ")
            ));
        }
    }
    let info = crate::image::wim::info(&path).map_err(|e| format!("{shown}: {e:#}"))?;
    let list = info
        .images
        .iter()
        .map(|i| format!("{} {:?}", i.index, i.name))
        .collect::<Vec<_>>()
        .join(", ");
    let count = info.images.len();
    let edition = match edition {
        0 if count == 1 => {
            ctx.log.log(
                Level::Info,
                C,
                &format!(
                    "InstallEditionIndex is 0 (Windows Setup would pick the edition by product \
                     key); {shown} holds one edition, {list}, which is applied"
                ),
            );
            info.images[0].index
        }
        0 => {
            return Err(format!(
                "InstallEditionIndex is 0, which leaves the edition to Windows Setup and the \
                 product key; tsforge applies the image itself and {shown} holds {count} \
                 editions ({list}): set InstallEditionIndex (or OSDInstallEditionIndex) to one \
                 of them"
            ))
        }
        n if info.images.iter().any(|i| i.index == n) => n,
        n => {
            return Err(format!(
                "InstallEditionIndex {n} is past the last edition: {shown} holds {count} \
                 edition(s) ({list})"
            ))
        }
    };
    let name = info
        .images
        .iter()
        .find(|i| i.index == edition)
        .map(|i| i.name.clone())
        .unwrap_or_default();
    ctx.log.log(
        Level::Info,
        C,
        &format!("Edition {edition} ({name:?}) of {shown}, {count} edition(s): {list}"),
    );
    Ok((path, edition))
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
