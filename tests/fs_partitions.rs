//! `tsforge apply IMAGE DISK:N` and `tsforge capture DISK:N IMAGE` on ext4, XFS and NTFS
//! partitions of used disk images (random bytes first): the partition is mounted with its
//! file system named (`mount -t ext4|xfs|ntfs-3g`), written, checked afterwards by the file
//! system's own checker (`e2fsck -fn`, `xfs_repair -n`, `ntfsfix --no-action`), read back
//! through a read-only mount of the test's own, and captured back without the run's state
//! folder. A WIM goes onto NTFS with wimlib-imagex's NTFS volume mode (wimapply(1), "NTFS
//! VOLUME EXTRACTION (UNIX)"; wimcapture(1), "NTFS VOLUME CAPTURE (UNIX)") through a loop
//! device. Not as root, each fails before anything is opened for writing. No loop device or
//! mount is left behind (`losetup -j DISK`, /proc/mounts), whether the test passes or fails.
//! These need root and loop devices; without them they print SKIP.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use tsforge_runtime::disk::{layout, Disk};
use tsforge_runtime::fsformat::{format_image_range, FsKind};

use crate::common::data;
use crate::common::fixed_time::tsforge;
use crate::common::{note, tool, used_disk};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

fn run(prog: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(prog).args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The test's own read-only view of a partition: a loop device (and a mount on it), undone on
/// drop, also when an assertion failed.
struct View {
    dev: String,
    mnt: Option<PathBuf>,
}

impl View {
    fn new(disk: &Path, part: &layout::PartitionInfo, read_only: bool) -> View {
        let mut args = vec![
            "--find".to_string(),
            "--show".into(),
            "--offset".into(),
            part.start.to_string(),
            "--sizelimit".into(),
            part.len.to_string(),
        ];
        if read_only {
            args.push("--read-only".into());
        }
        args.push(disk.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = run(Path::new("losetup"), &args);
        assert!(ok, "losetup: {out}");
        View {
            dev: out.trim().to_string(),
            mnt: None,
        }
    }

    fn mount<'a>(&mut self, at: &'a Path, fs: &str, opts: &str) -> &'a Path {
        std::fs::create_dir_all(at).unwrap();
        let (ok, out) = run(
            Path::new("mount"),
            &["-t", fs, "-o", opts, &self.dev, at.to_str().unwrap()],
        );
        assert!(ok, "mount: {out}");
        self.mnt = Some(at.to_path_buf());
        at
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(m) = self.mnt.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        for _ in 0..10 {
            if Command::new("losetup")
                .args(["--detach", &self.dev])
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// Nothing of `disk` stays attached or mounted: no loop device over it, no mount below `dir`.
fn nothing_left(disk: &Path, dir: &Path) {
    let (_, out) = run(Path::new("losetup"), &["-j", disk.to_str().unwrap()]);
    assert!(
        out.trim().is_empty(),
        "loop devices left over {}: {out}",
        disk.display()
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let d = dir.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&d)),
        "a mount below {d} is left: {mounts}"
    );
}

/// Checks [`nothing_left`] when dropped: at the end of a test, passed or failed.
struct LeftOverCheck(PathBuf, PathBuf);

impl Drop for LeftOverCheck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Still clean up what a failed step may have left, then report it.
            let (_, out) = run(Path::new("losetup"), &["-j", self.0.to_str().unwrap()]);
            if !out.trim().is_empty() {
                eprintln!("loop devices left over {}: {out}", self.0.display());
            }
            return;
        }
        nothing_left(&self.0, &self.1);
    }
}

