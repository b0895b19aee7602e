//! The linux media template with the build machine's Debian kernel, checked by independent
//! tools: `zstd`/`gzip` and GNU `cpio` unpack the initramfs, busybox checks `/init`'s syntax,
//! `chroot` runs the OS-deployment programs inside it, `fsck.fat -n`, `mdir` and `mcopy` read
//! the EFI image. The runner is this test executable (a dynamically linked glibc program, like
//! a `cargo build` of tsforge). Needs the packages scripts/setup.sh installs (linux-image-amd64,
//! busybox-static, shim-signed, grub-efi-amd64-signed, syslinux, isolinux, syslinux-common, e2fsprogs,
//! xfsprogs, dosfstools, ntfs-3g, wimtools); without them the tests print SKIP, or fail under
//! TSFORGE_REQUIRE_TOOLS=1.

use crate::common::{run, tool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tsforge_builder::output::{write_pxe, PxeOptions};
use tsforge_builder::template::linux::{self, Kernel};
use tsforge_builder::template::secureboot;
use tsforge_builder::template::{PxeBoot, TemplateInput, UsbBios};

const T0: i64 = 1_700_000_000;

/// The host kernel and the Debian files the template takes, or `None` after SKIP.
fn host_ready() -> Option<Kernel> {
    let missing: Vec<&str> = [
        linux::BUSYBOX,
        secureboot::SHIM,
        secureboot::MOK_MANAGER,
        secureboot::GRUB,
        linux::ISOLINUX_BIN,
        linux::LDLINUX_C32,
        linux::ISOHDPFX,
        linux::SYSLINUX,
        linux::SYSLINUX_MBR,
        linux::SYSLINUX_GPTMBR,
    ]
    .into_iter()
    .chain(linux::PROGRAM_DATA.iter().map(|(p, _)| *p))
    .filter(|p| !Path::new(p).is_file())
    .chain(
        linux::PROGRAMS
            .iter()
            .filter(|t| tsforge_runtime::tools::find(**t).is_err())
            .map(|t| t.program()),
    )
    .collect();
    let kernel = linux::find_kernel_in(Path::new("/"));
    if missing.is_empty() {
        if let Ok(k) = kernel {
            return Some(k);
        }
    }
    let why = format!("missing {missing:?}, kernel: {:?}", kernel.err());
    if std::env::var("TSFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("linux template inputs are missing (TSFORGE_REQUIRE_TOOLS=1): {why}; run scripts/setup.sh");
    }
    eprintln!("SKIP linux template: {why} (scripts/setup.sh installs them)");
    None
}

fn input(work: &Path, source: Option<PathBuf>) -> TemplateInput {
    TemplateInput {
        source,
        runner: std::env::current_exe().unwrap(),
        work: work.to_path_buf(),
        epoch: T0,
        ..Default::default()
    }
}

/// Unpack a gzip or zstd initramfs with the command-line tools into `dir`.
fn unpack_initrd(initrd: &Path, dir: &Path) -> Option<()> {
    let magic = std::fs::read(initrd).unwrap()[..4].to_vec();
    let (prog, args) = if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        ("zstd", ["-dcq"])
    } else if magic[..2] == [0x1f, 0x8b] {
        ("gzip", ["-dc"])
    } else {
        panic!(
            "{} is neither zstd nor gzip: {magic:02x?}",
            initrd.display()
        );
    };
    let decompress = tool(prog)?;
    let cpio = tool("cpio")?;
    let plain = dir.with_extension("cpio");
    let out = std::fs::File::create(&plain).unwrap();
    let status = Command::new(decompress)
        .args(args)
        .arg(initrd)
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success(), "{prog} -d {} failed", initrd.display());
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new(cpio)
        .args(["-idm", "--quiet", "--no-absolute-filenames", "-D"])
        .arg(dir)
        .stdin(std::fs::File::open(&plain).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "cpio -idm failed");
    Some(())
}

