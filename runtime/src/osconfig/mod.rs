//! The applied operating system, made to boot and configured: what ConfigMgr's *Apply
//! Operating System Image* does after the image is on the volume ("Copy Windows boot loaders
//! into the active partition; set the boot.ini or the Boot Configuration Database (BCD) to
//! reference the newly installed OS", Microsoft, *Task sequence steps*:
//! <https://learn.microsoft.com/intune/configmgr/osd/understand/task-sequence-steps#BKMK_ApplyOperatingSystemImage>),
//! and what *Apply Windows Settings* sets, for a Linux OS.
//!
//! - [`detect`]: which OS a tree holds (`etc/os-release` or `usr/lib/os-release` for Linux,
//!   `Windows/System32/config/SYSTEM` for Windows);
//! - [`make_bootable`]: a partition of a disk with a Linux OS gets its own boot loader on the
//!   disk's EFI system partition (`linux`), `/etc/fstab` by UUID, and, on the target
//!   machine only, a firmware boot entry (`efibootmgr`, `efi`: one entry per label, loader and
//!   partition, rewritten when a sequence runs again); Windows is `bcdboot`'s job
//!   (`windows`), which the linux medium does not have;
//! - [`configure_partition`] / `linux::configure`: host name, `/etc/hosts`, machine ID, time
//!   zone (`timezone`: Windows names through CLDR), files from a package;
//! - `fsid`: file-system UUIDs from the superblocks; `mount`: a partition mounted meanwhile.

pub mod efi;
pub mod fsid;
pub mod handover;
pub mod linux;
pub mod timezone;
pub mod unattend;
pub mod windows;

use crate::disk::{fat, layout, Disk};
use crate::log::Level;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What was done, line by line, for the step's log (kept also when a later part fails).
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<(Level, String)>,
}

impl Report {
    pub fn push(&mut self, level: Level, line: String) {
        self.lines.push((level, line));
    }
}

/// A Linux system's identity from its os-release file (os-release(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`), `linux` when missing, as os-release(5) says.
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    /// The file it was read from (`etc/os-release`).
    pub file: &'static str,
}

impl OsRelease {
    /// The menu title: `PRETTY_NAME`, else `ID VERSION_ID`.
    pub fn title(&self) -> String {
        if !self.pretty_name.is_empty() {
            self.pretty_name.clone()
        } else {
            format!("{} {}", self.id, self.version_id)
                .trim()
                .to_string()
        }
    }
}

/// The operating system a tree holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Os {
    Linux(OsRelease),
    Windows,
}

/// What [`detect`] looks for, for messages.
pub const LOOKED_FOR: &str = "etc/os-release or usr/lib/os-release (Linux), \
                              Windows/System32/config/SYSTEM (Windows)";

/// The value of one `KEY=value` line of os-release: quotes removed, `\` escapes resolved.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    let mut out = String::new();
    let mut esc = false;
    for c in inner.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

pub fn parse_os_release(text: &str, file: &'static str) -> OsRelease {
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| unquote(v))
            .next_back()
            .unwrap_or_default()
    };
    let id = get("ID");
    OsRelease {
        id: if id.is_empty() { "linux".into() } else { id },
        version_id: get("VERSION_ID"),
        pretty_name: get("PRETTY_NAME"),
        file,
    }
}

/// `rel` inside `root` with symbolic links resolved inside the tree (an absolute target is
/// taken from `root`, as the deployed system will see it), so a link never leads out of the
/// tree. `None` when it does not exist.
pub fn resolve_in_tree(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut links = 0;
    while let Some(p) = todo.pop() {
        match p.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let mut here = root.to_path_buf();
        here.extend(&parts);
        here.push(&p);
        let m = std::fs::symlink_metadata(&here).ok()?;
        if m.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = std::fs::read_link(&here).ok()?;
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                parts.clear();
            }
            todo.extend(t.split('/').rev().map(str::to_string));
        } else {
            parts.push(p);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&parts);
    Some(out)
}

/// Find `rel` below `root` comparing each name ignoring case (a Windows tree on a Linux file
/// system keeps the case it was captured with).
fn find_nocase(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut here = root.to_path_buf();
    for part in rel.split('/') {
        let next = std::fs::read_dir(&here)
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(part))?;
        here = next.path();
    }
    Some(here)
}

