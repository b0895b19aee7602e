//! The media writers of `tsforge_builder::output`, checked by independent tools: sfdisk and
//! sgdisk (partition tables), fsck.fat and mtools (the FAT32 partition, every file read back),
//! Debian's syslinux (BIOS boot on the USB image), xorriso (El Torito entries, files read
//! back), sfdisk on the ISO (hybrid MBR) and unzip (the PXE zip). Reproducibility: each image
//! is built twice with the same epoch and compared byte for byte.

use crate::common::{pattern, run, tool};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tsforge_builder::output::{
    write_dir, write_iso, write_pxe, write_usb, DirOptions, IsoOutputOptions, OutputKind,
    PartitionTable, PxeOptions, UsbOptions,
};
use tsforge_builder::source::Source;
use tsforge_builder::template::{BootSpec, IsoBios, PxeBoot, PxeUefi, UsbBios};
use tsforge_builder::tree::MediaTree;

const T0: i64 = 1_700_000_000;
const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";
const GPTMBR_BIN: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";
const ISOHDPFX: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";

/// A small Linux-like medium: fake kernel, initramfs, EFI loader and image, syslinux and
/// isolinux configuration, the `tsforge/` payload; host files and in-memory ones, a long
/// name. Returns the tree and its files' expected bytes.
fn fixture(src: &Path) -> (MediaTree, BTreeMap<String, Vec<u8>>) {
    let files: Vec<(&str, Vec<u8>, bool)> = vec![
        ("boot/vmlinuz", pattern(1, 300_000), true),
        ("boot/initrd.img", pattern(2, 1_200_000), true),
        ("boot/efi.img", pattern(3, 64 * 1024), true),
        ("EFI/BOOT/BOOTX64.EFI", pattern(4, 90_000), true),
        ("isolinux/isolinux.bin", pattern(5, 38_912), true),
        (
            "isolinux/isolinux.cfg",
            b"DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd.img\n"
                .to_vec(),
            false,
        ),
        (
            "syslinux/syslinux.cfg",
            b"DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd.img\n"
                .to_vec(),
            false,
        ),
        ("tsforge/tsforge", pattern(6, 2_000_000), true),
        (
            "tsforge/sequences/Deploy Windows 11 (reference).yaml",
            b"name: deploy\nsteps: []\n".to_vec(),
            false,
        ),
        (
            "tsforge/hooks/pre.sh",
            b"#!/bin/sh\nexit 0\n".to_vec(),
            true,
        ),
    ];
    let mut tree = MediaTree::new();
    let mut expect = BTreeMap::new();
    for (path, data, on_host) in files {
        if on_host {
            let host = src.join(path.replace('/', "_"));
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(&host, &data).unwrap();
            tree.add(path, Source::path(&host)).unwrap();
        } else {
            tree.add(path, data.clone()).unwrap();
        }
        expect.insert(path.to_string(), data);
    }
    (tree, expect)
}

/// Syslinux BIOS boot when Debian's syslinux is installed, else `UsbBios::None`.
fn usb_bios() -> UsbBios {
    let have = tool("syslinux").is_some() && Path::new(MBR_BIN).is_file();
    if !have {
        if std::env::var("TSFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("syslinux or {MBR_BIN} missing; run scripts/setup.sh");
        }
        eprintln!("SKIP syslinux: not installed (scripts/setup.sh installs it)");
        return UsbBios::None {
            why: "syslinux not installed on the build machine".into(),
        };
    }
    UsbBios::Syslinux {
        syslinux: PathBuf::from("syslinux"),
        mbr: PathBuf::from(MBR_BIN),
        gptmbr: PathBuf::from(GPTMBR_BIN),
        config_dir: "syslinux".into(),
    }
}

fn boot_spec() -> BootSpec {
    BootSpec {
        iso_bios: Some(IsoBios {
            image: "isolinux/isolinux.bin".into(),
            isolinux: true,
        }),
        iso_uefi_image: Some("boot/efi.img".into()),
        iso_hybrid_mbr: Path::new(ISOHDPFX)
            .is_file()
            .then(|| PathBuf::from(ISOHDPFX)),
        usb_bios: Some(usb_bios()),
        uefi_removable_path: true,
        pxe: Some(PxeBoot::Linux {
            kernel: "boot/vmlinuz".into(),
            initrd: "boot/initrd.img".into(),
            cmdline: "console=ttyS0 quiet".into(),
            uefi: None,
        }),
    }
}

