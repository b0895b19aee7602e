//! Which disk: enumerate the machine's disks, find the one the runner booted from, parse disk
//! selectors and refuse unsafe targets.
//!
//! Linux reads `/sys/block` (no root needed). Skipped: `loop*`, `ram*`, `zram*`, `sr*` (optical),
//! `dm-*` and `md*` (device-mapper and RAID: they sit on top of real disks, which are listed),
//! `fd*`, `nbd*`, and devices of size 0 (empty card readers). Order, which is what `Index`
//! selectors count in: fixed disks before removable ones; within each, by transport (nvme,
//! sata, scsi, virtio, mmc, usb, other), then by kernel name (`sda` < `sdb` < `sdaa`); the boot
//! medium always last. So index 0 is the first internal disk whenever there is one.
//!
//! Windows (`\\.\PhysicalDrive0..31`) lists the drives that open, with their size from a seek
//! to the end; model, serial, transport, removable and mount points need IOCTLs (and `unsafe`)
//! and are left empty: use a path selector there when in doubt.

use super::format_size;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskInfo {
    pub index: u32,
    pub path: PathBuf,
    pub size: u64,
    pub model: String,
    pub serial: String,
    pub removable: bool,
    pub boot_medium: bool,
    /// Mount points of the disk or its partitions, `[swap]` for swap, `held by X` when another
    /// device (device-mapper, RAID) uses it.
    pub mounted: Vec<String>,
    pub transport: String,
}

impl DiskInfo {
    /// One line for logs and dry runs: path, size, model, serial.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({}", self.path.display(), format_size(self.size));
        if !self.model.is_empty() {
            s += &format!(", {}", self.model);
        }
        if !self.serial.is_empty() {
            s += &format!(", serial {}", self.serial);
        }
        if !self.transport.is_empty() {
            s += &format!(", {}", self.transport);
        }
        s + ")"
    }
}

fn transport_rank(t: &str) -> u32 {
    match t {
        "nvme" => 0,
        "sata" => 1,
        "scsi" => 2,
        "virtio" => 3,
        "mmc" => 4,
        "usb" => 5,
        _ => 6,
    }
}

/// Sort and number disks as documented in the module.
pub fn order(disks: &mut [DiskInfo]) {
    disks.sort_by(|a, b| {
        (a.boot_medium, a.removable, transport_rank(&a.transport))
            .cmp(&(b.boot_medium, b.removable, transport_rank(&b.transport)))
            .then_with(|| {
                let an = a.path.to_string_lossy();
                let bn = b.path.to_string_lossy();
                an.len().cmp(&bn.len()).then(an.cmp(&bn))
            })
    });
    for (i, d) in disks.iter_mut().enumerate() {
        d.index = i as u32;
    }
}

#[cfg(target_os = "linux")]
fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Mount points by device number (`major:minor`) from `/proc/self/mountinfo`.
#[cfg(target_os = "linux")]
fn mounts() -> Vec<(String, String)> {
    mount_table()
        .into_iter()
        .map(|m| (m.dev, m.point))
        .collect()
}

/// One line of `/proc/self/mountinfo`: the device number it shows, the device the mount
/// source names (its number, when the source is a device node: btrfs shows an anonymous
/// `0:N` as its number) and the mount point.
#[cfg(target_os = "linux")]
struct MountLine {
    dev: String,
    source_dev: Option<String>,
    point: String,
}

#[cfg(target_os = "linux")]
fn mount_table() -> Vec<MountLine> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let _id = f.next()?;
            let _parent = f.next()?;
            let dev = f.next()?.to_string();
            let _root = f.next()?;
            let point = unescape_mount(f.next()?);
            // Optional fields, then " - fstype source options".
            let mut rest = f.skip_while(|x| *x != "-");
            let _dash = rest.next();
            let _fstype = rest.next();
            let source_dev = rest
                .next()
                .map(unescape_mount)
                .filter(|s| s.starts_with("/dev/"))
                .and_then(|s| node_dev(Path::new(&s)));
            Some(MountLine {
                dev,
                source_dev,
                point,
            })
        })
        .collect()
}

