//! A Linux tree made bootable and configured: its own boot loader, kernel and initrd onto the
//! EFI system partition with a Boot Loader Specification entry, `/etc/fstab` pointed at the new
//! file systems, and the machine's identity (hostname, `/etc/hosts`, machine ID, time zone,
//! files from a package).
//!
//! Formats followed:
//! - the Type #1 entry (`loader/entries/<id>.conf`: `title`, `version`, `linux`, `initrd`,
//!   `options`): UAPI Group, *Boot Loader Specification*,
//!   <https://uapi-group.org/specifications/specs/boot_loader_specification/>;
//! - `loader/loader.conf` (`default`, `timeout`): systemd's loader.conf(5),
//!   <https://manpages.ubuntu.com/manpages/jammy/man5/loader.conf.5.html>;
//! - the fallback path `EFI/BOOT/BOOTX64.EFI` that firmware starts when no boot entry names
//!   a loader (UEFI specification, *Removable media boot behavior*).

use super::fsid::FsId;
use super::{OsRelease, Report};
use crate::disk::fat::FatFs;
use crate::log::Level;
use anyhow::{bail, Context, Result};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// systemd-boot's EFI binary, as Debian's `systemd-boot` package installs it (also
/// `systemd-boot-efi` on later releases).
pub const SYSTEMD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// GRUB's self-contained EFI image, from Debian's `grub-efi-amd64-bin`.
pub const GRUB_EFI: &str = "usr/lib/grub/x86_64-efi/monolithic/grubx64.efi";
/// Where firmware looks when no boot entry names a loader (x86-64).
pub const FALLBACK: &str = "EFI/BOOT/BOOTX64.EFI";
/// Where systemd-boot's own copy goes (what `bootctl install` uses).
pub const SYSTEMD_BOOT_ON_ESP: &str = "EFI/systemd/systemd-bootx64.efi";

/// The kernel options the linux medium boots with (builder's linux template): a serial
/// console and the screen, so the deployed system is seen where the medium was.
pub const MEDIUM_CONSOLE: &[&str] = &["console=ttyS0,115200", "console=tty0"];

/// The boot loader the tree brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    SystemdBoot(PathBuf),
    Grub(PathBuf),
}

/// Which boot loader the tree carries: systemd-boot first, then GRUB's EFI image; neither is
/// an error naming the packages that bring one.
pub fn find_loader(root: &Path) -> Result<Loader> {
    let sd = root.join(SYSTEMD_BOOT);
    if sd.is_file() {
        return Ok(Loader::SystemdBoot(sd));
    }
    let grub = root.join(GRUB_EFI);
    if grub.is_file() {
        return Ok(Loader::Grub(grub));
    }
    bail!(
        "the applied Linux system has no UEFI boot loader: neither /{SYSTEMD_BOOT} (Debian \
         package systemd-boot) nor /{GRUB_EFI} (Debian package grub-efi-amd64-bin) is in it; \
         install one of them in the image and capture it again"
    )
}

/// A kernel of the tree's `/boot` with its initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Compare versions as `sort -V` does for kernel versions: runs of digits by value, other
/// characters by byte.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let da = std::str::from_utf8(&a[..na])
                    .unwrap()
                    .trim_start_matches('0');
                let db = std::str::from_utf8(&b[..nb])
                    .unwrap()
                    .trim_start_matches('0');
                let o = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// The newest kernel of the tree's `/boot` (`vmlinuz-<version>`, version-sorted) and its
/// `initrd.img-<version>`.
pub fn newest_kernel(root: &Path) -> Result<Kernel> {
    let boot = root.join("boot");
    let entries = std::fs::read_dir(&boot).with_context(|| {
        format!(
            "the applied Linux system has no /boot folder ({}) to take a kernel from",
            boot.display()
        )
    })?;
    let mut versions = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading {}", boot.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(v) = name.strip_prefix("vmlinuz-") {
            if e.path().is_file() {
                versions.push(v.to_string());
            }
        }
    }
    versions.sort_by(|a, b| version_cmp(a, b));
    let Some(version) = versions.pop() else {
        bail!(
            "the applied Linux system has no kernel: /boot holds no vmlinuz-<version> (install \
             a kernel package in the image, e.g. Debian's linux-image-amd64)"
        );
    };
    let initrd = boot.join(format!("initrd.img-{version}"));
    if !initrd.is_file() {
        bail!(
            "the applied Linux system's newest kernel /boot/vmlinuz-{version} has no initrd \
             (/boot/initrd.img-{version} is missing; Debian's initramfs-tools makes it)"
        );
    }
    Ok(Kernel {
        kernel: boot.join(format!("vmlinuz-{version}")),
        initrd,
        version,
    })
}

