//! Images of an earlier manifest `version` still apply (docs/image-format.md, *Versions*).
//!
//! `fixtures/v1-made-by-0.1.0.tsimg` was written by `tsforge capture` before manifest version 2
//! existed (commit 20e3bb0), from a tree with two directories, a subdirectory of mode 0750,
//! two files with the same content, an executable, an empty file and a relative symbolic link,
//! every time 2023-11-14 22:13:20.123456789 UTC, `SOURCE_DATE_EPOCH=1700000000`.

use std::fs;
use std::path::{Path, PathBuf};
use tsforge_runtime::image::{self, apply, DirSink};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-made-by-0.1.0.tsimg")
}

const MTIME: (i64, u32) = (1_700_000_000, 123_456_789);

#[test]
fn a_version_1_image_still_applies() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let mut sink = DirSink::new(&out, false).unwrap();
    let info = apply(
        &mut fs::File::open(fixture()).unwrap(),
        &mut sink,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(info.name, "v1-fixture");
    assert_eq!((info.files, info.dirs, info.symlinks), (4, 3, 1));
    assert_eq!(
        fs::read(out.join("docs/a.txt")).unwrap(),
        b"hello tsforge\n"
    );
    assert_eq!(
        fs::read(out.join("docs/sub/copy-of-a.txt")).unwrap(),
        b"hello tsforge\n"
    );
    assert_eq!(
        fs::read(out.join("bin/tool.sh")).unwrap(),
        b"second content\n"
    );
    assert_eq!(fs::read(out.join("docs/empty.log")).unwrap(), b"");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::read_link(out.join("bin/link-to-a")).unwrap(),
            Path::new("../docs/a.txt")
        );
        let mode = |p: &str| {
            fs::symlink_metadata(out.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("bin/tool.sh"), 0o755);
        assert_eq!(mode("docs/a.txt"), 0o644);
        assert_eq!(mode("docs/sub"), 0o750);
    }
    for p in [
        "bin",
        "docs/sub",
        "docs/a.txt",
        "docs/empty.log",
        "bin/link-to-a",
    ] {
        let md = fs::symlink_metadata(out.join(p)).unwrap();
        let t = filetime::FileTime::from_last_modification_time(&md);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), MTIME, "{p}");
    }
    assert_eq!(image::verify(&fixture()).unwrap().files, 4);
    assert_eq!(image::info(&fixture()).unwrap().created, 1_700_000_000);
}