/// The tree of item 5: folders, files (one of 5 MiB), an empty file, a symbolic link, two
/// files with the same content; modes set on purpose.
fn make_tree(root: &Path) {
    let big = data::random(5 << 20, 7);
    let files: Vec<(&str, Vec<u8>, u32)> = vec![
        ("etc/hostname", b"tsforge-test\n".to_vec(), 0o644),
        ("etc/secret.conf", b"key=1\n".to_vec(), 0o600),
        ("usr/bin/tool.sh", b"#!/bin/sh\necho hi\n".to_vec(), 0o755),
        ("data/big.bin", big.clone(), 0o644),
        ("data/copy of big.bin", big, 0o640),
        ("data/empty", Vec::new(), 0o644),
    ];
    for (p, bytes, mode) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, bytes).unwrap();
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::create_dir_all(root.join("var/empty dir")).unwrap();
    std::fs::set_permissions(root.join("data"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("../data/big.bin", root.join("etc/link")).unwrap();
}

/// Every path below `root`: (path, kind and content or target, mode bits).
fn listing(root: &Path) -> Vec<(String, String, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32)>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.mode() & 0o7777;
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap().display().to_string();
                out.push((rel, format!("link {t}"), 0));
            } else if md.is_dir() {
                out.push((rel, "dir".into(), mode));
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((
                    rel,
                    format!("file {} {:016x}", bytes.len(), digest(&bytes)),
                    mode,
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// A fingerprint of a file's content (std's SipHash with its fixed keys: the same bytes give
/// the same value in every run).
fn digest(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// `listing` without the mode bits (NTFS through ntfs-3g shows every file as 0777), and
/// without what the file system itself keeps at its root.
fn comparable(l: &[(String, String, u32)], modes: bool) -> Vec<(String, String, u32)> {
    l.iter()
        .filter(|(p, _, _)| p != "lost+found" && !p.starts_with("lost+found/"))
        .map(|(p, k, m)| (p.clone(), k.clone(), if modes { *m } else { 0 }))
        .collect()
}

struct Case {
    kind: FsKind,
    mount_type: &'static str,
    shown: &'static str,
    checker: &'static str,
    modes: bool,
}

const EXT4: Case = Case {
    kind: FsKind::Ext4,
    mount_type: "ext4",
    shown: "ext4",
    checker: "e2fsck",
    modes: true,
};
const XFS: Case = Case {
    kind: FsKind::Xfs,
    mount_type: "xfs",
    shown: "XFS",
    checker: "xfs_repair",
    modes: true,
};
const NTFS: Case = Case {
    kind: FsKind::Ntfs,
    mount_type: "ntfs-3g",
    shown: "NTFS",
    checker: "ntfsfix",
    modes: false,
};

/// A used disk: a FAT16 partition 1, partition 2 of the rest formatted as `fs` (XFS needs at
/// least 300 MiB). `None` when the tools or root are missing (SKIP printed).
fn disk_with(d: &Path, case: &Case) -> Option<(PathBuf, layout::PartitionInfo)> {
    if !is_root() {
        note(&format!(
            "SKIP {}: needs root (mount, loop devices)",
            case.shown
        ));
        return None;
    }
    for t in ["losetup", "mount", case.checker] {
        tool(t)?;
    }
    if case.kind == FsKind::Ntfs {
        tool("ntfs-3g")?;
    }
    let disk = used_disk::partitioned(d, 380 << 20, "gpt", &["size=32MiB,fs=fat16", "size=rest"]);
    let part = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap()
        .partitions[1]
        .clone();
    format_image_range(&disk, part.start, part.len, case.kind, "TSTEST", true)
        .unwrap_or_else(|e| panic!("formatting partition 2 as {}: {e:#}", case.shown));
    Some((disk, part))
}

fn check_fs(case: &Case, disk: &Path, part: &layout::PartitionInfo) {
    let v = View::new(disk, part, true);
    let checker = tool(case.checker).unwrap();
    let args: Vec<&str> = match case.kind {
        FsKind::Ext4 => vec!["-fn", &v.dev],
        FsKind::Xfs => vec!["-n", &v.dev],
        _ => vec!["--no-action", &v.dev],
    };
    let (ok, out) = run(&checker, &args);
    assert!(ok, "{} {args:?} finds problems:\n{out}", case.checker);
}

fn apply_check_capture(case: Case) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let Some((disk, part)) = disk_with(d, &case) else {
        return;
    };
    let _left = LeftOverCheck(disk.clone(), d.to_path_buf());
    make_tree(&d.join("src"));
    let (code, _, err) = tsforge(d, &["capture", "src", "x.tsimg"]);
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = tsforge(d, &["apply", "x.tsimg", "d.img:2"]);
    assert_eq!(code, 0, "apply onto {}: {err}", case.shown);
    check_fs(&case, &disk, &part);
    let want = comparable(&listing(&d.join("src")), case.modes);
    {
        let mut v = View::new(&disk, &part, true);
        let m = v
            .mount(&d.join("view"), case.mount_type, "ro")
            .to_path_buf();
        let got = comparable(&listing(&m), case.modes);
        assert_eq!(
            got, want,
            "the tree on {} differs from the source",
            case.shown
        );
        if case.kind == FsKind::Ext4 {
            assert!(m.join("lost+found").is_dir());
        }
    }

    // A run's state folder on the partition is not captured, and is listed.
    {
        let mut v = View::new(&disk, &part, false);
        let m = v
            .mount(&d.join("view"), case.mount_type, "rw")
            .to_path_buf();
        std::fs::create_dir_all(m.join("_SMSTaskSequence/Logs")).unwrap();
        std::fs::write(m.join("_SMSTaskSequence/Logs/smsts.log"), b"state").unwrap();
    }
    let (code, _, err) = tsforge(d, &["capture", "d.img:2", "back.tsimg"]);
    assert_eq!(code, 0, "capture of {}: {err}", case.shown);
    assert!(
        err.contains("left out: _SMSTaskSequence (the run's state folder)"),
        "{err}"
    );
    let (code, _, err) = tsforge(d, &["apply", "back.tsimg", "out"]);
    assert_eq!(code, 0, "{err}");
    assert!(!d.join("out/_SMSTaskSequence").exists());
    if case.kind == FsKind::Ext4 {
        // lost+found is part of the file system and is captured.
        assert!(d.join("out/lost+found").is_dir());
    }
    assert_eq!(comparable(&listing(&d.join("out")), case.modes), want);
    // The capture mounted read-only: the file system is still clean.
    check_fs(&case, &disk, &part);
    // The same through a WIM, on the mounted folder (ext4, XFS) or the NTFS volume itself.
    if tool("wimlib-imagex").is_some() {
        let (code, _, err) = tsforge(d, &["capture", "d.img:2", "back.wim"]);
        assert_eq!(code, 0, "WIM capture of {}: {err}", case.shown);
        assert!(err.contains("left out: _SMSTaskSequence"), "{err}");
        let wim = d.join("back.wim").display().to_string();
        let (ok, out) = run(&tool("wimlib-imagex").unwrap(), &["dir", &wim]);
        assert!(ok, "{out}");
        assert!(
            out.contains("/data/big.bin") && out.contains("/etc/link"),
            "{out}"
        );
        assert!(!out.contains("_SMSTaskSequence"), "{out}");
    }
}

#[test]
fn ext4_partition_apply_check_and_capture() {
    apply_check_capture(EXT4);
}

#[test]
fn xfs_partition_apply_check_and_capture() {
    apply_check_capture(XFS);
}

#[test]
fn ntfs_partition_apply_check_and_capture() {
    apply_check_capture(NTFS);
}

/// `tsforge ARGS` in `dir` as user and group 65534 (nobody), with no supplementary groups.
fn as_nobody(dir: &Path, args: &[&str]) -> (i32, String) {
    let setpriv = tool("setpriv").expect("setpriv (util-linux)");
    let c = crate::common::fixed_time::tsforge_command_at(dir, args);
    let program = c.get_program().to_owned();
    let mut full = vec![
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        program,
    ];
    full.extend(c.get_args().map(|a| a.to_owned()));
    let mut n = Command::new(setpriv);
    n.args(full)
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => n.env(k, v),
            None => n.env_remove(k),
        };
    }
    let (code, out, err) = crate::common::output(&mut n);
    (code, out + &err)
}

/// Not as root, apply and capture of a partition that must be mounted fail before anything is
/// opened for writing, saying what is needed; the disk is unchanged and no image is written.
#[test]
fn without_root_a_mount_is_refused_first() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let Some((disk, _)) = disk_with(d, &EXT4) else {
        return;
    };
    if tool("setpriv").is_none() {
        return;
    }
    let _left = LeftOverCheck(disk.clone(), d.to_path_buf());
    make_tree(&d.join("src"));
    let (code, _, err) = tsforge(d, &["capture", "src", "x.tsimg"]);
    assert_eq!(code, 0, "{err}");
    // nobody may read the disk and the image, write nothing.
    for p in [d, &disk, &d.join("x.tsimg")] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = std::fs::read(&disk).unwrap();
    let (code, text) = as_nobody(d, &["apply", "x.tsimg", "d.img:2"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "d.img:2 holds ext4: applying to it mounts it, which needs root; run tsforge as \
             root (sudo), or apply to a folder"
        ),
        "{text}"
    );
    let (code, text) = as_nobody(d, &["capture", "d.img:2", "/tmp/nobody-never.tsimg"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "d.img:2 holds ext4: capturing it mounts it, which needs root; run tsforge as \
             root (sudo), or capture a folder"
        ),
        "{text}"
    );
    assert!(!Path::new("/tmp/nobody-never.tsimg").exists());
    assert!(std::fs::read(&disk).unwrap() == before, "the disk changed");
}

