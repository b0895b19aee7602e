//! Raw images onto a target range: plain, zstd and gzip round trips, size checks before the
//! first write, sha256 verification with the first MiB written last, damaged streams.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tsforge_runtime::image::raw::{apply, ApplyOptions};

const MIB: usize = 1 << 20;
const FILL: u8 = 0xaa;

/// An image whose first MiB is not zero anywhere, with a zero run inside.
fn image(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
    if len > 2 * MIB {
        v[MIB + 4096..MIB + 3 * 4096].fill(0);
    }
    v
}

fn target(dir: &Path, len: usize) -> PathBuf {
    let p = dir.join("target.img");
    std::fs::write(&p, vec![FILL; len]).unwrap();
    p
}

fn open_rw(p: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// zstd without the content size in the frame header (a streamed encoder).
fn zstd_stream(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// zstd with the content size recorded (one-shot).
fn zstd_sized(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

#[test]
fn round_trips_plain_zstd_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(3 * MIB + 123);
    for (name, stored) in [
        ("plain.bin", img.clone()),
        ("zstd.bin", zstd_stream(&img)),
        ("zstd-sized.bin", zstd_sized(&img)),
        ("gzip.bin", gzip(&img)),
    ] {
        let src = write(dir.path(), name, &stored);
        let tpath = target(dir.path(), 4 * MIB);
        let mut t = open_rw(&tpath);
        let mut calls = Vec::new();
        let mut progress = |done: u64, total: Option<u64>| calls.push((done, total));
        let opts = ApplyOptions {
            expected_sha256: Some(sha(&stored)),
            sparse: false,
            progress: Some(&mut progress),
        };
        let n =
            apply(&src, &mut t, 4 * MIB as u64, opts).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(n, img.len() as u64, "{name}");
        let got = std::fs::read(&tpath).unwrap();
        assert_eq!(got.len(), 4 * MIB, "{name}: target size unchanged");
        assert!(got[..img.len()] == img[..], "{name}: image bytes");
        assert!(
            got[img.len()..].iter().all(|b| *b == FILL),
            "{name}: bytes after the image untouched"
        );
        assert_eq!(
            calls.last().unwrap().0,
            img.len() as u64,
            "{name}: progress"
        );
        if name == "plain.bin" {
            assert_eq!(calls.last().unwrap().1, Some(img.len() as u64));
        }
    }
}

#[test]
fn oversize_is_refused_before_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(5 * MIB);
    for (name, stored) in [
        ("plain.bin", img.clone()),
        ("zstd-sized.bin", zstd_sized(&img)),
        ("gzip.bin", gzip(&img)),
    ] {
        let src = write(dir.path(), name, &stored);
        let tpath = target(dir.path(), 4 * MIB);
        let mut t = open_rw(&tpath);
        let e = apply(&src, &mut t, 4 * MIB as u64, ApplyOptions::default()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("more than the target") && msg.contains("nothing was written"),
            "{name}: {msg}"
        );
        assert!(msg.contains(name), "{name}: names the image: {msg}");
        let got = std::fs::read(&tpath).unwrap();
        assert!(got.iter().all(|b| *b == FILL), "{name}: target untouched");
    }
}

#[test]
fn overflow_without_a_known_size_stops_at_the_end_of_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(5 * MIB);
    let src = write(dir.path(), "stream.zst", &zstd_stream(&img));
    let tpath = target(dir.path(), 4 * MIB);
    let mut t = open_rw(&tpath);
    let e = apply(&src, &mut t, 4 * MIB as u64, ApplyOptions::default()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("does not fit"), "{msg}");
    let got = std::fs::read(&tpath).unwrap();
    assert_eq!(got.len(), 4 * MIB, "nothing written past the target");
    assert!(got[..MIB].iter().all(|b| *b == 0), "first MiB left zeroed");
}

#[test]
fn sha_mismatch_leaves_the_first_mib_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(3 * MIB);
    for (name, stored) in [("plain.bin", img.clone()), ("gzip.bin", gzip(&img))] {
        let src = write(dir.path(), name, &stored);
        let tpath = target(dir.path(), 4 * MIB);
        let mut t = open_rw(&tpath);
        let opts = ApplyOptions {
            expected_sha256: Some([0x11; 32]),
            ..Default::default()
        };
        let e = apply(&src, &mut t, 4 * MIB as u64, opts).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("sha256 is") && msg.contains(&"11".repeat(32)),
            "{name}: {msg}"
        );
        let got = std::fs::read(&tpath).unwrap();
        assert!(
            got[..MIB].iter().all(|b| *b == 0),
            "{name}: first MiB is zeroed, not the image's"
        );
    }
}

#[test]
fn truncated_streams_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(3 * MIB);
    for (name, stored) in [("gzip.bin", gzip(&img)), ("zstd.bin", zstd_stream(&img))] {
        let cut = &stored[..stored.len() * 2 / 3];
        let src = write(dir.path(), name, cut);
        let tpath = target(dir.path(), 4 * MIB);
        let mut t = open_rw(&tpath);
        // gzip's ISIZE is now garbage from the middle of the stream; a large value is refused
        // up front, a small one fails while decoding. Either way: an error, no bootable disk.
        let e = apply(&src, &mut t, 4 * MIB as u64, ApplyOptions::default());
        assert!(e.is_err(), "{name}: truncated stream accepted");
        let mut first = vec![0u8; MIB];
        let mut f = File::open(&tpath).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_exact(&mut first).unwrap();
        assert!(
            first.iter().all(|b| *b == 0) || first.iter().all(|b| *b == FILL),
            "{name}: the image's first MiB was written"
        );
    }
}

#[test]
fn trailing_garbage_after_zstd_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(MIB / 2);
    let mut stored = zstd_stream(&img);
    stored.extend_from_slice(b"garbage");
    let src = write(dir.path(), "junk.zst", &stored);
    let tpath = target(dir.path(), 4 * MIB);
    let mut t = open_rw(&tpath);
    assert!(apply(&src, &mut t, 4 * MIB as u64, ApplyOptions::default()).is_err());
}
