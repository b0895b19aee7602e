//! `tsforge disk` through the real binary, on image files: dry run by default, `--yes` writes a
//! table sgdisk accepts, `show --format json` parses, a too-small disk is refused untouched,
//! `copy-in` puts files mtools reads back, `build-fat` is a dry run without `--yes` and builds a
//! file system fsck.fat and mtools accept with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::data::random_bytes;
use crate::common::gpt;
use crate::common::used_disk;
use crate::common::{tool, tsforge};

fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    used_disk::random_disk(&p, size);
    p
}

const GIB: u64 = 1 << 30;

#[test]
fn partition_is_a_dry_run_without_yes_then_writes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 2 * GIB);
    let imgs = img.to_str().unwrap();
    let args = [
        "disk",
        "partition",
        imgs,
        "--table",
        "gpt",
        "--part",
        "name=EFI,type=efi,size=260MiB,fs=fat32,label=SYSTEM",
        "--part",
        "type=msr,size=16MiB",
        "--part",
        "type=basic,size=rest,fs=fat32,label=DATA",
        "--part",
        "type=recovery,size=500MiB,fs=ntfs",
    ];
    let (code, out, err) = tsforge(dir.path(), &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("dry run: nothing was written"), "{err}");
    for want in [
        "EFI system",
        "Microsoft reserved",
        "FAT32 SYSTEM",
        "ntfs (not formatted)",
        "1048576",
    ] {
        assert!(out.contains(want), "plan lacks {want}: {out}");
    }
    let (code, out, _) = tsforge(dir.path(), &["disk", "show", imgs, "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["table"].is_null(), "dry run wrote a table: {out}");

    let mut yes = args.to_vec();
    yes.push("--yes");
    let (code, out, err) = tsforge(dir.path(), &yes);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("need the external formatter"), "{err}");
    let (code, out, _) = tsforge(dir.path(), &["disk", "show", imgs, "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["table"]["kind"], "gpt");
    assert_eq!(v["sector_size"], 512);
    let parts = v["table"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0]["name"], "EFI");
    assert_eq!(parts[0]["start"], 1 << 20);
    let (code, out, _) = tsforge(dir.path(), &["disk", "show", imgs]);
    assert_eq!(code, 0);
    assert!(out.contains("table: gpt"), "{out}");
    if let Some(sgdisk) = tool("sgdisk") {
        let o = Command::new(sgdisk).args(["-v", imgs]).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("No problems found"),
            "{text}"
        );
    }
    if let Some(mlabel) = tool("mlabel") {
        let o = Command::new(mlabel)
            .args(["-s", "-i", &format!("{imgs}@@1048576"), "::"])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&o.stdout).contains("SYSTEM"));
    }

    // copy-in, read back with mcopy.
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("sub/deeper/hello.txt"), b"hello from the host").unwrap();
    let part = parts[2]["number"].to_string();
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "copy-in",
            imgs,
            "--partition",
            &part,
            src.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    if let Some(mcopy) = tool("mcopy") {
        let start = parts[2]["start"].as_u64().unwrap();
        let o = Command::new(mcopy)
            .args([
                "-i",
                &format!("{imgs}@@{start}"),
                "::/sub/deeper/hello.txt",
                "-",
            ])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert_eq!(o.stdout, b"hello from the host");
    }
}

#[test]
fn too_small_disk_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("small.img");
    let pattern: Vec<u8> = (0..(64u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&img, &pattern).unwrap();
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "partition",
            img.to_str().unwrap(),
            "--table",
            "mbr",
            "--part",
            "size=40MiB,fs=fat16,active",
            "--part",
            "size=40MiB",
            "--yes",
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("partition 2") && err.contains("does not fit"),
        "{err}"
    );
    assert!(std::fs::read(&img).unwrap() == pattern, "the image changed");
    let (code, _, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "partition",
            img.to_str().unwrap(),
            "--table",
            "gpt",
            "--part",
            "type=bogus,size=1MiB",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown partition type"), "{err}");
}

