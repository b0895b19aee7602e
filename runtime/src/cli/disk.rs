//! `tsforge disk list|show|partition|build-fat` (and the hidden `copy-in`, for tests).
//!
//! `partition` is a dry run unless `--yes` is given, like systemd-repart: it resolves the disk,
//! checks it (not the boot medium, not mounted), plans the layout, prints it, and only then,
//! with `--yes`, writes. The syntax of `--part` is in docs/disks.md and in `--help`.

use super::Exit;
use crate::disk::fat::{self, FatKind};
use crate::disk::fatbuild;
use crate::disk::layout::{self, PartKind, PartitionSpec, SizeSpec, TableKind};
use crate::disk::preflight;
use crate::disk::select::{self, DiskInfo, Selector};
use crate::disk::{format_size, parse_size, reread, Disk};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DiskCmd {
    /// List the machine's disks (index, path, size, model, serial, flags, mount points)
    ///
    /// Fixed disks come first (nvme, sata, scsi, virtio, mmc, usb, then by name), removable
    /// ones after, the disk tsforge runs from last. The index is what `disk show N` means.
    List(DiskListConfig),
    /// Show a disk or image file: size, sector size, partition table and partitions
    Show(DiskShowConfig),
    /// Plan a partition table for a disk and, with --yes, write it and format FAT partitions
    ///
    /// Without --yes this is a dry run: the plan is printed and nothing is written.
    /// Everything on DISK is lost when the table is written.
    Partition(DiskPartitionConfig),
    /// Copy a directory tree into the FAT file system of a partition (for tests and benchmarks)
    #[command(hide = true)]
    CopyIn(DiskCopyInConfig),
    /// Replace a partition's content with a new FAT file system holding a directory tree
    ///
    /// Formats and fills in one pass (much faster than formatting and copying file by file).
    /// Without --yes this is a dry run: what would be done is printed and nothing is written.
    BuildFat(DiskBuildFatConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableArg {
    Gpt,
    Mbr,
}

#[derive(Debug, Args)]
pub struct DiskListConfig {
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DiskShowConfig {
    /// The disk: an index from `disk list`, a device path or an image file
    #[arg(value_name = "DISK")]
    pub disk: String,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DiskPartitionConfig {
    /// The disk to repartition (overwritten!): an index from `disk list`, a device path, an
    /// image file, or a rule such as first-fixed:32GiB
    #[arg(value_name = "DISK")]
    pub disk: String,
    /// Partition table type
    #[arg(long, value_enum)]
    pub table: TableArg,
    /// A partition, in order; repeatable. KEY=VALUE pairs separated by commas:
    /// size=260MiB|50%|rest (required), type=efi|msr|basic|recovery|linux|swap|GUID|0xNN
    /// (default basic), name=TEXT (GPT), fs=fat|fat16|fat32, label=TEXT, active
    #[arg(long = "part", value_name = "SPEC", required = true)]
    pub parts: Vec<String>,
    /// Write the table and format (without it, only print the plan)
    #[arg(long)]
    pub yes: bool,
    /// Only print the plan, even with --yes
    #[arg(long)]
    pub dry_run: bool,
    /// Write even though the disk or one of its partitions is mounted or in use
    #[arg(long, help_heading = "Advanced")]
    pub allow_mounted: bool,
    /// Write even though the disk holds the medium tsforge runs from
    #[arg(long, help_heading = "Advanced")]
    pub allow_boot_medium: bool,
}

#[derive(Debug, Args)]
pub struct DiskCopyInConfig {
    /// The disk or image file
    #[arg(value_name = "DISK")]
    pub disk: String,
    /// Partition number (1-based)
    #[arg(long)]
    pub partition: u32,
    /// Host directory to copy (its content goes into DEST)
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Directory in the file system
    #[arg(long, default_value = "/")]
    pub dest: String,
}

#[derive(Debug, Args)]
pub struct DiskBuildFatConfig {
    /// The disk or image file
    #[arg(value_name = "DISK")]
    pub disk: String,
    /// Partition number (1-based); everything in it is replaced
    #[arg(long)]
    pub partition: u32,
    /// Host directory whose content becomes the file system's root
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Volume label (up to 11 characters)
    #[arg(long, default_value = "NO NAME")]
    pub label: String,
    /// FAT16 (default: FAT16 below 512 MiB, FAT32 from there)
    #[arg(long, conflicts_with = "fat32")]
    pub fat16: bool,
    /// FAT32
    #[arg(long)]
    pub fat32: bool,
    /// Write (without it, only print what would be done)
    #[arg(long)]
    pub yes: bool,
    /// Write even though the disk or one of its partitions is mounted or in use
    #[arg(long, help_heading = "Advanced")]
    pub allow_mounted: bool,
    /// Write even though the disk holds the medium tsforge runs from
    #[arg(long, help_heading = "Advanced")]
    pub allow_boot_medium: bool,
}

/// One `--part` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartArg {
    pub spec: PartitionSpec,
    pub fs: Option<FsArg>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsArg {
    Fat(Option<FatKind>),
    /// Anything else: needs an external formatter (not in this command yet).
    Other(String),
}

/// The label of a FAT partition given without `label=`.
const DEFAULT_LABEL: &str = "NO NAME";

const PART_HELP: &str = "expected KEY=VALUE pairs separated by commas, e.g. \
name=EFI,type=efi,size=260MiB,fs=fat32,label=SYSTEM (keys: name, type, size, fs, label, active)";

/// Parse `name=EFI,type=efi,size=260MiB,fs=fat32,label=SYSTEM`.
pub fn parse_part(s: &str) -> Result<PartArg> {
    let mut name = None;
    let mut kind = PartKind::BasicData;
    let mut size = None;
    let mut fs = None;
    let mut label = None;
    let mut active = false;
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        match k.to_ascii_lowercase().as_str() {
            "name" => name = Some(v.to_string()),
            "type" => kind = parse_kind(v).with_context(|| format!("--part {s:?}"))?,
            "size" => {
                size = Some(if v.eq_ignore_ascii_case("rest") {
                    SizeSpec::Rest
                } else if let Some(p) = v.strip_suffix('%') {
                    SizeSpec::Percent(
                        p.trim()
                            .parse()
                            .with_context(|| format!("--part {s:?}: bad percentage {v:?}"))?,
                    )
                } else {
                    SizeSpec::Bytes(parse_size(v).with_context(|| format!("--part {s:?}"))?)
                })
            }
            "fs" => {
                fs = match v.to_ascii_lowercase().as_str() {
                    "fat" | "vfat" => Some(FsArg::Fat(None)),
                    "fat16" => Some(FsArg::Fat(Some(FatKind::Fat16))),
                    "fat32" => Some(FsArg::Fat(Some(FatKind::Fat32))),
                    "" | "none" => None,
                    other => {
                        crate::fsformat::FsKind::parse(other)
                            .with_context(|| format!("--part {s:?}"))?;
                        Some(FsArg::Other(other.to_string()))
                    }
                }
            }
            "label" => {
                fat::label_bytes(v).with_context(|| format!("--part {s:?}"))?;
                label = Some(v.to_string())
            }
            "active" | "boot" => {
                active = match v.to_ascii_lowercase().as_str() {
                    "" | "yes" | "true" | "1" => true,
                    "no" | "false" | "0" => false,
                    _ => bail!("--part {s:?}: active takes yes or no"),
                }
            }
            _ => bail!("--part {s:?}: unknown key {k:?}; {PART_HELP}"),
        }
    }
    let Some(size) = size else {
        bail!("--part {s:?}: size is missing (size=260MiB, size=50% or size=rest)");
    };
    let name = name.unwrap_or_else(|| default_name(&kind).to_string());
    Ok(PartArg {
        spec: PartitionSpec {
            name,
            kind,
            size,
            active,
        },
        fs,
        label,
    })
}

fn default_name(kind: &PartKind) -> &'static str {
    match kind {
        PartKind::EfiSystem => "EFI system partition",
        PartKind::MicrosoftReserved => "Microsoft reserved partition",
        PartKind::BasicData => "Basic data partition",
        PartKind::WindowsRecovery => "Windows recovery",
        PartKind::LinuxFilesystem => "Linux filesystem",
        PartKind::LinuxSwap => "Linux swap",
        _ => "",
    }
}

fn parse_kind(v: &str) -> Result<PartKind> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "efi" | "esp" => PartKind::EfiSystem,
        "msr" => PartKind::MicrosoftReserved,
        "basic" | "data" => PartKind::BasicData,
        "recovery" | "wre" => PartKind::WindowsRecovery,
        "linux" => PartKind::LinuxFilesystem,
        "swap" => PartKind::LinuxSwap,
        t if t.len() == 36 && uuid::Uuid::parse_str(t).is_ok() => PartKind::GptType(t.to_string()),
        t => match t.strip_prefix("0x").map(|h| u8::from_str_radix(h, 16)) {
            Some(Ok(b)) => PartKind::MbrType(b),
            _ => bail!(
                "unknown partition type {v:?}: use efi, msr, basic, recovery, linux, swap, a GPT \
                 type GUID or an MBR type byte such as 0x0c"
            ),
        },
    })
}

