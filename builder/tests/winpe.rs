//! The winpe template on synthetic Windows PE sources: placeholder boot files and a real
//! `boot.wim` made by `wimlib-imagex capture --boot`. The updated `boot.wim` is read back with
//! wimlib-imagex (`info`, `dir`, `extract`, `verify`); ISO sources are made with xorriso.

use crate::common::{pattern, run, tool};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tsforge_builder::source::Source;
use tsforge_builder::template::winpe::{self, REQUIRED_FILES};
use tsforge_builder::template::{Prepared, PxeBoot, TemplateInput, UsbBios};

const T0: i64 = 1_700_000_000;

/// The placeholder files of a synthetic media folder (required files and a few extras that
/// real media have), each with distinct content. `sources/boot.wim` is made separately.
fn placeholder_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&str, Vec<u8>)> = REQUIRED_FILES
        .iter()
        .filter(|p| **p != winpe::BOOT_WIM)
        .enumerate()
        .map(|(i, p)| (*p, pattern(i as u32 + 1, 500 + i * 37)))
        .collect();
    v.push(("Boot/bootfix.bin", pattern(40, 1024)));
    v.push(("Boot/Fonts/wgl4_boot.ttf", pattern(41, 3000)));
    v.push((
        "EFI/Microsoft/Boot/Fonts/segmono_boot.ttf",
        pattern(42, 2000),
    ));
    v
}

/// A real WIM (LZX) with `Windows/System32/placeholder.txt`, image 1 marked bootable.
fn make_boot_wim(wimlib: &Path, dir: &Path, wim: &Path) {
    let img = dir.join("pe-image");
    std::fs::create_dir_all(img.join("Windows/System32")).unwrap();
    std::fs::write(
        img.join("Windows/System32/placeholder.txt"),
        b"Windows PE placeholder\r\n",
    )
    .unwrap();
    std::fs::create_dir_all(wim.parent().unwrap()).unwrap();
    run(Command::new(wimlib)
        .arg("capture")
        .arg(&img)
        .arg(wim)
        .arg("Microsoft Windows PE")
        .arg("--boot"));
}

/// A synthetic copype media folder at `media`; `rename` changes the spelling of paths.
fn make_media(wimlib: &Path, scratch: &Path, media: &Path, rename: &dyn Fn(&str) -> String) {
    for (p, bytes) in placeholder_files() {
        let dest = media.join(rename(p));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
    make_boot_wim(wimlib, scratch, &media.join(rename(winpe::BOOT_WIM)));
}

fn runner_bytes() -> Vec<u8> {
    let mut b = b"MZ".to_vec();
    b.extend(pattern(99, 200_000));
    b
}

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    runner: PathBuf,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let runner = root.join("tsforge.exe");
        std::fs::write(&runner, runner_bytes()).unwrap();
        Case {
            _dir: dir,
            root,
            runner,
        }
    }

    fn input(&self, source: &Path, work: &str) -> TemplateInput {
        TemplateInput {
            source: Some(source.to_path_buf()),
            runner: self.runner.clone(),
            work: self.root.join(work),
            epoch: T0,
            ..Default::default()
        }
    }
}

/// The error of a `prepare` that must fail, with its context chain.
fn error_of(r: anyhow::Result<Prepared>) -> String {
    match r {
        Ok(p) => panic!("prepare succeeded: {:?}", p.summary),
        Err(e) => format!("{e:#}"),
    }
}