/// A name safe for a file or folder on the ESP from the os-release `ID`.
fn entry_token(os: &OsRelease) -> String {
    let t: String = os
        .id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    if t.is_empty() {
        "linux".into()
    } else {
        t
    }
}

/// What [`install_loader`] wrote (ESP paths, `/`-separated, no leading `/`).
#[derive(Debug, Clone)]
pub struct Installed {
    /// The loader's own path on the ESP, for the firmware boot entry.
    pub loader: String,
    pub entry: String,
    pub kernel: Kernel,
}

fn copy_to_esp(esp: &FatFs, from: &Path, to: &str) -> Result<u64> {
    let mut f = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    esp.write_file(to, &mut f, None).with_context(|| {
        format!(
            "copying {} to {to} on the EFI system partition",
            from.display()
        )
    })
}

/// Install the tree's boot loader, newest kernel and initrd onto `esp`, with an entry that
/// boots `root=UUID=<root_id>` with `options` (console settings) added.
pub fn install_loader(
    root: &Path,
    os: &OsRelease,
    esp: &FatFs,
    esp_uuid: &str,
    root_id: &FsId,
    options: &[String],
    report: &mut Report,
) -> Result<Installed> {
    let loader = find_loader(root)?;
    let kernel = newest_kernel(root)?;
    let token = entry_token(os);
    let dir = format!("{token}/{}", kernel.version);
    let (linux, initrd) = (format!("{dir}/linux"), format!("{dir}/initrd"));
    copy_to_esp(esp, &kernel.kernel, &linux)?;
    copy_to_esp(esp, &kernel.initrd, &initrd)?;
    let mut cmdline = format!("root=UUID={} rw", root_id.uuid);
    for o in options {
        cmdline.push(' ');
        cmdline.push_str(o);
    }
    let title = os.title();
    let entry_name = format!("{token}-{}.conf", kernel.version);
    let (loader_path, entry) = match &loader {
        Loader::SystemdBoot(bin) => {
            copy_to_esp(esp, bin, SYSTEMD_BOOT_ON_ESP)?;
            copy_to_esp(esp, bin, FALLBACK)?;
            let entry = format!(
                "title {title}\nversion {}\nlinux /{linux}\ninitrd /{initrd}\noptions {cmdline}\n",
                kernel.version
            );
            let entry_path = format!("loader/entries/{entry_name}");
            esp.write_file(&entry_path, &mut entry.as_bytes(), None)?;
            let conf = format!("default {entry_name}\ntimeout 3\n");
            esp.write_file("loader/loader.conf", &mut conf.as_bytes(), None)?;
            report.push(
                Level::Info,
                format!(
                    "Installed systemd-boot from /{SYSTEMD_BOOT} as {SYSTEMD_BOOT_ON_ESP} and \
                     {FALLBACK}, kernel {} with its initrd as /{linux} and /{initrd}, boot \
                     entry {entry_path} ({title:?}, options {cmdline})",
                    kernel.version
                ),
            );
            (SYSTEMD_BOOT_ON_ESP.to_string(), entry_path)
        }
        Loader::Grub(bin) => {
            let own = format!("EFI/{token}/grubx64.efi");
            copy_to_esp(esp, bin, &own)?;
            copy_to_esp(esp, bin, FALLBACK)?;
            let cfg = format!(
                "search --no-floppy --fs-uuid --set=root {esp_uuid}\nset default=0\nset \
                 timeout=3\nmenuentry '{}' {{\n  linux /{linux} {cmdline}\n  initrd \
                 /{initrd}\n}}\n",
                title.replace('\'', "")
            );
            let paths = [
                "EFI/BOOT/grub.cfg".to_string(),
                format!("EFI/{token}/grub.cfg"),
            ];
            for p in &paths {
                esp.write_file(p, &mut cfg.as_bytes(), None)?;
            }
            report.push(
                Level::Info,
                format!(
                    "Installed GRUB from /{GRUB_EFI} as {own} and {FALLBACK} (no systemd-boot in \
                     the image), kernel {} with its initrd as /{linux} and /{initrd}, \
                     configuration {} (options {cmdline})",
                    kernel.version,
                    paths.join(" and ")
                ),
            );
            (own, paths[0].clone())
        }
    };
    Ok(Installed {
        loader: loader_path,
        entry,
        kernel,
    })
}

