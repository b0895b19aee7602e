//! Small helpers shared by the whole workspace: hex encoding, replacing a file atomically,
//! buffer sizes, `SOURCE_DATE_EPOCH`, and the progress line of long copies.
//!
//! Each used to be written out again where it was needed (hex five times, the atomic write in
//! several shapes, `SOURCE_DATE_EPOCH` parsed twice, ...), with small drifts between the copies.
//! This is the bottom layer: it imports no other tsforge module (only `std` and `anyhow`), so
//! any module of the runtime, and the builder, can use it without a cycle.

use anyhow::{Context as _, Result};
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

/// Size of the buffers between files and compressors: 256 KiB keeps system calls few without
/// holding much memory per thread (8 KiB, std's default, costs measurably on GiB trees).
pub const BUFFER_SIZE: usize = 256 << 10;

/// Size of reads and writes of a whole raw image to a device: 1 MiB, bigger than
/// [`BUFFER_SIZE`] so that a device sees large sequential requests (one buffer, not one per
/// thread, so the size costs nothing).
pub const DEVICE_BUFFER_SIZE: usize = 1 << 20;

/// Lowercase hex of `d`.
pub fn hex(d: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(d.len() * 2);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Replaces `dest` with `data` so that a crash leaves either the old or the new content: the
/// data is written to `tmp` (in the same folder as `dest`, so the rename stays on one file
/// system), synced, renamed over `dest`, and the folder synced so the rename itself is on disk.
/// `durable: false` skips both syncs (a journal whose owner turned fsync off).
pub fn write_atomic(dest: &Path, tmp: &Path, data: &[u8], durable: bool) -> Result<()> {
    {
        let mut f = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)
            .with_context(|| format!("writing {}", tmp.display()))?;
        if durable {
            f.sync_all()
                .with_context(|| format!("syncing {}", tmp.display()))?;
        }
    }
    if durable {
        rename_durable(tmp, dest)
    } else {
        rename(tmp, dest)
    }
}

/// Renames the complete, synced `tmp` over `dest`, then syncs the folder of `dest` so the
/// rename survives a power cut: the last step of an atomic write whose data was streamed.
pub fn rename_durable(tmp: &Path, dest: &Path) -> Result<()> {
    rename(tmp, dest)?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(dir).with_context(|| format!("syncing directory {}", dir.display()))
}

fn rename(tmp: &Path, dest: &Path) -> Result<()> {
    std::fs::rename(tmp, dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))
}

/// Syncs the directory `dir` (its entries: a rename or a new file in it).
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Syncs the directory `dir`: nothing to do on Windows.
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Windows has no directory fsync; NTFS and FAT journal the rename itself as well as they can.
    Ok(())
}

/// `SOURCE_DATE_EPOCH` (seconds since 1970, surrounding blanks ignored) when set and a number.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

/// `SOURCE_DATE_EPOCH` when set, else the current time (seconds since 1970); an error when it
/// is set but not a number, for callers whose output must not silently lose reproducibility.
pub fn source_date_epoch_or_now() -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<i64>().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        }),
        Err(_) => Ok(unix_now()),
    }
}

/// The current time in seconds since 1970 (0 for a clock before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The progress line of a copy started at `started`: "12 of 40 MiB, 2/9 files, 8.1 MiB/s, 4 s
/// left". `first` is what was already there at `started` (a resumed download), not counted in
/// the rate; `files` (done, total) is shown when given.
pub fn rate_line(
    done: u64,
    first: u64,
    total: u64,
    files: Option<(u64, u64)>,
    started: Instant,
) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = done.saturating_sub(first) as f64 / secs;
    let left = if rate > 0.0 && total > done {
        format!(", {} s left", ((total - done) as f64 / rate).ceil() as u64)
    } else {
        String::new()
    };
    let files = match files {
        Some((d, t)) => format!(", {d}/{t} files"),
        None => String::new(),
    };
    format!(
        "{} of {} MiB{files}, {:.1} MiB/s{left}",
        done >> 20,
        total >> 20,
        rate / (1 << 20) as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let tmp = dir.path().join(".f.tmp");
        std::fs::write(&dest, b"old").unwrap();
        write_atomic(&dest, &tmp, b"new", true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn rate_line_format() {
        let l = rate_line(0, 0, 40 << 20, Some((2, 9)), Instant::now());
        assert!(l.starts_with("0 of 40 MiB, 2/9 files, 0.0 MiB/s"), "{l}");
    }
}
