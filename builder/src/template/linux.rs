//! The `linux` media template: a Debian kernel, an initramfs the builder makes (busybox, the
//! drivers a deployment needs, the runner and `/init`), Debian's signed shim and GRUB for UEFI and syslinux for
//! BIOS. [`prepare`] turns the sources into a [`Prepared`] tree and [`BootSpec`];
//! `media-templates/linux/template.toml` describes the same in words (a test keeps the two in
//! step).
//!
//! **Kernel.** `--source` is a folder holding `vmlinuz*` and `lib/modules/<version>/`, or a root
//! file system (`/`, a mounted image) with `boot/vmlinuz-<version>` and
//! `lib/modules/<version>/`. Without `--source` it is the build machine's own Debian kernel
//! (`linux-image-amd64`): the newest `/boot/vmlinuz-*` that has `/lib/modules/<version>/
//! modules.dep`, which is not necessarily the running kernel. Versions compare by their
//! numeric parts (`6.10` after `6.9`).
//!
//! **Drivers** (module [`super::kmod`]; `docs/media.md`, "Drivers"). Two kinds:
//! - [`MODULES`], loaded by `/init` on every boot in the order of `/etc/tsforge/modules`
//!   (every module after the modules `modules.dep` says it needs): FAT and ISO 9660 with
//!   their code pages, the file systems an OS goes onto (ext4, XFS, ntfs3 where the kernel
//!   has it, FUSE for ntfs-3g, crc32c, which ext4 and XFS checksum with) and efivarfs for the
//!   UEFI variables: what no device asks for. Debian 12's kernel (6.1) has all of them as
//!   modules except ntfs3 (`CONFIG_NTFS3_FS` unset): NTFS is ntfs-3g's there. crc32c must be
//!   in the kernel before libcrc32c (XFS) loads, which asks the crypto API for it at load
//!   time. After them come a custom template's `modules = [...]` and `--driver` modules.
//! - Hardware drivers: every module in the [`DRIVER_DIRS`] (storage, USB, network, input,
//!   virtio), the [`DRIVER_MODULES`], minus [`DRIVER_EXCLUDED`], with their dependencies. The
//!   initramfs gets `modules.dep` and `modules.alias` written for the modules it holds (and
//!   the kernel's `modules.builtin`, `modules.builtin.modinfo`), and `/init` loads what the
//!   machine's devices announce in `/sys/devices/**/modalias` with busybox `modprobe`,
//!   repeating while new devices appear. The firmware files the modules name that the build
//!   machine has ([`FIRMWARE_DIR`]) go to `/lib/firmware`; missing ones are listed in the
//!   build summary.
//!
//! A module that is built into the kernel (`modules.builtin`) or missing from it is skipped,
//! not an error (a template's `modules = [...]` name the kernel lacks is). Compressed modules
//! (`.ko.xz`, `.ko.zst`, `.ko.gz`) are decompressed at build time, so loading them depends
//! neither on the kernel decompressing modules itself (`CONFIG_MODULE_DECOMPRESS`) nor on the
//! formats busybox `insmod` was built with. Debian 12's kernels ship plain `.ko` files; other
//! distributions' and newer kernels often ship `.ko.xz` or `.ko.zst`.
//!
//! **Runner.** Any Linux x86-64 ELF executable, static or dynamic. A static (musl) build is
//! copied as it is. A dynamic (glibc) build, which is what `cargo build` makes and what the
//! builder finds as its own executable, gets its shared libraries from `ldd` and its dynamic
//! loader (the ELF `PT_INTERP`, `/lib64/ld-linux-x86-64.so.2`) at their absolute paths on the
//! build machine, where the loader's built-in search path finds them. Requiring a static
//! runner would be simpler, but would make every Linux medium depend on a musl toolchain the
//! build machine may not have; accepting both always works, and the tests check the dynamic
//! case. Libraries a runner opens with `dlopen` are not seen by `ldd` and are not included;
//! name lookups need none, since glibc 2.34 and later has the `files` and `dns` NSS modules
//! built in (and the initramfs has no `nsswitch.conf` asking for others).
//!
//! **Programs.** [`PROGRAMS`], what the OS-deployment steps, hooks and commands run on the
//! target (`mkfs.ext4`/`mkfs.ext3`/`mkfs.ext2`, `e2fsck`, `tune2fs`, `mkfs.xfs`, `mkfs.fat`,
//! `mkntfs`/`mkfs.ntfs`, `ntfs-3g`, `wimlib-imagex`, and `efibootmgr` for firmware boot
//! entries), are found on the build machine through the runtime's tools table and copied from
//! its Debian packages (e2fsprogs, xfsprogs, dosfstools, ntfs-3g, wimtools, efibootmgr) at
//! their Debian paths, Debian's links kept, with the shared
//! libraries `ldd` lists (as for the runner) and [`PROGRAM_DATA`] (`/etc/mke2fs.conf`). All are
//! required: a build machine without one fails the build with the package to install, never a
//! smaller initramfs. `wimlib-imagex` is most of the size: through libxml2 it needs ICU, whose
//! data library alone is 30 MiB before compression. Not carried: glibc's `gconv` modules
//! (loaded with `dlopen`), so `mkfs.fat` converts a label with its built-in code page 850 table
//! and says so; exFAT's `mkfs.exfat` (exfatprogs).
//!
//! **initramfs** (`tsforge/boot/initrd.img`): busybox from Debian's `busybox-static` as
//! `/bin/busybox` with links for the [`APPLETS`] `/init` and the sample hooks use, `/init` (the shell script in
//! `media-templates/linux/init`, embedded; its `PATH` is `/bin:/usr/bin:/usr/sbin`), the runner
//! as `/bin/tsforge`, the [`PROGRAMS`], their libraries, `/etc/mtab` linked to
//! `/proc/self/mounts` (e2fsprogs reads it), and the drivers. zstd-compressed when the kernel's `config-<version>` says `CONFIG_RD_ZSTD=y`,
//! gzip otherwise (every kernel reads gzip). Written by [`crate::cpio`] with `input.epoch` for
//! every timestamp, so the same inputs give the same bytes.
//!
//! **Boot files.** UEFI: Debian's signed chain, shim as `EFI/BOOT/BOOTX64.EFI`, the signed
//! GRUB and MOK manager beside it and `EFI/debian/grub.cfg`, so that Secure Boot firmware
//! starts the medium ([`super::secureboot`]). BIOS from USB: `syslinux/syslinux.cfg`
//! (`syslinux --install` adds `ldlinux.sys` and `ldlinux.c32` of its own version). BIOS from
//! an ISO: `isolinux/isolinux.bin`, `isolinux/ldlinux.c32` and `isolinux/isolinux.cfg`. UEFI
//! from an ISO: `tsforge/boot/efi.img`, a FAT image made in-process by
//! [`tsforge_runtime::disk::fatbuild`] holding the same loader files, the kernel and
//! the initramfs (GRUB's `root` is the partition it started from, so they are on the ISO twice). Its
//! file times are `input.epoch`; its volume serial and label time, which the FAT code takes
//! from `SOURCE_DATE_EPOCH` (or makes random), are then set from `input.epoch` too, so it is
//! reproducible like the initramfs. PXE: kernel, initramfs and [`CMDLINE`] for iPXE (BIOS), and
//! the signed chain with the network GRUB for UEFI ([`secureboot`], "Network boot").
//!
//! **Tested** (`builder/tests/linux_template.rs`): the initramfs unpacked by GNU cpio, each
//! program run inside it with `chroot` (so only its own libraries are there), the EFI
//! image read by dosfstools and mtools, reproducibility; opt-in QEMU tests boot the kernel
//! directly, `efi.img` through OVMF, shim and GRUB, and an ISO by BIOS (isolinux) and UEFI,
//! each to the runner and a power-off.
//!
//! **Host.** Building needs Linux (busybox-static, syslinux, shim-signed, grub-efi-amd64-signed, `ldd`, and the
//! packages of the [`PROGRAMS`]); on other hosts [`prepare`] says so.
//!
//! Left out: network setup in
//! the initramfs (the runner gets a medium, not an address), util-linux's `partx` (the runtime
//! falls back to busybox's `blockdev`), and the PXE
//! payload itself (the PXE writer appends it as a second initrd unpacking under `/pxe`;
//! `/init` only looks there). The kernel unpacks into the initramfs without `/dev/console`
//! (the cpio writer makes no device nodes), so `/init` mounts devtmpfs first and then opens
//! the console itself.