/// Refuse to write through a symbolic link: every folder from `root` down to `rel`'s parent
/// must be a real folder, so a link in the image (`etc -> /etc`) never leads a write onto the
/// machine running tsforge.
fn checked_parent(root: &Path, rel: &str) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        dir.push(p);
        let m = std::fs::symlink_metadata(&dir)
            .with_context(|| format!("the applied system has no /{} folder", rel_of(root, &dir)))?;
        if !m.is_dir() {
            bail!(
                "/{} in the applied system is not a folder (a symbolic link or a file); \
                 tsforge does not write through it",
                rel_of(root, &dir)
            );
        }
    }
    Ok(root.join(rel))
}

fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Write `data` to `rel` inside the tree: into a new file renamed over the old one (so a
/// symbolic link at `rel` is replaced, never followed), keeping the old file's mode, 0644 for a
/// new file.
pub fn write_in_tree(root: &Path, rel: &str, data: &[u8]) -> Result<()> {
    let path = checked_parent(root, rel)?;
    let old_mode = std::fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.is_file())
        .map(mode_of);
    let dir = path.parent().expect("a path in the tree has a parent");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tsforge-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in /{}", rel_of(root, dir)))?;
    std::io::Write::write_all(&mut tmp, data)
        .with_context(|| format!("writing /{rel} in the applied system"))?;
    set_mode(tmp.path(), old_mode.unwrap_or(0o644))?;
    tmp.persist(&path)
        .with_context(|| format!("replacing /{rel} in the applied system"))?;
    Ok(())
}

#[cfg(unix)]
fn mode_of(m: std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o7777
}
#[cfg(not(unix))]
fn mode_of(_: std::fs::Metadata) -> u32 {
    0o644
}
#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", p.display()))
}
#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<()> {
    Ok(())
}

/// Is this fstab source a device (by path or by identity) rather than a pseudo or network
/// file system?
fn names_device(spec: &str) -> bool {
    let up = spec.to_ascii_uppercase();
    spec.starts_with("/dev/")
        || ["UUID=", "PARTUUID=", "LABEL=", "PARTLABEL="]
            .iter()
            .any(|k| up.starts_with(k))
}

