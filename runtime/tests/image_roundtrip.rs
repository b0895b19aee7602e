//! Image format: capture → apply round trips, determinism, single-instance storage,
//! compression choice, ZIP tools, and corrupt or hostile images (docs/image-format.md).

use crate::common::tool;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use tsforge_runtime::image::format::{ZipWriter, METHOD_DEFLATE, METHOD_STORED};
use tsforge_runtime::image::{
    self, apply, capture_at, CaptureOptions, Compression, DirSink, DirSource,
};

const CREATED: i64 = 1_700_000_000;

/// Deterministic pseudo-random bytes (xorshift).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// The test tree: unicode names, deep directories, empty files and directories, a 5 MiB
/// random file, duplicates, a symlink, modes and nanosecond times.
fn make_tree(root: &Path) {
    let deep = root.join("deep/a/b/c/d/e/f/g/h/i/j");
    fs::create_dir_all(&deep).unwrap();
    fs::create_dir_all(root.join("empty/inner")).unwrap();
    fs::create_dir_all(root.join("Ünïcødé/日本語")).unwrap();
    fs::write(deep.join("leaf.txt"), b"deep leaf\n").unwrap();
    fs::write(
        root.join("Ünïcødé/日本語/ファイル.txt"),
        "こんにちは\n".repeat(100),
    )
    .unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    fs::write(root.join("deep/zero2"), b"").unwrap();
    fs::write(root.join("random.bin"), random_bytes(5 << 20, 7)).unwrap();
    let text = "The quick brown fox jumps over the lazy dog.\n".repeat(20_000);
    fs::write(root.join("text.txt"), &text).unwrap();
    fs::write(root.join("dup1.txt"), &text).unwrap();
    fs::write(root.join("deep/a/dup2.txt"), &text).unwrap();
    fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("zero"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("../text.txt", root.join("deep/link")).unwrap();
        std::os::unix::fs::symlink("a/b", root.join("deep/dirlink")).unwrap();
    }
    // Fixed times, deepest first so directories keep theirs.
    let mut all = Vec::new();
    walk(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64, 123_456_789);
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

/// Everything the format keeps, per path: kind, content, mode, mtime, link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut all = Vec::new();
    walk(root, &mut all);
    let mut m = BTreeMap::new();
    for p in all {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let mtime = filetime::FileTime::from_last_modification_time(&md);
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            md.permissions().mode() & 0o7777
        };
        #[cfg(not(unix))]
        let mode = 0;
        let what = if md.file_type().is_symlink() {
            format!("link {}", fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            format!("dir {mode:o}")
        } else {
            let data = fs::read(&p).unwrap();
            use sha2::Digest;
            format!("file {mode:o} {:x}", sha2::Sha256::digest(&data))
        };
        m.insert(
            rel,
            format!("{what} {}.{}", mtime.unix_seconds(), mtime.nanoseconds()),
        );
    }
    m
}

fn opts(c: Compression) -> CaptureOptions {
    CaptureOptions {
        name: "test image".into(),
        description: "made by image_roundtrip.rs".into(),
        compression: c,
        threads: 0,
    }
}

pub(crate) fn capture_tree(src: &Path, out: &Path, c: Compression) -> image::ImageInfo {
    capture_at(&DirSource::new(src), out, &opts(c), CREATED, &mut |_| {}).unwrap()
}

pub(crate) fn apply_file(img: &Path, target: &Path) -> anyhow::Result<image::ImageInfo> {
    let mut f = fs::File::open(img).unwrap();
    let mut sink = DirSink::new(target, false)?;
    apply(&mut f, &mut sink, &mut |_| {})
}

