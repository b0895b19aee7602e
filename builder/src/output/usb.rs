//! The medium as a raw USB disk image: one FAT32 partition holding the tree, starting at
//! 1 MiB, under an MBR (default: active, type 0x0C "FAT32 (LBA)") or a GPT (one EFI System
//! partition). Write it to a stick with `dd` or any disk imager.
//!
//! **Size.** The content, each file rounded up to the cluster size FAT32 will use, plus a
//! cluster per folder, plus 10 % and 64 MiB of headroom, rounded up to whole MiB (so the
//! partition is always above FAT32's minimum); or the size given, which must hold that much
//! without the headroom.
//!
//! **Order of writes** (STYLE §4): everything is checked first — no file over FAT's
//! 4 GiB − 1 byte, the label, the syslinux program and boot code. Then, in a temporary file
//! next to the output: the file system (`tsforge_runtime::disk::fatbuild`, from a staging
//! folder of links to the sources, with every timestamp set to `epoch`), then syslinux, then
//! the partition table and MBR boot code last, sync, rename.
//!
//! **BIOS boot.** For [`UsbBios::Syslinux`], Debian's `syslinux --install --offset`
//! (mtools-based, needs no root) puts `ldlinux.sys`/`ldlinux.c32` into the template's
//! syslinux folder and its boot code into the partition's boot sector; syslinux's `mbr.bin`
//! (MBR) or `gptmbr.bin` (GPT, with the partition's "legacy BIOS bootable" attribute, bit 2,
//! set so gptmbr.bin finds it) goes into the first 440 bytes. syslinux updates only the
//! primary FAT32 boot sector; we copy it to the backup (sector 6), which `fsck.fat` otherwise
//! reports as a difference. syslinux gets
//! `SOURCE_DATE_EPOCH`, which mtools honours for the times of the files it writes. For
//! [`UsbBios::None`] the image boots under UEFI only and the summary says why.
//!
//! **Tables** are written here rather than with `layout::write_table`, whose MBR disk
//! signature and GPT GUIDs are random: ours derive from the label and `epoch` (UEFI 2.10
//! §5.2.3 and §5.3; the GUIDs are version-4-shaped), so two builds are byte-identical.
//! 512-byte sectors only.

use super::{
    plan_files, remove_any, stable_id, OutputKind, OutputSummary, Placed, PlannedFile, Progress,
    TempOutput,
};
use crate::source::Source;
use crate::template::{BootSpec, UsbBios};
use crate::tree::MediaTree;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tsforge_runtime::disk::fat::{self, FatKind};
use tsforge_runtime::disk::{fatbuild, format_size, Disk, MIB};
use tsforge_runtime::media::{self, Region};

/// The largest file FAT32 holds (its size field is 32 bits).
pub const MAX_FAT_FILE: u64 = u32::MAX as u64;
/// The partition starts here (1 MiB, as Windows, parted and sgdisk align).
pub const PARTITION_START: u64 = MIB;
/// FAT32 needs at least 65,525 clusters; with 512-byte clusters that is about 34 MiB.
const MIN_PARTITION: u64 = 34 * MIB;
const SECTOR: u64 = 512;
/// GPT: 128 entries of 128 bytes (32 sectors), plus the header sector.
const GPT_ENTRIES: usize = 128;
const GPT_ENTRY_SIZE: usize = 128;
const GPT_TABLE_SECTORS: u64 = (GPT_ENTRIES * GPT_ENTRY_SIZE) as u64 / SECTOR;
/// The EFI System partition type (UEFI 2.10 Table 5.14).
const GUID_EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// MBR type of a FAT32 partition addressed by LBA.
const MBR_FAT32_LBA: u8 = 0x0c;

/// The partition table of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionTable {
    /// MBR with one active FAT32 (LBA) partition: BIOS and UEFI firmware both boot it.
    #[default]
    Mbr,
    /// GPT with one EFI System partition (FAT32).
    Gpt,
}

impl std::fmt::Display for PartitionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartitionTable::Mbr => "mbr",
            PartitionTable::Gpt => "gpt",
        })
    }
}

/// Options of [`write_usb`].
#[derive(Debug, Clone)]
pub struct UsbOptions {
    pub table: PartitionTable,
    /// The image size in bytes (rounded down to whole MiB); `None`: content plus headroom.
    pub size: Option<u64>,
    /// The FAT label (at most 11 characters).
    pub label: String,
    /// Time of every file and seed of every identifier (`SOURCE_DATE_EPOCH`).
    pub epoch: i64,
    /// Scratch folder for the staging tree (removed again afterwards).
    pub work: PathBuf,
    /// Replace an existing image.
    pub force: bool,
    /// The key the medium's manifest is signed with (`--sign`): needed to re-sign it when the
    /// tree is a signed medium.
    pub signing_key: Option<[u8; 32]>,
}

impl UsbOptions {
    /// MBR, automatic size, label `TSFORGE`.
    pub fn new(work: impl Into<PathBuf>, epoch: i64) -> UsbOptions {
        UsbOptions {
            table: PartitionTable::Mbr,
            size: None,
            label: super::DEFAULT_LABEL.to_string(),
            epoch,
            work: work.into(),
            force: false,
            signing_key: None,
        }
    }
}

