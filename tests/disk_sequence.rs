//! A task sequence that partitions a disk image, formats it, applies an image into the FAT
//! data partition and captures it again — checked by sgdisk, fsck.fat and mtools, and by
//! applying the recaptured image and comparing every file.

use std::path::Path;
use std::process::{Command, Stdio};
use tsforge_runtime::disk::{layout, Disk};

use crate::common::fixed_time::tsforge;
use crate::common::tool;
use crate::common::used_disk;

/// A small tree: nested folders, an empty file, a 1 MiB pseudo-random file, a duplicate.
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut x: u32 = 12345;
    let mut random = vec![0u8; 1 << 20];
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let text = b"tsforge deployment test\n".repeat(500);
    files.push(("Windows/System32/config.txt".to_string(), text.clone()));
    files.push(("Windows/System32/drivers/random.bin".to_string(), random));
    files.push(("Users/Public/copy.txt".to_string(), text));
    files.push(("empty.txt".to_string(), Vec::new()));
    for (p, data) in &files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
    files
}

const SEQUENCE: &str = r#"
name: Partition, apply, capture
steps:
  - group: Deploy
    steps:
      - name: Partition disk 0
        type: partition-disk
        properties:
          DiskIndex: "0"
          PartitionStyle: GPT
          Partitions0Type: EFI
          Partitions0Name: EFI system
          Partitions0FileSystem: FAT
          Partitions0Size: "100"
          Partitions0SizeUnits: MB
          Partitions0VolumeName: SYSTEM
          Partitions1Type: MSR
          Partitions1Size: "16"
          Partitions1SizeUnits: MB
          Partitions2Type: Primary
          Partitions2Name: Data
          Partitions2FileSystem: FAT32
          Partitions2Size: "100"
          Partitions2SizeUnits: "%"
          Partitions2VolumeName: DATA
          Partitions2VolumeVariable: OSDisk
          Partitions: "3"
      - name: Apply the image
        type: apply-image
        properties:
          ImagePackageID: IMG00001
          DestinationVariable: OSDisk
      - name: Record OSDisk
        run: echo "%OSDisk%" > osdisk.txt
      - name: Capture it again
        type: capture-image
        properties:
          CaptureDestination: recaptured.tsimg
          ImageName: Recaptured
          ImageDescription: from the FAT partition
"#;

