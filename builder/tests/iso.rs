//! ISO images written by `tsforge_builder::iso`, read back by independent tools: xorriso
//! (libisofs) for the trees, the El Torito catalog and the system area, bsdtar (libarchive)
//! as a second reader of the Joliet tree, and sfdisk for the hybrid MBR. Every external reader
//! runs with warnings treated as failures where it has such a switch.

use crate::common::{pattern, run, tool};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tsforge_builder::iso::{
    BiosBoot, Hybrid, IsoBuilder, IsoError, IsoOptions, LoadSize, Source, UefiBoot,
};

const T0: i64 = 1_700_000_000;

/// A WinPE/Linux-like tree: host files (streamed) and in-memory ones, long and non-ASCII
/// names, names that clash when upper-cased, a directory spanning several sectors, a tree
/// deeper than ECMA-119's 8 levels, an empty file and an empty directory. Returns the builder
/// and what the ISO's Joliet tree must hold (`None` for directories).
fn sample(src: &Path, options: IsoOptions) -> (IsoBuilder, BTreeMap<String, Option<Vec<u8>>>) {
    let mut files: Vec<(String, Vec<u8>, bool)> = vec![
        ("Boot/etfsboot.com".into(), pattern(1, 4096), true),
        (
            "isolinux/isolinux.bin".into(),
            pattern(2, 24 * 1024 + 100),
            true,
        ),
        (
            "isolinux/isolinux.cfg".into(),
            b"default tsforge\n".to_vec(),
            false,
        ),
        (
            "EFI/Microsoft/Boot/efisys.bin".into(),
            pattern(3, 100 * 1024),
            true,
        ),
        // Larger than the writer's buffer, not a whole number of sectors.
        (
            "sources/boot.wim".into(),
            pattern(4, 3 * 1024 * 1024 + 777),
            true,
        ),
        (
            "Docs/A long file name with spaces (and parens).txt".into(),
            pattern(5, 3000),
            true,
        ),
        (
            "Docs/Ünïcödé – naïve résumé.txt".into(),
            b"unicode\n".to_vec(),
            true,
        ),
        (
            format!("Docs/{}", "n".repeat(60) + ".txt"),
            b"64 characters\n".to_vec(),
            false,
        ),
        ("readme".into(), b"lower\n".to_vec(), false),
        ("README".into(), b"upper\n".to_vec(), false),
        ("dir.with.dots/file.tar.gz".into(), pattern(6, 10), true),
        (
            "a/b/c/d/e/f/g/h/i/j/deep.txt".into(),
            b"deep\n".to_vec(),
            false,
        ),
        ("empty.bin".into(), Vec::new(), true),
        (
            "tsforge/sequence.yaml".into(),
            b"steps: []\n".to_vec(),
            false,
        ),
    ];
    for i in 0..80 {
        let name = format!("many/file number {i:03} with a fairly long name.dat");
        files.push((name, pattern(100 + i, 100 + i as usize), false));
    }
    let mut b = IsoBuilder::new(options);
    let mut expected = BTreeMap::new();
    for (path, bytes, on_disk) in files {
        if on_disk {
            let host = src.join(path.replace('/', "_"));
            std::fs::write(&host, &bytes).unwrap();
            b.add_file(&path, Source::path(host)).unwrap();
        } else {
            b.add_file(&path, Source::bytes(bytes.clone())).unwrap();
        }
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            expected.insert(p.to_string_lossy().into_owned(), None);
            parent = p.parent();
        }
        expected.insert(path, Some(bytes));
    }
    b.add_dir("emptydir").unwrap();
    expected.insert("emptydir".into(), None);
    (b, expected)
}

fn windows_options() -> IsoOptions {
    let mut o = IsoOptions::new("TSFORGE_WINPE", T0);
    o.bios_boot = Some(BiosBoot::etfsboot("Boot/etfsboot.com"));
    o.uefi_boot = Some(UefiBoot::new("EFI/Microsoft/Boot/efisys.bin"));
    o
}

/// Build `b` into `dir/name`, returning the path.
fn build(b: &IsoBuilder, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let plan = b.plan().unwrap();
    let file = std::fs::File::create(&path).unwrap();
    plan.write(file, |_, _| {}).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), plan.size());
    path
}