use super::kmod::{self, Drivers};
use super::{secureboot, BootSpec, IsoBios, Prepared, PxeBoot, PxeUefi, TemplateInput, UsbBios};
use crate::cpio::{Compression, CpioBuilder};
use crate::source::Source;
use crate::tree::MediaTree;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tsforge_runtime::disk::{fat, fatbuild, Disk};
use tsforge_runtime::tools::{self, Tool};

/// The kernel on the medium.
pub const KERNEL_PATH: &str = "tsforge/boot/vmlinuz";
/// The initramfs on the medium.
pub const INITRD_PATH: &str = "tsforge/boot/initrd.img";
/// The EFI System Partition image for UEFI boot from an ISO.
pub const EFI_IMAGE_PATH: &str = "tsforge/boot/efi.img";
/// The kernel command line: serial console first (QEMU, servers), the screen last, so the
/// screen is `/dev/console` and gets the runner's output; the serial line shows the kernel's
/// messages only (the QEMU tests boot with `console=ttyS0` alone to see `/init`).
pub const CMDLINE: &str = "console=ttyS0,115200 console=tty0 quiet";
/// Where the runner goes in the initramfs.
pub const RUNNER_PATH: &str = "bin/tsforge";
/// The load list `/init` reads (one absolute module path a line).
pub const MODULE_LIST_PATH: &str = "etc/tsforge/modules";
/// Modules `/init` loads on every boot, whatever the hardware (kernel module names; `-` and
/// `_` are the same to the kernel): what no device announces with a modalias. Hardware drivers
/// are not here: they are in [`DRIVER_DIRS`] and [`DRIVER_MODULES`] and load by modalias.
pub const MODULES: &[&str] = &[
    "fat",
    "vfat",
    "isofs",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    // Debian's FAT default iocharset (CONFIG_FAT_DEFAULT_IOCHARSET="ascii"): without it a
    // vfat mount fails with "IO charset ascii not found".
    "nls_ascii",
    // The file systems an OS goes onto. crc32c first: libcrc32c (XFS) asks the crypto API
    // for crc32c when it loads, and ext4/jbd2 checksums need it at mount time; the kernel
    // cannot load it on demand (that would run /sbin/modprobe with a crypto alias). The
    // generic version, because crc32c_intel fails to load on CPUs without SSE4.2 (QEMU's
    // default CPU).
    "crc32c_generic",
    "ext4",
    "xfs",
    // NTFS: the kernel's ntfs3 driver where the kernel has it (Debian 13's does, Debian 12's
    // 6.1 does not), and FUSE for ntfs-3g, which works on every kernel.
    "ntfs3",
    "fuse",
    // efivarfs, which `/init` mounts at /sys/firmware/efi/efivars on a UEFI boot so that
    // efibootmgr can write the deployed OS's boot entry and BootNext (Debian 12's kernel:
    // `CONFIG_EFIVAR_FS=m`).
    "efivarfs",
];
/// Folders of the kernel's modules tree (paths as `modules.dep` writes them) whose every
/// module goes into the initramfs, with what `modules.dep` says they need; `/init` loads
/// the ones the machine's devices ask for by modalias, as udev does.
pub const DRIVER_DIRS: &[&str] = &[
    // Storage: SATA/PATA (AHCI, Intel RST in AHCI or RAID mode), NVMe, SCSI disks and
    // CD-ROMs with every SCSI/SAS/RAID HBA (megaraid_sas, mpt3sas, aacraid, smartpqi,
    // hpsa, virtio_scsi, Hyper-V's storvsc, VMware's pvscsi), block devices (virtio_blk,
    // mtip32xx), CD-ROM, MMC/SD card readers.
    "kernel/drivers/ata/",
    "kernel/drivers/nvme/",
    "kernel/drivers/scsi/",
    "kernel/drivers/block/",
    "kernel/drivers/cdrom/",
    "kernel/drivers/mmc/",
    // USB host controllers, USB storage and UAS.
    "kernel/drivers/usb/host/",
    "kernel/drivers/usb/storage/",
    "kernel/drivers/usb/core/",
    "kernel/drivers/usb/common/",
    // Network: every Ethernet driver, USB network adapters (r8152, cdc_ether, ax88179…).
    "kernel/drivers/net/ethernet/",
    "kernel/drivers/net/usb/",
    // Input: HID (USB keyboards) and keyboards.
    "kernel/drivers/hid/",
    "kernel/drivers/input/keyboard/",
    "kernel/drivers/input/serio/",
    // virtio transport (virtio_pci) for virtual machines.
    "kernel/drivers/virtio/",
];
/// Hardware drivers outside [`DRIVER_DIRS`], also loaded by modalias: virtual machines'
/// network cards, and Intel VMD, behind which Intel RST puts NVMe disks on recent laptops.
pub const DRIVER_MODULES: &[&str] = &["virtio_net", "vmxnet3", "hv_netvsc", "vmd"];
/// Modules of [`DRIVER_DIRS`] left out: `floppy` (QEMU's PC machines announce a floppy
/// controller; the driver then makes `/dev/fd0`, and every look for the medium would wait on
/// the empty drive).
pub const DRIVER_EXCLUDED: &[&str] = &["floppy"];
/// The modules folder's index files that go into the initramfs beside the modules, so that
/// busybox `modprobe` finds modules by alias: `modules.dep` and `modules.alias` are written
/// for the modules in the initramfs; `modules.builtin` and `modules.builtin.modinfo` are
/// copied as they are (when the kernel has them).
pub const MODULE_INDEX_FILES: &[&str] = &[
    "modules.dep",
    "modules.alias",
    "modules.builtin",
    "modules.builtin.modinfo",
];
/// Where the build machine keeps firmware files (Debian's `firmware-linux-free` and, where
/// the sources have them, the non-free firmware packages).
pub const FIRMWARE_DIR: &str = "/lib/firmware";
/// busybox applets `/init` calls, linked to `/bin/busybox`.
pub const APPLETS: &[&str] = &[
    "sh",
    "mount",
    "umount",
    "insmod",
    "mkdir",
    "sleep",
    "poweroff",
    "reboot",
    "cat",
    "ls",
    "findfs",
    "blkid",
    "sync",
    "dmesg",
    "mkfifo",
    "tee",
    "kill",
    "chmod",
    "ip",
    "udhcpc",
    "sed",
    "head",
    "tail",
    "grep",
    "tr",
    "cut",
    "wc",
    "cmp",
    "ping",
    "printf",
    "echo",
    "test",
    "[",
    "expr",
    "env",
    "stty",
    "date",
    "uname",
    "hostname",
    "cp",
    "mv",
    "rm",
    "ln",
    "touch",
    "sort",
    "awk",
    "dd",
    "sha256sum",
    "mdev",
    "lsmod",
    "blockdev",
    "modprobe",
    "find",
];