/// Files and folders directly in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn mtools(cmd: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        cmd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `fsck.fat -n` on the partition at `start` (copied out: fsck.fat has no offset option),
/// then every expected file read back with `mcopy` at that offset.
fn check_fat(img: &Path, start: u64, len: u64, expect: &BTreeMap<String, Vec<u8>>, work: &Path) {
    if let Some(fsck) = tool("fsck.fat") {
        let data = std::fs::read(img).unwrap();
        let part = work.join("part.img");
        std::fs::write(&part, &data[start as usize..(start + len) as usize]).unwrap();
        let text = run(Command::new(fsck).arg("-n").arg("-v").arg(&part));
        assert!(!text.contains("Dirty bit"), "{text}");
        assert!(text.contains("32 bit entries"), "not FAT32: {text}");
        std::fs::remove_file(&part).unwrap();
    }
    if let Some(mcopy) = tool("mcopy") {
        let at = format!("{}@@{start}", img.display());
        for (p, data) in expect {
            let got = mtools(&mcopy, &["-n", "-i", &at, &format!("::/{p}"), "-"]);
            assert!(got == *data, "mcopy {p}: content differs");
        }
    }
}

/// (start, size) in bytes of partition 1 from `sfdisk -d`, and that line.
fn sfdisk_part1(img: &Path) -> Option<(u64, u64, String)> {
    let sfdisk = tool("sfdisk")?;
    let text = run(Command::new(sfdisk).arg("-d").arg(img));
    assert_eq!(
        text.lines().filter(|l| l.contains("start=")).count(),
        1,
        "exactly one partition:\n{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("start="))
        .unwrap_or_else(|| panic!("no partition in sfdisk -d:\n{text}"))
        .to_string();
    let field = |name: &str| -> u64 {
        let f = line
            .split(',')
            .map(str::trim)
            .find_map(|f| {
                f.split_once(':')
                    .map(|(_, r)| r)
                    .unwrap_or(f)
                    .trim()
                    .strip_prefix(name)
            })
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        f.trim_start_matches([' ', '=']).trim().parse().unwrap()
    };
    Some((field("start") * 512, field("size") * 512, line))
}

fn usb_image(
    tree: &MediaTree,
    boot: &BootSpec,
    dir: &Path,
    name: &str,
    table: PartitionTable,
) -> (PathBuf, tsforge_builder::output::OutputSummary) {
    let out = dir.join(name);
    let mut opts = UsbOptions::new(dir.join("work"), T0);
    opts.table = table;
    let mut last = (0, 0);
    let summary = write_usb(tree, boot, &out, &opts, &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(last.0, last.1, "progress ends at the total");
    assert_eq!(summary.kind, OutputKind::Usb);
    assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());
    (out, summary)
}

#[test]
fn usb_mbr_is_fat32_active_type_c_and_boots_with_syslinux() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, expect) = fixture(&dir.path().join("src"));
    let boot = boot_spec();
    let (img, summary) = usb_image(&tree, &boot, dir.path(), "a.img", PartitionTable::Mbr);
    assert!(summary.bytes % (1 << 20) == 0);
    // No temporaries or staging left behind.
    assert_eq!(listing(dir.path()), ["a.img", "src", "work"]);
    assert!(listing(&dir.path().join("work")).is_empty());

    let Some((start, len, line)) = sfdisk_part1(&img) else {
        return;
    };
    assert_eq!(start, 1 << 20, "{line}");
    assert!(line.contains("type=c"), "{line}");
    assert!(line.contains("bootable"), "{line}");
    if let Some(fdisk) = tool("fdisk") {
        let text = run(Command::new(fdisk).arg("-l").arg(&img));
        assert!(text.contains("W95 FAT32 (LBA)"), "{text}");
    }
    check_fat(&img, start, len, &expect, dir.path());
    if let Some(mlabel) = tool("mlabel") {
        let at = format!("{}@@{start}", img.display());
        let out = mtools(&mlabel, &["-s", "-i", &at, "::"]);
        assert!(String::from_utf8_lossy(&out).contains("TSFORGE"));
    }
    if let UsbBios::Syslinux { .. } = boot.usb_bios.as_ref().unwrap() {
        let mdir = tool("mdir").expect("mtools comes with syslinux");
        let at = format!("{}@@{start}", img.display());
        let text =
            String::from_utf8_lossy(&mtools(&mdir, &["-a", "-i", &at, "::/syslinux"])).into_owned();
        assert!(text.contains("ldlinux  sys"), "{text}");
        let data = std::fs::read(&img).unwrap();
        let mbr = std::fs::read(MBR_BIN).unwrap();
        assert_eq!(&data[..440], &mbr[..440], "mbr.bin in the first 440 bytes");
        // syslinux's boot sector jumps over the BPB: 0xEB 0x58 0x90 for FAT32.
        assert_eq!(data[start as usize], 0xeb);
    }

    // Reproducible: the same tree and epoch give the same bytes.
    let (again, _) = usb_image(&tree, &boot, dir.path(), "b.img", PartitionTable::Mbr);
    assert!(
        std::fs::read(&img).unwrap() == std::fs::read(&again).unwrap(),
        "two USB images of the same tree and epoch differ"
    );
}

