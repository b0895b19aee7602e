//! The disk layer's output checked by independent tools, on sparse image files (no root):
//! `sgdisk -v`/`-p`, `fdisk -l`, `sfdisk --dump`/`--json`, `fsck.fat -n`, `mdir`, `mcopy`,
//! `mlabel`. A missing tool prints `SKIP <tool>` and the check is skipped, unless
//! `TSFORGE_REQUIRE_TOOLS=1` (CI), where it fails.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tsforge_runtime::disk::fat::{self, FatKind};
use tsforge_runtime::disk::layout::{
    self, PartKind, PartitionSpec, PlannedPartition, SizeSpec, TableKind,
};
use tsforge_runtime::disk::{Disk, GIB, MIB};

use crate::common::tool;
use crate::common::used::used_image;

/// Run a tool; returns (success, stdout + stderr).
fn run(prog: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(prog)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn spec(name: &str, kind: PartKind, size: SizeSpec) -> PartitionSpec {
    PartitionSpec {
        name: name.into(),
        kind,
        size,
        active: false,
    }
}

/// `fsck.fat -n` on a partition, copied out with `dd` (fsck.fat has no offset option).
fn fsck_partition(img: &Path, p: &PlannedPartition, dir: &Path) {
    let (Some(fsck), Some(dd)) = (tool("fsck.fat"), tool("dd")) else {
        return;
    };
    let part = dir.join(format!("part{}.img", p.number));
    let (ok, out) = run(
        &dd,
        &[
            &format!("if={}", img.display()),
            &format!("of={}", part.display()),
            "bs=1M",
            &format!("skip={}", p.start / MIB),
            &format!("count={}", p.len / MIB),
            "conv=sparse",
            "status=none",
        ],
    );
    assert!(ok, "dd: {out}");
    let (ok, out) = run(&fsck, &["-n", part.to_str().unwrap()]);
    assert!(ok, "fsck.fat -n on partition {}: {out}", p.number);
    assert!(!out.contains("Dirty bit"), "{out}");
    std::fs::remove_file(&part).unwrap();
}

fn mimg(img: &Path, p: &PlannedPartition) -> String {
    format!("{}@@{}", img.display(), p.start)
}

#[test]
fn gpt_windows_layout_passes_sgdisk_fdisk_fsck_and_mtools() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut disk = used_image(&img, 4 * GIB).unwrap();
    let parts = [
        spec(
            "EFI system partition",
            PartKind::EfiSystem,
            SizeSpec::Bytes(260 * MIB),
        ),
        spec(
            "Microsoft reserved partition",
            PartKind::MicrosoftReserved,
            SizeSpec::Bytes(16 * MIB),
        ),
        spec("Windows", PartKind::BasicData, SizeSpec::Rest),
        spec(
            "Recovery",
            PartKind::WindowsRecovery,
            SizeSpec::Bytes(600 * MIB),
        ),
    ];
    let plan = layout::plan(disk.size(), disk.sector_size(), TableKind::Gpt, &parts).unwrap();
    layout::write_table(&mut disk, TableKind::Gpt, &plan).unwrap();
    fat::format(
        disk.range(plan[0].start, plan[0].len).unwrap(),
        "SYSTEM",
        Some(FatKind::Fat32),
    )
    .unwrap();
    fat::format(
        disk.range(plan[2].start, plan[2].len).unwrap(),
        "Windows",
        None,
    )
    .unwrap();

    // Files and directories through our API, on the ESP.
    let loader: Vec<u8> = (0..1_234_567u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let fs = fat::open(disk.range(plan[0].start, plan[0].len).unwrap()).unwrap();
    fs.write_file(
        "EFI/BOOT/BOOTX64.EFI",
        &mut &loader[..],
        Some(fat::fat_time(1_700_000_000)),
    )
    .unwrap();
    fs.write_file("EFI/Microsoft/Boot/BCD", &mut &b"bcd"[..], None)
        .unwrap();
    for i in 0..300 {
        fs.write_file(
            &format!("many/file number {i:03}.txt"),
            &mut format!("{i}").as_bytes(),
            None,
        )
        .unwrap();
    }
    fs.create_dir_all("empty/dir").unwrap();
    fs.close().unwrap();

    // Our reader agrees with the plan.
    let t = layout::read_table(&Disk::open(&img, false).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(t.kind, TableKind::Gpt);
    let kinds: Vec<_> = t.partitions.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "EFI system",
            "Microsoft reserved",
            "Microsoft basic data",
            "Windows recovery"
        ]
    );
    for (got, want) in t.partitions.iter().zip(&plan) {
        assert_eq!((got.start, got.len), (want.start, want.len));
        assert_eq!(got.start % MIB, 0, "aligned to 1 MiB");
    }

    let imgs = img.to_str().unwrap();
    if let Some(sgdisk) = tool("sgdisk") {
        let (ok, out) = run(&sgdisk, &["-v", imgs]);
        assert!(ok && out.contains("No problems found"), "sgdisk -v: {out}");
        let (ok, out) = run(&sgdisk, &["-p", imgs]);
        assert!(ok, "{out}");
        for want in [
            "EF00",
            "0C01",
            "0700",
            "2700",
            "EFI system partition",
            "Microsoft reserved",
            "Windows",
            "Recovery",
        ] {
            assert!(out.contains(want), "sgdisk -p lacks {want}: {out}");
        }
        assert!(
            out.contains("Partitions will be aligned on 2048-sector boundaries"),
            "{out}"
        );
    }
    if let Some(fdisk) = tool("fdisk") {
        let (ok, out) = run(&fdisk, &["-l", imgs]);
        assert!(ok, "{out}");
        for want in [
            "Disklabel type: gpt",
            "EFI System",
            "Microsoft reserved",
            "Microsoft basic data",
            "Windows recovery environment",
        ] {
            assert!(out.contains(want), "fdisk -l lacks {want}: {out}");
        }
        assert!(
            !out.contains("does not start on physical sector boundary"),
            "{out}"
        );
    }
    if let Some(sfdisk) = tool("sfdisk") {
        let (ok, out) = run(&sfdisk, &["--json", imgs]);
        assert!(ok, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let starts: Vec<u64> = v["partitiontable"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["start"].as_u64().unwrap())
            .collect();
        assert_eq!(
            starts,
            plan.iter().map(|p| p.start / 512).collect::<Vec<_>>()
        );
        assert!(starts.iter().all(|s| s % 2048 == 0));
    }
    fsck_partition(&img, &plan[0], dir.path());
    fsck_partition(&img, &plan[2], dir.path());
    if let (Some(mdir), Some(mcopy), Some(mlabel)) = (tool("mdir"), tool("mcopy"), tool("mlabel")) {
        let esp = mimg(&img, &plan[0]);
        let (ok, out) = run(&mdir, &["-i", &esp, "-/", "::/"]);
        assert!(ok, "{out}");
        for want in [
            "BOOTX64  EFI",
            "BOOTX64.EFI",
            "file number 299.txt",
            "BCD",
            "2023-11-14",
        ] {
            assert!(out.contains(want), "mdir lacks {want}: {out}");
        }
        let out = Command::new(&mcopy)
            .args(["-i", &esp, "::/EFI/BOOT/BOOTX64.EFI", "-"])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(out.stdout == loader, "mcopy reads back different bytes");
        let (_, out) = run(&mlabel, &["-s", "-i", &esp, "::"]);
        assert!(out.contains("Volume label is SYSTEM"), "{out}");
        let (_, out) = run(&mlabel, &["-s", "-i", &mimg(&img, &plan[2]), "::"]);
        assert!(out.contains("Volume label is WINDOWS"), "{out}");
    }
}

#[test]
fn mbr_layout_with_active_flag_passes_fdisk_sfdisk_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("mbr.img");
    let mut disk = used_image(&img, GIB).unwrap();
    let mut boot = spec("", PartKind::MbrType(0x0e), SizeSpec::Bytes(100 * MIB));
    boot.active = true;
    let parts = [boot, spec("", PartKind::MbrType(0x0c), SizeSpec::Rest)];
    let plan = layout::plan(disk.size(), 512, TableKind::Mbr, &parts).unwrap();
    layout::write_table(&mut disk, TableKind::Mbr, &plan).unwrap();
    fat::format(
        disk.range(plan[0].start, plan[0].len).unwrap(),
        "BOOT",
        None,
    )
    .unwrap();
    fat::format(
        disk.range(plan[1].start, plan[1].len).unwrap(),
        "DATA",
        None,
    )
    .unwrap();
    let fs = fat::open(disk.range(plan[0].start, plan[0].len).unwrap()).unwrap();
    assert_eq!(fs.kind(), Some(FatKind::Fat16));
    fs.write_file("boot/x.cfg", &mut &b"cfg"[..], None).unwrap();
    fs.close().unwrap();
    assert_eq!(
        fat::open(disk.range(plan[1].start, plan[1].len).unwrap())
            .unwrap()
            .kind(),
        Some(FatKind::Fat32)
    );

    let t = layout::read_table(&Disk::open(&img, false).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(t.kind, TableKind::Mbr);
    assert!(t.partitions[0].active && !t.partitions[1].active);
    let imgs = img.to_str().unwrap();
    if let Some(fdisk) = tool("fdisk") {
        let (ok, out) = run(&fdisk, &["-l", imgs]);
        assert!(ok, "{out}");
        assert!(out.contains("Disklabel type: dos"), "{out}");
        let line1 = out
            .lines()
            .find(|l| l.starts_with(&format!("{imgs}1")))
            .unwrap();
        assert!(
            line1.contains(" * ") && line1.contains("W95 FAT16 (LBA)"),
            "{line1}"
        );
        let line2 = out
            .lines()
            .find(|l| l.starts_with(&format!("{imgs}2")))
            .unwrap();
        assert!(
            !line2.contains(" * ") && line2.contains("W95 FAT32 (LBA)"),
            "{line2}"
        );
    }
    if let Some(sfdisk) = tool("sfdisk") {
        let (ok, out) = run(&sfdisk, &["--dump", imgs]);
        assert!(ok, "{out}");
        assert!(
            out.contains("start=        2048, size=      204800, type=e, bootable"),
            "{out}"
        );
        assert!(out.contains("type=c\n") || out.contains("type=c"), "{out}");
    }
    fsck_partition(&img, &plan[0], dir.path());
    fsck_partition(&img, &plan[1], dir.path());
}

#[test]
fn too_small_disk_is_rejected_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("small.img");
    let disk = Disk::create_image(&img, 64 * MIB).unwrap();
    drop(disk);
    let pattern: Vec<u8> = (0..MIB).map(|i| (i % 253) as u8).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all(&pattern)
        .unwrap();
    let before = std::fs::read(&img).unwrap();
    let disk = Disk::open(&img, true).unwrap();
    let parts = [
        spec("EFI", PartKind::EfiSystem, SizeSpec::Bytes(50 * MIB)),
        spec("data", PartKind::BasicData, SizeSpec::Bytes(20 * MIB)),
    ];
    let err = layout::plan(disk.size(), 512, TableKind::Gpt, &parts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("partition 2 (data) does not fit"), "{err}");
    assert!(err.contains("short"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn write_table_refuses_a_plan_outside_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    let mut disk = Disk::create_image(&img, 64 * MIB).unwrap();
    let bad = [PlannedPartition {
        number: 1,
        start: MIB,
        len: 64 * MIB,
        spec: spec("x", PartKind::BasicData, SizeSpec::Rest),
    }];
    assert!(layout::write_table(&mut disk, TableKind::Gpt, &bad).is_err());
    assert!(
        std::fs::read(&img).unwrap().iter().all(|&b| b == 0),
        "nothing written"
    );
}

fn gpt_image(dir: &Path, size: u64) -> PathBuf {
    let img = dir.join("gpt.img");
    let mut disk = used_image(&img, size).unwrap();
    let parts = [spec("a", PartKind::BasicData, SizeSpec::Rest)];
    let plan = layout::plan(size, 512, TableKind::Gpt, &parts).unwrap();
    layout::write_table(&mut disk, TableKind::Gpt, &plan).unwrap();
    img
}

#[test]
fn corrupt_tables_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated image: the GPT says the disk is longer than it is.
    let img = gpt_image(dir.path(), 64 * MIB);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    let err = layout::read_table(&Disk::open(&img, false).unwrap()).unwrap_err();
    assert!(
        format!("{err:#}").contains("corrupt") || format!("{err:#}").contains("GPT"),
        "{err:#}"
    );
    std::fs::remove_file(&img).unwrap();

    // Garbage primary header: the backup is used; both garbage: an error.
    let img = gpt_image(dir.path(), 64 * MIB);
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(512 + 8)).unwrap();
    f.write_all(&[0xa5; 80]).unwrap();
    drop(f);
    let t = layout::read_table(&Disk::open(&img, false).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        t.partitions.len(),
        1,
        "the backup header still describes the disk"
    );
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(64 * MIB - 512 + 8)).unwrap();
    f.write_all(&[0x5a; 80]).unwrap();
    drop(f);
    let err = layout::read_table(&Disk::open(&img, false).unwrap()).unwrap_err();
    assert!(format!("{err:#}").contains("damaged GPT"), "{err:#}");
    std::fs::remove_file(&img).unwrap();

    // Overlapping MBR entries, made by hand.
    let img = dir.path().join("mbr.img");
    Disk::create_image(&img, 16 * MIB).unwrap();
    let mut mbr = [0u8; 512];
    let entry = |start: u32, sectors: u32| {
        let mut e = [0u8; 16];
        e[4] = 0x0c;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
        e
    };
    mbr[446..462].copy_from_slice(&entry(2048, 10_000));
    mbr[462..478].copy_from_slice(&entry(8192, 10_000));
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all(&mbr)
        .unwrap();
    let err = layout::read_table(&Disk::open(&img, false).unwrap()).unwrap_err();
    assert!(format!("{err:#}").contains("overlap"), "{err:#}");
    // An entry past the end of the disk.
    mbr[462..478].copy_from_slice(&entry(20_000, 100_000));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all(&mbr)
        .unwrap();
    let err = layout::read_table(&Disk::open(&img, false).unwrap()).unwrap_err();
    assert!(format!("{err:#}").contains("truncated"), "{err:#}");

    // No table at all, and a tiny file.
    let blank = dir.path().join("blank.img");
    Disk::create_image(&blank, MIB).unwrap();
    assert!(layout::read_table(&Disk::open(&blank, false).unwrap())
        .unwrap()
        .is_none());
    let tiny = dir.path().join("tiny.img");
    std::fs::write(&tiny, b"x").unwrap();
    assert!(layout::read_table(&Disk::open(&tiny, false).unwrap())
        .unwrap()
        .is_none());
}