/// Run one `tsforge disk` command; returns the exit code.
pub fn dispatch(cmd: DiskCmd) -> Result<Exit> {
    match cmd {
        DiskCmd::List(c) => list(c),
        DiskCmd::Show(c) => show(c),
        DiskCmd::Partition(c) => partition(c),
        DiskCmd::CopyIn(c) => copy_in(c),
        DiskCmd::BuildFat(c) => build_fat(c),
    }
}

pub fn list(c: DiskListConfig) -> Result<Exit> {
    let disks = select::enumerate()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match c.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &disks)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            writeln!(
                out,
                "{:<3} {:<16} {:>10} {:<7} {:<24} {:<20} FLAGS",
                "#", "PATH", "SIZE", "BUS", "MODEL", "SERIAL"
            )?;
            for d in &disks {
                let mut flags = Vec::new();
                if d.removable {
                    flags.push("removable".to_string());
                }
                if d.boot_medium {
                    flags.push("boot-medium".to_string());
                }
                if !d.mounted.is_empty() {
                    flags.push(format!("in use: {}", d.mounted.join(" ")));
                }
                writeln!(
                    out,
                    "{:<3} {:<16} {:>10} {:<7} {:<24} {:<20} {}",
                    d.index,
                    d.path.display(),
                    format_size(d.size),
                    d.transport,
                    d.model,
                    d.serial,
                    flags.join(", ")
                )?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// DISK → (path, listed disk if it is one).
fn resolve(disk: &str) -> Result<(PathBuf, Option<DiskInfo>)> {
    let sel: Selector = disk.parse()?;
    match &sel {
        Selector::Path(p) => Ok((p.clone(), select::info_for_path(p)?)),
        _ => {
            let disks = select::enumerate()?;
            let info = sel.resolve(&disks)?.context("disk not found")?;
            Ok((info.path.clone(), Some(info)))
        }
    }
}

#[derive(serde::Serialize)]
struct ShowJson<'a> {
    path: &'a std::path::Path,
    size: u64,
    sector_size: u64,
    table: Option<layout::TableInfo>,
}