/// An unknown file system is named by what was found, not left to a mount failure.
#[test]
fn an_unknown_file_system_is_named() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let disk = used_disk::partitioned(d, 64 << 20, "gpt", &["size=rest"]);
    // Old bytes at the partition's start, as on a disk that held something else.
    let part = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap()
        .partitions[0]
        .clone();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.seek(SeekFrom::Start(part.start)).unwrap();
        f.write_all(&data::random(8192, 3)).unwrap();
    }
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(d.join("src/a"), b"a").unwrap();
    assert_eq!(tsforge(d, &["capture", "src", "x.tsimg"]).0, 0);
    let before = std::fs::read(&disk).unwrap();
    for args in [
        &["apply", "x.tsimg", "d.img:1"][..],
        &["capture", "d.img:1", "y.tsimg"][..],
    ] {
        let (code, _, err) = tsforge(d, args);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("partition 1 of d.img holds no file system tsforge recognises")
                && err.contains("carry no FAT, ext2/3/4, XFS or NTFS signature")
                && !err.contains("mount"),
            "{err}"
        );
    }
    assert!(std::fs::read(&disk).unwrap() == before, "the disk changed");
    assert!(!d.join("y.tsimg").exists());
}

/// A WIM onto an NTFS partition of an image file: wimlib-imagex writes the NTFS volume through a
/// loop device (NTFS-3G mode), ntfsfix finds nothing to fix, the files are there; captured back
/// into a WIM the same way, `wimlib-imagex dir` lists them.
#[test]
fn wim_onto_ntfs_partition_of_an_image_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let Some((disk, part)) = disk_with(d, &NTFS) else {
        return;
    };
    let _left = LeftOverCheck(disk.clone(), d.to_path_buf());
    let src = d.join("src");
    std::fs::create_dir_all(src.join("Windows/System32")).unwrap();
    std::fs::write(src.join("Windows/System32/config.txt"), b"config\n").unwrap();
    std::fs::write(src.join("Windows/big.bin"), data::random(3 << 20, 9)).unwrap();
    std::fs::write(src.join("empty.txt"), b"").unwrap();
    let wim = d.join("x.wim");
    let (ok, out) = run(
        &wimlib,
        &[
            "capture",
            src.to_str().unwrap(),
            wim.to_str().unwrap(),
            "Test",
        ],
    );
    assert!(ok, "{out}");
    let (code, _, err) = tsforge(d, &["apply", "x.wim", "d.img:2"]);
    assert_eq!(code, 0, "{err}");
    check_fs(&NTFS, &disk, &part);
    {
        let mut v = View::new(&disk, &part, true);
        let m = v.mount(&d.join("view"), "ntfs-3g", "ro").to_path_buf();
        assert_eq!(
            std::fs::read(m.join("Windows/System32/config.txt")).unwrap(),
            b"config\n"
        );
        assert_eq!(
            std::fs::read(m.join("Windows/big.bin")).unwrap(),
            data::random(3 << 20, 9)
        );
        assert_eq!(std::fs::read(m.join("empty.txt")).unwrap(), b"");
    }
    let (code, _, err) = tsforge(d, &["capture", "d.img:2", "back.wim"]);
    assert_eq!(code, 0, "{err}");
    let back = d.join("back.wim").display().to_string();
    let (ok, out) = run(&wimlib, &["dir", &back]);
    assert!(ok, "{out}");
    for p in [
        "/Windows/System32/config.txt",
        "/Windows/big.bin",
        "/empty.txt",
    ] {
        assert!(out.lines().any(|l| l == p), "{p} missing from:\n{out}");
    }
    // Not as root, the loop device is refused before it is set up.
    if tool("setpriv").is_some() {
        for p in [d, &disk, &wim] {
            let mode = if p.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let (code, text) = as_nobody(d, &["apply", "x.wim", "d.img:2"]);
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains(
                "d.img:2 holds NTFS: applying a WIM to it writes it through a loop device, \
                 which needs root"
            ),
            "{text}"
        );
    }
}

