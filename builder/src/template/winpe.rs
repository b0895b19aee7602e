//! The Windows PE media template: turns a Windows ADK `copype` folder or a WinPE ISO into the
//! medium's files, with the tsforge runner added to `sources/boot.wim`.
//!
//! # Sources
//! `--source` is required and is one of:
//! - a `copype` *media* folder (`bootmgr`, `Boot/BCD`, `sources/boot.wim`, …);
//! - a `copype` *root* folder, the one holding `media/`. `copype` puts the El Torito images
//!   (`etfsboot.com`, `efisys.bin`) in `fwfiles/` (newer ADKs: `bootbins/`) next to `media/`
//!   rather than inside it, so when they are not in the media folder they are taken from there
//!   and put at their usual paths on the medium (`Boot/`, `EFI/Microsoft/Boot/`);
//! - a WinPE ISO, extracted with `xorriso -osirrox on` into the work folder. xorriso reads
//!   ISO 9660 with Rock Ridge or Joliet, not UDF: an ISO whose files are only in UDF (what
//!   `oscdimg -u2` and `MakeWinPEMedia /ISO` make) is refused with that explanation.
//!
//! Names are matched ignoring ASCII case, because real WinPE media mix `Boot` and `boot`,
//! `EFI` and `efi`; two names in one folder that differ only in case are refused. Every check
//! ([`REQUIRED_FILES`] present, `boot.wim` a single-part WIM whose header is consistent, the
//! runner a Windows executable, a WIM tool installed) runs before anything is written to the
//! work folder (except an ISO's extraction, which the checks read), and all missing files are
//! named in one error.
//!
//! # The runner
//! `boot.wim` is copied into the work folder and its boot image (the one the WIM header marks
//! bootable, else image 1) gets two files:
//! - `\Windows\System32\tsforge.exe`: the runner (`--runner`, an x86_64-pc-windows-gnu build);
//! - `\Windows\System32\winpeshl.ini` ([`winpeshl_ini`]): Windows PE's shell starts the apps
//!   in `[LaunchApps]` instead of `startnet.cmd`, so it lists `wpeinit.exe` first (network and
//!   PnP initialisation, what `startnet.cmd` would have done), then `tsforge.exe boot`. An
//!   existing `winpeshl.ini` or `tsforge.exe` in the image is replaced.
//!
//! The WIM work is the runtime's (`tsforge_runtime::image::wim`): [`WimHeader`] reads and
//! checks `boot.wim`'s header (before and after the update), and [`WimBackend`] adds the files.
//! On Linux (and on Windows when DISM is missing) this is one `wimlib-imagex update` with both
//! `add` commands on standard input, run case-insensitively (`WIMLIB_IMAGEX_IGNORE_CASE=1`) so
//! `\Windows\System32` is found however the image spells it. On Windows, DISM mounts the image,
//! the files are copied in and the image is unmounted with `/Commit` (`/Discard` on failure).
//! The source `boot.wim` is never modified.
//!
//! # Drivers (`--driver DIR`)
//! Each folder (an INF file and the files it names, as a vendor ships a driver) is checked by
//! [`super::inf::check_inf`] before anything else is read (every file the INF's
//! `[SourceDisksFiles]`/`[SourceDisksFiles.amd64]` names, and its catalog, is in the folder;
//! otherwise the build fails naming the INF, the line and the file), and goes onto the medium
//! under [`DRIVERS_DIR`]`/<n>/` (n counts the folders from 1). The boot image gets
//! [`DRIVERS_CMD_IN_WIM`] ([`drivers_cmd`]), which finds the medium (the first drive with
//! `tsforge\media.toml` and `tsforge\drivers`) and runs `drvload` on each INF, printing each
//! result; `winpeshl.ini` starts it after `wpeinit` and before the runner
//! ([`DRIVERS_LAUNCH_APP`]), so the runner sees the disks and network cards the drivers add.
//! The drivers stay on the medium rather than in `boot.wim`, because DISM (the Windows WIM
//! backend) adds single files and a driver folder keeps its layout there. A PXE boot has no
//! medium drive: it loads no drivers (the script says so). Without `--driver`,
//! `winpeshl.ini` is what it was.
//!
//! # Pre-execution hooks and `TsConfig.ini`
//! tsforge reads its pre-execution hooks from `tsforge/media.toml` (`hooks.pre_execution`),
//! which the media core writes; `tsforge boot` runs them before a sequence is chosen. The
//! template also writes `SMS/data/TsConfig.ini` ([`tsconfig_ini`]) with the ConfigMgr
//! `[CustomHook]` section pointing at the same command, for administrators and tools coming
//! from ConfigMgr that look for it there; tsforge itself does not read it.
//!
//! # Boot
//! BIOS ISO: `Boot/etfsboot.com` (4 sectors, no boot-info table). UEFI ISO and USB:
//! `EFI/Microsoft/Boot/efisys.bin` as the El Torito EFI image, `EFI/Boot/bootx64.efi` on the
//! FAT partition. PXE: wimboot with `bootmgr`, `Boot/BCD`, `Boot/boot.sdi`, `sources/boot.wim`.
//! No BIOS boot from USB: that needs Microsoft's boot sector code (`bootsect /nt60`).
//!
//! Left out: 32-bit and ARM64 WinPE (the checks are for x64 media), split boot WIMs, adding
//! optional components or drivers into `boot.wim` itself (do that with DISM before building;
//! `--driver` loads them at boot instead), and byte-identical
//! `boot.wim` across builds (the new files carry [`TemplateInput::epoch`] as their time, but
//! wimlib and DISM stamp the image's modification time with the current time).
//!
//! `media-templates/winpe/template.toml` describes this template for readers; this module is
//! the source of truth, and `builder/tests/winpe.rs` checks that the two agree.

