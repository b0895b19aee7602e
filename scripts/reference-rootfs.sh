#!/usr/bin/env bash
# The Debian 12 reference system: a real operating system's root file system, built with
# mmdebstrap from Debian's archive, that the OS image tests (runtime/tests/image_os.rs) and the
# OS benchmark (bench/image/os.sh) capture and apply. It holds what an OS image must carry:
# absolute symbolic links (systemd's *.wants), setuid programs, file capabilities
# (security.capability on ping), hard links, device nodes in /dev, a kernel and its modules.
#
#   scripts/reference-rootfs.sh            build it unless it is cached; print its path
#   scripts/reference-rootfs.sh --path     print the path it has (or would have); build nothing
#
# The tree is cached under target/reference/, keyed by everything that decides its content
# (suite, variant, package list, this script's version), so CI builds it once (about a minute
# with a good mirror). Debian's archive moves on: a tree built later may hold newer package
# versions; tests compare a tree with its own capture, never with fixed contents.
#
# Needs root (mmdebstrap --mode=root keeps real owners and makes device nodes) and mmdebstrap
# (scripts/setup.sh installs it and calls this script).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

SUITE=bookworm
VARIANT=important
MIRROR=${TSFORGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The kernel and systemd-boot make it a system that can boot (and give the tree its size:
# about 700 MiB and 17,000 paths); openssh-server, iputils-ping, acl and attr bring links,
# capabilities and the tools that read them; dosfstools gives systemd-fsck its fsck.vfat, so
# the EFI system partition (fsck pass 1 in fstab, as Debian's installer writes it) is repaired
# at boot after a power cut, as on an installed UEFI Debian.
PACKAGES=linux-image-amd64,initramfs-tools,systemd-sysv,systemd-boot,openssh-server,iputils-ping,acl,attr,dosfstools
VERSION=1

target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-$root/target}
key=$(printf '%s\n' "$VERSION" "$SUITE" "$VARIANT" "$PACKAGES" | sha256sum | cut -c1-12)
tree="$target_dir/reference/debian12-$key"

if [ "${1:-}" = --path ]; then
    echo "$tree"
    exit 0
fi
if [ -d "$tree" ]; then
    echo "$tree"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "reference-rootfs.sh: needs root (mmdebstrap --mode=root)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "reference-rootfs.sh: mmdebstrap is missing (scripts/setup.sh installs it)" >&2; exit 1; }

mkdir -p "$target_dir/reference"
partial="$tree.partial"
rm -rf "$partial"
if ! mmdebstrap --quiet --mode=root --variant="$VARIANT" --include="$PACKAGES" \
    "$SUITE" "$partial" "$MIRROR" >"$target_dir/reference/mmdebstrap.log" 2>&1; then
    cat "$target_dir/reference/mmdebstrap.log" >&2
    rm -rf "$partial"
    echo "reference-rootfs.sh: mmdebstrap failed (log above)" >&2
    exit 1
fi
# Only a complete tree ever has the final name.
mv "$partial" "$tree"
echo "$tree"