#[test]
fn list_runs_and_json_parses() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = tsforge(dir.path(), &["disk", "list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.is_array());
    let (code, _, err) = tsforge(dir.path(), &["disk", "list"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn build_fat_is_a_dry_run_without_yes_then_builds() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 80 << 20);
    let imgs = img.to_str().unwrap();
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "partition",
            imgs,
            "--table",
            "mbr",
            "--part",
            "size=rest,type=0x0c",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("EFI/Boot")).unwrap();
    std::fs::write(src.join("EFI/Boot/bootx64.efi"), b"not really a loader").unwrap();
    let before = std::fs::read(&img).unwrap();
    let args = [
        "disk",
        "build-fat",
        imgs,
        "--partition",
        "1",
        src.to_str().unwrap(),
        "--label",
        "System",
        "--fat32",
    ];
    let (code, out, err) = tsforge(dir.path(), &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("would replace everything in partition 1"),
        "{out}"
    );
    assert!(err.contains("dry run"), "{err}");
    assert!(std::fs::read(&img).unwrap() == before, "a dry run wrote");
    let mut yes = args.to_vec();
    yes.push("--yes");
    let (code, out, err) = tsforge(dir.path(), &yes);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("built FAT32 in partition 1: 1 files"), "{err}");
    if let Some(mcopy) = tool("mcopy") {
        let o = Command::new(mcopy)
            .args([
                "-n",
                "-i",
                &format!("{imgs}@@1048576"),
                "::/efi/boot/BOOTX64.EFI",
                "-",
            ])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert_eq!(o.stdout, b"not really a loader");
    }
    if let Some(mlabel) = tool("mlabel") {
        let o = Command::new(mlabel)
            .args(["-s", "-i", &format!("{imgs}@@1048576"), "::"])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&o.stdout).contains("SYSTEM"));
    }
}

#[test]
fn build_fat_is_reproducible_with_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("a long directory name/sub")).unwrap();
    std::fs::write(src.join("a long directory name/sub/file one.txt"), b"one").unwrap();
    std::fs::write(src.join("BOOT.INI"), vec![7u8; 70_000]).unwrap();
    let mut parts = Vec::new();
    // Two copies of one used disk: the bytes outside the file system's clusters are the
    // disk's own, so the same starting disk is what makes the outputs comparable.
    let first = image(dir.path(), "one.img", 40 << 20);
    std::fs::copy(&first, dir.path().join("two.img")).unwrap();
    for name in ["one.img", "two.img"] {
        let img = dir.path().join(name);
        let imgs = img.to_str().unwrap();
        let (code, out, err) = tsforge(
            dir.path(),
            &[
                "disk",
                "partition",
                imgs,
                "--table",
                "mbr",
                "--part",
                "size=rest,type=0x0e",
                "--yes",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        let out = Command::new(env!("CARGO_BIN_EXE_tsforge"))
            .args(["disk", "build-fat", imgs, "--partition", "1"])
            .arg(&src)
            .args(["--label", "REPRO", "--yes"])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&img).unwrap();
        parts.push(bytes[1 << 20..].to_vec());
    }
    assert!(parts[0] == parts[1], "two builds of the same tree differ");
}

/// `sfdisk -d` of an image (None when sfdisk is missing), for comparing tables.
fn sfdisk_dump(img: &Path) -> Option<String> {
    let sfdisk = tool("sfdisk")?;
    let o = Command::new(sfdisk).arg("-d").arg(img).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `sgdisk -v` finds no problem (skipped when sgdisk is missing).
fn sgdisk_clean(img: &Path) {
    if let Some(sgdisk) = tool("sgdisk") {
        let o = Command::new(sgdisk).arg("-v").arg(img).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("No problems found"),
            "{text}"
        );
    }
}

