//! Applying tsforge images onto FAT partitions of used disks (image files filled with random
//! bytes first, as real disks are never blank), checked by `fsck.fat -n` and `mcopy`: the file
//! system is consistent and every file reads back, after one apply and after partitioning and
//! applying again on the same disk. Names FAT cannot keep apart are refused before writing.

use std::path::Path;
use tsforge_runtime::disk::{layout, Disk};

use crate::common::data;
use crate::common::fixed_time::tsforge;
use crate::common::used_disk;

/// About 700 files: 60 with long names in the root (the FAT32 root directory grows past its
/// first clusters, where the disk's old bytes are), the rest in nested folders.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..60u32 {
        let size = (i as usize * 977) % 20_000;
        files.push((
            format!("Root file with a long name {i:03}.txt"),
            data::random(size, 1000 + i),
        ));
    }
    for d in 0..8u32 {
        for i in 0..80u32 {
            let size = ((d * 80 + i) as usize * 1543) % 40_000;
            files.push((
                format!("Folder {d}/Sub folder/file number {i:03}.bin"),
                data::random(size, 5000 + d * 100 + i),
            ));
        }
    }
    for (p, bytes) in &files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }
    files
}

fn partitions(disk: &Path) -> Vec<layout::PartitionInfo> {
    let d = Disk::open(disk, false).unwrap();
    layout::read_table(&d).unwrap().unwrap().partitions
}

/// fsck.fat and mcopy agree with what was applied, on every partition given.
fn check(disk: &Path, parts: &[layout::PartitionInfo], files: &[(String, Vec<u8>)]) {
    for p in parts {
        if let Some(r) = used_disk::fsck_fat(disk, p.start, p.len) {
            r.unwrap_or_else(|e| panic!("fsck.fat -n on partition {}: {e}", p.number));
        }
        for (path, bytes) in files {
            let Some(r) = used_disk::mcopy(disk, p.start, path) else {
                return;
            };
            let got = r.unwrap_or_else(|e| panic!("mcopy {path} (partition {}): {e}", p.number));
            assert!(
                &got == bytes,
                "{path} on partition {} reads back differently",
                p.number
            );
        }
    }
}

#[test]
fn apply_onto_used_disks_gives_clean_fat_file_systems() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let files = tree(&d.join("src"));
    let (code, _, err) = tsforge(d, &["capture", "src", "x.tsimg"]);
    assert_eq!(code, 0, "{err}");
    let disk = d.join("d.img");
    used_disk::random_disk(&disk, 160 << 20);
    for round in 1..=2 {
        // The second round partitions and applies again over the first one's file systems.
        let (code, _, err) = tsforge(
            d,
            &[
                "disk",
                "partition",
                "d.img",
                "--table",
                "mbr",
                "--part",
                "type=basic,size=48MiB,fs=fat16",
                "--part",
                "type=basic,size=rest,fs=fat32",
                "--yes",
            ],
        );
        assert_eq!(code, 0, "round {round}: {err}");
        for n in ["1", "2"] {
            let (code, _, err) = tsforge(d, &["apply", "x.tsimg", &format!("d.img:{n}")]);
            assert_eq!(code, 0, "round {round}, partition {n}: {err}");
        }
        check(&disk, &partitions(&disk), &files);
    }
}

fn sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// `d/d.img`: a 64 MiB disk of random bytes with one FAT16 partition made by tsforge.
fn fat16_disk(d: &Path) -> std::path::PathBuf {
    used_disk::partitioned(d, 64 << 20, "mbr", &["type=basic,size=rest,fs=fat16"])
}

#[test]
fn names_that_are_one_name_on_fat_are_refused_before_writing() {
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "case",
            "readme.txt and README.TXT",
            &["readme.txt", "README.TXT"],
        ),
        ("dirs", "d/a.txt and D/b.txt", &["d/a.txt", "D/b.txt"]),
        ("dot", "x. and x", &["x.", "x"]),
    ];
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let disk = fat16_disk(d);
    let before = sha(&disk);
    for (name, what, paths) in cases {
        let src = d.join(name);
        for p in paths {
            let full = src.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, p.as_bytes()).unwrap();
        }
        let img = format!("{name}.tsimg");
        let (code, _, err) = tsforge(d, &["capture", name, &img]);
        assert_eq!(code, 0, "{what}: {err}");
        let (code, _, err) = tsforge(d, &["apply", &img, "d.img:1"]);
        assert_eq!(code, 2, "{what}: {err}");
        // Both paths named (directories by their folded parent: d and D).
        let first = paths[0].split('/').next().unwrap();
        let second = paths[1].split('/').next().unwrap();
        assert!(
            err.contains("same name on FAT") && err.contains(first) && err.contains(second),
            "{what}: {err}"
        );
        assert!(sha(&disk) == before, "{what}: the disk changed");
        // A folder keeps both.
        let (code, _, err) = tsforge(d, &["apply", &img, &format!("out-{name}")]);
        assert_eq!(code, 0, "{what}: {err}");
    }
    let parts = partitions(&disk);
    if let Some(r) = used_disk::fsck_fat(&disk, parts[0].start, parts[0].len) {
        r.unwrap();
    }
}