#[test]
fn usb_gpt_has_one_efi_system_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, expect) = fixture(&dir.path().join("src"));
    let boot = boot_spec();
    let (img, _) = usb_image(&tree, &boot, dir.path(), "g.img", PartitionTable::Gpt);
    let Some(sgdisk) = tool("sgdisk") else {
        return;
    };
    let text = run(Command::new(&sgdisk).arg("-v").arg(&img));
    assert!(text.contains("No problems found"), "sgdisk -v:\n{text}");
    let text = run(Command::new(&sgdisk).arg("-p").arg(&img));
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no partition 1:\n{text}"));
    assert!(row.contains("EF00"), "{row}");
    assert!(row.contains("2048"), "starts at 1 MiB: {row}");
    let info = run(Command::new(&sgdisk).arg("-i").arg("1").arg(&img));
    let first: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let last: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Last sector: "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    check_fat(
        &img,
        first * 512,
        (last + 1 - first) * 512,
        &expect,
        dir.path(),
    );
    if let UsbBios::Syslinux { .. } = boot.usb_bios.as_ref().unwrap() {
        let attrs = run(Command::new(&sgdisk).arg("-A").arg("1:show").arg(&img));
        assert!(attrs.contains("legacy BIOS bootable"), "{attrs}");
        let data = std::fs::read(&img).unwrap();
        let gptmbr = std::fs::read(GPTMBR_BIN).unwrap();
        assert_eq!(
            &data[..440],
            &gptmbr[..440],
            "gptmbr.bin in the first 440 bytes"
        );
        let mdir = tool("mdir").unwrap();
        let at = format!("{}@@{}", img.display(), first * 512);
        let text =
            String::from_utf8_lossy(&mtools(&mdir, &["-a", "-i", &at, "::/syslinux"])).into_owned();
        assert!(text.contains("ldlinux  sys"), "{text}");
    }
    let (again, _) = usb_image(&tree, &boot, dir.path(), "g2.img", PartitionTable::Gpt);
    assert!(std::fs::read(&img).unwrap() == std::fs::read(&again).unwrap());
}

#[test]
fn usb_refuses_a_file_over_4_gib_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tree, _) = fixture(&dir.path().join("src"));
    let big = dir.path().join("install.wim");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(u64::from(u32::MAX) + 1).unwrap(); // sparse
    drop(f);
    tree.add("sources/install.wim", Source::path(&big)).unwrap();
    let out = dir.path().join("big.img");
    let opts = UsbOptions::new(dir.path().join("work"), T0);
    let err = write_usb(&tree, &boot_spec(), &out, &opts, &mut |_, _| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("sources/install.wim"), "{msg}");
    assert!(msg.contains("wimlib-imagex split"), "{msg}");
    assert!(msg.contains("4 GiB"), "{msg}");
    assert!(!out.exists());
    assert_eq!(
        listing(dir.path()),
        ["install.wim", "src"],
        "nothing written"
    );
}

#[test]
fn usb_given_size_too_small_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, _) = fixture(&dir.path().join("src"));
    let out = dir.path().join("s.img");
    let mut opts = UsbOptions::new(dir.path().join("work"), T0);
    opts.size = Some(8 << 20);
    let err = write_usb(&tree, &boot_spec(), &out, &opts, &mut |_, _| {}).unwrap_err();
    assert!(format!("{err:#}").contains("too small"), "{err:#}");
    assert!(!out.exists());
}

