//! *Format and Partition Disk* (`SMS_TaskSequence_PartitionDiskAction`), with the properties
//! ConfigMgr exports:
//!
//! | property | meaning |
//! | --- | --- |
//! | `DiskIndex` | the disk number (see `docs/disks.md` for the order; `--disk N=PATH` overrides) |
//! | `PartitionStyle` or `DiskType` | `GPT` or `MBR` |
//! | `Partitions` | how many partitions follow (optional: counted otherwise) |
//! | `PartitionsNName` | the partition's name (GPT name) |
//! | `PartitionsNType` | `Primary`, `EFI`, `MSR`, `Recovery` (`Extended`/`Logical` are refused) |
//! | `PartitionsNFileSystem` | `FAT32`, `FAT16`, `FAT` (native), `NTFS`, `exFAT`, `ext4`, … (external formatter), empty = unformatted |
//! | `PartitionsNSize` + `PartitionsNSizeUnits` | `MB`, `GB`, `TB` (binary: MiB/GiB/TiB, as diskpart means them), or `%`/`Percent` of the space left after the fixed-size partitions; `100` `%` on the last one = the rest |
//! | `PartitionsNQuickFormat` | kept; FAT formatting is always quick |
//! | `PartitionsNBootable` | MBR active flag |
//! | `PartitionsNVolumeName` | the volume label |
//! | `PartitionsNVolumeVariable` (or `…VolumeLetterVariable`) | the variable that receives the partition's location, `DISK:N` (e.g. `OSDisk` = `/dev/sda:3`) |
//!
//! `validate` checks these properties when none of them holds a `%VARIABLE%`; the dry run
//! shows the planned layout on the machine's (or `--disk`'s) disk.

use super::disks::{check_disk, resolve_disk, resolve_disk_in, FORMATTED_VAR};
use super::{ActionResult, Ctx, Plan, StepType};
use crate::disk::{fat, layout, preflight, Disk};
use crate::log::Level;
use crate::sequence::model::{parse_bool, step_type, Step};
use crate::vars::Vars;
use crate::volume::Location;

/// A partition's file system as *Format and Partition Disk* makes it.
#[derive(Debug, Clone, Copy)]
enum NewFs {
    /// Written natively (`None`: FAT16 or FAT32 by size).
    Fat(Option<fat::FatKind>),
    /// Through the platform's formatter.
    External(crate::fsformat::FsKind),
}

pub const TYPE: StepType = StepType {
    names: &[step_type::PARTITION_DISK],
    check,
    plan,
    run: partition,
};

fn check(s: &Step) -> Vec<String> {
    // Values with %VAR% are only known at run time.
    if !s.vars.iter().any(|p| p.value.contains('%')) {
        if let Err(e) = parse(s, &Vars::new()) {
            return vec![format!(
                "Format and Partition Disk step {:?}: {e}",
                s.name()
            )];
        }
    }
    Vec::new()
}