/// A Linux name may hold characters a FAT name may not (`\\`, `:`, `*`, `?`, …: systemd's
/// escaped unit names hold `\\x2d`). Applying such an image onto FAT is refused before anything
/// is written, naming the path and the character; a folder takes it.
#[test]
fn names_fat_cannot_hold_are_refused_before_writing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let disk = fat16_disk(d);
    let before = sha(&disk);
    for (case, name, ch) in [
        ("backslash", "system-systemd\\x2dcryptsetup.slice", "'\\\\'"),
        ("colon", "a:b", "':'"),
        ("star", "x*", "'*'"),
    ] {
        let src = d.join(case);
        std::fs::create_dir_all(src.join("units")).unwrap();
        std::fs::write(src.join("units").join(name), b"x").unwrap();
        let img = format!("{case}.tsimg");
        let (code, _, err) = tsforge(d, &["capture", case, &img]);
        assert_eq!(code, 0, "{case}: {err}");
        let (code, _, err) = tsforge(d, &["apply", &img, "d.img:1"]);
        assert_eq!(code, 2, "{case}: {err}");
        assert!(
            err.contains(&format!("units/{name}"))
                && err.contains(ch)
                && err.contains("cannot be part of a name on FAT"),
            "{case}: {err}"
        );
        assert!(sha(&disk) == before, "{case}: the disk changed");
        let (code, _, err) = tsforge(d, &["apply", &img, &format!("out-{case}")]);
        assert_eq!(code, 0, "{case}: {err}");
        assert!(d.join(format!("out-{case}/units/{name}")).is_file());
    }
}

#[test]
fn a_damaged_fat_is_not_written_into() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let disk = d.join("d.img");
    used_disk::random_disk(&disk, 64 << 20);
    let (code, _, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            "d.img",
            "--table",
            "mbr",
            "--part",
            "type=basic,size=rest,fs=fat16",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir_all(d.join("src/tsforge")).unwrap();
    std::fs::write(d.join("src/a.txt"), b"a").unwrap();
    std::fs::write(d.join("src/tsforge/media.toml"), b"name = \"x\"\n").unwrap();
    let (code, _, err) = tsforge(d, &["capture", "src", "x.tsimg"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tsforge(d, &["apply", "x.tsimg", "d.img:1"]);
    assert_eq!(code, 0, "{err}");
    // Old bytes where the root directory's second entry is: a name FAT forbids.
    let part = &partitions(&disk)[0];
    let mut bs = [0u8; 512];
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&disk).unwrap();
        f.seek(SeekFrom::Start(part.start)).unwrap();
        f.read_exact(&mut bs).unwrap();
    }
    let g = tsforge_runtime::disk::fat::Geometry::parse_boot_sector(&bs).unwrap();
    let mut entry = [0u8; 32];
    entry[..11].copy_from_slice(b"A*?<>   TXT");
    entry[11] = 0x20;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&disk)
            .unwrap();
        // The first free slot of the root directory, after what the apply wrote.
        let root = part.start + g.root_dir_start();
        let mut slot = [0u8; 32];
        let free = (0..512u64)
            .find(|i| {
                f.read_exact_at(&mut slot, root + i * 32).unwrap();
                slot[0] == 0
            })
            .unwrap();
        f.write_all_at(&entry, root + free * 32).unwrap();
    }
    let before = sha(&disk);
    let (code, _, err) = tsforge(d, &["apply", "x.tsimg", "d.img:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("damaged FAT file system") && err.contains("invalid short name"),
        "{err}"
    );
    assert!(sha(&disk) == before, "the damaged partition was written to");
    // Read as a medium (it holds tsforge/media.toml): named as damaged, not read.
    let (code, _, err) = tsforge(d, &["media", "verify", "d.img"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("damaged FAT file system"), "{err}");
}

/// FAT has no symbolic links: an image holding one (here an absolute link, which images now
/// carry verbatim) is refused onto a FAT partition with an error naming the link, never
/// dropped silently; a folder takes it.
#[cfg(unix)]
#[test]
fn a_link_is_refused_onto_fat_and_named() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let disk = d.join("d.img");
    used_disk::random_disk(&disk, 64 << 20);
    let (code, _, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            "d.img",
            "--table",
            "mbr",
            "--part",
            "type=basic,size=rest,fs=fat16",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir_all(d.join("src/etc")).unwrap();
    std::fs::write(d.join("src/a.txt"), b"a").unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/ssh.service",
        d.join("src/etc/ssh.service"),
    )
    .unwrap();
    let (code, _, err) = tsforge(d, &["capture", "src", "img.tsimg"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tsforge(d, &["apply", "img.tsimg", "d.img:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("etc/ssh.service") && err.contains("FAT cannot hold symbolic links"),
        "{err}"
    );
    let (code, _, err) = tsforge(d, &["apply", "img.tsimg", "out"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_link(d.join("out/etc/ssh.service")).unwrap(),
        Path::new("/lib/systemd/system/ssh.service")
    );
}
