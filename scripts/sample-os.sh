#!/usr/bin/env bash
# The sample OS of the README's first command: a small Linux that boots on its own from the
# disk tsforge deploys it to, made from the build machine's Debian packages in a few seconds
# (no download). It is what an OS image must be for tsforge to make it bootable and hand the
# run over to it (docs/engine.md, "Hand-over"):
#
#   /boot/vmlinuz-<v>        the build machine's newest kernel that has /lib/modules/<v>
#                            (the linux media template's rule, media-templates/linux/template.toml)
#   /boot/initrd.img-<v>     a busybox initramfs (cpio newc, gzip): loads the disk and ext4
#                            modules, waits for root=UUID=… (findfs), mounts it, switch_root
#   /usr/lib/systemd/boot/efi/systemd-bootx64.efi   its own boot loader (systemd-boot-efi)
#   /bin/busybox + links     busybox-static: the shell, init and tools
#   /lib*/…                  the glibc runtime the dynamically linked tsforge runner needs
#                            (the hand-over copies the runner into the OS)
#   /etc/os-release          ID=tsforge-sample: what Apply Operating System Image detects
#   /etc/inittab, rcS        busybox init; rcS prints "tsforge sample OS <name>: booted from
#                            <root device> (its own disk)" on every console, then brings up
#                            every network interface with DHCP (busybox udhcpc,
#                            /etc/udhcpc.script; virtio_net, e1000, e1000e in the initramfs)
#
#   scripts/sample-os.sh          build it unless it is cached; print its path
#   scripts/sample-os.sh OUT      the same, and make OUT a symbolic link to it
#   scripts/sample-os.sh --path   print the path it has (or would have); build nothing
#
# The tree is cached under target/sample-os/, keyed by this script and the versions of what
# goes in (kernel, busybox, systemd-boot, glibc), so only the first call builds it (a few
# seconds). Needs root (device-independent, but files owned by root as on a real OS), and the
# packages busybox-static, systemd-boot-efi, cpio, kmod (scripts/setup.sh installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
VERSION=1
BUSYBOX=/bin/busybox
SYSTEMD_BOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
# The modules that reach an ext4 root on virtio, AHCI/SATA, NVMe and USB disks, with what they
# need (modprobe --show-depends resolves the rest). A module built into the kernel is skipped.
MODULES="virtio_pci virtio_blk virtio_scsi ahci ata_piix nvme sd_mod usb_storage uas \
xhci_pci ehci_pci ohci_pci uhci_hcd crc32c_generic ext4 \
virtio_net e1000 e1000e"

die() { echo "sample-os.sh: $*" >&2; exit 1; }
case "${1:-}" in
--path | "") ;;
-*) die "unknown option $1 (usage: sample-os.sh [OUT] | --path)" ;;
esac

# The newest kernel with its modules (version order, as sort -V).
kver=
for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V -r); do
    if [ -f "/lib/modules/$k/modules.dep" ]; then kver=$k; break; fi
done
[ -n "$kver" ] || die "no /boot/vmlinuz-<version> with /lib/modules/<version>/modules.dep (apt-get install linux-image-amd64)"

target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || true
target_dir=${target_dir:-$root/target}
versions=$(dpkg-query -W -f '${Package} ${Version}\n' busybox-static systemd-boot-efi libc6 libgcc-s1 2>/dev/null || true)
key=$( { echo "$VERSION $kver"; echo "$versions"; sha256sum "$0" | cut -c1-64; } | sha256sum | cut -c1-12)
tree="$target_dir/sample-os/tree-$key"

link_out() {
    [ -n "${1:-}" ] || return 0
    if [ -e "$1" ] && [ ! -L "$1" ]; then
        die "$1 exists and is not a symbolic link this script made; remove it or name another OUT"
    fi
    ln -sfn "$tree" "$1"
}

if [ "${1:-}" = --path ]; then
    echo "$tree"
    exit 0
fi
if [ -d "$tree" ]; then
    link_out "${1:-}"
    echo "$tree"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "needs root (the OS's files are owned by root)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX is missing (apt-get install busybox-static)"