pub fn show(c: DiskShowConfig) -> Result<Exit> {
    let (path, info) = resolve(&c.disk)?;
    let disk = Disk::open(&path, false)?;
    let table = layout::read_table(&disk)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match c.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &ShowJson {
                    path: &path,
                    size: disk.size(),
                    sector_size: disk.sector_size(),
                    table,
                },
            )?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            let what = info
                .map(|i| i.describe())
                .unwrap_or_else(|| format!("{} ({})", path.display(), format_size(disk.size())));
            writeln!(out, "disk: {what}, {}-byte sectors", disk.sector_size())?;
            match table {
                None => writeln!(out, "table: none")?,
                Some(t) => {
                    writeln!(
                        out,
                        "table: {} ({})",
                        t.kind,
                        t.disk_guid.as_deref().unwrap_or("-")
                    )?;
                    if let Some(d) = &t.damaged {
                        writeln!(out, "damaged: {d} (repartition, or repair with gdisk)")?;
                    }
                    writeln!(
                        out,
                        "{:>3} {:>14} {:>10} {:<28} {:<6} NAME",
                        "#", "START", "SIZE", "TYPE", "FLAGS"
                    )?;
                    for p in &t.partitions {
                        writeln!(
                            out,
                            "{:>3} {:>14} {:>10} {:<28} {:<6} {}",
                            p.number,
                            p.start,
                            format_size(p.len),
                            p.kind,
                            if p.active { "active" } else { "" },
                            p.name
                        )?;
                    }
                }
            }
        }
    }
    Ok(Exit::Ok)
}

