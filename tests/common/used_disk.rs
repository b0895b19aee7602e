//! Disks as real ones are: never blank. Image files filled with random bytes before tsforge
//! partitions and formats them, and checks of what it wrote with the independent tools
//! (`fsck.fat -n`, `mcopy`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

/// Creates `path` as `size` bytes from `/dev/urandom`.
pub fn random_disk(path: &Path, size: u64) {
    let mut out = std::fs::File::create(path).unwrap();
    let mut src = std::fs::File::open("/dev/urandom").unwrap().take(size);
    assert_eq!(std::io::copy(&mut src, &mut out).unwrap(), size);
}

/// A disk image too large to fill (terabytes, sparse): random bytes over its first and last
/// 64 MiB, where partition tables and file system headers go, zeros between.
pub fn random_ends_disk(path: &Path, size: u64) {
    use std::io::Write;
    let ends = 64u64 << 20;
    assert!(size >= 2 * ends);
    let mut out = std::fs::File::create(path).unwrap();
    out.set_len(size).unwrap();
    let mut junk = vec![0u8; ends as usize];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut junk)
        .unwrap();
    out.write_all(&junk).unwrap();
    out.seek(SeekFrom::Start(size - ends)).unwrap();
    out.write_all(&junk).unwrap();
}

/// `fsck.fat -n` on the partition `[start, start + len)` of `disk` (copied out first):
/// `Err(output)` when it finds anything. `None` when fsck.fat is missing (SKIP printed).
pub fn fsck_fat(disk: &Path, start: u64, len: u64) -> Option<Result<(), String>> {
    let fsck = super::tool("fsck.fat")?;
    let part = disk.with_extension(format!("part-{start}"));
    {
        let mut all = std::fs::File::open(disk).unwrap();
        let mut out = std::fs::File::create(&part).unwrap();
        all.seek(SeekFrom::Start(start)).unwrap();
        std::io::copy(&mut (&mut all).take(len), &mut out).unwrap();
    }
    let o = Command::new(fsck).arg("-n").arg(&part).output().unwrap();
    std::fs::remove_file(&part).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // fsck.fat -n exits 0 also when it only mentions an unset free-cluster count in FSInfo
    // (an optional hint), so the exit code is the verdict.
    Some(if o.status.success() {
        Ok(())
    } else {
        Err(text)
    })
}

/// Reads `path` from the FAT partition at byte `start` of `disk` with mtools.
pub fn mcopy(disk: &Path, start: u64, path: &str) -> Option<Result<Vec<u8>, String>> {
    let mcopy = super::tool("mcopy")?;
    let img = format!("{}@@{}", disk.display(), start);
    let o = Command::new(mcopy)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-n", "-i", &img, &format!("::/{path}"), "-"])
        .output()
        .unwrap();
    Some(if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    })
}

/// `dir/d.img`: a used disk of `size` random bytes, partitioned by `tsforge disk partition
/// d.img --table TABLE --part P… --yes` (each of `parts` a `--part` spec); its path.
pub fn partitioned(dir: &Path, size: u64, table: &str, parts: &[&str]) -> std::path::PathBuf {
    let disk = dir.join("d.img");
    random_disk(&disk, size);
    let mut args = vec!["disk", "partition", "d.img", "--table", table];
    for p in parts {
        args.extend(["--part", p]);
    }
    args.push("--yes");
    let (code, out, err) = crate::common::tsforge(dir, &args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    disk
}