/// Refuse files FAT32 cannot hold, naming the first one and what to do.
pub(crate) fn check_file_sizes(files: &[PlannedFile<'_>]) -> Result<()> {
    for f in files {
        if f.size > MAX_FAT_FILE {
            bail!(
                "{} (from {}) is {} ({} bytes); a FAT32 file holds at most 4 GiB - 1 byte \
                 (4294967295 bytes), so it cannot go on a USB image. Split a WIM into .swm \
                 parts with `wimlib-imagex split {} install.swm 3800` and put those on the \
                 medium instead, or serve the file from a distribution point",
                f.path,
                f.source.describe(),
                format_size(f.size),
                f.size,
                f.source.describe()
            );
        }
    }
    Ok(())
}

/// The cluster size `fatfs` gives a FAT32 file system of `size` bytes (fatfs 0.3's table:
/// 512 bytes up to 260 MB, 4 KiB up to 8 GB, then doubling with every doubling of the size).
fn fat32_cluster(size: u64) -> u64 {
    const MB: u64 = 1_000_000;
    const GB: u64 = 1_000_000_000;
    if size <= 260 * MB {
        512
    } else if size <= 8 * GB {
        4096
    } else {
        (size.next_power_of_two() / (2 * GB)) * 1024
    }
}

/// Space the files and their folders take with clusters of `cluster` bytes (a generous
/// estimate: a whole cluster per folder and per 16 entries of it).
fn allocated(files: &[PlannedFile<'_>], cluster: u64) -> u64 {
    let mut dirs = std::collections::BTreeSet::new();
    let mut bytes = 0u64;
    for f in files {
        bytes += f.size.div_ceil(cluster) * cluster;
        let mut p = f.path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            dirs.insert(parent);
            p = parent;
        }
    }
    // Each entry may need a long name: count 4 slots (128 bytes) per file.
    let entries = (files.len() as u64 + dirs.len() as u64) * 128;
    bytes + (dirs.len() as u64 + 1) * cluster + entries.div_ceil(cluster) * cluster
}

/// The partition size for `files` without a given size: allocation plus 10 % plus 64 MiB,
/// rounded up to MiB (with the cluster size of the resulting size).
pub(crate) fn auto_partition_size(files: &[PlannedFile<'_>]) -> u64 {
    let mut size = MIN_PARTITION;
    for _ in 0..8 {
        let a = allocated(files, fat32_cluster(size));
        let want = (a + a / 10 + 64 * MIB).div_ceil(MIB) * MIB;
        if want <= size {
            break;
        }
        size = want;
    }
    size
}

/// What the syslinux step needs, checked before anything is written.
struct SyslinuxPlan {
    program: PathBuf,
    boot_code: [u8; 440],
    directory: String,
}

fn plan_syslinux(
    tree: &MediaTree,
    syslinux: &Path,
    mbr: &Path,
    config_dir: &str,
) -> Result<SyslinuxPlan> {
    let program = find_program(syslinux).ok_or_else(|| {
        anyhow!(
            "{} not found: BIOS boot from the USB image needs syslinux (Debian: apt-get install \
             syslinux syslinux-common)",
            syslinux.display()
        )
    })?;
    let mut code = Vec::new();
    std::fs::File::open(mbr)
        .and_then(|f| f.take(440).read_to_end(&mut code))
        .with_context(|| {
            format!(
                "reading the MBR boot code {} (Debian: syslinux-common)",
                mbr.display()
            )
        })?;
    if code.len() < 440 {
        // mbr.bin and gptmbr.bin are 440 bytes; shorter code is padded with zeros.
        code.resize(440, 0);
    }
    let dir = config_dir.trim_matches('/');
    let prefix = format!("{dir}/");
    if !dir.is_empty()
        && !tree
            .iter()
            .any(|(p, _)| p.len() > prefix.len() && p[..prefix.len()].eq_ignore_ascii_case(&prefix))
    {
        bail!(
            "the syslinux folder {dir:?} (BootSpec usb_bios config_dir) has no files in the \
             medium; the template must put syslinux.cfg there"
        );
    }
    let mut boot_code = [0u8; 440];
    boot_code.copy_from_slice(&code);
    Ok(SyslinuxPlan {
        program,
        boot_code,
        directory: format!("/{dir}"),
    })
}

/// `name` as given when it has a `/`, else looked up in PATH (and the sbin folders).
pub(crate) fn find_program(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Write `tree` as a USB disk image at `out`.
pub fn write_usb(
    tree: &MediaTree,
    boot: &BootSpec,
    out: &Path,
    opts: &UsbOptions,
    progress: Progress<'_>,
) -> Result<OutputSummary> {
    // 1. Checks: nothing is written until all pass.
    let files = plan_files(tree)?;
    check_file_sizes(&files)?;
    fat::label_bytes(&opts.label)?;
    let content = super::content_bytes(&files);
    let gpt = opts.table == PartitionTable::Gpt;
    let mut notes = Vec::new();
    let syslinux = plan_bios_boot(tree, boot, gpt, &mut notes)?;
    if !boot.uefi_removable_path {
        notes.push(
            "no EFI/BOOT/BOOTX64.EFI in the medium: UEFI firmware will not boot this image".into(),
        );
    }
    let layout = plan_layout(&files, opts.size, gpt)?;

    let tmp = TempOutput::new(out, opts.force, false)?;

    // 2. The staging tree: links to the sources, files for in-memory content.
    let stage = Staging::new(&opts.work)?;
    for f in &files {
        stage.add(f)?;
    }

    // 3. The image: file system, then syslinux, then the table and boot code.
    build_file_system(
        tmp.path(),
        out,
        &layout,
        &stage.root,
        opts,
        &mut |done, _| progress(done, content),
    )?;
    drop(stage);
    let mut boot_code = [0u8; 440];
    if let Some(s) = &syslinux {
        run_syslinux(s, tmp.path(), opts.epoch)?;
        copy_boot_sector_to_backup(tmp.path())
            .with_context(|| format!("updating the backup boot sector of {}", out.display()))?;
        boot_code = s.boot_code;
    }
    write_table(
        tmp.path(),
        out,
        &layout,
        &boot_code,
        syslinux.is_some(),
        opts,
    )?;
    // 4. The manifest of the image as written, last: syslinux's files and the boot regions.
    if tree.contains(media::MANIFEST_FILE) {
        let n = seal_manifest(tmp.path(), out, tree, &layout, syslinux.as_ref(), opts)?;
        notes.push(format!(
            "the manifest lists {n} boot regions (boot code, partition table, boot sectors) \
             in {}: `tsforge media verify` checks them on the image or the stick",
            media::REGIONS_FILE
        ));
    }
    progress(content, content);
    let path = tmp.commit()?;
    Ok(OutputSummary {
        kind: OutputKind::Usb,
        path,
        bytes: layout.image_size,
        files: files.len() as u64,
        content_bytes: content,
        placed: placed(opts, &layout, files.len(), syslinux.as_ref()),
        notes,
    })
}

/// The syslinux step when the template boots BIOS machines with syslinux (checked now);
/// otherwise `None` and a note saying why the image does not boot under BIOS.
fn plan_bios_boot(
    tree: &MediaTree,
    boot: &BootSpec,
    gpt: bool,
    notes: &mut Vec<String>,
) -> Result<Option<SyslinuxPlan>> {
    Ok(match &boot.usb_bios {
        Some(UsbBios::Syslinux {
            syslinux,
            mbr,
            gptmbr,
            config_dir,
        }) => Some(plan_syslinux(
            tree,
            syslinux,
            if gpt { gptmbr } else { mbr },
            config_dir,
        )?),
        Some(UsbBios::None { why }) => {
            notes.push(format!("no BIOS boot from this image: {why}"));
            None
        }
        None => {
            notes.push(
                "no BIOS boot from this image: the template has no USB BIOS boot method".into(),
            );
            None
        }
    })
}

/// The image's size and its partition's: from `--size` (refused when the content does not fit)
/// or from the content with headroom; refused beyond what 32-bit sector numbers address.
fn plan_layout(files: &[PlannedFile<'_>], size: Option<u64>, gpt: bool) -> Result<ImageLayout> {
    let tail = if gpt {
        (GPT_TABLE_SECTORS + 1) * SECTOR
    } else {
        0
    };
    let (image_size, part_len) = match size {
        Some(size) => {
            let size = size / MIB * MIB;
            let part_len = (size.saturating_sub(tail) / MIB * MIB).saturating_sub(PARTITION_START);
            let need = allocated(files, fat32_cluster(part_len.max(MIN_PARTITION)));
            if part_len < MIN_PARTITION || part_len < need {
                bail!(
                    "--size {}: too small; the FAT32 partition would be {} and the content \
                     needs about {} (and FAT32 at least {}); give a larger size or leave it out \
                     to size the image automatically",
                    format_size(size),
                    format_size(part_len),
                    format_size(need),
                    format_size(MIN_PARTITION)
                );
            }
            (size, part_len)
        }
        None => {
            let part_len = auto_partition_size(files);
            let image = PARTITION_START + part_len + if gpt { MIB } else { 0 };
            (image, part_len)
        }
    };
    if part_len / SECTOR > u64::from(u32::MAX) {
        bail!(
            "a {} partition is beyond what an MBR or FAT32 with 512-byte sectors addresses (2 TiB)",
            format_size(part_len)
        );
    }
    Ok(ImageLayout {
        gpt,
        image_size,
        part_len,
    })
}

/// Creates the image file at `image` (its whole size) and builds the FAT32 file system of the
/// staged files in its partition, every time set to `epoch`.
fn build_file_system(
    image: &Path,
    out: &Path,
    layout: &ImageLayout,
    stage: &Path,
    opts: &UsbOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let disk = Disk::create_image(image, layout.image_size)?;
    let range = disk.range(PARTITION_START, layout.part_len)?;
    fatbuild::build_with(
        range,
        stage,
        &opts.label,
        Some(FatKind::Fat32),
        Some(opts.epoch),
        progress,
    )
    .with_context(|| format!("building the FAT32 file system of {}", out.display()))?;
    disk.sync()?;
    Ok(())
}

/// Writes the partition table with `boot_code` in the MBR, identifiers from the label and the
/// epoch, and syncs: the last write of the image, so a failure before leaves no table.
fn write_table(
    image: &Path,
    out: &Path,
    layout: &ImageLayout,
    boot_code: &[u8; 440],
    legacy_bootable: bool,
    opts: &UsbOptions,
) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("opening {}", image.display()))?;
    let ids = TableIds::new(&opts.label, opts.epoch);
    let table = if layout.gpt {
        write_gpt(
            &mut f,
            layout.image_size,
            layout.part_len,
            boot_code,
            legacy_bootable,
            &opts.label,
            &ids,
        )
    } else {
        write_mbr(&mut f, layout.part_len, boot_code, &ids)
    };
    table
        .and_then(|()| f.sync_all().map_err(Into::into))
        .with_context(|| format!("writing the partition table of {}", out.display()))
}

/// Completes and signs the manifest inside the finished image ([`seal_image`], with
/// syslinux's `ldlinux.sys` as the loader whose sectors count as a boot region); the number of
/// boot regions.
fn seal_manifest(
    image: &Path,
    out: &Path,
    tree: &MediaTree,
    layout: &ImageLayout,
    syslinux: Option<&SyslinuxPlan>,
    opts: &UsbOptions,
) -> Result<usize> {
    let loader = syslinux.map(|s| format!("{}/ldlinux.sys", s.directory.trim_matches('/')));
    seal_image(
        image,
        tree,
        layout,
        loader.as_deref(),
        opts.signing_key.as_ref(),
        opts.epoch,
    )
    .with_context(|| format!("sealing the manifest of {}", out.display()))
}

/// What went where, for the summary: the table, the partition, and syslinux's boot code.
fn placed(
    opts: &UsbOptions,
    layout: &ImageLayout,
    files: usize,
    syslinux: Option<&SyslinuxPlan>,
) -> Vec<Placed> {
    let gpt = layout.gpt;
    let mut placed = vec![
        Placed {
            what: format!("{} partition table", opts.table),
            offset: Some(0),
            bytes: if gpt {
                (2 + 2 * GPT_TABLE_SECTORS + 1) * SECTOR
            } else {
                SECTOR
            },
        },
        Placed {
            what: format!(
                "partition 1: FAT32 {:?}, {} ({} files)",
                opts.label.to_ascii_uppercase(),
                if gpt {
                    "EFI System (GPT)"
                } else {
                    "type 0x0c, active (MBR)"
                },
                files
            ),
            offset: Some(PARTITION_START),
            bytes: layout.part_len,
        },
    ];
    if let Some(s) = syslinux {
        placed.push(Placed {
            what: format!(
                "BIOS boot: syslinux in {} and {} in the MBR",
                s.directory,
                if gpt { "gptmbr.bin" } else { "mbr.bin" }
            ),
            offset: Some(0),
            bytes: 440,
        });
    }
    placed
}

/// A folder mirroring the tree for `fatbuild` (which reads a host folder): symbolic links to
/// host files (`fatbuild` follows them) where possible, hard links or copies otherwise, and
/// real files for content held in memory. Removed when dropped.
struct Staging {
    root: PathBuf,
}

impl Staging {
    fn new(work: &Path) -> Result<Staging> {
        std::fs::create_dir_all(work)
            .with_context(|| format!("creating the work folder {}", work.display()))?;
        let root = work.join(format!("usb-staging-{}", std::process::id()));
        remove_any(&root).with_context(|| format!("removing the stale {}", root.display()))?;
        std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Staging { root })
    }

    fn add(&self, f: &PlannedFile<'_>) -> Result<()> {
        let dest = self.root.join(f.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match f.source {
            Source::Bytes(b) => {
                std::fs::write(&dest, b).with_context(|| format!("writing {}", dest.display()))
            }
            Source::Path(p) => {
                let abs = std::fs::canonicalize(p)
                    .with_context(|| format!("{}: cannot read {}", f.path, p.display()))?;
                if link(&abs, &dest).is_ok() || std::fs::hard_link(&abs, &dest).is_ok() {
                    return Ok(());
                }
                std::fs::copy(&abs, &dest)
                    .map(drop)
                    .with_context(|| format!("{}: copying {}", f.path, p.display()))
            }
        }
    }
}

#[cfg(unix)]
fn link(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(src, dest)
}

#[cfg(not(unix))]
fn link(_src: &Path, _dest: &Path) -> std::io::Result<()> {
    // Symbolic links need a privilege on Windows: use hard links or copies.
    Err(std::io::ErrorKind::Unsupported.into())
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_any(&self.root);
    }
}

fn run_syslinux(s: &SyslinuxPlan, image: &Path, epoch: i64) -> Result<()> {
    let mut cmd = Command::new(&s.program);
    cmd.arg("--install")
        .arg("--offset")
        .arg(PARTITION_START.to_string())
        .arg("--directory")
        .arg(&s.directory)
        .arg(image)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("MTOOLS_SKIP_CHECK", "1")
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .with_context(|| format!("running {}", s.program.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(1000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            tail.trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(())
}

/// syslinux writes its boot code into the FAT32 boot sector only; copy that sector to the
/// backup boot sector (BPB offset 50, normally sector 6) so the two agree again, as
/// `fsck.fat` and Windows' chkdsk expect.
fn copy_boot_sector_to_backup(image: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)?;
    let mut bs = [0u8; 512];
    f.seek(SeekFrom::Start(PARTITION_START))?;
    f.read_exact(&mut bs)?;
    let reserved = u64::from(u16::from_le_bytes([bs[14], bs[15]]));
    let backup = u64::from(u16::from_le_bytes([bs[50], bs[51]]));
    if bs[510..] != [0x55, 0xaa] || backup == 0 || backup >= reserved {
        bail!("the boot sector left by syslinux is not a FAT32 boot sector with a backup");
    }
    write_at(&mut f, PARTITION_START + backup * SECTOR, &bs)?;
    f.sync_all()?;
    Ok(())
}

/// Where the table and the partition are: planned by [`plan_layout`], read by the stages after.
struct ImageLayout {
    gpt: bool,
    image_size: u64,
    part_len: u64,
}

/// Completes the manifest of the finished image at `image` (whose FAT partition holds `tree`
/// and its manifest as [`crate::media::assemble`] made it): adds the files the FAT holds that
/// the tree does not (syslinux's `ldlinux.sys` and `ldlinux.c32`) and `tsforge/boot-regions`
/// with the image's boot regions, signs it, and writes the three files into the FAT. Then reads
/// the regions again: writing files must not have changed them. Returns the number of regions.
fn seal_image(
    image: &Path,
    tree: &MediaTree,
    layout: &ImageLayout,
    loader: Option<&str>,
    key: Option<&[u8; 32]>,
    epoch: i64,
) -> Result<usize> {
    let disk = Disk::open(image, true)?;
    let fs = fat::open(disk.range(PARTITION_START, layout.part_len)?)?;
    let mut files = Vec::new();
    fat_files(&fs, "", &mut files)?;
    let mut updates = Vec::new();
    for p in files {
        if tree.contains(&p) || p.eq_ignore_ascii_case(media::REGIONS_FILE) {
            continue;
        }
        let bytes = fs.read_file(&p)?;
        updates.push(crate::media::entry_of(&p, &bytes));
    }
    let loader = match loader {
        Some(p) => Some((p, short_names(&fs, p)?)),
        None => None,
    };
    let regions = {
        let mut f = std::fs::File::open(image)?;
        boot_regions(&mut f, layout, loader.as_ref())?
    };
    let text = media::format_regions(&regions);
    updates.push(crate::media::entry_of(media::REGIONS_FILE, &text));
    let sealed = crate::media::reseal(tree, key, &updates)?
        .ok_or_else(|| anyhow!("the tree has no {}", media::MANIFEST_FILE))?;
    let time = Some(fat::fat_time(epoch));
    fs.write_file(media::REGIONS_FILE, &mut &text[..], time)?;
    fs.write_file(media::MANIFEST_FILE, &mut &sealed.manifest[..], time)?;
    if let Some(sig) = &sealed.signature {
        fs.write_file(media::SIGNATURE_FILE, &mut &sig[..], time)?;
    }
    fs.close()?;
    disk.sync()?;
    let mut f = std::fs::File::open(image)?;
    if boot_regions(&mut f, layout, loader.as_ref())? != regions {
        bail!("writing the manifest changed a boot region of the image (internal error)");
    }
    Ok(regions.len())
}

/// Every file of the FAT file system under `dir`, as `/` paths.
fn fat_files(fs: &fat::FatFs, dir: &str, out: &mut Vec<String>) -> Result<()> {
    for e in fs.list(dir)? {
        let p = if dir.is_empty() {
            e.name.clone()
        } else {
            format!("{dir}/{}", e.name)
        };
        if e.is_dir {
            fat_files(fs, &p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The 8.3 directory-entry names (11 bytes, space padded) of each component of `path`.
fn short_names(fs: &fat::FatFs, path: &str) -> Result<Vec<[u8; 11]>> {
    let mut dir = fs.root_dir();
    let mut out = Vec::new();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let entry = dir
            .iter()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().eq_ignore_ascii_case(part))
            .ok_or_else(|| anyhow!("{path} is not in the FAT file system"))?;
        let short = entry.short_file_name_as_bytes();
        let (name, ext) = match short.iter().rposition(|&b| b == b'.') {
            Some(dot) => (&short[..dot], &short[dot + 1..]),
            None => (short, &[][..]),
        };
        let mut raw = [b' '; 11];
        raw[..name.len().min(8)].copy_from_slice(&name[..name.len().min(8)]);
        raw[8..8 + ext.len().min(3)].copy_from_slice(&ext[..ext.len().min(3)]);
        out.push(raw);
        if i + 1 < parts.len() {
            dir = entry.to_dir();
        }
    }
    Ok(out)
}

/// A region of `f` with its sha256.
fn region(f: &mut std::fs::File, offset: u64, len: u64, what: String) -> Result<Region> {
    let sha256 = media::hash_range(f, offset, len)
        .with_context(|| format!("reading {what} (bytes {offset}+{len})"))?;
    Ok(Region {
        sha256,
        offset,
        len,
        what,
    })
}

/// The byte ranges of the image that boot firmware and boot code read outside the files:
///
/// * the MBR's boot code (bytes 0–439) and partition table (446–511; the disk signature in
///   between is left out: Windows rewrites it when two disks share one);
/// * with GPT, the primary header and entries (LBA 1–33) and the backup ones (the last 33
///   sectors);
/// * the FAT32 partition's reserved sectors (boot sector with its boot code, backup boot
///   sector, and whatever else is there) without the FSInfo sector (free-cluster counts that
///   every write changes) and without byte 65 of the boot sectors (the "dirty" flags Linux and
///   Windows set while the volume is mounted);
/// * with syslinux, the sectors of `ldlinux.sys` (`loader`: its path and 8.3 names), which the
///   boot sector loads by address, not by name.
fn boot_regions(
    f: &mut std::fs::File,
    layout: &ImageLayout,
    loader: Option<&(&str, Vec<[u8; 11]>)>,
) -> Result<Vec<Region>> {
    let mut out = table_regions(f, layout)?;
    let bpb = Fat32Bpb::read(f)?;
    out.extend(reserved_regions(f, &bpb)?);
    if let Some((path, names)) = loader {
        out.extend(loader_regions(f, layout, &bpb, path, names)?);
    }
    Ok(out)
}

/// The MBR's boot code and partition table and, with GPT, both copies of the GPT.
fn table_regions(f: &mut std::fs::File, layout: &ImageLayout) -> Result<Vec<Region>> {
    let mbr = if layout.gpt { "protective MBR" } else { "MBR" };
    let mut out = vec![
        region(f, 0, 440, format!("{mbr} boot code"))?,
        region(f, 446, 66, format!("{mbr} partition table"))?,
    ];
    if layout.gpt {
        let table = (1 + GPT_TABLE_SECTORS) * SECTOR;
        out.push(region(
            f,
            SECTOR,
            table,
            "primary GPT header and partition entries".into(),
        )?);
        out.push(region(
            f,
            layout.image_size - table,
            table,
            "backup GPT partition entries and header".into(),
        )?);
    }
    Ok(out)
}

/// The fields of partition 1's FAT32 boot sector that the boot regions depend on (counts of
/// sectors, sector numbers in the partition, a cluster number).
struct Fat32Bpb {
    /// Sectors per cluster.
    spc: u64,
    reserved: u64,
    fats: u64,
    fat_sectors: u64,
    root_cluster: u64,
    fsinfo: u64,
    backup: u64,
}

impl Fat32Bpb {
    /// Reads partition 1's boot sector; refused unless it is FAT32 with 512-byte sectors.
    fn read(f: &mut std::fs::File) -> Result<Fat32Bpb> {
        let mut bs = [0u8; 512];
        f.seek(SeekFrom::Start(PARTITION_START))?;
        f.read_exact(&mut bs)?;
        let le16 = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
        let le32 =
            |o: usize| u64::from(u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]));
        let (bps, spc, reserved, fats) = (le16(11), u64::from(bs[13]), le16(14), u64::from(bs[16]));
        let (fat_sectors, root_cluster, fsinfo, backup) = (le32(36), le32(44), le16(48), le16(50));
        if bps != SECTOR || spc == 0 || le16(22) != 0 || reserved < 2 || fats == 0 {
            bail!("partition 1 does not start with a FAT32 boot sector of 512-byte sectors");
        }
        Ok(Fat32Bpb {
            spc,
            reserved,
            fats,
            fat_sectors,
            root_cluster,
            fsinfo,
            backup,
        })
    }
}

/// The partition's reserved sectors, cut around what the file system's drivers change: the
/// FSInfo sector and the dirty flags (byte 65) of the boot sector and its backup.
fn reserved_regions(f: &mut std::fs::File, bpb: &Fat32Bpb) -> Result<Vec<Region>> {
    let (reserved, fsinfo, backup) = (bpb.reserved, bpb.fsinfo, bpb.backup);
    let mut out = Vec::new();
    let mut holes = vec![(65, 66), (fsinfo * SECTOR, fsinfo * SECTOR + SECTOR)];
    if backup != 0 {
        holes.push((backup * SECTOR + 65, backup * SECTOR + 66));
    }
    holes.sort();
    let mut at = 0;
    for (start, end) in holes
        .into_iter()
        .chain([(reserved * SECTOR, reserved * SECTOR)])
    {
        let (start, end) = (start.min(reserved * SECTOR), end.min(reserved * SECTOR));
        if start > at {
            out.push(region(
                f,
                PARTITION_START + at,
                start - at,
                "partition 1 boot sector and reserved sectors (without FSInfo and the dirty \
                 flags)"
                    .into(),
            )?);
        }
        at = at.max(end);
    }
    Ok(out)
}

/// The sectors of the loader at `path` (`names`: its 8.3 names from the root), whole sectors
/// up to its end, one region per run of consecutive clusters.
fn loader_regions(
    f: &mut std::fs::File,
    layout: &ImageLayout,
    bpb: &Fat32Bpb,
    path: &str,
    names: &[[u8; 11]],
) -> Result<Vec<Region>> {
    let clusters = Clusters::new(layout, bpb);
    let (first, size) = clusters.find(f, bpb.root_cluster, path, names)?;
    // Whole sectors up to the file's end, in runs of consecutive clusters.
    let mut out = Vec::new();
    let mut left = size.div_ceil(SECTOR) * SECTOR;
    let chain = clusters.chain(f, first)?;
    let mut i = 0;
    while i < chain.len() && left > 0 {
        let mut j = i + 1;
        while j < chain.len() && chain[j] == chain[j - 1] + 1 {
            j += 1;
        }
        let len = ((j - i) as u64 * clusters.cluster).min(left);
        out.push(region(
            f,
            clusters.offset(chain[i]),
            len,
            format!("{path}, as the boot sector loads it (by sector address)"),
        )?);
        left -= len;
        i = j;
    }
    if left > 0 {
        bail!("{path}'s clusters end before its size in partition 1");
    }
    Ok(out)
}

/// Partition 1's clusters as its first FAT chains them: just enough FAT32 to find where a
/// file's bytes are.
struct Clusters {
    /// Bytes per cluster.
    cluster: u64,
    /// Where cluster 2 starts, from the start of the partition.
    data: u64,
    /// Where the first FAT starts in the image.
    fat_at: u64,
    /// One past the highest cluster number the partition has room for.
    max: u64,
}

impl Clusters {
    fn new(layout: &ImageLayout, bpb: &Fat32Bpb) -> Clusters {
        let cluster = bpb.spc * SECTOR;
        let data = (bpb.reserved + bpb.fats * bpb.fat_sectors) * SECTOR;
        Clusters {
            cluster,
            data,
            fat_at: PARTITION_START + bpb.reserved * SECTOR,
            max: (layout.part_len - data) / cluster + 2,
        }
    }

    /// Where cluster `c` starts in the image.
    fn offset(&self, c: u64) -> u64 {
        PARTITION_START + self.data + (c - 2) * self.cluster
    }

    /// The FAT entry of cluster `c`: the next cluster of its chain, or an end mark.
    fn next(&self, f: &mut std::fs::File, c: u64) -> Result<u64> {
        let mut e = [0u8; 4];
        f.seek(SeekFrom::Start(self.fat_at + c * 4))?;
        f.read_exact(&mut e)?;
        Ok(u64::from(u32::from_le_bytes(e) & 0x0fff_ffff))
    }

    /// The clusters of the chain that starts at `first`; refused when it loops.
    fn chain(&self, f: &mut std::fs::File, first: u64) -> Result<Vec<u64>> {
        let mut v = Vec::new();
        let mut c = first;
        while (2..self.max).contains(&c) {
            if v.len() as u64 >= self.max {
                bail!("a cluster chain loops in partition 1");
            }
            v.push(c);
            c = self.next(f, c)?;
        }
        Ok(v)
    }

    /// The first cluster and the size of the file at `path`, found by walking the directories
    /// from `root` (a cluster) by its 8.3 `names`.
    fn find(
        &self,
        f: &mut std::fs::File,
        root: u64,
        path: &str,
        names: &[[u8; 11]],
    ) -> Result<(u64, u64)> {
        let (mut first, mut size) = (root, 0u64);
        for name in names {
            let mut found = None;
            'dir: for c in self.chain(f, first)? {
                let mut buf = vec![0u8; self.cluster as usize];
                f.seek(SeekFrom::Start(self.offset(c)))?;
                f.read_exact(&mut buf)?;
                for e in buf.chunks_exact(32) {
                    if e[0] == 0 {
                        break 'dir;
                    }
                    if e[0] == 0xe5 || e[11] == 0x0f || e[..11] != name[..] {
                        continue;
                    }
                    let hi = u64::from(u16::from_le_bytes([e[20], e[21]]));
                    let lo = u64::from(u16::from_le_bytes([e[26], e[27]]));
                    let len = u64::from(u32::from_le_bytes([e[28], e[29], e[30], e[31]]));
                    found = Some(((hi << 16) | lo, len));
                    break 'dir;
                }
            }
            (first, size) = found.ok_or_else(|| anyhow!("{path} is not in partition 1"))?;
        }
        Ok((first, size))
    }
}

/// The identifiers of the table, derived from the label and the epoch.
struct TableIds {
    mbr_signature: u32,
    disk_guid: [u8; 16],
    part_guid: [u8; 16],
}

impl TableIds {
    fn new(label: &str, epoch: i64) -> TableIds {
        let sig = stable_id(&["mbr disk signature", label], epoch) as u32;
        TableIds {
            mbr_signature: if sig == 0 { 1 } else { sig },
            disk_guid: v4_guid(&["gpt disk", label], epoch),
            part_guid: v4_guid(&["gpt partition 1", label], epoch),
        }
    }
}

/// A version-4-shaped GUID in GPT byte order from `stable_id`.
fn v4_guid(parts: &[&str], epoch: i64) -> [u8; 16] {
    let a = stable_id(parts, epoch).to_be_bytes();
    let b = stable_id(&[parts, &["second half"]].concat(), epoch).to_be_bytes();
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&a);
    u[8..].copy_from_slice(&b);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    to_gpt_order(u)
}

/// A GUID in its text order to GPT's on-disk order (first three fields little-endian).
fn to_gpt_order(mut u: [u8; 16]) -> [u8; 16] {
    u[..4].reverse();
    u[4..6].reverse();
    u[6..8].reverse();
    u
}

fn parse_guid(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'-')
        .map(|b| {
            (b as char)
                .to_digit(16)
                .expect("a GUID constant of this module") as u8
        })
        .collect();
    let mut u = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        u[i] = (pair[0] << 4) | pair[1];
    }
    to_gpt_order(u)
}