pub fn partition(c: DiskPartitionConfig) -> Result<Exit> {
    let table = match c.table {
        TableArg::Gpt => TableKind::Gpt,
        TableArg::Mbr => TableKind::Mbr,
    };
    let args: Vec<PartArg> = c
        .parts
        .iter()
        .map(|s| parse_part(s))
        .collect::<Result<_>>()?;
    let (path, _) = resolve(&c.disk)?;
    let block = select::check_target(&path, c.allow_mounted, c.allow_boot_medium)?;
    let disk = Disk::open(&path, false)?;
    let specs: Vec<PartitionSpec> = args.iter().map(|a| a.spec.clone()).collect();
    let mut planned = layout::plan(disk.size(), disk.sector_size(), table, &specs)
        .with_context(|| format!("planning the partitions of {}", path.display()))?;
    // Every file system is checked against the formatter's limits now, before anything is
    // written (the dry run fails the same way --yes would). FAT data partitions on MBR get
    // the FAT type byte rather than NTFS's 0x07.
    let mut fs_kinds = Vec::new();
    for (p, a) in planned.iter_mut().zip(&args) {
        let fk = match &a.fs {
            Some(FsArg::Fat(k)) => {
                let label = a.label.as_deref().unwrap_or(DEFAULT_LABEL);
                Some(preflight::fat(p, label, *k).with_context(|| {
                    format!("checking the partitions planned for {}", path.display())
                })?)
            }
            _ => None,
        };
        if table == TableKind::Mbr && p.spec.kind == PartKind::BasicData {
            match fk {
                Some(FatKind::Fat32) => p.spec.kind = PartKind::MbrType(0x0c),
                Some(FatKind::Fat16) => p.spec.kind = PartKind::MbrType(0x0e),
                None => {}
            }
        }
        fs_kinds.push(fk);
    }
    reread::check_available(&disk)?;
    // A damaged table is no reason to stop: repartitioning is what repairs it.
    let old = layout::read_table(&disk);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let target = block.as_ref().map(|b| b.describe()).unwrap_or_else(|| {
        format!(
            "{} (image file, {})",
            path.display(),
            format_size(disk.size())
        )
    });
    writeln!(out, "target: {target}, {}-byte sectors", disk.sector_size())?;
    match &old {
        Ok(Some(t)) => writeln!(
            out,
            "replaces: {} table with {} partition(s) (everything on the disk is lost)",
            t.kind,
            t.partitions.len()
        )?,
        Ok(None) => writeln!(out, "replaces: no partition table found")?,
        Err(e) => writeln!(
            out,
            "replaces: a damaged partition table ({e:#}; everything on the disk is lost)"
        )?,
    }
    writeln!(out, "new table: {table}")?;
    writeln!(
        out,
        "{:>3} {:>14} {:>10} {:<28} {:<18} NAME",
        "#", "START", "SIZE", "TYPE", "FS"
    )?;
    for ((p, a), fk) in planned.iter().zip(&args).zip(&fs_kinds) {
        let fs = match (&a.fs, fk) {
            (Some(FsArg::Fat(_)), Some(k)) => match &a.label {
                Some(l) => format!("{k} {}", l.to_ascii_uppercase()),
                None => k.to_string(),
            },
            (Some(FsArg::Other(o)), _) => format!("{o} (not formatted)"),
            _ => "-".into(),
        };
        writeln!(
            out,
            "{:>3} {:>14} {:>10} {:<28} {:<18} {}{}",
            p.number,
            p.start,
            format_size(p.len),
            p.spec.kind.describe(table),
            fs,
            p.spec.name,
            if p.spec.active { " (active)" } else { "" }
        )?;
    }
    out.flush()?;
    if !c.yes || c.dry_run {
        eprintln!(
            "dry run: nothing was written. Pass --yes to write this table to {} (everything on it \
             is lost)",
            path.display()
        );
        return Ok(Exit::Ok);
    }
    drop(disk);
    let mut disk = Disk::open(&path, true)?;
    layout::write_table(&mut disk, table, &planned)?;
    eprintln!("wrote the {table} partition table to {}", path.display());
    reread::reread(&disk, planned.len() as u32)?;
    let mut unformatted = Vec::new();
    for ((p, a), fk) in planned.iter().zip(&args).zip(&fs_kinds) {
        match (&a.fs, fk) {
            (Some(FsArg::Fat(_)), Some(k)) => {
                let label = a.label.as_deref().unwrap_or(DEFAULT_LABEL);
                fat::format(disk.range(p.start, p.len)?, label, Some(*k))
                    .with_context(|| format!("formatting partition {}", p.number))?;
                eprintln!("formatted partition {} as {k}", p.number);
            }
            (Some(FsArg::Other(o)), _) => unformatted.push(format!("{} ({o})", p.number)),
            _ => {}
        }
    }
    disk.sync()?;
    if !unformatted.is_empty() {
        eprintln!(
            "partition(s) {} need the external formatter (not in this command yet)",
            unformatted.join(", ")
        );
    }
    Ok(Exit::Ok)
}