#[test]
fn iso_has_bios_and_uefi_entries_every_file_and_a_hybrid_mbr() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, expect) = fixture(&dir.path().join("src"));
    let boot = boot_spec();
    let out = dir.path().join("a.iso");
    let summary = write_iso(
        &tree,
        &boot,
        &out,
        &IsoOutputOptions::new(T0),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());
    let again = dir.path().join("b.iso");
    write_iso(
        &tree,
        &boot,
        &again,
        &IsoOutputOptions::new(T0),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap(),
        "two ISOs of the same tree and epoch differ"
    );
    let err = write_iso(
        &tree,
        &boot,
        &again,
        &IsoOutputOptions::new(T0),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("--force"), "{err:#}");

    let Some(xorriso) = tool("xorriso") else {
        return;
    };
    let text = run(Command::new(&xorriso)
        .args(["-indev"])
        .arg(&out)
        .args(["-report_el_torito", "plain"]));
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert!(entries.iter().any(|l| l.contains("BIOS")), "{text}");
    assert!(entries.iter().any(|l| l.contains("UEFI")), "{text}");
    let x = dir.path().join("x");
    run(Command::new(&xorriso)
        .args(["-osirrox", "on", "-indev"])
        .arg(&out)
        .args(["-extract", "/"])
        .arg(&x));
    for (p, data) in &expect {
        let got = std::fs::read(x.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        if p == "isolinux/isolinux.bin" {
            // The boot-info table (bytes 8..64) is patched into the ISO's copy.
            assert_eq!(got.len(), data.len());
            assert_eq!(&got[..8], &data[..8]);
            assert_eq!(&got[64..], &data[64..]);
        } else {
            assert!(got == *data, "{p}: content differs");
        }
    }
    if boot.iso_hybrid_mbr.is_some() {
        let data = std::fs::read(&out).unwrap();
        let code = std::fs::read(ISOHDPFX).unwrap();
        assert_eq!(&data[..432], &code[..], "isohdpfx.bin in the MBR");
        if let Some(sfdisk) = tool("sfdisk") {
            // With a UEFI image, the hybrid MBR's ESP entry (type 0xef) is what firmware finds.
            let text = run(Command::new(sfdisk).arg("-d").arg(&out));
            assert!(text.contains("label: dos"), "{text}");
            assert!(text.contains("type=ef"), "{text}");
        }
    }
}

