//! A missing external program: the error names it, what needs it and the package to install.
//! One test in its own binary, because it changes `PATH` for the whole process.

#![cfg(unix)]

use std::ffi::OsStr;

use tsforge_runtime::fsformat::{format_image_range, FsKind};
use tsforge_runtime::image::wim;
use tsforge_runtime::tools::{self, Tool};

#[test]
fn missing_tools_are_named_with_their_package() {
    let dir = tempfile::tempdir().unwrap();
    let wim_path = dir.path().join("x.wim");
    std::fs::write(&wim_path, b"MSWIM\0\0\0").unwrap();
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    std::env::set_var("PATH", &empty);

    assert!(tools::find(Tool::WimlibImagex).is_err());
    let e = format!("{:#}", wim::info(&wim_path).unwrap_err());
    assert!(
        e.contains("wimlib-imagex is not installed")
            && e.contains("reading a WIM image needs it")
            && e.contains("apt-get install wimtools"),
        "{e}"
    );
    let e = format!("{:#}", wim::apply(&wim_path, 1, dir.path()).unwrap_err());
    assert!(
        e.contains("applying image 1 of") && e.contains("wimlib-imagex is not installed"),
        "{e}"
    );

    // mkfs.* live in the sbin directories, which are searched after PATH; XFS is not part of
    // the tool set, so its formatter is usually missing.
    if tools::which_in("mkfs.xfs", OsStr::new("")).is_none() {
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let e = format!(
            "{:#}",
            format_image_range(&img, 1 << 20, 16 << 20, FsKind::Xfs, "x", true).unwrap_err()
        );
        assert!(
            e.contains("mkfs.xfs is not installed") && e.contains("apt-get install xfsprogs"),
            "{e}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 3, "no temporary file left behind");
    } else {
        eprintln!("SKIP mkfs.xfs-missing check: mkfs.xfs is installed");
    }

    let status = tools::report();
    let wimlib = status
        .iter()
        .find(|s| s.tool == Tool::WimlibImagex)
        .unwrap();
    assert!(wimlib.path.is_none());
    assert_eq!(
        wimlib.how_to_get.as_deref(),
        Some("On Debian: apt-get install wimtools")
    );
}