use super::{BootSpec, IsoBios, Prepared, PxeBoot, TemplateInput, UsbBios};
use crate::source::Source;
use crate::tree::MediaTree;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use tsforge_runtime::image::wim::{WimBackend, WimHeader};
use tsforge_runtime::tools::{self, Tool};

/// Files a WinPE source must have, as paths in the media folder (ASCII case ignored).
pub const REQUIRED_FILES: &[&str] = &[
    BOOTMGR,
    "bootmgr.efi",
    BCD,
    BOOT_SDI,
    ETFSBOOT,
    "EFI/Boot/bootx64.efi",
    "EFI/Microsoft/Boot/BCD",
    EFISYS,
    BOOT_WIM,
];

const BOOTMGR: &str = "bootmgr";
const BCD: &str = "Boot/BCD";
const BOOT_SDI: &str = "Boot/boot.sdi";
/// El Torito BIOS boot image.
const ETFSBOOT: &str = "Boot/etfsboot.com";
/// El Torito UEFI boot image (a FAT image holding `EFI/Boot/bootx64.efi`).
const EFISYS: &str = "EFI/Microsoft/Boot/efisys.bin";
/// The Windows PE image the runner is added to.
pub const BOOT_WIM: &str = "sources/boot.wim";
const BOOTX64: &str = "EFI/Boot/bootx64.efi";

/// Folders of a `copype` root that may hold the El Torito images instead of the media folder.
pub const FIRMWARE_FILE_DIRS: &[&str] = &["fwfiles", "bootbins"];

const RUNNER_NAME: &str = "tsforge.exe";
const WINPESHL_NAME: &str = "winpeshl.ini";

/// Where the runner goes inside the boot image.
pub const RUNNER_IN_WIM: &str = "Windows/System32/tsforge.exe";
/// Where the shell configuration that starts the runner goes inside the boot image.
pub const WINPESHL_IN_WIM: &str = "Windows/System32/winpeshl.ini";
/// The ConfigMgr-style hook file on the medium.
pub const TSCONFIG_PATH: &str = "SMS/data/TsConfig.ini";