#[test]
fn pxe_linux_folder_and_zip() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, expect) = fixture(&dir.path().join("src"));
    let boot = boot_spec();
    let out = dir.path().join("pxe");
    let summary = write_pxe(&tree, &boot, &out, &PxeOptions::new(T0), &mut |_, _| {}).unwrap();
    assert_eq!(summary.kind, OutputKind::Pxe);
    assert_eq!(
        listing(&out),
        [
            "README.txt",
            "boot.ipxe",
            "dnsmasq.conf.snippet",
            "initrd.img",
            "payload.img",
            "tsforge",
            "tsforge-pxe.txt",
            "vmlinuz"
        ]
    );
    assert_eq!(
        std::fs::read(out.join("vmlinuz")).unwrap(),
        expect["boot/vmlinuz"]
    );
    assert_eq!(
        std::fs::read(out.join("initrd.img")).unwrap(),
        expect["boot/initrd.img"]
    );
    for (p, data) in expect.iter().filter(|(p, _)| p.starts_with("tsforge/")) {
        assert!(std::fs::read(out.join(p)).unwrap() == *data, "{p}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("boot.ipxe")).unwrap(),
        "#!ipxe\n# tsforge: Linux boot environment\n\
         kernel vmlinuz console=ttyS0 quiet initrd=initrd.img initrd=payload.img\n\
         initrd initrd.img\ninitrd payload.img\nboot\n"
    );
    // The payload initrd: the medium's tsforge/ folder but tsforge/boot/, under pxe/, as the
    // cpio tool lists and unpacks it.
    if let Some(cpio) = tool("cpio") {
        let unpacked = dir.path().join("payload");
        std::fs::create_dir_all(&unpacked).unwrap();
        let st = Command::new(cpio)
            .args(["-idm", "--quiet", "-F"])
            .arg(out.join("payload.img"))
            .current_dir(&unpacked)
            .status()
            .unwrap();
        assert!(st.success(), "cpio -id payload.img");
        let mut want = 0;
        for (p, data) in expect.iter().filter(|(p, _)| p.starts_with("tsforge/")) {
            let got = std::fs::read(unpacked.join("pxe").join(p));
            if p.starts_with("tsforge/boot/") {
                assert!(got.is_err(), "{p} is in the payload");
            } else {
                assert!(got.unwrap() == *data, "{p}");
                want += 1;
            }
        }
        assert!(want > 0);
        assert!(unpacked.join("pxe/tsforge-pxe.txt").is_file());
    }
    let snippet = std::fs::read_to_string(out.join("dnsmasq.conf.snippet")).unwrap();
    for want in [
        "enable-tftp\n".to_string(),
        format!(
            "tftp-root={}\n",
            std::path::absolute(&out).unwrap().display()
        ),
        "dhcp-match=set:ipxe,175\n".into(),
        "dhcp-boot=tag:ipxe,boot.ipxe\n".into(),
        "#dhcp-range=".into(),
    ] {
        assert!(snippet.contains(&want), "{want:?} not in\n{snippet}");
    }
    // File times are the epoch.
    let t = std::fs::metadata(out.join("boot.ipxe"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        T0 as u64
    );

    let mut opts = PxeOptions::new(T0);
    opts.zip = true;
    let z1 = dir.path().join("one.zip");
    let z2 = dir.path().join("two.zip");
    write_pxe(&tree, &boot, &z1, &opts, &mut |_, _| {}).unwrap();
    write_pxe(&tree, &boot, &z2, &opts, &mut |_, _| {}).unwrap();
    assert!(
        std::fs::read(&z1).unwrap() == std::fs::read(&z2).unwrap(),
        "two zips of the same tree and epoch differ"
    );
    if let Some(unzip) = tool("unzip") {
        let text = run(Command::new(&unzip).arg("-t").arg(&z1));
        assert!(text.contains("No errors detected"), "{text}");
        let script = run(Command::new(&unzip).arg("-p").arg(&z1).arg("boot.ipxe"));
        assert!(script.starts_with("#!ipxe\n"), "{script}");
        let x = dir.path().join("unzipped");
        run(Command::new(&unzip).arg("-q").arg(&z1).arg("-d").arg(&x));
        for (p, data) in expect.iter().filter(|(p, _)| p.starts_with("tsforge/")) {
            assert!(std::fs::read(x.join(p)).unwrap() == *data, "{p}");
        }
        assert_eq!(
            std::fs::read(x.join("vmlinuz")).unwrap(),
            expect["boot/vmlinuz"]
        );
    }
}

/// sha256 of `bytes` in lower-case hex, as a manifest line has it.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// With the template's UEFI chain (the linux template's): shim as `bootx64.efi`, the network
/// GRUB as `grubx64.efi` (the name shim fetches beside itself), the MOK manager, and GRUB's
/// configuration at `grub/grub.cfg` (its prefix) booting the same kernel, initrds and
/// command line as `boot.ipxe`; dnsmasq gives UEFI clients shim, BIOS clients still iPXE.
#[test]
fn pxe_linux_uefi_boots_the_signed_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tree, expect) = fixture(&dir.path().join("src"));
    let mok = pattern(7, 50_000);
    tree.add("EFI/BOOT/mmx64.efi", mok.clone()).unwrap();
    let grub = pattern(8, 70_000);
    let mut boot = boot_spec();
    boot.pxe = Some(PxeBoot::Linux {
        kernel: "boot/vmlinuz".into(),
        initrd: "boot/initrd.img".into(),
        cmdline: "console=ttyS0 quiet".into(),
        uefi: Some(PxeUefi {
            shim: "EFI/BOOT/BOOTX64.EFI".into(),
            mok_manager: "EFI/BOOT/mmx64.efi".into(),
            grub_net: Source::bytes(grub.clone()),
        }),
    });
    let out = dir.path().join("pxe");
    let summary = write_pxe(&tree, &boot, &out, &PxeOptions::new(T0), &mut |_, _| {}).unwrap();
    assert_eq!(
        listing(&out),
        [
            "README.txt",
            "boot.ipxe",
            "bootx64.efi",
            "dnsmasq.conf.snippet",
            "grub",
            "grubx64.efi",
            "initrd.img",
            "mmx64.efi",
            "payload.img",
            "tsforge",
            "tsforge-pxe.txt",
            "vmlinuz"
        ]
    );
    assert!(std::fs::read(out.join("bootx64.efi")).unwrap() == expect["EFI/BOOT/BOOTX64.EFI"]);
    assert!(std::fs::read(out.join("grubx64.efi")).unwrap() == grub);
    assert!(std::fs::read(out.join("mmx64.efi")).unwrap() == mok);
    assert_eq!(listing(&out.join("grub")), ["grub.cfg"]);
    let cfg = std::fs::read_to_string(out.join("grub/grub.cfg")).unwrap();
    for want in [
        "set timeout=0\n",
        "\tlinux /vmlinuz console=ttyS0 quiet\n",
        "\tinitrd /initrd.img /payload.img\n",
    ] {
        assert!(cfg.contains(want), "{want:?} not in\n{cfg}");
    }
    // BIOS clients: the same iPXE script as without the UEFI chain.
    assert!(std::fs::read_to_string(out.join("boot.ipxe"))
        .unwrap()
        .contains("kernel vmlinuz console=ttyS0 quiet initrd=initrd.img initrd=payload.img\n"));
    let snippet = std::fs::read_to_string(out.join("dnsmasq.conf.snippet")).unwrap();
    for want in [
        "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe\n",
        "dhcp-boot=tag:!ipxe,tag:efi64,bootx64.efi\n",
        "dhcp-boot=tag:ipxe,boot.ipxe\n",
        "#pxe-service=tag:!ipxe,X86-64_EFI,\"tsforge\",bootx64.efi\n",
    ] {
        assert!(snippet.contains(want), "{want:?} not in\n{snippet}");
    }
    assert!(!snippet.contains("ipxe.efi"), "{snippet}");
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(
        readme.contains("must be the TFTP root") && readme.contains("grub/grub.cfg"),
        "{readme}"
    );
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("bootx64.efi (shim)") && n.contains("undionly.kpxe")),
        "{:?}",
        summary.notes
    );
    // The manifest of a sealed medium lists the chain's files as written.
    let key = [7u8; 32];
    let (mut sealed, _) = sealed_fixture(&dir.path().join("src2"), key);
    sealed.add("EFI/BOOT/mmx64.efi", mok).unwrap();
    let out2 = dir.path().join("pxe2");
    let mut opts = PxeOptions::new(T0);
    opts.signing_key = Some(key);
    write_pxe(&sealed, &boot, &out2, &opts, &mut |_, _| {}).unwrap();
    let manifest = std::fs::read_to_string(out2.join("tsforge/manifest")).unwrap();
    for f in ["bootx64.efi", "grubx64.efi", "mmx64.efi", "grub/grub.cfg"] {
        let sum = sha256_hex(&std::fs::read(out2.join(f)).unwrap());
        assert!(
            manifest.contains(&format!("{sum}  {f}\n")),
            "{f} not in\n{manifest}"
        );
    }
}