/// The programs the OS-deployment steps, hooks and commands run in the initramfs, found on
/// the build machine through the runtime's tools table (which names each one's Debian
/// package) and copied with their shared libraries. All are required: a build machine
/// without one fails the build with the package to install, because a medium that cannot
/// format ext4 or apply a WIM would only fail later, on the target machine. Each goes in at
/// its real path on the build machine (`/usr/sbin/mke2fs`), with a link under the table's
/// name beside it when that is another name (`/usr/sbin/mkfs.ext4 -> mke2fs`), as Debian
/// installs them; `/init` puts `/usr/bin` and `/usr/sbin` on `PATH`.
pub const PROGRAMS: &[Tool] = &[
    Tool::MkfsExt4,
    Tool::MkfsExt3,
    Tool::MkfsExt2,
    Tool::E2fsck,
    Tool::Tune2fs,
    Tool::MkfsXfs,
    Tool::MkfsFat,
    Tool::Mkntfs,
    Tool::MkfsNtfs,
    Tool::Ntfs3g,
    Tool::WimlibImagex,
    // The firmware boot entry of a deployed Linux and BootNext before a Restart Computer
    // (runtime/src/osconfig/efi.rs); about 0.3 MiB with libefivar and libefiboot.
    Tool::Efibootmgr,
];

/// Data files the [`PROGRAMS`] read, with their Debian package: `mke2fs` takes the ext4
/// defaults (features, inode size) from `/etc/mke2fs.conf`, so a volume made on the target
/// is the one Debian makes.
pub const PROGRAM_DATA: &[(&str, &str)] = &[("/etc/mke2fs.conf", "e2fsprogs")];

/// Files taken from the build machine's Debian packages.
pub const BUSYBOX: &str = "/bin/busybox";
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
pub const ISOHDPFX: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
pub const SYSLINUX: &str = "/usr/bin/syslinux";
pub const SYSLINUX_MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";
pub const SYSLINUX_GPTMBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";

/// The `/init` script.
pub const INIT: &str = include_str!("../../../media-templates/linux/init");

/// The FAT label of `tsforge/boot/efi.img`.
const EFI_LABEL: &str = "TSFORGE-EFI";

/// Which Debian package provides each host file, for the "missing file" errors.
const PACKAGES: &[(&str, &str)] = &[
    (BUSYBOX, "busybox-static"),
    (ISOLINUX_BIN, "isolinux"),
    (LDLINUX_C32, "syslinux-common"),
    (ISOHDPFX, "isolinux"),
    (SYSLINUX, "syslinux"),
    (SYSLINUX_MBR, "syslinux-common"),
    (SYSLINUX_GPTMBR, "syslinux-common"),
];

/// A kernel and its modules folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -r`: the name of the modules folder.
    pub version: String,
    pub image: PathBuf,
    /// `…/lib/modules/<version>`.
    pub modules: PathBuf,
    /// `config-<version>` next to the image, when there is one.
    pub config: Option<PathBuf>,
}