/// *Apply Operating System Image* onto an ext4 partition made by *Format and Partition Disk*:
/// the run succeeds, smsts.log names the file system, the files are on the partition.
#[test]
fn sequence_applies_onto_an_ext4_partition() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    if !is_root() || tool("mkfs.ext4").is_none() || tool("e2fsck").is_none() {
        note("SKIP sequence onto ext4: needs root, mkfs.ext4 and e2fsck");
        return;
    }
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 200 << 20);
    let _left = LeftOverCheck(disk.clone(), d.to_path_buf());
    make_tree(&d.join("src"));
    assert_eq!(tsforge(d, &["capture", "src", "base.tsimg"]).0, 0);
    std::fs::write(
        d.join("ts.yaml"),
        r#"
steps:
  - name: Partition
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: Primary
      Partitions0FileSystem: ext4
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeVariable: OSDisk
  - name: Apply
    type: apply-image
    properties:
      ImagePath: base.tsimg
      DestinationVariable: OSDisk
"#,
    )
    .unwrap();
    let (code, _, err) = tsforge(
        d,
        &["run", "ts.yaml", "--state-dir", "s", "--disk", "0=disk.img"],
    );
    let log = std::fs::read_to_string(d.join("s/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{err}\n{log}");
    let holds = format!("partition 1 of {} holds ext4", disk.display());
    assert!(log.contains(&holds), "{holds} not in\n{log}");
    let part = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap()
        .partitions[0]
        .clone();
    check_fs(&EXT4, &disk, &part);
    let mut v = View::new(&disk, &part, true);
    let m = v.mount(&d.join("view"), "ext4", "ro").to_path_buf();
    assert_eq!(
        comparable(&listing(&m), true),
        comparable(&listing(&d.join("src")), true)
    );
}