/// xorriso on `iso`, failing on any message of severity WARNING or worse.
fn xorriso(xorriso: &Path, iso: &Path, read_fs: &str, args: &[&str]) -> String {
    run(Command::new(xorriso)
        .args(["-return_with", "WARNING", "32", "-read_fs", read_fs])
        .args(["-ecma119_map", "unmapped", "-indev"])
        .arg(iso)
        .args(args))
}

/// Make an extracted tree writable again, so the temporary directory can be removed.
fn make_writable(root: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() | 0o700;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            if meta.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            }
        }
    }
}

#[test]
fn joliet_tree_round_trips_through_xorriso_and_bsdtar() {
    let Some(x) = tool("xorriso") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (b, expected) = sample(dir.path(), windows_options());
    let iso = build(&b, dir.path(), "t.iso");

    // xorriso reads the Joliet tree (there is no Rock Ridge) and extracts every file.
    let out = dir.path().join("xorriso-out");
    run(Command::new(&x)
        .args(["-return_with", "WARNING", "32", "-osirrox", "on", "-indev"])
        .arg(&iso)
        .arg("-extract")
        .arg("/")
        .arg(&out));
    make_writable(&out);
    let got = read_tree(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "names in the Joliet tree"
    );
    for (path, bytes) in &expected {
        assert!(
            got[path] == *bytes,
            "{path}: content differs after extraction"
        );
    }

    // libarchive, a second independent reader.
    if let Some(bsdtar) = tool("bsdtar") {
        let out = dir.path().join("bsdtar-out");
        std::fs::create_dir(&out).unwrap();
        run(Command::new(bsdtar)
            .arg("-xf")
            .arg(&iso)
            .arg("-C")
            .arg(&out));
        make_writable(&out);
        let got = read_tree(&out);
        assert_eq!(got, expected, "bsdtar's view of the ISO");
    }
}

#[test]
fn primary_tree_has_unique_d_character_names() {
    let Some(x) = tool("xorriso") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (b, expected) = sample(dir.path(), windows_options());
    let iso = build(&b, dir.path(), "t.iso");
    let listing = xorriso(&x, &iso, "ecma119", &["-find", "/", "-exec", "lsdl", "--"]);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_once(" '/").map(|(_, n)| n.trim_end_matches('\'')))
        .filter(|n| !n.is_empty())
        .collect();
    for want in [
        "BOOT/ETFSBOOT.COM;1",
        "ISOLINUX/ISOLINUX.CFG;1",
        "EFI/MICROSOFT/BOOT/EFISYS.BIN;1",
        "README.;1",
        "README_1.;1",
        "DIR_WITH_DOTS/FILE_TAR.GZ;1",
        "A/B/C/D/E/F/G/H/I/J/DEEP.TXT;1",
        "EMPTYDIR",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:#?}");
    }
    assert_eq!(names.len(), expected.len(), "one primary name per entry");
    for n in &names {
        let last = n.rsplit('/').next().unwrap();
        let (base, version) = last.split_once(';').unwrap_or((last, "1"));
        assert_eq!(version, "1", "{n}");
        assert!(base.len() <= 31, "{n} is longer than level 2 allows");
        assert!(
            base.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '.'),
            "{n} has characters outside the d-characters"
        );
    }
}