fn sha(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// Checks the updated boot.wim with wimlib-imagex: both files in image `index`, the same
/// bytes, the placeholder kept, and the WIM intact.
fn check_wim(wimlib: &Path, wim: &Path, index: u32, scratch: &Path) {
    let listing = run(Command::new(wimlib)
        .arg("dir")
        .arg(wim)
        .arg(index.to_string()));
    for want in [
        "/Windows/System32/tsforge.exe",
        "/Windows/System32/winpeshl.ini",
        "/Windows/System32/placeholder.txt",
    ] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} not in image {index}:\n{listing}"
        );
    }
    let out = scratch.join(format!("extracted-{index}"));
    run(Command::new(wimlib)
        .arg("extract")
        .arg(wim)
        .arg(index.to_string())
        .arg("/Windows/System32/tsforge.exe")
        .arg("/Windows/System32/winpeshl.ini")
        .arg(format!("--dest-dir={}", out.display()))
        .arg("--no-acls"));
    assert_eq!(
        std::fs::read(out.join("tsforge.exe")).unwrap(),
        runner_bytes()
    );
    assert_eq!(
        std::fs::read_to_string(out.join("winpeshl.ini")).unwrap(),
        "[LaunchApps]\r\n%SYSTEMROOT%\\System32\\wpeinit.exe\r\n\
         %SYSTEMROOT%\\System32\\tsforge.exe, boot\r\n"
    );
    run(Command::new(wimlib).arg("verify").arg(wim));
}

fn host_path(p: &Prepared, path: &str) -> PathBuf {
    match p.tree.get(path) {
        Some(Source::Path(h)) => h.clone(),
        other => panic!("{path}: expected a host file, got {other:?}"),
    }
}

fn boot_index(wimlib: &Path, wim: &Path) -> String {
    let info = run(Command::new(wimlib).arg("info").arg(wim));
    info.lines()
        .find_map(|l| l.strip_prefix("Boot Index:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no Boot Index in:\n{info}"))
}

#[test]
fn prepares_a_copype_media_folder() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    let src_wim = media.join("sources/boot.wim");
    let before = sha(&src_wim);

    let p = winpe::prepare(&c.input(&media, "work")).unwrap();

    // Every source file at its path, from the host; boot.wim replaced by the updated copy.
    for (path, bytes) in placeholder_files() {
        let host = host_path(&p, path);
        assert_eq!(host, media.join(path), "{path}");
        assert_eq!(std::fs::read(&host).unwrap(), bytes, "{path}");
    }
    let wim = host_path(&p, "sources/boot.wim");
    assert!(wim.starts_with(c.root.join("work")), "{}", wim.display());
    assert_eq!(sha(&src_wim), before, "the source boot.wim must not change");
    assert_ne!(sha(&wim), before);
    check_wim(&wimlib, &wim, 1, &c.root);
    assert_eq!(boot_index(&wimlib, &wim), "1");

    // TsConfig.ini, and nothing else added.
    let Some(Source::Bytes(ts)) = p.tree.get("SMS/data/TsConfig.ini") else {
        panic!("no TsConfig.ini");
    };
    let ts = std::str::from_utf8(ts).unwrap();
    assert!(ts.contains("[CustomHook]\r\n"), "{ts}");
    assert!(
        ts.contains("Program = \"X:\\Windows\\System32\\tsforge.exe boot\""),
        "{ts}"
    );
    assert_eq!(p.tree.len(), placeholder_files().len() + 2);

    // Boot spec.
    let b = &p.boot;
    let bios = b.iso_bios.as_ref().unwrap();
    assert_eq!(
        (bios.image.as_str(), bios.isolinux),
        ("Boot/etfsboot.com", false)
    );
    assert_eq!(
        b.iso_uefi_image.as_deref(),
        Some("EFI/Microsoft/Boot/efisys.bin")
    );
    assert!(b.uefi_removable_path);
    assert!(b.iso_hybrid_mbr.is_none());
    match &b.usb_bios {
        Some(UsbBios::None { why }) => assert!(why.contains("bootsect /nt60"), "{why}"),
        other => panic!("usb_bios: {other:?}"),
    }
    match &b.pxe {
        Some(PxeBoot::WinPe {
            bootmgr,
            bcd,
            boot_sdi,
            boot_wim,
        }) => assert_eq!(
            [bootmgr, bcd, boot_sdi, boot_wim],
            ["bootmgr", "Boot/BCD", "Boot/boot.sdi", "sources/boot.wim"]
        ),
        other => panic!("pxe: {other:?}"),
    }
    let summary = p.summary.join("\n");
    for want in [
        "source: WinPE media folder",
        "boot.wim: image 1 of 1",
        "runner:",
    ] {
        assert!(summary.contains(want), "{want}:\n{summary}");
    }

    // The tree writes out to the same files (read back through the host file system).
    let out = c.root.join("out");
    p.tree.write_to_dir(&out).unwrap();
    assert_eq!(sha(&out.join("sources/boot.wim")), sha(&wim));
    assert_eq!(
        std::fs::read(out.join("EFI/Boot/bootx64.efi")).unwrap(),
        std::fs::read(media.join("EFI/Boot/bootx64.efi")).unwrap()
    );
}

