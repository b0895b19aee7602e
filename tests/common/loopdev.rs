//! Loop devices for the tests that need a real block device (mounted, swapped on, partitioned
//! by the kernel). They need root and `losetup`; without them [`Loop::attach`] prints `SKIP …`
//! and gives `None`, so the test passes without running. Everything a [`Loop`] sets up (mounts,
//! swap, the loop device itself) is undone when it is dropped, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn run(prog: &str, args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let o = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!(
            "{prog} {:?} failed: {}",
            args,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    run("id", &["-u".as_ref()]).is_ok_and(|u| u == "0")
}

/// Run a setup command the test needs, panicking with its error (the guard still cleans up).
pub fn must(prog: &str, args: &[&str]) -> String {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    run(prog, &args).unwrap_or_else(|e| panic!("{e}"))
}

/// A loop device attached to an image file, with what the test mounted or swapped on it.
pub struct Loop {
    pub dev: PathBuf,
    mounts: Vec<PathBuf>,
    swaps: Vec<PathBuf>,
    partitions: bool,
}

impl Loop {
    /// Attach `image` to a free loop device; `None` (after printing why) when not root or
    /// `losetup` is missing or refuses.
    pub fn attach(image: &Path, test: &str) -> Option<Loop> {
        if !is_root() {
            eprintln!("SKIP {test}: needs root (loop devices, mount)");
            return None;
        }
        let mut last = String::new();
        // Another test or program may take the free device first: try again.
        for _ in 0..5 {
            match run(
                "losetup",
                &["--find".as_ref(), "--show".as_ref(), image.as_os_str()],
            ) {
                Ok(dev) => {
                    return Some(Loop {
                        dev: PathBuf::from(dev),
                        mounts: Vec::new(),
                        swaps: Vec::new(),
                        partitions: false,
                    })
                }
                Err(e) => last = e,
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        eprintln!("SKIP {test}: no loop device ({last})");
        None
    }

    /// The node of partition `n` (`/dev/loop3p1`).
    pub fn part(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}p{n}", self.dev.display()))
    }

    /// Tell the kernel about the partition table in the image (`partx -u`, which also works
    /// where the kernel has no partition table parsers of its own).
    pub fn add_partitions(&mut self) {
        self.partitions = true;
        must("partx", &["-u", self.dev.to_str().unwrap()]);
    }

    /// Mount `dev` read-only on `dir` (read-only: the kernel then writes nothing to it, so
    /// its bytes can be compared before and after).
    pub fn mount_ro(&mut self, dev: &Path, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        must(
            "mount",
            &["-o", "ro", dev.to_str().unwrap(), dir.to_str().unwrap()],
        );
        self.mounts.push(dir.to_path_buf());
    }

    /// `mkswap` and `swapon` `dev`.
    pub fn swap_on(&mut self, dev: &Path) {
        must("mkswap", &["-q", dev.to_str().unwrap()]);
        must("swapon", &[dev.to_str().unwrap()]);
        self.swaps.push(dev.to_path_buf());
    }

    /// Undo the mounts and swaps now (the loop device stays until drop).
    pub fn release(&mut self) {
        for m in self.mounts.drain(..).rev() {
            if run("umount", &[m.as_os_str()]).is_err() {
                let _ = run("umount", &["-l".as_ref(), m.as_os_str()]);
            }
        }
        for s in self.swaps.drain(..) {
            let _ = run("swapoff", &[s.as_os_str()]);
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.release();
        // Partitions added with partx outlive the loop device unless deleted (the kernel
        // drops them on detach only for devices attached with --partscan).
        if self.partitions {
            let _ = run("partx", &["-d".as_ref(), self.dev.as_os_str()]);
        }
        if let Err(e) = run("losetup", &["-d".as_ref(), self.dev.as_os_str()]) {
            eprintln!("warning: {e}");
        }
    }
}
