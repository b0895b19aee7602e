//! A whole operating system through the tsforge image format: the Debian 12 reference system
//! (`scripts/reference-rootfs.sh`, built with mmdebstrap by `scripts/setup.sh` and cached under
//! `target/reference/`) is captured, applied to a folder and to an ext4 partition of a disk
//! image, and each result is compared with the source entry by entry by tools that are not
//! ours: `rsync -aHAXc --dry-run --itemize-changes` (type, owner, mode, mtime, xattrs, ACLs,
//! link targets, hard-link groups, content) must report nothing, the `getfattr` dumps of both
//! trees must be equal, and `e2fsck -fn` must find the partition clean.
//!
//! Needs root (the tree holds other owners, device nodes and `security.capability`). Without
//! the tree or root the test prints SKIP; with `TSFORGE_REQUIRE_TOOLS=1` (CI) it fails.

use crate::common::loopdev::{must, Loop};
use crate::common::used_disk::random_disk;
use crate::common::{note, output, required, tool, tsforge};
use std::path::{Path, PathBuf};
use std::process::Command;

fn reference_tree() -> Option<PathBuf> {
    let (code, out, err) = output(Command::new("bash").args([
        &crate::common::repo("scripts/reference-rootfs.sh"),
        "--path",
    ]));
    assert_eq!(code, 0, "reference-rootfs.sh --path: {out}{err}");
    let tree = PathBuf::from(out.trim());
    if tree.is_dir() {
        return Some(tree);
    }
    if required() {
        panic!(
            "the reference system {} is missing (TSFORGE_REQUIRE_TOOLS=1); run scripts/setup.sh",
            tree.display()
        );
    }
    note(&format!(
        "SKIP image_os: {} is missing (scripts/setup.sh builds it)",
        tree.display()
    ));
    None
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).1.trim() == "0"
}

/// Every difference rsync sees between `src` and `dst` (empty when they are equal in type,
/// owner, group, mode, mtime, xattrs, ACLs, link targets, hard links and content).
fn rsync_differences(src: &Path, dst: &Path, extra: &[&str]) -> String {
    let mut c = Command::new("rsync");
    c.args([
        "-aHAXc",
        "--numeric-ids",
        "--dry-run",
        "--itemize-changes",
        "--delete",
    ])
    .args(extra)
    .arg(format!("{}/", src.display()))
    .arg(format!("{}/", dst.display()));
    let (code, out, err) = output(&mut c);
    assert_eq!(code, 0, "rsync failed: {err}");
    out
}

/// `getfattr` dump of every path of `dir` (links not followed), paths relative to `dir`, one
/// block per path, sorted (getfattr lists in directory order, which differs between trees).
fn xattr_dump(dir: &Path, exclude: Option<&str>) -> String {
    let (code, out, err) = output(
        Command::new("getfattr")
            .args(["-R", "-P", "-h", "-d", "-m", "-", "-e", "base64", "."])
            .current_dir(dir),
    );
    assert_eq!(code, 0, "getfattr in {}: {err}", dir.display());
    let mut blocks: Vec<&str> = out
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter(|b| exclude.is_none_or(|x| !b.starts_with(&format!("# file: {x}"))))
        .collect();
    blocks.sort_unstable();
    blocks.join("\n\n")
}

fn assert_same_tree(src: &Path, dst: &Path, what: &str, extra: &[&str], exclude: Option<&str>) {
    let diff = rsync_differences(src, dst, extra);
    assert!(
        diff.is_empty(),
        "{what} differs from the source ({} lines of rsync -aHAXc --itemize-changes):\n{}",
        diff.lines().count(),
        diff.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    let a = xattr_dump(src, None);
    let b = xattr_dump(dst, exclude);
    assert!(
        a.contains("security.capability"),
        "the reference tree has no file capability: {a}"
    );
    assert_eq!(a, b, "{what}: extended attributes differ");
}

#[test]
fn debian_reference_system_round_trips_through_folder_and_ext4() {
    let Some(tree) = reference_tree() else { return };
    if !is_root() {
        assert!(!required(), "image_os needs root (TSFORGE_REQUIRE_TOOLS=1)");
        note("SKIP image_os: needs root");
        return;
    }
    for t in [
        "rsync",
        "getfattr",
        "e2fsck",
        "mkfs.ext4",
        "losetup",
        "partx",
    ] {
        if tool(t).is_none() {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = d.join("debian.tsimg");
    let (code, out, err) = tsforge(
        d,
        &["capture", tree.to_str().unwrap(), img.to_str().unwrap()],
    );
    assert_eq!(code, 0, "capture failed: {out}{err}");
    assert!(
        !err.contains("left out"),
        "a capture of a plain OS tree left something out: {err}"
    );

    // 1. Into a folder.
    let folder = d.join("applied");
    let (code, out, err) = tsforge(
        d,
        &["apply", img.to_str().unwrap(), folder.to_str().unwrap()],
    );
    assert_eq!(code, 0, "apply to a folder failed: {out}{err}");
    assert!(
        !err.contains("not applied"),
        "apply as root skipped something: {err}"
    );
    assert_same_tree(&tree, &folder, "the tree applied to a folder", &[], None);
    std::fs::remove_dir_all(&folder).unwrap();

    // 2. Into an ext4 partition of a disk image that held random bytes.
    let disk = d.join("disk.img");
    random_disk(&disk, 1536 << 20);
    let (code, out, err) = tsforge(
        d,
        &[
            "disk",
            "partition",
            disk.to_str().unwrap(),
            "--table",
            "gpt",
            "--part",
            "type=efi,size=100MiB,fs=fat32",
            "--part",
            "type=linux,size=rest",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "partitioning failed: {out}{err}");
    let Some(mut lo) = Loop::attach(&disk, "image_os") else {
        return;
    };
    lo.add_partitions();
    let part = lo.part(2);
    must("mkfs.ext4", &["-q", "-F", part.to_str().unwrap()]);
    // tsforge mounts the partition itself; the loop device of the test stays unmounted.
    let target = format!("{}:2", disk.display());
    let (code, out, err) = tsforge(d, &["apply", img.to_str().unwrap(), &target]);
    assert_eq!(code, 0, "apply to {target} failed: {out}{err}");
    let (code, out, err) = output(Command::new("e2fsck").args(["-fn", part.to_str().unwrap()]));
    assert_eq!(code, 0, "e2fsck -fn after the apply: {out}{err}");
    let mnt = d.join("mnt");
    lo.mount_ro(&part, &mnt);
    // mkfs.ext4 made lost+found: it is the file system's, not the image's.
    assert_same_tree(
        &tree,
        &mnt,
        "the tree applied to an ext4 partition",
        &["--exclude=/lost+found"],
        Some("./lost+found"),
    );
    lo.release();
}
