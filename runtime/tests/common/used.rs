//! Disk images as real disks are: never blank.

use std::io::Read;
use std::path::Path;
use tsforge_runtime::disk::Disk;

/// A new disk image of `size` bytes filled with random bytes (`/dev/urandom`), opened for
/// writing: what tsforge meets on a disk that held data before.
pub fn used_image(path: &Path, size: u64) -> anyhow::Result<Disk> {
    {
        let mut out = std::fs::File::create_new(path)?;
        let mut src = std::fs::File::open("/dev/urandom")?.take(size);
        std::io::copy(&mut src, &mut out)?;
    }
    Disk::open(path, true)
}
