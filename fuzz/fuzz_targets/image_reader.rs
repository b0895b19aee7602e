//! The image reader (`image::apply`, `info`, `verify`) on arbitrary bytes never panics and never
//! writes outside its target directory.
//!
//! Input whose first byte is `J` is not an archive: the harness wraps it into a well-formed
//! image so the manifest checks and apply itself get exercised too. The rest up to the first NUL
//! is the manifest JSON (stored as `tsforge-image.json`); each further NUL-separated chunk
//! becomes a stored entry named like a content (`format::content_name` of its sha256) (or, when it starts with `!`, an entry
//! named by the chunk itself). Any other input is read as an image as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tsforge_runtime::image::format::{ZipWriter, METHOD_STORED};
use tsforge_runtime::image::{self, DirSink, NullSink};

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| std::env::temp_dir().join(format!("tsforge-fuzz-image-{}", std::process::id())))
}

fn wrap(data: &[u8]) -> Vec<u8> {
    let mut parts = data.split(|b| *b == 0);
    let manifest = parts.next().unwrap_or_default();
    let mut zw = ZipWriter::new(std::io::Cursor::new(Vec::new()), 0);
    zw.add(
        "tsforge-image.json",
        METHOD_STORED,
        crc32fast::hash(manifest),
        manifest.len() as u64,
        manifest,
    )
    .unwrap();
    for chunk in parts {
        let name = match chunk.strip_prefix(b"!") {
            Some(n) => String::from_utf8_lossy(n).into_owned(),
            None => tsforge_runtime::image::format::content_name(&format!(
                "{:x}",
                sha2::Sha256::digest(chunk)
            )),
        };
        if name.len() > 1000 {
            continue;
        }
        zw.add(&name, METHOD_STORED, crc32fast::hash(chunk), chunk.len() as u64, chunk)
            .unwrap();
    }
    zw.finish().unwrap().0.into_inner()
}

/// Everything below `dir` (paths relative to it).
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.strip_prefix(b"J") {
        Some(rest) => wrap(rest),
        None => data.to_vec(),
    };
    let outer = scratch();
    let _ = std::fs::remove_dir_all(outer);
    std::fs::create_dir_all(outer.join("canary")).unwrap();
    std::fs::write(outer.join("canary/file"), b"canary").unwrap();
    let target = outer.join("target");

    let mut sink = DirSink::new(&target, false).unwrap();
    let applied = image::apply(&mut &bytes[..], &mut sink, &mut |_| {});
    let verified = image::apply(&mut &bytes[..], &mut NullSink, &mut |_| {});
    assert_eq!(applied.is_ok(), verified.is_ok(), "apply and verify disagree");

    // Nothing outside the target: the outer directory holds only target/ and the canary.
    let outside: Vec<_> = listing(outer)
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    assert_eq!(
        outside,
        vec![PathBuf::from("canary"), PathBuf::from("canary/file")],
        "apply wrote outside its target"
    );
    assert_eq!(std::fs::read(outer.join("canary/file")).unwrap(), b"canary");

    let file = outer.join("image");
    std::fs::write(&file, &bytes).unwrap();
    let v = image::verify(&file);
    assert_eq!(v.is_ok(), verified.is_ok());
    if let Ok(info) = image::info(&file) {
        if let Ok(a) = &applied {
            assert_eq!(info.files, a.files);
        }
    }
});