/// Item 6 of issue 19: a layout whose last FAT32 partition is too small for FAT32 passed the
/// dry run, then `--yes` destroyed the old table before failing. Every file system is now
/// checked before the first write: the dry run and `--yes` fail alike, and the disk (random
/// bytes under a valid table) is left byte for byte as it was.
#[test]
fn partition_checks_file_system_limits_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("used.img");
    std::fs::write(&img, random_bytes(100 << 20, 19)).unwrap();
    let imgs = img.to_str().unwrap();
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "partition",
            imgs,
            "--table",
            "gpt",
            "--part",
            "name=EFI,type=efi,size=40MiB,fs=fat32,label=SYSTEM",
            "--part",
            "size=rest,fs=fat16,label=DATA",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    sgdisk_clean(&img);
    let before = std::fs::read(&img).unwrap();
    let table_before = sfdisk_dump(&img);

    let bad_layouts: [(&[&str], &[&str]); 4] = [
        (
            &["size=70MiB,fs=fat32", "size=26MiB,fs=fat32,label=DATA"],
            &["partition 2", "26 MiB is too small for FAT32"],
        ),
        (
            &["size=10MiB,fs=fat16", "size=2MiB,fs=fat16"],
            &["partition 2", "too small for FAT16"],
        ),
        (
            &["size=66MiB,fs=fat16", "size=rest,fs=fat32"],
            &["partition 2", "too small for FAT32"],
        ),
        (
            &["size=10MiB,fs=fat", "size=rest,fs=fat16,label=a/b"],
            &["label", "\"a/b\""],
        ),
    ];
    for (parts, want) in bad_layouts {
        let mut args = vec!["disk", "partition", imgs, "--table", "gpt"];
        for p in parts {
            args.extend(["--part", p]);
        }
        let (dry_code, dry_out, dry_err) = tsforge(dir.path(), &args);
        args.push("--yes");
        let (code, out, err) = tsforge(dir.path(), &args);
        assert_eq!(code, 2, "{parts:?}: {out}{err}");
        assert_eq!(
            dry_code, 2,
            "{parts:?}: the dry run passed: {dry_out}{dry_err}"
        );
        for w in want {
            assert!(err.contains(w), "{parts:?}: {err} lacks {w}");
        }
        assert_eq!(dry_err, err, "{parts:?}: the dry run says something else");
        assert!(
            std::fs::read(&img).unwrap() == before,
            "{parts:?}: the disk was written"
        );
    }
    assert_eq!(sfdisk_dump(&img), table_before);
    sgdisk_clean(&img);
}

/// A FAT file system holds at most 2 TiB (512-byte sectors): a 3 TiB sparse disk whose
/// `rest` partition would be FAT32 is refused before its old table is touched.
#[test]
fn partition_refuses_fat_beyond_2_tib_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.img");
    used_disk::random_ends_disk(&img, 3 << 40);
    let imgs = img.to_str().unwrap();
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "partition",
            imgs,
            "--table",
            "gpt",
            "--part",
            "size=1GiB",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let ends = |p: &Path| {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(p).unwrap();
        let mut head = vec![0u8; 1 << 20];
        f.read_exact(&mut head).unwrap();
        f.seek(SeekFrom::End(-(1 << 20))).unwrap();
        let mut tail = vec![0u8; 1 << 20];
        f.read_exact(&mut tail).unwrap();
        (head, tail)
    };
    let before = ends(&img);
    let table_before = sfdisk_dump(&img);
    for yes in [false, true] {
        let mut args = vec![
            "disk",
            "partition",
            imgs,
            "--table",
            "gpt",
            "--part",
            "size=260MiB,fs=fat32",
            "--part",
            "size=rest,fs=fat32",
        ];
        if yes {
            args.push("--yes");
        }
        let (code, out, err) = tsforge(dir.path(), &args);
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains("partition 2") && err.contains("at most 2 TiB"),
            "{err}"
        );
    }
    assert!(ends(&img) == before, "the table areas were written");
    assert_eq!(sfdisk_dump(&img), table_before);
    sgdisk_clean(&img);
}

/// `fs=` names a file system tsforge knows; a typo is an error, not "not formatted".
#[test]
fn partition_refuses_unknown_file_systems() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 64 << 20);
    let (code, _, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "partition",
            img.to_str().unwrap(),
            "--table",
            "gpt",
            "--part",
            "size=rest,fs=fat23",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown file system \"fat23\""), "{err}");
}

