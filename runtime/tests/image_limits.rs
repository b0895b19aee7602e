//! Images built to exhaust memory: a manifest too big to be real, a manifest with too many
//! entries or too long strings, and a generator for measuring the peak memory of
//! `tsforge image verify` on such an image (docs/image-format.md, "Limits").

use std::fs;
use std::io::Write;
use std::path::Path;
use tsforge_runtime::image::format::{ZipWriter, METHOD_DEFLATE};

/// Writes to `out` an image whose manifest lists `files` files `dir/fNNNNNNN`, each with its
/// own (fake) sha256, and no content: the worst case for the memory the manifest takes once
/// parsed. `pad` adds that many bytes to every path. The manifest is deflated, so a 100 MiB
/// manifest takes a few MiB of image. Returns the manifest's uncompressed size.
fn craft(out: &Path, files: usize, pad: usize, empty: bool) -> u64 {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(1));
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut put = |b: &[u8]| {
        enc.write_all(b).unwrap();
        crc.update(b);
        len += b.len() as u64;
    };
    put(br#"{"format":"tsforge-image","version":1,"name":"big","description":"","created":0,"tsforge_version":"0","compression":"none","entries":[{"path":"dir","type":"dir"}"#);
    let padding = "p".repeat(pad);
    for i in 0..files {
        // A cheap, distinct 64-digit "hash" per file.
        let h = format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4);
        if empty {
            put(format!(r#",{{"path":"dir/{i:x}{padding}","type":"file","size":0}}"#).as_bytes());
            continue;
        }
        put(
            format!(
                r#",{{"path":"dir/f{i:08}{padding}","type":"file","size":1,"sha256":"{h}","mode":420,"mtime_ns":1700000000000000000}}"#
            )
            .as_bytes(),
        );
    }
    put(b"]}");
    let packed = enc.finish().unwrap();
    let crc = crc.finalize();
    let f = fs::File::create(out).unwrap();
    let mut zw = ZipWriter::new(f, 0);
    zw.add("tsforge-image.json", METHOD_DEFLATE, crc, len, &packed)
        .unwrap();
    zw.finish().unwrap();
    len
}

fn verify_error(img: &Path) -> String {
    format!(
        "{:#}",
        tsforge_runtime::image::verify(img).expect_err("verify must fail")
    )
}

#[test]
fn a_manifest_claiming_more_than_the_limit_is_refused_before_it_is_read() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("x.tsimg");
    let f = fs::File::create(&img).unwrap();
    let mut zw = ZipWriter::new(f, 0);
    zw.add(
        "tsforge-image.json",
        METHOD_DEFLATE,
        0,
        200 << 20,
        b"\x03\x00",
    )
    .unwrap();
    zw.finish().unwrap();
    let err = verify_error(&img);
    assert!(err.contains("more than the limit of 128 MiB"), "{err}");
}

#[test]
fn a_manifest_listing_too_many_paths_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("x.tsimg");
    craft(&img, 1_000_000, 0, true);
    let err = verify_error(&img);
    assert!(err.contains("more than 1000000 paths"), "{err}");
}

#[test]
fn long_values_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("x.tsimg");
    // A path over 4096 bytes: refused by the path check, quoted only in part.
    craft(&img, 1, 5000, true);
    let err = verify_error(&img);
    assert!(err.contains("longer than 4096"), "{err}");
    assert!(err.len() < 1000, "{err}");
    // A value over 1 MiB: refused while it is read, before it is kept whole.
    craft(&img, 1, 2 << 20, true);
    let err = verify_error(&img);
    assert!(err.contains("a value longer than 1 MiB"), "{err}");
}

/// Not a test: writes the image measured in docs/image-format.md ("Limits") to
/// `$TSFORGE_CRAFT_OUT` (`$TSFORGE_CRAFT_FILES` files, default 650 000: a 99 MiB manifest).
/// `TSFORGE_CRAFT_OUT=/tmp/big.tsimg cargo test -p tsforge-runtime --test main --
/// --ignored image_limits::craft_for_measuring`, then
/// `/usr/bin/time -v tsforge image verify /tmp/big.tsimg`.
#[test]
#[ignore]
fn craft_for_measuring() {
    let Ok(out) = std::env::var("TSFORGE_CRAFT_OUT") else {
        eprintln!("set TSFORGE_CRAFT_OUT");
        return;
    };
    let files = std::env::var("TSFORGE_CRAFT_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(650_000);
    let pad = std::env::var("TSFORGE_CRAFT_PAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let empty = std::env::var("TSFORGE_CRAFT_EMPTY").is_ok_and(|v| v == "1");
    let len = craft(Path::new(&out), files, pad, empty);
    eprintln!(
        "{out}: manifest of {len} bytes ({} MiB), image of {} bytes",
        len >> 20,
        fs::metadata(&out).unwrap().len()
    );
}
