//! Arbitrary bytes as a FAT volume found on a used disk: `fatcheck::check` must never panic;
//! when it calls the volume clean for writing, `fatfs` must be able to list and read it, and tsforge's
//! writes (a folder, files with long names, through `fat::FatFs` as apply does) must leave it
//! clean by the same check. A panic or a volume made damaged is a bug; errors are fine.
//! Seeds: fuzz/seeds/fat_volume (made by fuzz/seeds/fat_volume.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;
use tsforge_runtime::disk::{fat, fatcheck, Disk};

fn walk(fs: &fat::FatFs, path: &str, depth: usize, budget: &mut usize) {
    let Ok(entries) = fs.list(path) else { return };
    for e in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let child = if path.is_empty() {
            e.name.clone()
        } else {
            format!("{path}/{}", e.name)
        };
        if e.is_dir {
            if depth < 6 {
                walk(fs, &child, depth + 1, budget);
            }
        } else if e.size < 1 << 20 {
            let _ = fs.read_file(&child);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 512 {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tsforge-fuzz-fat-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let img = dir.join("vol.img");
    {
        let mut f = std::fs::File::create(&img).unwrap();
        f.write_all(data).unwrap();
        // Volumes up to 40 MiB (FAT32 needs 33): the input is the start, the rest reads as
        // zeros.
        let total16 = u64::from(u16::from_le_bytes([data[19], data[20]]));
        let total32 = u64::from(u32::from_le_bytes([data[32], data[33], data[34], data[35]]));
        let claimed = if total16 != 0 { total16 } else { total32 } * 512;
        f.set_len((data.len() as u64).max(claimed.min(40 << 20))).unwrap();
    }
    let disk = Disk::open(&img, true).unwrap();
    // What apply asks before it writes into a FAT it did not make.
    let clean = match fatcheck::check(&mut disk.whole().unwrap()) {
        Ok(r) => r.is_clean_for_writing(),
        Err(_) => false,
    };
    if clean {
        if let Ok(fs) = fat::open(disk.whole().unwrap()) {
            let mut budget = 512;
            walk(&fs, "", 0, &mut budget);
            let body: Vec<u8> = data.iter().copied().cycle().take(3000).collect();
            let wrote = fs.create_dir_all("fuzz folder/sub").is_ok()
                && fs
                    .write_file("fuzz folder/sub/a long file name.txt", &mut &body[..], None)
                    .is_ok()
                && (0..40).all(|i| {
                    fs.write_file(&format!("root entry number {i}.bin"), &mut &body[..i * 50], None)
                        .is_ok()
                });
            let closed = fs.close().is_ok();
            if wrote && closed {
                let after = fatcheck::check(&mut disk.whole().unwrap()).unwrap();
                assert!(
                    after.is_clean_for_writing(),
                    "a clean volume is damaged after tsforge wrote to it: {:?}",
                    after.problems
                );
            }
        }
    }
    drop(disk);
    let _ = std::fs::remove_file(&img);
});
