#!/usr/bin/env bash
# Seeds for the fat_volume fuzz target: the metadata end of a FAT16 (8 MiB) and a FAT32
# (36 MiB) volume made by mkfs.fat, each holding a folder and files with long names (mtools).
# The target extends an input to the size its boot sector claims. Needs dosfstools, mtools.
set -euo pipefail
out=$(dirname "$0")/fat_volume
mkdir -p "$out"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
export MTOOLS_SKIP_CHECK=1
echo hello >"$t/hello.txt"
make() { # make NAME KIB FAT-BITS KEEP-BYTES
    mkfs.fat -F "$3" -s 1 -C "$t/$1.img" "$2" >/dev/null
    mmd -i "$t/$1.img" "::/A folder"
    mcopy -i "$t/$1.img" "$t/hello.txt" "::/A folder/hello world.txt"
    mcopy -i "$t/$1.img" "$t/hello.txt" ::/README.TXT
    # Keep the boot sector, the FATs, the root and the first clusters (the rest is zeros).
    head -c "$4" "$t/$1.img" >"$out/$1.bin"
}
make fat16 8192 16 $((96 * 1024))
make fat32 36864 32 $((640 * 1024))
