#!/usr/bin/env bash
# Seeds for the partition_table fuzz target: the first sectors of a GPT and an MBR disk made
# by sgdisk/sfdisk (first byte: image size selector, see the target), a 64 KiB FAT12 volume
# with a file and a directory (first byte ≥ 128: FAT mode), and GPT seeds whose mirrored end
# holds a valid backup (entries and header where a 4 MiB disk keeps them), intact and with the
# header fields that once panicked the gpt crate (entry size 0 and 2^30, 2^32-1 entries). The
# target recomputes the GPT CRCs, so patched seeds need no valid CRC. Needs gdisk, fdisk,
# dosfstools, mtools.
set -euo pipefail
out=$(dirname "$0")/partition_table
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
truncate -s 4M "$t/gpt.img"
# -o: a new GPT (with -q and no -o, sgdisk 1.0.9 writes nothing to a blank image).
sgdisk -o -n 1:2048:4095 -t 1:ef00 -c 1:EFI -n 2:4096:0 -t 2:0700 "$t/gpt.img" >/dev/null
sgdisk -v "$t/gpt.img" | grep -q 'No problems found'
{ printf '\x40'; head -c 17408 "$t/gpt.img"; } >"$out/gpt.bin"
# 0x40: a 4 MiB image. Sectors 0..33 (protective MBR, primary header, entries) and then the
# backup header: mirrored at the end, sectors 2..33 land where the backup entries belong and
# the last one on the last sector.
{ printf '\x40'; head -c 17408 "$t/gpt.img"; tail -c 512 "$t/gpt.img"; } >"$out/gpt-both.bin"
patch() { # patch NAME OFFSET-IN-HEADER HEX-BYTES: the same field in both headers
    cp "$out/gpt-both.bin" "$out/$1.bin"
    for header in 513 17409; do # 1 + sector 1, 1 + sector 34 (the backup header)
        printf "$3" | dd of="$out/$1.bin" bs=1 seek=$((header + $2)) conv=notrunc status=none
    done
}
patch gpt-entry-size-0 84 '\x00\x00\x00\x00'
patch gpt-entry-size-2p30 84 '\x00\x00\x00\x40'
patch gpt-entries-max 80 '\xff\xff\xff\xff'
truncate -s 4M "$t/mbr.img"
printf 'start=2048, size=2048, type=e, bootable\nstart=4096, type=c\n' | sfdisk -q "$t/mbr.img"
{ printf '\x40'; head -c 512 "$t/mbr.img"; } >"$out/mbr.bin"
mkfs.fat -C "$t/fat.img" 64 >/dev/null
echo hello >"$t/hello.txt"
MTOOLS_SKIP_CHECK=1 mmd -i "$t/fat.img" ::/dir
MTOOLS_SKIP_CHECK=1 mcopy -i "$t/fat.img" "$t/hello.txt" ::/dir/hello.txt
MTOOLS_SKIP_CHECK=1 mcopy -i "$t/fat.img" "$t/hello.txt" ::/hello.txt
{ printf '\x80'; cat "$t/fat.img"; } >"$out/fat12.bin"
