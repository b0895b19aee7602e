//! Manifest version 2 (docs/image-format.md): hostile hard links, device numbers and extended
//! attributes are refused before anything is written, naming the entry; a version newer than
//! this tsforge reads is "a newer format"; FAT turns hard links into copies and refuses device
//! nodes and FIFOs. (The round trip of an operating system's tree through the binary is in the
//! root package's tests/image_meta_cli.rs.)

use crate::image_roundtrip::{apply_contained, file_entry, handmade, handmade_manifest, sha};
use serde_json::json;

fn name(c: &[u8]) -> String {
    format!("d/{}", &sha(c)[..32])
}

#[test]
fn hostile_version_2_manifests_are_refused_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let c = b"x".as_slice();
    let f = || file_entry("f", c);
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "a symlink then a file through it",
            json!([{"path": "l", "type": "symlink", "target": "/etc"}, file_entry("l/passwd", c)]),
            "\"l/passwd\": l is not a directory listed before it",
        ),
        (
            "a hard link to a path outside",
            json!([f(), {"path": "h", "type": "hardlink", "target": "../f"}]),
            "\"h\": hard link target \"../f\": `..` component",
        ),
        (
            "a hard link with .. inside",
            json!([{"path": "d", "type": "dir"}, f(),
                   {"path": "h", "type": "hardlink", "target": "d/../f"}]),
            "\"h\": hard link target \"d/../f\": `..` component",
        ),
        (
            "a hard link to an absolute path",
            json!([f(), {"path": "h", "type": "hardlink", "target": "/etc/shadow"}]),
            "\"h\": hard link target \"/etc/shadow\": absolute path",
        ),
        (
            "a hard link to a later entry",
            json!([{"path": "h", "type": "hardlink", "target": "f"}, f()]),
            "\"h\": hard link target f comes after the link",
        ),
        (
            "a hard link to a directory",
            json!([{"path": "d", "type": "dir"}, f(),
                   {"path": "h", "type": "hardlink", "target": "d"}]),
            "\"h\": hard link target d is a dir entry; a hard link must name a file",
        ),
        (
            "a hard link to a symlink",
            json!([{"path": "l", "type": "symlink", "target": "/etc/shadow"}, f(),
                   {"path": "h", "type": "hardlink", "target": "l"}]),
            "\"h\": hard link target l is a symlink entry",
        ),
        (
            "a hard link to another hard link",
            json!([f(), {"path": "h", "type": "hardlink", "target": "f"},
                   {"path": "h2", "type": "hardlink", "target": "h"}]),
            "\"h2\": hard link target h is a hardlink entry",
        ),
        (
            "a hard link to a missing path",
            json!([f(), {"path": "h", "type": "hardlink", "target": "nothing"}]),
            "\"h\": hard link target nothing is not a path of the image",
        ),
        (
            "a hard link with its own metadata",
            json!([f(), {"path": "h", "type": "hardlink", "target": "f", "uid": 0}]),
            "\"h\": a hardlink entry cannot have a uid, gid, user or group field",
        ),
        (
            "a directory replaced by a link (path listed twice)",
            json!([{"path": "d", "type": "dir"}, {"path": "d", "type": "symlink", "target": "/"},
                   f()]),
            "\"d\": listed twice",
        ),
        (
            "a device with an absurd major",
            json!([f(), {"path": "n", "type": "chardev", "major": 4096, "minor": 0}]),
            "\"n\": device number 4096:0 is out of range",
        ),
        (
            "a device with an absurd minor",
            json!([f(), {"path": "n", "type": "blockdev", "major": 8, "minor": 4_294_967_295u32}]),
            "\"n\": device number 8:4294967295 is out of range",
        ),
        (
            "a device without numbers",
            json!([f(), {"path": "n", "type": "chardev"}]),
            "\"n\": a device node without a major and a minor number",
        ),
        (
            "a FIFO with a size",
            json!([f(), {"path": "p", "type": "fifo", "size": 3}]),
            "\"p\": a fifo entry cannot have a size field",
        ),
        (
            "an xattr value that is not base64",
            json!([f(), {"path": "g", "type": "dir", "xattrs": {"user.x": "not base64!"}}]),
            "\"g\": the value of extended attribute user.x is not base64",
        ),
        (
            "an xattr outside the Linux namespaces",
            json!([f(), {"path": "g", "type": "dir", "xattrs": {"os2.x": "AA=="}}]),
            "\"g\": extended attribute name \"os2.x\" is not in one of the namespaces",
        ),
        (
            "sparse on a directory",
            json!([f(), {"path": "g", "type": "dir", "sparse": true}]),
            "\"g\": a dir entry cannot have a sparse field",
        ),
    ];
    for (what, entries, expect) in cases {
        let img = handmade(t.path(), entries, &[(&name(c), c)]);
        let err = apply_contained(&img);
        assert!(
            err.contains(expect) && err.contains("manifest entry"),
            "{what}: {err}"
        );
    }
}