/// The apps Windows PE's shell starts, in order (`[LaunchApps]` lines; `, ` separates the
/// program from its arguments).
pub const LAUNCH_APPS: &[&str] = &[
    r"%SYSTEMROOT%\System32\wpeinit.exe",
    r"%SYSTEMROOT%\System32\tsforge.exe, boot",
];

/// `--driver` folders go on the medium here, numbered from 1 in the order given.
pub const DRIVERS_DIR: &str = "tsforge/drivers";
/// The script that loads them, in the boot image; started by `winpeshl.ini` after `wpeinit`
/// and before the runner ([`DRIVERS_LAUNCH_APP`]).
pub const DRIVERS_CMD_IN_WIM: &str = "Windows/System32/tsforge-drivers.cmd";
const DRIVERS_CMD_NAME: &str = "tsforge-drivers.cmd";
/// The `[LaunchApps]` line for [`DRIVERS_CMD_IN_WIM`], inserted before the runner's.
pub const DRIVERS_LAUNCH_APP: &str =
    r"%SYSTEMROOT%\System32\cmd.exe, /c X:\Windows\System32\tsforge-drivers.cmd";

/// The command that finds the medium, verifies it, runs the pre-execution hooks and the chosen
/// sequence, as Windows PE sees it (the boot image is drive `X:`).
pub const BOOT_COMMAND: &str = r"X:\Windows\System32\tsforge.exe boot";

/// `winpeshl.ini` for the boot image (CRLF line ends, as Windows PE's own files have).
pub fn winpeshl_ini() -> String {
    winpeshl_ini_with(false)
}

/// `winpeshl.ini`; with `drivers`, [`DRIVERS_LAUNCH_APP`] runs before the runner.
pub fn winpeshl_ini_with(drivers: bool) -> String {
    let mut s = String::from("[LaunchApps]\r\n");
    for (i, app) in LAUNCH_APPS.iter().enumerate() {
        if drivers && i + 1 == LAUNCH_APPS.len() {
            s.push_str(DRIVERS_LAUNCH_APP);
            s.push_str("\r\n");
        }
        s.push_str(app);
        s.push_str("\r\n");
    }
    s
}

/// `tsforge-drivers.cmd`: finds the medium (the first drive C: to Z: with
/// `tsforge\media.toml` and `tsforge\drivers`) and runs `drvload` on each INF (`infs`: paths
/// under [`DRIVERS_DIR`], `/`-separated), reporting each result; it always ends with exit
/// code 0, so a driver that fails to load does not stop the runner from starting.
/// Drvload: <https://learn.microsoft.com/en-us/windows-hardware/manufacture/desktop/drvload-command-line-options>
pub fn drivers_cmd(infs: &[String]) -> String {
    let mut s = String::from(
        "@echo off\r\n\
         rem Written by tsforge: loads the medium's drivers with drvload before the runner starts.\r\n\
         set TSFORGE_DRIVERS=\r\n\
         for %%d in (C D E F G H I J K L M N O P Q R S T U V W Y Z) do if not defined TSFORGE_DRIVERS if exist %%d:\\tsforge\\media.toml if exist %%d:\\tsforge\\drivers\\ set TSFORGE_DRIVERS=%%d:\\tsforge\\drivers\r\n\
         if not defined TSFORGE_DRIVERS (\r\n\
         echo tsforge: no medium with tsforge\\drivers found; drivers not loaded\r\n\
         exit /b 0\r\n\
         )\r\n\
         echo tsforge: loading drivers from %TSFORGE_DRIVERS%\r\n",
    );
    for inf in infs {
        let rel = inf.replace('/', "\\");
        // In the quoted argument only `%` is special; in echo text, cmd's operators too.
        let arg = rel.replace('%', "%%");
        let mut shown = String::new();
        for c in rel.chars() {
            match c {
                '%' => shown.push_str("%%"),
                '^' | '&' | '|' | '<' | '>' | '(' | ')' => {
                    shown.push('^');
                    shown.push(c);
                }
                c => shown.push(c),
            }
        }
        s.push_str(&format!(
            "drvload \"%TSFORGE_DRIVERS%\\{arg}\"\r\n\
             if errorlevel 1 (echo tsforge: drvload {shown} failed) else (echo tsforge: loaded {shown})\r\n"
        ));
    }
    s.push_str("exit /b 0\r\n");
    s
}

