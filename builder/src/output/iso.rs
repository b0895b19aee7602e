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
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;
use tsforge_runtime::media::{self, Region};

/// Options of [`write_iso`].
#[derive(Debug, Clone)]
pub struct IsoOutputOptions {
    /// Volume label (1–32 of `A–Z a–z 0–9 _ - .` and space).
    pub label: String,
    /// Time of every date in the image (`SOURCE_DATE_EPOCH`).
    pub epoch: i64,
    /// Replace an existing image.
    pub force: bool,
    /// The key the medium's manifest is signed with (`--sign`): needed to re-sign it when the
    /// tree is a signed medium.
    pub signing_key: Option<[u8; 32]>,
}

impl IsoOutputOptions {
    /// Label `TSFORGE`.
    pub fn new(epoch: i64) -> IsoOutputOptions {
        IsoOutputOptions {
            label: super::DEFAULT_LABEL.to_string(),
            epoch,
            force: false,
            signing_key: None,
        }
    }
}

/// What the ISO's boot region is called in `tsforge/boot-regions`.
const HEAD_REGION: &str =
    "ISO system area (hybrid MBR), volume descriptors, path tables, directories and boot catalog";

/// Write `tree` as an ISO image at `out`.
///
/// When `tree` is a medium (it has `tsforge/manifest`), the manifest is re-made for the ISO
/// as written ([`crate::media::reseal`]): the BIOS boot image with its boot-info table
/// (ISOLINUX), and `tsforge/boot-regions` with the sha256 of everything before the first file
/// sector. Those bytes depend on the files' names and sizes only, and the re-made files keep
/// their sizes, so the layout planned with placeholders is the layout written (checked).
pub fn write_iso(
    tree: &MediaTree,
    boot: &BootSpec,
    out: &Path,
    opts: &IsoOutputOptions,
    progress: Progress<'_>,
) -> Result<OutputSummary> {
    let sealed_tree;
    let tree = if tree.contains(media::MANIFEST_FILE) {
        sealed_tree = seal_for_iso(tree, boot, opts)
            .with_context(|| format!("sealing the manifest of {}", out.display()))?;
        &sealed_tree
    } else {
        tree
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

/// `tree` with `tsforge/boot-regions` and the manifest (and signature) of the ISO as written.
fn seal_for_iso(tree: &MediaTree, boot: &BootSpec, opts: &IsoOutputOptions) -> Result<MediaTree> {
    let key = opts.signing_key.as_ref();
    let regions_for = |head: &[u8]| {
        use sha2::Digest;
        media::format_regions(&[Region {
            sha256: tsforge_runtime::sys::hex(&sha2::Sha256::digest(head)),
            offset: 0,
            len: head.len() as u64,
            what: HEAD_REGION.into(),
        }])
    };
    let mut t = tree.clone();
    // 1. Placeholders: the regions file (its length follows from the head's, which does not
    //    depend on file sizes) and the manifest listing it, so every size is final.
    t.add(media::REGIONS_FILE, regions_for(&[]))?;
    let head_len = build_plan(&t, boot, opts)?.1.head().len();
    let placeholder = regions_for(&vec![0u8; head_len]);
    t.add(media::REGIONS_FILE, placeholder.clone())?;
    let sealed = crate::media::reseal(
        &t,
        key,
        &[crate::media::entry_of(media::REGIONS_FILE, &placeholder)],
    )?
    .expect("the tree has a manifest");
    sealed.add_to(&mut t)?;
    // 2. The layout as it will be written: the head and the patched boot image.
    let plan = build_plan(&t, boot, opts)?.1;
    let head = plan.head().to_vec();
    let regions = regions_for(&head);
    let mut updates = vec![crate::media::entry_of(media::REGIONS_FILE, &regions)];
    if let Some((path, bytes)) = plan.patched_file() {
        updates.push(crate::media::entry_of(path, bytes));
        let (path, bytes) = (path.to_string(), bytes.to_vec());
        t.add(&path, bytes)?;
    }
    t.add(media::REGIONS_FILE, regions)?;
    let sealed = crate::media::reseal(&t, key, &updates)?.expect("the tree has a manifest");
    sealed.add_to(&mut t)?;
    // 3. Same sizes, same layout: the head listed is the head written.
    let check = build_plan(&t, boot, opts)?.1;
    if check.head() != &head[..] {
        bail!("the ISO layout changed when its manifest was re-made (internal error)");
    }
    Ok(t)
}
