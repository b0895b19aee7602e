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

use crate::sequence::model::{parse_bool, Step};
use crate::vars::Vars;

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