/// modules.dep as module path → dependency paths.
fn modules_dep(modules: &Path) -> HashMap<String, Vec<String>> {
    std::fs::read_to_string(modules.join("modules.dep"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(p, d)| {
            (
                p.trim().to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

fn mtools(prog: &str, args: &[&str]) -> Option<String> {
    let t = tool(prog)?;
    Some(run(Command::new(t)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")))
}

#[test]
fn host_kernel_media() {
    let Some(kernel) = host_ready() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let prepared = linux::prepare(&input(&work, None)).unwrap();
    eprintln!("{}", prepared.summary.join("\n"));
    assert!(prepared.summary[0].contains(&kernel.version));

    // The tree and the boot description.
    for path in [
        linux::KERNEL_PATH,
        linux::INITRD_PATH,
        linux::EFI_IMAGE_PATH,
        "EFI/BOOT/BOOTX64.EFI",
        "EFI/BOOT/grubx64.efi",
        "EFI/BOOT/mmx64.efi",
        "EFI/debian/grub.cfg",
        "syslinux/syslinux.cfg",
        "isolinux/isolinux.bin",
        "isolinux/ldlinux.c32",
        "isolinux/isolinux.cfg",
    ] {
        assert!(prepared.tree.contains(path), "{path} is not in the tree");
    }
    let boot = &prepared.boot;
    assert_eq!(
        boot.iso_bios.as_ref().unwrap().image,
        "isolinux/isolinux.bin"
    );
    assert!(boot.iso_bios.as_ref().unwrap().isolinux);
    assert_eq!(boot.iso_uefi_image.as_deref(), Some(linux::EFI_IMAGE_PATH));
    assert!(boot.iso_hybrid_mbr.as_ref().unwrap().is_file());
    assert!(boot.uefi_removable_path);
    match boot.usb_bios.as_ref().unwrap() {
        UsbBios::Syslinux {
            syslinux,
            mbr,
            gptmbr,
            config_dir,
        } => {
            assert!(syslinux.is_file() && mbr.is_file() && gptmbr.is_file());
            assert!(prepared
                .tree
                .contains(&format!("{config_dir}/syslinux.cfg")));
        }
        other => panic!("usb_bios: {other:?}"),
    }
    match boot.pxe.as_ref().unwrap() {
        PxeBoot::Linux {
            kernel,
            initrd,
            cmdline,
            uefi,
        } => {
            assert!(prepared.tree.contains(kernel) && prepared.tree.contains(initrd));
            assert_eq!(cmdline, linux::CMDLINE);
            let uefi = uefi.as_ref().expect("UEFI clients boot the signed chain");
            assert_eq!(uefi.shim, secureboot::LOADER_PATH);
            assert_eq!(uefi.mok_manager, secureboot::MOK_MANAGER_PATH);
            assert_eq!(
                uefi.grub_net,
                tsforge_builder::source::Source::path(secureboot::GRUB_NET)
            );
        }
        other => panic!("pxe: {other:?}"),
    }
    let read = |p: &str| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut prepared.tree.get(p).unwrap().open().unwrap(), &mut v)
            .unwrap();
        String::from_utf8(v).unwrap()
    };
    let cfg = read("syslinux/syslinux.cfg");
    assert!(cfg.contains("KERNEL /tsforge/boot/vmlinuz"), "{cfg}");
    assert!(
        cfg.contains("APPEND initrd=/tsforge/boot/initrd.img console="),
        "{cfg}"
    );
    assert_eq!(cfg, read("isolinux/isolinux.cfg"));
    // GRUB's one entry boots the same kernel, initramfs and command line as syslinux.
    let grub = read("EFI/debian/grub.cfg");
    assert!(
        grub.contains(&format!("linux /tsforge/boot/vmlinuz {}\n", linux::CMDLINE)),
        "{grub}"
    );
    assert!(grub.contains("initrd /tsforge/boot/initrd.img\n"), "{grub}");
    assert!(grub.contains("set timeout=0\n"), "{grub}");

    // The PXE root: UEFI clients boot shim (bootx64.efi), which fetches Debian's signed network
    // GRUB beside it (grubx64.efi), which reads grub/grub.cfg; the same kernel and initrds.
    {
        let mut tree = prepared.tree.clone();
        tree.add("tsforge/media.toml", b"format = 1\n".to_vec())
            .unwrap();
        let out = tmp.path().join("pxe");
        let summary = write_pxe(
            &tree,
            &prepared.boot,
            &out,
            &PxeOptions::new(T0),
            &mut |_, _| {},
        )
        .unwrap();
        for (name, host) in [
            (secureboot::PXE_LOADER, secureboot::SHIM),
            (secureboot::PXE_GRUB, secureboot::GRUB_NET),
            (secureboot::PXE_MOK_MANAGER, secureboot::MOK_MANAGER),
        ] {
            let f = out.join(name);
            assert!(
                std::fs::read(&f).unwrap() == std::fs::read(host).unwrap(),
                "{name} is not {host}"
            );
            // Signed: shim by Microsoft's UEFI CA, GRUB and the MOK manager by Debian's.
            if let Some(sbverify) = tool("sbverify") {
                let list = run(Command::new(sbverify).arg("--list").arg(&f));
                let issuer = if host == secureboot::SHIM {
                    "Microsoft Corporation UEFI CA 2011"
                } else {
                    "Debian Secure Boot CA"
                };
                assert!(list.contains(issuer), "{name}: {list}");
            }
        }
        assert!(
            std::fs::read(out.join("vmlinuz")).unwrap() == std::fs::read(&kernel.image).unwrap()
        );
        let grub = std::fs::read_to_string(out.join(secureboot::PXE_GRUB_CFG)).unwrap();
        assert!(
            grub.contains(&format!("\tlinux /vmlinuz {}\n", linux::CMDLINE))
                && grub.contains("\tinitrd /initrd.img /payload.img\n")
                && grub.contains("set timeout=0\n"),
            "{grub}"
        );
        let snippet = std::fs::read_to_string(out.join("dnsmasq.conf.snippet")).unwrap();
        assert!(
            snippet.contains("dhcp-boot=tag:!ipxe,tag:efi64,bootx64.efi\n")
                && !snippet.contains("ipxe.efi"),
            "{snippet}"
        );
        assert!(
            summary
                .notes
                .iter()
                .any(|n| n.contains("bootx64.efi (shim)")),
            "{:?}",
            summary.notes
        );
    }

    // The initramfs, unpacked by zstd/gzip and GNU cpio.
    let initrd = work.join("initrd.img");
    let root = tmp.path().join("root");
    if unpack_initrd(&initrd, &root).is_some() {
        check_initramfs(&root, &kernel);
    }

    // The EFI image, read by dosfstools and mtools.
    let efi = work.join("efi.img");
    let efi_s = efi.to_str().unwrap();
    if let Some(fsck) = tool("fsck.fat") {
        run(Command::new(fsck).args(["-n", efi_s]));
    }
    if let Some(listing) = mtools("mdir", &["-i", efi_s, "::/EFI/BOOT"]) {
        assert!(listing.contains("BOOTX64"), "{listing}");
        let out = tmp.path().join("vmlinuz.copy");
        mtools(
            "mcopy",
            &[
                "-i",
                efi_s,
                "::/tsforge/boot/vmlinuz",
                out.to_str().unwrap(),
            ],
        );
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&kernel.image).unwrap());
        let out = tmp.path().join("initrd.copy");
        mtools(
            "mcopy",
            &[
                "-i",
                efi_s,
                "::/tsforge/boot/initrd.img",
                out.to_str().unwrap(),
            ],
        );
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&initrd).unwrap());
        let entry = mtools("mtype", &["-i", efi_s, "::/EFI/debian/grub.cfg"]).unwrap();
        assert_eq!(entry, grub);
        // The signed chain, byte for byte: shim as the removable-media loader, Debian's
        // signed GRUB beside it (the name shim starts), shim's MOK manager.
        for (inside, host) in [
            ("::/EFI/BOOT/BOOTX64.EFI", secureboot::SHIM),
            ("::/EFI/BOOT/grubx64.efi", secureboot::GRUB),
            ("::/EFI/BOOT/mmx64.efi", secureboot::MOK_MANAGER),
        ] {
            let out = tmp.path().join("loader.copy");
            mtools("mcopy", &["-o", "-i", efi_s, inside, out.to_str().unwrap()]);
            assert!(
                std::fs::read(&out).unwrap() == std::fs::read(host).unwrap(),
                "{inside} is not {host}"
            );
            // Signed (sbsigntool's sbverify, when installed): shim by Microsoft's UEFI CA,
            // GRUB and the MOK manager by Debian's Secure Boot CA.
            if let Some(sbverify) = tool("sbverify") {
                let list = run(Command::new(sbverify).arg("--list").arg(&out));
                let issuer = if host == secureboot::SHIM {
                    "Microsoft Corporation UEFI CA 2011"
                } else {
                    "Debian Secure Boot CA"
                };
                assert!(list.contains(issuer), "{inside}: {list}");
            }
        }
    }

    // Reproducible: the same inputs and epoch give the same bytes.
    let work2 = tmp.path().join("work2");
    linux::prepare(&input(&work2, None)).unwrap();
    for f in ["initrd.img", "efi.img"] {
        assert!(
            std::fs::read(work.join(f)).unwrap() == std::fs::read(work2.join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }
}

fn check_initramfs(root: &Path, kernel: &Kernel) {
    use std::os::unix::fs::PermissionsExt;
    let init = root.join("init");
    let mode = std::fs::metadata(&init).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "/init is not executable: {mode:o}");
    assert_eq!(std::fs::read_to_string(&init).unwrap(), linux::INIT);
    let busybox = root.join("bin/busybox");
    assert!(busybox.is_file());
    for applet in linux::APPLETS {
        let link = std::fs::read_link(root.join("bin").join(applet)).unwrap();
        assert_eq!(link, Path::new("busybox"), "bin/{applet}");
    }
    // /init's syntax, by the busybox shell that will run it.
    run(Command::new(&busybox).args(["sh", "-n"]).arg(&init));

    // The runner, its ELF interpreter at its absolute path, and libc.
    // The runner is the test executable without its debug information (objcopy --strip-debug).
    let exe = std::env::current_exe().unwrap();
    let stripped = root.parent().unwrap().join("expected-runner");
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&exe)
        .arg(&stripped));
    let shipped = std::fs::read(root.join(linux::RUNNER_PATH)).unwrap();
    assert!(shipped == std::fs::read(&stripped).unwrap());
    assert!(
        (shipped.len() as u64) < std::fs::metadata(&exe).unwrap().len(),
        "the runner was not stripped"
    );
    let interp = linux::elf_interpreter(&exe)
        .unwrap()
        .expect("a dynamic test executable");
    assert!(
        root.join(interp.trim_start_matches('/')).is_file(),
        "{interp} missing"
    );
    let libc_found = walk(root).iter().any(|p| p.ends_with("libc.so.6"));
    assert!(libc_found, "libc.so.6 is not in the initramfs");

    // The modules: every listed file is there, and after everything it depends on.
    let list = std::fs::read_to_string(root.join(linux::MODULE_LIST_PATH)).unwrap();
    let prefix = format!("/lib/modules/{}/", kernel.version);
    let order: Vec<&str> = list
        .lines()
        .map(|l| l.strip_prefix(&prefix).unwrap_or_else(|| panic!("{l}")))
        .collect();
    assert!(!order.is_empty());
    let deps = modules_dep(&kernel.modules);
    for (i, m) in order.iter().enumerate() {
        assert!(
            root.join(&prefix[1..]).join(m).is_file(),
            "{m} is listed but not in the initramfs"
        );
        let dep_key = deps
            .keys()
            .find(|k| linux::plain_module_path(k) == *m)
            .unwrap_or_else(|| panic!("{m} is not in modules.dep"));
        for d in &deps[dep_key] {
            let at = order
                .iter()
                .position(|o| *o == linux::plain_module_path(d))
                .unwrap_or_else(|| panic!("{m} needs {d}, which is not listed"));
            assert!(at < i, "{m} is loaded before its dependency {d}");
        }
    }
    // Every wanted module this kernel has as a file is in; built-in or absent ones are skipped.
    for want in linux::MODULES {
        let in_list = order.iter().any(|m| linux::module_name(m) == *want);
        let in_dep = deps.keys().any(|k| linux::module_name(k) == *want);
        assert!(
            in_list || !in_dep,
            "{want}: a module file of this kernel, but not in the initramfs"
        );
    }
    // File-system drivers this Debian kernel has as modules: on the list.
    for m in ["vfat", "isofs"] {
        let in_dep = deps.keys().any(|k| linux::module_name(k) == m);
        if in_dep {
            assert!(order.iter().any(|o| linux::module_name(o) == m), "{m}");
        }
    }
    // Storage drivers: in the initramfs and its modules.dep, loaded by modalias (no longer on
    // the fixed list: issue 17).
    let initramfs_dep = std::fs::read_to_string(root.join(&prefix[1..]).join("modules.dep"))
        .expect("the initramfs has modules.dep");
    for m in ["virtio_blk", "sd_mod"] {
        let in_dep = deps.keys().any(|k| linux::module_name(k) == m);
        if in_dep {
            assert!(
                initramfs_dep
                    .lines()
                    .any(|l| linux::module_name(l.split(':').next().unwrap()) == m),
                "{m} is not in the initramfs' modules.dep"
            );
        }
    }
}

