//! Symbolic links with any target (absolute, `../..`, dangling, long) are captured verbatim, and
//! apply never follows a link while it writes, whatever the image or the existing target holds
//! (docs/image-format.md, *Links* and *Existing target*). Each test keeps an `outside` directory
//! beside the target and checks that it stays empty.
//!
//! Hard links (manifest version 2) are tested in `image_meta.rs`: a hard link names an earlier
//! file of the image, never a path outside it; here the sink is checked not to create one (or
//! a FIFO) through a link of the target.

use crate::image_roundtrip::{capture_tree, file_entry, handmade, sha};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use tsforge_runtime::image::{self, apply, Compression, DirSink, Meta, RelPath, TreeSink};

fn assert_empty(dir: &Path) {
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.is_empty(),
        "apply wrote {names:?} into {}, outside its target",
        dir.display()
    );
}

fn apply_into(img: &Path, target: &Path, force: bool) -> anyhow::Result<image::ImageInfo> {
    let mut sink = DirSink::new(target, force)?;
    apply(&mut fs::File::open(img).unwrap(), &mut sink, &mut |_| {})
}

fn assert_link(p: &Path, target: &str) {
    let md = fs::symlink_metadata(p).unwrap();
    assert!(md.file_type().is_symlink(), "{} is not a link", p.display());
    assert_eq!(
        fs::read_link(p).unwrap(),
        PathBuf::from(target),
        "{}",
        p.display()
    );
}

/// What a Debian root file system holds: absolute links (systemd's `*.wants`), links that climb
/// above the tree, dangling ones, `..` after a name, a target of almost 4,096 bytes.
#[test]
fn links_with_any_target_round_trip_verbatim() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("etc/systemd/system/multi-user.target.wants")).unwrap();
    fs::create_dir_all(src.join("lib/systemd/system")).unwrap();
    fs::write(src.join("lib/systemd/system/ssh.service"), b"[Unit]\n").unwrap();
    let long = format!("{}end", "segment/".repeat(511));
    assert_eq!(long.len(), 4091);
    let out_abs = outside.to_str().unwrap().to_string();
    let out_file = format!("{out_abs}/x");
    let links: Vec<(&str, &str)> = vec![
        (
            "etc/systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service",
        ),
        ("abs-outside", &out_abs),
        ("abs-outside-file", &out_file),
        ("etc/up", "../../outside"),
        ("etc/name-then-dotdot", "systemd/../../../outside"),
        ("dangling", "no/such/file"),
        ("long", &long),
        ("root", "/"),
        ("windows-like", "C:\\Windows\\x"),
    ];
    for (p, target) in &links {
        symlink(target, src.join(p)).unwrap();
    }
    let img = t.path().join("img.tsimg");
    let info = capture_tree(&src, &img, Compression::Zstd);
    assert_eq!(info.symlinks, links.len() as u64);
    // `outer/target`, so that `../../outside` from `target/etc/up` is `outside`.
    let target = t.path().join("outer/target");
    apply_into(&img, &target, false).unwrap();
    for (p, l) in &links {
        assert_link(&target.join(p), l);
    }
    assert_eq!(
        fs::read(target.join("lib/systemd/system/ssh.service")).unwrap(),
        b"[Unit]\n"
    );
    assert_empty(&outside);
    // Again with --force over the applied tree: each link is replaced, none followed.
    apply_into(&img, &target, true).unwrap();
    for (p, l) in &links {
        assert_link(&target.join(p), l);
    }
    assert_empty(&outside);
}

/// Hostile images, crafted by writing the manifest: a file through a link (absolute or
/// `../..`), a directory replaced by a link and the reverse. Each is refused before anything is
/// written, naming the path, and nothing appears outside the target.
#[test]
fn a_file_through_a_link_of_the_image_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let out_abs = outside.to_str().unwrap();
    let c = b"payload".as_slice();
    let cases = vec![
        (
            "absolute link, then a file through it",
            serde_json::json!([
                {"path": "a", "type": "symlink", "target": out_abs}, file_entry("a/x", c)]),
            "\"a/x\": a is not a directory listed before it",
        ),
        (
            "../.. link, then a file through it",
            serde_json::json!([
                {"path": "d", "type": "symlink", "target": "../../outside"},
                file_entry("d/f", c)]),
            "\"d/f\": d is not a directory listed before it",
        ),
        (
            "a directory replaced by a link, then a file through it",
            serde_json::json!([
                {"path": "d", "type": "dir"},
                {"path": "d", "type": "symlink", "target": out_abs},
                file_entry("d/f", c)]),
            "\"d\": listed twice",
        ),
        (
            "a link replaced by a directory",
            serde_json::json!([
                {"path": "d", "type": "symlink", "target": out_abs},
                {"path": "d", "type": "dir"},
                file_entry("d/f", c)]),
            "\"d\": listed twice",
        ),
    ];
    for (i, (what, entries, expect)) in cases.into_iter().enumerate() {
        let case = t.path().join(format!("case{i}"));
        fs::create_dir(&case).unwrap();
        let img = handmade(&case, entries, &[(&format!("d/{}", &sha(c)[..32]), c)]);
        let target = case.join("target");
        let err = format!("{:#}", apply_into(&img, &target, false).unwrap_err());
        assert!(err.contains(expect), "{what}: {err}");
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "{what}");
        assert_empty(&outside);
    }
}

