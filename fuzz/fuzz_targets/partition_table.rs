//! Arbitrary bytes as a small disk image, then `read_table`; or (first byte ≥ 128) as a FAT
//! volume, mounted and listed two levels deep with every file read. Any panic is a bug;
//! errors are fine. Seeds: fuzz/seeds/partition_table (made by fuzz/seeds/partition_table.sh).
//!
//! In table mode the CRCs of the GPT headers at sector 1 and at the last sector (and of their
//! entry arrays, when those lie inside the image) are recomputed before reading, so a mutated
//! header field reaches the header checks and the `gpt` crate instead of stopping at a CRC
//! mismatch (hostile tools write valid CRCs too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsforge_runtime::disk::{fat, layout, Disk};

/// Give the GPT header at byte `at` of `img` valid CRCs: first its entry array's (when the
/// array lies inside the image and is at most 1 MiB), then the header's own, over its header
/// size (clamped to 92..=512).
fn fix_gpt_crcs(img: &mut [u8], at: usize) {
    if img.len() < at + 512 || &img[at..at + 8] != b"EFI PART" {
        return;
    }
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let h = &img[at..at + 512];
    let entries_lba = u64::from_le_bytes(h[72..80].try_into().unwrap());
    let array = u64::from(u32_at(h, 80)) * u64::from(u32_at(h, 84));
    let start = entries_lba.checked_mul(512);
    if let Some(start) = start.filter(|s| array <= 1 << 20 && s + array <= img.len() as u64) {
        let crc = crc32fast::hash(&img[start as usize..(start + array) as usize]);
        img[at + 88..at + 92].copy_from_slice(&crc.to_le_bytes());
    }
    let size = (u32_at(img, at + 12) as usize).clamp(92, 512);
    img[at + 16..at + 20].fill(0);
    let crc = crc32fast::hash(&img[at..at + size]);
    img[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let fat_mode = data[0] >= 128;
    // Sizes from 0 to 4 MiB in 64 KiB steps, so the backup GPT area (the end) is reachable.
    let size = u64::from(data[0] % 65) * 65536;
    let body = &data[1..];
    let len = (body.len() as u64).max(size) as usize;
    let mut img = vec![0u8; len];
    img[..body.len()].copy_from_slice(body);
    if !fat_mode {
        // Mirrored at the end too, where the backup GPT lives.
        if len >= 2 * body.len() {
            img[len - body.len()..].copy_from_slice(body);
        }
        fix_gpt_crcs(&mut img, 512);
        if len >= 1024 {
            fix_gpt_crcs(&mut img, len / 512 * 512 - 512);
        }
    }
    let dir = std::env::temp_dir().join(format!("tsforge-fuzz-pt-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("disk.img");
    std::fs::write(&path, &img).unwrap();
    let disk = Disk::open(&path, false).unwrap();
    if fat_mode {
        if let Ok(fs) = disk.whole().and_then(fat::open) {
            if let Ok(root) = fs.list("/") {
                for e in root.iter().take(16) {
                    if e.is_dir {
                        let _ = fs.list(&e.name);
                    } else {
                        let _ = fs.read_file(&e.name);
                    }
                }
            }
        }
    } else if let Ok(Some(t)) = layout::read_table(&disk) {
        for p in &t.partitions {
            let _ = disk.range(p.start, p.len);
        }
    }
    let _ = std::fs::remove_file(&path);
});