#[test]
fn round_trip_keeps_contents_modes_times_links_and_empty_dirs() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    for c in [Compression::Zstd, Compression::Deflate, Compression::None] {
        let img = t.path().join(format!("{}.tsimg", c.as_str()));
        let info = capture_tree(&src, &img, c);
        let out = t.path().join(format!("out-{}", c.as_str()));
        let applied = apply_file(&img, &out).unwrap();
        assert_eq!(snapshot(&src), snapshot(&out), "{c:?}");
        assert_eq!(applied.files, info.files);
        assert_eq!(image::verify(&img).unwrap().total_bytes, info.total_bytes);
        let i = image::info(&img).unwrap();
        assert_eq!(i, info, "{c:?}: info reads back what capture reported");
        assert_eq!(i.name, "test image");
        assert_eq!(i.created, CREATED);
    }
}

#[test]
fn capture_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    capture_tree(&src, &a, Compression::Zstd);
    let mut o = opts(Compression::Zstd);
    o.threads = 1;
    capture_at(&DirSource::new(&src), &b, &o, CREATED, &mut |_| {}).unwrap();
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "images differ"
    );
}

#[test]
fn duplicate_content_is_stored_once() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let data = random_bytes(1 << 20, 3);
    for i in 0..5 {
        fs::write(src.join(format!("copy{i}")), &data).unwrap();
    }
    let img = t.path().join("img");
    let info = capture_tree(&src, &img, Compression::Zstd);
    assert_eq!(info.total_bytes, 5 << 20);
    assert_eq!(info.stored_bytes, 1 << 20);
    assert!(info.image_bytes < (1 << 20) + 4096, "{}", info.image_bytes);
    let out = t.path().join("out");
    apply_file(&img, &out).unwrap();
    for i in 0..5 {
        assert!(fs::read(out.join(format!("copy{i}"))).unwrap() == data);
    }
}

#[test]
fn random_data_is_stored_and_text_is_compressed() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("random"), random_bytes(2 << 20, 9)).unwrap();
    let img = t.path().join("img");
    let info = capture_tree(&src, &img, Compression::Zstd);
    // Stored: the image is the data plus headers, not zstd's slightly larger frame.
    assert!(info.image_bytes <= (2 << 20) + 2048, "{}", info.image_bytes);
    fs::write(src.join("random"), "line of text\n".repeat(200_000)).unwrap();
    let info = capture_tree(&src, &img, Compression::Zstd);
    assert!(info.image_bytes < 100_000, "{}", info.image_bytes);
}

#[test]
fn large_files_stream_through_the_writer() {
    // Above the in-memory limit: compressed by the writing thread.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut big = "compressible text ".repeat(3 << 20).into_bytes();
    big.extend(random_bytes(1 << 20, 5));
    fs::write(src.join("big"), &big).unwrap();
    fs::write(src.join("big-random"), random_bytes(40 << 20, 11)).unwrap();
    for c in [Compression::Zstd, Compression::Deflate] {
        let img = t.path().join("img");
        let info = capture_tree(&src, &img, c);
        assert!(info.image_bytes < (40 << 20) + (big.len() as u64) / 4);
        let out = t.path().join(format!("out-{}", c.as_str()));
        apply_file(&img, &out).unwrap();
        assert!(fs::read(out.join("big")).unwrap() == big);
        assert_eq!(
            fs::read(out.join("big-random")).unwrap(),
            random_bytes(40 << 20, 11)
        );
    }
}

#[test]
fn zip_tools_accept_a_deflate_image() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let img = t.path().join("img.zip");
    let info = capture_tree(&src, &img, Compression::Deflate);
    // ZIP tools that must accept a deflate image.
    if let Some(zipinfo) = tool("zipinfo") {
        let o = std::process::Command::new(zipinfo)
            .arg(&img)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(listing.contains("tsforge-image.json"), "{listing}");
        // Manifest + distinct non-empty contents.
        let entries = listing.lines().filter(|l| l.starts_with("-rw")).count();
        assert!(
            entries >= 2 && entries as u64 <= info.files + 1,
            "{listing}"
        );
    }
    if let Some(unzip) = tool("unzip") {
        let o = std::process::Command::new(&unzip)
            .arg("-t")
            .arg(&img)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("No errors detected"),
            "{out}"
        );
        // The manifest is always deflated, so unzip -p reads it even from zstd images.
        let zimg = t.path().join("z.zip");
        capture_tree(&src, &zimg, Compression::Zstd);
        let o = std::process::Command::new(&unzip)
            .arg("-p")
            .arg(&zimg)
            .arg("tsforge-image.json")
            .output()
            .unwrap();
        assert!(o.status.success());
        let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(m["format"], "tsforge-image");
    }
}