/// Each program for putting an OS on a disk, how to make it print its version, and what the
/// version text starts with. `tune2fs` has no version option: without arguments it prints
/// its version, then its usage, and exits 1.
const PROGRAM_RUNS: &[(&str, &[&str], &str, bool)] = &[
    ("mkfs.ext4", &["-V"], "mke2fs 1.", true),
    ("mkfs.ext3", &["-V"], "mke2fs 1.", true),
    ("mkfs.ext2", &["-V"], "mke2fs 1.", true),
    ("e2fsck", &["-V"], "e2fsck 1.", true),
    ("tune2fs", &[], "tune2fs 1.", false),
    ("mkfs.xfs", &["-V"], "mkfs.xfs version ", true),
    ("mkfs.fat", &["--help"], "mkfs.fat 4", true),
    ("mkntfs", &["--version"], "mkntfs v", true),
    ("mkfs.ntfs", &["--version"], "mkntfs v", true),
    ("ntfs-3g", &["--version"], "ntfs-3g 20", true),
    ("wimlib-imagex", &["--version"], "wimlib-imagex 1.", true),
    // Debian 12's efibootmgr 17 prints "version 17" (no EFI variables needed for that).
    ("efibootmgr", &["--version"], "version ", true),
];

/// The initramfs carries what the OS-deployment steps run: every program of
/// [`linux::PROGRAMS`] runs inside the unpacked initramfs (`chroot`, so only the initramfs'
/// own libraries and dynamic loader are there to load it) and prints its version, and the
/// file-system modules of this kernel (ext4, XFS, FUSE for ntfs-3g, crc32c) are in the module
/// list `/init` loads, crc32c before the modules that ask the crypto API for it.
#[test]
fn initramfs_holds_the_os_deployment_programs_and_modules() {
    let Some(kernel) = host_ready() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (work, _) = echo_runner_and_medium(tmp.path());
    let root = tmp.path().join("root");
    if unpack_initrd(&work.join("initrd.img"), &root).is_none() {
        return;
    }

    // Every program is there, the build machine's file, where /init's PATH finds it.
    let init_path = linux::INIT
        .lines()
        .find_map(|l| l.strip_prefix("PATH="))
        .expect("/init sets PATH");
    let names: Vec<&str> = PROGRAM_RUNS.iter().map(|r| r.0).collect();
    let table: Vec<&str> = linux::PROGRAMS.iter().map(|t| t.program()).collect();
    assert_eq!(names, table, "PROGRAM_RUNS covers linux::PROGRAMS");
    let mut in_initramfs = Vec::new();
    for t in linux::PROGRAMS {
        let host = tsforge_runtime::tools::find(*t).unwrap();
        let host_real = std::fs::canonicalize(&host).unwrap();
        let at = init_path
            .split(':')
            .map(|d| format!("{}/{}", d.trim_start_matches('/'), t.program()))
            .find(|p| root.join(p).exists())
            .unwrap_or_else(|| panic!("{t} is not in the initramfs on /init's PATH {init_path}"));
        let real = std::fs::canonicalize(root.join(&at)).unwrap();
        assert!(
            std::fs::read(&real).unwrap() == std::fs::read(&host_real).unwrap(),
            "{at} is not the build machine's {}",
            host_real.display()
        );
        in_initramfs.push(format!("/{at}"));
    }
    assert!(root.join("etc/mke2fs.conf").is_file());

    // Each one runs with nothing but the initramfs around it.
    let root_user = run(Command::new("id").arg("-u")).trim() == "0";
    let chroot = tool("chroot");
    match (root_user, chroot) {
        (true, Some(chroot)) => {
            for ((name, args, expect, succeeds), at) in PROGRAM_RUNS.iter().zip(&in_initramfs) {
                let out = Command::new(&chroot)
                    .arg(&root)
                    .arg(at)
                    .args(*args)
                    .env_clear()
                    .env("PATH", init_path)
                    .output()
                    .unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(
                    out.status.success(),
                    *succeeds,
                    "chroot {} {at} {args:?} ({name}): {}\n{text}",
                    root.display(),
                    out.status
                );
                assert!(
                    text.contains(expect),
                    "chroot {at} {args:?} ({name}) did not print {expect:?}:\n{text}"
                );
                assert!(
                    !text.contains("error while loading shared libraries"),
                    "{name}: {text}"
                );
            }
        }
        _ => {
            if std::env::var("TSFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
                panic!("running the programs in the initramfs needs root and chroot");
            }
            eprintln!("SKIP running the programs: needs root and chroot (coreutils)");
        }
    }

    // The file-system modules: listed, present, and in an order that loads.
    let list = std::fs::read_to_string(root.join(linux::MODULE_LIST_PATH)).unwrap();
    let listed: Vec<String> = list.lines().map(linux::module_name).collect();
    let deps = modules_dep(&kernel.modules);
    let builtin =
        std::fs::read_to_string(kernel.modules.join("modules.builtin")).unwrap_or_default();
    for m in [
        "ext4",
        "jbd2",
        "mbcache",
        "xfs",
        "libcrc32c",
        "fuse",
        "crc32c_generic",
        "vfat",
        // UEFI variables for efibootmgr (/init mounts efivarfs on a UEFI boot).
        "efivarfs",
    ] {
        let module_file = deps.keys().any(|k| linux::module_name(k) == m);
        let built_in = builtin.lines().any(|l| linux::module_name(l) == m);
        assert!(
            module_file || built_in,
            "{m}: neither a module nor built into {}",
            kernel.version
        );
        if module_file {
            assert!(
                listed.iter().any(|l| l == m),
                "{m} is not in the module list"
            );
        }
    }
    let at = |m: &str| listed.iter().position(|l| l == m);
    if let (Some(crc), Some(lib)) = (at("crc32c_generic"), at("libcrc32c")) {
        assert!(
            crc < lib,
            "crc32c_generic must load before libcrc32c: {list}"
        );
    }
    if let (Some(crc), Some(ext4)) = (at("crc32c_generic"), at("ext4")) {
        assert!(crc < ext4, "crc32c_generic must load before ext4: {list}");
    }
    // /init mounts efivarfs after the drivers are loaded (the module must be in first), only on
    // a UEFI boot, where efibootmgr(8) expects it ("efibootmgr requires that the kernel
    // support access to EFI non-volatile variables through /sys/firmware/efi/vars or
    // /sys/firmware/efi/efivars/").
    let init = linux::INIT;
    let loaded = init
        .find("</etc/tsforge/modules")
        .expect("/init loads the module list");
    let guard = init
        .find("if [ -d /sys/firmware/efi ]; then")
        .expect("/init checks for a UEFI boot");
    let mount = init
        .find("mount -t efivarfs efivarfs /sys/firmware/efi/efivars")
        .expect("/init mounts efivarfs");
    let end = guard + init[guard..].find("\nfi\n").unwrap();
    assert!(loaded < guard && guard < mount && mount < end, "{init}");
    assert!(
        mount < init.rfind("/bin/tsforge boot --medium").unwrap(),
        "efivarfs is mounted before the runner starts"
    );

    // ntfs3 where this kernel has it (Debian 12's 6.1 has not; ntfs-3g and fuse do the work).
    if deps.keys().any(|k| linux::module_name(k) == "ntfs3") {
        assert!(listed.iter().any(|l| l == "ntfs3"), "{list}");
    }
}

