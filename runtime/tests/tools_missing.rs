//! A missing external program: the error names it, what needs it and the package to install.
//! The checks change `PATH` for the whole process, and the other tests of this binary run in
//! it at the same time, so the test runs them in a child process of its own: this test binary
//! again, with [`CHILD`] set and only this test selected.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use tsforge_runtime::fsformat::{format_image_range, FsKind};
use tsforge_runtime::image::wim;
use tsforge_runtime::tools::{self, Tool};

/// Set in the child process, which runs [`checks`].
const CHILD: &str = "TSFORGE_TEST_TOOLS_MISSING_CHILD";

#[test]
fn missing_tools_are_named_with_their_package() {
    if std::env::var_os(CHILD).is_some() {
        checks();
        return;
    }
    // The test's name as libtest knows it: the module path without the crate's name.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::missing_tools_are_named_with_their_package");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Through libtest's capture: shown when this test fails or with --nocapture.
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "the checks failed in the child process ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child process did not run {name}:\n{stdout}"
    );
}

/// The checks, with `PATH` set to an empty folder: only in the child process.
fn checks() {
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