/// Check the `--driver` folders (each a folder with INF files whose named files are all
/// there) and plan them into `tree` under [`DRIVERS_DIR`]; returns the INF paths there
/// (relative to [`DRIVERS_DIR`]) and how many files the INFs name.
fn plan_drivers(drivers: &[PathBuf], tree: &mut MediaTree) -> Result<(Vec<String>, usize)> {
    let mut infs = Vec::new();
    let mut named = 0;
    for (i, dir) in drivers.iter().enumerate() {
        if !dir.is_dir() {
            bail!(
                "--driver {}: the winpe template takes a driver folder (an INF file and the \
                 files it names), not {}",
                dir.display(),
                if dir.exists() {
                    "a file"
                } else {
                    "a missing path"
                }
            );
        }
        let found = super::inf::inf_files(dir)?;
        if found.is_empty() {
            bail!(
                "--driver {}: the folder holds no INF file (a Windows driver is an INF file \
                 with the files it names)",
                dir.display()
            );
        }
        for rel in found {
            named += super::inf::check_inf(&dir.join(&rel))
                .with_context(|| format!("--driver {}", dir.display()))?;
            let rel = rel
                .to_str()
                .ok_or_else(|| anyhow!("{}: not a UTF-8 path", rel.display()))?
                .replace('\\', "/");
            infs.push(format!("{}/{rel}", i + 1));
        }
        tree.add_dir(dir, &format!("{DRIVERS_DIR}/{}", i + 1))
            .with_context(|| format!("--driver {}", dir.display()))?;
    }
    Ok((infs, named))
}

/// `SMS/data/TsConfig.ini` for the medium: ConfigMgr's `[CustomHook]` section, for
/// administrators coming from ConfigMgr. tsforge reads its hooks from `tsforge/media.toml`.
pub fn tsconfig_ini() -> String {
    [
        "; Written by tsforge. tsforge does not read this file: the runner takes its",
        "; pre-execution hooks from tsforge\\media.toml (hooks.pre_execution) and runs them",
        "; in the command below, which winpeshl.ini starts when Windows PE boots.",
        "[CustomHook]",
        &format!("Program = \"{BOOT_COMMAND}\""),
        "",
    ]
    .join("\r\n")
}