// ----- corrupt and hostile images -------------------------------------------------------

/// Applies `img` into `outer/target` and checks that nothing appeared beside the target.
pub(crate) fn apply_contained(img: &Path) -> String {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("target");
    let err = apply_file(img, &target).expect_err("apply must fail");
    let names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec!["target"],
        "something was written outside the target"
    );
    let verify = image::verify(img).expect_err("verify must fail");
    let _ = verify;
    format!("{err:#}")
}

/// An image with the given manifest entries and data entries (name, bytes).
pub(crate) fn handmade(dir: &Path, entries: serde_json::Value, data: &[(&str, &[u8])]) -> PathBuf {
    let m = serde_json::json!({
        "format": "tsforge-image", "version": 2, "name": "bad", "description": "",
        "created": 0, "tsforge_version": "0", "compression": "none", "entries": entries,
    });
    handmade_manifest(dir, &serde_json::to_vec(&m).unwrap(), data)
}

/// An image with the manifest text `json` (any bytes) and the given data entries.
pub(crate) fn handmade_manifest(dir: &Path, json: &[u8], data: &[(&str, &[u8])]) -> PathBuf {
    let p = dir.join("handmade.zip");
    let f = fs::File::create(&p).unwrap();
    let mut zw = ZipWriter::new(f, 0);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut enc, json).unwrap();
    let packed = enc.finish().unwrap();
    zw.add(
        "tsforge-image.json",
        METHOD_DEFLATE,
        crc32fast::hash(json),
        json.len() as u64,
        &packed,
    )
    .unwrap();
    for (name, bytes) in data {
        zw.add(
            name,
            METHOD_STORED,
            crc32fast::hash(bytes),
            bytes.len() as u64,
            bytes,
        )
        .unwrap();
    }
    zw.finish().unwrap();
    p
}

pub(crate) fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(b))
}

pub(crate) fn file_entry(path: &str, content: &[u8]) -> serde_json::Value {
    serde_json::json!({"path": path, "type": "file", "size": content.len(), "sha256": sha(content)})
}

#[test]
fn a_flipped_byte_is_caught_and_names_the_file() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    let content = b"precious content that must arrive intact".repeat(100);
    fs::write(src.join("dir/victim.txt"), &content).unwrap();
    let img = t.path().join("img");
    capture_tree(&src, &img, Compression::None);
    let mut bytes = fs::read(&img).unwrap();
    let at = bytes
        .windows(content.len())
        .position(|w| w == &content[..])
        .unwrap();
    bytes[at + 10] ^= 0x20;
    fs::write(&img, &bytes).unwrap();
    let err = apply_contained(&img);
    assert!(
        err.contains("dir/victim.txt") && err.contains("sha256"),
        "{err}"
    );
}

#[test]
fn a_truncated_image_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let img = t.path().join("img");
    capture_tree(&src, &img, Compression::Zstd);
    let bytes = fs::read(&img).unwrap();
    for cut in [10, 200, bytes.len() / 2, bytes.len() - 30, bytes.len() - 1] {
        fs::write(&img, &bytes[..cut]).unwrap();
        let err = apply_contained(&img);
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
}