#[test]
fn copype_root_with_firmware_files_outside_media() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let root = c.root.join("WinPE_amd64");
    let media = root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    // As copype lays it out: the El Torito images in fwfiles/, not in media/.
    std::fs::create_dir_all(root.join("fwfiles")).unwrap();
    std::fs::create_dir_all(root.join("mount")).unwrap();
    for p in ["Boot/etfsboot.com", "EFI/Microsoft/Boot/efisys.bin"] {
        let name = p.rsplit('/').next().unwrap();
        std::fs::rename(media.join(p), root.join("fwfiles").join(name)).unwrap();
    }
    let p = winpe::prepare(&c.input(&root, "work")).unwrap();
    assert_eq!(
        host_path(&p, "Boot/etfsboot.com"),
        root.join("fwfiles/etfsboot.com")
    );
    assert_eq!(
        host_path(&p, "EFI/Microsoft/Boot/efisys.bin"),
        root.join("fwfiles/efisys.bin")
    );
    assert_eq!(host_path(&p, "bootmgr"), media.join("bootmgr"));
    assert!(
        p.summary[0].starts_with("source: copype folder"),
        "{:?}",
        p.summary
    );
    assert!(!p.tree.iter().any(|(path, _)| path.starts_with("media/")));
    check_wim(&wimlib, &host_path(&p, "sources/boot.wim"), 1, &c.root);
}

#[test]
fn missing_files_are_all_named_before_anything_is_written() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    std::fs::remove_file(media.join("bootmgr.efi")).unwrap();
    std::fs::remove_file(media.join("Boot/boot.sdi")).unwrap();
    let e = error_of(winpe::prepare(&c.input(&media, "work")));
    assert!(e.contains("missing bootmgr.efi, Boot/boot.sdi"), "{e}");
    assert!(e.contains(&media.display().to_string()), "{e}");
    assert!(e.contains("--source"), "{e}");
    assert!(!c.root.join("work/winpe/boot.wim").exists());
}

#[test]
fn a_boot_wim_that_is_not_a_wim_is_refused() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    std::fs::write(
        media.join("sources/boot.wim"),
        b"PK\x03\x04 a zip, not a WIM",
    )
    .unwrap();
    let e = error_of(winpe::prepare(&c.input(&media, "work")));
    assert!(
        e.contains(&media.join("sources/boot.wim").display().to_string()),
        "{e}"
    );
    assert!(e.contains("not a WIM"), "{e}");
    assert!(!c.root.join("work/winpe/boot.wim").exists());
}

#[test]
fn names_match_ignoring_case() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    let respell = |p: &str| match p {
        "bootmgr" => "BOOTMGR".to_string(),
        "sources/boot.wim" => "Sources/Boot.WIM".to_string(),
        p if p.starts_with("EFI/") => p.to_ascii_lowercase(),
        p => p.replace("Boot/", "boot/"),
    };
    make_media(&wimlib, &c.root, &media, &respell);
    let p = winpe::prepare(&c.input(&media, "work")).unwrap();
    assert_eq!(host_path(&p, "BOOTMGR"), media.join("BOOTMGR"));
    let b = &p.boot;
    assert_eq!(b.iso_bios.as_ref().unwrap().image, "boot/etfsboot.com");
    assert_eq!(
        b.iso_uefi_image.as_deref(),
        Some("efi/microsoft/boot/efisys.bin")
    );
    assert!(b.uefi_removable_path);
    match &b.pxe {
        Some(PxeBoot::WinPe {
            bootmgr, boot_wim, ..
        }) => assert_eq!([bootmgr, boot_wim], ["BOOTMGR", "Sources/Boot.WIM"]),
        other => panic!("pxe: {other:?}"),
    }
    let paths: Vec<&str> = p.tree.iter().map(|(k, _)| k).collect();
    assert!(paths.contains(&"Sources/Boot.WIM"), "{paths:?}");
    assert_eq!(p.tree.len(), placeholder_files().len() + 2);
    check_wim(&wimlib, &host_path(&p, "sources/boot.wim"), 1, &c.root);
}