#[test]
fn sequence_partitions_formats_applies_and_captures_a_disk_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The image, in a distribution point folder as package IMG00001.
    let src = d.join("src");
    let files = make_tree(&src);
    let (code, _, err) = tsforge(d, &["capture", "src", "base.tsimg", "--name", "Base"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tsforge(
        d,
        &[
            "package",
            "build",
            "base.tsimg",
            "--id",
            "IMG00001",
            "--out",
            "content",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // A 1 GiB disk image that held data before.
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 1 << 30);
    let before = std::fs::read(&disk).unwrap();
    std::fs::write(d.join("ts.yaml"), SEQUENCE).unwrap();

    let (code, out, err) = tsforge(
        d,
        &[
            "run",
            "ts.yaml",
            "--dry-run",
            "--disk",
            "0=disk.img",
            "--content",
            "content",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("partition 3: Microsoft basic data"), "{out}");
    assert!(out.contains("-> %OSDisk%"), "{out}");
    assert!(
        std::fs::read(&disk).unwrap() == before,
        "the dry run wrote to the disk"
    );

    let (code, _, err) = tsforge(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            "state",
            "--disk",
            "0=disk.img",
            "--content",
            "content",
        ],
    );
    let log = std::fs::read_to_string(d.join("state/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{err}\n{log}");
    assert_eq!(
        std::fs::read_to_string(d.join("osdisk.txt"))
            .unwrap()
            .trim(),
        format!("{}:3", d.join("disk.img").display())
    );
    assert!(log.contains("Applied "), "{log}");

    // Our own reader, then the independent tools.
    let table = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(table.partitions.len(), 3);
    let data = &table.partitions[2];
    assert_eq!(data.start % (1 << 20), 0);
    if let Some(sgdisk) = tool("sgdisk") {
        let o = Command::new(sgdisk).arg("-v").arg(&disk).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("No problems found"),
            "{text}"
        );
    }
    if let Some(fsck) = tool("fsck.fat") {
        for p in [&table.partitions[0], data] {
            let part = d.join(format!("part{}.img", p.number));
            let mut all = std::fs::File::open(&disk).unwrap();
            let mut out = std::fs::File::create(&part).unwrap();
            use std::io::{Read, Seek, SeekFrom};
            all.seek(SeekFrom::Start(p.start)).unwrap();
            std::io::copy(&mut (&mut all).take(p.len), &mut out).unwrap();
            let o = Command::new(&fsck).arg("-n").arg(&part).output().unwrap();
            assert!(
                o.status.success(),
                "fsck.fat -n partition {}: {}{}",
                p.number,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    if let (Some(mcopy), Some(_)) = (tool("mcopy"), tool("mdir")) {
        let img = format!("{}@@{}", disk.display(), data.start);
        for (path, bytes) in &files {
            let o = Command::new(&mcopy)
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-n", "-i", &img, &format!("::/{path}"), "-"])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "mcopy {path}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(&o.stdout, bytes, "{path} read back by mtools");
        }
    }

    // The recaptured image holds the same files.
    let (code, _, err) = tsforge(d, &["apply", "recaptured.tsimg", "back"]);
    assert_eq!(code, 0, "{err}");
    for (path, bytes) in &files {
        assert_eq!(
            &std::fs::read(d.join("back").join(path)).unwrap(),
            bytes,
            "{path}"
        );
    }
    let (code, out, _) = tsforge(d, &["image", "info", "recaptured.tsimg"]);
    assert_eq!(code, 0);
    assert!(out.contains("Recaptured"), "{out}");
}

#[test]
fn a_disk_too_small_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("small.img");
    let pattern: Vec<u8> = (0..(32u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&disk, &pattern).unwrap();
    std::fs::write(
        d.join("ts.yaml"),
        "steps:\n  - name: Too big\n    type: partition-disk\n    properties:\n      DiskIndex: \"0\"\n      PartitionStyle: MBR\n      Partitions0Type: Primary\n      Partitions0FileSystem: FAT32\n      Partitions0Size: \"64\"\n      Partitions0SizeUnits: MB\n",
    )
    .unwrap();
    let (code, _, err) = tsforge(
        d,
        &[
            "run",
            "ts.yaml",
            "--state-dir",
            "s",
            "--disk",
            "0=small.img",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let log = std::fs::read_to_string(d.join("s/smsts.log")).unwrap();
    assert!(
        log.contains("does not fit") || log.contains("too small"),
        "{log}"
    );
    assert!(
        std::fs::read(&disk).unwrap() == pattern,
        "the disk was written"
    );
}

#[test]
fn apply_names_a_missing_package_and_content_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("ts.yaml"),
        "steps:\n  - name: Apply\n    type: apply-image\n    properties: {ImagePackageID: LAB00019, Destination: out}\n",
    )
    .unwrap();
    let (code, _, _) = tsforge(d, &["run", "ts.yaml", "--state-dir", "s"]);
    assert_eq!(code, 1);
    let log = std::fs::read_to_string(d.join("s/smsts.log")).unwrap();
    assert!(
        log.contains("package LAB00019 is needed but no distribution point is given")
            && log.contains("--content"),
        "{log}"
    );
}

/// `tsforge apply`/`capture` take `DISK:N` as well as folders: a tsforge image into a FAT
/// partition and back, and a zstd-compressed raw partition image onto another partition.
#[test]
fn cli_apply_and_capture_on_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = make_tree(&d.join("src"));
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 700 << 20);
    let (code, _, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            "disk.img",
            "--table",
            "gpt",
            "--yes",
            "--part",
            "type=basic,size=300MiB,fs=fat32,label=ONE",
            "--part",
            "type=basic,size=rest,fs=fat32,label=TWO",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(tsforge(d, &["capture", "src", "base.tsimg"]).0, 0);
    let (code, _, err) = tsforge(d, &["apply", "base.tsimg", "disk.img:1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tsforge(
        d,
        &["capture", "disk.img:1", "again.tsimg", "--name", "Again"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(tsforge(d, &["apply", "again.tsimg", "out"]).0, 0);
    for (path, bytes) in &files {
        assert_eq!(
            &std::fs::read(d.join("out").join(path)).unwrap(),
            bytes,
            "{path}"
        );
    }
    // A tsforge image is not a raw image: applying it to a whole disk is refused.
    let (code, _, err) = tsforge(d, &["apply", "base.tsimg", "disk.img"]);
    assert_eq!(code, 2);
    assert!(err.contains("not to the whole disk"), "{err}");

    // Raw: partition 1 as a zstd-compressed image, written over partition 2.
    let table = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap();
    let (p1, p2) = (&table.partitions[0], &table.partitions[1]);
    let all = std::fs::read(&disk).unwrap();
    let part1 = &all[p1.start as usize..(p1.start + p1.len) as usize];
    let compressed = zstd_compress(part1);
    std::fs::write(d.join("part1.img.zst"), compressed).unwrap();
    let (code, _, err) = tsforge(d, &["apply", "part1.img.zst", "disk.img:2"]);
    assert_eq!(code, 0, "{err}");
    let all = std::fs::read(&disk).unwrap();
    assert_eq!(&all[p2.start as usize..(p2.start + p1.len) as usize], part1);
}

fn zstd_compress(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool("zstd").expect("zstd"))
        .args(["-q", "-c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&data).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

/// Non-FAT file systems go through the platform's formatter: an MBR disk with NTFS and ext4
/// partitions, checked by ntfs-3g's and e2fsprogs' own tools.
#[test]
fn partition_step_formats_ntfs_and_ext4_through_the_platform_tools() {
    let (Some(ntfsinfo), Some(e2fsck)) = (tool("ntfsinfo"), tool("e2fsck")) else {
        return;
    };
    if tool("mkfs.ntfs").is_none() || tool("mkfs.ext4").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    used_disk::random_disk(&d.join("disk.img"), 300 << 20);
    std::fs::write(
        d.join("ts.yaml"),
        r#"
steps:
  - name: Partition
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: MBR
      Partitions0Type: Primary
      Partitions0FileSystem: NTFS
      Partitions0Size: "128"
      Partitions0SizeUnits: MB
      Partitions0Bootable: "true"
      Partitions0VolumeName: Windows
      Partitions1Type: Primary
      Partitions1FileSystem: ext4
      Partitions1Size: "100"
      Partitions1SizeUnits: "%"
      Partitions1VolumeName: data
"#,
    )
    .unwrap();
    let (code, _, err) = tsforge(
        d,
        &["run", "ts.yaml", "--state-dir", "s", "--disk", "0=disk.img"],
    );
    let log = std::fs::read_to_string(d.join("s/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{err}\n{log}");
    let disk = d.join("disk.img");
    let table = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap();
    assert!(table.partitions[0].active);
    let all = std::fs::read(&disk).unwrap();
    let extract = |i: usize, name: &str| {
        let p = &table.partitions[i];
        let path = d.join(name);
        std::fs::write(&path, &all[p.start as usize..(p.start + p.len) as usize]).unwrap();
        path
    };
    let ntfs = extract(0, "p1.img");
    let o = Command::new(ntfsinfo)
        .args(["-m"])
        .arg(&ntfs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("Windows"), "{text}");
    let ext = extract(1, "p2.img");
    let o = Command::new(e2fsck)
        .args(["-fn"])
        .arg(&ext)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A partition that is not FAT is mounted (Linux, root, loop devices for image files) for apply
/// and capture; where mounting is not possible the test says SKIP.
#[test]
fn apply_and_capture_an_ext4_partition_through_a_mount() {
    if tool("mkfs.ext4").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = make_tree(&d.join("src"));
    used_disk::random_disk(&d.join("disk.img"), 200 << 20);
    std::fs::write(
        d.join("ts.yaml"),
        "steps:\n  - name: Partition\n    type: partition-disk\n    properties:\n      DiskIndex: \"0\"\n      PartitionStyle: GPT\n      Partitions0Type: Primary\n      Partitions0FileSystem: ext4\n      Partitions0Size: \"100\"\n      Partitions0SizeUnits: \"%\"\n",
    )
    .unwrap();
    let (code, _, err) = tsforge(
        d,
        &["run", "ts.yaml", "--state-dir", "s", "--disk", "0=disk.img"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(tsforge(d, &["capture", "src", "base.tsimg"]).0, 0);
    let (code, _, err) = tsforge(d, &["apply", "base.tsimg", "disk.img:1"]);
    // Not root, no loop device or a mount the kernel refuses: what "could not be mounted" said
    // before the mount named the file system.
    let cannot_mount = [
        "needs root",
        "setting up a loop device",
        "mounting disk.img:1",
    ];
    if code != 0 && cannot_mount.iter().any(|m| err.contains(m)) {
        eprintln!("SKIP mount: this machine cannot mount a loop device here: {err}");
        return;
    }
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tsforge(d, &["capture", "disk.img:1", "back.tsimg"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tsforge(d, &["apply", "back.tsimg", "out"]).0, 0);
    for (path, bytes) in &files {
        assert_eq!(
            &std::fs::read(d.join("out").join(path)).unwrap(),
            bytes,
            "{path}"
        );
    }
}

/// Item 6 of issue 19 through a sequence: a *Format and Partition Disk* step whose file
/// systems cannot be made (a FAT32 partition below FAT32's minimum, an unknown file system,
/// an NTFS partition below mkntfs's minimum, an ext4 label longer than ext4 holds) fails
/// before it writes anything, and `run --dry-run` reports the same error. The disk holds
/// random bytes under a valid table, as a used disk does.
#[test]
fn partition_step_checks_file_systems_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("used.img");
    let mut x: u64 = 0x5eed;
    let mut bytes = Vec::with_capacity(100 << 20);
    while bytes.len() < 100 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&disk, &bytes).unwrap();
    let (code, out, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            "used.img",
            "--table",
            "mbr",
            "--part",
            "size=rest,fs=fat32",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let before = std::fs::read(&disk).unwrap();
    for (second, want) in [
        ("FileSystem: FAT32\n      Partitions1Size: \"26\"", "26 MiB is too small for FAT32"),
        ("FileSystem: ReFS\n      Partitions1Size: \"30\"", "unknown file system \"REFS\""),
        ("FileSystem: NTFS\n      Partitions1Size: \"1\"", "too small for ntfs"),
        (
            "FileSystem: ext4\n      Partitions1VolumeName: seventeen-chars-x\n      Partitions1Size: \"30\"",
            "at most 16",
        ),
    ] {
        std::fs::write(
            d.join("ts.yaml"),
            format!(
                "steps:\n  - name: Partition\n    type: partition-disk\n    properties:\n      \
                 DiskIndex: \"0\"\n      PartitionStyle: GPT\n      Partitions0Type: Primary\n      \
                 Partitions0FileSystem: FAT32\n      Partitions0Size: \"60\"\n      \
                 Partitions0SizeUnits: MB\n      Partitions1Type: Primary\n      \
                 Partitions1{second}\n      Partitions1SizeUnits: MB\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(d.join("s"));
        let (code, out, err) = tsforge(
            d,
            &["run", "ts.yaml", "--state-dir", "s", "--disk", "0=used.img", "--dry-run"],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("cannot plan") && out.contains(want) && out.contains("partition 2"),
            "dry run of {second:?}: {out}"
        );
        let (code, _, err) = tsforge(
            d,
            &["run", "ts.yaml", "--state-dir", "s", "--disk", "0=used.img"],
        );
        let log = std::fs::read_to_string(d.join("s/smsts.log")).unwrap_or_default();
        assert_eq!(code, 1, "{second:?}: {err}\n{log}");
        assert!(
            log.contains(want) && log.contains("partition 2"),
            "{second:?}: {log}"
        );
        assert!(
            std::fs::read(&disk).unwrap() == before,
            "{second:?}: the disk was written"
        );
    }
}

/// *Capture Operating System Image* of a folder that holds the running sequence itself (a
/// live system capturing its own `/`): the run's state directory, its logs, the image being
/// written (and its `.tmp`) and a `_SMSTaskSequence` folder at the root are left out, each
/// listed in smsts.log; everything else is captured.
#[test]
fn capturing_the_running_systems_folder_leaves_the_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("live");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "pc01\n").unwrap();
    std::fs::create_dir_all(root.join("_SMSTaskSequence")).unwrap();
    std::fs::write(root.join("_SMSTaskSequence/leftover"), "x").unwrap();
    std::fs::create_dir_all(root.join("var/images")).unwrap();
    // The image of an earlier capture, about to be replaced.
    std::fs::write(root.join("var/images/self.tsimg"), "old").unwrap();
    std::fs::write(
        d.join("ts.yaml"),
        "steps:\n  - name: Capture the live system\n    type: capture-image\n    properties:\n      \
         CaptureSource: live\n      CaptureDestination: live/var/images/self.tsimg\n",
    )
    .unwrap();
    let (code, _, err) = tsforge(
        d,
        &["run", "ts.yaml", "--state-dir", "live/var/lib/tsforge"],
    );
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(root.join("var/lib/tsforge/smsts.log")).unwrap();
    for gone in [
        "var/lib/tsforge",
        "var/images/self.tsimg",
        "_SMSTaskSequence",
    ] {
        assert!(
            log.contains(&format!(
                "Left out: {gone} (the running sequence's own files)"
            )),
            "{gone} not listed: {log}"
        );
    }
    let (code, out, err) = tsforge(d, &["apply", "live/var/images/self.tsimg", "out"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(d.join("out/etc/hostname")).unwrap(),
        "pc01\n"
    );
    assert!(d.join("out/var/images").is_dir());
    assert!(!d.join("out/var/images/self.tsimg").exists());
    assert!(!d.join("out/var/lib/tsforge").exists());
    assert!(!d.join("out/_SMSTaskSequence").exists());
}