/// Item 7 of issue 19: GPT headers with valid CRCs and an entry size of 0 or 2^30 (or 2^32-1
/// entries) panicked `disk show`, `disk partition --yes` and `apply raw DISK:1` inside the
/// `gpt` crate. Now: show and apply fail with a clear "damaged GPT" error naming the field,
/// partition replaces the damaged table with one sgdisk accepts, and a damaged primary with a
/// good backup is read from the backup and reported.
#[test]
fn damaged_gpt_headers_are_reported_and_can_be_repartitioned() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.img");
    std::fs::write(&good, random_bytes(64 << 20, 7)).unwrap();
    let (code, out, err) = tsforge(
        dir.path(),
        &[
            "disk",
            "partition",
            good.to_str().unwrap(),
            "--table",
            "gpt",
            "--part",
            "size=20MiB",
            "--part",
            "size=rest",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(dir.path().join("raw.bin"), random_bytes(1 << 20, 8)).unwrap();
    let raw = dir.path().join("raw.bin");
    for (what, offset, value, want) in [
        (
            "entry size 0",
            84,
            0u32,
            "partition entry size 0 is invalid",
        ),
        (
            "entry size 2^30",
            84,
            1 << 30,
            "entry size 1073741824 is not supported",
        ),
        (
            "2^32-1 entries",
            80,
            u32::MAX,
            "4294967295 partition entries",
        ),
    ] {
        let img = dir.path().join("bad.img");
        std::fs::copy(&good, &img).unwrap();
        let imgs = img.to_str().unwrap();
        gpt::patch_both(&img, offset, &value.to_le_bytes());
        let (code, out, err) = tsforge(dir.path(), &["disk", "show", imgs]);
        assert_eq!(code, 2, "{what}: {out}{err}");
        assert!(
            err.contains("damaged GPT") && err.contains(want) && !err.contains("panicked"),
            "{what}: {err}"
        );
        let target = format!("{imgs}:1");
        let (code, out, err) = tsforge(dir.path(), &["apply", raw.to_str().unwrap(), &target]);
        assert_eq!(code, 2, "{what}: {out}{err}");
        assert!(
            err.contains("damaged GPT") && err.contains(want),
            "{what}: {err}"
        );
        let (code, out, err) = tsforge(
            dir.path(),
            &[
                "disk",
                "partition",
                imgs,
                "--table",
                "gpt",
                "--part",
                "size=rest,fs=fat32",
                "--yes",
            ],
        );
        assert_eq!(code, 0, "{what}: {out}{err}");
        assert!(
            out.contains("replaces: a damaged partition table"),
            "{what}: {out}"
        );
        sgdisk_clean(&img);
        let (code, out, _) = tsforge(dir.path(), &["disk", "show", imgs, "--format", "json"]);
        assert_eq!(code, 0, "{what}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["table"]["partitions"].as_array().unwrap().len(),
            1,
            "{what}"
        );
        assert!(v["table"]["damaged"].is_null(), "{what}: {out}");
    }

    // Only the primary damaged: the backup is read, and the damage is said.
    let img = dir.path().join("primary.img");
    std::fs::copy(&good, &img).unwrap();
    gpt::patch_header(&img, 1, 84, &0u32.to_le_bytes());
    let (code, out, err) = tsforge(dir.path(), &["disk", "show", img.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("damaged: primary GPT header: partition entry size 0 is invalid"),
        "{out}"
    );
    let (_, good_out, _) = tsforge(
        dir.path(),
        &["disk", "show", good.to_str().unwrap(), "--format", "json"],
    );
    let (_, out, _) = tsforge(
        dir.path(),
        &["disk", "show", img.to_str().unwrap(), "--format", "json"],
    );
    let a: serde_json::Value = serde_json::from_str(&good_out).unwrap();
    let b: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["table"]["partitions"], b["table"]["partitions"]);
}
