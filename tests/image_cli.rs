//! End-to-end tests of `tsforge capture`, `apply`, `image info` and `image verify` through the
//! real binary: exit codes, messages, determinism with SOURCE_DATE_EPOCH.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

fn tsforge(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tsforge"))
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn tree(dir: &Path) {
    fs::create_dir_all(dir.join("src/sub/empty")).unwrap();
    fs::write(dir.join("src/a.txt"), "hello\n".repeat(1000)).unwrap();
    fs::write(dir.join("src/sub/b.txt"), "hello\n".repeat(1000)).unwrap();
    fs::write(dir.join("src/sub/c.bin"), [1u8, 2, 3]).unwrap();
}

#[test]
fn capture_apply_info_verify() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tree(d);
    let (code, _, err) = tsforge(
        d,
        &[
            "capture",
            "src",
            "img.zip",
            "--name",
            "Base",
            "--description",
            "test",
            "--compression",
            "deflate",
            "--threads",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("captured 3 files"), "{err}");
    // Refuses to overwrite without --force; the same tree gives the same bytes.
    let (code, _, err) = tsforge(d, &["capture", "src", "img.zip"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");
    let (code, _, _) = tsforge(
        d,
        &[
            "capture",
            "src",
            "img2.zip",
            "--name",
            "Base",
            "--description",
            "test",
            "--compression",
            "deflate",
        ],
    );
    assert_eq!(code, 0);
    assert!(fs::read(d.join("img.zip")).unwrap() == fs::read(d.join("img2.zip")).unwrap());

    let (code, out, _) = tsforge(d, &["image", "info", "img.zip", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "Base");
    assert_eq!(v["files"], 3);
    assert_eq!(v["dirs"], 2);
    assert_eq!(v["compression"], "deflate");
    assert_eq!(v["stored_bytes"], 6003);
    let (code, out, _) = tsforge(d, &["image", "info", "img.zip"]);
    assert_eq!(code, 0);
    assert!(out.contains("name:           Base"), "{out}");

    let (code, out, _) = tsforge(d, &["image", "verify", "img.zip"]);
    assert_eq!(code, 0);
    assert!(out.contains("OK"), "{out}");

    let (code, _, err) = tsforge(d, &["apply", "img.zip", "out"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read(d.join("out/sub/b.txt")).unwrap(),
        "hello\n".repeat(1000).as_bytes()
    );
    assert!(d.join("out/sub/empty").is_dir());
    // A non-empty target needs --force.
    let (code, _, err) = tsforge(d, &["apply", "img.zip", "out"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    let (code, _, err) = tsforge(d, &["apply", "img.zip", "out", "--force"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn verify_exits_1_on_a_corrupt_image_and_2_on_a_missing_one() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tree(d);
    let (code, _, err) = tsforge(d, &["capture", "src", "img", "--compression", "none"]);
    assert_eq!(code, 0, "{err}");
    let mut bytes = fs::read(d.join("img")).unwrap();
    let at = bytes.windows(3).position(|w| w == [1, 2, 3]).unwrap();
    bytes[at] = 9;
    fs::write(d.join("img"), &bytes).unwrap();
    let (code, out, _) = tsforge(d, &["image", "verify", "img"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED") && out.contains("sub/c.bin"), "{out}");
    let (code, _, err) = tsforge(d, &["image", "verify", "missing"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = tsforge(d, &["apply", "img", "out"]);
    assert_eq!(code, 2);
    assert!(err.contains("sub/c.bin") && err.contains("sha256"), "{err}");
}

#[test]
fn capture_refuses_an_image_inside_its_source() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tree(d);
    let (code, _, err) = tsforge(d, &["capture", "src", "src/sub/img"]);
    assert_eq!(code, 2);
    assert!(err.contains("capture itself"), "{err}");
}