/// A manifest version this tsforge does not know is "a newer format", reported before its
/// entries (which may hold fields this tsforge has never heard of) are read.
#[test]
fn a_newer_version_is_named_as_such() {
    let t = tempfile::tempdir().unwrap();
    let c = b"x".as_slice();
    // In the order capture writes the fields: the version before the entries.
    let m = br#"{"format": "tsforge-image", "version": 3, "name": "n", "description": "",
        "created": 0, "tsforge_version": "9", "compression": "none",
        "entries": [{"path": "f", "type": "quantum", "size": 1, "colour": "blue"}]}"#;
    let img = handmade_manifest(t.path(), m, &[(&name(c), c)]);
    let err = apply_contained(&img);
    assert!(
        err.contains("manifest version 3, a newer format than this tsforge reads"),
        "{err}"
    );
}

/// A pack (`p/<n>`) holds small contents one after the other, in the order of their first
/// path; a hand-made one applies, and every way of lying about it is refused before the
/// content it concerns is trusted, naming the entry.
#[test]
fn packs_apply_and_lies_about_them_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (a, b): (&[u8], &[u8]) = (b"alpha\n", b"bravo bravo\n");
    let packed = |path: &str, c: &[u8], n: u32| {
        let mut e = file_entry(path, c);
        e["pack"] = json!(n);
        e
    };
    let both = [a, b].concat();
    // A good pack: two contents (and a second path of the first) in p/0.
    let img = handmade(
        t.path(),
        json!([packed("a", a, 0), packed("b", b, 0), packed("c", a, 0)]),
        &[("p/0", &both)],
    );
    let out = t.path().join("out");
    crate::image_roundtrip::apply_file(&img, &out).unwrap();
    assert_eq!(std::fs::read(out.join("a")).unwrap(), a);
    assert_eq!(std::fs::read(out.join("b")).unwrap(), b);
    assert_eq!(std::fs::read(out.join("c")).unwrap(), a);

    let d_a = format!("d/{}", &sha(a)[..32]);
    let d_c = format!("d/{}", &sha(b"c")[..32]);
    let ab_wrong = [b, a].concat();
    let longer = [a, b, b"x"].concat();
    type Case<'a> = (
        &'a str,
        serde_json::Value,
        Vec<(&'a str, &'a [u8])>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "contents in the wrong order",
            json!([packed("a", a, 0), packed("b", b, 0)]),
            vec![("p/0", &ab_wrong)],
            "content does not match the manifest",
        ),
        (
            "a byte after the contents",
            json!([packed("a", a, 0), packed("b", b, 0)]),
            vec![("p/0", &longer)],
            "contents in the manifest make",
        ),
        (
            "a pack number with a gap",
            json!([packed("a", a, 0), packed("b", b, 2), file_entry("c", b"c")]),
            vec![("p/0", a), ("p/2", b), (d_c.as_str(), b"c")],
            "no content in pack 1",
        ),
        (
            "a pack number beyond every content",
            json!([packed("a", a, 7)]),
            vec![("p/7", a)],
            "manifest entry \"a\": pack number 7 is larger than the number of contents",
        ),
        (
            "a packed content also stored alone",
            json!([packed("a", a, 0)]),
            vec![(d_a.as_str(), a), ("p/0", a)],
            "keeps in pack 0",
        ),
        (
            "one content said to be in two packs",
            json!([packed("a", a, 0), packed("c", a, 1), packed("b", b, 1)]),
            vec![("p/0", a)],
            "said to be in two places",
        ),
        (
            "an empty file in a pack",
            json!([packed("e", b"", 0)]),
            vec![],
            "an empty file has no content to keep in a pack",
        ),
        (
            "a pack the manifest does not name",
            json!([file_entry("a", a)]),
            vec![(d_a.as_str(), a), ("p/0", a)],
            "is not in the manifest",
        ),
        (
            "a pack named with a leading zero",
            json!([packed("a", a, 0)]),
            vec![("p/00", a)],
            "is not in the manifest",
        ),
    ];
    for (what, entries, data, expect) in cases {
        let img = handmade(t.path(), entries, &data);
        let err = apply_contained(&img);
        assert!(err.contains(expect), "{what}: {err}");
    }
}