/// `major:minor` of a block device node.
#[cfg(target_os = "linux")]
fn node_dev(path: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    if !m.file_type().is_block_device() {
        return None;
    }
    let rdev = m.rdev();
    Some(format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ))
}

/// The device numbers of the active swap areas (`/proc/swaps`; swap files are not devices and
/// are covered by their file system's mount).
#[cfg(target_os = "linux")]
fn swap_devs() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| node_dev(Path::new(&unescape_mount(name))))
        .collect()
}

/// What uses the block device whose sysfs directory is `sys`: its mount points, `[swap]`,
/// `held by X` for each device in its `holders` (device-mapper, RAID, LVM, bcache).
#[cfg(target_os = "linux")]
fn node_users(sys: &Path, mounts: &[MountLine], swaps: &[String], out: &mut Vec<String>) {
    let dev = read_trim(&sys.join("dev"));
    if dev.is_empty() {
        return;
    }
    for m in mounts {
        let hit = m.dev == dev || m.source_dev.as_deref() == Some(dev.as_str());
        if hit && !out.contains(&m.point) {
            out.push(m.point.clone());
        }
    }
    if swaps.contains(&dev) {
        out.push("[swap]".into());
    }
    if let Ok(rd) = std::fs::read_dir(sys.join("holders")) {
        let mut held: Vec<String> = rd
            .flatten()
            .map(|h| format!("held by {}", h.file_name().to_string_lossy()))
            .collect();
        held.sort();
        out.extend(held);
    }
}

/// The partitions of the disk whose sysfs directory is `sys`, sorted by name.
#[cfg(target_os = "linux")]
fn partition_dirs(sys: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(sys)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("partition").exists())
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
#[cfg(any(target_os = "linux", test))]
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What uses a disk: the disk itself and each of its partitions (see [`node_users`]).
#[cfg(target_os = "linux")]
fn disk_uses(sys: &Path, mounts: &[MountLine], swaps: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    node_users(sys, mounts, swaps, &mut out);
    for part in partition_dirs(sys) {
        node_users(&part, mounts, swaps, &mut out);
    }
    out
}

/// The machine's disks, ordered and numbered as documented in the module.
#[cfg(target_os = "linux")]
pub fn enumerate() -> Result<Vec<DiskInfo>> {
    let root = Path::new("/sys/block");
    let mounts = mount_table();
    let swaps = swap_devs();
    let boot = boot_medium();
    let mut out = Vec::new();
    let rd = std::fs::read_dir(root).context("reading /sys/block")?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        const SKIP: [&str; 8] = ["loop", "ram", "zram", "sr", "dm-", "md", "fd", "nbd"];
        if SKIP.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let sys = root.join(&name);
        let size = read_trim(&sys.join("size")).parse::<u64>().unwrap_or(0) * 512;
        if size == 0 {
            continue;
        }
        let real = std::fs::canonicalize(&sys)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let transport = if name.starts_with("nvme") {
            "nvme"
        } else if name.starts_with("mmcblk") {
            "mmc"
        } else if name.starts_with("vd") || real.contains("/virtio") && !real.contains("/host") {
            "virtio"
        } else if real.contains("/usb") {
            "usb"
        } else if real.contains("/ata") {
            "sata"
        } else if name.starts_with("sd") {
            "scsi"
        } else {
            ""
        };
        let dev = sys.join("device");
        let mut serial = read_trim(&dev.join("serial"));
        if serial.is_empty() {
            serial = read_trim(&sys.join("serial"));
        }
        let path = PathBuf::from(format!("/dev/{name}"));
        out.push(DiskInfo {
            index: 0,
            boot_medium: boot.as_deref() == Some(path.as_path()),
            path,
            size,
            model: read_trim(&dev.join("model")),
            serial,
            removable: read_trim(&sys.join("removable")) == "1",
            mounted: disk_uses(&sys, &mounts, &swaps),
            transport: transport.into(),
        });
    }
    order(&mut out);
    Ok(out)
}