/// Rewrite the tree's `/etc/fstab` for the deployed disk: `/` by the root file system's UUID,
/// `/boot/efi` by the ESP's (vfat, `umask=0077`), other lines kept, except lines naming a
/// device that is not on this disk (`on_disk`: the UUIDs of the disk's file systems), which
/// are commented out and reported. Returns the new text.
pub fn rewrite_fstab(
    root: &Path,
    root_id: &FsId,
    esp_uuid: &str,
    on_disk: &[String],
    report: &mut Report,
) -> Result<String> {
    let path = root.join("etc/fstab");
    let old = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {
            std::fs::read_to_string(&path).context("reading /etc/fstab of the applied system")?
        }
        Ok(_) => bail!(
            "/etc/fstab of the applied system is not a regular file (a symbolic link?); \
             tsforge does not follow it"
        ),
        Err(_) => String::new(),
    };
    let root_line = format!(
        "UUID={} / {} errors=remount-ro 0 1",
        root_id.uuid, root_id.kind
    );
    let esp_line = format!("UUID={esp_uuid} /boot/efi vfat umask=0077 0 1");
    let mut out = String::new();
    let (mut have_root, mut have_esp) = (false, false);
    for line in old.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0].starts_with('#') || fields.len() < 2 {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        match fields[1] {
            "/" => {
                if !have_root {
                    out.push_str(&root_line);
                    out.push('\n');
                    report.push(
                        Level::Info,
                        format!("/etc/fstab: / is now {root_line:?} (was {line:?})"),
                    );
                }
                have_root = true;
            }
            "/boot/efi" => {
                if !have_esp {
                    out.push_str(&esp_line);
                    out.push('\n');
                    report.push(
                        Level::Info,
                        format!("/etc/fstab: /boot/efi is now {esp_line:?} (was {line:?})"),
                    );
                }
                have_esp = true;
            }
            _ => {
                let spec = fields[0];
                let known = spec
                    .get(..5)
                    .is_some_and(|k| k.eq_ignore_ascii_case("UUID="))
                    && on_disk.iter().any(|u| u.eq_ignore_ascii_case(&spec[5..]));
                if names_device(spec) && !known {
                    out.push_str(&format!(
                        "# tsforge: {spec} is not a file system of the deployed disk, so this \
                         line is off:\n# {line}\n"
                    ));
                    report.push(
                        Level::Warning,
                        format!(
                            "/etc/fstab: commented out {line:?}: {spec} is not a file system \
                             of the deployed disk"
                        ),
                    );
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    if !have_root {
        out.push_str(&root_line);
        out.push('\n');
        report.push(Level::Info, format!("/etc/fstab: added {root_line:?}"));
    }
    if !have_esp {
        out.push_str(&esp_line);
        out.push('\n');
        report.push(Level::Info, format!("/etc/fstab: added {esp_line:?}"));
    }
    if !root.join("boot/efi").exists() {
        checked_parent(root, "boot/efi")?;
        std::fs::create_dir(root.join("boot/efi"))
            .context("creating /boot/efi in the applied system")?;
    }
    write_in_tree(root, "etc/fstab", out.as_bytes())?;
    Ok(out)
}

/// What [`configure`] sets; `None` leaves it as the image has it.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub hostname: Option<String>,
    /// An IANA name or a Windows time-zone name (mapped through CLDR).
    pub time_zone: Option<String>,
    /// A folder whose files are copied into the tree (same relative paths, modes kept).
    pub files: Option<PathBuf>,
    /// Give the system a new `/etc/machine-id`.
    pub new_machine_id: bool,
}

/// Check a host name as `/etc/hostname` takes it (hostname(5), RFC 1123 labels): 1–63
/// letters, digits and hyphens per label, not starting or ending with a hyphen, 253 in all.
pub fn check_hostname(name: &str) -> Result<(), String> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(ok_label) {
        return Err(format!(
            "computer name {name:?} is not a valid host name (letters, digits and hyphens, \
             at most 63 per dot-separated part, not starting or ending with a hyphen)"
        ));
    }
    Ok(())
}

/// `/etc/hosts` with the `127.0.1.1` line naming `name` (Debian's convention for the host's
/// own name), added when missing.
pub fn hosts_with(old: &str, name: &str) -> String {
    let short = name.split('.').next().unwrap_or(name);
    let line = if short == name {
        format!("127.0.1.1\t{name}")
    } else {
        format!("127.0.1.1\t{name}\t{short}")
    };
    let mut out = String::new();
    let mut done = false;
    for l in old.lines() {
        if l.split_whitespace().next() == Some("127.0.1.1") {
            if !done {
                out.push_str(&line);
                out.push('\n');
                done = true;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !done {
        if old.is_empty() {
            out.push_str("127.0.0.1\tlocalhost\n");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Configure the Linux tree at `root`.
pub fn configure(root: &Path, s: &Settings, report: &mut Report) -> Result<()> {
    if let Some(name) = &s.hostname {
        check_hostname(name).map_err(anyhow::Error::msg)?;
        write_in_tree(root, "etc/hostname", format!("{name}\n").as_bytes())?;
        let hosts = match std::fs::symlink_metadata(root.join("etc/hosts")) {
            Ok(m) if m.is_file() => std::fs::read_to_string(root.join("etc/hosts"))
                .context("reading /etc/hosts of the applied system")?,
            _ => String::new(),
        };
        write_in_tree(root, "etc/hosts", hosts_with(&hosts, name).as_bytes())?;
        report.push(
            Level::Info,
            format!("Host name {name}: /etc/hostname and the 127.0.1.1 line of /etc/hosts"),
        );
    }
    if s.new_machine_id {
        let id = uuid::Uuid::new_v4().simple().to_string();
        write_in_tree(root, "etc/machine-id", format!("{id}\n").as_bytes())?;
        let dbus = root.join("var/lib/dbus/machine-id");
        match std::fs::symlink_metadata(&dbus) {
            Ok(m) if m.is_file() => {
                std::fs::remove_file(&dbus)
                    .context("removing /var/lib/dbus/machine-id of the applied system")?;
                report.push(
                    Level::Info,
                    "Removed the old /var/lib/dbus/machine-id (D-Bus reads /etc/machine-id)"
                        .to_string(),
                );
            }
            _ => {}
        }
        report.push(
            Level::Info,
            format!("New machine ID {id} in /etc/machine-id"),
        );
    }
    if let Some(tz) = &s.time_zone {
        let iana = super::timezone::resolve(tz).map_err(anyhow::Error::msg)?;
        let zone = root.join("usr/share/zoneinfo").join(&iana);
        if !zone.is_file() {
            bail!(
                "time zone {tz:?} ({iana}): the applied system has no /usr/share/zoneinfo/{iana} \
                 (Debian package tzdata)"
            );
        }
        let link = checked_parent(root, "etc/localtime")?;
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).context("removing /etc/localtime of the applied system")?;
        }
        symlink(&format!("/usr/share/zoneinfo/{iana}"), &link)?;
        write_in_tree(root, "etc/timezone", format!("{iana}\n").as_bytes())?;
        let how = if iana.eq_ignore_ascii_case(tz.trim()) {
            String::new()
        } else {
            format!(" (Windows time zone {tz:?}, mapped by CLDR windowsZones)")
        };
        report.push(
            Level::Info,
            format!("Time zone {iana}{how}: /etc/localtime and /etc/timezone"),
        );
    }
    if let Some(dir) = &s.files {
        let n = copy_files(dir, root, "")?;
        report.push(
            Level::Info,
            format!(
                "Copied {n} files from {} into the applied system",
                dir.display()
            ),
        );
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &str, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("creating the link {} -> {target}", link.display()))
}
#[cfg(not(unix))]
fn symlink(_: &str, link: &Path) -> Result<()> {
    bail!("creating {} needs a Unix system", link.display())
}

/// Copy `src`'s files into `root`/`rel`, keeping modes; folders are created (0755), links
/// and special files are refused.
fn copy_files(src: &Path, root: &Path, rel: &str) -> Result<u64> {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let m = std::fs::symlink_metadata(e.path())
            .with_context(|| format!("reading {}", e.path().display()))?;
        if m.is_dir() {
            let d = checked_parent(root, &r)?;
            match std::fs::symlink_metadata(&d) {
                Ok(dm) if dm.is_dir() => {}
                Ok(_) => bail!("/{r} in the applied system is not a folder"),
                Err(_) => {
                    std::fs::create_dir(&d).with_context(|| format!("creating /{r}"))?;
                    set_mode(&d, mode_of(m))?;
                }
            }
            n += copy_files(&e.path(), root, &r)?;
        } else if m.is_file() {
            let data = std::fs::read(e.path())
                .with_context(|| format!("reading {}", e.path().display()))?;
            write_in_tree(root, &r, &data)?;
            set_mode(&root.join(&r), mode_of(m))?;
            n += 1;
        } else {
            bail!(
                "{} is neither a file nor a folder; only files and folders are copied into the \
                 applied system",
                e.path().display()
            );
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_sort_v() {
        let mut v = vec![
            "6.1.0-9-amd64",
            "6.1.0-10-amd64",
            "5.10.0-28-amd64",
            "6.1.0-1-amd64",
        ];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(
            v,
            [
                "5.10.0-28-amd64",
                "6.1.0-1-amd64",
                "6.1.0-9-amd64",
                "6.1.0-10-amd64"
            ]
        );
    }

    #[test]
    fn hosts_line_is_replaced_or_added() {
        let old = "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1 localhost ip6-localhost\n";
        assert_eq!(
            hosts_with(old, "web01"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tweb01\n::1 localhost ip6-localhost\n"
        );
        assert_eq!(
            hosts_with("127.0.0.1 localhost\n", "a.lab.example"),
            "127.0.0.1 localhost\n127.0.1.1\ta.lab.example\ta\n"
        );
        assert!(check_hostname("web-01").is_ok());
        assert!(check_hostname("-bad").is_err());
        assert!(check_hostname("has space").is_err());
        assert!(check_hostname(&"x".repeat(64)).is_err());
    }
}
