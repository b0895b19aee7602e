//! Media templates: what a boot environment needs on the medium and how it boots.
//! `winpe` (Windows PE from an ADK `copype` folder or ISO) and `linux` (a Debian kernel, an
//! initramfs the builder makes, systemd-boot and syslinux). Each turns its sources into a
//! [`Prepared`]: the medium's files and a [`BootSpec`] the output writers follow.

pub mod inf;
pub mod kmod;
pub mod linux;
pub mod secureboot;

use crate::source::Source;
use crate::tree::MediaTree;
use std::path::PathBuf;

pub mod winpe;

/// What a template is given.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput {
    /// `--source`: a folder or an ISO (the template's own default when `None`).
    pub source: Option<PathBuf>,
    /// The runner for this boot environment (`tsforge.exe` for WinPE, a Linux x86-64 binary
    /// for linux), from `--runner` or found by the builder.
    pub runner: PathBuf,
    /// A scratch folder the template may write into (kept until the output is written).
    pub work: PathBuf,
    /// Timestamp for everything generated (`SOURCE_DATE_EPOCH`, else now).
    pub epoch: i64,
    /// linux: kernel modules a custom template's `modules = [...]` adds (names).
    pub modules: Vec<String>,
    /// `--driver`: linux: out-of-tree `.ko` files or folders of them; winpe: driver folders
    /// (INF files and the files they name).
    pub drivers: Vec<PathBuf>,
}

/// A template's result.
#[derive(Clone, Default)]
pub struct Prepared {
    /// The boot environment's files on the medium (the media core adds `tsforge/`).
    pub tree: MediaTree,
    pub boot: BootSpec,
    /// Lines for the build summary ("kernel 6.1.0-28-amd64, 14 modules", …).
    pub summary: Vec<String>,
}

/// How the medium boots; paths are paths in the [`MediaTree`].
#[derive(Debug, Clone, Default)]
pub struct BootSpec {
    /// ISO, BIOS: the El Torito no-emulation boot image.
    pub iso_bios: Option<IsoBios>,
    /// ISO, UEFI: the EFI System Partition image (WinPE's `efisys.bin`; for linux one the
    /// template makes, holding `EFI/BOOT/BOOTX64.EFI` and what it loads).
    pub iso_uefi_image: Option<String>,
    /// ISO: boot code for the first 440 bytes of an isohybrid image (syslinux `isohdpfx.bin`).
    pub iso_hybrid_mbr: Option<PathBuf>,
    /// USB (FAT), BIOS: how the partition is made bootable.
    pub usb_bios: Option<UsbBios>,
    /// USB, UEFI: firmware loads `EFI/BOOT/BOOTX64.EFI` from the FAT partition: nothing to do
    /// beyond the file being in the tree. True when the tree has it.
    pub uefi_removable_path: bool,
    /// PXE: what the network boot loads.
    pub pxe: Option<PxeBoot>,
}

#[derive(Debug, Clone)]
pub struct IsoBios {
    /// Path in the tree (`Boot/etfsboot.com`, `isolinux/isolinux.bin`).
    pub image: String,
    /// isolinux needs its boot-info table patched and is loaded whole; etfsboot is 4 sectors.
    pub isolinux: bool,
}

#[derive(Debug, Clone)]
pub enum UsbBios {
    /// `syslinux --install --offset` into the FAT partition, with `mbr` (syslinux's `mbr.bin`
    /// or `gptmbr.bin`) in the first 440 bytes of the disk. `config_dir` is the folder of
    /// `syslinux.cfg` in the tree (syslinux's `--directory`).
    Syslinux {
        syslinux: PathBuf,
        mbr: PathBuf,
        gptmbr: PathBuf,
        config_dir: String,
    },
    /// No BIOS boot from USB (WinPE: needs Microsoft's `bootsect /nt60` boot code).
    None { why: String },
}

#[derive(Debug, Clone)]
pub enum PxeBoot {
    /// iPXE: `kernel` + `initrd` + command line; with `uefi`, UEFI clients boot the same
    /// kernel, initrd and command line through a signed chain instead.
    Linux {
        kernel: String,
        initrd: String,
        cmdline: String,
        uefi: Option<PxeUefi>,
    },
    /// wimboot: `bootmgr`, `BCD`, `boot.sdi`, `boot.wim` (paths in the tree).
    WinPe {
        bootmgr: String,
        bcd: String,
        boot_sdi: String,
        boot_wim: String,
    },
}

/// UEFI network boot through Debian's signed chain (see [`secureboot`]): the firmware's PXE
/// loads shim, shim the network GRUB, GRUB the kernel. The PXE writer puts them at the root
/// as [`secureboot::PXE_LOADER`], [`secureboot::PXE_GRUB`], [`secureboot::PXE_MOK_MANAGER`],
/// with GRUB's configuration at [`secureboot::PXE_GRUB_CFG`].
#[derive(Debug, Clone)]
pub struct PxeUefi {
    /// shim (a path in the tree).
    pub shim: String,
    /// shim's MOK manager (a path in the tree).
    pub mok_manager: String,
    /// GRUB for network boot: a file of the build machine (not on disk media, which carry
    /// the disk GRUB).
    pub grub_net: Source,
}