/// `\\.\PhysicalDrive0..31` that open (read-only), sized by seeking to the end.
#[cfg(windows)]
pub fn enumerate() -> Result<Vec<DiskInfo>> {
    let mut out = Vec::new();
    for i in 0..32 {
        let path = PathBuf::from(format!(r"\\.\PhysicalDrive{i}"));
        if let Ok(d) = super::Disk::open(&path, false) {
            out.push(DiskInfo {
                index: i,
                path,
                size: d.size(),
                model: String::new(),
                serial: String::new(),
                removable: false,
                boot_medium: false,
                mounted: Vec::new(),
                transport: String::new(),
            });
        }
    }
    Ok(out)
}

#[cfg(not(any(target_os = "linux", windows)))]
pub fn enumerate() -> Result<Vec<DiskInfo>> {
    bail!("listing disks is implemented for Linux and Windows only; give the disk's path")
}

static MEDIUM_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tell [`boot_medium`] where the medium is (`tsforge boot` found it there; the runner
/// itself may live elsewhere, such as in an initramfs).
pub fn set_medium_dir(dir: &Path) {
    let _ = MEDIUM_DIR.set(dir.to_path_buf());
}

/// The disk holding the runner's medium: the mount that contains the directory given to
/// [`set_medium_dir`], else that contains `TSFORGE_MEDIA_DIR` (or the
/// running executable), its device number from `/proc/self/mountinfo`, then
/// `/sys/dev/block/MAJ:MIN` up to the whole disk. `None` when it is not on a disk (network,
/// tmpfs, overlay, loop devices of a live system whose backing disk cannot be told).
pub fn boot_medium() -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        let start = match (MEDIUM_DIR.get(), std::env::var_os("TSFORGE_MEDIA_DIR")) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => std::env::current_exe().ok()?,
        };
        let start = std::fs::canonicalize(&start).ok()?;
        let best = mounts()
            .into_iter()
            .filter(|(_, m)| start.starts_with(m))
            .max_by_key(|(_, m)| m.len())?;
        let (maj, _) = best.0.split_once(':')?;
        if maj == "0" {
            return None; // tmpfs, overlay, nfs…
        }
        let sys = std::fs::canonicalize(format!("/sys/dev/block/{}", best.0)).ok()?;
        let disk = if sys.join("partition").exists() {
            sys.parent()?.to_path_buf()
        } else {
            sys
        };
        let name = disk.file_name()?.to_string_lossy().into_owned();
        Some(PathBuf::from(format!("/dev/{name}")))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// How a disk is chosen. Syntax (documented in docs/disks.md):
/// - `N`: the disk with index N in `tsforge disk list`;
/// - a path: `/dev/sda`, `/dev/disk/by-id/…`, `\\.\PhysicalDrive0`, or an image file;
/// - `first-fixed[:MIN]`, `first-removable[:MIN]`, `first[:MIN]`: the first listed disk of that
///   kind with at least MIN bytes (`32GiB`), never the boot medium or a mounted disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Index(u32),
    Path(PathBuf),
    Rule {
        min_size: u64,
        removable: Option<bool>,
    },
}

impl std::str::FromStr for Selector {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Selector> {
        let t = s.trim();
        if t.is_empty() {
            bail!("empty disk selector");
        }
        if let Ok(n) = t.parse::<u32>() {
            return Ok(Selector::Index(n));
        }
        let (rule, min) = t.split_once(':').unwrap_or((t, ""));
        let removable = match rule {
            "first-fixed" => Some(Some(false)),
            "first-removable" => Some(Some(true)),
            "first" => Some(None),
            _ => None,
        };
        if let Some(removable) = removable {
            let min_size = if min.is_empty() {
                0
            } else {
                super::parse_size(min).with_context(|| format!("disk selector {s:?}"))?
            };
            return Ok(Selector::Rule {
                min_size,
                removable,
            });
        }
        Ok(Selector::Path(PathBuf::from(t)))
    }
}

