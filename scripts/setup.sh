#!/usr/bin/env bash
# Install everything tsforge's build and tests need on a fresh Debian 12 machine. Idempotent:
# running it again installs nothing new. Runs as root, or through sudo otherwise.
#
#   scripts/setup.sh
#
# Needs rustup (the Rust toolchain itself is not installed here).
set -euo pipefail

# Debian packages.
#   mingw-w64        cross-linker for the Windows runner (x86_64-pc-windows-gnu), and the
#                    ProcessPrng shim tests/wine.rs builds
#   wine wine64      runs tsforge.exe in tests/wine.rs (`wine` is the launcher script,
#                    `wine64` the 64-bit loader /usr/lib/wine/wine64 it starts)
#   gdisk dosfstools mtools   partition tables and FAT images for boot media; the disk
#                    tests check our GPT/FAT output with sgdisk, fsck.fat, mdir/mcopy
#   fdisk            fdisk/sfdisk (its own package on Debian 12): the disk tests list tables
#   wimtools         wimlib-imagex: WIM apply/capture/info on Linux (runtime/src/image/wim.rs)
#   ntfs-3g          mkfs.ntfs, and ntfsinfo/ntfsfix that check it in tests (runtime/src/fsformat.rs)
#   e2fsprogs        mkfs.ext4, and e2fsck/dumpe2fs that check it in tests
#   xfsprogs         mkfs.xfs (runtime/src/fsformat.rs), and xfs_repair -n that checks what
#                    apply wrote onto XFS (tests/fs_partitions.rs, as ntfsfix and e2fsck do)
#                    e2fsprogs, xfsprogs, dosfstools (mkfs.fat), ntfs-3g (mkntfs, ntfs-3g) and
#                    wimtools also go into the linux template's initramfs with their libraries
#                    (builder/src/template/linux.rs): building linux media needs all five
#   zstd gzip        compressed raw images (runtime/src/image/raw.rs tests and fixtures)
#   zip unzip        zipinfo / unzip -t check deflate images (runtime/tests/image_roundtrip.rs)
#   xorriso          reads back the ISO images builder/src/iso.rs writes (trees, El Torito
#                    catalog, hybrid MBR) in builder/tests/iso.rs
#   libarchive-tools bsdtar: a second, independent ISO reader in builder/tests/iso.rs
#   cpio             GNU cpio unpacks the initramfs archives of builder/src/cpio.rs in
#                    builder/tests/cpio.rs
#   nginx            serves distribution points to 20 runners at once and over HTTPS
#                    (tests/content_nginx.rs, bench/content/run.sh)
#   openssl          makes the test CA and server certificate for the HTTPS test (and the
#                    monitor's HTTPS test, monitor/tests/tls.rs)
#   chromium chromium-driver   headless Chromium driven through chromedriver (WebDriver):
#                    monitor/tests/page.rs checks the monitor's page as a browser shows it
#   postgresql       initdb/pg_ctl: monitor/tests start a throwaway PostgreSQL cluster on a
#                    temporary folder (monitor/tests/common/pg.rs); the service itself is not used
#   linux-image-amd64 the kernel and modules the linux media template puts on media
#                    (builder/src/template/linux.rs) and builder/tests/linux_template.rs uses
#   binutils         objcopy --strip-debug: the runner goes onto linux media without its debug
#                    information (builder/src/template/linux.rs)
#   busybox-static   the static busybox that is the linux template initramfs' shell and tools
#   systemd-boot-efi systemd-bootx64.efi: the sample OS's loader (scripts/sample-os.sh), and the
#                    unsigned loader the Secure Boot test shows refused (tests/e2e_qemu.rs)
#   shim-signed grub-efi-amd64-signed   the UEFI boot chain of linux media, signed for Secure
#                    Boot: shimx64.efi.signed (Microsoft) as BOOTX64.EFI, mmx64.efi.signed and
#                    grubx64.efi.signed (Debian) (builder/src/template/secureboot.rs)
#   sbsigntool       sbverify --list: builder/tests/linux_template.rs checks the signatures
#   syslinux         the syslinux installer that makes linux USB media boot on BIOS
#   isolinux         isolinux.bin and isohdpfx.bin: BIOS boot of linux ISOs (and isohybrid)
#   syslinux-common  ldlinux.c32 and mbr.bin/gptmbr.bin for syslinux and isolinux
#   mmdebstrap       builds the Debian 12 reference system (scripts/reference-rootfs.sh) that the
#                    OS image tests and bench/image/os.sh capture and apply
#   kmod             modprobe --show-depends: the modules of the sample OS's initramfs
#                    (scripts/sample-os.sh, which also takes the kernel, busybox-static,
#                    systemd-boot-efi and cpio listed here)
#   qemu-system-x86 ovmf ipxe-qemu   `tsforge try` and the end-to-end tests (tests/e2e_qemu.rs):
#                    SeaBIOS, OVMF (UEFI) and the NICs' iPXE ROMs for PXE boots
DEBIAN_PACKAGES=(
    mingw-w64
    wine
    wine64
    gdisk
    dosfstools
    mtools
    wimtools
    ntfs-3g
    e2fsprogs
    xfsprogs
    zstd
    gzip
    zip
    unzip
    fdisk
    nginx
    openssl
    postgresql
    chromium
    chromium-driver
    xorriso
    libarchive-tools
    cpio
    # Image format version 2 tests (tests/image_meta_cli.rs): setfattr/getfattr, setfacl/getfacl
    # to make and compare extended attributes and ACLs, rsync -aHAXc as the independent check.
    attr
    acl
    rsync
    # USB images with BIOS boot (builder output tests): `syslinux --install --offset` and
    # mbr.bin/gptmbr.bin (syslinux-common); isolinux gives isohdpfx.bin for hybrid ISOs.
    syslinux
    syslinux-common
    isolinux
    # The linux media template: kernel + modules, busybox for the initramfs, systemd-boot.
    linux-image-amd64
    binutils
    busybox-static
    systemd-boot-efi
    shim-signed
    grub-efi-amd64-signed
    sbsigntool
    # efibootmgr: the linux template's initramfs carries it (with libefivar, libefiboot) to
    # write the deployed OS's firmware boot entry and BootNext on the target machine.
    efibootmgr
    mmdebstrap
    # The README's sample OS (scripts/sample-os.sh): modprobe resolves its initramfs modules.
    kmod
    # `tsforge try` and the end-to-end tests (tests/e2e_qemu.rs).
    qemu-system-x86
    ovmf
    ipxe-qemu
    # Firmware files for the linux template's drivers (/lib/firmware; the builder takes the
    # ones its modules name). Debian main's free firmware; the non-free ones below are
    # installed only where the apt sources have them (non-free-firmware component).
    firmware-linux-free
)
# Non-free firmware for the drivers of the linux template (Realtek, Broadcom, QLogic NICs and
# HBAs, …): installed when apt can (the sources list non-free-firmware), skipped otherwise;
# nothing depends on them.
OPTIONAL_FIRMWARE_PACKAGES=(
    firmware-realtek
    firmware-misc-nonfree
    firmware-bnx2
    firmware-bnx2x
    firmware-qlogic
)
RUST_TARGETS=(x86_64-pc-windows-gnu)
RUST_COMPONENTS=(clippy rustfmt)

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }
# Run a command silently; on failure show everything it printed, then stop.
quiet() {
    local out
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "failed: $*"
    fi
}

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    die "not root and sudo is not installed; run as root"
fi

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done
say "apt-get update"
quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    # Recommends stay on: Wine was verified with them (libwine recommends GnuTLS, fonts, …).
    quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
    say "Debian packages: all installed"