"$BUSYBOX" --list >/dev/null 2>&1 || die "$BUSYBOX is not busybox (apt-get install busybox-static)"
case "$(ldd "$BUSYBOX" 2>&1 || true)" in
*"not a dynamic executable"*) ;;
*) die "$BUSYBOX is not static (apt-get install busybox-static)" ;;
esac
[ -f "$SYSTEMD_BOOT" ] || die "$SYSTEMD_BOOT is missing (apt-get install systemd-boot-efi)"
for t in cpio gzip modprobe ldd; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/setup.sh installs it)"
done

mkdir -p "$target_dir/sample-os"
partial="$tree.partial"
rm -rf "$partial"
trap 'rm -rf "$partial"' EXIT
mkdir -p "$partial"
cd "$partial"

# --- The root file system -------------------------------------------------------------------
mkdir -p bin sbin usr/bin usr/sbin etc/init.d boot dev proc sys run tmp root var/log \
    usr/lib/systemd/boot/efi
chmod 1777 tmp
chmod 0700 root
install -m 0755 "$BUSYBOX" bin/busybox
# Applet links where busybox puts them (--list-full: bin/sh, sbin/init, usr/bin/env, …).
for a in $(bin/busybox --list-full); do
    [ -e "$a" ] || [ -L "$a" ] || ln -s /bin/busybox "$a"
done
# The glibc runtime: what ldd lists for each tsforge runner built here, and the usual set.
libs="/lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libm.so.6 \
/lib/x86_64-linux-gnu/libgcc_s.so.1"
for exe in "$target_dir/debug/tsforge" "$target_dir/release/tsforge"; do
    [ -x "$exe" ] || continue
    libs="$libs $(ldd "$exe" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p')"
done
for l in $(printf '%s\n' $libs | sort -u); do
    [ -e "$l" ] || die "$l (a library the runner needs) is missing on this machine"
    mkdir -p ".$(dirname "$l")"
    cp -L "$l" ".$l"
done
cp "$SYSTEMD_BOOT" "usr/lib/systemd/boot/efi/systemd-bootx64.efi"

cat >etc/os-release <<'EOF'
NAME="tsforge sample OS"
ID=tsforge-sample
VERSION_ID=1
PRETTY_NAME="tsforge sample OS 1"
HOME_URL="https://github.com/tsforge/tsforge"
EOF
printf 'root:x:0:0:root:/root:/bin/sh\n' >etc/passwd
printf 'root:x:0:\n' >etc/group
printf 'sample\n' >etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tsample\n' >etc/hosts
printf '/dev/root\t/\text4\terrors=remount-ro\t0 1\n' >etc/fstab
printf '/bin/sh\n' >etc/shells
# busybox init (busybox's examples/inittab: id = tty, empty for the console; runlevels unused).
cat >etc/inittab <<'EOF'
::sysinit:/etc/init.d/rcS
::askfirst:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
::restart:/sbin/init
EOF
cat >etc/init.d/rcS <<'EOF'
#!/bin/sh
# tsforge sample OS: the system's start (busybox init's sysinit).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -o remount,rw /
[ -s /etc/hostname ] && hostname -F /etc/hostname
ip link set lo up 2>/dev/null
# Every console the kernel writes to (console=ttyS0 console=tty0: /dev/console is tty0 only).
say() {
    consoles=$(cat /sys/class/tty/console/active 2>/dev/null)
    [ -n "$consoles" ] || consoles=console
    for c in $consoles; do echo "$*" >"/dev/$c" 2>/dev/null; done
}
rootdev=$(awk '$2 == "/" && $1 != "rootfs" { d = $1 } END { print d }' /proc/mounts)
say "tsforge sample OS $(hostname): booted from $rootdev (its own disk)"
# The network (a deployed OS's runner reports to a monitor, docs/monitor.md): DHCP on every
# interface but lo, three tries a second apart, then on without it.
for entry in /sys/class/net/*; do
    ifname=${entry##*/}
    [ "$ifname" != lo ] && [ -e "$entry" ] || continue
    ip link set "$ifname" up 2>/dev/null
    if udhcpc -i "$ifname" -s /etc/udhcpc.script -t 3 -T 1 -A 1 -n -q >/dev/null 2>&1; then
        say "tsforge sample OS $(hostname): $ifname $(ip -4 -o addr show dev "$ifname" | sed -n 's/.* inet \([^ ]*\).*/\1/p')"
    else
        say "tsforge sample OS $(hostname): $ifname: no DHCP answer"
    fi
