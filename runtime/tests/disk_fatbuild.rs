//! `fatbuild::build` checked by independent readers on sparse image files: `fsck.fat -n`,
//! `mdir` (long names), `mcopy` (every file's bytes), `mlabel`, and our `fatfs`-based reader.
//! A missing tool prints `SKIP <tool>` and the check is skipped, unless
//! `TSFORGE_REQUIRE_TOOLS=1` (CI), where it fails.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use tsforge_runtime::disk::fat::{self, FatKind};
use tsforge_runtime::disk::fatbuild::{self, BuildStats};
use tsforge_runtime::disk::{Disk, MIB};

use crate::common::tool;
use crate::common::used::used_image;

/// Run a tool; returns (success, stdout bytes, stderr text).
fn run(prog: &Path, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(prog)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deterministic bytes.
fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The varied tree: relative path → content (directories implied; `empty dir` is extra).
fn make_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut add = |p: &str, data: Vec<u8>| {
        files.insert(p.to_string(), data);
    };
    add("README.TXT", b"upper-case 8.3 name".to_vec());
    add("Readme.txt", b"mixed case".to_vec());
    add("readme.txt", b"lower case".to_vec());
    add("a long name with spaces.text", body(1, 5000));
    add("Ünïcödé naïve café ✓ 日本語.txt", body(2, 777));
    add("empty.bin", Vec::new());
    add(".hidden", b"dot file".to_vec());
    add("big/three MiB.bin", body(3, 3 * MIB as usize));
    add("a/b/c/d/e/deep file 5 levels.txt", body(4, 12_345));
    add("a/b/c/d/e/EMPTY", Vec::new());
    add("a/b/x.tar.gz", body(5, 100));
    for i in 0..300 {
        add(
            &format!("many/file number {i:03} with a long name.dat"),
            body(100 + i, (i as usize * 37) % 2000),
        );
    }
    for (p, data) in &files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    std::fs::create_dir_all(root.join("empty dir")).unwrap();
    files
}

/// Copy the partition out (fsck.fat has no offset option) and run `fsck.fat -n` on it.
fn fsck(img: &Path, start: u64, len: u64, dir: &Path) {
    let Some(fsck) = tool("fsck.fat") else {
        return;
    };
    let mut f = std::fs::File::open(img).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut part = vec![0u8; len as usize];
    f.read_exact(&mut part).unwrap();
    let out = dir.join("part.img");
    std::fs::write(&out, &part).unwrap();
    let (ok, stdout, stderr) = run(&fsck, &["-n", "-v", out.to_str().unwrap()]);
    let text = format!("{}{stderr}", String::from_utf8_lossy(&stdout));
    assert!(ok, "fsck.fat -n: {text}");
    assert!(!text.contains("Dirty bit"), "{text}");
    std::fs::remove_file(&out).unwrap();
}