fi
optional=()
for p in "${OPTIONAL_FIRMWARE_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ] &&
        apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
        optional+=("$p")
    fi
done
if [ "${#optional[@]}" -gt 0 ]; then
    say "apt-get install ${optional[*]} (non-free firmware for linux media)"
    quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${optional[@]}"
fi

command -v rustup >/dev/null 2>&1 || die "rustup not found (install Rust with rustup first)"
installed_targets=$(rustup target list --installed)
for t in "${RUST_TARGETS[@]}"; do
    if ! grep -qx "$t" <<<"$installed_targets"; then
        say "rustup target add $t"
        quiet rustup target add "$t"
    fi
done
installed_components=$(rustup component list --installed)
for c in "${RUST_COMPONENTS[@]}"; do
    if ! grep -q "^$c" <<<"$installed_components"; then
        say "rustup component add $c"
        quiet rustup component add "$c"
    fi
done

# cargo-fuzz: scripts/test.sh runs every fuzz target for a bounded time (fuzz/run.sh).
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    quiet cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# Checks that what the tests call is really there.
for tool in x86_64-w64-mingw32-gcc wine wineserver cargo cargo-fuzz wimlib-imagex xorriso bsdtar cpio \
    mkfs.ext4 e2fsck tune2fs mkfs.xfs xfs_repair mkfs.fat mkntfs ntfs-3g ntfsfix losetup setpriv; do
    # mkfs.* live in /usr/sbin, which a normal user's PATH lacks on Debian (tsforge looks there).
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool is not on PATH after setup"
done
# The Debian 12 reference system under target/reference/ (built once, then cached).
if [ "$(id -u)" -eq 0 ]; then
    say "reference system: $(bash "$(dirname "$0")/reference-rootfs.sh")"
else
    say "reference system: $("${SUDO[@]}" bash "$(dirname "$0")/reference-rootfs.sh")"
fi
# The README's sample OS under target/sample-os/ (built once from this machine's packages).
if [ "$(id -u)" -eq 0 ]; then
    say "sample OS: $(bash "$(dirname "$0")/sample-os.sh")"
else
    say "sample OS: $("${SUDO[@]}" bash "$(dirname "$0")/sample-os.sh")"
fi
say "setup done"