#[test]
fn gpt_on_4k_sectors_passes_sgdisk() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("4k.img");
    let mut disk = used_image(&img, GIB)
        .unwrap()
        .with_sector_size(4096)
        .unwrap();
    let parts = [
        spec("EFI", PartKind::EfiSystem, SizeSpec::Bytes(100 * MIB)),
        spec("data", PartKind::LinuxFilesystem, SizeSpec::Percent(50)),
        spec("swap", PartKind::LinuxSwap, SizeSpec::Rest),
    ];
    let plan = layout::plan(disk.size(), 4096, TableKind::Gpt, &parts).unwrap();
    layout::write_table(&mut disk, TableKind::Gpt, &plan).unwrap();
    let t = layout::read_table(&disk).unwrap().unwrap();
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.partitions[2].kind, "Linux swap");
    // sgdisk guesses the sector size of an image file as 512; a 4Kn table then looks empty,
    // so only our reader checks this one (and the data from sgdisk on a 512-byte table above).
    let mut raw = [0u8; 8];
    let mut f = std::fs::File::open(&img).unwrap();
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.read_exact(&mut raw).unwrap();
    assert_eq!(&raw, b"EFI PART", "primary header at LBA 1 = byte 4096");
}

/// Regression: fatfs 0.3.6 writes long-name entries before `.` and `..` in new directories and
/// a wrong `..` on FAT32 (rafalh/rust-fatfs#117); `FatFs::close` repairs them.
#[test]
fn fatfs_dot_entries_are_repaired_for_fsck() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, size) in [(FatKind::Fat16, 64 * MIB), (FatKind::Fat32, 100 * MIB)] {
        let img = dir.path().join(format!("{kind}.img"));
        let disk = used_image(&img, size).unwrap();
        fat::format(disk.range(0, size).unwrap(), "T", Some(kind)).unwrap();
        let fs = fat::open(disk.range(0, size).unwrap()).unwrap();
        fs.create_dir_all("a/b/c").unwrap();
        fs.create_dir_all("boot").unwrap();
        fs.write_file("a/b/c/f.txt", &mut &b"x"[..], None).unwrap();
        fs.close().unwrap();
        // Still readable by fatfs after the repair.
        let fs = fat::open(disk.range(0, size).unwrap()).unwrap();
        assert_eq!(fs.read_file("a/b/c/f.txt").unwrap(), b"x");
        fs.close().unwrap();
        if let Some(fsck) = tool("fsck.fat") {
            let (ok, out) = run(&fsck, &["-n", img.to_str().unwrap()]);
            assert!(
                ok && !out.contains("Expected") && !out.contains("Invalid"),
                "{kind}: {out}"
            );
        }
    }
}