#[test]
fn names_differing_only_in_case_are_refused() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    std::fs::write(media.join("Boot/bcd"), b"second BCD").unwrap();
    let e = error_of(winpe::prepare(&c.input(&media, "work")));
    assert!(
        e.contains("Boot/BCD and Boot/bcd differ only in case"),
        "{e}"
    );
    assert!(!c.root.join("work/winpe/boot.wim").exists());
}

#[test]
fn the_runner_goes_into_the_bootable_image() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    // A second image, marked bootable instead of the first.
    let wim = media.join("sources/boot.wim");
    let two = c.root.join("second");
    std::fs::create_dir_all(two.join("Windows/System32")).unwrap();
    std::fs::write(two.join("Windows/System32/placeholder.txt"), b"two").unwrap();
    run(Command::new(&wimlib)
        .arg("append")
        .arg(&two)
        .arg(&wim)
        .arg("Microsoft Windows Setup")
        .arg("--boot"));
    assert_eq!(boot_index(&wimlib, &wim), "2");

    let p = winpe::prepare(&c.input(&media, "work")).unwrap();
    let updated = host_path(&p, "sources/boot.wim");
    check_wim(&wimlib, &updated, 2, &c.root);
    assert_eq!(boot_index(&wimlib, &updated), "2");
    let one = run(Command::new(&wimlib).arg("dir").arg(&updated).arg("1"));
    assert!(!one.contains("tsforge.exe"), "image 1 changed:\n{one}");
    assert!(p.summary[1].contains("image 2 of 2"), "{:?}", p.summary);
}

#[test]
fn an_iso_source_is_extracted_and_used() {
    let (Some(wimlib), Some(xorriso)) = (tool("wimlib-imagex"), tool("xorriso")) else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    let iso = c.root.join("winpe.iso");
    run(Command::new(&xorriso)
        .args(["-as", "mkisofs", "-o"])
        .arg(&iso)
        .args(["-J", "-R"])
        .arg(&media));

    let p = winpe::prepare(&c.input(&iso, "work")).unwrap();
    let mut want: BTreeMap<String, Vec<u8>> = placeholder_files()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    want.insert("SMS/data/TsConfig.ini".into(), Vec::new());
    want.insert("sources/boot.wim".into(), Vec::new());
    let got: Vec<&str> = p.tree.iter().map(|(k, _)| k).collect();
    assert_eq!(got, want.keys().map(String::as_str).collect::<Vec<_>>());
    for (path, bytes) in placeholder_files() {
        assert_eq!(std::fs::read(host_path(&p, path)).unwrap(), bytes, "{path}");
    }
    assert!(
        p.summary[0].starts_with("source: WinPE ISO"),
        "{:?}",
        p.summary
    );
    check_wim(&wimlib, &host_path(&p, "sources/boot.wim"), 1, &c.root);
}

#[test]
fn a_file_that_is_not_an_iso_is_refused() {
    let c = Case::new();
    let f = c.root.join("notes.txt");
    std::fs::write(&f, b"not an ISO").unwrap();
    let e = error_of(winpe::prepare(&c.input(&f, "work")));
    assert!(e.contains("notes.txt") && e.contains("not an ISO"), "{e}");
}

#[test]
fn bad_inputs_are_named() {
    let c = Case::new();
    let mut input = c.input(&c.root, "work");
    input.source = None;
    let e = error_of(winpe::prepare(&input));
    assert!(e.contains("--source") && e.contains("copype"), "{e}");

    // A Linux runner given to the winpe template.
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    let mut input = c.input(&media, "work2");
    let elf = c.root.join("tsforge");
    std::fs::write(&elf, b"\x7fELF....").unwrap();
    input.runner = elf;
    let e = error_of(winpe::prepare(&input));
    assert!(
        e.contains("--runner") && e.contains("x86_64-pc-windows-gnu"),
        "{e}"
    );
}

