//! The linux template's drivers (issue 17): the initramfs carries the storage, network and
//! input drivers of the kernel with what they need, the firmware files they name that the
//! build machine has, `modules.alias`/`modules.dep` for busybox `modprobe` to load them by
//! modalias; a custom template's `modules = [...]` and `--driver FILE.ko` are added, loaded on
//! every boot and reported; a module built for another kernel is refused.

use crate::common::{run, tool};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use tsforge_builder::template::kmod;
use tsforge_builder::template::linux::{self, Kernel};
use tsforge_builder::template::TemplateInput;

const T0: i64 = 1_700_000_000;

fn host_kernel() -> Option<Kernel> {
    if !cfg!(target_os = "linux") || !Path::new(linux::BUSYBOX).is_file() {
        eprintln!("SKIP: needs Linux with busybox-static (scripts/setup.sh)");
        return None;
    }
    match linux::find_kernel_in(Path::new("/")) {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!("SKIP: no kernel on this machine: {e:#}");
            None
        }
    }
}

/// Host `modules.dep`: module name → (path, dependency paths).
fn host_deps(kernel: &Kernel) -> BTreeMap<String, (String, Vec<String>)> {
    std::fs::read_to_string(kernel.modules.join("modules.dep"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(p, d)| {
            (
                linux::module_name(p),
                (
                    p.to_string(),
                    d.split_whitespace().map(str::to_string).collect(),
                ),
            )
        })
        .collect()
}

/// A copy of the kernel's `dummy` module renamed `dumm2`; with `other_kernel`, its vermagic
/// names another kernel version (first character of the version changed).
fn patched_module(kernel: &Kernel, dir: &Path, other_kernel: bool) -> Option<PathBuf> {
    let deps = host_deps(kernel);
    let Some((path, _)) = deps.get("dummy") else {
        eprintln!("SKIP: this kernel has no dummy module");
        return None;
    };
    let mut bytes = kmod::module_bytes(&kernel.modules.join(path)).unwrap();
    let replace = |bytes: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("{:?} not in the module", String::from_utf8_lossy(from)));
        bytes[at..at + to.len()].copy_from_slice(to);
    };
    replace(&mut bytes, b"name=dummy\0", b"name=dumm2\0");
    if other_kernel {
        let at = bytes
            .windows(9)
            .position(|w| w == b"vermagic=")
            .expect("vermagic")
            + 9;
        bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
    }
    let out = dir.join("dumm2.ko");
    std::fs::write(&out, bytes).unwrap();
    Some(out)
}

fn unpack(initrd: &Path, dir: &Path) -> Option<()> {
    let (Some(cpio), Some(zstd)) = (tool("cpio"), tool("zstd")) else {
        eprintln!("SKIP unpacking: needs cpio and zstd");
        return None;
    };
    std::fs::create_dir_all(dir).unwrap();
    let magic = std::fs::read(initrd).unwrap()[..4].to_vec();
    let decompress = if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        format!("{} -dc", zstd.display())
    } else {
        "gzip -dc".to_string()
    };
    run(Command::new("sh").arg("-c").arg(format!(
        "{decompress} '{}' | (cd '{}' && '{}' -id --quiet)",
        initrd.display(),
        dir.display(),
        cpio.display()
    )));
    Some(())
}

