//! Item 5 of issue 19: a block device in use is refused by every command that writes to one,
//! whether or not `tsforge disk list` shows it (loop devices are not listed). Real loop
//! devices with a mounted ext4, a mounted partition and an active swap area; each command
//! must exit 2 naming what uses the device and leave every byte of it as it was. Needs root
//! and util-linux (losetup, mount, partx, swapon) and e2fsprogs; otherwise each test prints
//! SKIP and passes.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::data::random_bytes;
use crate::common::loopdev::{must, Loop};
use crate::common::{tool, tsforge};

fn have(tools: &[&str]) -> bool {
    tools.iter().all(|t| tool(t).is_some())
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// A sequence whose first step leaves a marker and whose second partitions disk 0: a run
/// refused up front leaves no marker.
const SEQUENCE: &str = r#"
steps:
  - name: Marker
    run: echo ran > marker.txt
  - name: Partition
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: Primary
      Partitions0FileSystem: FAT32
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
"#;

/// A mounted ext4 straight on a loop device: `disk partition --yes` (and its dry run), `run
/// --disk 0=LOOP` and `apply` of a raw image onto it are refused with exit 2 naming the mount
/// point, nothing runs, and the device's bytes do not change.
#[test]
fn a_mounted_loop_device_is_refused_by_every_writer() {
    if !have(&["losetup", "mount", "mkfs.ext4", "e2fsck"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = d.join("disk.img");
    std::fs::write(&img, random_bytes(64 << 20, 5)).unwrap();
    let Some(mut lo) = Loop::attach(&img, "a_mounted_loop_device_is_refused_by_every_writer")
    else {
        return;
    };
    let dev = lo.dev.clone();
    let devs = dev.to_str().unwrap();
    must(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            devs,
        ],
    );
    let mnt = d.join("mnt");
    lo.mount_ro(&dev, &mnt);
    let mnts = mnt.to_str().unwrap().to_string();
    let before = read(&dev);
    std::fs::write(d.join("raw.bin"), random_bytes(1 << 20, 6)).unwrap();
    std::fs::write(d.join("ts.yaml"), SEQUENCE).unwrap();
    let disk0 = format!("0={devs}");

    let attempts: Vec<Vec<&str>> = vec![
        vec![
            "disk",
            "partition",
            devs,
            "--table",
            "gpt",
            "--part",
            "size=rest",
        ],
        vec![
            "disk",
            "partition",
            devs,
            "--table",
            "gpt",
            "--part",
            "size=rest",
            "--yes",
        ],
        vec!["run", "ts.yaml", "--state-dir", "s", "--disk", &disk0],
        vec!["apply", "raw.bin", devs],
    ];
    for args in &attempts {
        let (code, out, err) = tsforge(d, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("is in use") && err.contains(&mnts),
            "{args:?} does not name the mount point {mnts}: {err}"
        );
    }
    assert!(!d.join("marker.txt").exists(), "the run started its steps");
    assert!(read(&dev) == before, "the mounted device was written");
    lo.release();
    must("e2fsck", &["-fn", devs]);
}

/// A partition node is checked for itself and for its whole disk's own users, not its
/// siblings: with partition 1 of a loop device mounted, partition 1 and the whole disk (as
/// `DISK` and `DISK:2`, which writes through the whole disk) are refused, partition 2 by its
/// own node is written.
#[test]
fn partition_nodes_are_checked_for_themselves_and_their_disk() {
    if !have(&["losetup", "mount", "mkfs.ext4", "partx"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = d.join("disk.img");
    std::fs::write(&img, random_bytes(64 << 20, 7)).unwrap();
    let (code, out, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            "disk.img",
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
    let Some(mut lo) = Loop::attach(
        &img,
        "partition_nodes_are_checked_for_themselves_and_their_disk",
    ) else {
        return;
    };
    lo.add_partitions();
    let (p1, p2) = (lo.part(1), lo.part(2));
    must("mkfs.ext4", &["-q", "-F", p1.to_str().unwrap()]);
    let mnt = d.join("mnt");
    lo.mount_ro(&p1, &mnt);
    let mnts = mnt.to_str().unwrap().to_string();
    let devs = lo.dev.to_str().unwrap().to_string();
    let p1_before = read(&p1);
    let whole_before = read(&lo.dev);
    let raw = random_bytes(1 << 20, 8);
    std::fs::write(d.join("raw.bin"), &raw).unwrap();

    let disk2 = format!("{devs}:2");
    for target in [devs.as_str(), p1.to_str().unwrap(), disk2.as_str()] {
        let (code, out, err) = tsforge(d, &["apply", "raw.bin", target]);
        assert_eq!(code, 2, "{target}: {out}{err}");
        assert!(err.contains(&mnts), "{target}: {err}");
    }
    let (code, _, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            &devs,
            "--table",
            "gpt",
            "--part",
            "size=rest",
            "--yes",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&mnts), "{err}");
    assert!(read(&lo.dev) == whole_before, "the disk was written");

    let (code, out, err) = tsforge(d, &["apply", "raw.bin", p2.to_str().unwrap()]);
    assert_eq!(
        code, 0,
        "a sibling of a mounted partition is free: {out}{err}"
    );
    assert!(
        read(&p2)[..raw.len()] == raw[..],
        "partition 2 did not get the image"
    );
    assert!(read(&p1) == p1_before, "the mounted partition changed");
}

/// An active swap area on a loop device is refused too (`[swap]`), and so is a device another
/// program holds open exclusively (the kernel's own "in use", for claims tsforge cannot name).
#[test]
fn swap_and_exclusive_opens_are_refused() {
    if !have(&["losetup", "mkswap", "swapon", "swapoff"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = d.join("disk.img");
    std::fs::write(&img, random_bytes(32 << 20, 9)).unwrap();
    let Some(mut lo) = Loop::attach(&img, "swap_and_exclusive_opens_are_refused") else {
        return;
    };
    let dev = lo.dev.clone();
    let devs = dev.to_str().unwrap().to_string();
    lo.swap_on(&dev);
    let before = read(&dev);
    std::fs::write(d.join("raw.bin"), random_bytes(1 << 20, 10)).unwrap();
    let (code, out, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            &devs,
            "--table",
            "mbr",
            "--part",
            "size=rest",
            "--yes",
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("[swap]"), "{err}");
    assert!(read(&dev) == before, "the swap area was written");
    lo.release();

    // Another program's exclusive open (O_EXCL on a block device), held by python3.
    let Some(python) = tool("python3") else {
        return;
    };
    let mut holder = Command::new(python)
        .args([
            "-c",
            "import os,sys,time; os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL); \
             print('held', flush=True); time.sleep(60)",
            &devs,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _holder = Kill(holder);
    assert_eq!(line.trim(), "held");
    let (code, out, err) = tsforge(d, &["apply", "raw.bin", &devs]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("exclusive open"), "{err}");
}