/// Every byte of the central directory and the end record matters: flipping any one makes
/// verify (and apply) fail, naming the record and the field; `check_file`, the quick check
/// before an apply, catches a damaged end record or a wrong length.
#[test]
fn a_flipped_byte_in_the_central_directory_or_end_record_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/a.txt"), b"first file\n").unwrap();
    fs::write(src.join("b.bin"), random_bytes(3000, 3)).unwrap();
    fs::write(src.join("c.txt"), b"third file\n".repeat(50)).unwrap();
    let img = t.path().join("img");
    capture_tree(&src, &img, Compression::Zstd);
    let good = fs::read(&img).unwrap();
    image::verify(&img).unwrap();
    image::check_file(&img).unwrap();
    let eocd = good.len() - 22;
    assert_eq!(&good[eocd..eocd + 4], b"PK\x05\x06");
    let cd_start = u32::from_le_bytes(good[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    assert_eq!(&good[cd_start..cd_start + 4], b"PK\x01\x02");
    let mut messages = Vec::new();
    for at in cd_start..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        fs::write(&img, &bad).unwrap();
        let err = format!(
            "{:#}",
            image::verify(&img).expect_err(&format!("byte {at}"))
        );
        assert!(err.contains("corrupt"), "byte {at}: {err}");
        if at >= eocd {
            let err = image::check_file(&img).expect_err(&format!("check_file, byte {at}"));
            let _ = err;
        }
        messages.push((at, err));
    }
    let find = |at: usize| &messages.iter().find(|m| m.0 == at).unwrap().1;
    // The second record (the first content) names its entry and the field.
    let second = cd_start + 46 + "tsforge-image.json".len();
    assert!(
        find(second + 16).contains("CRC-32") && find(second + 16).contains("record 1"),
        "{}",
        find(second + 16)
    );
    assert!(
        find(second + 20).contains("compressed size"),
        "{}",
        find(second + 20)
    );
    assert!(
        find(second + 24).contains("uncompressed size"),
        "{}",
        find(second + 24)
    );
    assert!(
        find(second + 10).contains("compression method"),
        "{}",
        find(second + 10)
    );
    assert!(
        find(second + 42).contains("local header offset"),
        "{}",
        find(second + 42)
    );
    assert!(
        find(eocd + 10).contains("entry count"),
        "{}",
        find(eocd + 10)
    );
    assert!(
        find(eocd + 12).contains("central directory size"),
        "{}",
        find(eocd + 12)
    );
    assert!(
        find(eocd + 16).contains("central directory offset"),
        "{}",
        find(eocd + 16)
    );
    // Nothing may follow the end record.
    let mut longer = good.clone();
    longer.push(0);
    fs::write(&img, &longer).unwrap();
    let err = format!("{:#}", image::verify(&img).unwrap_err());
    assert!(err.contains("data follows the end"), "{err}");
    assert!(image::check_file(&img).is_err());
    // Nor may the end record say a directory is somewhere else.
    let mut moved = good.clone();
    moved.splice(cd_start..cd_start, [0u8; 4]);
    fs::write(&img, &moved).unwrap();
    assert!(image::check_file(&img).is_err());
}

/// On Linux a `\` or a `:` is an ordinary byte of a name (systemd's escaped unit names hold
/// `\x2d`): such names apply as names inside the target, never as a way out of it. (On
/// Windows the manifest check refuses them before anything is written: the unit test
/// `backslash_and_colon_are_names_on_unix_and_refused_on_windows` in image/tree.rs.)
#[cfg(unix)]
#[test]
fn backslash_and_drive_names_stay_inside_the_target_on_unix() {
    let t = tempfile::tempdir().unwrap();
    let c = b"x".as_slice();
    let img = handmade(
        t.path(),
        serde_json::json!([file_entry("..\\escape", c), file_entry("C:escape", c)]),
        &[(&format!("d/{}", &sha(c)[..32]), c)],
    );
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    apply_file(&img, &target).unwrap();
    let mut names: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["..\\escape", "C:escape"]);
    let outside: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        vec!["target"],
        "something was written outside the target"
    );
}