impl Selector {
    /// The listed disk this selector means. A `Path` that is not a listed disk (an image file)
    /// gives `None`: the caller opens it directly.
    pub fn resolve(&self, disks: &[DiskInfo]) -> Result<Option<DiskInfo>> {
        match self {
            Selector::Index(i) => match disks.iter().find(|d| d.index == *i) {
                Some(d) => Ok(Some(d.clone())),
                None => bail!(
                    "there is no disk {i}: {} disk(s) found (see `tsforge disk list`)",
                    disks.len()
                ),
            },
            Selector::Path(p) => {
                let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                Ok(disks
                    .iter()
                    .find(|d| {
                        d.path == *p || std::fs::canonicalize(&d.path).is_ok_and(|c| c == canon)
                    })
                    .cloned())
            }
            Selector::Rule {
                min_size,
                removable,
            } => {
                let found = disks.iter().find(|d| {
                    d.size >= *min_size
                        && removable.is_none_or(|r| r == d.removable)
                        && !d.boot_medium
                        && d.mounted.is_empty()
                });
                match found {
                    Some(d) => Ok(Some(d.clone())),
                    None => bail!(
                        "no disk matches {self:?}: none that is {}at least {}, not mounted and \
                         not the boot medium (see `tsforge disk list`)",
                        match removable {
                            Some(true) => "removable, ",
                            Some(false) => "fixed, ",
                            None => "",
                        },
                        format_size(*min_size)
                    ),
                }
            }
        }
    }
}

/// The listed disk `path` names; image files and unlisted devices give `None`.
pub fn info_for_path(path: &Path) -> Result<Option<DiskInfo>> {
    let is_dev = std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if !is_dev {
        return Ok(None);
    }
    let disks = enumerate()?;
    Selector::Path(path.to_path_buf()).resolve(&disks)
}

/// A block device a command is about to write: what it is and what uses it (see
/// [`inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTarget {
    /// The path as given.
    pub path: PathBuf,
    /// The kernel's name (`sda`, `loop0p1`, `dm-0`), when known.
    pub name: String,
    pub size: u64,
    /// The disk `tsforge disk list` shows for it, when it is one of those.
    pub listed: Option<DiskInfo>,
    /// For a partition: its whole disk (`/dev/sda` for `/dev/sda1`).
    pub whole_disk: Option<PathBuf>,
    /// Mount points, `[swap]`, `held by X` (device-mapper, RAID, LVM), or that the kernel
    /// refused an exclusive open; empty when nothing uses it.
    pub users: Vec<String>,
    /// It holds the medium tsforge runs from (or is a partition of that disk).
    pub boot_medium: bool,
}

impl BlockTarget {
    /// One line for logs and messages: path, size, model/serial when listed, what it is.
    pub fn describe(&self) -> String {
        if let Some(info) = &self.listed {
            return info.describe();
        }
        let what = match &self.whole_disk {
            Some(w) => format!("a partition of {}", w.display()),
            None if self.name.is_empty() => "a block device".to_string(),
            None => format!("block device {}", self.name),
        };
        format!(
            "{} ({}, {what})",
            self.path.display(),
            format_size(self.size)
        )
    }
}