/// `--force` onto a tree that holds links where the image has directories and files (at the
/// top and below a real directory), and a directory where the image has a link: each link is
/// replaced, never followed.
#[test]
fn force_replaces_links_of_the_target_without_following_them() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::create_dir_all(src.join("e/sub")).unwrap();
    fs::write(src.join("d/f"), b"in d").unwrap();
    fs::write(src.join("e/sub/g"), b"in e/sub").unwrap();
    fs::write(src.join("h"), b"h").unwrap();
    symlink("/usr/lib", src.join("l")).unwrap();
    let img = t.path().join("img.tsimg");
    capture_tree(&src, &img, Compression::Zstd);

    let target = t.path().join("outer/target");
    fs::create_dir_all(target.join("e")).unwrap();
    symlink(&outside, target.join("d")).unwrap();
    symlink("../../../outside", target.join("e/sub")).unwrap();
    symlink(outside.join("h"), target.join("h")).unwrap();
    fs::create_dir_all(target.join("l/inner")).unwrap();
    fs::write(target.join("l/inner/old"), b"old").unwrap();
    fs::write(target.join("keep"), b"keep").unwrap();

    apply_into(&img, &target, true).unwrap();
    assert!(fs::symlink_metadata(target.join("d")).unwrap().is_dir());
    assert!(fs::symlink_metadata(target.join("e/sub")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("d/f")).unwrap(), b"in d");
    assert_eq!(fs::read(target.join("e/sub/g")).unwrap(), b"in e/sub");
    assert!(fs::symlink_metadata(target.join("h")).unwrap().is_file());
    assert_eq!(fs::read(target.join("h")).unwrap(), b"h");
    assert_link(&target.join("l"), "/usr/lib");
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"keep");
    assert_empty(&outside);
}

/// The directory sink itself refuses to go through a link of the target, whatever the caller
/// asks: the guarantee does not rest on the manifest checks.
#[test]
fn the_directory_sink_never_writes_through_a_link() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    let target = t.path().join("target");
    fs::create_dir(&target).unwrap();
    symlink(&outside, target.join("abs")).unwrap();
    symlink("../outside", target.join("rel")).unwrap();
    let mut sink = DirSink::new(&target, true).unwrap();
    let meta = Meta {
        mode: Some(0o777),
        mtime_ns: Some(0),
        ..Meta::default()
    };
    fs::write(target.join("f"), b"x").unwrap();
    for l in ["abs", "rel"] {
        let p = |s: &str| RelPath::new(&format!("{l}/{s}")).unwrap();
        let mut errors = Vec::new();
        match sink.create_file(&p("x"), &meta) {
            Ok(_) => panic!("{l}/x was created through a link"),
            Err(e) => errors.push(format!("{e:#}")),
        }
        errors.push(format!(
            "{:#}",
            sink.create_dir(&p("newdir"), &meta).unwrap_err()
        ));
        errors.push(format!(
            "{:#}",
            sink.create_dir(&p("sub/deeper"), &meta).unwrap_err()
        ));
        errors.push(format!(
            "{:#}",
            sink.symlink(&p("s"), "x", &meta).unwrap_err()
        ));
        errors.push(format!(
            "{:#}",
            sink.set_times(&p("sub"), &meta).unwrap_err()
        ));
        let f = RelPath::new("f").unwrap();
        errors.push(format!(
            "{:#}",
            sink.hardlink(&p("h"), &f, &meta).unwrap_err()
        ));
        errors.push(format!(
            "{:#}",
            sink.special(&p("fifo"), image::Special::Fifo, &meta)
                .unwrap_err()
        ));
        errors.push(format!(
            "{:#}",
            sink.set_times(&RelPath::new(l).unwrap(), &meta)
                .unwrap_err()
        ));
        for e in errors {
            assert!(
                e.contains(&format!("/target/{l}:")) && e.contains("symbolic link"),
                "{e}"
            );
        }
    }
    assert_eq!(
        fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        vec!["sub"]
    );
    assert_empty(&outside.join("sub"));
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&outside).unwrap().permissions().mode() & 0o7777;
    assert_ne!(mode, 0o777, "the mode was set through the link");
}