/// Which OS the tree at `root` holds; neither Linux nor Windows is an error naming what was
/// looked for.
pub fn detect(root: &Path) -> Result<Os> {
    for file in ["etc/os-release", "usr/lib/os-release"] {
        if let Some(p) = resolve_in_tree(root, file).filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("reading {file} of the applied system"))?;
            return Ok(Os::Linux(parse_os_release(&text, file)));
        }
    }
    if find_nocase(root, "Windows/System32/config/SYSTEM").is_some_and(|p| p.is_file()) {
        return Ok(Os::Windows);
    }
    bail!(
        "{} holds no operating system tsforge recognises (looked for {LOOKED_FOR})",
        root.display()
    )
}

/// [`detect`] on a FAT file system, read in place (FAT holds no links; names compare ignoring
/// case). `None`: no OS.
fn detect_fat(fs: &fat::FatFs) -> Result<Option<Os>> {
    for file in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(data) = fs.read_file(file) {
            return Ok(Some(Os::Linux(parse_os_release(
                &String::from_utf8_lossy(&data),
                file,
            ))));
        }
    }
    if fs.open_file("Windows/System32/config/SYSTEM").is_ok() {
        return Ok(Some(Os::Windows));
    }
    Ok(None)
}

/// How [`make_bootable`] may finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A Linux OS was made bootable.
    Linux {
        os: OsRelease,
        /// The loader's path on the ESP and the entry (or grub.cfg) written.
        loader: String,
        entry: String,
        /// The firmware boot entry written (`Boot####` number, four hex digits), if any.
        firmware_entry: Option<String>,
    },
    /// The partition holds no OS tsforge recognises: nothing was changed (the message says
    /// what was looked for).
    NoOs(String),
}

/// Settings for [`make_bootable`].
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Kernel options added after `root=UUID=… rw` (the console settings).
    pub kernel_options: Vec<String>,
    /// Write a firmware boot entry with `efibootmgr`: only on the target machine (the boot
    /// environment), never on the administrator's.
    pub firmware_entry: bool,
}

