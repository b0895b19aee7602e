//! WIM capture, info and apply through wimlib-imagex (Linux), checked file by file.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::have;
use tsforge_runtime::image::wim;
use tsforge_runtime::tools::{self, Tool};

fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Bytes that do not compress, so a split WIM has several parts.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("Windows/System32")).unwrap();
    std::fs::create_dir_all(src.join("empty dir")).unwrap();
    std::fs::write(src.join("readme.txt"), "hello\r\n").unwrap();
    std::fs::write(src.join("Windows/System32/config.bin"), noise(3 << 20)).unwrap();
    std::fs::write(src.join("Windows/name with spaces.ini"), "[a]\nb=c\n").unwrap();
    src
}

#[test]
fn capture_info_apply_round_trip() {
    if !have(Tool::WimlibImagex) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let wim_path = dir.path().join("out image.wim");
    wim::capture(&src, &wim_path, "Test: Image", "made by tools_wim", "fast").unwrap();

    let info = wim::info(&wim_path).unwrap();
    assert_eq!(info.images.len(), 1);
    assert_eq!(info.images[0].index, 1);
    assert_eq!(info.images[0].name, "Test: Image");
    assert_eq!(info.images[0].description, "made by tools_wim");

    let dst = dir.path().join("applied");
    std::fs::create_dir(&dst).unwrap();
    wim::apply(&wim_path, 1, &dst).unwrap();
    assert_eq!(tree(&src), tree(&dst));

    // Never overwrite an existing WIM.
    let e = wim::capture(&src, &wim_path, "again", "", "max").unwrap_err();
    assert!(format!("{e:#}").contains("already exists"), "{e:#}");
}

#[test]
fn split_wim_applies_from_its_first_part() {
    if !have(Tool::WimlibImagex) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let wim_path = dir.path().join("big.wim");
    wim::capture(&src, &wim_path, "big", "", "none").unwrap();
    let swm = dir.path().join("big.swm");
    tools::run(
        Tool::WimlibImagex,
        [
            "split".as_ref(),
            wim_path.as_os_str(),
            swm.as_os_str(),
            "1".as_ref(),
        ],
        "splitting the test WIM",
    )
    .unwrap();
    assert!(
        dir.path().join("big2.swm").exists(),
        "split into several parts"
    );
    let info = wim::info(&swm).unwrap();
    assert_eq!(info.images[0].name, "big");
    let dst = dir.path().join("applied");
    std::fs::create_dir(&dst).unwrap();
    wim::apply(&swm, 1, &dst).unwrap();
    assert_eq!(tree(&src), tree(&dst));
}

#[test]
fn tool_failures_show_the_command_and_its_stderr() {
    if !have(Tool::WimlibImagex) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not-a.wim");
    std::fs::write(&bogus, b"this is not a WIM file").unwrap();
    let e = format!("{:#}", wim::info(&bogus).unwrap_err());
    eprintln!("{e}");
    assert!(e.contains("reading the image list of"), "{e}");
    assert!(e.contains("wimlib-imagex info"), "command line: {e}");
    assert!(e.contains("failed with exit code"), "{e}");
    assert!(e.to_lowercase().contains("wim"), "stderr tail: {e}");

    let e = format!(
        "{:#}",
        wim::apply(&dir.path().join("missing.wim"), 1, dir.path()).unwrap_err()
    );
    assert!(e.contains("does not exist"), "{e}");
}