/// Prepares a Windows PE medium from `input.source` (see the module documentation).
pub fn prepare(input: &TemplateInput) -> Result<Prepared> {
    let Some(source) = input.source.as_deref() else {
        bail!(
            "the winpe template needs a source: pass --source with a Windows ADK copype folder \
             (its media folder or the folder holding media/) or a WinPE ISO"
        );
    };
    check_runner(&input.runner)?;
    // Driver folders are checked first: they are the administrator's input most likely to
    // be wrong, and nothing is read from the source for them.
    let mut driver_tree = MediaTree::new();
    let (infs, inf_files_named) = plan_drivers(&input.drivers, &mut driver_tree)?;
    let work = input.work.join("winpe");
    make_empty_dir(&work)?;
    let found = locate(source, &work)?;
    let media = scan(&found.media)?;
    let files = resolve_required(&found, &media)?;
    let wim_src = &files[BOOT_WIM];
    let header = WimHeader::read(wim_src)?;
    let index = header.boot_image();
    let backend = WimBackend::find("adding the runner to boot.wim")?;

    // The tree: every source file at its path (boot.wim is replaced below by the updated
    // copy). Planned before anything is written, so a name no medium can hold stops here.
    let mut tree = MediaTree::new();
    for (rel, host) in media.files.values() {
        tree.add(rel, Source::path(host))
            .with_context(|| format!("{}: {rel}", found.media.display()))?;
    }
    let mut paths = BTreeMap::new();
    for req in REQUIRED_FILES {
        let path = match media.get(req) {
            Some(rel) => rel.to_string(),
            None => {
                // An El Torito image from fwfiles/ or bootbins/: put it where the media
                // folder's own files would have it.
                let p = place(&tree, req);
                tree.add(&p, Source::path(&files[req]))?;
                p
            }
        };
        paths.insert(*req, path);
    }
    tree.add(TSCONFIG_PATH, tsconfig_ini().into_bytes())?;
    for (path, source) in driver_tree.iter() {
        tree.add(path, source.clone())?;
    }

    // Everything is checked: from here on, write into the work folder.
    let wim = work.join("boot.wim");
    copy_file(wim_src, &wim)?;
    let stage = work.join("stage");
    let runner_copy = stage.join(RUNNER_NAME);
    let ini = stage.join(WINPESHL_NAME);
    copy_file(&input.runner, &runner_copy)?;
    std::fs::write(&ini, winpeshl_ini_with(!infs.is_empty()))
        .with_context(|| format!("writing {}", ini.display()))?;
    let mut staged = vec![
        (RUNNER_NAME, RUNNER_IN_WIM),
        (WINPESHL_NAME, WINPESHL_IN_WIM),
    ];
    if !infs.is_empty() {
        let cmd = stage.join(DRIVERS_CMD_NAME);
        std::fs::write(&cmd, drivers_cmd(&infs))
            .with_context(|| format!("writing {}", cmd.display()))?;
        staged.push((DRIVERS_CMD_NAME, DRIVERS_CMD_IN_WIM));
    }
    for (name, _) in &staged {
        set_times(&stage.join(name), input.epoch)?;
    }
    backend
        .add_files(&wim, index, &stage, &staged, &work)
        .with_context(|| {
            format!(
                "adding the runner to image {index} of {} (a copy of {})",
                wim.display(),
                wim_src.display()
            )
        })?;
    WimHeader::read(&wim).context("checking the updated boot.wim")?;
    tree.add(&paths[BOOT_WIM], Source::path(&wim))?;

    let boot = BootSpec {
        iso_bios: Some(IsoBios {
            image: paths[ETFSBOOT].clone(),
            isolinux: false,
        }),
        iso_uefi_image: Some(paths[EFISYS].clone()),
        iso_hybrid_mbr: None,
        usb_bios: Some(UsbBios::None {
            why: "BIOS boot of Windows PE from USB needs Microsoft's boot sector code \
                  (bootsect /nt60); the stick boots under UEFI"
                .to_string(),
        }),
        uefi_removable_path: tree.contains(BOOTX64),
        pxe: Some(PxeBoot::WinPe {
            bootmgr: paths[BOOTMGR].clone(),
            bcd: paths[BCD].clone(),
            boot_sdi: paths[BOOT_SDI].clone(),
            boot_wim: paths[BOOT_WIM].clone(),
        }),
    };
    let new_size = file_size(&wim)?;
    let runner_size = file_size(&input.runner)?;
    let mut summary = vec![
        format!(
            "source: {} {} ({} files)",
            found.kind,
            source.display(),
            media.files.len()
        ),
        format!(
            "boot.wim: image {index} of {} ({}), {} → {} with the runner",
            header.image_count,
            if header.boot_index == 0 {
                "no boot index set, using the first"
            } else {
                "marked bootable"
            },
            size_text(header.file_size),
            size_text(new_size)
        ),
        format!(
            "runner: {} ({}) added as X:\\{}, started by winpeshl.ini after wpeinit ({})",
            input.runner.display(),
            size_text(runner_size),
            RUNNER_IN_WIM.replace('/', "\\"),
            backend.name()
        ),
    ];
    if !infs.is_empty() {
        summary.push(format!(
            "drivers: {} folders under {DRIVERS_DIR}/ with {} INF files ({} files they name, \
             all present), loaded with drvload by X:\\{} before the runner starts",
            input.drivers.len(),
            infs.len(),
            inf_files_named,
            DRIVERS_CMD_IN_WIM.replace('/', "\\")
        ));
    }
    Ok(Prepared {
        tree,
        boot,
        summary,
    })
}

