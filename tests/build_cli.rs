//! `tsforge build usb|iso|pxe|dir` end to end, from both templates, checked by independent
//! tools; `tsforge media verify` on the fresh media and after one flipped byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::fixed_time::tsforge_text;
use crate::common::{repo, required, tool};

fn linux_ready() -> bool {
    // The linux template needs the host's Debian kernel, busybox and boot loaders.
    let ok = Path::new("/usr/lib/shim/shimx64.efi.signed").exists()
        && Path::new("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed").exists()
        && tool("busybox").is_some()
        && std::fs::read_dir("/boot")
            .map(|mut r| {
                r.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-")))
            })
            .unwrap_or(false);
    if !ok {
        if required() {
            panic!("the linux template's packages are missing; run scripts/setup.sh");
        }
        eprintln!("SKIP linux template: linux-image-amd64/busybox-static/shim-signed/grub-efi-amd64-signed missing");
    }
    ok
}

fn common_args() -> Vec<String> {
    vec![
        "--sequence".into(),
        repo("examples/error-handler.yaml"),
        "--sequence".into(),
        repo("examples/minimal.yaml"),
        "--default".into(),
        "minimal".into(),
        "--hook".into(),
        repo("hooks/ask-computer-name.sh"),
        "--var".into(),
        "Site=LAB".into(),
    ]
}