fn check_built(kind: Option<FatKind>, part_len: u64, want_kind: FatKind) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    let files = make_tree(&src);
    let img = dir.path().join("d.img");
    let disk = used_image(&img, part_len + 2 * MIB).unwrap();
    let stats = fatbuild::build(disk.range(MIB, part_len).unwrap(), &src, "Built", kind).unwrap();
    let bytes: u64 = files.values().map(|d| d.len() as u64).sum();
    assert_eq!(
        stats,
        BuildStats {
            files: files.len() as u64,
            dirs: 0, // counted below
            bytes
        }
        .with_dirs(count_dirs(&src))
    );
    let imgs = format!("{}@@{}", img.display(), MIB);

    fsck(&img, MIB, part_len, dir.path());
    if let Some(mlabel) = tool("mlabel") {
        let (ok, out, err) = run(&mlabel, &["-s", "-i", &imgs, "::"]);
        assert!(ok, "{err}");
        assert!(String::from_utf8_lossy(&out).contains("BUILT"), "{err}");
    }
    if let Some(mdir) = tool("mdir") {
        for (d, names) in [
            (
                "::/",
                vec![
                    "a long name with spaces.text",
                    "Ünïcödé naïve café ✓ 日本語.txt",
                    "Readme.txt",
                    "readme.txt",
                    "empty dir",
                ],
            ),
            (
                "::/many",
                vec![
                    "file number 000 with a long name.dat",
                    "file number 299 with a long name.dat",
                ],
            ),
            ("::/a/b/c/d/e", vec!["deep file 5 levels.txt"]),
        ] {
            let (ok, out, err) = run(&mdir, &["-i", &imgs, d]);
            let text = String::from_utf8_lossy(&out);
            assert!(ok, "mdir {d}: {err}");
            for n in names {
                assert!(text.contains(n), "mdir {d} lacks {n:?}:\n{text}");
            }
        }
    }
    if let Some(mcopy) = tool("mcopy") {
        // Every file by name (names equal but for case share a lookup: checked below).
        for (p, data) in &files {
            if p.eq_ignore_ascii_case("readme.txt") {
                continue;
            }
            let (ok, out, err) = run(&mcopy, &["-n", "-i", &imgs, &format!("::/{p}"), "-"]);
            assert!(ok, "mcopy {p}: {err}");
            assert!(out == *data, "mcopy {p}: content differs");
        }
        // The whole tree at once: each file under its own long name.
        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        let (ok, _, err) = run(
            &mcopy,
            &[
                "-s",
                "-n",
                "-i",
                &imgs,
                "::/*",
                &format!("{}/", back.display()),
            ],
        );
        assert!(ok, "mcopy -s: {err}");
        for (p, data) in &files {
            let got = std::fs::read(back.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(got == *data, "mcopy -s {p}: content differs");
        }
        assert!(back.join("empty dir").is_dir());
    }

    // Our own reader (fatfs).
    let fs = fat::open(disk.range(MIB, part_len).unwrap()).unwrap();
    assert_eq!(fs.kind(), Some(want_kind));
    assert_eq!(fs.label(), "BUILT");
    let root: Vec<String> = fs.list("/").unwrap().into_iter().map(|e| e.name).collect();
    assert!(
        root.contains(&"Ünïcödé naïve café ✓ 日本語.txt".to_string()),
        "{root:?}"
    );
    assert_eq!(fs.list("/many").unwrap().len(), 300);
    for (p, data) in &files {
        if p.eq_ignore_ascii_case("readme.txt") {
            continue;
        }
        assert!(
            fs.read_file(p).unwrap() == *data,
            "fatfs {p}: content differs"
        );
    }
    let deep = fs.list("a/b/c/d/e").unwrap();
    let names: Vec<_> = deep.iter().map(|e| (e.name.as_str(), e.size)).collect();
    assert_eq!(names, [("EMPTY", 0), ("deep file 5 levels.txt", 12_345)]);
    fs.close().unwrap();
}

trait WithDirs {
    fn with_dirs(self, n: u64) -> Self;
}
impl WithDirs for BuildStats {
    fn with_dirs(mut self, n: u64) -> Self {
        self.dirs = n;
        self
    }
}

fn count_dirs(root: &Path) -> u64 {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| 1 + count_dirs(&p))
        .sum()
}

#[test]
fn fat32_tree_passes_fsck_mtools_and_fatfs() {
    // 64 MiB: 512-byte clusters, so the 300-file directory spans many clusters.
    check_built(Some(FatKind::Fat32), 64 * MIB, FatKind::Fat32);
}

#[test]
fn fat16_tree_by_default_on_a_small_partition() {
    check_built(None, 40 * MIB, FatKind::Fat16);
}

#[test]
fn too_small_partition_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big.bin"), body(9, 6 * MIB as usize)).unwrap();
    let img = dir.path().join("d.img");
    let disk = Disk::create_image(&img, 6 * MIB).unwrap();
    let err = fatbuild::build(disk.range(MIB, 4 * MIB).unwrap(), &src, "x", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not fit") && err.contains("missing"),
        "{err}"
    );
    assert!(
        std::fs::read(&img).unwrap().iter().all(|&b| b == 0),
        "nothing may be written"
    );
    // A name FAT cannot hold: refused, nothing written either.
    std::fs::remove_file(src.join("big.bin")).unwrap();
    std::fs::write(src.join("what?.txt"), b"x").unwrap();
    let err = fatbuild::build(disk.range(MIB, 4 * MIB).unwrap(), &src, "x", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be stored in FAT"), "{err}");
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0));
}

#[cfg(unix)]
#[test]
fn special_files_and_non_utf8_names_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    let disk = Disk::create_image(&img, 8 * MIB).unwrap();
    let src = dir.path().join("bad name");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), b"x").unwrap();
    let err = fatbuild::build(disk.range(MIB, 4 * MIB).unwrap(), &src, "x", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid UTF-8"), "{err}");
    let src = dir.path().join("fifo");
    std::fs::create_dir(&src).unwrap();
    let fifo = src.join("pipe");
    let ok = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        let err = fatbuild::build(disk.range(MIB, 4 * MIB).unwrap(), &src, "x", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a file or directory"), "{err}");
    }
}
