//! UEFI boot entries through `efibootmgr` (efibootmgr(8)): the deployed OS's `Boot####` entry
//! (written by [`super::make_bootable`] on the target machine) and `BootNext` before a
//! *Restart Computer* ([`prepare_restart`]), so the step's target boots: `HD` the deployed OS,
//! anything else the boot medium.
//!
//! `efibootmgr` lists the variables as `BootCurrent: XXXX`, `BootNext: XXXX`,
//! `BootOrder: XXXX,YYYY`, `Timeout: N seconds` and one line per entry, `Boot####` followed by
//! `*` (active) or a space, a space, the label and, with `--verbose` (and always from version
//! 18 on), a tab and the device path as libefivar writes it
//! (`HD(1,GPT,<partition GUID>,0x800,0x100000)/File(\EFI\BOOT\BOOTX64.EFI)`); version 18 adds
//! indented `dp:` and `data:` lines with `--verbose`. [`parse`] reads all of these.
//!
//! Nothing here runs off the target: [`prepare_restart`] acts only in the boot environment
//! (`crate::machine::in_boot_environment`), and `make_bootable` writes an entry only there.
//! A failure is reported as a warning and the restart still happens: a restart is never failed
//! for a boot entry (the firmware's own boot order then decides what starts).

use super::Report;
use crate::log::Level;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// tsforge's own variable holding the `Boot####` number (four hex digits) of the firmware entry
/// this run wrote for the deployed OS (set by *Apply Operating System Image*), which a *Restart
/// Computer* to `HD` sets `BootNext` to.
pub const BOOT_ENTRY_VAR: &str = "_TSForgeBootEntry";
/// The label of the firmware entry for the boot medium.
pub const MEDIUM_LABEL: &str = "tsforge boot medium";
/// The loader UEFI firmware starts from removable media, which every tsforge UEFI medium has.
pub const MEDIUM_LOADER: &str = "\\EFI\\BOOT\\BOOTX64.EFI";
/// For tests: a folder standing for `/` when reading `/sys/firmware/efi`, `/proc/mounts` and
/// `/sys/class/block` (never for what is written: that is always efibootmgr's job).
pub const ROOT_ENV: &str = "TSFORGE_FIRMWARE_ROOT";

/// The `HD(…)` node of a device path: the partition a loader is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HdNode {
    pub part: u32,
    /// `GPT` or `MBR`.
    pub scheme: String,
    /// The partition GUID (GPT) or the disk signature (MBR).
    pub signature: String,
    /// First block and length in blocks (the disk's logical block size).
    pub start: u64,
    pub size: u64,
}

/// One `Boot####` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub num: u16,
    pub active: bool,
    pub label: String,
    /// The device path as printed (empty without `--verbose` on efibootmgr 17).
    pub path: String,
    pub hd: Option<HdNode>,
    /// The `File(…)` node: the loader's path on the partition.
    pub file: Option<String>,
}

/// What `efibootmgr` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub current: Option<u16>,
    pub next: Option<u16>,
    pub order: Vec<u16>,
    pub entries: Vec<Entry>,
}

fn hex16(s: &str) -> Option<u16> {
    let s = s.trim();
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The text between `name(` and its closing parenthesis in a device path.
fn node<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("{name}(");
    let at = path.find(&open)?;
    let rest = &path[at + open.len()..];
    Some(&rest[..rest.find(')')?])
}

fn parse_hd(path: &str) -> Option<HdNode> {
    let fields: Vec<&str> = node(path, "HD")?.split(',').collect();
    if fields.len() < 5 {
        return None;
    }
    Some(HdNode {
        part: number(fields[0])? as u32,
        scheme: fields[1].trim().to_string(),
        signature: fields[2].trim().to_string(),
        start: number(fields[3])?,
        size: number(fields[4])?,
    })
}

/// Read `efibootmgr` / `efibootmgr --verbose` output. Lines it does not know (`Timeout`,
/// `dp:`, `data:`, messages) are passed over.
pub fn parse(text: &str) -> Listing {
    let mut l = Listing::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("BootCurrent:") {
            l.current = hex16(v);
        } else if let Some(v) = line.strip_prefix("BootNext:") {
            l.next = hex16(v);
        } else if let Some(v) = line.strip_prefix("BootOrder:") {
            l.order = v.split(',').filter_map(hex16).collect();
        } else if let Some(rest) = line.strip_prefix("Boot") {
            // Boot####* label[\tpath]
            let (Some(num), Some(flag)) = (rest.get(..4).and_then(hex16), rest.get(4..5)) else {
                continue;
            };
            if flag != "*" && flag != " " {
                continue;
            }
            let rest = rest.get(5..).unwrap_or("");
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            let (label, path) = match rest.split_once('\t') {
                Some((label, path)) => (label, path.trim()),
                None => (rest, ""),
            };
            l.entries.push(Entry {
                num,
                active: flag == "*",
                label: label.trim_end().to_string(),
                path: path.to_string(),
                hd: parse_hd(path),
                file: node(path, "File").map(str::to_string),
            });
        }
    }
    l
}