/// Where the source's media folder is, and what kind of source it was.
struct Located {
    kind: &'static str,
    /// The media folder (for an ISO: where it was extracted).
    media: PathBuf,
    /// The `copype` root, when the source was one (for `fwfiles/`, `bootbins/`).
    root: Option<PathBuf>,
    /// The ISO, when the source was one (for the UDF hint).
    iso: Option<PathBuf>,
}

fn locate(source: &Path, work: &Path) -> Result<Located> {
    let meta = std::fs::metadata(source).with_context(|| {
        format!(
            "--source {}: cannot read it; pass a copype folder or a WinPE ISO",
            source.display()
        )
    })?;
    if meta.is_file() {
        if !is_iso9660(source)? {
            bail!(
                "--source {}: not an ISO image (no ISO 9660 volume descriptor at byte 32768) \
                 and not a folder; pass a copype folder or a WinPE ISO",
                source.display()
            );
        }
        let dir = work.join("iso");
        make_empty_dir(&dir)?;
        extract_iso(source, &dir)?;
        return Ok(Located {
            kind: "WinPE ISO",
            media: dir,
            root: None,
            iso: Some(source.to_path_buf()),
        });
    }
    if !meta.is_dir() {
        bail!("--source {}: neither a folder nor a file", source.display());
    }
    let has = |name: &str| child_ignoring_case(source, name).is_some();
    if !has(BOOTMGR) && !has("sources") {
        if let Some(media) = child_ignoring_case(source, "media").filter(|m| m.is_dir()) {
            return Ok(Located {
                kind: "copype folder",
                media,
                root: Some(source.to_path_buf()),
                iso: None,
            });
        }
    }
    Ok(Located {
        kind: "WinPE media folder",
        media: source.to_path_buf(),
        root: None,
        iso: None,
    })
}

/// The entry of `dir` called `name` (ASCII case ignored).
fn child_ignoring_case(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|e| e.path())
}

/// The files of a media folder: lower-cased path → (path as spelled, host path).
struct MediaFiles {
    files: BTreeMap<String, (String, PathBuf)>,
}

impl MediaFiles {
    fn get(&self, path: &str) -> Option<&str> {
        self.files
            .get(&path.to_ascii_lowercase())
            .map(|(rel, _)| rel.as_str())
    }

    fn host(&self, path: &str) -> Option<&Path> {
        self.files
            .get(&path.to_ascii_lowercase())
            .map(|(_, host)| host.as_path())
    }
}

fn scan(media: &Path) -> Result<MediaFiles> {
    let mut files = BTreeMap::new();
    scan_dir(media, media, "", &mut files)?;
    Ok(MediaFiles { files })
}

fn scan_dir(
    top: &Path,
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, (String, PathBuf)>,
) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut entries = rd
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    // Names in one folder must differ ignoring case (files and folders alike), so paths on
    // the medium, which FAT and ISO 9660 compare ignoring case, stay unique.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for e in entries {
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("{}: the name {n:?} is not UTF-8", dir.display()))?;
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if let Some(other) = seen.insert(name.to_ascii_lowercase(), rel.clone()) {
            bail!(
                "{}: {other} and {rel} differ only in case; a WinPE medium (FAT, ISO 9660) \
                 cannot hold both, remove one",
                top.display()
            );
        }
        let host = e.path();
        let meta =
            std::fs::metadata(&host).with_context(|| format!("reading {}", host.display()))?;
        if meta.is_dir() {
            scan_dir(top, &host, &rel, files)?;
        } else if meta.is_file() {
            files.insert(rel.to_ascii_lowercase(), (rel, host));
        }
    }
    Ok(())
}