fn plan(step: &Step, p: &mut Plan) -> String {
    match describe_plan(step, p.vars, p.targets) {
        Ok(lines) => {
            // A partition step sets its volume variables; later steps of the plan see them.
            if let Ok(req) = parse(step, p.vars) {
                if let Ok(disk) = resolve_disk_in(req.disk_index, p.targets) {
                    for (i, part) in req.partitions.iter().enumerate() {
                        if let Some(v) = &part.volume_variable {
                            p.vars.set(v, Location::partition_text(&disk, i as u32 + 1));
                        }
                    }
                }
            }
            lines
                .iter()
                .map(|l| format!("\n{}{l}", p.indent))
                .collect::<String>()
        }
        Err(e) => format!("cannot plan: {e}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Gpt,
    Mbr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeReq {
    Bytes(u64),
    Percent(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRequest {
    pub name: String,
    /// `Primary`, `EFI`, `MSR`, `Recovery` (as written, case-insensitive).
    pub kind: String,
    /// The file system, upper-cased; `None` = leave unformatted.
    pub fs: Option<String>,
    pub size: SizeReq,
    pub quick: bool,
    pub bootable: bool,
    pub label: String,
    pub volume_variable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRequest {
    pub disk_index: u32,
    pub style: Style,
    pub partitions: Vec<PartitionRequest>,
}

/// Read the step's properties (values `%NAME%`-expanded). Errors name the property.
pub fn parse(step: &Step, vars: &Vars) -> Result<DiskRequest, String> {
    let get = |k: &str| step.property(k).map(|v| vars.expand(v));
    let disk_index = match get("DiskIndex") {
        Some(d) => d
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("DiskIndex {d:?} is not a disk number"))?,
        None => return Err("the DiskIndex property is missing".into()),
    };
    let style_s = get("PartitionStyle")
        .or_else(|| get("DiskType"))
        .unwrap_or_else(|| "GPT".into());
    let style = match style_s.trim().to_ascii_uppercase().as_str() {
        "GPT" => Style::Gpt,
        "MBR" => Style::Mbr,
        other => return Err(format!("PartitionStyle {other:?} is neither GPT nor MBR")),
    };
    let declared = match get("Partitions") {
        Some(n) if !n.trim().is_empty() => Some(
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("Partitions {n:?} is not a count"))?,
        ),
        _ => None,
    };
    let mut partitions = Vec::new();
    for i in 0.. {
        let key = |field: &str| format!("Partitions{i}{field}");
        let present = ["Type", "Size", "Name", "FileSystem"]
            .iter()
            .any(|f| get(&key(f)).is_some());
        // Every described partition is read, also past the declared count: a mismatch is an
        // error below, never a partition silently left out.
        if !present {
            break;
        }
        let kind = get(&key("Type")).unwrap_or_else(|| "Primary".into());
        let known = ["primary", "efi", "msr", "recovery"];
        if !known.contains(&kind.trim().to_ascii_lowercase().as_str()) {
            return Err(format!(
                "Partitions{i}Type {kind:?} is not supported (use Primary, EFI, MSR or Recovery)"
            ));
        }
        let size_s = get(&key("Size")).unwrap_or_else(|| "100".into());
        let units = get(&key("SizeUnits")).unwrap_or_else(|| "MB".into());
        let n: u64 = size_s
            .trim()
            .parse()
            .map_err(|_| format!("Partitions{i}Size {size_s:?} is not a whole number"))?;
        let size = match units.trim().to_ascii_uppercase().as_str() {
            "%" | "PERCENT" => {
                if n == 0 || n > 100 {
                    return Err(format!("Partitions{i}Size {n}% is not between 1 and 100"));
                }
                SizeReq::Percent(n as u32)
            }
            u => {
                let mult: u64 = match u {
                    "MB" | "MIB" => 1 << 20,
                    "GB" | "GIB" => 1 << 30,
                    "TB" | "TIB" => 1 << 40,
                    _ => {
                        return Err(format!(
                            "Partitions{i}SizeUnits {units:?} is not MB, GB, TB or %"
                        ))
                    }
                };
                SizeReq::Bytes(
                    n.checked_mul(mult)
                        .filter(|b| *b > 0)
                        .ok_or_else(|| format!("Partitions{i}Size {n} {units} is out of range"))?,
                )
            }
        };
        let flag = |f: &str, default: bool| {
            get(&key(f))
                .as_deref()
                .and_then(parse_bool)
                .unwrap_or(default)
        };
        let fs = get(&key("FileSystem"))
            .map(|f| f.trim().to_ascii_uppercase())
            .filter(|f| !f.is_empty());
        partitions.push(PartitionRequest {
            name: get(&key("Name")).unwrap_or_default(),
            kind,
            fs,
            size,
            quick: flag("QuickFormat", true),
            bootable: flag("Bootable", false),
            label: get(&key("VolumeName")).unwrap_or_default(),
            volume_variable: get(&key("VolumeVariable"))
                .or_else(|| get(&key("VolumeLetterVariable")))
                .filter(|v| !v.trim().is_empty()),
        });
    }
    if let Some(d) = declared {
        if d != partitions.len() {
            return Err(format!(
                "Partitions says {d} partitions but {} are described",
                partitions.len()
            ));
        }
    }
    if partitions.is_empty() {
        return Err("no partitions are described (Partitions0Type, Partitions0Size, …)".into());
    }
    Ok(DiskRequest {
        disk_index,
        style,
        partitions,
    })
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
    let req = parse(step, vars)?;
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
    let req = match parse(step, ctx.vars) {
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
            ctx.partitioned_disk = Some(path.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::model::Variable;

    fn step(props: &[(&str, &str, &str)]) -> Step {
        Step {
            vars: props
                .iter()
                .map(|(name, prop, value)| {
                    let mut v = Variable::property(*prop, *value);
                    v.name = name.to_string();
                    v
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_configmgr_export_properties() {
        let s = step(&[
            ("OSDDiskIndex", "DiskIndex", "%Disk%"),
            ("OSDDiskType", "DiskType", "GPT"),
            ("OSDPartitions0Type", "Partitions0Type", "EFI"),
            ("OSDPartitions0FileSystem", "Partitions0FileSystem", "FAT32"),
            ("OSDPartitions0Size", "Partitions0Size", "260"),
            ("OSDPartitions0SizeUnits", "Partitions0SizeUnits", "MB"),
            (
                "OSDPartitions0VolumeName",
                "Partitions0VolumeName",
                "SYSTEM",
            ),
            ("OSDPartitions1Type", "Partitions1Type", "Primary"),
            ("OSDPartitions1Size", "Partitions1Size", "100"),
            ("OSDPartitions1SizeUnits", "Partitions1SizeUnits", "%"),
            ("OSDPartitions1FileSystem", "Partitions1FileSystem", "ntfs"),
            (
                "OSDPartitions1VolumeVariable",
                "Partitions1VolumeVariable",
                "OSDisk",
            ),
            ("OSDPartitions", "Partitions", "2"),
        ]);
        let mut vars = Vars::new();
        vars.set("Disk", "1");
        let r = parse(&s, &vars).unwrap();
        assert_eq!(r.disk_index, 1);
        assert_eq!(r.style, Style::Gpt);
        assert_eq!(r.partitions.len(), 2);
        assert_eq!(r.partitions[0].size, SizeReq::Bytes(260 << 20));
        assert_eq!(r.partitions[0].fs.as_deref(), Some("FAT32"));
        assert_eq!(r.partitions[0].label, "SYSTEM");
        assert_eq!(r.partitions[1].size, SizeReq::Percent(100));
        assert_eq!(r.partitions[1].fs.as_deref(), Some("NTFS"));
        assert_eq!(r.partitions[1].volume_variable.as_deref(), Some("OSDisk"));
    }

    /// The step's settings are the `OSDPartitions` array of the task sequence variables page
    /// (https://learn.microsoft.com/mem/configmgr/osd/understand/task-sequence-variables#OSDPartitions)
    /// and "About task sequence steps: Format and Partition Disk"
    /// (https://learn.microsoft.com/mem/configmgr/osd/understand/task-sequence-steps#BKMK_FormatandPartitionDisk).
    /// Neither says what happens when the count and the described partitions disagree
    /// (docs/engine.md): tsforge refuses rather than leave one out.
    #[test]
    fn a_partition_beyond_the_declared_count_is_an_error_not_dropped() {
        let s = step(&[
            ("OSDDiskIndex", "DiskIndex", "0"),
            ("OSDPartitions0Type", "Partitions0Type", "Primary"),
            ("OSDPartitions0Size", "Partitions0Size", "50"),
            ("OSDPartitions0SizeUnits", "Partitions0SizeUnits", "%"),
            ("OSDPartitions1Type", "Partitions1Type", "Primary"),
            ("OSDPartitions1Size", "Partitions1Size", "100"),
            ("OSDPartitions1SizeUnits", "Partitions1SizeUnits", "%"),
            ("OSDPartitions", "Partitions", "1"),
        ]);
        let err = parse(&s, &Vars::new()).unwrap_err();
        assert!(
            err.contains("Partitions says 1 partitions but 2 are described"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_property() {
        let vars = Vars::new();
        let cases = [
            (vec![], "DiskIndex property is missing"),
            (vec![("DiskIndex", "DiskIndex", "x")], "DiskIndex \"x\""),
            (
                vec![
                    ("DiskIndex", "DiskIndex", "0"),
                    ("P", "Partitions0Type", "Logical"),
                ],
                "Partitions0Type \"Logical\"",
            ),
            (
                vec![
                    ("DiskIndex", "DiskIndex", "0"),
                    ("P", "Partitions0Size", "5"),
                    ("U", "Partitions0SizeUnits", "KB"),
                ],
                "Partitions0SizeUnits \"KB\"",
            ),
            (
                vec![
                    ("DiskIndex", "DiskIndex", "0"),
                    ("P", "Partitions0Size", "150"),
                    ("U", "Partitions0SizeUnits", "%"),
                ],
                "150% is not between 1 and 100",
            ),
            (vec![("DiskIndex", "DiskIndex", "0")], "no partitions"),
        ];
        for (props, want) in cases {
            let e = parse(&step(&props), &vars).unwrap_err();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }
}