fn build(d: &Path, kind: &str, template: &str, extra: &[&str], out: &str) -> String {
    let mut args: Vec<String> = vec![
        "build".into(),
        kind.into(),
        "--template".into(),
        template.into(),
    ];
    args.extend(common_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("-o".into());
    args.push(out.into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out_text) = tsforge_text(d, &refs);
    assert_eq!(code, 0, "tsforge {refs:?}\n{out_text}");
    out_text
}

fn verify_then_tamper(d: &Path, medium: &str, tamper: &dyn Fn()) {
    let (code, out) = tsforge_text(d, &["media", "verify", medium]);
    assert_eq!(code, 0, "{out}");
    tamper();
    let (code, out) = tsforge_text(d, &["media", "verify", medium]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tsforge/sequences/minimal.yaml: sha256"),
        "{out}"
    );
}

/// Flips one byte of `needle`'s first occurrence in the file at `path`.
fn flip_in_file(path: &Path, needle: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    let at = b
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in the medium");
    b[at] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

const MINIMAL_MARK: &[u8] = b"name: Minimal";

#[test]
fn linux_usb_iso_pxe_dir() {
    if !linux_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(std::fs::read_to_string(repo("examples/minimal.yaml"))
        .unwrap()
        .contains("name: Minimal"));

    // USB (MBR + FAT32 + syslinux), twice: byte-identical.
    let summary = build(d, "usb", "linux", &[], "usb.img");
    assert!(summary.contains("syslinux"), "{summary}");
    build(d, "usb", "linux", &["--force"], "usb2.img");
    assert!(
        std::fs::read(d.join("usb.img")).unwrap() == std::fs::read(d.join("usb2.img")).unwrap(),
        "USB images differ"
    );
    if let Some(fdisk) = tool("fdisk") {
        let o = Command::new(fdisk)
            .arg("-l")
            .arg(d.join("usb.img"))
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("W95 FAT32 (LBA)") && t.contains(" * "), "{t}");
    }
    if let (Some(fsck), Some(mdir)) = (tool("fsck.fat"), tool("mdir")) {
        let all = std::fs::read(d.join("usb.img")).unwrap();
        std::fs::write(d.join("part.img"), &all[1 << 20..]).unwrap();
        let o = Command::new(fsck)
            .arg("-n")
            .arg(d.join("part.img"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let o = Command::new(mdir)
            .env("MTOOLS_SKIP_CHECK", "1")
            .args([
                "-i",
                &format!("{}@@1048576", d.join("usb.img").display()),
                "::/EFI/BOOT",
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("BOOTX64"),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let usb = d.join("usb.img");
    verify_then_tamper(d, "usb.img", &|| flip_in_file(&usb, MINIMAL_MARK));

    // ISO: El Torito BIOS + UEFI, every file readable by xorriso.
    build(d, "iso", "linux", &[], "m.iso");
    if let Some(xorriso) = tool("xorriso") {
        let o = Command::new(&xorriso)
            .args(["-indev", "m.iso", "-report_el_torito", "plain"])
            .current_dir(d)
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("BIOS") && t.contains("UEFI"), "{t}");
        let (code, out) = tsforge_text(d, &["media", "verify", "m.iso"]);
        assert_eq!(code, 0, "{out}");
    }

    // PXE tree and zip.
    build(d, "pxe", "linux", &["--zip"], "pxe");
    let ipxe = std::fs::read_to_string(d.join("pxe/boot.ipxe")).unwrap();
    assert!(
        ipxe.starts_with("#!ipxe") && ipxe.contains("initrd"),
        "{ipxe}"
    );
    if let Some(unzip) = tool("unzip") {
        let zip = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "zip"))
            .expect("pxe zip");
        let o = Command::new(unzip).arg("-t").arg(&zip).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }

    // Folder.
    build(d, "dir", "linux", &[], "folder");
    let seq = d.join("folder/tsforge/sequences/minimal.yaml");
    verify_then_tamper(d, "folder", &|| flip_in_file(&seq, MINIMAL_MARK));
}

/// A synthetic Windows PE media folder whose boot.wim is made with wimlib.
fn winpe_source(d: &Path, wimlib: &Path) -> PathBuf {
    let src = d.join("winpe");
    for f in [
        "bootmgr",
        "bootmgr.efi",
        "Boot/BCD",
        "Boot/boot.sdi",
        "Boot/etfsboot.com",
        "EFI/Boot/bootx64.efi",
        "EFI/Microsoft/Boot/BCD",
    ] {
        let p = src.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("placeholder {f}").repeat(100)).unwrap();
    }
    // efisys.bin must be a FAT image for an El Torito UEFI entry: 1.44 MB of zeros is enough
    // for the writer (the test checks the catalog, not a boot).
    std::fs::write(
        src.join("EFI/Microsoft/Boot/efisys.bin"),
        vec![0u8; 1_474_560],
    )
    .unwrap();
    let tree = d.join("pe-root");
    std::fs::create_dir_all(tree.join("Windows/System32")).unwrap();
    std::fs::write(tree.join("Windows/System32/placeholder.txt"), "pe").unwrap();
    std::fs::create_dir_all(src.join("sources")).unwrap();
    let o = Command::new(wimlib)
        .arg("capture")
        .arg(&tree)
        .arg(src.join("sources/boot.wim"))
        .arg("Microsoft Windows PE")
        .arg("--boot")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    src
}

#[test]
fn winpe_iso_usb_pxe_dir() {
    let Some(wimlib) = tool("wimlib-imagex") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = winpe_source(d, &wimlib);
    // A stand-in for tsforge.exe (the template checks the MZ header; CI's Wine test runs the real one).
    let runner = d.join("tsforge.exe");
    let mut exe = b"MZ".to_vec();
    exe.extend(std::iter::repeat_n(0x90u8, 4096));
    std::fs::write(&runner, exe).unwrap();
    let src_s = src.display().to_string();
    let runner_s = runner.display().to_string();
    let extra = ["--source", src_s.as_str(), "--runner", runner_s.as_str()];

    build(d, "dir", "winpe", &extra, "folder");
    // The runner and winpeshl.ini are inside boot.wim.
    let o = Command::new(&wimlib)
        .args(["dir"])
        .arg(d.join("folder/sources/boot.wim"))
        .arg("1")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
    assert!(
        listing.contains("/windows/system32/tsforge.exe")
            && listing.contains("/windows/system32/winpeshl.ini"),
        "{listing}"
    );
    assert!(
        std::fs::read_to_string(d.join("folder/SMS/data/TsConfig.ini"))
            .unwrap()
            .contains("[CustomHook]")
    );
    let seq = d.join("folder/tsforge/sequences/minimal.yaml");
    verify_then_tamper(d, "folder", &|| flip_in_file(&seq, MINIMAL_MARK));

    let summary = build(d, "usb", "winpe", &extra, "pe.img");
    assert!(summary.contains("bootsect"), "{summary}");
    let (code, out) = tsforge_text(d, &["media", "verify", "pe.img"]);
    assert_eq!(code, 0, "{out}");

    build(d, "iso", "winpe", &extra, "pe.iso");
    if let Some(xorriso) = tool("xorriso") {
        let o = Command::new(&xorriso)
            .args(["-indev", "pe.iso", "-report_el_torito", "plain"])
            .current_dir(d)
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("BIOS") && t.contains("UEFI"), "{t}");
    }
    build(d, "pxe", "winpe", &extra, "pe-pxe");
    let ipxe = std::fs::read_to_string(d.join("pe-pxe/boot.ipxe")).unwrap();
    assert!(ipxe.contains("wimboot"), "{ipxe}");

    // Missing source files are named before anything is written.
    std::fs::remove_file(src.join("bootmgr")).unwrap();
    let mut args: Vec<String> = vec![
        "build".into(),
        "dir".into(),
        "--template".into(),
        "winpe".into(),
    ];
    args.extend(common_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-o".into(), "never".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = tsforge_text(d, &refs);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bootmgr"), "{out}");
    assert!(!d.join("never").exists());
}