#[test]
fn pxe_winpe_uses_wimboot_and_says_where_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = MediaTree::new();
    tree.add("bootmgr", pattern(1, 1000)).unwrap();
    tree.add("Boot/BCD", pattern(2, 2000)).unwrap();
    tree.add("Boot/boot.sdi", pattern(3, 3000)).unwrap();
    tree.add("sources/boot.wim", pattern(4, 4000)).unwrap();
    tree.add("tsforge/tsforge.exe", pattern(5, 5000)).unwrap();
    let boot = BootSpec {
        pxe: Some(PxeBoot::WinPe {
            bootmgr: "bootmgr".into(),
            bcd: "Boot/BCD".into(),
            boot_sdi: "Boot/boot.sdi".into(),
            boot_wim: "sources/boot.wim".into(),
        }),
        ..BootSpec::default()
    };
    let out = dir.path().join("pxe");
    let summary = write_pxe(&tree, &boot, &out, &PxeOptions::new(T0), &mut |_, _| {}).unwrap();
    assert_eq!(
        listing(&out),
        [
            "BCD",
            "README.txt",
            "boot.ipxe",
            "boot.sdi",
            "boot.wim",
            "bootmgr",
            "dnsmasq.conf.snippet",
            "tsforge",
            "tsforge-pxe.txt"
        ]
    );
    let script = std::fs::read_to_string(out.join("boot.ipxe")).unwrap();
    assert!(script.starts_with("#!ipxe\n"));
    assert!(script.contains("\nkernel wimboot\n"), "{script}");
    assert!(
        script.contains("\ninitrd -n boot.wim boot.wim\n"),
        "{script}"
    );
    assert_eq!(std::fs::read(out.join("BCD")).unwrap(), pattern(2, 2000));
    let note = summary.notes.join("\n");
    assert!(
        note.contains("wimboot") && note.contains("/wimboot"),
        "{note}"
    );
    // A BootSpec without PXE boot is refused with the reason.
    let err = write_pxe(
        &tree,
        &BootSpec::default(),
        &dir.path().join("none"),
        &PxeOptions::new(T0),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("PXE"), "{err:#}");
}

