#!/usr/bin/env bash
# Applying a tsforge image onto a FAT32 partition of a used disk, and what the check after the
# apply costs (a raw consistency pass over the file system and a read-back of every file's
# sha256), side by side with mtools (`mcopy -s` of the same tree, what an administrator would
# otherwise use) and `cp -a` into a folder (the physical reference: no file system to build).
#
#   bench/fat-apply/run.sh [SIZE_MB]     (default 200; needs mtools, dosfstools, fdisk, python3)
#
# The disk image (1 GiB) is filled with random bytes once; each run partitions it again.
# Every result is checked: fsck.fat -n clean and every file's sha256 equal to the source.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
size_mb=${1:-200}
RUNS=${RUNS:-3}
for t in mcopy mformat fsck.fat sfdisk python3; do
    command -v "$t" >/dev/null || { echo "run.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done
cargo build -q --release --manifest-path "$root/Cargo.toml" -p tsforge
tsforge=${CARGO_TARGET_DIR:-$root/target}/release/tsforge
work=$(mktemp -d "${TMPDIR:-/tmp}/tsforge-bench-fatapply.XXXXXX")
trap 'rm -rf "$work"' EXIT
export MTOOLS_SKIP_CHECK=1 SOURCE_DATE_EPOCH=1700000000
python3 "$root/bench/image/gen-tree.py" "$work/tree" "$size_mb" >/dev/null
(cd "$work/tree" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$work/src.sums"
files=$(wc -l <"$work/src.sums")
"$tsforge" capture "$work/tree" "$work/x.tsimg" --name Bench >/dev/null 2>&1
head -c 1G /dev/urandom >"$work/disk.img"
echo "tree: $files files, $(du -sm --apparent-size "$work/tree" | cut -f1) MiB; 1 GiB used disk; $(nproc) cores; best of $RUNS"

now() { date +%s.%N; }
partition() {
    "$tsforge" disk partition "$work/disk.img" --table mbr \
        --part type=basic,size=rest,fs=fat32 --yes >/dev/null 2>&1
}
start=$((1 << 20))
check_fat() { # fsck.fat -n and every file read back with mcopy
    dd if="$work/disk.img" of="$work/p.img" bs=1M skip=1 status=none
    fsck.fat -n "$work/p.img" >/dev/null || { echo "fsck.fat -n failed after $1" >&2; exit 1; }
    rm -rf "$work/back"
    mkdir "$work/back"
    mcopy -s -n -i "$work/p.img" '::*' "$work/back/"
    (cd "$work/back" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$work/back.sums"
    cmp -s "$work/src.sums" "$work/back.sums" || { echo "$1: files differ from the source" >&2; exit 1; }
    rm -f "$work/p.img"
}
best() { # best NAME PREPARE COMMAND: the fastest of RUNS runs of COMMAND, PREPARE untimed
    local b="" t0 t1 d
    for _ in $(seq "$RUNS"); do
        eval "$2"
        sync
        t0=$(now)
        eval "$3"
        t1=$(now)
        d=$(python3 -c "print($t1 - $t0)")
        b=$(python3 -c "print(min(float('$d'), float('${b:-1e9}')))")
    done
    echo "$b"
}
checked=$(best checked partition '"$tsforge" apply "$work/x.tsimg" "$work/disk.img:1" >/dev/null 2>&1')
check_fat "tsforge apply"
unchecked=$(best unchecked partition 'TSFORGE_BENCH_SKIP_APPLY_CHECK=1 "$tsforge" apply "$work/x.tsimg" "$work/disk.img:1" >/dev/null 2>&1')
mtools=$(best mtools partition 'mformat -F -i "$work/disk.img@@$start" :: && mcopy -s -i "$work/disk.img@@$start" "$work/tree/"* ::/')
check_fat "mcopy -s"
cpa=$(best cp 'rm -rf "$work/cp"' 'cp -a "$work/tree" "$work/cp"')
python3 - "$checked" "$unchecked" "$mtools" "$cpa" <<'PY'
import sys
c, u, m, p = map(float, sys.argv[1:])
print(f"| command | seconds | vs mcopy -s |")
print(f"| --- | --- | --- |")
print(f"| tsforge apply (with the check) | {c:.2f} | {m / c:.2f}x |")
print(f"| tsforge apply, check skipped | {u:.2f} | {m / u:.2f}x |")
print(f"| mformat + mcopy -s | {m:.2f} | 1.00x |")
print(f"| cp -a into a folder | {p:.2f} | {m / p:.2f}x |")
print(f"the check costs {c - u:.2f} s, {100 * (c - u) / u:.0f}% of the unchecked apply")
PY
