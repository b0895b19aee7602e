//! Initramfs archives written by `tsforge_builder::cpio`, unpacked by GNU cpio after gzip or
//! zstd (the command-line tools, not the crates we compress with) have decompressed them.

use crate::common::{pattern, run, tool};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tsforge_builder::cpio::{Compression, CpioBuilder, CpioError, Source};

const T0: i64 = 1_700_000_000;

/// What one entry must look like after extraction.
enum Want {
    Dir(u32),
    File(Vec<u8>, u32),
    Link(&'static str),
}

fn sample(src: &Path) -> (CpioBuilder, Vec<(&'static str, Want)>) {
    let host = src.join("busybox");
    let big = pattern(1, 700 * 1024 + 3); // several buffers, not a multiple of 4
    std::fs::write(&host, &big).unwrap();
    let mut b = CpioBuilder::new(T0);
    b.add_file(
        "init",
        Source::bytes(b"#!/bin/sh\nexec /bin/sh\n".to_vec()),
        0o755,
    )
    .unwrap();
    b.add_file("bin/busybox", Source::path(&host), 0o755)
        .unwrap();
    b.add_symlink("bin/sh", "busybox").unwrap();
    b.add_symlink("sbin/init", "/init").unwrap();
    b.add_dir("root", 0o700).unwrap();
    b.add_dir("tmp", 0o1777).unwrap();
    b.add_file(
        "etc/tsforge/sequence.yaml",
        Source::bytes(b"steps: []\n".to_vec()),
        0o644,
    )
    .unwrap();
    b.add_file("etc/empty", Source::bytes(Vec::new()), 0o600)
        .unwrap();
    b.add_file("odd name é.txt", Source::bytes(b"abc".to_vec()), 0o644)
        .unwrap();
    let want = vec![
        (
            "init",
            Want::File(b"#!/bin/sh\nexec /bin/sh\n".to_vec(), 0o755),
        ),
        ("bin", Want::Dir(0o755)),
        ("bin/busybox", Want::File(big, 0o755)),
        ("bin/sh", Want::Link("busybox")),
        ("sbin", Want::Dir(0o755)),
        ("sbin/init", Want::Link("/init")),
        ("root", Want::Dir(0o700)),
        ("tmp", Want::Dir(0o1777)),
        ("etc", Want::Dir(0o755)),
        ("etc/tsforge", Want::Dir(0o755)),
        (
            "etc/tsforge/sequence.yaml",
            Want::File(b"steps: []\n".to_vec(), 0o644),
        ),
        ("etc/empty", Want::File(Vec::new(), 0o600)),
        ("odd name é.txt", Want::File(b"abc".to_vec(), 0o644)),
    ];
    (b, want)
}

/// Decompress `archive` with the command-line tool for `c`, returning the plain cpio file.
fn decompress(archive: &Path, c: Compression) -> Option<PathBuf> {
    let plain = archive.with_extension("cpio");
    let cmd = match c {
        Compression::None => return Some(archive.to_path_buf()),
        Compression::Gzip => ["gzip", "-dc"],
        Compression::Zstd => ["zstd", "-dcq"],
    };
    let t = tool(cmd[0])?;
    let out = std::fs::File::create(&plain).unwrap();
    let status = Command::new(t)
        .arg(cmd[1])
        .arg(archive)
        .stdin(Stdio::null())
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success(), "{cmd:?} {} failed", archive.display());
    Some(plain)
}

fn extract_and_check(c: Compression) {
    let Some(cpio) = tool("cpio") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (b, want) = sample(dir.path());
    let archive = dir.path().join("initrd.img");
    b.write(std::fs::File::create(&archive).unwrap(), c)
        .unwrap();
    let Some(plain) = decompress(&archive, c) else {
        return;
    };

    // The listing comes in archive order: every directory before what it holds.
    let listing = run(Command::new(&cpio)
        .args(["-it", "--quiet", "-F"])
        .arg(&plain));
    let names: Vec<&str> = listing.lines().collect();
    for (i, n) in names.iter().enumerate() {
        if let Some((parent, _)) = n.rsplit_once('/') {
            let p = names.iter().position(|m| *m == parent);
            assert!(
                p.is_some_and(|p| p < i),
                "{n} comes before its directory {parent}"
            );
        }
    }
    assert_eq!(names.len(), want.len(), "{listing}");

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run(Command::new(&cpio)
        .args(["-idm", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(&plain)
        .current_dir(&out));
    for (path, w) in &want {
        let p = out.join(path);
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            meta.permissions().mode() & 0o7777
        };
        #[cfg(not(unix))]
        let mode = 0;
        match w {
            Want::Dir(m) => {
                assert!(meta.is_dir(), "{path} is not a directory");
                assert_eq!(mode, *m, "{path}: mode");
            }
            Want::File(bytes, m) => {
                assert!(meta.is_file(), "{path} is not a file");
                assert!(
                    std::fs::read(&p).unwrap() == *bytes,
                    "{path}: content differs"
                );
                assert_eq!(mode, *m, "{path}: mode");
                let mtime = meta.modified().unwrap();
                let secs = mtime
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                assert_eq!(secs as i64, T0, "{path}: mtime");
            }
            Want::Link(target) => {
                assert!(
                    meta.file_type().is_symlink(),
                    "{path} is not a symbolic link"
                );
                assert_eq!(std::fs::read_link(&p).unwrap(), Path::new(target));
            }
        }
    }
}

#[test]
fn plain_archive_extracts_with_gnu_cpio() {
    extract_and_check(Compression::None);
}

#[test]
fn gzip_archive_extracts_with_gnu_cpio() {
    extract_and_check(Compression::Gzip);
}

#[test]
fn zstd_archive_extracts_with_gnu_cpio() {
    extract_and_check(Compression::Zstd);
}

#[test]
fn identical_input_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let a = sample(dir.path()).0.write(Vec::new(), c).unwrap();
        let b = sample(dir.path()).0.write(Vec::new(), c).unwrap();
        assert!(a == b, "{c:?}: two writes differ");
        let mut other = CpioBuilder::new(T0 + 1);
        other.add_dir("x", 0o755).unwrap();
        let mut same = CpioBuilder::new(T0);
        same.add_dir("x", 0o755).unwrap();
        assert!(
            other.write(Vec::new(), c).unwrap() != same.write(Vec::new(), c).unwrap(),
            "{c:?}: the mtime is ignored"
        );
        if c == Compression::Gzip {
            // No file name (FLG 0), mtime 0, OS "unknown": nothing from the build host.
            assert_eq!(a[3], 0, "FLG");
            assert_eq!(&a[4..8], &[0, 0, 0, 0], "MTIME");
            assert_eq!(a[9], 255, "OS");
        }
    }
}

#[test]
fn missing_source_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-busybox");
    let mut b = CpioBuilder::new(T0);
    b.add_file("init", Source::bytes(b"x".to_vec()), 0o755)
        .unwrap();
    b.add_file("bin/busybox", Source::path(&missing), 0o755)
        .unwrap();
    let mut out = Vec::new();
    let err = b.write(&mut out, Compression::None).unwrap_err();
    assert!(matches!(err, CpioError::Read { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("bin/busybox") && msg.contains("no-such-busybox"),
        "{msg}"
    );
    assert!(
        out.is_empty(),
        "sources are checked before the first byte is written"
    );
}