/// The `El Torito boot img` lines of `-report_el_torito plain`:
/// (platform, bootable, emulation, load size, LBA).
fn boot_images(report: &str) -> Vec<(String, String, String, u32, u32)> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("El Torito boot img :"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[6].parse().unwrap(),
                f[7].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn el_torito_bios_and_uefi_entries() {
    let Some(x) = tool("xorriso") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = sample(dir.path(), windows_options());
    let iso = build(&b, dir.path(), "t.iso");
    let report = xorriso(&x, &iso, "any", &["-report_el_torito", "plain"]);
    let imgs = boot_images(&report);
    assert_eq!(imgs.len(), 2, "{report}");
    assert_eq!(
        (
            imgs[0].0.as_str(),
            imgs[0].1.as_str(),
            imgs[0].2.as_str(),
            imgs[0].3
        ),
        ("BIOS", "y", "none", 4),
        "{report}"
    );
    assert_eq!(
        (
            imgs[1].0.as_str(),
            imgs[1].1.as_str(),
            imgs[1].2.as_str(),
            imgs[1].3
        ),
        ("UEFI", "y", "none", 200),
        "{report}"
    );
    assert!(
        report.contains("El Torito img path :   1  /Boot/etfsboot.com"),
        "{report}"
    );
    assert!(
        report.contains("El Torito img path :   2  /EFI/Microsoft/Boot/efisys.bin"),
        "{report}"
    );
    assert!(!report.contains("boot-info-table"), "{report}");
    // The load addresses are where the files are.
    let iso_bytes = std::fs::read(&iso).unwrap();
    let at = |lba: u32| &iso_bytes[lba as usize * 2048..][..4096];
    assert_eq!(at(imgs[0].4), &pattern(1, 4096)[..]);
    assert_eq!(at(imgs[1].4), &pattern(3, 4096)[..]);
}

#[test]
fn uefi_only_catalog() {
    let Some(x) = tool("xorriso") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut o = IsoOptions::new("UEFI_ONLY", T0);
    o.uefi_boot = Some(UefiBoot::new("/efi.img"));
    let mut b = IsoBuilder::new(o);
    // Over 32 MiB: the sector count becomes 0, "up to the end of the disc" for UEFI.
    let big = dir.path().join("big-efi.img");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(33 << 20)
        .unwrap();
    b.add_file("efi.img", Source::path(&big)).unwrap();
    let iso = build(&b, dir.path(), "t.iso");
    let report = xorriso(&x, &iso, "any", &["-report_el_torito", "plain"]);
    let imgs = boot_images(&report);
    assert_eq!(imgs.len(), 1, "{report}");
    assert_eq!((imgs[0].0.as_str(), imgs[0].3), ("UEFI", 0), "{report}");
}

#[test]
fn isolinux_boot_info_table_is_patched() {
    let Some(x) = tool("xorriso") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut o = IsoOptions::new("TSFORGE_LINUX", T0);
    o.bios_boot = Some(BiosBoot::isolinux("isolinux/isolinux.bin"));
    let (b, _) = sample(dir.path(), o);
    let iso = build(&b, dir.path(), "t.iso");
    let report = xorriso(&x, &iso, "any", &["-report_el_torito", "plain"]);
    let imgs = boot_images(&report);
    let size = 24 * 1024 + 100;
    assert_eq!(imgs.len(), 1, "{report}");
    assert_eq!(
        (imgs[0].0.as_str(), imgs[0].3),
        ("BIOS", 49),
        "whole file: {report}"
    );
    assert!(
        report.contains("El Torito img opts :   1  boot-info-table"),
        "{report}"
    );

    // Check the table ourselves: PVD at 16, the file's LBA, its length, the checksum of
    // its 32-bit words from byte 64; the rest of the file unchanged.
    let out = dir.path().join("isolinux.bin");
    run(Command::new(&x)
        .args(["-return_with", "WARNING", "32", "-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/isolinux/isolinux.bin"])
        .arg(&out));
    let got = std::fs::read(&out).unwrap();
    let orig = pattern(2, size);
    let word = |o: usize| u32::from_le_bytes(got[o..o + 4].try_into().unwrap());
    let sum = orig[64..].chunks(4).fold(0u32, |s, w| {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        s.wrapping_add(u32::from_le_bytes(b))
    });
    assert_eq!(
        (word(8), word(12), word(16), word(20)),
        (16, imgs[0].4, size as u32, sum)
    );
    assert!(got[24..64].iter().all(|&b| b == 0));
    assert_eq!((&got[..8], &got[64..]), (&orig[..8], &orig[64..]));
    // The source on disk is untouched.
    let host = dir.path().join("isolinux_isolinux.bin");
    assert_eq!(std::fs::read(host).unwrap(), orig);
}

/// `sfdisk -d` partition lines: (start, size, type, bootable).
fn partitions(sfdisk: &Path, image: &Path) -> Vec<(u64, u64, String, bool)> {
    let dump = run(Command::new(sfdisk).arg("-d").arg(image));
    assert!(dump.contains("label: dos"), "{dump}");
    dump.lines()
        .filter(|l| l.contains(" : start="))
        .map(|l| {
            let field = |k: &str| {
                l.split(',')
                    .find_map(|f| {
                        f.trim()
                            .split_once(" : ")
                            .map_or(f, |x| x.1)
                            .trim()
                            .strip_prefix(k)
                    })
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            (
                field("start=").parse().unwrap(),
                field("size=").parse().unwrap(),
                field("type="),
                l.contains("bootable"),
            )
        })
        .collect()
}

#[test]
fn hybrid_mbr_has_iso_and_esp_partitions() {
    let (Some(x), Some(sfdisk)) = (tool("xorriso"), tool("sfdisk")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut o = IsoOptions::new("TSFORGE_HYBRID", T0);
    o.bios_boot = Some(BiosBoot::isolinux("isolinux/isolinux.bin"));
    o.uefi_boot = Some(UefiBoot::new("EFI/Microsoft/Boot/efisys.bin"));
    let code = vec![0xEB; 432]; // stands in for isohdpfx.bin
    o.hybrid = Some(Hybrid {
        boot_code: Some(code.clone()),
    });
    let (b, _) = sample(dir.path(), o);
    let iso = build(&b, dir.path(), "t.iso");
    let len = std::fs::metadata(&iso).unwrap().len();
    assert_eq!(len % (1 << 20), 0, "hybrid images are whole MiB");

    let report = xorriso(
        &x,
        &iso,
        "any",
        &["-report_el_torito", "plain", "-report_system_area", "plain"],
    );
    let imgs = boot_images(&report);
    let efi_lba = u64::from(imgs[1].4);
    assert_eq!(
        partitions(&sfdisk, &iso),
        [
            (0, len / 512, "0".to_string(), true),
            (efi_lba * 4, 200, "ef".to_string(), false)
        ]
    );
    assert!(
        report.contains("MBR partition path :   2  /EFI/Microsoft/Boot/efisys.bin"),
        "{report}"
    );
    let bytes = std::fs::read(&iso).unwrap();
    assert_eq!(&bytes[..432], &code[..]);
    // isohdpfx.bin finds the BIOS boot image here, in 512-byte sectors.
    let bios_lba = u64::from(imgs[0].4);
    assert_eq!(
        u64::from_le_bytes(bytes[432..440].try_into().unwrap()),
        bios_lba * 4
    );
    assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
}

#[test]
fn hybrid_without_uefi_uses_type_17() {
    let Some(sfdisk) = tool("sfdisk") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut o = IsoOptions::new("BIOS_ONLY", T0);
    o.bios_boot = Some(BiosBoot::isolinux("isolinux/isolinux.bin"));
    o.hybrid = Some(Hybrid::default());
    let (b, _) = sample(dir.path(), o);
    let iso = build(&b, dir.path(), "t.iso");
    let len = std::fs::metadata(&iso).unwrap().len();
    assert_eq!(
        partitions(&sfdisk, &iso),
        [(0, len / 512, "17".to_string(), true)]
    );
}

#[test]
fn identical_input_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = windows_options();
    o.hybrid = Some(Hybrid::default());
    let a = build(&sample(dir.path(), o.clone()).0, dir.path(), "a.iso");
    let b = build(&sample(dir.path(), o.clone()).0, dir.path(), "b.iso");
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two builds differ"
    );
    o.timestamp += 1;
    let c = build(&sample(dir.path(), o).0, dir.path(), "c.iso");
    assert!(
        std::fs::read(&a).unwrap() != std::fs::read(&c).unwrap(),
        "the timestamp is ignored"
    );
}

#[test]
fn progress_counts_up_to_the_image_size() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = sample(dir.path(), windows_options());
    let plan = b.plan().unwrap();
    let mut seen = Vec::new();
    let out = plan
        .write(Vec::new(), |done, total| seen.push((done, total)))
        .unwrap();
    assert_eq!(out.len() as u64, plan.size());
    assert!(
        seen.len() > 10,
        "progress is reported while files are copied"
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress goes forward"
    );
    assert!(seen.iter().all(|&(_, t)| t == plan.size()));
    assert_eq!(seen.last().unwrap().0, plan.size());
}