#[test]
fn dir_writes_the_tree_and_refuses_a_non_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, expect) = fixture(&dir.path().join("src"));
    let out = dir.path().join("medium");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let boot = boot_spec();
    let err = write_dir(&tree, &boot, &out, &DirOptions::new(T0), &mut |_, _| {}).unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
    let mut opts = DirOptions::new(T0);
    opts.force = true;
    let summary = write_dir(&tree, &boot, &out, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(summary.files, expect.len() as u64);
    for (p, data) in &expect {
        assert!(std::fs::read(out.join(p)).unwrap() == *data, "{p}");
    }
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
    assert!(!dir.path().join(".medium.tsforge-tmp").exists());
}

#[test]
fn usb_failure_after_the_image_was_started_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tree, _) = fixture(&dir.path().join("src"));
    // Valid on a medium path, but FAT cannot store `?`: fatbuild stops after the temporary
    // image was created.
    tree.add("tsforge/what?.txt", b"x".to_vec()).unwrap();
    let out = dir.path().join("f.img");
    let opts = UsbOptions::new(dir.path().join("work"), T0);
    let err = write_usb(&tree, &boot_spec(), &out, &opts, &mut |_, _| {}).unwrap_err();
    assert!(format!("{err:#}").contains("what?.txt"), "{err:#}");
    assert_eq!(
        listing(dir.path()),
        ["src", "work"],
        "no image, no temporary"
    );
    assert!(
        listing(&dir.path().join("work")).is_empty(),
        "staging removed"
    );
}

#[test]
fn iso_winpe_style_etfsboot_is_not_hybrid() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = MediaTree::new();
    tree.add("Boot/etfsboot.com", pattern(1, 2048)).unwrap();
    tree.add("EFI/Microsoft/Boot/efisys.bin", pattern(2, 1440 * 1024))
        .unwrap();
    tree.add("sources/boot.wim", pattern(3, 100_000)).unwrap();
    tree.add("tsforge/tsforge.exe", pattern(4, 5000)).unwrap();
    let boot = BootSpec {
        iso_bios: Some(IsoBios {
            image: "Boot/etfsboot.com".into(),
            isolinux: false,
        }),
        iso_uefi_image: Some("EFI/Microsoft/Boot/efisys.bin".into()),
        iso_hybrid_mbr: Some(PathBuf::from(ISOHDPFX)),
        ..BootSpec::default()
    };
    let out = dir.path().join("winpe.iso");
    let mut opts = IsoOutputOptions::new(T0);
    opts.label = "WINPE_TSFORGE".into();
    let summary = write_iso(&tree, &boot, &out, &opts, &mut |_, _| {}).unwrap();
    assert!(
        summary.notes.iter().any(|n| n.contains("not hybrid")),
        "{:?}",
        summary.notes
    );
    let data = std::fs::read(&out).unwrap();
    assert!(
        data[..512].iter().all(|&b| b == 0),
        "no MBR in a non-hybrid ISO"
    );
    let Some(xorriso) = tool("xorriso") else {
        return;
    };
    let text = run(Command::new(&xorriso)
        .args(["-indev"])
        .arg(&out)
        .args(["-report_el_torito", "plain"]));
    let bios = text
        .lines()
        .find(|l| l.starts_with("El Torito boot img :") && l.contains("BIOS"))
        .unwrap_or_else(|| panic!("{text}"));
    // etfsboot.com: 4 sectors of 512 bytes, no boot-info table.
    assert!(bios.split_whitespace().any(|w| w == "4"), "{bios}");
    let pvd = run(Command::new(&xorriso)
        .args(["-indev"])
        .arg(&out)
        .args(["-pvd_info"]));
    assert!(pvd.contains("WINPE_TSFORGE"), "{pvd}");
}

#[test]
fn usb_without_bios_boot_says_why_and_leaves_the_mbr_code_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, expect) = fixture(&dir.path().join("src"));
    let boot = BootSpec {
        usb_bios: Some(UsbBios::None {
            why: "Windows PE needs Microsoft's bootsect /nt60 boot code".into(),
        }),
        ..boot_spec()
    };
    let (img, summary) = usb_image(&tree, &boot, dir.path(), "w.img", PartitionTable::Mbr);
    let lines = summary.lines().join("\n");
    assert!(lines.contains("bootsect /nt60"), "{lines}");
    assert!(lines.contains("partition 1: FAT32"), "{lines}");
    let data = std::fs::read(&img).unwrap();
    assert!(
        data[..440].iter().all(|&b| b == 0),
        "no boot code without BIOS boot"
    );
    assert_eq!(&data[510..512], &[0x55, 0xaa]);
    if let Some((start, len, line)) = sfdisk_part1(&img) {
        assert!(
            line.contains("type=c") && line.contains("bootable"),
            "{line}"
        );
        check_fat(&img, start, len, &expect, dir.path());
        if let Some(mdir) = tool("mdir") {
            let at = format!("{}@@{start}", img.display());
            let text = String::from_utf8_lossy(&mtools(&mdir, &["-a", "-i", &at, "::/syslinux"]))
                .into_owned();
            assert!(!text.contains("ldlinux"), "{text}");
        }
    }
}