/// The host file of every required file, or one error naming all missing ones.
fn resolve_required(
    found: &Located,
    media: &MediaFiles,
) -> Result<BTreeMap<&'static str, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for req in REQUIRED_FILES {
        if let Some(host) = media.host(req) {
            out.insert(*req, host.to_path_buf());
            continue;
        }
        let fallback = if matches!(*req, ETFSBOOT | EFISYS) {
            found
                .root
                .as_deref()
                .and_then(|root| firmware_file(root, req))
        } else {
            None
        };
        match fallback {
            Some(host) => {
                out.insert(*req, host);
            }
            None => missing.push(*req),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let mut msg = format!(
        "{} ({}) is not a complete Windows PE source: missing {}",
        found.media.display(),
        found.kind,
        missing.join(", ")
    );
    if found.root.is_some() && missing.iter().any(|m| matches!(*m, ETFSBOOT | EFISYS)) {
        msg.push_str(&format!(
            " (etfsboot.com and efisys.bin were also looked for in {})",
            FIRMWARE_FILE_DIRS.join("/ and ") + "/"
        ));
    }
    if let Some(iso) = &found.iso {
        if has_udf(iso).unwrap_or(false) {
            msg.push_str(&format!(
                ". {} also has a UDF file system: ISOs made by oscdimg -u2 or MakeWinPEMedia \
                 /ISO keep their files only in UDF, which xorriso cannot read; pass the copype \
                 folder instead, or a folder the ISO was extracted to with 7-Zip",
                iso.display()
            ));
        }
    } else {
        msg.push_str(
            "; pass --source with a copype media folder (or the folder holding media/) or a \
             WinPE ISO",
        );
    }
    bail!(msg)
}

/// `etfsboot.com` / `efisys.bin` from a copype root's `fwfiles/` or `bootbins/`.
fn firmware_file(root: &Path, req: &str) -> Option<PathBuf> {
    let name = req.rsplit('/').next()?;
    FIRMWARE_FILE_DIRS.iter().find_map(|d| {
        let dir = child_ignoring_case(root, d)?;
        child_ignoring_case(&dir, name).filter(|p| p.is_file())
    })
}

/// `canonical` with each folder spelled as the tree already spells it (so a source with
/// `boot/BCD` gets `boot/etfsboot.com`, not a second `Boot` folder).
fn place(tree: &MediaTree, canonical: &str) -> String {
    let parts: Vec<&str> = canonical.split('/').collect();
    let mut out: Vec<String> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let spelled = if last {
            None
        } else {
            tree.iter().find_map(|(p, _)| {
                let comps: Vec<&str> = p.split('/').collect();
                (comps.len() > i + 1
                    && comps[..i]
                        .iter()
                        .zip(&out)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
                    && comps[i].eq_ignore_ascii_case(part))
                .then(|| comps[i].to_string())
            })
        };
        out.push(spelled.unwrap_or_else(|| part.to_string()));
    }
    out.join("/")
}

/// Whether the Windows executable check passes: a PE image starts with `MZ`.
fn check_runner(runner: &Path) -> Result<()> {
    let mut head = [0u8; 2];
    let mut f = std::fs::File::open(runner).with_context(|| {
        format!(
            "--runner {}: cannot open it; pass an x86_64-pc-windows-gnu build of tsforge",
            runner.display()
        )
    })?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("reading --runner {}", runner.display()))?;
    if n < 2 || &head != b"MZ" {
        bail!(
            "--runner {}: not a Windows executable (no MZ header); the winpe template needs an \
             x86_64-pc-windows-gnu build of tsforge (cargo build --release --target \
             x86_64-pc-windows-gnu)",
            runner.display()
        );
    }
    Ok(())
}

fn is_iso9660(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 32768 + 6];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(&buf[32769..32774] == b"CD001")
}

/// Whether the ISO has a UDF volume recognition sequence (`NSR02`/`NSR03` among the volume
/// descriptors from sector 16, ECMA-167 part 2).
fn has_udf(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 2048 * 32];
    let mut got = 0;
    let start = 16 * 2048;
    std::io::copy(&mut (&mut f).take(start as u64), &mut std::io::sink())?;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(buf[..got]
        .chunks(2048)
        .any(|s| s.len() >= 6 && (&s[1..6] == b"NSR02" || &s[1..6] == b"NSR03")))
}

