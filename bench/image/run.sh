#!/usr/bin/env bash
# Image capture/apply benchmark: tsforge vs wimlib-imagex (XPRESS, LZX) vs tar | zstd, on one
# generated tree, in one run. See README.md beside this file.
#
#   bench/image/run.sh [SIZE_MB]      (default 400; needs wimtools and zstd: scripts/setup.sh)
#
# Prints one row per tool: image size, capture and apply seconds, ratios to wimlib XPRESS,
# and whether the applied tree equals the source (file count and the sha256 of every file).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
size_mb=${1:-400}
for t in wimlib-imagex zstd tar python3; do
    command -v "$t" >/dev/null || { echo "run.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done
cargo build -q --release --manifest-path "$root/Cargo.toml" -p tsforge
tsforge=${CARGO_TARGET_DIR:-$root/target}/release/tsforge

work=$(mktemp -d "${TMPDIR:-/tmp}/tsforge-bench-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$here/gen-tree.py" "$work/tree" "$size_mb"
export SOURCE_DATE_EPOCH=1700000000

# Content fingerprint of a tree: file count and one hash over every path + sha256.
fingerprint() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) > "$work/fp.txt"
    echo "$(wc -l < "$work/fp.txt") $(sha256sum < "$work/fp.txt" | cut -c1-16)"
}
src_fp=$(fingerprint "$work/tree")
src_bytes=$(du -sb --apparent-size "$work/tree" | cut -f1)
echo "tree: $src_fp (files, fingerprint), $((src_bytes >> 20)) MiB; $(nproc) cores"

now() { date +%s.%N; }
results=()
# run NAME IMAGE CAPTURE-COMMAND APPLY-COMMAND (commands see $src, $img, $out)
run() {
    local name=$1 img=$2 cap=$3 app=$4 t0 t1 t2
    export src="$work/tree" img="$work/$img" out="$work/out-$name"
    rm -rf "$out" "$img"
    sync
    t0=$(now); bash -c "$cap" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 2; }
    sync
    t1=$(now); bash -c "$app" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 2; }
    sync
    t2=$(now)
    local fp; fp=$(fingerprint "$out")
    local same=no; [ "$fp" = "$src_fp" ] && same=yes
    results+=("$name $(stat -c %s "$img") $(awk "BEGIN{print $t1 - $t0}") $(awk "BEGIN{print $t2 - $t1}") $same")
    rm -rf "$out"
}

export TSFORGE=$tsforge
run tsforge-zstd img.tsimg '"$TSFORGE" capture "$src" "$img"' '"$TSFORGE" apply "$img" "$out"'
run tsforge-deflate img-deflate.tsimg \
    '"$TSFORGE" capture --compression deflate "$src" "$img"' '"$TSFORGE" apply "$img" "$out"'
run wimlib-xpress img-xpress.wim \
    'wimlib-imagex capture "$src" "$img" --compress=XPRESS' \
    'mkdir "$out" && wimlib-imagex apply "$img" "$out"'
run wimlib-lzx img-lzx.wim \
    'wimlib-imagex capture "$src" "$img" --compress=LZX' \
    'mkdir "$out" && wimlib-imagex apply "$img" "$out"'
run tar-zstd img.tar.zst \
    'tar -C "$src" -cf - . | zstd -q -T0 -3 -o "$img"' \
    'mkdir "$out" && zstd -q -d -c "$img" | tar -C "$out" -xf -'

echo
printf '%s\n' "${results[@]}" | awk -v src="$src_bytes" '
    { name[NR]=$1; size[NR]=$2; cap[NR]=$3; app[NR]=$4; same[NR]=$5
      if ($1 == "wimlib-xpress") { ws=$2; wc=$3; wa=$4 } }
    END {
        printf "| %-15s | %9s | %6s | %9s | %9s | %9s | %9s | %9s |\n", "tool", "size MiB", "ratio", "size/wimX", "capture s", "cap/wimX", "apply s", "app/wimX"
        printf "| %-15s | %9s | %6s | %9s | %9s | %9s | %9s | %9s |\n", "---", "---", "---", "---", "---", "---", "---", "---"
        for (i = 1; i <= NR; i++)
            printf "| %-15s | %9.1f | %6.2f | %9.2f | %9.2f | %9.2f | %9.2f | %9.2f | %s\n", name[i], size[i]/1048576, src/size[i], size[i]/ws, cap[i], cap[i]/wc, app[i], app[i]/wa, (same[i]=="yes" ? "equal" : "DIFFERENT")
    }'
