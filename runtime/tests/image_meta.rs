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