/// What `path` is and what uses it, for any block device the kernel knows (whether or not
/// `disk list` shows it: loop, device-mapper, RAID, nbd devices and partition nodes too),
/// found by its device number (`major:minor`):
///
/// - the device itself: mounted (by `/proc/self/mountinfo`'s device number or mount source),
///   an active swap area (`/proc/swaps`), held by another device (`/sys/…/holders`: dm, md,
///   LVM);
/// - a whole disk: each of its partitions the same way;
/// - a partition: its whole disk itself too (a file system or holder on the whole disk covers
///   every partition), but not its sibling partitions;
/// - Linux also asks the kernel: an exclusive open (`O_EXCL`) fails with `EBUSY` while a file
///   system, swap, dm/md device or another program holds the device or one of its partitions.
///
/// `Ok(None)`: `path` is not a block device (an image file). Elsewhere than Linux only the
/// listed disks are known (see the module documentation).
pub fn inspect(path: &Path) -> Result<Option<BlockTarget>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::FileTypeExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(_) => return Ok(None), // opening it reports the problem
        };
        if !meta.file_type().is_block_device() {
            return Ok(None);
        }
        let dev = node_dev(path).context("reading a device number")?;
        let sys = std::fs::canonicalize(format!("/sys/dev/block/{dev}")).with_context(|| {
            format!(
                "{} is block device {dev}, which the kernel does not list in /sys/dev/block",
                path.display()
            )
        })?;
        let name = sys
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partition = sys.join("partition").exists();
        let whole_sys = if partition {
            sys.parent().map(Path::to_path_buf)
        } else {
            None
        };
        let mounts = mount_table();
        let swaps = swap_devs();
        let mut users = Vec::new();
        node_users(&sys, &mounts, &swaps, &mut users);
        match &whole_sys {
            Some(w) => {
                let mut whole = Vec::new();
                node_users(w, &mounts, &swaps, &mut whole);
                let disk_name = w.file_name().unwrap_or_default().to_string_lossy();
                users.extend(
                    whole
                        .into_iter()
                        .map(|u| format!("{u} (whole disk /dev/{disk_name})")),
                );
            }
            None => {
                for part in partition_dirs(&sys) {
                    let mut u = Vec::new();
                    node_users(&part, &mounts, &swaps, &mut u);
                    let pname = part.file_name().unwrap_or_default().to_string_lossy();
                    users.extend(u.into_iter().map(|u| format!("{u} (/dev/{pname})")));
                }
            }
        }
        if users.is_empty() && exclusive_open_busy(path) {
            users.push(
                "the kernel refuses an exclusive open (mounted, swap, dm/md, or another \
                 program has it open exclusively)"
                    .into(),
            );
        }
        let whole_disk = whole_sys
            .as_ref()
            .and_then(|w| w.file_name())
            .map(|n| PathBuf::from(format!("/dev/{}", n.to_string_lossy())));
        let disk_node = whole_disk
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/dev/{name}")));
        let boot = boot_medium();
        let boot_medium = boot.is_some_and(|b| {
            b == disk_node
                || node_dev(&b)
                    .is_some_and(|d| Some(d) == read_sys_dev(whole_sys.as_deref().unwrap_or(&sys)))
        });
        let listed = if partition {
            None
        } else {
            let disks = enumerate()?;
            Selector::Path(path.to_path_buf()).resolve(&disks)?
        };
        Ok(Some(BlockTarget {
            path: path.to_path_buf(),
            name,
            size: read_trim(&sys.join("size")).parse::<u64>().unwrap_or(0) * 512,
            listed,
            whole_disk,
            users,
            boot_medium,
        }))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(info_for_path(path)?.map(|info| BlockTarget {
            path: path.to_path_buf(),
            name: String::new(),
            size: info.size,
            users: info.mounted.clone(),
            boot_medium: info.boot_medium,
            whole_disk: None,
            listed: Some(info),
        }))
    }
}

#[cfg(target_os = "linux")]
fn read_sys_dev(sys: &Path) -> Option<String> {
    Some(read_trim(&sys.join("dev"))).filter(|d| !d.is_empty())
}

/// Linux: whether opening `path` with `O_EXCL` fails with `EBUSY` (for a block device, the
/// kernel's own "in use": mounted, swap, claimed by dm/md, or opened exclusively).
#[cfg(target_os = "linux")]
fn exclusive_open_busy(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let r = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_EXCL.bits())
        .open(path);
    matches!(r, Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32))
}

