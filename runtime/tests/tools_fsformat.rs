//! ext4 and NTFS formatted into a range of a disk image file, checked by e2fsprogs and
//! ntfs-3g's own readers; the bytes around the range stay as they were.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use crate::common::have;
use tsforge_runtime::fsformat::{format_image_range, FsKind};
use tsforge_runtime::tools::{self, Tool};

const MIB: u64 = 1 << 20;

fn have_program(name: &str) -> bool {
    if tools::which(name).is_some() {
        return true;
    }
    eprintln!("SKIP {name}");
    false
}

/// A sparse 256 MiB disk image with a 1 MiB sentinel of 0xee just before `offset` and just
/// after `offset + len`.
fn disk(path: &Path, offset: u64, len: u64) {
    let mut f = File::create(path).unwrap();
    f.set_len(256 * MIB).unwrap();
    for at in [offset - MIB, offset + len] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&vec![0xee; MIB as usize]).unwrap();
    }
}

fn sentinels_intact(path: &Path, offset: u64, len: u64) {
    let mut f = File::open(path).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        256 * MIB,
        "image size unchanged"
    );
    for at in [offset - MIB, offset + len] {
        let mut b = vec![0u8; MIB as usize];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        assert!(
            b.iter().all(|x| *x == 0xee),
            "bytes at {at} outside the range were changed"
        );
    }
}

fn extract(path: &Path, offset: u64, len: u64, out: &Path) {
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut o = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(out)
        .unwrap();
    std::io::copy(&mut f.take(len), &mut o).unwrap();
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn ext4_in_a_range_checks_clean() {
    if !have(Tool::MkfsExt4) || !have_program("e2fsck") || !have_program("dumpe2fs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let (offset, len) = (MIB, 128 * MIB);
    disk(&img, offset, len);
    format_image_range(
        &img,
        offset,
        len,
        FsKind::parse("ext4").unwrap(),
        "tsroot",
        true,
    )
    .unwrap();
    sentinels_intact(&img, offset, len);
    let part = dir.path().join("part.img");
    extract(&img, offset, len, &part);
    run(Command::new(tools::which("e2fsck").unwrap())
        .arg("-fn")
        .arg(&part));
    let header = run(Command::new(tools::which("dumpe2fs").unwrap())
        .arg("-h")
        .arg(&part));
    assert!(
        header.contains("Filesystem volume name:   tsroot"),
        "{header}"
    );
    let field = |name: &str| -> u64 {
        let line = header
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {header}"));
        line[name.len()..].trim().parse().unwrap()
    };
    assert_eq!(
        field("Block count:") * field("Block size:"),
        len,
        "the file system fills the range"
    );
}

#[test]
fn ntfs_in_a_range_is_valid_and_labelled() {
    if !have(Tool::MkfsNtfs) || !have_program("ntfsinfo") || !have_program("ntfsfix") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let (offset, len) = (129 * MIB, 64 * MIB);
    disk(&img, offset, len);
    format_image_range(
        &img,
        offset,
        len,
        FsKind::parse("NTFS").unwrap(),
        "Windows",
        true,
    )
    .unwrap();
    sentinels_intact(&img, offset, len);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "the temporary volume was removed");

    let part = dir.path().join("part.img");
    extract(&img, offset, len, &part);
    let boot = std::fs::read(&part).unwrap();
    assert_eq!(&boot[3..11], b"NTFS    ");
    let hidden = u32::from_le_bytes(boot[0x1c..0x20].try_into().unwrap());
    assert_eq!(
        u64::from(hidden),
        offset / 512,
        "boot sector records the start sector"
    );
    let info = run(Command::new(tools::which("ntfsinfo").unwrap())
        .arg("-m")
        .arg(&part));
    assert!(info.contains("Volume Name: Windows"), "{info}");
    run(Command::new(tools::which("ntfsfix").unwrap())
        .arg("-n")
        .arg(&part));
}

#[test]
fn a_range_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    File::create(&img).unwrap().set_len(16 * MIB).unwrap();
    let e = format_image_range(&img, MIB, 16 * MIB, FsKind::Ext4, "x", true).unwrap_err();
    assert!(
        format!("{e:#}").contains("past the end of the image file"),
        "{e:#}"
    );
}