/// Build the linux template's files from `input`; see the module documentation.
pub fn prepare(input: &TemplateInput) -> Result<Prepared> {
    if !cfg!(target_os = "linux") {
        bail!(
            "the linux template is built on a Linux machine (it takes busybox-static, syslinux, \
             shim-signed and grub-efi-amd64-signed from Debian packages and uses ldd); build linux \
             media on Debian"
        );
    }
    for (path, package) in PACKAGES.iter().chain(secureboot::PACKAGES) {
        if !Path::new(path).is_file() {
            bail!("{path} is missing: the linux template needs it; apt-get install {package}");
        }
    }
    if elf_interpreter(Path::new(BUSYBOX))?.is_some() {
        bail!(
            "{BUSYBOX} is dynamically linked (Debian's `busybox` package); the initramfs needs \
             a static one: apt-get install busybox-static"
        );
    }
    let kernel = match &input.source {
        Some(dir) => find_kernel_in(dir)?,
        None => find_kernel_in(Path::new("/")).map_err(|e| {
            anyhow!("{e:#}; install Debian's kernel with: apt-get install linux-image-amd64, or pass --source")
        })?,
    };
    let tree = kmod::ModuleTree::read(&kernel.modules)?;
    let drivers = kmod::select(&tree, &input.modules, &input.drivers)?;
    let module_files = module_files(&tree, &drivers, &kernel, input.source.as_deref())?;
    let programs = program_files(tools::find)?;
    let mut runner_files = runner_files(&input.runner)?;

    std::fs::create_dir_all(&input.work)
        .with_context(|| format!("creating {}", input.work.display()))?;
    runner_files[0].1 = stripped_runner(&input.runner, &input.work);
    let compression = initrd_compression(&kernel);
    let initrd = input.work.join("initrd.img");
    let initrd_size = write_initrd(
        input,
        &module_files,
        &runner_files,
        &programs,
        compression,
        &initrd,
    )?;

    let grub_cfg = secureboot::grub_cfg(KERNEL_PATH, INITRD_PATH, CMDLINE);
    let syslinux_cfg = format!(
        "DEFAULT tsforge\nPROMPT 0\nTIMEOUT 0\nLABEL tsforge\n  KERNEL /{KERNEL_PATH}\n  APPEND initrd=/{INITRD_PATH} {CMDLINE}\n"
    );

    let efi_img = input.work.join("efi.img");
    let mut efi_files = secureboot::esp_files(&grub_cfg);
    efi_files.push((KERNEL_PATH, Source::path(&kernel.image)));
    efi_files.push((INITRD_PATH, Source::path(&initrd)));
    write_efi_image(
        &input.work.join("efi-root"),
        &efi_img,
        &efi_files,
        input.epoch,
    )?;

    let mut tree = MediaTree::new();
    tree.add(KERNEL_PATH, Source::path(&kernel.image))?;
    tree.add(INITRD_PATH, Source::path(&initrd))?;
    tree.add(EFI_IMAGE_PATH, Source::path(&efi_img))?;
    for (path, source) in secureboot::esp_files(&grub_cfg) {
        tree.add(path, source)?;
    }
    tree.add("syslinux/syslinux.cfg", syslinux_cfg.clone().into_bytes())?;
    tree.add("isolinux/isolinux.bin", Source::path(ISOLINUX_BIN))?;
    tree.add("isolinux/ldlinux.c32", Source::path(LDLINUX_C32))?;
    tree.add("isolinux/isolinux.cfg", syslinux_cfg.into_bytes())?;

    let boot = BootSpec {
        iso_bios: Some(IsoBios {
            image: "isolinux/isolinux.bin".into(),
            isolinux: true,
        }),
        iso_uefi_image: Some(EFI_IMAGE_PATH.into()),
        iso_hybrid_mbr: Some(ISOHDPFX.into()),
        usb_bios: Some(UsbBios::Syslinux {
            syslinux: SYSLINUX.into(),
            mbr: SYSLINUX_MBR.into(),
            gptmbr: SYSLINUX_GPTMBR.into(),
            config_dir: "syslinux".into(),
        }),
        uefi_removable_path: true,
        pxe: Some(PxeBoot::Linux {
            kernel: KERNEL_PATH.into(),
            initrd: INITRD_PATH.into(),
            cmdline: CMDLINE.into(),
            uefi: Some(PxeUefi {
                shim: secureboot::LOADER_PATH.into(),
                mok_manager: secureboot::MOK_MANAGER_PATH.into(),
                grub_net: Source::path(secureboot::GRUB_NET),
            }),
        }),
    };

    let mut summary = vec![
        format!("kernel {} ({})", kernel.version, kernel.image.display()),
        drivers_summary(&drivers, &module_files),
        format!(
            "initramfs {} ({}), runner {} with {} shared libraries (the dynamic loader included)",
            size_text(initrd_size),
            match compression {
                Compression::Zstd => "zstd",
                Compression::Gzip => "gzip",
                Compression::None => "uncompressed",
            },
            input.runner.display(),
            runner_files.len().saturating_sub(1)
        ),
        format!(
            "{} programs for putting an OS on a disk ({}) with their {} shared libraries",
            PROGRAMS.len(),
            PROGRAMS
                .iter()
                .map(|t| t.program())
                .collect::<Vec<_>>()
                .join(", "),
            programs.files.len() - programs.programs - PROGRAM_DATA.len()
        ),
    ];
    if !module_files.firmware_missing.is_empty() {
        summary.push(format!(
            "{} firmware files the modules name are not on this machine (the non-free \
             firmware packages have most; the drivers that need them load without): {}",
            module_files.firmware_missing.len(),
            module_files
                .firmware_missing
                .iter()
                .map(|(f, m)| format!("{f} ({m})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Prepared {
        tree,
        boot,
        summary,
    })
}

/// The driver files of the initramfs: modules (decompressed), the index files busybox
/// `modprobe` reads, the firmware files, and the list `/init` loads on every boot.
#[derive(Debug, Clone, Default)]
pub struct ModuleFiles {
    /// Path in the initramfs → content.
    pub files: Vec<(String, std::sync::Arc<[u8]>)>,
    /// `lib/firmware/<name>` → host file.
    pub firmware: Vec<(String, PathBuf)>,
    /// Firmware files named by a module (`modinfo -F firmware`) that the build machine does
    /// not have → the module.
    pub firmware_missing: BTreeMap<String, String>,
    /// `/etc/tsforge/modules`: one absolute module path a line, in load order.
    pub list: String,
}

/// Read the modules of `drivers`, write the index files, find the firmware (in
/// `<source>/lib/firmware` first when the source is a root file system, then the build
/// machine's [`FIRMWARE_DIR`]).
fn module_files(
    tree: &kmod::ModuleTree,
    drivers: &Drivers,
    kernel: &Kernel,
    source: Option<&Path>,
) -> Result<ModuleFiles> {
    let base = format!("lib/modules/{}", kernel.version);
    let mut out = ModuleFiles::default();
    let mut bytes_of: BTreeMap<String, std::sync::Arc<[u8]>> = BTreeMap::new();
    for p in drivers.kernel_paths() {
        let bytes: std::sync::Arc<[u8]> = kmod::module_bytes(&kernel.modules.join(p))?.into();
        bytes_of.insert(plain_module_path(p).to_string(), bytes);
    }
    for m in &drivers.external {
        let bytes: std::sync::Arc<[u8]> = std::fs::read(&m.host)
            .with_context(|| format!("--driver {}", m.host.display()))?
            .into();
        bytes_of.insert(m.path.clone(), bytes);
    }
    for p in &drivers.always {
        out.list
            .push_str(&format!("/{base}/{}\n", plain_module_path(p)));
    }
    let mut dirs = Vec::new();
    if let Some(src) = source {
        dirs.push(src.join(FIRMWARE_DIR.trim_start_matches('/')));
    }
    dirs.push(PathBuf::from(FIRMWARE_DIR));
    let with_bytes: Vec<(String, &[u8])> =
        bytes_of.iter().map(|(p, b)| (p.clone(), &b[..])).collect();
    let (found, missing) = kmod::firmware(&with_bytes, &dirs)?;
    out.firmware = found
        .into_iter()
        .map(|(name, host)| (format!("lib/firmware/{name}"), host))
        .collect();
    out.firmware_missing = missing;
    for (p, b) in bytes_of {
        out.files.push((format!("{base}/{p}"), b));
    }
    out.files.push((
        format!("{base}/modules.dep"),
        kmod::initramfs_modules_dep(tree, drivers)
            .into_bytes()
            .into(),
    ));
    out.files.push((
        format!("{base}/modules.alias"),
        kmod::initramfs_modules_alias(tree, drivers)?
            .into_bytes()
            .into(),
    ));
    for name in ["modules.builtin", "modules.builtin.modinfo"] {
        let host = kernel.modules.join(name);
        if host.is_file() {
            let bytes =
                std::fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
            out.files.push((format!("{base}/{name}"), bytes.into()));
        }
    }
    Ok(out)
}

/// The build summary's driver line.
fn drivers_summary(d: &Drivers, files: &ModuleFiles) -> String {
    let (storage, network, input, other) = d.classes();
    let mut s = format!(
        "{} modules: {} loaded on every boot (file systems, code pages, crc32c, efivarfs{}), \
         {} hardware drivers loaded by modalias (storage {storage}, network {network}, input \
         {input}, others they need {other})",
        d.count(),
        d.always.len(),
        if d.extra.is_empty() && d.external.is_empty() {
            String::new()
        } else {
            let mut added: Vec<String> =
                d.extra.iter().map(|m| format!("{m} (template)")).collect();
            added.extend(
                d.external
                    .iter()
                    .map(|m| format!("{} (--driver {})", m.name, m.host.display())),
            );
            format!("; added: {}", added.join(", "))
        },
        d.hardware.len()
    );
    if !d.builtin.is_empty() {
        s.push_str(&format!(
            "; built into the kernel: {}",
            d.builtin.join(", ")
        ));
    }
    if !d.missing.is_empty() {
        s.push_str(&format!("; not in this kernel: {}", d.missing.join(", ")));
    }
    s.push_str(&format!("; {} firmware files", files.firmware.len()));
    s
}

fn size_text(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Find the kernel in `dir`: `vmlinuz*` in the folder itself or `boot/vmlinuz-<version>`,
/// with `lib/modules/<version>/modules.dep`. The newest version wins.
pub fn find_kernel_in(dir: &Path) -> Result<Kernel> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("linux template source {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "linux template source {} is not a folder: give a folder holding vmlinuz and \
             lib/modules/<version>/, or a root file system with boot/vmlinuz-<version>",
            dir.display()
        );
    }
    let modules_root = dir.join("lib/modules");
    let mut images: Vec<(String, PathBuf)> = Vec::new();
    for folder in [dir.to_path_buf(), dir.join("boot")] {
        let Ok(rd) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in rd {
            let e = e.with_context(|| format!("reading {}", folder.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // `vmlinuz.old` (Debian's link to the previous kernel) would get the wrong version.
            if !name.starts_with("vmlinuz") || name.ends_with(".old") || !e.path().is_file() {
                continue;
            }
            let version = match name.strip_prefix("vmlinuz-") {
                Some(v) if !v.is_empty() => v.to_string(),
                // A bare `vmlinuz`: the version is the only folder in lib/modules.
                _ => match single_subdir(&modules_root)? {
                    Some(v) => v,
                    None => continue,
                },
            };
            images.push((version, e.path()));
        }
    }
    if images.is_empty() {
        bail!(
            "{} holds no kernel: neither vmlinuz* nor boot/vmlinuz-<version> is there",
            dir.display()
        );
    }
    images.sort_by(|a, b| version_cmp(&b.0, &a.0).then_with(|| a.1.cmp(&b.1)));
    let mut without_modules = Vec::new();
    for (version, image) in images {
        let modules = modules_root.join(&version);
        if !modules.join("modules.dep").is_file() {
            without_modules.push(format!(
                "{} has no {}",
                image.display(),
                modules.join("modules.dep").display()
            ));
            continue;
        }
        let config = image
            .parent()
            .map(|p| p.join(format!("config-{version}")))
            .filter(|p| p.is_file());
        return Ok(Kernel {
            version,
            image,
            modules,
            config,
        });
    }
    bail!(
        "{}: no kernel with its modules: {}",
        dir.display(),
        without_modules.join("; ")
    )
}

/// The name of the only folder in `dir`, `None` when there is none or several.
fn single_subdir(dir: &Path) -> Result<Option<String>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut dirs = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        if e.path().is_dir() {
            dirs.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(if dirs.len() == 1 { dirs.pop() } else { None })
}

/// Compare kernel versions: runs of digits by value, everything else by bytes.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The modules to load, in order, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modules {
    /// Paths relative to the modules folder as `modules.dep` names them (possibly compressed),
    /// every module after the modules it depends on.
    pub load: Vec<String>,
    /// Wanted modules built into the kernel.
    pub builtin: Vec<String>,
    /// Wanted modules this kernel has neither as a file nor built in.
    pub missing: Vec<String>,
}

/// A module's name from its path: file name without `.ko[.xz|.zst|.gz]`, `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The `.ko` path for a module path from `modules.dep` (compression suffix removed).
pub fn plain_module_path(path: &str) -> &str {
    for suffix in [".xz", ".zst", ".gz"] {
        if let Some(p) = path.strip_suffix(suffix) {
            return p;
        }
    }
    path
}

/// Resolve `wanted` against `modules_dir/modules.dep` and `modules.builtin`.
pub fn resolve_modules(modules_dir: &Path, wanted: &[&str]) -> Result<Modules> {
    let tree = kmod::ModuleTree::read(modules_dir)?;
    let mut out = Modules::default();
    let mut done: BTreeSet<String> = BTreeSet::new();
    for want in wanted {
        let name = want.replace('-', "_");
        match tree.path_of(&name) {
            Some(path) => tree.visit(path, &mut done, &mut Vec::new(), &mut out.load)?,
            None if tree.is_builtin(&name) => out.builtin.push(name),
            None => out.missing.push(name),
        }
    }
    Ok(out)
}

/// gzip unless the kernel's config says it reads zstd.
fn initrd_compression(kernel: &Kernel) -> Compression {
    let zstd = kernel
        .config
        .as_ref()
        .and_then(|c| std::fs::read_to_string(c).ok())
        .is_some_and(|t| t.lines().any(|l| l.trim() == "CONFIG_RD_ZSTD=y"));
    if zstd {
        Compression::Zstd
    } else {
        Compression::Gzip
    }
}

/// The runner without its debug information, made with `objcopy --strip-debug` (binutils,
/// which the Rust toolchain on Linux links with anyway) in `work`: a debug build of tsforge is
/// about 125 MB and 19 MB without, and the initramfs is unpacked into the target's RAM, where
/// under emulation every MiB also costs boot time. Symbols stay, so backtraces still name
/// functions. When objcopy is missing or fails, the runner goes on the medium as it is.
fn stripped_runner(runner: &Path, work: &Path) -> PathBuf {
    let out = work.join("tsforge.stripped");
    let Ok(objcopy) = tools::find(Tool::Objcopy) else {
        return runner.to_path_buf();
    };
    let ok = std::process::Command::new(objcopy)
        .arg("--strip-debug")
        .arg(runner)
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        out
    } else {
        runner.to_path_buf()
    }
}

/// The runner and what it needs: (path in the initramfs, host file). The runner comes first.
fn runner_files(runner: &Path) -> Result<Vec<(String, PathBuf)>> {
    let interp = elf_interpreter(runner).with_context(|| {
        format!(
            "runner {}: the linux template needs a Linux x86-64 build of tsforge (--runner)",
            runner.display()
        )
    })?;
    let mut files = vec![(RUNNER_PATH.to_string(), runner.to_path_buf())];
    let Some(interp) = interp else {
        return Ok(files);
    };
    let what = format!("the runner {}", runner.display());
    let libs = shared_libraries(
        runner,
        &interp,
        &what,
        "; or give a static runner with --runner",
    )?;
    files.extend(libs);
    Ok(files)
}

/// What [`program_files`] puts in the initramfs for the [`PROGRAMS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramFiles {
    /// Path in the initramfs (relative, as the build machine has it) → (host file, mode): the
    /// programs, their shared libraries and dynamic loader, [`PROGRAM_DATA`].
    pub files: BTreeMap<String, (PathBuf, u32)>,
    /// Path in the initramfs → link target (a file name in the same folder).
    pub links: BTreeMap<String, String>,
    /// How many of `files` are programs.
    pub programs: usize,
}

/// Find the [`PROGRAMS`] with `find` (the runtime's [`tools::find`] for a build) and list what
/// they need; a missing program or library fails with the Debian package to install.
pub fn program_files(
    find: impl Fn(Tool) -> std::result::Result<PathBuf, tools::MissingTool>,
) -> Result<ProgramFiles> {
    let mut out = ProgramFiles::default();
    let mut libs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for &tool in PROGRAMS {
        let package = match tool.spec().source {
            tools::Source::Debian(p) => p,
            other => bail!("{tool}: not a Debian program ({other:?})"),
        };
        let found = find(tool).map_err(|e| {
            anyhow!("the linux template's initramfs needs {tool}, and this machine has none: {e}")
        })?;
        let real = std::fs::canonicalize(&found)
            .with_context(|| format!("{tool}: resolving {}", found.display()))?;
        let (Some(dir), Some(name)) = (
            real.parent().and_then(Path::to_str),
            real.file_name().and_then(|n| n.to_str()),
        ) else {
            bail!("{tool}: {} is not a UTF-8 file path", real.display());
        };
        let dir = dir.trim_start_matches('/');
        let what = format!("{tool} ({}, Debian's {package})", real.display());
        if out
            .files
            .insert(format!("{dir}/{name}"), (real.clone(), 0o755))
            .is_none()
        {
            out.programs += 1;
            if let Some(interp) = elf_interpreter(&real).with_context(|| what.clone())? {
                libs.extend(shared_libraries(&real, &interp, &what, "")?);
            }
        }
        if name != tool.program() {
            out.links
                .insert(format!("{dir}/{}", tool.program()), name.to_string());
        }
    }
    for (path, host) in libs {
        out.files.entry(path).or_insert((host, 0o755));
    }
    for (path, package) in PROGRAM_DATA {
        if !Path::new(path).is_file() {
            bail!(
                "{path} is missing: the linux template's initramfs needs it; apt-get install \
                 {package} (or apt-get install --reinstall {package} if it is installed)"
            );
        }
        out.files.insert(
            path.trim_start_matches('/').to_string(),
            (PathBuf::from(path), 0o644),
        );
    }
    Ok(out)
}

/// The shared libraries `ldd` (through the tools table) lists for the dynamic executable
/// `exe`, and its dynamic loader `interp`: path in the initramfs (the build machine's, without
/// the leading `/`) → host file. `what` names the executable in errors, `hint` ends them.
fn shared_libraries(
    exe: &Path,
    interp: &str,
    what: &str,
    hint: &str,
) -> Result<BTreeMap<String, PathBuf>> {
    let ldd = tools::find(Tool::Ldd)
        .with_context(|| format!("listing the shared libraries of {what}{hint}"))?;
    let out = std::process::Command::new(ldd)
        .arg(exe)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running ldd to list the shared libraries of {what} (ldd is part of Debian's \
                 libc-bin{hint})"
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ldd {} failed ({}): {}{}",
            exe.display(),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut libs: BTreeMap<String, PathBuf> = BTreeMap::new();
    libs.insert(interp.to_string(), PathBuf::from(interp));
    for line in text.lines() {
        let line = line.trim();
        let host = if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                bail!(
                    "{what} needs {}, which is not installed on this machine",
                    name.trim()
                );
            }
            rest.split_whitespace().next().unwrap_or("")
        } else {
            line.split_whitespace().next().unwrap_or("")
        };
        // `linux-vdso.so.1 (0x…)` is in the kernel; everything else has an absolute path.
        if host.starts_with('/') {
            libs.insert(host.to_string(), PathBuf::from(host));
        }
    }
    let mut out = BTreeMap::new();
    for (path, host) in libs {
        if !host.is_file() {
            bail!("{}: a library of {what} is missing", host.display());
        }
        out.insert(path.trim_start_matches('/').to_string(), host);
    }
    Ok(out)
}