done
EOF
chmod 0755 etc/init.d/rcS
# udhcpc's script (busybox udhcpc runs it with the lease in its environment).
cat >etc/udhcpc.script <<'EOF'
#!/bin/sh
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface"
    : >/etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
    ;;
esac
EOF
chmod 0755 etc/udhcpc.script

# --- The initramfs ---------------------------------------------------------------------------
cp "/boot/vmlinuz-$kver" "boot/vmlinuz-$kver"
ird=$(mktemp -d)
trap 'rm -rf "$partial" "$ird"' EXIT
mkdir -p "$ird/bin" "$ird/dev" "$ird/proc" "$ird/sys" "$ird/root" "$ird/lib/modules"
install -m 0755 "$BUSYBOX" "$ird/bin/busybox"
for a in sh mount umount switch_root findfs insmod sleep cat echo mkdir poweroff ls; do
    ln -s busybox "$ird/bin/$a"
done
: >"$ird/lib/modules/order"
for m in $MODULES; do
    deps=$(modprobe -S "$kver" --show-depends "$m" 2>/dev/null) ||
        die "module $m of kernel $kver: modprobe -S $kver --show-depends $m failed"
    for ko in $(printf '%s\n' "$deps" | sed -n 's/^insmod \([^ ]*\).*/\1/p'); do
        name=$(basename "$ko")
        name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
        grep -qx "$name" "$ird/lib/modules/order" && continue
        case "$ko" in
        *.xz) xz -dc "$ko" >"$ird/lib/modules/$name" ;;
        *.zst) zstd -qdc "$ko" >"$ird/lib/modules/$name" ;;
        *.gz) gzip -dc "$ko" >"$ird/lib/modules/$name" ;;
        *) cp "$ko" "$ird/lib/modules/$name" ;;
        esac
        echo "$name" >>"$ird/lib/modules/order"
    done
done
cat >"$ird/init" <<'EOF'
#!/bin/sh
# tsforge sample OS initramfs: load the disk and ext4 modules, find root=UUID=… (or a device),
# mount it and hand over to its /sbin/init.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() {
    consoles=$(cat /sys/class/tty/console/active 2>/dev/null)
    [ -n "$consoles" ] || consoles=console
    for c in $consoles; do echo "tsforge sample OS initramfs: $*" >"/dev/$c" 2>/dev/null; done
}
for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m" 2>/dev/null
done
root=
mode=ro
for o in $(cat /proc/cmdline); do
    case "$o" in
    root=*) root=${o#root=} ;;
    rw) mode=rw ;;
    esac
done
[ -n "$root" ] || { say "no root= on the kernel command line; powering off"; sleep 10; poweroff -f; }
dev=
n=0
while [ "$n" -lt 300 ]; do
    case "$root" in
    /dev/*) [ -b "$root" ] && dev=$root ;;
    *) dev=$(findfs "$root" 2>/dev/null) ;;
    esac
    [ -n "$dev" ] && break
    sleep 0.1
    n=$((n + 1))
done
if [ -z "$dev" ]; then
    say "root $root not found after 30 s (block devices: $(ls /sys/class/block)); powering off"
    sleep 10
    poweroff -f
fi
if ! mount -t ext4 -o "$mode" "$dev" /root; then
    say "mounting $dev ($root) as ext4 failed; powering off"
    sleep 10
    poweroff -f
fi
umount /proc /sys
mount --move /dev /root/dev 2>/dev/null || umount /dev
exec switch_root /root /sbin/init
EOF
chmod 0755 "$ird/init"
(cd "$ird" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner 0:0 --reproducible) |
    gzip -n -9 >"boot/initrd.img-$kver"
rm -rf "$ird"
cd /
# Only a complete tree ever has the final name.
mv "$partial" "$tree"
trap - EXIT
# Trees of earlier keys (another kernel, an older script) are not used again.
for old in "$target_dir"/sample-os/tree-*; do
    [ "$old" = "$tree" ] || rm -rf "$old"
done
link_out "${1:-}"
echo "$tree"