/// The one check before anything opens a block device for writing (`disk partition`,
/// `build-fat`, `run --disk` and its disk steps, `apply` to a disk or partition, `build usb
/// --device`): refuse the boot medium and a device in use ([`inspect`]), naming what uses it
/// and the flag that overrides. Image files pass (`Ok(None)`).
pub fn check_target(
    path: &Path,
    allow_mounted: bool,
    allow_boot: bool,
) -> Result<Option<BlockTarget>> {
    let Some(t) = inspect(path)? else {
        return Ok(None);
    };
    refuse(&t, allow_mounted, allow_boot)?;
    Ok(Some(t))
}

/// [`check_target`]'s rule: the boot medium and a device in use are refused unless allowed.
fn refuse(t: &BlockTarget, allow_mounted: bool, allow_boot: bool) -> Result<()> {
    if t.boot_medium && !allow_boot {
        bail!(
            "{} holds the medium tsforge runs from; refusing to overwrite it (--allow-boot-medium \
             overrides)",
            t.describe()
        );
    }
    if !t.users.is_empty() && !allow_mounted {
        bail!(
            "{} is in use: {}; release it first (umount, swapoff, dmsetup remove, mdadm \
             --stop) or pass --allow-mounted",
            t.describe(),
            t.users.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, transport: &str, removable: bool, boot: bool) -> DiskInfo {
        DiskInfo {
            index: 0,
            path: PathBuf::from(format!("/dev/{name}")),
            size: 64 << 30,
            model: String::new(),
            serial: String::new(),
            removable,
            boot_medium: boot,
            mounted: Vec::new(),
            transport: transport.into(),
        }
    }

    #[test]
    fn order_is_fixed_then_removable_boot_last() {
        let mut d = vec![
            disk("sdc", "usb", true, true),
            disk("sdb", "usb", true, false),
            disk("sdaa", "sata", false, false),
            disk("sda", "sata", false, false),
            disk("nvme0n1", "nvme", false, false),
            disk("vda", "virtio", false, false),
        ];
        order(&mut d);
        let names: Vec<_> = d
            .iter()
            .map(|d| d.path.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "/dev/nvme0n1",
                "/dev/sda",
                "/dev/sdaa",
                "/dev/vda",
                "/dev/sdb",
                "/dev/sdc"
            ]
        );
        assert_eq!(d[5].index, 5);
    }

    #[test]
    fn selectors_parse_and_resolve() {
        assert_eq!("0".parse::<Selector>().unwrap(), Selector::Index(0));
        assert_eq!(
            "/dev/sda".parse::<Selector>().unwrap(),
            Selector::Path("/dev/sda".into())
        );
        assert_eq!(
            "first-fixed:32GiB".parse::<Selector>().unwrap(),
            Selector::Rule {
                min_size: 32 << 30,
                removable: Some(false)
            }
        );
        assert!("first-fixed:lots".parse::<Selector>().is_err());
        let mut disks = vec![
            disk("sda", "sata", false, false),
            disk("sdb", "usb", true, true),
        ];
        disks[0].mounted.push("/".into());
        order(&mut disks);
        let rule: Selector = "first:1GiB".parse().unwrap();
        assert!(
            rule.resolve(&disks).is_err(),
            "mounted and boot disks are never picked"
        );
        assert!(Selector::Index(7).resolve(&disks).is_err());
        let target = |d: &DiskInfo| BlockTarget {
            path: d.path.clone(),
            name: String::new(),
            size: d.size,
            listed: Some(d.clone()),
            whole_disk: None,
            users: d.mounted.clone(),
            boot_medium: d.boot_medium,
        };
        let err = refuse(&target(&disks[0]), false, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use: /;") && err.contains("--allow-mounted"),
            "{err}"
        );
        refuse(&target(&disks[0]), true, false).unwrap();
        let err = refuse(&target(&disks[1]), true, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--allow-boot-medium"), "{err}");
        refuse(&target(&disks[1]), false, true).unwrap();
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount(r"/media/my\040disk"), "/media/my disk");
    }
}
