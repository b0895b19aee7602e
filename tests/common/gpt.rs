//! Crafting damaged GPT headers that still carry valid CRCs (what a buggy or hostile tool
//! writes), for the tests that feed them to tsforge. The CRC is computed here, bit by bit,
//! independently of the crates tsforge uses.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// CRC-32 as GPT uses it (IEEE 802.3, reflected, initial and final XOR 0xFFFFFFFF).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Write `value` at byte `offset` of the GPT header at sector `lba` (512-byte sectors) of
/// `img`, then recompute the header's CRC over its 92 bytes.
pub fn patch_header(img: &Path, lba: u64, offset: usize, value: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut h = [0u8; 512];
    f.seek(SeekFrom::Start(lba * 512)).unwrap();
    f.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], b"EFI PART", "no GPT header at sector {lba}");
    h[offset..offset + value.len()].copy_from_slice(value);
    h[16..20].fill(0);
    let crc = crc32(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    f.seek(SeekFrom::Start(lba * 512)).unwrap();
    f.write_all(&h).unwrap();
}

/// [`patch_header`] on both the primary (sector 1) and the backup (last sector) header.
pub fn patch_both(img: &Path, offset: usize, value: &[u8]) {
    let last = std::fs::metadata(img).unwrap().len() / 512 - 1;
    patch_header(img, 1, offset, value);
    patch_header(img, last, offset, value);
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}