/// Windows, offline (issue 16): on a random-filled disk image, *Format and Partition Disk*
/// makes an ESP and an NTFS partition (mkntfs), *Apply Data Image* writes a WIM of a Windows
/// tree onto it (wimlib, through a loop device), and the exported *Apply Windows Settings* /
/// *Apply Network Settings* steps write `Windows\Panther\unattend.xml` there (ntfs-3g). The
/// file is read back with `ntfscat` (not our reader) and checked element by element; ntfsfix
/// finds nothing to fix; no secret is in smsts.log. *Apply Operating System Image* of the same
/// Windows on this (Linux) runner fails, saying that bcdboot runs in Windows PE — nothing
/// here can write the BCD (the Windows side of making it bootable is tested under Wine,
/// tests/wine.rs).
///
/// Pages: SMS_TaskSequence_ApplyDataImageAction
/// (<https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applydataimageaction-server-wmi-class>),
/// and the unattend pages cited in tests/unattend.rs.
#[test]
fn windows_settings_on_an_ntfs_partition_of_an_image_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    if !is_root() {
        note("SKIP windows offline: needs root (loop devices, ntfs-3g)");
        return;
    }
    for t in [
        "wimlib-imagex",
        "mkntfs",
        "ntfs-3g",
        "ntfscat",
        "ntfsfix",
        "losetup",
    ] {
        if tool(t).is_none() {
            note(&format!("SKIP windows offline: {t} is missing"));
            return;
        }
    }
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 200 << 20);
    let _left = LeftOverCheck(disk.clone(), d.to_path_buf());
    let src = d.join("win");
    std::fs::create_dir_all(src.join("Windows/System32/config")).unwrap();
    std::fs::write(src.join("Windows/System32/config/SYSTEM"), b"regf").unwrap();
    std::fs::create_dir_all(src.join("Windows/Panther")).unwrap();
    std::fs::copy(
        crate::common::repo("tests/fixtures/sequences/unattend/admin-unattend.xml"),
        src.join("Windows/Panther/unattend.xml"),
    )
    .unwrap();
    assert_eq!(tsforge(d, &["capture", "win", "win.wim"]).0, 0);
    let partition = |apply: &str| {
        format!(
            r#"
steps:
  - name: Partition
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: EFI
      Partitions0FileSystem: FAT32
      Partitions0Size: "40"
      Partitions0SizeUnits: MB
      Partitions1Type: Primary
      Partitions1FileSystem: NTFS
      Partitions1Size: "100"
      Partitions1SizeUnits: "%"
      Partitions1VolumeVariable: OSDisk
  - name: Apply Windows
    type: {apply}
    properties:
      ImagePath: win.wim
      DestinationVariable: OSDisk
"#
        )
    };
    // The OS step cannot make Windows bootable here, and says why.
    std::fs::write(d.join("os.yaml"), partition("apply-image")).unwrap();
    let (code, _, err) = tsforge(
        d,
        &[
            "run",
            "os.yaml",
            "--state-dir",
            "s0",
            "--disk",
            "0=disk.img",
        ],
    );
    let log = std::fs::read_to_string(d.join("s0/smsts.log")).unwrap_or_default();
    assert_eq!(code, 1, "{err}\n{log}");
    assert!(
        log.contains(
            "holds Windows (Windows/System32/config/SYSTEM): making it bootable needs bcdboot"
        ) && log.contains("Deploy Windows from a Windows PE medium"),
        "{log}"
    );

    std::fs::write(d.join("data.yaml"), partition("apply-data-image")).unwrap();
    let (code, _, err) = tsforge(
        d,
        &[
            "run",
            "data.yaml",
            "--state-dir",
            "s1",
            "--disk",
            "0=disk.img",
        ],
    );
    let log = std::fs::read_to_string(d.join("s1/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{err}\n{log}");
    let target = format!("OSDTargetSystemDrive={}:2", disk.display());
    let fixture = crate::common::repo("tests/fixtures/sequences/unattend/windows-domain.xml");
    let (code, _, err) = tsforge(
        d,
        &[
            "run",
            &fixture,
            "--state-dir",
            "s2",
            "--var",
            &target,
            "--var",
            "MachineName=LAB-0099",
        ],
    );
    let log = std::fs::read_to_string(d.join("s2/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{err}\n{log}");
    for secret in ["Adm1n!Lab", "J0in!Secret"] {
        assert!(!log.contains(secret), "{secret} in smsts.log:\n{log}");
    }

    let part = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap()
        .partitions[1]
        .clone();
    check_fs(&NTFS, &disk, &part);
    let v = View::new(&disk, &part, true);
    let out = Command::new(tool("ntfscat").unwrap())
        .arg(&v.dev)
        .arg("/Windows/Panther/unattend.xml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ntfscat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(v);
    let file = d.join("unattend.xml");
    std::fs::write(&file, &out.stdout).unwrap();
    let s = crate::unattend::settings(&file);
    crate::unattend::check_domain_fixture(&s, "LAB-0099");
}

/// Files copied into a deployed OS from a package (SSH keys, cloud-init seeds), the ConfigMgr
/// way: *Apply Data Image* of an image package onto the OS partition adds the image's files
/// and keeps the others (tsforge never wipes for a data image). The partition's own root keeps
/// its owner and mode even though the seed folder was captured with 0700 (applying the
/// image's root metadata over a deployed `/` would lock every user out). Checked on an ext4
/// partition of a random-filled disk with e2fsck and through a read-only mount.
/// Page: SMS_TaskSequence_ApplyDataImageAction
/// (<https://learn.microsoft.com/intune/configmgr/develop/reference/osd/sms_tasksequence_applydataimageaction-server-wmi-class>).
#[test]
fn seed_files_go_into_a_deployed_os_with_apply_data_image() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    if !is_root() || tool("mkfs.ext4").is_none() || tool("e2fsck").is_none() {
        note("SKIP seed files: needs root, mkfs.ext4 and e2fsck");
        return;
    }
    let disk = d.join("disk.img");
    used_disk::random_disk(&disk, 64 << 20);
    let _left = LeftOverCheck(disk.clone(), d.to_path_buf());
    let os = d.join("os");
    std::fs::create_dir_all(os.join("etc")).unwrap();
    std::fs::write(os.join("etc/hostname"), "base\n").unwrap();
    std::fs::write(os.join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::set_permissions(&os, std::fs::Permissions::from_mode(0o755)).unwrap();
    let seed = d.join("seed");
    std::fs::create_dir_all(seed.join("root/.ssh")).unwrap();
    std::fs::create_dir_all(seed.join("etc/cloud/cloud.cfg.d")).unwrap();
    std::fs::write(
        seed.join("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA lab\n",
    )
    .unwrap();
    std::fs::write(
        seed.join("etc/cloud/cloud.cfg.d/99-lab.cfg"),
        "datasource_list: [NoCloud]\n",
    )
    .unwrap();
    for (p, m) in [
        ("", 0o700),
        ("root/.ssh", 0o700),
        ("root/.ssh/authorized_keys", 0o600),
    ] {
        std::fs::set_permissions(seed.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    }
    assert_eq!(tsforge(d, &["capture", "os", "os.tsimg"]).0, 0);
    assert_eq!(tsforge(d, &["capture", "seed", "seed.tsimg"]).0, 0);
    for (dir, id) in [("os.tsimg", "IMG00001"), ("seed.tsimg", "LAB00077")] {
        let (code, _, err) = tsforge(d, &["package", "build", dir, "--id", id, "--out", "dp"]);
        assert_eq!(code, 0, "{err}");
    }
    std::fs::write(
        d.join("ts.yaml"),
        r#"
steps:
  - name: Partition
    type: partition-disk
    properties:
      DiskIndex: "0"
      PartitionStyle: GPT
      Partitions0Type: Primary
      Partitions0FileSystem: ext4
      Partitions0Size: "100"
      Partitions0SizeUnits: "%"
      Partitions0VolumeVariable: OSDisk
  - name: Apply the OS files
    type: apply-data-image
    properties:
      ImagePackageID: IMG00001
      DestinationVariable: OSDisk
  - name: Add the lab's SSH key and cloud-init seed
    type: apply-data-image
    properties:
      ImagePackageID: LAB00077
      DestinationVariable: OSDisk
"#,
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
            "0=disk.img",
            "--content",
            "dp",
        ],
    );
    let log = std::fs::read_to_string(d.join("s/smsts.log")).unwrap_or_default();
    assert_eq!(code, 0, "{err}\n{log}");
    assert!(
        log.contains("already held files: the image was applied over them and the folder keeps its own owner, mode and times"),
        "{log}"
    );
    let part = layout::read_table(&Disk::open(&disk, false).unwrap())
        .unwrap()
        .unwrap()
        .partitions[0]
        .clone();
    check_fs(&EXT4, &disk, &part);
    let mut v = View::new(&disk, &part, true);
    let m = v.mount(&d.join("view"), "ext4", "ro").to_path_buf();
    let mode = |p: &str| std::fs::metadata(m.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(
        mode(""),
        0o755,
        "the deployed root took the seed folder's mode"
    );
    assert_eq!(mode("root/.ssh"), 0o700);
    assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
    assert_eq!(
        std::fs::read_to_string(m.join("root/.ssh/authorized_keys")).unwrap(),
        "ssh-ed25519 AAAA lab\n"
    );
    assert_eq!(
        std::fs::read_to_string(m.join("etc/cloud/cloud.cfg.d/99-lab.cfg")).unwrap(),
        "datasource_list: [NoCloud]\n"
    );
    assert_eq!(
        std::fs::read_to_string(m.join("etc/hostname")).unwrap(),
        "base\n",
        "the OS's own files stay"
    );
}