/// media-templates/winpe/template.toml documents what the code does.
#[test]
fn template_toml_agrees_with_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media-templates/winpe/template.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let t: toml::Table = toml::from_str(&text).unwrap();
    let strings = |v: &toml::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let s = |v: &toml::Value| v.as_str().unwrap().to_string();
    assert_eq!(s(&t["name"]), "winpe");
    assert_eq!(s(&t["runner_target"]), "x86_64-pc-windows-gnu");
    let source = &t["source"];
    assert_eq!(source["required"].as_bool(), Some(true));
    assert_eq!(strings(&source["required_files"]), REQUIRED_FILES);
    assert_eq!(
        strings(&source["firmware_file_dirs"]),
        winpe::FIRMWARE_FILE_DIRS
    );
    let runner = &t["runner"];
    assert_eq!(s(&runner["wim"]), winpe::BOOT_WIM);
    assert_eq!(s(&runner["path_in_wim"]), winpe::RUNNER_IN_WIM);
    assert_eq!(s(&runner["winpeshl_in_wim"]), winpe::WINPESHL_IN_WIM);
    assert_eq!(strings(&runner["launch_apps"]), winpe::LAUNCH_APPS);
    assert_eq!(s(&t["drivers"]["dir"]), winpe::DRIVERS_DIR);
    assert_eq!(s(&t["drivers"]["script_in_wim"]), winpe::DRIVERS_CMD_IN_WIM);
    assert_eq!(s(&t["drivers"]["launch_app"]), winpe::DRIVERS_LAUNCH_APP);
    assert_eq!(s(&t["hooks"]["tsconfig"]), winpe::TSCONFIG_PATH);
    assert_eq!(s(&t["hooks"]["custom_hook_program"]), winpe::BOOT_COMMAND);
    assert!(winpe::tsconfig_ini().contains(winpe::BOOT_COMMAND));

    // The boot section against what prepare() returns.
    let boot = &t["boot"];
    assert_eq!(
        strings(&boot["modes"]),
        ["bios-iso", "uefi-iso", "uefi-usb", "pxe"]
    );
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    let p = winpe::prepare(&c.input(&media, "work")).unwrap();
    assert_eq!(s(&boot["iso_bios"]), p.boot.iso_bios.unwrap().image);
    assert_eq!(s(&boot["iso_uefi_image"]), p.boot.iso_uefi_image.unwrap());
    assert!(p.boot.uefi_removable_path);
    assert!(p.tree.contains(&s(&boot["uefi_removable"])));
    assert_eq!(s(&boot["usb_bios"]), "none");
    assert!(matches!(p.boot.usb_bios, Some(UsbBios::None { .. })));
    let Some(PxeBoot::WinPe {
        bootmgr,
        bcd,
        boot_sdi,
        boot_wim,
    }) = p.boot.pxe
    else {
        panic!("no WinPE PXE boot")
    };
    let pxe = &boot["pxe"];
    assert_eq!(
        [bootmgr, bcd, boot_sdi, boot_wim],
        [
            s(&pxe["bootmgr"]),
            s(&pxe["bcd"]),
            s(&pxe["boot_sdi"]),
            s(&pxe["boot_wim"])
        ]
    );
}

fn driver_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/drivers")
        .join(name)
}