#[test]
fn hostile_manifests_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let c = b"x".as_slice();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "dotdot",
            serde_json::json!([file_entry("../escape", c)]),
            "`..`",
        ),
        (
            "nested dotdot",
            serde_json::json!([
            {"path": "d", "type": "dir"}, file_entry("d/../../escape", c)]),
            "`..`",
        ),
        (
            "absolute",
            serde_json::json!([file_entry("/tmp/escape", c)]),
            "absolute",
        ),
        (
            "empty link target",
            serde_json::json!([
            {"path": "l", "type": "symlink", "target": ""}]),
            "empty symbolic link target",
        ),
        (
            "NUL in a link target",
            serde_json::json!([
            {"path": "l", "type": "symlink", "target": "a\0b"}]),
            "NUL in a symbolic link target",
        ),
        (
            "file under a link",
            serde_json::json!([
            {"path": "l", "type": "symlink", "target": "x"}, file_entry("l/f", c)]),
            "not a directory listed before it",
        ),
        (
            "twice",
            serde_json::json!([file_entry("a", c), file_entry("a", c)]),
            "twice",
        ),
    ];
    for (what, entries, expect) in cases {
        let img = handmade(t.path(), entries, &[(&format!("d/{}", &sha(c)[..32]), c)]);
        let err = apply_contained(&img);
        assert!(err.contains(expect), "{what}: {err}");
    }
}

#[test]
fn entries_not_in_the_manifest_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (c, other) = (b"listed".as_slice(), b"not listed".as_slice());
    let img = handmade(
        t.path(),
        serde_json::json!([file_entry("a", c)]),
        &[
            (&format!("d/{}", &sha(c)[..32]), c),
            (&format!("d/{}", &sha(other)[..32]), other),
        ],
    );
    let err = apply_contained(&img);
    assert!(err.contains("not in the manifest"), "{err}");
    let img = handmade(
        t.path(),
        serde_json::json!([file_entry("a", c)]),
        &[(&format!("d/{}", &sha(c)[..32]), c), ("../../evil", other)],
    );
    let err = apply_contained(&img);
    assert!(err.contains("not in the manifest"), "{err}");
    // Missing content.
    let img = handmade(t.path(), serde_json::json!([file_entry("a", c)]), &[]);
    let err = apply_contained(&img);
    assert!(
        err.contains("lacks the content") && err.contains('a'),
        "{err}"
    );
}

#[test]
fn a_non_empty_target_needs_force() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"new").unwrap();
    let img = t.path().join("img");
    capture_tree(&src, &img, Compression::Zstd);
    let target = t.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("f"), b"old").unwrap();
    fs::write(target.join("keep"), b"keep").unwrap();
    let err = DirSink::new(&target, false).unwrap_err();
    assert!(format!("{err:#}").contains("--force"), "{err:#}");
    // With force an existing link at an image path is replaced, never written through.
    let outside = t.path().join("outside");
    fs::write(&outside, b"untouched").unwrap();
    #[cfg(unix)]
    {
        fs::remove_file(target.join("f")).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("f")).unwrap();
    }
    let mut sink = DirSink::new(&target, true).unwrap();
    apply(&mut fs::File::open(&img).unwrap(), &mut sink, &mut |_| {}).unwrap();
    assert_eq!(fs::read(target.join("f")).unwrap(), b"new");
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"keep");
    assert_eq!(fs::read(&outside).unwrap(), b"untouched");
}

/// Files over 4 GiB need Zip64; slow (writes and reads 4.2 GiB), so opt-in:
/// `cargo test -p tsforge-runtime --test main image_roundtrip:: -- --ignored`.
#[test]
#[ignore]
fn files_over_4_gib_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("huge")).unwrap();
    f.set_len((4 << 30) + 12345).unwrap();
    drop(f);
    let img = t.path().join("img");
    capture_tree(&src, &img, Compression::Zstd);
    let info = image::verify(&img).unwrap();
    assert_eq!(info.total_bytes, (4 << 30) + 12345);
}
