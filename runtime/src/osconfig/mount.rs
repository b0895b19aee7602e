//! A partition mounted read-write for the time it takes to make its OS bootable or configure
//! it (Linux, root): the partition's node on a block device, a loop mount with the partition's
//! offset on an image file. Unmounted when dropped, also on errors.
//!
//! (`volume` mounts the same way for apply and capture; its mount is private to it.)

use crate::disk::Disk;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub struct Mounted {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Mounted {
    /// Mount partition `number` (starting at `start`, `len` bytes) of `disk_path`.
    pub fn new(disk_path: &Path, disk: &Disk, number: u32, start: u64, len: u64) -> Result<Self> {
        if !cfg!(target_os = "linux") {
            bail!("mounting a partition is only done on Linux");
        }
        let dir = tempfile::Builder::new()
            .prefix("tsforge-os-")
            .tempdir()
            .context("creating a mount point")?;
        let mut opts = vec!["rw".to_string()];
        let source = if disk.is_block_device() {
            crate::disk::reread::partition_path(disk_path, number)
        } else {
            opts.push("loop".into());
            opts.push(format!("offset={start}"));
            opts.push(format!("sizelimit={len}"));
            disk_path.to_path_buf()
        };
        let args: Vec<std::ffi::OsString> = vec![
            "-o".into(),
            opts.join(",").into(),
            source.into_os_string(),
            dir.path().as_os_str().to_owned(),
        ];
        crate::tools::run(
            crate::tools::Tool::Mount,
            &args,
            &format!(
                "mounting partition {number} of {} (needs root)",
                disk_path.display()
            ),
        )?;
        Ok(Mounted { dir, mounted: true })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Unmount now, reporting a failure (dropping unmounts too, printing it).
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        umount(self.dir.path())
    }
}

fn umount(dir: &Path) -> Result<()> {
    let mut last = None;
    for _ in 0..5 {
        match crate::tools::run(crate::tools::Tool::Umount, [dir], "unmounting") {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(last.expect("the loop ran at least once"))
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = umount(self.dir.path()) {
                eprintln!(
                    "tsforge: could not unmount {}: {e:#}",
                    self.dir.path().display()
                );
            }
        }
    }
}
