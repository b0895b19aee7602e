//! The UEFI boot loader of linux media: Debian's signed chain, so that firmware with Secure
//! Boot on (most PCs, with Microsoft's keys) starts the medium.
//!
//! The chain: the firmware starts `EFI/BOOT/BOOTX64.EFI`, Debian's shim (`shim-signed`,
//! `shimx64.efi.signed`, signed by Microsoft's UEFI CA 2011, the CA that PCs trust for
//! third-party loaders); shim starts `grubx64.efi` from its own folder (the name it looks
//! for), Debian's signed GRUB (`grub-efi-amd64-signed`, checked by shim against the Debian
//! Secure Boot CA it carries); GRUB's `linux` command has shim check the kernel (Debian's
//! `linux-image-amd64` is signed by the same CA). `EFI/BOOT/mmx64.efi` is shim's MOK manager,
//! which shim starts when a key enrolment is pending or a check fails.
//!
//! Where GRUB reads its configuration: Debian's signed `grubx64.efi` is a monolithic image
//! built with the prefix `/EFI/debian` (on the partition it was started from) and an
//! embedded configuration that sources `$prefix/grub.cfg` when that folder exists (read from
//! the image itself: `/EFI/debian` and `(memdisk)/grub.cfg` are its only prefix strings). So
//! [`GRUB_CFG_PATH`] is `EFI/debian/grub.cfg`; were it missing, the embedded configuration
//! would search any disk for `/.disk/info` and could take another medium's configuration.
//! GRUB's `root` is the partition of its prefix, so the kernel and initramfs paths are
//! those of the same partition: the USB image's FAT partition, or the ISO's `efi.img`.
//!
//! One loader for both Secure Boot on and off: shim starts GRUB without checks when Secure
//! Boot is off, so one chain boots everywhere, is tested once, and turning Secure Boot on or
//! off in the firmware changes nothing on the medium. systemd-boot (unsigned) is no longer
//! on linux media.
//!
//! Network boot (the PXE root, `output::pxe`): the firmware's own UEFI PXE loads shim as the
//! DHCP boot file ([`PXE_LOADER`], `bootx64.efi` at the TFTP root); shim, started from the
//! network, fetches `grubx64.efi` by TFTP from the same server and folder as itself (shim's
//! netboot: the boot file's folder, the name it always starts); there that is Debian's signed
//! GRUB *for network boot*, `grubnetx64.efi.signed` ([`GRUB_NET`], same package and CA as the
//! disk GRUB). Its prefix, read from the image (the module list's prefix object is `/grub`, the
//! embedded configuration `normal (memdisk)/grub.cfg`, whose memdisk configuration sources
//! `$prefix/x86_64-efi/grub.cfg`, else `$prefix/grub.cfg`) and measured by booting it under
//! OVMF (`$prefix` is `(tftp,10.0.2.2)/grub`: the TFTP server that served shim, from the root
//! of that server, whatever folder the boot file was in): so the PXE root has
//! [`PXE_GRUB_CFG`], `grub/grub.cfg`, and must be the TFTP server's root. GRUB's `root` is
//! then `(tftp,SERVER)`, and the kernel and initrds are read by TFTP from the same root.

use crate::source::Source;

/// Debian's shim, signed by Microsoft (package `shim-signed`).
pub const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
/// shim's MOK manager, signed by Debian (package `shim-helpers-amd64-signed`, a dependency of
/// `shim-signed`).
pub const MOK_MANAGER: &str = "/usr/lib/shim/mmx64.efi.signed";
/// Debian's signed GRUB for disks (package `grub-efi-amd64-signed`).
pub const GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";

/// Debian's signed GRUB for network boot (package `grub-efi-amd64-signed`): reads its
/// configuration from `(tftp,SERVER)/grub/` (see the module documentation).
pub const GRUB_NET: &str = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed";

/// The firmware's removable-media path (UEFI 2.10 §3.5.1.1): shim.
pub const LOADER_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// Where shim looks for the second stage: beside itself, named `grubx64.efi`.
pub const GRUB_PATH: &str = "EFI/BOOT/grubx64.efi";
/// shim's MOK manager, beside shim.
pub const MOK_MANAGER_PATH: &str = "EFI/BOOT/mmx64.efi";
/// Where Debian's signed GRUB reads its configuration (its prefix `/EFI/debian`).
pub const GRUB_CFG_PATH: &str = "EFI/debian/grub.cfg";

/// The host files and the Debian packages that provide them, for the "missing file" errors.
pub const PACKAGES: &[(&str, &str)] = &[
    (SHIM, "shim-signed"),
    (MOK_MANAGER, "shim-signed"),
    (GRUB, "grub-efi-amd64-signed"),
    (GRUB_NET, "grub-efi-amd64-signed"),
];

/// PXE root: shim, the DHCP boot file of UEFI clients.
pub const PXE_LOADER: &str = "bootx64.efi";
/// PXE root: the network GRUB, where shim fetches it (beside itself, named `grubx64.efi`).
pub const PXE_GRUB: &str = "grubx64.efi";
/// PXE root: shim's MOK manager, beside shim.
pub const PXE_MOK_MANAGER: &str = "mmx64.efi";
/// PXE root: where the network GRUB reads its configuration (its prefix `/grub`).
pub const PXE_GRUB_CFG: &str = "grub/grub.cfg";

/// The network GRUB's configuration: no menu, no wait, one entry booting `kernel` with the
/// `initrds` (in that order, names at the TFTP root) and `cmdline`.
pub fn pxe_grub_cfg(kernel: &str, initrds: &[&str], cmdline: &str) -> String {
    let initrds: Vec<String> = initrds.iter().map(|i| format!("/{i}")).collect();
    format!(
        "# tsforge: started by shim ({PXE_LOADER}) through Debian's signed network GRUB ({PXE_GRUB}),\n\
         # which reads this file as (tftp,SERVER)/{PXE_GRUB_CFG}: this folder is the TFTP root.\n\
         set timeout=0\n\
         set default=0\n\
         menuentry \"tsforge\" {{\n\
         \techo \"tsforge: loading /{kernel} and {initrds} by TFTP\"\n\
         \tlinux /{kernel} {cmdline}\n\
         \tinitrd {initrds}\n\
         }}\n",
        initrds = initrds.join(" ")
    )
}

/// GRUB's configuration: no menu, no wait, one entry booting `kernel` with `initrd` and
/// `cmdline` (paths in the medium, without the leading `/`).
pub fn grub_cfg(kernel: &str, initrd: &str, cmdline: &str) -> String {
    format!(
        "# tsforge: started by shim (EFI/BOOT/BOOTX64.EFI) through Debian's signed GRUB.\n\
         set timeout=0\n\
         set default=0\n\
         menuentry \"tsforge\" {{\n\
         \tlinux /{kernel} {cmdline}\n\
         \tinitrd /{initrd}\n\
         }}\n"
    )
}

/// The loader files of an EFI System partition (the USB image's, or the ISO's `efi.img`).
pub fn esp_files(grub_cfg: &str) -> Vec<(&'static str, Source)> {
    vec![
        (LOADER_PATH, Source::path(SHIM)),
        (GRUB_PATH, Source::path(GRUB)),
        (MOK_MANAGER_PATH, Source::path(MOK_MANAGER)),
        (GRUB_CFG_PATH, Source::from(grub_cfg.as_bytes())),
    ]
}