pub fn copy_in(c: DiskCopyInConfig) -> Result<Exit> {
    let (path, _) = resolve(&c.disk)?;
    select::check_target(&path, false, false)?;
    let disk = Disk::open(&path, true)?;
    let table = layout::read_table(&disk)?
        .with_context(|| format!("{} has no partition table", path.display()))?;
    let Some(p) = table.partitions.iter().find(|p| p.number == c.partition) else {
        bail!("{} has no partition {}", path.display(), c.partition);
    };
    let fs = fat::open(disk.range(p.start, p.len)?)?;
    let (files, bytes) = fs.copy_tree(&c.source, &c.dest)?;
    fs.close()?;
    eprintln!(
        "copied {files} file(s), {} into partition {}",
        format_size(bytes),
        c.partition
    );
    Ok(Exit::Ok)
}

pub fn build_fat(c: DiskBuildFatConfig) -> Result<Exit> {
    let (path, _) = resolve(&c.disk)?;
    select::check_target(&path, c.allow_mounted, c.allow_boot_medium)?;
    fat::label_bytes(&c.label)?;
    if !c.source.is_dir() {
        bail!("{} is not a directory", c.source.display());
    }
    let disk = Disk::open(&path, c.yes)?;
    let table = layout::read_table(&disk)?
        .with_context(|| format!("{} has no partition table", path.display()))?;
    let Some(p) = table.partitions.iter().find(|p| p.number == c.partition) else {
        bail!("{} has no partition {}", path.display(), c.partition);
    };
    let kind = match (c.fat16, c.fat32) {
        (true, _) => Some(FatKind::Fat16),
        (_, true) => Some(FatKind::Fat32),
        _ => None,
    };
    let shown = kind.unwrap_or_else(|| fat::default_kind(p.len));
    if !c.yes {
        println!(
            "would replace everything in partition {} of {} ({} at {}) with a new {shown} file \
             system labelled {:?} holding {}",
            c.partition,
            path.display(),
            format_size(p.len),
            p.start,
            c.label.to_ascii_uppercase(),
            c.source.display()
        );
        eprintln!("dry run: nothing was written. Pass --yes to write it");
        return Ok(Exit::Ok);
    }
    let stats = fatbuild::build(disk.range(p.start, p.len)?, &c.source, &c.label, kind)
        .with_context(|| format!("building a FAT file system in partition {}", c.partition))?;
    disk.sync()?;
    eprintln!(
        "built {shown} in partition {}: {} files, {} directories, {}",
        c.partition,
        stats.files,
        stats.dirs,
        format_size(stats.bytes)
    );
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MIB;

    #[test]
    fn part_specs_parse() {
        let p = parse_part("name=EFI,type=efi,size=260MiB,fs=fat32,label=SYSTEM").unwrap();
        assert_eq!(p.spec.kind, PartKind::EfiSystem);
        assert_eq!(p.spec.size, SizeSpec::Bytes(260 * MIB));
        assert_eq!(p.fs, Some(FsArg::Fat(Some(FatKind::Fat32))));
        assert_eq!(p.label.as_deref(), Some("SYSTEM"));
        let p = parse_part("size=50%").unwrap();
        assert_eq!(p.spec.size, SizeSpec::Percent(50));
        assert_eq!(p.spec.name, "Basic data partition");
        let p = parse_part("type=0x0c,size=rest,active,fs=ntfs").unwrap();
        assert_eq!(p.spec.kind, PartKind::MbrType(0x0c));
        assert!(p.spec.active);
        assert_eq!(p.fs, Some(FsArg::Other("ntfs".into())));
        assert!(parse_part("type=efi").is_err(), "size is required");
        assert!(parse_part("size=1G,colour=red").is_err());
        assert!(parse_part("size=1G,type=bogus").is_err());
        assert!(parse_part("size=1G,label=a/b").is_err());
    }
}