fn extract_iso(iso: &Path, dir: &Path) -> Result<()> {
    let what = format!("extracting the WinPE ISO {}", iso.display());
    let xorriso = tools::find(Tool::Xorriso)
        .map_err(|e| anyhow!("{what}: {e}; or pass the copype folder as --source"))?;
    let args: Vec<OsString> = vec![
        "-osirrox".into(),
        "on".into(),
        "-indev".into(),
        iso.into(),
        "-extract".into(),
        "/".into(),
        dir.into(),
    ];
    tools::run_program(&xorriso, &args, &what)?;
    Ok(())
}

fn make_empty_dir(dir: &Path) -> Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} already exists and is not empty; the winpe template needs a fresh work folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if to.exists() {
        bail!(
            "{} already exists; the winpe template needs a fresh work folder",
            to.display()
        );
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    // A copy keeps the source's permissions, and a read-only boot.wim (from an ISO, or
    // a read-only share) must become writable for the WIM tool.
    make_writable(to).with_context(|| format!("making {} writable", to.display()))
}

#[cfg(unix)]
fn make_writable(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p)?.permissions().mode();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o600))
}

#[cfg(not(unix))]
fn make_writable(p: &Path) -> std::io::Result<()> {
    let mut perms = std::fs::metadata(p)?.permissions();
    if perms.readonly() {
        // Only the owner's work copy; on Windows this clears the read-only attribute.
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(p, perms)?;
    }
    Ok(())
}

/// Sets the modification and access times of a file the builder made to `epoch`, so what
/// the WIM records for it does not depend on when the build ran.
fn set_times(path: &Path, epoch: i64) -> Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
        .with_context(|| format!("setting the times of {}", path.display()))
}

fn file_size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("reading {}", p.display()))?
        .len())
}

/// A size for the summary: bytes, KiB or MiB.
fn size_text(n: u64) -> String {
    match n {
        0..1024 => format!("{n} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files() {
        assert_eq!(
            winpeshl_ini(),
            "[LaunchApps]\r\n%SYSTEMROOT%\\System32\\wpeinit.exe\r\n\
             %SYSTEMROOT%\\System32\\tsforge.exe, boot\r\n"
        );
        let ts = tsconfig_ini();
        assert!(
            ts.contains(
                "\r\n[CustomHook]\r\nProgram = \"X:\\Windows\\System32\\tsforge.exe boot\"\r\n"
            ),
            "{ts}"
        );
    }

    #[test]
    fn udf_is_recognised_among_the_volume_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("x.iso");
        let mut img = vec![0u8; 2048 * 20];
        img[16 * 2048 + 1..16 * 2048 + 6].copy_from_slice(b"CD001");
        img[17 * 2048 + 1..17 * 2048 + 6].copy_from_slice(b"BEA01");
        std::fs::write(&iso, &img).unwrap();
        assert!(is_iso9660(&iso).unwrap());
        assert!(!has_udf(&iso).unwrap());
        img[18 * 2048 + 1..18 * 2048 + 6].copy_from_slice(b"NSR02");
        std::fs::write(&iso, &img).unwrap();
        assert!(has_udf(&iso).unwrap());
        std::fs::write(&iso, b"short").unwrap();
        assert!(!is_iso9660(&iso).unwrap());
    }

    #[test]
    fn place_follows_the_tree_spelling() {
        let mut t = MediaTree::new();
        t.add("boot/bcd", b"x".to_vec()).unwrap();
        t.add("efi/microsoft/Boot/BCD", b"x".to_vec()).unwrap();
        assert_eq!(place(&t, ETFSBOOT), "boot/etfsboot.com");
        assert_eq!(place(&t, EFISYS), "efi/microsoft/Boot/efisys.bin");
        assert_eq!(place(&MediaTree::new(), EFISYS), EFISYS);
    }
}
