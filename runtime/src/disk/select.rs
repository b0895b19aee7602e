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
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let _id = f.next()?;
            let _parent = f.next()?;
            let dev = f.next()?.to_string();
            let _root = f.next()?;
            let mnt = unescape_mount(f.next()?);
            Some((dev, mnt))
        })
        .collect()
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

#[cfg(target_os = "linux")]
fn disk_uses(sys: &Path, name: &str, mounts: &[(String, String)], swaps: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut nodes = vec![(name.to_string(), sys.to_path_buf())];
    if let Ok(rd) = std::fs::read_dir(sys) {
        let mut parts: Vec<_> = rd
            .flatten()
            .filter(|e| e.path().join("partition").exists())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        parts.sort();
        nodes.extend(parts);
    }
    for (node, dir) in nodes {
        let dev = read_trim(&dir.join("dev"));
        for (d, m) in mounts {
            if *d == dev && !out.contains(m) {
                out.push(m.clone());
            }
        }
        let devpath = format!("/dev/{node}");
        if swaps
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(devpath.as_str()))
        {
            out.push("[swap]".into());
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("holders")) {
            for h in rd.flatten() {
                out.push(format!("held by {}", h.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// The machine's disks, ordered and numbered as documented in the module.
#[cfg(target_os = "linux")]
pub fn enumerate() -> Result<Vec<DiskInfo>> {
    let root = Path::new("/sys/block");
    let mounts = mounts();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
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
            mounted: disk_uses(&sys, &name, &mounts, &swaps),
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

/// Refuse the boot medium and disks in use, naming the flag that overrides.
pub fn check_safe(info: &DiskInfo, allow_mounted: bool, allow_boot: bool) -> Result<()> {
    if info.boot_medium && !allow_boot {
        bail!(
            "{} holds the medium tsforge runs from; refusing to overwrite it (--allow-boot-medium \
             overrides)",
            info.describe()
        );
    }
    if !info.mounted.is_empty() && !allow_mounted {
        bail!(
            "{} is in use: {}; unmount it first (--allow-mounted overrides)",
            info.describe(),
            info.mounted.join(", ")
        );
    }
    Ok(())
}

/// Whether `path` names a disk (`check_safe` applies) and which one; image files give `None`.
pub fn info_for_path(path: &Path) -> Result<Option<DiskInfo>> {
    let is_dev = std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if !is_dev {
        return Ok(None);
    }
    let disks = enumerate()?;
    Selector::Path(path.to_path_buf()).resolve(&disks)
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
        let err = check_safe(&disks[0], false, false).unwrap_err().to_string();
        assert!(err.contains("--allow-mounted"), "{err}");
        let err = check_safe(&disks[1], true, false).unwrap_err().to_string();
        assert!(err.contains("--allow-boot-medium"), "{err}");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount(r"/media/my\040disk"), "/media/my disk");
    }
}
