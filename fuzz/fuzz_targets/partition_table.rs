//! Arbitrary bytes as a small disk image, then `read_table`; or (first byte ≥ 128) as a FAT
//! volume, mounted and listed two levels deep with every file read. Any panic is a bug;
//! errors are fine. Seeds: fuzz/seeds/partition_table (made by fuzz/seeds/partition_table.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Seek, SeekFrom, Write};
use tsforge_runtime::disk::{fat, layout, Disk};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let fat_mode = data[0] >= 128;
    // Sizes from 0 to 4 MiB in 64 KiB steps, so the backup GPT area (the end) is reachable.
    let size = u64::from(data[0] % 65) * 65536;
    let body = &data[1..];
    let dir = std::env::temp_dir().join(format!("tsforge-fuzz-pt-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let img = dir.join("disk.img");
    {
        let mut f = std::fs::File::create(&img).unwrap();
        f.write_all(body).unwrap();
        let len = (body.len() as u64).max(size);
        f.set_len(len).unwrap();
        // Mirrored at the end too, where the backup GPT lives.
        if !fat_mode && len >= 2 * body.len() as u64 {
            f.seek(SeekFrom::Start(len - body.len() as u64)).unwrap();
            f.write_all(body).unwrap();
        }
    }
    let disk = Disk::open(&img, false).unwrap();
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
    let _ = std::fs::remove_file(&img);
});
