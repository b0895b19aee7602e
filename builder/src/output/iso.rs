//! The medium as an ISO image, through [`crate::iso::IsoBuilder`]: every file of the tree,
//! the El Torito BIOS entry from [`BootSpec::iso_bios`] (`etfsboot.com`: 4 sectors, no
//! boot-info table; ISOLINUX: whole file, boot-info table), the UEFI entry from
//! [`BootSpec::iso_uefi_image`], and an isohybrid MBR when the BIOS loader is ISOLINUX and the
//! template gives its `isohdpfx.bin` ([`BootSpec::iso_hybrid_mbr`]): that boot code is what
//! loads ISOLINUX from a disk, so without it (WinPE) the image is not made hybrid.

use super::{plan_files, OutputKind, OutputSummary, Placed, Progress, TempOutput};
use crate::iso::{BiosBoot, Hybrid, IsoBuilder, IsoOptions, UefiBoot};
use crate::template::BootSpec;
use crate::tree::MediaTree;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;

/// Options of [`write_iso`].
#[derive(Debug, Clone)]
pub struct IsoOutputOptions {
    /// Volume label (1–32 of `A–Z a–z 0–9 _ - .` and space).
    pub label: String,
    /// Time of every date in the image (`SOURCE_DATE_EPOCH`).
    pub epoch: i64,
    /// Replace an existing image.
    pub force: bool,
}

impl IsoOutputOptions {
    /// Label `TSFORGE`.
    pub fn new(epoch: i64) -> IsoOutputOptions {
        IsoOutputOptions {
            label: super::DEFAULT_LABEL.to_string(),
            epoch,
            force: false,
        }
    }
}

/// Write `tree` as an ISO image at `out`.
pub fn write_iso(
    tree: &MediaTree,
    boot: &BootSpec,
    out: &Path,
    opts: &IsoOutputOptions,
    progress: Progress<'_>,
) -> Result<OutputSummary> {
    write_iso_resealed(tree, boot, out, opts, progress, None)
}

/// Re-makes a tree's manifest (see [`write_iso_resealed`]).
pub type Reseal<'a> = &'a dyn Fn(&mut MediaTree) -> Result<()>;

/// [`write_iso`]; when the ISO changes a file's bytes (ISOLINUX's boot-info table) and
/// `reseal` is given, the tree gets the changed bytes and `reseal` re-makes its manifest (and
/// signature) before the image is written, so `media verify` and `sha256sum -c` pass on the
/// ISO. The manifest's size does not change (same paths, same hash length), so neither does
/// the layout.
pub fn write_iso_resealed(
    tree: &MediaTree,
    boot: &BootSpec,
    out: &Path,
    opts: &IsoOutputOptions,
    progress: Progress<'_>,
    reseal: Option<Reseal<'_>>,
) -> Result<OutputSummary> {
    let resealed;
    let tree = match reseal {
        Some(reseal) => {
            let mut t = tree.clone();
            let first = build_plan(&t, boot, opts)?.1;
            if let Some((path, bytes)) = first.patched_file() {
                let (path, bytes) = (path.to_string(), bytes.to_vec());
                t.add(&path, bytes)?;
                reseal(&mut t)?;
            }
            resealed = t;
            &resealed
        }
        None => tree,
    };
    let (iso, plan, notes) = build_plan(tree, boot, opts)
        .with_context(|| format!("planning the ISO image {}", out.display()))?;
    let files = plan_files(tree)?;
    let mut placed = Vec::new();
    let size = plan.size();
    let tmp = TempOutput::new(out, opts.force, false)?;
    let file = std::fs::File::create(tmp.path())
        .with_context(|| format!("creating {}", tmp.path().display()))?;
    let file = plan
        .write(file, progress)
        .with_context(|| format!("writing the ISO image {}", out.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    drop(file);
    let path = tmp.commit()?;
    let iso_options = iso.options();
    if let Some(b) = &iso_options.bios_boot {
        placed.push(Placed {
            what: format!(
                "BIOS El Torito entry: {}{}",
                b.image,
                if b.boot_info_table {
                    " (ISOLINUX, boot-info table)"
                } else {
                    ""
                }
            ),
            offset: None,
            bytes: tree.get(&b.image).and_then(|s| s.size().ok()).unwrap_or(0),
        });
    }
    if let Some(u) = &iso_options.uefi_boot {
        placed.push(Placed {
            what: format!("UEFI El Torito entry: {}", u.image),
            offset: None,
            bytes: tree.get(&u.image).and_then(|s| s.size().ok()).unwrap_or(0),
        });
    }
    if iso_options.hybrid.is_some() {
        placed.push(Placed {
            what: "isohybrid MBR".into(),
            offset: Some(0),
            bytes: 512,
        });
    }
    Ok(OutputSummary {
        kind: OutputKind::Iso,
        path,
        bytes: size,
        files: files.len() as u64,
        content_bytes: super::content_bytes(&files),
        placed,
        notes,
    })
}

/// The builder (its options), the plan and the notes for `tree`.
fn build_plan(
    tree: &MediaTree,
    boot: &BootSpec,
    opts: &IsoOutputOptions,
) -> Result<(IsoBuilder, crate::iso::IsoPlan, Vec<String>)> {
    let files = plan_files(tree)?;
    let mut options = IsoOptions::new(opts.label.clone(), opts.epoch);
    let mut notes = Vec::new();
    match &boot.iso_bios {
        Some(b) if b.isolinux => options.bios_boot = Some(BiosBoot::isolinux(&b.image)),
        Some(b) => options.bios_boot = Some(BiosBoot::etfsboot(&b.image)),
        None => {
            notes.push("no BIOS boot entry: the template has no BIOS boot image for ISOs".into())
        }
    }
    match &boot.iso_uefi_image {
        Some(img) => options.uefi_boot = Some(UefiBoot::new(img)),
        None => {
            notes.push("no UEFI boot entry: the template has no EFI System image for ISOs".into())
        }
    }
    let isolinux = boot.iso_bios.as_ref().is_some_and(|b| b.isolinux);
    match (&boot.iso_hybrid_mbr, isolinux) {
        (Some(path), true) => {
            let mut code = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(441).read_to_end(&mut code))
                .with_context(|| {
                    format!(
                        "reading the isohybrid boot code {} (Debian: isolinux, \
                         /usr/lib/ISOLINUX/isohdpfx.bin)",
                        path.display()
                    )
                })?;
            options.hybrid = Some(Hybrid {
                boot_code: Some(code),
            });
        }
        (Some(_), false) => notes.push(
            "not hybrid: the isohybrid boot code loads ISOLINUX, and this medium's BIOS loader \
             is not ISOLINUX; for a USB stick use `tsforge build usb`"
                .into(),
        ),
        (None, _) => notes.push(
            "not hybrid: written to a USB stick this image does not boot; use `tsforge build usb`"
                .into(),
        ),
    }
    let mut iso = IsoBuilder::new(options);
    for f in &files {
        iso.add_file(f.path, f.source.clone())?;
    }
    let plan = iso.plan()?;
    Ok((iso, plan, notes))
}