/// For a Linux x86-64 ELF executable: its interpreter (`PT_INTERP`), `None` when static.
pub fn elf_interpreter(path: &Path) -> Result<Option<String>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h)
        .map_err(|_| anyhow!("{} is not an ELF executable (too short)", path.display()))?;
    if &h[..4] != b"\x7fELF" {
        bail!("{} is not an ELF executable", path.display());
    }
    let machine = u16::from_le_bytes([h[18], h[19]]);
    if h[4] != 2 || h[5] != 1 || machine != 62 {
        bail!(
            "{} is an ELF file, but not for x86-64 (64-bit little-endian, machine 62)",
            path.display()
        );
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().expect("8 bytes"));
    let phentsize = u64::from(u16::from_le_bytes([h[54], h[55]]));
    let phnum = u64::from(u16::from_le_bytes([h[56], h[57]]));
    if phentsize < 56 {
        bail!(
            "{}: ELF program header entries are too small",
            path.display()
        );
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        f.seek(SeekFrom::Start(phoff + i * phentsize))
            .and_then(|_| f.read_exact(&mut ph))
            .with_context(|| format!("{}: reading ELF program headers", path.display()))?;
        if u32::from_le_bytes(ph[..4].try_into().expect("4 bytes")) != 3 {
            continue;
        }
        let off = u64::from_le_bytes(ph[8..16].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(ph[32..40].try_into().expect("8 bytes"));
        if size == 0 || size > 4096 {
            bail!("{}: ELF interpreter name of {size} bytes", path.display());
        }
        let mut name = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off))
            .and_then(|_| f.read_exact(&mut name))
            .with_context(|| format!("{}: reading the ELF interpreter", path.display()))?;
        let name = String::from_utf8(name.split(|&b| b == 0).next().unwrap_or(&[]).to_vec())
            .map_err(|_| anyhow!("{}: ELF interpreter name is not UTF-8", path.display()))?;
        if !name.starts_with('/') {
            bail!(
                "{}: ELF interpreter {name:?} is not absolute",
                path.display()
            );
        }
        return Ok(Some(name));
    }
    Ok(None)
}

