//! The run's state on the deployed disk (ConfigMgr's `_SMSTaskSequence` folder), so that a
//! restart or a power cut of the boot environment, whose RAM disk holds the state directory,
//! does not lose the run.
//!
//! How it works (`docs/media.md`, "State on the deployed disk"):
//! - A run started by `tsforge boot` keeps its state directory in RAM until a *Format and
//!   Partition Disk* step succeeds. The engine then picks the *home*: the partition named by
//!   `OSDisk` when it is a FAT partition of the disk just partitioned, else that disk's largest
//!   FAT partition. From then on every checkpoint is also written to `_SMSTaskSequence/` on the
//!   home, through `fatfs` (no mount: the same way image steps write FAT partitions, so the two
//!   never see different views of the file system; steps run one at a time).
//! - On the home, `state.json` is replaced atomically enough for a power cut: it is written as
//!   `state.json.tmp`, flushed, then renamed over the old one; a cut between removing the old
//!   file and the rename leaves `state.json.tmp`, which [`restore`] takes. `program.json`,
//!   `steps.jsonl`, `boot.json` and `smsts.log` are copied the same way, before `state.json`,
//!   when they changed: so the journal on the home never holds fewer steps than its state
//!   counts, which a resumed run checks.
//! - Secret variable values never reach the disk: the copy of the state has them emptied. A
//!   resumed run gets the medium's secret variables back from the medium (decrypted with the
//!   media password again); secrets set by steps or hooks are gone and the log names them.
//! - When the sequence ends the folder is removed, as ConfigMgr removes `_SMSTaskSequence`;
//!   when the run failed, `smsts.log` and `events.jsonl` stay in `SMSTSLog/` on the same
//!   partition ([`LOGS_FOLDER`]).
//! - When the home cannot be written any more (a later step wrote a raw image over it, or
//!   re-partitioned its disk without a FAT partition) the state stays in RAM and the log says
//!   so; the run goes on.
//!
//! Only FAT homes are supported: NTFS and ext4 partitions would need the kernel to mount them,
//! and image steps write FAT directly, so a mounted home would have two writers.

use crate::disk::{fat, Disk};
use crate::vars::Vars;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The folder on the home partition.
pub const FOLDER: &str = crate::volume::STATE_FOLDER;
/// The folder on the home partition that keeps a failed run's logs once it ended, as
/// ConfigMgr leaves `SMSTSLog` at the root of the disk when a sequence ends in Windows PE.
pub const LOGS_FOLDER: &str = "SMSTSLog";
/// The logs kept there.
const KEPT_LOGS: &[&str] = &["smsts.log", "events.jsonl"];
/// Files of the state directory copied to the home besides `state.json` (the monitor's queue
/// too, so events not yet sent survive a restart of the boot environment: `docs/monitor.md`).
const MIRRORED: &[&str] = &[
    "program.json",
    "steps.jsonl",
    "boot.json",
    "smsts.log",
    crate::log::report::QUEUE_FILE,
    crate::log::report::SENT_FILE,
];

/// A FAT partition that holds (or will hold) the run's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Home {
    pub disk: PathBuf,
    pub partition: u32,
}

impl std::fmt::Display for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.disk.display(), self.partition)
    }
}

/// What was last copied to the home, so unchanged files are not copied again.
#[derive(Debug, Default)]
pub struct Mirror {
    copied: HashMap<&'static str, u64>,
}

/// Replace `_SMSTaskSequence/NAME` with `data`: written as `NAME.tmp`, then renamed over the
/// old file (FAT cannot rename over a file, so the old one is removed first; a power cut in
/// between leaves `NAME.tmp`, which [`restore`] takes). A cut while the new copy is written
/// leaves the old one whole: `steps.jsonl` never shrinks below what `state.json` counts.
fn replace(fs: &fat::FatFs, name: &str, data: &mut dyn Read) -> Result<()> {
    let tmp = format!("{name}.tmp");
    fs.write_file(&format!("{FOLDER}/{tmp}"), data, None)?;
    let dir = fs.dir(FOLDER)?;
    match dir.remove(name) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {FOLDER}/{name}")),
    }
    dir.rename(&tmp, &dir, name)
        .with_context(|| format!("renaming {FOLDER}/{tmp} to {FOLDER}/{name}"))?;
    Ok(())
}

impl Home {
    fn open(&self) -> Result<(Disk, fat::FatFs)> {
        let disk = Disk::open(&self.disk, true)?;
        let (range, _) = crate::volume::partition_range(&disk, self.partition)?;
        let fs = fat::open(range)?;
        Ok((disk, fs))
    }