#[test]
fn missing_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = IsoBuilder::new(IsoOptions::new("X", T0));
    let missing = dir.path().join("no-such-file.wim");
    b.add_file("sources/boot.wim", Source::path(&missing))
        .unwrap();
    let err = b.plan().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IsoError::Read { .. }), "{err:?}");
    assert!(msg.contains("sources/boot.wim"), "{msg}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}

#[test]
fn source_changed_after_planning_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("grows.txt");
    std::fs::write(&host, b"12345").unwrap();
    let mut b = IsoBuilder::new(IsoOptions::new("X", T0));
    b.add_file("grows.txt", Source::path(&host)).unwrap();
    let plan = b.plan().unwrap();
    std::fs::write(&host, b"1234567890").unwrap();
    let err = plan.write(Vec::new(), |_, _| {}).unwrap_err();
    assert!(matches!(err, IsoError::Changed { .. }), "{err:?}");
    assert!(err.to_string().contains("grows.txt"), "{err}");
}

#[test]
fn file_over_4_gib_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("install.wim");
    // Sparse: nothing is written to the disk.
    std::fs::File::create(&host)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let mut b = IsoBuilder::new(IsoOptions::new("X", T0));
    b.add_file("sources/install.wim", Source::path(&host))
        .unwrap();
    let err = b.plan().unwrap_err();
    assert!(
        matches!(err, IsoError::FileTooLarge { size, .. } if size == 4 << 30),
        "{err:?}"
    );
    assert!(err.to_string().contains("sources/install.wim"), "{err}");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let mut b = IsoBuilder::new(IsoOptions::new("X", T0));
    b.add_file("a/b.txt", Source::bytes(b"x".to_vec())).unwrap();
    assert!(matches!(
        b.add_file("/a/b.txt", Source::bytes(Vec::new())),
        Err(IsoError::Duplicate { .. })
    ));
    assert!(matches!(
        b.add_file("a", Source::bytes(Vec::new())),
        Err(IsoError::FileDirConflict { .. })
    ));
    assert!(matches!(
        b.add_dir("a/b.txt/c"),
        Err(IsoError::FileDirConflict { .. })
    ));
    for bad in ["", "a//b", "../x", "a\\b"] {
        assert!(
            matches!(
                b.add_file(bad, Source::bytes(Vec::new())),
                Err(IsoError::InvalidPath { .. })
            ),
            "{bad:?}"
        );
    }

    // Plan-time checks.
    let plan_err = |o: IsoOptions, files: &[(&str, usize)]| {
        let mut b = IsoBuilder::new(o);
        for (p, n) in files {
            b.add_file(p, Source::bytes(vec![1u8; *n])).unwrap();
        }
        b.plan().unwrap_err()
    };
    let long = format!("d/{}.txt", "x".repeat(61));
    let err = plan_err(IsoOptions::new("X", T0), &[(&long, 1)]);
    assert!(
        matches!(&err, IsoError::InvalidName { path, .. } if *path == long),
        "{err:?}"
    );
    assert!(err.to_string().contains("65 characters"), "{err}");
    let err = plan_err(IsoOptions::new("X", T0), &[("a:b", 1)]);
    assert!(matches!(err, IsoError::InvalidName { .. }), "{err:?}");

    for label in ["", "this label is much longer than 32 chars", "bad/label"] {
        let err = plan_err(IsoOptions::new(label, T0), &[]);
        assert!(matches!(err, IsoError::Label { .. }), "{label:?}: {err:?}");
    }
    let err = plan_err(IsoOptions::new("X", i64::MAX), &[]);
    assert!(matches!(err, IsoError::Timestamp(_)), "{err:?}");

    let mut o = IsoOptions::new("X", T0);
    o.bios_boot = Some(BiosBoot::etfsboot("Boot/etfsboot.com"));
    let err = plan_err(o, &[("boot/other.com", 10)]);
    assert!(
        matches!(&err, IsoError::BootImage { platform: "BIOS", path, .. } if path == "Boot/etfsboot.com"),
        "{err:?}"
    );
    let mut o = IsoOptions::new("X", T0);
    o.bios_boot = Some(BiosBoot::isolinux("isolinux.bin"));
    let err = plan_err(o, &[("isolinux.bin", 40)]);
    assert!(
        err.to_string().contains("too small for a boot-info table"),
        "{err}"
    );
    let mut o = IsoOptions::new("X", T0);
    o.bios_boot = Some(BiosBoot {
        image: "big.bin".into(),
        load_size: LoadSize::WholeFile,
        boot_info_table: false,
    });
    let err = plan_err(o, &[("big.bin", 40 << 20)]);
    assert!(err.to_string().contains("cannot be loaded whole"), "{err}");
    let mut o = IsoOptions::new("X", T0);
    o.hybrid = Some(Hybrid {
        boot_code: Some(vec![0; 441]),
    });
    assert!(matches!(plan_err(o, &[]), IsoError::BootCode(441)));
}

/// Every file and directory under `root`: relative path → `Some(bytes)` for files, `None`
/// for directories.
fn read_tree(root: &Path) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}