/// `Boot####` as efibootmgr names it: four upper-case hex digits.
pub fn bootnum(num: u16) -> String {
    format!("{num:04X}")
}

/// Where a loader is: partition `part` of `disk`, from block `start`, `size` blocks long (the
/// disk's logical block size, as in the device path's `HD(…)` node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub disk: PathBuf,
    pub part: u32,
    pub start: u64,
    pub size: u64,
}

impl Place {
    /// Whether an entry's partition is this one. The partition GUID is not compared (tsforge
    /// does not read it); number, first block and length are, which tells the disks apart
    /// unless two of them have the same layout.
    fn holds(&self, hd: &HdNode) -> bool {
        hd.part == self.part && hd.start == self.start && hd.size == self.size
    }
}

/// Runs efibootmgr with the arguments and gives its standard output.
pub type Efibootmgr<'a> = &'a mut dyn FnMut(&[OsString]) -> Result<String>;

/// efibootmgr itself, through the tools table.
pub fn efibootmgr(args: &[OsString]) -> Result<String> {
    let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
    let out = crate::tools::run(
        crate::tools::Tool::Efibootmgr,
        args,
        &format!("efibootmgr {}", shown.join(" ")),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// Write the entry `label` for `loader` on `place` (`efibootmgr --create`, which also puts it
/// first in `BootOrder`) and give its number. An entry with the same label and loader on the
/// same partition is deleted first (`--bootnum XXXX --delete-bootnum`), so running a sequence
/// again does not pile entries up.
pub fn write_entry(
    run: Efibootmgr,
    place: &Place,
    label: &str,
    loader: &str,
    report: &mut Report,
) -> Result<u16> {
    let before = parse(&run(&args(&["--verbose"]))?);
    let mut kept: Vec<u16> = Vec::new();
    for e in &before.entries {
        let same = e.label == label
            && e.file
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case(loader))
            && e.hd.as_ref().is_some_and(|hd| place.holds(hd));
        if same {
            run(&args(&["--bootnum", &bootnum(e.num), "--delete-bootnum"]))?;
            report.push(
                Level::Info,
                format!(
                    "Deleted the earlier firmware boot entry Boot{} {label:?} ({})",
                    bootnum(e.num),
                    e.path
                ),
            );
        } else {
            kept.push(e.num);
        }
    }
    let mut create: Vec<OsString> = args(&["--create", "--disk"]);
    create.push(place.disk.as_os_str().to_owned());
    create.extend(args(&[
        "--part",
        &place.part.to_string(),
        "--label",
        label,
        "--loader",
        loader,
    ]));
    let after = parse(&run(&create)?);
    let new = after
        .entries
        .iter()
        .find(|e| e.label == label && !kept.contains(&e.num))
        .map(|e| e.num)
        .or_else(|| after.order.first().copied().filter(|n| !kept.contains(n)));
    match new {
        Some(n) => Ok(n),
        None => bail!(
            "efibootmgr --create did not list a new entry {label:?}; its listing was: {:?}",
            after.entries
        ),
    }
}

/// `efibootmgr --bootnext XXXX`.
pub fn set_boot_next(run: Efibootmgr, num: u16) -> Result<()> {
    run(&args(&["--bootnext", &bootnum(num)]))?;
    Ok(())
}

/// The folder standing for `/` when reading the firmware's and the kernel's files.
fn root() -> PathBuf {
    std::env::var_os(ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Why the firmware's variables cannot be written here, or `None` when they can.
pub fn unavailable(root: &Path) -> Option<String> {
    if !under(root, "/sys/firmware/efi").is_dir() {
        return Some("this machine did not start with UEFI (no /sys/firmware/efi)".into());
    }
    let vars = under(root, "/sys/firmware/efi/efivars");
    let mounted = std::fs::read_dir(&vars)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !mounted {
        return Some("the UEFI variables are not there (efivarfs is not mounted at /sys/firmware/efi/efivars)".into());
    }
    None
}

/// `\040`-style escapes of /proc/mounts undone.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the medium mounted at `medium` is: its partition, or why it has no firmware entry.
pub fn medium_place(root: &Path, medium: &Path) -> std::result::Result<Place, String> {
    let mounts = std::fs::read_to_string(under(root, "/proc/mounts"))
        .map_err(|e| format!("reading /proc/mounts: {e}"))?;
    let wanted = medium.to_string_lossy();
    let wanted = wanted.trim_end_matches('/');
    let (device, fstype) = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (unescape_mount(f[0]), unescape_mount(f[1]), f[2].to_string()))
        })
        .filter(|(_, at, _)| at.trim_end_matches('/') == wanted)
        .map(|(dev, _, fs)| (dev, fs))
        .next_back()
        .ok_or_else(|| {
            format!(
                "the medium {} is not a mounted device (a PXE boot's payload)",
                medium.display()
            )
        })?;
    let name = device
        .strip_prefix("/dev/")
        .ok_or_else(|| format!("the medium's device {device} is not under /dev"))?
        .to_string();
    if fstype == "iso9660" || name.starts_with("sr") {
        return Err(format!(
            "the medium is an ISO 9660 disc ({device}): its UEFI loader is inside the disc's El \
             Torito image, which efibootmgr cannot name"
        ));
    }
    let class = under(root, "/sys/class/block").join(&name);
    let read = |p: PathBuf| -> std::result::Result<u64, String> {
        std::fs::read_to_string(&p)
            .map_err(|e| format!("reading {}: {e}", p.display()))?
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("reading {}: {e}", p.display()))
    };
    if !class.join("partition").exists() {
        return Err(format!(
            "the medium's device {device} is a whole disk, not a partition"
        ));
    }
    let part = read(class.join("partition"))? as u32;
    let real =
        std::fs::canonicalize(&class).map_err(|e| format!("reading {}: {e}", class.display()))?;
    let parent = real
        .parent()
        .ok_or_else(|| format!("{} has no parent disk", real.display()))?;
    let disk_name = parent
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} has no parent disk", real.display()))?;
    // sysfs gives start and size in 512-byte sectors; the device path in logical blocks.
    let block = read(parent.join("queue/logical_block_size"))
        .unwrap_or(512)
        .max(512);
    let start = read(class.join("start"))? * 512 / block;
    let size = read(class.join("size"))? * 512 / block;
    Ok(Place {
        disk: PathBuf::from(format!("/dev/{disk_name}")),
        part,
        start,
        size,
    })
}