/// The fixture as a signed medium: `tsforge/` assembled (a sequence, media.toml, manifest and
/// signature) with `key`.
fn sealed_fixture(src: &Path, key: [u8; 32]) -> (MediaTree, BTreeMap<String, Vec<u8>>) {
    let (mut tree, expect) = fixture(src);
    let seq = src.join("deploy.yaml");
    std::fs::write(
        &seq,
        "name: Deploy\nsteps:\n  - name: Hello\n    run: echo hello\n",
    )
    .unwrap();
    let opts = tsforge_builder::media::MediaOptions {
        name: "Sealed".into(),
        sequences: vec![seq],
        signing_key: Some(key),
        epoch: T0,
        iterations: 1000,
        ..Default::default()
    };
    tsforge_builder::media::assemble(&mut tree, &opts).unwrap();
    (tree, expect)
}

#[test]
fn sealed_usb_and_iso_list_every_file_as_written_and_their_boot_regions() {
    use tsforge_builder::runtime::media;
    let dir = tempfile::tempdir().unwrap();
    let key = [7u8; 32];
    let (_, public) = media::sign(&key, b"");
    let (tree, _) = sealed_fixture(&dir.path().join("src"), key);
    let boot = boot_spec();
    let syslinux = matches!(boot.usb_bios, Some(UsbBios::Syslinux { .. }));

    // A signed tree whose output re-makes the manifest needs the key again.
    let out = dir.path().join("nokey.img");
    let opts = UsbOptions::new(dir.path().join("work"), T0);
    let err = write_usb(&tree, &boot, &out, &opts, &mut |_, _| {}).unwrap_err();
    assert!(format!("{err:#}").contains("--sign"), "{err:#}");
    assert!(!out.exists());

    let out = dir.path().join("s.img");
    let mut opts = UsbOptions::new(dir.path().join("work"), T0);
    opts.signing_key = Some(key);
    write_usb(&tree, &boot, &out, &opts, &mut |_, _| {}).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (root, v) = media::verify_medium(&out, scratch.path(), Some(&public)).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.signed_by.as_deref(), Some(public.as_str()));
    let manifest = std::fs::read_to_string(root.join("tsforge/manifest")).unwrap();
    assert!(manifest.contains("  tsforge/boot-regions\n"), "{manifest}");
    // MBR boot code and table, 4 pieces of the FAT32 reserved sectors, ldlinux.sys.
    assert_eq!(v.regions, if syslinux { 7 } else { 6 }, "{v:?}");
    if syslinux {
        for f in ["syslinux/ldlinux.sys", "syslinux/ldlinux.c32"] {
            assert!(manifest.contains(&format!("  {f}\n")), "{f}: {manifest}");
        }
    }
    if let Some((start, len, _)) = sfdisk_part1(&out) {
        // Written into the FAT after syslinux: still a clean file system.
        check_fat(&out, start, len, &BTreeMap::new(), dir.path());
    }
    let again = dir.path().join("s2.img");
    write_usb(&tree, &boot, &again, &opts, &mut |_, _| {}).unwrap();
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap());

    // The ISO: ISOLINUX with its boot-info table and the head, signed.
    let out = dir.path().join("s.iso");
    let mut opts = IsoOutputOptions::new(T0);
    opts.signing_key = Some(key);
    write_iso(&tree, &boot, &out, &opts, &mut |_, _| {}).unwrap();
    if tool("xorriso").is_none() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let (_, v) = media::verify_medium(&out, scratch.path(), Some(&public)).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.regions, 1);
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[32768 + 40] ^= 1; // the primary volume descriptor's label
    std::fs::write(&out, bytes).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (_, v) = media::verify_medium(&out, scratch.path(), Some(&public)).unwrap();
    assert!(
        v.problems.iter().any(|p| p.contains("boot region ISO")),
        "{:?}",
        v.problems
    );
}