    /// Write `state_json` (already without secret values) and the changed files of `local`
    /// into `_SMSTaskSequence/`, then flush the file system and the disk.
    pub fn write(&self, local: &Path, state_json: &[u8], mirror: &mut Mirror) -> Result<()> {
        let (disk, fs) = self.open()?;
        if fs.dir(FOLDER).is_err() {
            // New, or removed since (a step made the file system again): copy everything.
            mirror.copied.clear();
        }
        fs.create_dir_all(FOLDER)?;
        for name in MIRRORED {
            let path = local.join(name);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            // Files only grow (steps.jsonl, smsts.log until it rolls over) or are written
            // once (program.json, boot.json): a different length means it changed.
            if mirror.copied.get(name) == Some(&meta.len()) {
                continue;
            }
            let mut f = std::fs::File::open(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            replace(&fs, name, &mut f)?;
            mirror.copied.insert(name, meta.len());
        }
        replace(&fs, "state.json", &mut &state_json[..])?;
        fs.close()?;
        disk.sync()?;
        Ok(())
    }

    /// Remove `_SMSTaskSequence/` (the run ended).
    pub fn remove(&self) -> Result<()> {
        let (disk, fs) = self.open()?;
        if let Ok(entries) = fs.list(FOLDER) {
            for e in entries {
                fs.remove(&format!("{FOLDER}/{}", e.name))?;
            }
            fs.remove(FOLDER)?;
        }
        fs.close()?;
        disk.sync()?;
        Ok(())
    }

    /// Copy the run's logs (`smsts.log`, `events.jsonl` of `log_dir`) into `SMSTSLog/` on
    /// the home, replacing an earlier run's; flush the disk.
    pub fn keep_logs(&self, log_dir: &Path) -> Result<()> {
        let (disk, fs) = self.open()?;
        fs.create_dir_all(LOGS_FOLDER)?;
        for name in KEPT_LOGS {
            let path = log_dir.join(name);
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            fs.write_file(&format!("{LOGS_FOLDER}/{name}"), &mut f, None)?;
        }
        fs.close()?;
        disk.sync()?;
        Ok(())
    }

    /// Whether this partition holds a saved run.
    pub fn holds_state(&self) -> bool {
        let Ok((_, fs)) = self.open() else {
            return false;
        };
        let found = fs.open_file(&format!("{FOLDER}/state.json")).is_ok()
            || fs.open_file(&format!("{FOLDER}/state.json.tmp")).is_ok();
        found
    }
}

/// The home for a run after a *Format and Partition Disk* step on `disk`: the partition in
/// `OSDisk` when it is a FAT partition of `disk`, else the largest FAT partition of `disk`.
/// `Err` says why there is none.
pub fn choose(disk: &Path, vars: &Vars) -> std::result::Result<Home, String> {
    let d = Disk::open(disk, false).map_err(|e| format!("{e:#}"))?;
    let table = crate::disk::layout::read_table(&d)
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| format!("{} has no partition table", disk.display()))?;
    let is_fat = |number: u32| {
        crate::volume::partition_range(&d, number)
            .ok()
            .and_then(|(r, _)| fat::open(r).ok())
            .is_some()
    };
    if let Some(crate::volume::Location::Partition { disk: od, number }) = vars
        .get("OSDisk")
        .filter(|v| !v.is_empty())
        .map(crate::volume::Location::parse)
    {
        if od == disk && is_fat(number) {
            return Ok(Home {
                disk: disk.to_path_buf(),
                partition: number,
            });
        }
    }
    let mut parts = table.partitions;
    parts.sort_by(|a, b| b.len.cmp(&a.len).then(a.number.cmp(&b.number)));
    parts
        .iter()
        .find(|p| is_fat(p.number))
        .map(|p| Home {
            disk: disk.to_path_buf(),
            partition: p.number,
        })
        .ok_or_else(|| {
            format!(
                "{} has no FAT partition (the state can live on FAT only)",
                disk.display()
            )
        })
}

/// The first partition of `disks` that holds a saved run.
pub fn find(disks: &[PathBuf]) -> Option<Home> {
    for disk in disks {
        let Ok(d) = Disk::open(disk, false) else {
            continue;
        };
        let Ok(Some(table)) = crate::disk::layout::read_table(&d) else {
            continue;
        };
        drop(d);
        for p in table.partitions {
            let h = Home {
                disk: disk.clone(),
                partition: p.number,
            };
            if h.holds_state() {
                return Some(h);
            }
        }
    }
    None
}

/// Copy the saved run on `home` into the (empty) local state directory `local`.
pub fn restore(home: &Home, local: &Path) -> Result<()> {
    let (_, fs) = home.open()?;
    std::fs::create_dir_all(local).with_context(|| format!("creating {}", local.display()))?;
    let state = fs
        .read_file(&format!("{FOLDER}/state.json"))
        .or_else(|_| fs.read_file(&format!("{FOLDER}/state.json.tmp")))
        .with_context(|| format!("{home} has no {FOLDER}/state.json"))?;
    for name in MIRRORED {
        let found = fs
            .open_file(&format!("{FOLDER}/{name}"))
            .or_else(|_| fs.open_file(&format!("{FOLDER}/{name}.tmp")));
        if let Ok(mut f) = found {
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .with_context(|| format!("reading {FOLDER}/{name} on {home}"))?;
            write_new(&local.join(name), &data)?;
        }
    }
    write_new(&local.join("state.json"), &state)?;
    Ok(())
}

fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Before a run with its state on disk starts: when `state_dir` holds no run, look for one on
/// the run's disks (the `--disk` mappings, else the machine's disks) and copy it into
/// `state_dir`. Returns the home it came from.
pub fn resume_into(state_dir: &Path, targets: &crate::actions::RunTargets) -> Result<Option<Home>> {
    if state_dir.join("state.json").exists() {
        return Ok(None);
    }
    let disks: Vec<PathBuf> = if targets.disks.is_empty() {
        crate::disk::select::enumerate()
            .map(|ds| ds.into_iter().map(|d| d.path).collect())
            .unwrap_or_default()
    } else {
        targets.disks.iter().map(|(_, p)| p.clone()).collect()
    };
    let Some(home) = find(&disks) else {
        return Ok(None);
    };
    restore(&home, state_dir).with_context(|| {
        format!(
            "restoring the run saved on {home} into {}",
            state_dir.display()
        )
    })?;
    Ok(Some(home))
}