/// CHS of an LBA with the usual 255 heads × 63 sectors; past cylinder 1023 the "use LBA" value.
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / (255 * 63);
    if c > 1023 {
        return [254, 0xff, 0xff];
    }
    let h = (lba / 63) % 255;
    let s = lba % 63 + 1;
    [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
}

/// A 16-byte MBR partition entry.
fn mbr_entry(active: bool, kind: u8, start: u64, sectors: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = if active { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&chs(start));
    e[4] = kind;
    e[5..8].copy_from_slice(&chs(start + sectors - 1));
    e[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    e
}

fn write_at(f: &mut std::fs::File, at: u64, data: &[u8]) -> Result<()> {
    f.seek(SeekFrom::Start(at))?;
    f.write_all(data)?;
    Ok(())
}

/// The MBR: boot code, disk signature, one active FAT32 (LBA) partition.
fn write_mbr(
    f: &mut std::fs::File,
    part_len: u64,
    boot_code: &[u8; 440],
    ids: &TableIds,
) -> Result<()> {
    let mut s = [0u8; 512];
    s[..440].copy_from_slice(boot_code);
    s[440..444].copy_from_slice(&ids.mbr_signature.to_le_bytes());
    s[446..462].copy_from_slice(&mbr_entry(
        true,
        MBR_FAT32_LBA,
        PARTITION_START / SECTOR,
        part_len / SECTOR,
    ));
    s[510] = 0x55;
    s[511] = 0xaa;
    write_at(f, 0, &s)
}

/// A GPT (UEFI 2.10 §5.3): protective MBR with `boot_code`, primary header and entries,
/// backup entries and header at the end; one EFI System partition named `label`.
fn write_gpt(
    f: &mut std::fs::File,
    image_size: u64,
    part_len: u64,
    boot_code: &[u8; 440],
    legacy_bootable: bool,
    label: &str,
    ids: &TableIds,
) -> Result<()> {
    let total = image_size / SECTOR;
    let last = total - 1;
    // Protective MBR (§5.2.3): one entry of type 0xEE from LBA 1 over the disk, not active.
    let mut pmbr = [0u8; 512];
    pmbr[..440].copy_from_slice(boot_code);
    pmbr[446..462].copy_from_slice(&mbr_entry(false, 0xee, 1, total - 1));
    pmbr[510] = 0x55;
    pmbr[511] = 0xaa;

    let mut entries = vec![0u8; GPT_ENTRIES * GPT_ENTRY_SIZE];
    {
        let e = &mut entries[..GPT_ENTRY_SIZE];
        e[..16].copy_from_slice(&parse_guid(GUID_EFI_SYSTEM));
        e[16..32].copy_from_slice(&ids.part_guid);
        let first = PARTITION_START / SECTOR;
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&(first + part_len / SECTOR - 1).to_le_bytes());
        let attrs: u64 = if legacy_bootable { 1 << 2 } else { 0 };
        e[48..56].copy_from_slice(&attrs.to_le_bytes());
        for (i, c) in label.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let first_usable = 2 + GPT_TABLE_SECTORS;
    let last_usable = last - GPT_TABLE_SECTORS - 1;
    if PARTITION_START / SECTOR + part_len / SECTOR - 1 > last_usable {
        bail!("the partition runs into the backup GPT (internal size error)");
    }
    let header = |my: u64, alternate: u64, entries_lba: u64| {
        let mut h = [0u8; 512];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&ids.disk_guid);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(GPT_ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let backup_entries = last - GPT_TABLE_SECTORS;
    // Backup first, primary last: a table is only complete once LBA 0 and 1 are written.
    write_at(f, backup_entries * SECTOR, &entries)?;
    write_at(f, last * SECTOR, &header(last, 1, backup_entries))?;
    write_at(f, 2 * SECTOR, &entries)?;
    write_at(f, SECTOR, &header(1, last, 2))?;
    write_at(f, 0, &pmbr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsforge_runtime::disk::GIB;

    #[test]
    fn guid_bytes_are_in_gpt_order() {
        let g = parse_guid(GUID_EFI_SYSTEM);
        assert_eq!(
            g,
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        let v = v4_guid(&["x"], 1);
        assert_eq!(v[7] >> 4, 4, "version nibble");
        assert_eq!(v[8] >> 6, 2, "variant bits");
    }

    #[test]
    fn chs_of_small_and_large_lbas() {
        assert_eq!(chs(2048), [32, 33, 0]);
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(u64::from(u32::MAX)), [254, 0xff, 0xff]);
    }

    #[test]
    fn cluster_sizes_follow_fatfs() {
        assert_eq!(fat32_cluster(100 * MIB), 512);
        assert_eq!(fat32_cluster(GIB), 4096);
        assert_eq!(fat32_cluster(10 * GIB), 8192);
    }

    #[test]
    fn auto_size_covers_content_and_headroom() {
        let src = Source::bytes(vec![0u8; 10]);
        let files: Vec<PlannedFile<'_>> = (0..3)
            .map(|_| PlannedFile {
                path: "a/b.bin",
                source: &src,
                size: 300 * MIB,
            })
            .collect();
        let size = auto_partition_size(&files);
        assert_eq!(size % MIB, 0);
        assert!(size >= 900 * MIB + 90 * MIB + 64 * MIB, "{size}");
        assert!(size < 1100 * MIB, "{size}");
        assert!(auto_partition_size(&[]) >= 64 * MIB);
    }
}
