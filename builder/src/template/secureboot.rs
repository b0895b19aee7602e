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

use crate::source::Source;

/// Debian's shim, signed by Microsoft (package `shim-signed`).
pub const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
/// shim's MOK manager, signed by Debian (package `shim-helpers-amd64-signed`, a dependency of
/// `shim-signed`).
pub const MOK_MANAGER: &str = "/usr/lib/shim/mmx64.efi.signed";
/// Debian's signed GRUB for disks (package `grub-efi-amd64-signed`).
pub const GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";

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
];

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