/// A build machine without one of the programs fails the build, naming the program and the
/// Debian package; so does one whose program is not a Linux executable. The other programs
/// are `/usr/bin/echo` here, so the test does not depend on what this machine has.
#[test]
fn a_missing_program_fails_the_build_naming_its_package() {
    use tsforge_runtime::tools::{MissingTool, Tool};
    let echo = PathBuf::from("/usr/bin/echo");
    let everything_but = |missing: Tool| {
        let echo = echo.clone();
        move |t: Tool| {
            if t == missing {
                Err(MissingTool::new(t))
            } else {
                Ok(echo.clone())
            }
        }
    };
    for (tool, package) in [
        (Tool::MkfsExt4, "e2fsprogs"),
        (Tool::E2fsck, "e2fsprogs"),
        (Tool::Tune2fs, "e2fsprogs"),
        (Tool::MkfsXfs, "xfsprogs"),
        (Tool::MkfsFat, "dosfstools"),
        (Tool::Mkntfs, "ntfs-3g"),
        (Tool::Ntfs3g, "ntfs-3g"),
        (Tool::WimlibImagex, "wimtools"),
    ] {
        let e = format!(
            "{:#}",
            linux::program_files(everything_but(tool)).unwrap_err()
        );
        assert!(
            e.contains(&format!(
                "the linux template's initramfs needs {}",
                tool.program()
            )) && e.contains(&format!("apt-get install {package}")),
            "{e}"
        );
    }

    // A "program" that is a shell script, not an ELF executable.
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("mkfs.xfs");
    std::fs::write(&script, "#!/bin/sh\necho fake\n").unwrap();
    let e = format!(
        "{:#}",
        linux::program_files(|t| Ok(if t == Tool::MkfsXfs {
            script.clone()
        } else {
            echo.clone()
        }))
        .unwrap_err()
    );
    assert!(
        e.contains("mkfs.xfs")
            && e.contains("xfsprogs")
            && e.contains(&format!("{} is not an ELF executable", script.display())),
        "{e}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A `--source` folder (`vmlinuz` + `lib/modules/<version>/`) whose modules are compressed with
/// the xz and zstd command-line tools: the initramfs holds them decompressed, in order.
#[test]
fn source_folder_with_compressed_modules() {
    let Some(kernel) = host_ready() else { return };
    let (Some(xz), Some(zstd)) = (tool("xz"), tool("zstd")) else {
        return;
    };
    let deps = modules_dep(&kernel.modules);
    let (Some(fat), Some(vfat)) = (
        deps.keys().find(|k| linux::module_name(k) == "fat"),
        deps.keys().find(|k| linux::module_name(k) == "vfat"),
    ) else {
        eprintln!("SKIP: this kernel has fat/vfat built in");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let ver = "9.9.9-test";
    let mods = src.join("lib/modules").join(ver);
    std::fs::create_dir_all(mods.join("kernel/fs/fat")).unwrap();
    std::fs::copy(&kernel.image, src.join("vmlinuz")).unwrap();
    for (host, name, prog) in [(fat, "fat.ko", &xz), (vfat, "vfat.ko", &zstd)] {
        let plain = mods.join("kernel/fs/fat").join(name);
        std::fs::copy(kernel.modules.join(host), &plain).unwrap();
        run(Command::new(prog).args(["-q"]).arg(&plain));
    }
    std::fs::write(
        mods.join("modules.dep"),
        "kernel/fs/fat/vfat.ko.zst: kernel/fs/fat/fat.ko.xz\nkernel/fs/fat/fat.ko.xz:\n",
    )
    .unwrap();

    let work = tmp.path().join("work");
    let prepared = linux::prepare(&input(&work, Some(src.clone()))).unwrap();
    assert!(prepared.summary[0].contains(ver), "{:?}", prepared.summary);
    assert!(
        prepared.summary[1].starts_with("2 modules"),
        "{:?}",
        prepared.summary
    );
    let root = tmp.path().join("root");
    if unpack_initrd(&work.join("initrd.img"), &root).is_none() {
        return;
    }
    let list = std::fs::read_to_string(root.join(linux::MODULE_LIST_PATH)).unwrap();
    assert_eq!(
        list,
        format!(
            "/lib/modules/{ver}/kernel/fs/fat/fat.ko\n/lib/modules/{ver}/kernel/fs/fat/vfat.ko\n"
        )
    );
    for (host, name) in [(fat, "fat.ko"), (vfat, "vfat.ko")] {
        let got = std::fs::read(
            root.join("lib/modules")
                .join(ver)
                .join("kernel/fs/fat")
                .join(name),
        );
        assert!(
            got.unwrap() == std::fs::read(kernel.modules.join(host)).unwrap(),
            "{name} differs from the module before compression"
        );
    }
}

#[test]
fn bad_sources_name_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let err = |src: &Path| format!("{:#}", linux::find_kernel_in(src).unwrap_err());

    let e = err(tmp.path());
    assert!(
        e.contains("holds no kernel") && e.contains("vmlinuz"),
        "{e}"
    );

    let file = tmp.path().join("file.iso");
    std::fs::write(&file, b"x").unwrap();
    assert!(err(&file).contains("is not a folder"), "{}", err(&file));

    std::fs::create_dir_all(tmp.path().join("boot")).unwrap();
    std::fs::write(tmp.path().join("boot/vmlinuz-1.2.3"), b"k").unwrap();
    let e = err(tmp.path());
    assert!(e.contains("lib/modules/1.2.3/modules.dep"), "{e}");

    assert!(err(&tmp.path().join("nope")).contains("nope"));

    // Through prepare: a source without a kernel, then a runner that is not a Linux executable.
    if host_ready().is_some() {
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let Err(e) = linux::prepare(&input(&tmp.path().join("work0"), Some(empty))) else {
            panic!("a source without a kernel was accepted")
        };
        let e = format!("{e:#}");
        assert!(e.contains("empty") && e.contains("holds no kernel"), "{e}");

        std::fs::create_dir_all(tmp.path().join("lib/modules/1.2.3")).unwrap();
        std::fs::write(tmp.path().join("lib/modules/1.2.3/modules.dep"), "").unwrap();
        let mut inp = input(&tmp.path().join("work"), Some(tmp.path().to_path_buf()));
        inp.runner = file;
        let Err(e) = linux::prepare(&inp) else {
            panic!("a runner that is not ELF was accepted")
        };
        let e = format!("{e:#}");
        assert!(e.contains("file.iso") && e.contains("not an ELF"), "{e}");
    }
}

/// media-templates/linux/template.toml says what the code does.
#[test]
fn template_toml_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media-templates/linux/template.toml");
    let t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let s = |table: &str, key: &str| {
        t[table][key]
            .as_str()
            .unwrap_or_else(|| panic!("{table}.{key} is not a string"))
            .to_string()
    };
    let list = |table: &str, key: &str| -> Vec<String> {
        t[table][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(t["name"].as_str(), Some("linux"));
    assert_eq!(s("boot", "kernel"), linux::KERNEL_PATH);
    assert_eq!(s("boot", "initrd"), linux::INITRD_PATH);
    assert_eq!(s("boot", "cmdline"), linux::CMDLINE);
    assert_eq!(s("boot", "iso_uefi_image"), linux::EFI_IMAGE_PATH);
    assert_eq!(s("initramfs", "runner"), format!("/{}", linux::RUNNER_PATH));
    assert_eq!(
        s("initramfs", "module_list"),
        format!("/{}", linux::MODULE_LIST_PATH)
    );
    assert_eq!(list("initramfs", "modules"), linux::MODULES);
    assert_eq!(list("initramfs", "driver_dirs"), linux::DRIVER_DIRS);
    assert_eq!(list("initramfs", "driver_modules"), linux::DRIVER_MODULES);
    assert_eq!(list("initramfs", "driver_excluded"), linux::DRIVER_EXCLUDED);
    assert_eq!(list("initramfs", "module_index"), linux::MODULE_INDEX_FILES);
    assert_eq!(s("initramfs", "firmware"), linux::FIRMWARE_DIR);
    let programs: Vec<&str> = linux::PROGRAMS.iter().map(|t| t.program()).collect();
    assert_eq!(list("initramfs", "programs"), programs);
    let data: Vec<&str> = linux::PROGRAM_DATA.iter().map(|(p, _)| *p).collect();
    assert_eq!(list("initramfs", "program_data"), data);
    assert_eq!(list("initramfs", "applets"), linux::APPLETS);
    for (key, value) in [
        ("busybox", linux::BUSYBOX),
        ("shim", secureboot::SHIM),
        ("mok_manager", secureboot::MOK_MANAGER),
        ("grub", secureboot::GRUB),
        ("grub_net", secureboot::GRUB_NET),
        ("isolinux", linux::ISOLINUX_BIN),
        ("ldlinux", linux::LDLINUX_C32),
        ("isohdpfx", linux::ISOHDPFX),
        ("syslinux", linux::SYSLINUX),
        ("syslinux_mbr", linux::SYSLINUX_MBR),
        ("syslinux_gptmbr", linux::SYSLINUX_GPTMBR),
    ] {
        assert_eq!(s("sources", key), value, "sources.{key}");
    }
    // The PXE root's boot files: iPXE's script, the signed UEFI chain, kernel and initrds.
    assert_eq!(
        list("boot", "pxe"),
        [
            "boot.ipxe",
            secureboot::PXE_LOADER,
            secureboot::PXE_GRUB,
            secureboot::PXE_MOK_MANAGER,
            secureboot::PXE_GRUB_CFG,
            "vmlinuz",
            "initrd.img",
            tsforge_builder::runtime::media::PXE_PAYLOAD,
        ]
    );
    // The start command in the toml is the one /init runs.
    let start = s("initramfs", "start");
    let cmd = start.split(" /medium").next().unwrap();
    assert!(linux::INIT.contains(cmd), "/init does not run {cmd:?}");
    assert!(linux::INIT.contains("tsforge/media.toml"));
}

/// Opt-in boot test (`cargo test -p tsforge-builder --test main linux_template:: -- --ignored`):
/// QEMU boots the kernel and initramfs with a virtio disk holding a FAT medium
/// (`tsforge/media.toml`). The runner is `/usr/bin/echo` (a dynamic glibc program, like a
/// `cargo build` of tsforge), so the console shows the command `/init` ran, its exit code, and
/// then QEMU ends because `/init` powered off.
#[test]
#[ignore = "boots QEMU (about a minute without KVM); run with --ignored"]
fn qemu_boots_to_the_runner() {
    if host_ready().is_none() {
        return;
    }
    let Some(qemu) = tool("qemu-system-x86_64") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (work, medium) = echo_runner_and_medium(tmp.path());

    let mut cmd = Command::new("timeout");
    cmd.arg("300").arg(qemu);
    cmd.args(["-m", "512", "-nographic", "-no-reboot", "-kernel"])
        .arg(linux::find_kernel_in(Path::new("/")).unwrap().image)
        .arg("-initrd")
        .arg(work.join("initrd.img"))
        .args(["-append", "console=ttyS0,115200", "-drive"])
        .arg(format!("file={},if=virtio,format=raw", medium.display()));
    // Plain emulation (TCG), not KVM: on the nested-virtualization machines this was written
    // on, KVM guests hang right after the boot loader, and TCG boots in well under a minute.
    let out = run(&mut cmd);
    eprintln!("{out}");
    assert!(out.contains("tsforge: medium found on /dev/vda"), "{out}");
    assert!(out.contains("boot --medium /medium"), "{out}");
    assert!(
        out.contains("tsforge: the runner exited with code 0"),
        "{out}"
    );
}

/// Prepare with `/usr/bin/echo` as the runner into `dir/work`, and make a FAT disk image
/// holding `tsforge/media.toml`: (work folder, medium image).
fn echo_runner_and_medium(dir: &Path) -> (PathBuf, PathBuf) {
    let work = dir.join("work");
    let mut inp = input(&work, None);
    inp.runner = PathBuf::from("/usr/bin/echo");
    linux::prepare(&inp).unwrap();
    let medium_dir = dir.join("medium");
    std::fs::create_dir_all(medium_dir.join("tsforge")).unwrap();
    std::fs::write(medium_dir.join("tsforge/media.toml"), "# test medium\n").unwrap();
    let medium = dir.join("medium.img");
    let disk = tsforge_runtime::disk::Disk::create_image(&medium, 8 << 20).unwrap();
    tsforge_runtime::disk::fatbuild::build(disk.whole().unwrap(), &medium_dir, "TSFORGE", None)
        .unwrap();
    drop(disk);
    (work, medium)
}

/// Opt-in UEFI boot test: OVMF boots `tsforge/boot/efi.img` as a disk, so the firmware starts
/// `EFI/BOOT/BOOTX64.EFI` (shim), which starts Debian's signed GRUB, which reads
/// `EFI/debian/grub.cfg` and loads kernel and initrd from
/// the image. The entry's options are first replaced (with mtools, in a copy) by a serial-only
/// console, because the template's `console=tty0` (last, so the screen) sends `/init`'s output
/// where `-nographic` cannot show it.
#[test]
#[ignore = "boots QEMU with OVMF; run with --ignored"]
fn qemu_uefi_boots_the_efi_image() {
    if host_ready().is_none() {
        return;
    }
    let (Some(qemu), Some(mcopy)) = (tool("qemu-system-x86_64"), tool("mcopy")) else {
        return;
    };
    let ovmf = Path::new("/usr/share/OVMF/OVMF_CODE.fd");
    if !ovmf.is_file() {
        if std::env::var("TSFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{} is missing: apt-get install ovmf", ovmf.display());
        }
        eprintln!(
            "SKIP {}: not installed (apt-get install ovmf)",
            ovmf.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (work, medium) = echo_runner_and_medium(tmp.path());
    let efi = tmp.path().join("efi-copy.img");
    std::fs::copy(work.join("efi.img"), &efi).unwrap();
    let entry = tmp.path().join("grub.cfg");
    std::fs::write(
        &entry,
        secureboot::grub_cfg(
            linux::KERNEL_PATH,
            linux::INITRD_PATH,
            "console=ttyS0,115200",
        ),
    )
    .unwrap();
    run(Command::new(mcopy)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i"])
        .arg(&efi)
        .arg(&entry)
        .arg(format!("::/{}", secureboot::GRUB_CFG_PATH)));
    let vars = tmp.path().join("OVMF_VARS.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars).unwrap();

    let mut cmd = Command::new("timeout");
    cmd.arg("300").arg(qemu);
    cmd.args(["-m", "512", "-nographic", "-no-reboot", "-drive"])
        .arg(format!(
            "if=pflash,format=raw,readonly=on,file={}",
            ovmf.display()
        ))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", efi.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", medium.display()));
    let out = run(&mut cmd);
    eprintln!("{out}");
    assert!(out.contains("tsforge: medium found on /dev/vd"), "{out}");
    assert!(
        out.contains("tsforge: the runner exited with code 0"),
        "{out}"
    );
}

/// Opt-in ISO boot test: the prepared tree plus `tsforge/media.toml`, written by
/// `tsforge_builder::iso` with the El Torito entries and hybrid MBR the [`BootSpec`] names,
/// boots in QEMU from a CD-ROM under BIOS (isolinux) and, with OVMF, under UEFI (shim and GRUB
/// in `efi.img`), and `/init` finds the medium on the CD (sr_mod, cdrom, isofs). As in the
/// UEFI test, the boot configurations get a serial-only console first (isolinux.cfg in the
/// tree; the entry inside a copy of efi.img, with mtools).
///
/// [`BootSpec`]: tsforge_builder::template::BootSpec
#[test]
#[ignore = "boots QEMU twice; run with --ignored"]
fn qemu_iso_boots_bios_and_uefi() {
    use tsforge_builder::iso::{BiosBoot, Hybrid, IsoBuilder, IsoOptions, UefiBoot};
    if host_ready().is_none() {
        return;
    }
    let (Some(qemu), Some(mcopy)) = (tool("qemu-system-x86_64"), tool("mcopy")) else {
        return;
    };
    let ovmf = Path::new("/usr/share/OVMF/OVMF_CODE.fd");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let mut inp = input(&work, None);
    inp.runner = PathBuf::from("/usr/bin/echo");
    let mut prepared = linux::prepare(&inp).unwrap();

    let serial = "console=ttyS0,115200";
    let cfg = format!(
        "DEFAULT tsforge\nPROMPT 0\nTIMEOUT 0\nLABEL tsforge\n  KERNEL /tsforge/boot/vmlinuz\n  APPEND initrd=/tsforge/boot/initrd.img {serial}\n"
    );
    prepared
        .tree
        .add("isolinux/isolinux.cfg", cfg.into_bytes())
        .unwrap();
    let efi = tmp.path().join("efi-copy.img");
    std::fs::copy(work.join("efi.img"), &efi).unwrap();
    let entry = tmp.path().join("grub.cfg");
    std::fs::write(
        &entry,
        secureboot::grub_cfg(linux::KERNEL_PATH, linux::INITRD_PATH, serial),
    )
    .unwrap();
    run(Command::new(mcopy)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i"])
        .arg(&efi)
        .arg(&entry)
        .arg(format!("::/{}", secureboot::GRUB_CFG_PATH)));
    let boot = &prepared.boot;
    prepared
        .tree
        .add(boot.iso_uefi_image.as_deref().unwrap(), efi.as_path())
        .unwrap();
    prepared
        .tree
        .add("tsforge/media.toml", b"# test medium\n".to_vec())
        .unwrap();

    let mut options = IsoOptions::new("TSFORGE", T0);
    let bios = boot.iso_bios.as_ref().unwrap();
    assert!(bios.isolinux);
    options.bios_boot = Some(BiosBoot::isolinux(bios.image.clone()));
    options.uefi_boot = Some(UefiBoot::new(boot.iso_uefi_image.clone().unwrap()));
    options.hybrid = Some(Hybrid {
        boot_code: Some(std::fs::read(boot.iso_hybrid_mbr.as_ref().unwrap()).unwrap()),
    });
    let mut iso = IsoBuilder::new(options);
    for (path, source) in prepared.tree.iter() {
        iso.add_file(path, source.clone()).unwrap();
    }
    let iso_path = tmp.path().join("tsforge.iso");
    iso.plan()
        .unwrap()
        .write(std::fs::File::create(&iso_path).unwrap(), |_, _| {})
        .unwrap();

    let boot_cd = |uefi: bool| {
        let mut cmd = Command::new("timeout");
        cmd.arg("300").arg(&qemu);
        cmd.args(["-m", "512", "-nographic", "-no-reboot", "-cdrom"])
            .arg(&iso_path);
        if uefi {
            let vars = tmp.path().join("OVMF_VARS.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars).unwrap();
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,readonly=on,file={}",
                    ovmf.display()
                ))
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        let out = run(&mut cmd);
        eprintln!("{out}");
        assert!(out.contains("tsforge: medium found on /dev/sr0"), "{out}");
        assert!(
            out.contains("tsforge: the runner exited with code 0"),
            "{out}"
        );
    };
    boot_cd(false);
    if ovmf.is_file() {
        boot_cd(true);
    } else {
        eprintln!(
            "SKIP UEFI: {} is missing (apt-get install ovmf)",
            ovmf.display()
        );
    }
}