/// Before a *Restart Computer*: point `BootNext` at what `target` names (Microsoft's *Restart
/// Computer* step: "The boot image assigned to this task sequence" or "The currently installed
/// default operating system", `SMSRebootTarget` `HD`). `HD` (or empty): the entry this run
/// wrote for the deployed OS (`deployed`, [`BOOT_ENTRY_VAR`]), else the firmware's order is
/// left as it is. Anything else: an entry for the medium mounted at `medium` (written, or
/// rewritten, with [`MEDIUM_LABEL`] and [`MEDIUM_LOADER`]). Only on the linux medium in the
/// boot environment under UEFI with efivarfs; otherwise, and on any failure, a line says the
/// firmware's boot order decides. Never fails: the restart happens all the same.
pub fn prepare_restart(
    run: Efibootmgr,
    target: &str,
    deployed: Option<&str>,
    medium: Option<&Path>,
    report: &mut Report,
) {
    let to_hd = target.trim().is_empty() || target.trim().eq_ignore_ascii_case("HD");
    let what = if to_hd {
        "the installed operating system (HD)"
    } else {
        "the boot medium"
    };
    let order = |why: &str| {
        format!("BootNext not set for {what}: {why}; the firmware's boot order decides what starts")
    };
    if !crate::machine::in_boot_environment() {
        report.push(
            Level::Info,
            order("not in the boot environment (firmware boot entries are changed only on the target machine, from the medium)"),
        );
        return;
    }
    if !cfg!(target_os = "linux") {
        report.push(
            Level::Info,
            order("in Windows PE tsforge does not change firmware boot entries"),
        );
        return;
    }
    let root = root();
    if let Some(why) = unavailable(&root) {
        report.push(Level::Info, order(&why));
        return;
    }
    if let Err(missing) = crate::tools::find(crate::tools::Tool::Efibootmgr) {
        report.push(Level::Warning, order(&missing.to_string()));
        return;
    }
    let result = if to_hd {
        let Some(text) = deployed.map(str::trim).filter(|t| !t.is_empty()) else {
            report.push(
                Level::Info,
                order(&format!(
                    "this run wrote no firmware boot entry for a deployed OS ({BOOT_ENTRY_VAR} is not set)"
                )),
            );
            return;
        };
        let Some(num) = hex16(text) else {
            report.push(
                Level::Warning,
                order(&format!(
                    "{BOOT_ENTRY_VAR} is {text:?}, not a Boot#### number (four hex digits)"
                )),
            );
            return;
        };
        set_boot_next(run, num).map(|()| num)
    } else {
        let place = match medium.map(|m| medium_place(&root, m)) {
            None => {
                report.push(
                    Level::Info,
                    order("the run does not know its medium (_TSForgeMedium is not set)"),
                );
                return;
            }
            Some(Err(why)) => {
                report.push(Level::Info, order(&why));
                return;
            }
            Some(Ok(place)) => place,
        };
        write_entry(run, &place, MEDIUM_LABEL, MEDIUM_LOADER, report)
            .and_then(|num| set_boot_next(run, num).map(|()| num))
            .with_context(|| {
                format!(
                    "the medium's entry on partition {} of {}",
                    place.part,
                    place.disk.display()
                )
            })
    };
    match result {
        Ok(num) => report.push(
            Level::Info,
            format!(
                "BootNext set to Boot{} ({what}): the firmware starts it once, then goes back to its boot order",
                bootnum(num)
            ),
        ),
        Err(e) => report.push(Level::Warning, order(&format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What efibootmgr 17 (Debian 12) prints with `--verbose` on OVMF after Debian's installer
    /// added its entry: the format of efibootmgr's `show_vars` (`Boot%04X`, `*` when active, a
    /// space, the label, a tab and libefivar's device path) and `print_order`; efibootmgr(8)
    /// names BootCurrent, BootNext and BootOrder.
    const V17: &str = "BootCurrent: 0001\n\
Timeout: 0 seconds\n\
BootNext: 0002\n\
BootOrder: 0004,0001,0000,0002,0003\n\
Boot0000* UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)\n\
Boot0001* UEFI QEMU QEMU HARDDISK \tPciRoot(0x0)/Pci(0x4,0x0)/Scsi(0,0)N.....YM....R,Y.\n\
Boot0002* UEFI PXEv4 (MAC:525400123456)\tPciRoot(0x0)/Pci(0x3,0x0)/MAC(525400123456,1)/IPv4(0.0.0.00.0.0.0,0,0)N.....YM....R,Y.\n\
Boot0003  EFI Internal Shell\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(7c04a583-9e3e-4f1c-ad65-e05268d0b4d1)\n\
Boot0004* Debian GNU/Linux 12 (bookworm)\tHD(1,GPT,6ee0f7ab-5b83-4a59-a4ee-0a0d0a1e1c67,0x800,0x100000)/File(\\EFI\\systemd\\systemd-bootx64.efi)\n";

    #[test]
    fn parses_efibootmgr_17_verbose() {
        let l = parse(V17);
        assert_eq!(l.current, Some(1));
        assert_eq!(l.next, Some(2));
        assert_eq!(l.order, vec![4, 1, 0, 2, 3]);
        assert_eq!(l.entries.len(), 5);
        let shell = &l.entries[3];
        assert_eq!((shell.num, shell.active), (3, false));
        assert_eq!(shell.label, "EFI Internal Shell");
        assert_eq!(l.entries[1].label, "UEFI QEMU QEMU HARDDISK");
        assert_eq!(l.entries[2].label, "UEFI PXEv4 (MAC:525400123456)");
        assert_eq!(l.entries[2].hd, None);
        let debian = &l.entries[4];
        assert_eq!(debian.num, 4);
        assert_eq!(debian.label, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(
            debian.hd,
            Some(HdNode {
                part: 1,
                scheme: "GPT".into(),
                signature: "6ee0f7ab-5b83-4a59-a4ee-0a0d0a1e1c67".into(),
                start: 0x800,
                size: 0x100000,
            })
        );
        assert_eq!(
            debian.file.as_deref(),
            Some("\\EFI\\systemd\\systemd-bootx64.efi")
        );
    }

    /// efibootmgr 18 (Debian 13) prints the device path without `--verbose` too, and with it
    /// `dp:` (and `data:`) lines under each entry; an MBR partition is `HD(N,MBR,0x<sig>,…)`.
    /// Without `--verbose`, efibootmgr 17 prints labels only.
    #[test]
    fn parses_efibootmgr_18_and_plain_listings() {
        let v18 = "BootCurrent: 0005\n\
Timeout: 3 seconds\n\
BootOrder: 0005,0000\n\
Boot0000* UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)\n\
      dp: 04 07 14 00 c9 bd b8 7c eb f8 34 4f aa ea 3e e4 af 65 16 a1 / 7f ff 04 00\n\
Boot0005* tsforge boot medium\tHD(1,MBR,0x1a2b3c4d,0x800,0x3f800)/File(\\EFI\\BOOT\\BOOTX64.EFI)\n\
      dp: 04 01 2a 00 01 00 00 00 / 7f ff 04 00\n\
    data: 00 00\n";
        let l = parse(v18);
        assert_eq!(l.next, None);
        assert_eq!(l.order, vec![5, 0]);
        assert_eq!(l.entries.len(), 2);
        let m = &l.entries[1];
        assert_eq!(m.label, MEDIUM_LABEL);
        assert_eq!(m.file.as_deref(), Some(MEDIUM_LOADER));
        let hd = m.hd.clone().unwrap();
        assert_eq!(
            (hd.part, hd.scheme.as_str(), hd.start, hd.size),
            (1, "MBR", 0x800, 0x3f800)
        );

        let plain = parse("BootCurrent: 0001\nBootOrder: 0001\nBoot0001* debian\nBootNext: 0001\n");
        assert_eq!(plain.entries[0].label, "debian");
        assert_eq!(plain.entries[0].path, "");
        assert_eq!(plain.entries[0].file, None);
        assert_eq!(plain.next, Some(1));
        // Not entries: messages, a malformed number.
        assert!(parse("Boot0XYZ* x\nBootOrder is not set\n")
            .entries
            .is_empty());
        assert_eq!(bootnum(0x1f), "001F");
    }

    /// efibootmgr(8): `--create` "Create new variable bootnum and add to bootorder"; `--disk`,
    /// `--part`, `--label`, `--loader`; `--bootnum XXXX --delete-bootnum` deletes one entry;
    /// `--bootnext XXXX` sets BootNext.
    #[test]
    fn write_entry_replaces_the_same_entry_and_keeps_others() {
        let place = Place {
            disk: "/dev/vda".into(),
            part: 1,
            start: 0x800,
            size: 0x100000,
        };
        let label = "Debian GNU/Linux 12 (bookworm)";
        let loader = "\\EFI\\systemd\\systemd-bootx64.efi";
        // Boot0004 is the same entry (loader compared ignoring case, FAT); Boot0006 has the same
        // label and loader on another partition (another disk): kept.
        let listing = V17.replace("systemd-bootx64.efi", "SYSTEMD-BOOTX64.EFI")
            + &format!("Boot0006* {label}\tHD(1,GPT,0b0c,0x800,0x200000)/File({loader})\n");
        let mut calls: Vec<String> = Vec::new();
        let mut run = |a: &[OsString]| -> Result<String> {
            let line: Vec<String> = a.iter().map(|x| x.to_string_lossy().into()).collect();
            calls.push(line.join(" "));
            Ok(match a[0].to_str().unwrap() {
                "--verbose" => listing.clone(),
                // efibootmgr reuses the free number 0004 and lists the result.
                "--create" => format!(
                    "BootOrder: 0004,0001\nBoot0001* x\nBoot0004* {label}\nBoot0006* {label}\n"
                ),
                _ => String::new(),
            })
        };
        let mut report = Report::default();
        let n = write_entry(&mut run, &place, label, loader, &mut report).unwrap();
        assert_eq!(n, 4);
        assert_eq!(
            calls,
            vec![
                "--verbose".to_string(),
                "--bootnum 0004 --delete-bootnum".into(),
                format!("--create --disk /dev/vda --part 1 --label {label} --loader {loader}"),
            ]
        );
        assert!(report.lines[0]
            .1
            .contains("Deleted the earlier firmware boot entry Boot0004"));

        // Nothing to replace: create only; then BootNext.
        let mut calls: Vec<String> = Vec::new();
        let mut run = |a: &[OsString]| -> Result<String> {
            calls.push(
                a.iter()
                    .map(|x| x.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            Ok(match a[0].to_str().unwrap() {
                "--verbose" => V17.to_string(),
                "--create" => {
                    "BootOrder: 0005,0004\nBoot0004* debian\nBoot0005* tsforge boot medium\n".into()
                }
                _ => String::new(),
            })
        };
        let medium = Place {
            disk: "/dev/sdb".into(),
            part: 1,
            start: 2048,
            size: 260096,
        };
        let n = write_entry(
            &mut run,
            &medium,
            MEDIUM_LABEL,
            MEDIUM_LOADER,
            &mut Report::default(),
        )
        .unwrap();
        set_boot_next(&mut run, n).unwrap();
        assert_eq!(
            calls,
            vec![
                "--verbose".to_string(),
                "--create --disk /dev/sdb --part 1 --label tsforge boot medium --loader \\EFI\\BOOT\\BOOTX64.EFI".into(),
                "--bootnext 0005".into(),
            ]
        );

        // efibootmgr failing, or not listing the new entry: an error saying so.
        let mut failing = |_: &[OsString]| -> Result<String> {
            bail!("efibootmgr: Could not prepare Boot variable: No space left on device")
        };
        let e = write_entry(
            &mut failing,
            &medium,
            MEDIUM_LABEL,
            MEDIUM_LOADER,
            &mut Report::default(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("No space left"), "{e:#}");
        let mut silent = |_: &[OsString]| -> Result<String> { Ok(String::new()) };
        let e = write_entry(
            &mut silent,
            &medium,
            MEDIUM_LABEL,
            MEDIUM_LOADER,
            &mut Report::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("did not list a new entry"), "{e}");
    }

    /// The medium's partition from /proc/mounts and sysfs (a fake root): partition number,
    /// parent disk, start and size in logical blocks; an ISO disc, a whole disk and a PXE
    /// payload have no entry, and say why.
    #[test]
    fn finds_the_medium_partition() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let w = |p: &str, text: &str| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w("proc/mounts", "sysfs /sys sysfs rw 0 0\n/dev/sdb1 /medium vfat ro 0 0\n/dev/sr0 /media\\040cd iso9660 ro 0 0\n/dev/sdc /whole vfat ro 0 0\n");
        w("sys/devices/pci0/usb1/block/sdb/sdb1/partition", "1\n");
        w("sys/devices/pci0/usb1/block/sdb/sdb1/start", "2048\n");
        w("sys/devices/pci0/usb1/block/sdb/sdb1/size", "260096\n");
        w(
            "sys/devices/pci0/usb1/block/sdb/queue/logical_block_size",
            "512\n",
        );
        w("sys/devices/pci0/usb1/block/sdc/size", "260096\n");
        std::fs::create_dir_all(r.join("sys/class/block")).unwrap();
        for (name, to) in [("sdb1", "sdb/sdb1"), ("sdc", "sdc")] {
            std::os::unix::fs::symlink(
                format!("../../devices/pci0/usb1/block/{to}"),
                r.join("sys/class/block").join(name),
            )
            .unwrap();
        }
        assert_eq!(
            medium_place(r, Path::new("/medium/")).unwrap(),
            Place {
                disk: "/dev/sdb".into(),
                part: 1,
                start: 2048,
                size: 260096
            }
        );
        assert!(medium_place(r, Path::new("/media cd"))
            .unwrap_err()
            .contains("ISO 9660"));
        assert!(medium_place(r, Path::new("/whole"))
            .unwrap_err()
            .contains("whole disk"));
        assert!(medium_place(r, Path::new("/pxe"))
            .unwrap_err()
            .contains("PXE"));
        // A 4 KiB-sector disk: blocks of 4096 bytes in the device path.
        w(
            "sys/devices/pci0/usb1/block/sdb/queue/logical_block_size",
            "4096\n",
        );
        let p = medium_place(r, Path::new("/medium")).unwrap();
        assert_eq!((p.start, p.size), (256, 32512));
        assert_eq!(unescape_mount("/a\\040b\\011c"), "/a b\tc");
        // UEFI variables: none without /sys/firmware/efi, nor with an empty efivars folder.
        assert!(unavailable(r).unwrap().contains("UEFI"));
        std::fs::create_dir_all(r.join("sys/firmware/efi/efivars")).unwrap();
        assert!(unavailable(r).unwrap().contains("efivarfs"));
        w(
            "sys/firmware/efi/efivars/BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c",
            "",
        );
        assert_eq!(unavailable(r), None);
    }
}