/// `build usb --device` refuses what is not a removable disk before building anything.
#[test]
fn usb_device_is_checked_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("not-a-disk"), vec![0u8; 1 << 20]).unwrap();
    let seq = repo("examples/minimal.yaml");
    let (code, out) = tsforge_text(
        d,
        &[
            "build",
            "usb",
            "--template",
            "linux",
            "--sequence",
            &seq,
            "--device",
            "not-a-disk",
            "-o",
            "usb.img",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not-a-disk: not a block device"), "{out}");
    assert!(!d.join("usb.img").exists());
    // A loop device is a disk, but not a removable one.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if let (true, Some(losetup)) = (root, tool("losetup")) {
        let o = Command::new(&losetup)
            .args(["--find", "--show"])
            .arg(d.join("not-a-disk"))
            .output()
            .unwrap();
        if o.status.success() {
            let loopdev = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let (code, out) = tsforge_text(
                d,
                &[
                    "build",
                    "usb",
                    "--template",
                    "linux",
                    "--sequence",
                    &seq,
                    "--device",
                    &loopdev,
                    "-o",
                    "usb.img",
                ],
            );
            let _ = Command::new(&losetup).args(["-d", &loopdev]).output();
            assert_eq!(code, 2, "{out}");
            assert!(
                out.contains("is not a removable or USB disk")
                    || out.contains("not one of the machine's disks"),
                "{out}"
            );
            assert!(!d.join("usb.img").exists());
        }
    }
}

/// A custom template's `modules = [...]` (issue 17: it was silently ignored): with base
/// `linux` the module goes into the initramfs, on the list `/init` loads on every boot, and
/// the build says it added it; a module the kernel lacks fails the build naming it and the
/// template file; `modules` on a winpe template is refused.
#[test]
fn custom_template_modules_are_added_and_reported() {
    if !linux_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seq = repo("examples/minimal.yaml");
    let template = |name: &str, toml: &str| {
        std::fs::create_dir_all(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("template.toml"), toml).unwrap();
    };
    template("nic", "base = \"linux\"\nmodules = [\"r8169\"]\n");
    template("bad", "base = \"linux\"\nmodules = [\"no_such_driver\"]\n");
    template("pe", "base = \"winpe\"\nmodules = [\"r8169\"]\n");
    let run = |tpl: &str, out: &str| {
        tsforge_text(
            d,
            &[
                "build",
                "dir",
                "--template",
                tpl,
                "--sequence",
                &seq,
                "-o",
                out,
            ],
        )
    };

    let (code, out) = run("bad", "bad-out");
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("\"no_such_driver\"")
            && out.contains("not a module of this kernel")
            && out.contains("bad/template.toml"),
        "{out}"
    );
    assert!(!d.join("bad-out").exists());
    let (code, out) = run("pe", "pe-out");
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("pe/template.toml: modules = [...] is for base = \"linux\""),
        "{out}"
    );

    let (code, out) = run("nic", "nic-out");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("added: r8169 (template)"), "{out}");
    // The list /init loads on every boot names it (read with zstd/gzip and GNU cpio).
    let initrd = d.join("nic-out/tsforge/boot/initrd.img");
    let (Some(cpio), Some(zstd)) = (tool("cpio"), tool("zstd")) else {
        eprintln!("SKIP reading the initramfs: needs cpio and zstd");
        return;
    };
    let magic = std::fs::read(&initrd).unwrap()[..4].to_vec();
    let decompress = if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        format!("{} -dc", zstd.display())
    } else {
        "gzip -dc".to_string()
    };
    let list = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{decompress} '{}' | '{}' -i --quiet --to-stdout etc/tsforge/modules",
            initrd.display(),
            cpio.display()
        ))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines().any(|l| l.ends_with("/r8169.ko")),
        "r8169 is not on the boot list:\n{list}"
    );
}
