#!/usr/bin/env bash
# Seeds for the partition_table fuzz target: the first sectors of a GPT and an MBR disk made
# by sgdisk/sfdisk (first byte: image size selector, see the target), and a 64 KiB FAT12
# volume with a file and a directory (first byte ≥ 128: FAT mode). Needs gdisk, fdisk,
# dosfstools, mtools.
set -euo pipefail
out=$(dirname "$0")/partition_table
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
truncate -s 4M "$t/gpt.img"
sgdisk -q -n 1:2048:4095 -t 1:ef00 -c 1:EFI -n 2:4096:0 -t 2:0700 "$t/gpt.img"
{ printf '\x40'; head -c 17408 "$t/gpt.img"; } >"$out/gpt.bin"
truncate -s 4M "$t/mbr.img"
printf 'start=2048, size=2048, type=e, bootable\nstart=4096, type=c\n' | sfdisk -q "$t/mbr.img"
{ printf '\x40'; head -c 512 "$t/mbr.img"; } >"$out/mbr.bin"
mkfs.fat -C "$t/fat.img" 64 >/dev/null
echo hello >"$t/hello.txt"
MTOOLS_SKIP_CHECK=1 mmd -i "$t/fat.img" ::/dir
MTOOLS_SKIP_CHECK=1 mcopy -i "$t/fat.img" "$t/hello.txt" ::/dir/hello.txt
MTOOLS_SKIP_CHECK=1 mcopy -i "$t/fat.img" "$t/hello.txt" ::/hello.txt
{ printf '\x80'; cat "$t/fat.img"; } >"$out/fat12.bin"