/// Write the initramfs to `out` (through a temporary name); returns its size.
fn write_initrd(
    input: &TemplateInput,
    modules: &ModuleFiles,
    runner_files: &[(String, PathBuf)],
    programs: &ProgramFiles,
    compression: Compression,
    out: &Path,
) -> Result<u64> {
    let mut b = CpioBuilder::new(input.epoch);
    b.add_file("init", Source::from(INIT.as_bytes()), 0o755)?;
    b.add_file("bin/busybox", Source::path(BUSYBOX), 0o755)?;
    for applet in APPLETS {
        b.add_symlink(&format!("bin/{applet}"), "busybox")?;
    }
    for dir in ["dev", "proc", "sys", "tmp", "run", "medium"] {
        b.add_dir(dir, 0o755)?;
    }
    for (path, host) in runner_files {
        b.add_file(path, Source::path(host), 0o755)?;
    }
    for (path, (host, mode)) in &programs.files {
        // The runner's libraries are the programs' too (libc, the dynamic loader).
        if !runner_files.iter().any(|(p, _)| p == path) {
            b.add_file(path, Source::path(host), *mode)?;
        }
    }
    for (path, target) in &programs.links {
        b.add_symlink(path, target)?;
    }
    // e2fsprogs and ntfs-3g look at /etc/mtab for what is mounted, as Debian links it.
    b.add_symlink("etc/mtab", "../proc/self/mounts")?;
    for (path, bytes) in &modules.files {
        b.add_file(path, Source::bytes(bytes.clone()), 0o644)?;
    }
    for (path, host) in &modules.firmware {
        b.add_file(path, Source::path(host), 0o644)?;
    }
    b.add_file(
        MODULE_LIST_PATH,
        Source::from(modules.list.clone().into_bytes()),
        0o644,
    )?;

    let tmp = out.with_extension("img.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let file = b
        .write(file, compression)
        .with_context(|| format!("writing the initramfs {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    let size = file.metadata()?.len();
    drop(file);
    tsforge_runtime::sys::rename_durable(&tmp, out)?;
    Ok(size)
}

/// Build the FAT image `out` holding `files` (path in the image, content), every time set to
/// `epoch`. `staging` is a scratch folder (replaced).
fn write_efi_image(staging: &Path, out: &Path, files: &[(&str, Source)], epoch: i64) -> Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(epoch).map_err(|_| {
            anyhow!("timestamp {epoch} is before 1970; set SOURCE_DATE_EPOCH to a later time")
        })?);
    let mut total = 0u64;
    let mut dirs = BTreeSet::new();
    for (path, source) in files {
        let dest = staging.join(path);
        let parent = dest
            .parent()
            .expect("a file in the staging folder has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(staging.join(d));
            p = d.parent();
        }
        let mut r = source
            .open()
            .with_context(|| format!("{path}: opening {}", source.describe()))?;
        let mut w =
            std::fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        total += std::io::copy(&mut r, &mut w)
            .with_context(|| format!("copying {} to {}", source.describe(), dest.display()))?;
        w.set_modified(mtime)
            .with_context(|| format!("setting the time of {}", dest.display()))?;
    }
    // Deepest first, so setting a folder's time is not undone by work inside it.
    for d in dirs.iter().rev().chain([&staging.to_path_buf()]) {
        std::fs::File::open(d)
            .and_then(|f| f.set_modified(mtime))
            .with_context(|| format!("setting the time of {}", d.display()))?;
    }

    // Room for the files, their last clusters and the FAT: 1/8 more plus 2 MiB, whole MiB,
    // at least 4 MiB (FAT16 needs 3).
    const MIB: u64 = 1 << 20;
    let size = ((total + total / 8 + 2 * MIB).div_ceil(MIB) * MIB).max(4 * MIB);
    let tmp = out.with_extension("img.tmp");
    if tmp.exists() {
        std::fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let disk = Disk::create_image(&tmp, size)?;
    fatbuild::build(disk.whole()?, staging, EFI_LABEL, None)
        .with_context(|| format!("building the EFI image {}", tmp.display()))?;
    drop(disk);
    set_fat_identity(&tmp, epoch)?;
    tsforge_runtime::sys::rename_durable(&tmp, out)?;
    std::fs::remove_dir_all(staging).with_context(|| format!("removing {}", staging.display()))?;
    Ok(())
}

/// Set the volume serial number (boot sector, and FAT32's backup) and the volume label's time
/// of the FAT image `path` from `epoch` (the FAT code takes both from `SOURCE_DATE_EPOCH` or
/// makes them up). Offsets from Microsoft's FAT specification: `BS_VolID` at 39 (FAT16) or 67
/// (FAT32); `BPB_BkBootSec` at 50; the label is the root directory's first entry.
fn set_fat_identity(path: &Path, epoch: i64) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut bs = [0u8; 512];
    f.read_exact(&mut bs)
        .with_context(|| format!("reading the boot sector of {}", path.display()))?;
    let le16 = |at: usize| u64::from(u16::from_le_bytes([bs[at], bs[at + 1]]));
    let le32 = |at: usize| u64::from(u32::from_le_bytes(bs[at..at + 4].try_into().expect("4")));
    let bps = le16(11);
    let fat32 = le16(22) == 0;
    let fat_size = if fat32 { le32(36) } else { le16(22) };
    let data = le16(14) + u64::from(bs[16]) * fat_size;
    let (id_at, root) = if fat32 {
        (
            67,
            (data + le32(44).saturating_sub(2) * u64::from(bs[13])) * bps,
        )
    } else {
        (39, data * bps)
    };
    let label = fat::label_bytes(EFI_LABEL)?;
    let mut h: u32 = 0x811c_9dc5; // FNV-1a over label and time, as the FAT code does
    for b in label.iter().chain(epoch.to_le_bytes().iter()) {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    let mut sectors = vec![0];
    if fat32 {
        sectors.push(le16(50));
    }
    for s in sectors {
        write_at(&mut f, path, s * bps + id_at, &h.to_le_bytes())?;
    }
    let (date, time) = fat::dos_date_time(epoch);
    let mut entry = [0u8; 32];
    f.seek(SeekFrom::Start(root))
        .and_then(|_| f.read_exact(&mut entry))
        .with_context(|| format!("reading the root directory of {}", path.display()))?;
    if entry[..11] != label || entry[11] != 0x08 {
        bail!(
            "{}: the first root directory entry is not the volume label",
            path.display()
        );
    }
    write_at(&mut f, path, root + 22, &time.to_le_bytes())?;
    write_at(&mut f, path, root + 24, &date.to_le_bytes())?;
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn write_at(f: &mut std::fs::File, path: &Path, at: u64, bytes: &[u8]) -> Result<()> {
    f.seek(SeekFrom::Start(at))
        .and_then(|_| f.write_all(bytes))
        .with_context(|| format!("writing {} at byte {at}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("6.10.0-1-amd64", "6.9.0-3-amd64"), Greater);
        assert_eq!(version_cmp("6.1.0-28-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(version_cmp("6.1.0", "6.1.0"), Equal);
        assert_eq!(version_cmp("6.1", "6.1.0"), Less);
    }

    #[test]
    fn module_names_and_paths() {
        assert_eq!(
            module_name("kernel/drivers/usb/storage/usb-storage.ko.xz"),
            "usb_storage"
        );
        assert_eq!(module_name("kernel/fs/fat/vfat.ko"), "vfat");
        assert_eq!(plain_module_path("a/b.ko.zst"), "a/b.ko");
        assert_eq!(plain_module_path("a/b.ko"), "a/b.ko");
    }

    #[test]
    fn resolves_dependencies_first_and_skips_builtin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("modules.dep"),
            "k/vfat.ko: k/fat.ko\nk/fat.ko:\nk/sd_mod.ko: k/scsi_mod.ko k/scsi_common.ko\n\
             k/scsi_mod.ko: k/scsi_common.ko\nk/scsi_common.ko:\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("modules.builtin"), "k/isofs.ko\n").unwrap();
        let m = resolve_modules(dir.path(), &["vfat", "sd_mod", "isofs", "nope"]).unwrap();
        assert_eq!(
            m.load,
            [
                "k/fat.ko",
                "k/vfat.ko",
                "k/scsi_common.ko",
                "k/scsi_mod.ko",
                "k/sd_mod.ko"
            ]
        );
        assert_eq!(m.builtin, ["isofs"]);
        assert_eq!(m.missing, ["nope"]);

        std::fs::write(
            dir.path().join("modules.dep"),
            "k/a.ko: k/b.ko\nk/b.ko: k/a.ko\n",
        )
        .unwrap();
        let e = resolve_modules(dir.path(), &["a"]).unwrap_err().to_string();
        assert!(e.contains("cycle"), "{e}");
    }
}
