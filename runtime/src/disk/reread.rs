//! After a new partition table: make the kernel read it and wait for the partition nodes.
//!
//! Linux: `partx -u DEV` (util-linux), falling back to `blockdev --rereadpt DEV`, run through
//! the tools table (no `unsafe` ioctl here), then up to 10 s for `/dev/<disk><n>` or `<disk>p<n>` to
//! appear (udev creates them). Image files: nothing to do. Windows: `diskpart /s` with a
//! `rescan` script, which makes the disk driver re-read every table (the IOCTL path without
//! `unsafe` calls in the runner); diskpart ships with Windows and Windows PE.

use super::target::Disk;
#[cfg(target_os = "linux")]
use anyhow::bail;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for partition nodes.
pub const WAIT: Duration = Duration::from_secs(10);

/// The node of partition `number` of `disk`: `/dev/sda1`, `/dev/nvme0n1p1`, `/dev/mmcblk0p1`,
/// `/dev/loop0p1` (a `p` when the disk's name ends in a digit, as the kernel names them).
pub fn partition_path(disk: &Path, number: u32) -> PathBuf {
    let s = disk.to_string_lossy();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{number}"))
    } else {
        PathBuf::from(format!("{s}{number}"))
    }
}

/// Whether [`reread`] can run for `disk`, checked before a table is written: on Linux a block
/// device needs `partx` or `blockdev` (util-linux), on Windows `diskpart`; image files need
/// nothing.
pub fn check_available(disk: &Disk) -> Result<()> {
    if !disk.is_block_device() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use crate::tools::{self, Tool};
        if let Err(e) = tools::find(Tool::Partx) {
            tools::find(Tool::Blockdev).map_err(|_| {
                anyhow::anyhow!(
                    "{e}; without partx or blockdev the kernel cannot be told about the new \
                     partitions of {}",
                    disk.path().display()
                )
            })?;
        }
    }
    #[cfg(windows)]
    crate::tools::find(crate::tools::Tool::Diskpart)?;
    Ok(())
}

/// Tell the kernel about the new table on `disk` and wait for partitions `1..=count`.
pub fn reread(disk: &Disk, count: u32) -> Result<()> {
    if !disk.is_block_device() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use crate::tools::{self, Tool};
        let dev = disk.path();
        let what = format!("re-reading the partition table of {}", dev.display());
        let first = tools::run(Tool::Partx, ["-u".as_ref(), dev.as_os_str()], &what);
        if let Err(e1) = first {
            if let Err(e2) = tools::run(
                Tool::Blockdev,
                ["--rereadpt".as_ref(), dev.as_os_str()],
                &what,
            ) {
                bail!(
                    "the kernel did not take the new partition table of {}: {e1:#}; {e2:#} \
                     (reboot before using the partitions)",
                    dev.display()
                );
            }
        }
        let deadline = Instant::now() + WAIT;
        let missing = || {
            (1..=count)
                .map(|n| partition_path(dev, n))
                .find(|p| !p.exists())
        };
        while let Some(p) = missing() {
            if Instant::now() > deadline {
                bail!(
                    "{} did not appear within {} s after the table was written (is udev running?)",
                    p.display(),
                    WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
    #[cfg(windows)]
    {
        use anyhow::Context;
        let _ = (count, WAIT, Instant::now());
        let mut script = tempfile::Builder::new()
            .prefix("tsforge-rescan")
            .suffix(".txt")
            .tempfile()
            .context("creating a diskpart script")?;
        std::io::Write::write_all(&mut script, b"rescan\r\nexit\r\n")
            .context("writing a diskpart script")?;
        crate::tools::run(
            crate::tools::Tool::Diskpart,
            [std::ffi::OsStr::new("/s"), script.path().as_os_str()],
            &format!(
                "re-reading the partition table of {}",
                disk.path().display()
            ),
        )?;
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = (count, WAIT, Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        for (disk, n, want) in [
            ("/dev/sda", 1, "/dev/sda1"),
            ("/dev/nvme0n1", 2, "/dev/nvme0n1p2"),
            ("/dev/mmcblk0", 1, "/dev/mmcblk0p1"),
            ("/dev/vdb", 3, "/dev/vdb3"),
        ] {
            assert_eq!(partition_path(Path::new(disk), n), PathBuf::from(want));
        }
    }
}
