//! A partition that is not FAT, made reachable for an apply or a capture (Linux, root): mounted
//! on a temporary folder ([`Mount`]), or, for `wimlib-imagex`'s NTFS volume mode, a block device
//! of its own ([`LoopDevice`]: a loop device over the partition's bytes of an image file).
//! Both undo themselves when dropped, also on an error; a failure to undo is printed, never a
//! panic, and a mount point that could not be unmounted is kept (never emptied).

use super::fs::FileSystem;
use crate::tools::{self, Tool};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where a partition is: its disk (image file or block device), number, and byte range.
pub struct Part<'a> {
    pub disk: &'a Path,
    pub number: u32,
    pub block_device: bool,
    pub offset: u64,
    pub len: u64,
}

impl Part<'_> {
    /// `disk.img:2`, as the user wrote it.
    pub fn text(&self) -> String {
        super::Location::partition_text(self.disk, self.number)
    }
}

/// The effective user id is 0 (Linux: read from `/proc/self/status`). Elsewhere `true`: the
/// platform refuses what needs it on its own.
fn is_root() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_none_or(|euid| euid == "0")
}

/// Fail before anything else when `part` must be mounted (or put on a loop device) and tsforge
/// does not run as root: `doing` says what needs it ("applying to it mounts it"), `instead`
/// what works without root ("apply to a folder").
pub fn require_root(part: &Part, fs: FileSystem, doing: &str, instead: &str) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!(
            "{} holds {fs}: {doing}, which tsforge only does on Linux; {instead}",
            part.text()
        );
    }
    if !is_root() {
        bail!(
            "{} holds {fs}: {doing}, which needs root; run tsforge as root (sudo), or {instead}",
            part.text()
        );
    }
    Ok(())
}

/// A loop device over `part` of an image file (`losetup --find --show --offset --sizelimit`),
/// detached by [`LoopDevice::detach`] or on drop.
pub struct LoopDevice {
    dev: PathBuf,
    attached: bool,
}

impl LoopDevice {
    pub fn attach(part: &Part, read_only: bool) -> Result<LoopDevice> {
        let losetup = tools::find(Tool::Losetup)?;
        let mut args: Vec<OsString> = vec![
            "--find".into(),
            "--show".into(),
            "--offset".into(),
            part.offset.to_string().into(),
            "--sizelimit".into(),
            part.len.to_string().into(),
        ];
        if read_only {
            args.push("--read-only".into());
        }
        args.push(part.disk.as_os_str().to_owned());
        let out = tools::run_program(
            &losetup,
            &args,
            &format!("setting up a loop device for {}", part.text()),
        )?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dev.starts_with("/dev/") {
            bail!(
                "setting up a loop device for {}: losetup printed {dev:?}, not a device",
                part.text()
            );
        }
        Ok(LoopDevice {
            dev: PathBuf::from(dev),
            attached: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dev
    }

    pub fn detach(mut self) -> Result<()> {
        self.attached = false;
        detach(&self.dev)
    }
}

fn detach(dev: &Path) -> Result<()> {
    let losetup = tools::find(Tool::Losetup)?;
    let mut last = None;
    // A FUSE driver (ntfs-3g) may hold the device a moment after its unmount returned.
    for _ in 0..10 {
        match tools::run_program(
            &losetup,
            &["--detach".into(), dev.as_os_str().to_owned()],
            &format!("detaching the loop device {}", dev.display()),
        ) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(last.expect("the loop ran at least once"))
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if self.attached {
            if let Err(e) = detach(&self.dev) {
                eprintln!("tsforge: {e:#}");
            }
        }
    }
}

/// A partition mounted on a temporary folder for the time of an apply or capture, with its
/// file system's type named (`mount -t ext4|xfs|ntfs-3g`): a block device's partition node, or
/// an image file's partition through a [`LoopDevice`]. Unmounted (and the loop device
/// detached) by [`Mount::unmount`], or on drop.
pub struct Mount {
    // Dropped in this order: the folder (only once unmounted), then the loop device.
    dir: Option<tempfile::TempDir>,
    mounted: bool,
    _loop: Option<LoopDevice>,
}

impl Mount {
    pub fn new(part: &Part, fs: FileSystem, read_only: bool) -> Result<Mount> {
        if !cfg!(target_os = "linux") {
            bail!("mounting a partition is only done on Linux; apply to or capture a folder");
        }
        let mount = tools::find(Tool::Mount)?;
        if fs == FileSystem::Ntfs {
            // mount -t ntfs-3g runs ntfs-3g's mount helper: missing, it is this error.
            tools::find(Tool::Ntfs3g)?;
        }
        let dir = tempfile::Builder::new()
            .prefix("tsforge-mnt-")
            .tempdir()
            .context("creating a mount point")?;
        let (source, lo) = if part.block_device {
            (
                crate::disk::reread::partition_path(part.disk, part.number),
                None,
            )
        } else {
            let lo = LoopDevice::attach(part, read_only)?;
            (lo.path().to_path_buf(), Some(lo))
        };
        let args: Vec<OsString> = vec![
            "-t".into(),
            fs.mount_type().into(),
            "-o".into(),
            if read_only { "ro" } else { "rw" }.into(),
            source.into_os_string(),
            dir.path().as_os_str().to_owned(),
        ];
        tools::run_program(
            &mount,
            &args,
            &format!(
                "mounting {} ({fs}, {})",
                part.text(),
                if read_only { "read-only" } else { "read-write" }
            ),
        )?;
        Ok(Mount {
            dir: Some(dir),
            mounted: true,
            _loop: lo,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("set until dropped").path()
    }

    /// Unmount (all data written), then remove the mount point and detach the loop device.
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        if let Err(e) = umount(self.dir()) {
            // Never let the folder's cleanup remove what is still mounted there.
            if let Some(d) = self.dir.take() {
                let _ = d.keep();
            }
            return Err(e);
        }
        if let Some(lo) = self._loop.take() {
            lo.detach()?;
        }
        Ok(())
    }
}

fn umount(dir: &Path) -> Result<()> {
    let umount = tools::find(Tool::Umount)?;
    let mut last = None;
    for _ in 0..5 {
        match tools::run_program(&umount, &[dir.as_os_str().to_owned()], "unmounting") {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(last.expect("the loop ran at least once"))
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let dir = self.dir().to_path_buf();
            if let Err(e) = umount(&dir) {
                eprintln!("tsforge: could not unmount {}: {e:#}", dir.display());
                if let Some(d) = self.dir.take() {
                    let _ = d.keep();
                }
            }
        }
    }
}