/// `--driver DIR`: the folder goes onto the medium under tsforge/drivers/1/, and the boot
/// image gets a script that runs drvload on each INF, started by winpeshl.ini after wpeinit
/// and before the runner.
/// Drvload: https://learn.microsoft.com/en-us/windows-hardware/manufacture/desktop/drvload-command-line-options
/// winpeshl.ini: https://learn.microsoft.com/en-us/windows-hardware/manufacture/desktop/winpeshlini-reference-launching-an-app-when-winpe-starts
#[test]
fn driver_folders_go_on_the_medium_and_load_before_the_runner() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let c = Case::new();
    let media = c.root.join("media");
    make_media(&wimlib, &c.root, &media, &|p| p.to_string());
    let good = driver_fixture("good");
    let input = TemplateInput {
        drivers: vec![good.clone()],
        ..c.input(&media, "work")
    };
    let p = winpe::prepare(&input).unwrap();
    let summary = p.summary.join("\n");
    assert!(
        summary.contains("drivers: 1 folders under tsforge/drivers/ with 1 INF files (3 files"),
        "{summary}"
    );
    for rel in [
        "netdrv.inf",
        "netdrv.cat",
        "x64/NETDRV.SYS",
        "x64/sub/helper.dll",
    ] {
        let host = host_path(&p, &format!("tsforge/drivers/1/{rel}"));
        assert_eq!(host, good.join(rel));
    }
    assert_eq!(p.tree.len(), placeholder_files().len() + 2 + 4);

    let wim = host_path(&p, "sources/boot.wim");
    let out = c.root.join("extracted");
    run(Command::new(&wimlib)
        .arg("extract")
        .arg(&wim)
        .arg("1")
        .arg("/Windows/System32/winpeshl.ini")
        .arg("/Windows/System32/tsforge-drivers.cmd")
        .arg(format!("--dest-dir={}", out.display()))
        .arg("--no-acls"));
    assert_eq!(
        std::fs::read_to_string(out.join("winpeshl.ini")).unwrap(),
        "[LaunchApps]\r\n%SYSTEMROOT%\\System32\\wpeinit.exe\r\n\
         %SYSTEMROOT%\\System32\\cmd.exe, /c X:\\Windows\\System32\\tsforge-drivers.cmd\r\n\
         %SYSTEMROOT%\\System32\\tsforge.exe, boot\r\n"
    );
    let cmd = std::fs::read_to_string(out.join("tsforge-drivers.cmd")).unwrap();
    assert!(
        cmd.contains("drvload \"%TSFORGE_DRIVERS%\\1\\netdrv.inf\"\r\n"),
        "{cmd}"
    );
    assert!(
        cmd.contains(
            "if exist %%d:\\tsforge\\media.toml if exist %%d:\\tsforge\\drivers\\ set \
             TSFORGE_DRIVERS=%%d:\\tsforge\\drivers\r\n"
        ),
        "{cmd}"
    );
    assert!(cmd.ends_with("exit /b 0\r\n"), "{cmd}");
}

/// An INF naming a file its folder lacks is refused before anything is built: the error
/// names the INF, the line and the file.
/// INF SourceDisksFiles: https://learn.microsoft.com/en-us/windows-hardware/drivers/install/inf-sourcedisksfiles-section
#[test]
fn a_driver_folder_missing_a_file_its_inf_names_is_refused() {
    let c = Case::new();
    let media = c.root.join("media");
    // No boot.wim needed: the drivers are checked before the source is read.
    std::fs::create_dir_all(&media).unwrap();
    let bad = driver_fixture("missing-file");
    let input = TemplateInput {
        drivers: vec![bad.clone()],
        ..c.input(&media, "work")
    };
    let e = error_of(winpe::prepare(&input));
    let inf = bad.join("storage.inf");
    assert!(
        e.contains(&format!(
            "{}:15: [SourceDisksFiles] names stormini.sys",
            inf.display()
        )),
        "{e}"
    );
    assert!(!c.root.join("work/winpe").exists(), "work written: {e}");

    // A file, a folder without an INF, a path that does not exist.
    let empty = c.root.join("empty-driver");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("readme.txt"), "no inf\n").unwrap();
    for (driver, want) in [
        (
            driver_fixture("good").join("netdrv.inf"),
            "takes a driver folder",
        ),
        (empty.clone(), "holds no INF file"),
        (c.root.join("nowhere"), "a missing path"),
    ] {
        let input = TemplateInput {
            drivers: vec![driver.clone()],
            ..c.input(&media, "work")
        };
        let e = error_of(winpe::prepare(&input));
        assert!(
            e.contains(&driver.display().to_string()) && e.contains(want),
            "{e}"
        );
    }
}