impl BootOptions {
    /// The options for this run: the consoles the running kernel was started with when in
    /// the boot environment (what the medium passes), else the linux medium's defaults; a
    /// firmware entry only in the boot environment.
    pub fn for_this_machine() -> BootOptions {
        let in_boot = crate::machine::in_boot_environment();
        let from_medium: Vec<String> = if in_boot {
            std::fs::read_to_string("/proc/cmdline")
                .unwrap_or_default()
                .split_whitespace()
                .filter(|o| o.starts_with("console="))
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        BootOptions {
            kernel_options: if from_medium.is_empty() {
                linux::MEDIUM_CONSOLE
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                from_medium
            },
            firmware_entry: in_boot,
        }
    }
}

/// The EFI system partitions of a table.
fn esps(table: &layout::TableInfo) -> Vec<&layout::PartitionInfo> {
    let name = layout::gpt_type_name(layout::GUID_EFI);
    table.partitions.iter().filter(|p| p.kind == name).collect()
}

/// Make the OS on partition `number` of `disk` boot from that disk. See the module comment.
/// Progress goes to `report` as it happens, so a failure still shows what was done.
pub fn make_bootable(
    disk_path: &Path,
    number: u32,
    opts: &BootOptions,
    report: &mut Report,
) -> Result<Outcome> {
    let shown = format!("partition {number} of {}", disk_path.display());
    let d = Disk::open(disk_path, true)?;
    let table = layout::read_table(&d)?
        .with_context(|| format!("{} has no partition table", disk_path.display()))?;
    let part = table
        .partitions
        .iter()
        .find(|p| p.number == number)
        .with_context(|| format!("{} has no partition {number}", disk_path.display()))?
        .clone();
    let root_id = fsid::read(&mut d.range(part.start, part.len)?, &shown)?;
    if root_id.kind == "vfat" {
        // Read natively: no mount (the boot environment's kernel may have no vfat driver).
        let fs = fat::open_checked(d.range(part.start, part.len)?)?;
        let os = detect_fat(&fs);
        fs.close()?;
        return match os? {
            None => Ok(Outcome::NoOs(format!(
                "{shown} holds no operating system tsforge recognises (looked for {LOOKED_FOR})"
            ))),
            Some(Os::Windows) => Err(windows::refuse_on_linux(&shown)),
            Some(Os::Linux(os)) => bail!(
                "{shown} holds {} on a FAT file system, which cannot keep a Linux system's \
                 links, owners and modes; format the OS partition ext4 (or XFS, btrfs)",
                os.title()
            ),
        };
    }
    let mounted = crate::volume::mount_partition(disk_path, number, false)?;
    let os = match detect(mounted.dir()) {
        Ok(os) => os,
        Err(_) => {
            mounted.unmount()?;
            return Ok(Outcome::NoOs(format!(
                "{shown} holds no operating system tsforge recognises (looked for {LOOKED_FOR})"
            )));
        }
    };
    let os = match os {
        Os::Windows => {
            mounted.unmount()?;
            return Err(windows::refuse_on_linux(&shown));
        }
        Os::Linux(os) => os,
    };
    report.push(
        Level::Info,
        format!(
            "{shown} holds {} (from /{}; {} file system {})",
            os.title(),
            os.file,
            root_id.kind,
            root_id.uuid
        ),
    );
    if table.kind != layout::TableKind::Gpt {
        mounted.unmount()?;
        bail!(
            "{} has an MBR partition table (BIOS boot): tsforge makes Linux bootable only with \
             UEFI, from an EFI system partition on a GPT disk; partition the disk as GPT with an \
             EFI system partition (Format and Partition Disk, PartitionStyle GPT)",
            disk_path.display()
        );
    }
    let esp = match esps(&table).first() {
        Some(p) => (*p).clone(),
        None => {
            mounted.unmount()?;
            bail!(
                "{} has no EFI system partition to boot {} from; add one (FAT32, type EFI) \
                 before the OS partition with Format and Partition Disk",
                disk_path.display(),
                os.title()
            );
        }
    };
    let esp_shown = format!(
        "partition {} of {} (EFI system)",
        esp.number,
        disk_path.display()
    );
    let esp_id = fsid::read(&mut d.range(esp.start, esp.len)?, &esp_shown)?;
    if esp_id.kind != "vfat" {
        bail!(
            "{esp_shown} holds {} rather than FAT; format it FAT32",
            esp_id.kind
        );
    }
    let on_disk: Vec<String> = table
        .partitions
        .iter()
        .filter_map(|p| {
            let mut r = d.range(p.start, p.len).ok()?;
            fsid::read(&mut r, "").ok().map(|id| id.uuid)
        })
        .collect();
    let fs = fat::open_checked(d.range(esp.start, esp.len)?)
        .with_context(|| format!("opening {esp_shown}"))?;
    let installed = linux::install_loader(
        mounted.dir(),
        &os,
        &fs,
        &esp_id.uuid,
        &root_id,
        &opts.kernel_options,
        report,
    );
    let closed = fs.close();
    let installed = installed?;
    closed?;
    d.sync()?;
    linux::rewrite_fstab(mounted.dir(), &root_id, &esp_id.uuid, &on_disk, report)?;
    mounted.unmount()?;
    let mut firmware_entry = None;
    if !opts.firmware_entry {
        report.push(
            Level::Info,
            format!(
                "No firmware boot entry written: not running on the target machine (outside the \
                 boot environment); firmware starts {} without one",
                linux::FALLBACK
            ),
        );
    } else if !d.is_block_device() {
        report.push(
            Level::Info,
            format!(
                "No firmware boot entry written: {} is an image file, not this machine's disk",
                disk_path.display()
            ),
        );
    } else if let Some(why) = efi::unavailable(Path::new("/")) {
        report.push(
            Level::Warning,
            format!(
                "No firmware boot entry written: {why}; UEFI firmware starts {} without one",
                linux::FALLBACK
            ),
        );
    } else if let Err(missing) = crate::tools::find(crate::tools::Tool::Efibootmgr) {
        report.push(
            Level::Warning,
            format!(
                "No firmware boot entry written: {missing}; the firmware starts {} without one",
                linux::FALLBACK
            ),
        );
    } else {
        let loader = format!("\\{}", installed.loader.replace('/', "\\"));
        let label = os.title();
        let ss = d.sector_size();
        let place = efi::Place {
            disk: disk_path.to_path_buf(),
            part: esp.number,
            start: esp.start / ss,
            size: esp.len / ss,
        };
        let num = efi::write_entry(&mut efi::efibootmgr, &place, &label, &loader, report)
            .context("writing the firmware boot entry")?;
        firmware_entry = Some(efi::bootnum(num));
        report.push(
            Level::Info,
            format!(
                "Firmware boot entry Boot{} {label:?} written (first in BootOrder): {loader} on \
                 {esp_shown}",
                efi::bootnum(num)
            ),
        );
    }
    Ok(Outcome::Linux {
        os,
        loader: installed.loader,
        entry: installed.entry,
        firmware_entry,
    })
}

/// What a step does to a Windows tree (its root): write its answer file.
pub type WindowsConfig<'a> = &'a mut dyn FnMut(&Path, &mut Report) -> Result<()>;

/// Configure the OS at `location` (a folder, or partition `DISK:N`, mounted meanwhile): Linux
/// as `linux::configure` does with `settings` (none: left as it is); Windows through
/// `windows`. Returns the OS found.
pub fn configure_at(
    location: &crate::volume::Location,
    settings: Option<&linux::Settings>,
    windows: WindowsConfig,
    report: &mut Report,
) -> Result<Os> {
    use crate::volume::Location;
    match location {
        Location::Dir(dir) => configure_tree(dir, settings, windows, report),
        Location::Disk(d) => bail!(
            "{} is a whole disk; name the partition that holds the OS (DISK:N)",
            d.display()
        ),
        Location::Partition { disk, number } => {
            let d = Disk::open(disk, true)?;
            let table = layout::read_table(&d)?
                .with_context(|| format!("{} has no partition table", disk.display()))?;
            let part = table
                .partitions
                .iter()
                .find(|p| p.number == *number)
                .with_context(|| format!("{} has no partition {number}", disk.display()))?;
            let shown = format!("partition {number} of {}", disk.display());
            let id = fsid::read(&mut d.range(part.start, part.len)?, &shown)?;
            if id.kind == "vfat" {
                let fs = fat::open_checked(d.range(part.start, part.len)?)?;
                let os = detect_fat(&fs);
                fs.close()?;
                match os? {
                    None => bail!(
                        "{shown} holds no operating system tsforge recognises (looked for \
                         {LOOKED_FOR})"
                    ),
                    Some(Os::Windows) => {
                        bail!("{shown} holds Windows on a FAT file system: Windows runs from NTFS")
                    }
                    Some(Os::Linux(os)) => bail!(
                        "{shown} holds {} on a FAT file system, which cannot keep a Linux \
                         system's links, owners and modes",
                        os.title()
                    ),
                }
            }
            let m = crate::volume::mount_partition(disk, *number, false)?;
            let r = configure_tree(m.dir(), settings, windows, report);
            m.unmount()?;
            r
        }
    }
}

fn configure_tree(
    root: &Path,
    settings: Option<&linux::Settings>,
    windows: WindowsConfig,
    report: &mut Report,
) -> Result<Os> {
    let os = detect(root)?;
    match &os {
        Os::Windows => {
            report.push(Level::Info, format!("{} holds Windows", root.display()));
            windows(root, report)?;
        }
        Os::Linux(r) => {
            report.push(
                Level::Info,
                format!("{} holds {} (from /{})", root.display(), r.title(), r.file),
            );
            if let Some(settings) = settings {
                linux::configure(root, settings, report)?;
            }
        }
    }
    Ok(os)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// os-release(5): <https://www.freedesktop.org/software/systemd/man/latest/os-release.html>.
    #[test]
    fn detects_linux_windows_and_nothing() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let err = detect(r).unwrap_err().to_string();
        assert!(err.contains("etc/os-release") && err.contains("Windows/System32/config/SYSTEM"));
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(
            r.join("usr/lib/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"12\"\nID=debian\n",
        )
        .unwrap();
        // Debian's etc/os-release is a relative link; an absolute one is read inside the tree.
        std::os::unix::fs::symlink("/usr/lib/os-release", r.join("etc/os-release")).unwrap();
        match detect(r).unwrap() {
            Os::Linux(o) => {
                assert_eq!(o.id, "debian");
                assert_eq!(o.version_id, "12");
                assert_eq!(o.title(), "Debian GNU/Linux 12 (bookworm)");
                assert_eq!(o.file, "etc/os-release");
            }
            o => panic!("{o:?}"),
        }
        let w = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(w.path().join("Windows/system32/config")).unwrap();
        std::fs::write(w.path().join("Windows/system32/config/SYSTEM"), b"regf").unwrap();
        assert_eq!(detect(w.path()).unwrap(), Os::Windows);
    }
}