/// One build with a template module (`r8169`) and a `--driver` module: the hardware
/// drivers a real machine needs are in with their dependencies, the index files match, the
/// firmware the modules name (`modinfo -F firmware`, kmod's own reading) is in where this
/// machine has it, the added modules are loaded on every boot and reported, and busybox
/// modprobe in the initramfs resolves PCI modaliases to the drivers.
#[test]
fn initramfs_carries_hardware_drivers_firmware_and_added_modules() {
    let Some(kernel) = host_kernel() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(extra) = patched_module(&kernel, tmp.path(), false) else {
        return;
    };
    let work = tmp.path().join("work");
    let input = TemplateInput {
        runner: std::env::current_exe().unwrap(),
        work: work.clone(),
        epoch: T0,
        modules: vec!["r8169".into()],
        drivers: vec![extra.clone()],
        ..Default::default()
    };
    let prepared = linux::prepare(&input).unwrap();
    let summary = prepared.summary.join("\n");
    eprintln!("{summary}");
    assert!(summary.contains("added: r8169 (template)"), "{summary}");
    assert!(
        summary.contains(&format!("dumm2 (--driver {})", extra.display())),
        "{summary}"
    );
    assert!(
        summary.contains("hardware drivers loaded by modalias"),
        "{summary}"
    );
    let root = tmp.path().join("root");
    if unpack(&work.join("initrd.img"), &root).is_none() {
        return;
    }
    let mods = root.join("lib/modules").join(&kernel.version);
    let deps = host_deps(&kernel);
    let present = |p: &str| mods.join(linux::plain_module_path(p)).is_file();

    // The drivers of real hardware, where this kernel has them as modules, with everything
    // modules.dep says they need.
    let mut checked = 0;
    for m in [
        "r8169",
        "igb",
        "ixgbe",
        "bnx2",
        "tg3",
        "e1000e",
        "ahci",
        "nvme",
        "megaraid_sas",
        "mpt3sas",
        "usb_storage",
        "uas",
        "mmc_block",
        "sdhci_pci",
        "cdc_ether",
        "r8152",
        "usbhid",
        "hid_generic",
        "xhci_pci",
        "virtio_net",
        "virtio_blk",
        "vmd",
    ] {
        let Some((path, needs)) = deps.get(m) else {
            continue;
        };
        checked += 1;
        assert!(present(path), "{m} ({path}) is not in the initramfs");
        for d in needs {
            assert!(present(d), "{m} needs {d}, which is not in the initramfs");
        }
    }
    assert!(
        checked > 10,
        "this kernel has few of the drivers: {checked}"
    );
    // floppy is left out (the medium search would wait on /dev/fd0).
    if let Some((p, _)) = deps.get("floppy") {
        assert!(!present(p), "floppy is in the initramfs");
    }

    // modules.dep of the initramfs: every module in it, each dependency present.
    let dep = std::fs::read_to_string(mods.join("modules.dep")).unwrap();
    let mut listed = BTreeSet::new();
    for line in dep.lines() {
        let (p, d) = line.split_once(':').unwrap();
        assert!(
            mods.join(p).is_file(),
            "modules.dep names {p}, not in the initramfs"
        );
        for d in d.split_whitespace() {
            assert!(
                mods.join(d).is_file(),
                "{p} needs {d}, not in the initramfs"
            );
        }
        listed.insert(linux::module_name(p));
    }
    assert!(listed.contains("dumm2") && listed.contains("r8169"));
    // modules.alias: the kernel's lines for e1000e, as they are.
    let alias = std::fs::read_to_string(mods.join("modules.alias")).unwrap();
    let host_alias = std::fs::read_to_string(kernel.modules.join("modules.alias")).unwrap();
    let e1000e: Vec<&str> = host_alias
        .lines()
        .filter(|l| l.ends_with(" e1000e"))
        .collect();
    assert!(!e1000e.is_empty());
    for l in &e1000e {
        assert!(
            alias.lines().any(|a| a == *l),
            "{l} is not in modules.alias"
        );
    }
    for a in alias.lines() {
        let m = a.rsplit(' ').next().unwrap();
        assert!(listed.contains(&m.replace('-', "_")), "{a}: {m} is not in");
    }

    // Loaded on every boot: the template's module and the --driver one, after the list.
    let list = std::fs::read_to_string(root.join(linux::MODULE_LIST_PATH)).unwrap();
    let names: Vec<String> = list.lines().map(linux::module_name).collect();
    let at = |m: &str| names.iter().position(|n| n == m);
    assert!(at("r8169").is_some(), "{list}");
    assert!(
        list.lines()
            .any(|l| l == format!("/lib/modules/{}/extra/dumm2.ko", kernel.version)),
        "{list}"
    );
    assert!(at("vfat").unwrap() < at("r8169").unwrap());

    // Firmware: what kmod's modinfo says each module needs and /lib/firmware has is there.
    let modinfo = tool("modinfo").unwrap_or_else(|| PathBuf::from("/sbin/modinfo"));
    {
        let mut wanted = BTreeSet::new();
        for line in dep.lines() {
            let p = line.split_once(':').unwrap().0;
            let out = Command::new(&modinfo)
                .args(["-F", "firmware"])
                .arg(mods.join(p))
                .output();
            let Ok(out) = out else {
                eprintln!("SKIP firmware check: no modinfo (kmod)");
                wanted.clear();
                break;
            };
            for fw in String::from_utf8_lossy(&out.stdout).lines() {
                wanted.insert(fw.to_string());
            }
        }
        let mut found = 0;
        for fw in &wanted {
            if Path::new(linux::FIRMWARE_DIR).join(fw).is_file() {
                found += 1;
                let got = root.join("lib/firmware").join(fw);
                assert!(
                    got.is_file(),
                    "firmware {fw} is on this machine, not in the initramfs"
                );
                assert!(
                    std::fs::read(&got).unwrap()
                        == std::fs::read(Path::new(linux::FIRMWARE_DIR).join(fw)).unwrap()
                );
            }
        }
        eprintln!(
            "{found} of {} firmware files named by the modules are on this machine",
            wanted.len()
        );
        if found < wanted.len() {
            assert!(
                summary.contains("firmware files the modules name are not on this machine"),
                "{summary}"
            );
        }
    }

    // busybox modprobe inside the initramfs turns modaliases into drivers: `-D` prints the
    // insmod commands without loading anything. It reads /lib/modules/`uname -r`: where the
    // running kernel is another one, a link of that name (in the unpacked copy only) points
    // at the build kernel's folder. chroot needs root.
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let running = running.trim();
    let chroot = tool("chroot");
    if chroot.is_none() || !unsafe_is_root() || running.is_empty() {
        eprintln!("SKIP modprobe -D: needs root and chroot");
        return;
    }
    if running != kernel.version {
        std::os::unix::fs::symlink(&kernel.version, root.join("lib/modules").join(running))
            .unwrap();
    }
    for (modalias, want) in [
        // QEMU's e1000 (Intel 82540EM) and an NVMe controller (matched by its PCI class).
        (
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
            "e1000.ko",
        ),
        (
            "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
            "nvme.ko",
        ),
        // An Intel AHCI controller (by class) and a Realtek RTL8168.
        (
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
            "ahci.ko",
        ),
        (
            "pci:v000010ECd00008168sv00001043sd00008677bc02sc00i00",
            "r8169.ko",
        ),
    ] {
        if !dep
            .lines()
            .any(|l| l.split(':').next().unwrap().ends_with(&format!("/{want}")))
        {
            continue;
        }
        let out = Command::new(chroot.as_ref().unwrap())
            .arg(&root)
            .args(["/bin/busybox", "modprobe", "-D", modalias])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines()
                .any(|l| l.starts_with("insmod ") && l.contains(&format!("/{want}"))),
            "modprobe -D {modalias}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn unsafe_is_root() -> bool {
    // The effective user is root when /proc/self/status says so (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

/// A `--driver` module built for another kernel is refused, naming the file and both
/// vermagic strings; a template module the kernel does not have is refused, naming it.
#[test]
fn modules_that_cannot_load_are_refused() {
    let Some(kernel) = host_kernel() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(extra) = patched_module(&kernel, tmp.path(), true) else {
        return;
    };
    let input = TemplateInput {
        runner: std::env::current_exe().unwrap(),
        work: tmp.path().join("work"),
        epoch: T0,
        drivers: vec![extra.clone()],
        ..Default::default()
    };
    let e = format!("{:#}", linux::prepare(&input).err().expect("refused"));
    assert!(e.contains(&extra.display().to_string()), "{e}");
    assert!(e.contains("vermagic") && e.contains(&kernel.version), "{e}");
    assert!(!tmp.path().join("work/initrd.img").exists());

    let input = TemplateInput {
        modules: vec!["no_such_driver".into()],
        drivers: Vec::new(),
        ..input
    };
    let e = format!("{:#}", linux::prepare(&input).err().expect("refused"));
    assert!(
        e.contains("\"no_such_driver\"") && e.contains("not a module of this kernel"),
        "{e}"
    );

    // Not a module at all.
    let bogus = tmp.path().join("bogus.ko");
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let input = TemplateInput {
        modules: Vec::new(),
        drivers: vec![bogus.clone()],
        ..input
    };
    let e = format!("{:#}", linux::prepare(&input).err().expect("refused"));
    assert!(
        e.contains(&bogus.display().to_string()) && e.contains("not a kernel module"),
        "{e}"
    );

    // The kernel's own module given as --driver: the template's `modules = [...]` is the way.
    let own = kernel.modules.join("kernel/drivers/net/dummy.ko");
    if own.exists() {
        let input = TemplateInput {
            drivers: vec![own.clone()],
            ..input
        };
        let e = format!("{:#}", linux::prepare(&input).err().expect("refused"));
        assert!(
            e.contains(&own.display().to_string())
                && e.contains("is a module of this kernel")
                && e.contains("modules = [...]"),
            "{e}"
        );
    }
}
