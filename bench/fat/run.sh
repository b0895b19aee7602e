#!/usr/bin/env bash
# FAT32 benchmark: the same deterministic tree (default ~15,000 files, ~400 MB) put into a
# FAT32 partition of a 1 GiB image, by tsforge (`disk partition` without a file system, then
# `disk build-fat`, which formats and fills in one pass) and by mtools (`mformat` + `mcopy -s`,
# partition made by sfdisk).
# Both images are checked with `fsck.fat -n` and read back with `mcopy -s`, and the file
# lists and SHA-256 sums are compared with the source tree.
#
#   bench/fat/run.sh [FILES] [TOTAL_MB]
#
# Needs python3, mtools, dosfstools, fdisk (sfdisk). Builds tsforge in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${1:-15000}
TOTAL_MB=${2:-400}
work=$(mktemp -d "${TMPDIR:-/tmp}/tsforge-fatbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export MTOOLS_SKIP_CHECK=1

cargo build -q --release -p tsforge
bin=${CARGO_TARGET_DIR:-target}/release/tsforge

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "== generating $FILES files, ~$TOTAL_MB MB (seeded, identical every run)"
python3 - "$work/tree" "$FILES" "$TOTAL_MB" <<'PY'
import os, random, sys
root, files, total_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20240601)
# Mixed sizes: many small files, some medium, a few large (like a Windows or driver tree).
weights = [(0.70, 1, 16 << 10), (0.25, 16 << 10, 256 << 10), (0.05, 256 << 10, 8 << 20)]
sizes = []
for _ in range(files):
    r = rng.random(); acc = 0
    for w, lo, hi in weights:
        acc += w
        if r <= acc:
            sizes.append(rng.randint(lo, hi)); break
    else:
        sizes.append(1)
scale = total_mb * 1e6 / sum(sizes)
dirs = [""]
for i in range(files // 40):
    parent = rng.choice(dirs)
    dirs.append(os.path.join(parent, f"dir{i:04d}"))
block = rng.randbytes(1 << 20)
for i, s in enumerate(sizes):
    d = os.path.join(root, rng.choice(dirs))
    os.makedirs(d, exist_ok=True)
    n = max(1, int(s * scale))
    name = f"file {i:05d}.bin" if i % 3 else f"F{i:05d}.DAT"
    with open(os.path.join(d, name), "wb") as f:
        off = rng.randrange(0, 1 << 19)
        while n > 0:
            chunk = block[off:off + min(n, (1 << 20) - off)]
            f.write(chunk); n -= len(chunk); off = 0
PY
count=$(find "$work/tree" -type f | wc -l)
bytes=$(du -sb "$work/tree" | cut -f1)
echo "   $count files, $bytes bytes"
(cd "$work/tree" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/src.sums"
sync

echo "== tsforge: disk partition (MBR, one partition, type 0x0c) + disk build-fat"
truncate -s 1G "$work/ours.img"
t0=$(now)
"$bin" disk partition "$work/ours.img" --table mbr --part size=rest,type=0x0c --yes >/dev/null 2>&1
"$bin" disk build-fat "$work/ours.img" --partition 1 "$work/tree" --label BENCH --fat32 --yes 2>/dev/null
t1=$(now)
ours=$(elapsed "$t0" "$t1")
echo "   $ours s"

echo "== mtools: sfdisk (same layout) + mformat -F + mcopy -s"
truncate -s 1G "$work/theirs.img"
t0=$(now)
echo 'start=2048, type=c' | sfdisk -q "$work/theirs.img"
sectors=$(( (1 << 30) / 512 - 2048 ))
mformat -i "$work/theirs.img@@1M" -F -T "$sectors" -h 255 -s 63 -H 2048 -v BENCH ::
mcopy -s -i "$work/theirs.img@@1M" "$work/tree"/* ::/
t1=$(now)
theirs=$(elapsed "$t0" "$t1")
echo "   $theirs s"

check() { # check NAME IMAGE
    dd if="$2" of="$work/$1.part" bs=1M skip=1 conv=sparse status=none
    if fsck.fat -n "$work/$1.part" >"$work/$1.fsck" 2>&1; then
        fsck_ok="fsck.fat -n clean"
    else
        fsck_ok="fsck.fat -n FAILED"; cat "$work/$1.fsck"
    fi
    rm -f "$work/$1.part"
    mkdir "$work/$1.out"
    mcopy -s -n -i "$2@@1M" '::/*' "$work/$1.out/"
    (cd "$work/$1.out" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/$1.sums"
    if cmp -s "$work/src.sums" "$work/$1.sums"; then same="all $count files read back identical"; else same="CONTENT DIFFERS"; fi
    rm -rf "$work/$1.out"
    echo "   $1: $fsck_ok; $same"
    [[ $fsck_ok == *clean && $same == all* ]]
}
echo "== checks"
status=0
check ours "$work/ours.img" || status=1
check theirs "$work/theirs.img" || status=1
ratio=$(python3 -c "print(f'{$theirs / $ours:.2f}')")
echo
printf '%-44s %8s\n' "work" "seconds"
printf '%-44s %8s\n' "tsforge disk partition + build-fat" "$ours"
printf '%-44s %8s\n' "sfdisk + mformat + mcopy -s" "$theirs"
echo "ratio: tsforge is ${ratio}x as fast as mtools ($count files, $bytes bytes, 1 GiB image)"
exit $status
