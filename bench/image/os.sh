#!/usr/bin/env bash
# OS image benchmark: capture and apply a whole Debian 12 system (the reference tree of
# scripts/reference-rootfs.sh) with tsforge, wimlib-imagex (XPRESS, --unix-data), tar + zstd,
# and cp -a as the physical reference, side by side in one run. See README.md beside this file.
#
#   bench/image/os.sh [ROUNDS]       (default 3; root, as the tree has devices and owners)
#   TOOLS="tsforge cp-a" bench/image/os.sh 1     only these rows
#
# Each row: image size, capture and apply seconds (median of ROUNDS, each followed by `sync`),
# peak memory of capture and apply (/usr/bin/time -v), and whether the applied tree equals the
# source by rsync -aHAXc (type, owner, mode, mtime, xattrs, ACLs, link targets, hard links,
# content): "equal" or the number of differing paths.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-3}
[ "$(id -u)" -eq 0 ] || { echo "os.sh: run as root (the tree holds device nodes and other owners)" >&2; exit 2; }
for t in wimlib-imagex zstd tar rsync /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "os.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done
src=$(bash "$root/scripts/reference-rootfs.sh")
cargo build -q --release --manifest-path "$root/Cargo.toml" -p tsforge
tsforge=${CARGO_TARGET_DIR:-$root/target}/release/tsforge

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tsforge-bench-os.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000
echo "tree: $src"
echo "      $(du -sb --apparent-size "$src" | cut -f1 | awk '{printf "%.0f MiB", $1/1048576}'), $(find "$src" | wc -l) paths; $(nproc) cores; $rounds rounds"

# timed CMD…: runs it under /usr/bin/time -v, then sync; prints "seconds peak-KiB".
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$work/time" bash -c "$1" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 2; }
    sync
    t1=$(date +%s.%N)
    echo "$(awk "BEGIN{print $t1 - $t0}") $(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time")"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rows=()
# run NAME CAPTURE APPLY (commands see $src, $img, $out); APPLY empty: a copy, no image.
run() {
    case " ${TOOLS:-tsforge wimlib-xpress tar-zstd cp-a} " in *" $1 "*) ;; *) return 0 ;; esac
    local name=$1 cap=$2 app=$3 caps=() apps=() capmem=0 appmem=0 size=0 r c a
    export src img="$work/img-$name" out="$work/out-$name"
    for ((r = 0; r < rounds; r++)); do
        rm -rf "$out" "$img"
        sync
        c=$(timed "$cap"); caps+=("${c% *}"); capmem=${c#* }
        if [ -n "$app" ]; then
            size=$(stat -c %s "$img")
            a=$(timed "$app"); apps+=("${a% *}"); appmem=${a#* }
        fi
    done
    local diff
    diff=$(rsync -aHAXc --numeric-ids --dry-run --itemize-changes --delete "$src/" "$out/" | wc -l)
    [ "$diff" = 0 ] && diff=equal || diff="$diff differ"
    local capm appm="-"
    capm=$(printf '%s\n' "${caps[@]}" | median)
    [ -n "$app" ] && appm=$(printf '%s\n' "${apps[@]}" | median)
    rows+=("$name $size $capm $appm $capmem $appmem $diff")
    rm -rf "$out" "$img"
}

export TSFORGE=$tsforge
run tsforge '"$TSFORGE" capture "$src" "$img"' \
    '"$TSFORGE" apply "$img" "$out"'
run wimlib-xpress 'wimlib-imagex capture "$src" "$img" --unix-data --compress=XPRESS' \
    'mkdir "$out" && wimlib-imagex apply "$img" "$out" --unix-data'
run tar-zstd 'tar --xattrs --xattrs-include="*" --acls -C "$src" -cf - . | zstd -q -T0 -3 -o "$img"' \
    'mkdir "$out" && zstd -q -d -c "$img" | tar --xattrs --xattrs-include="*" --acls --numeric-owner -C "$out" -xpf -'
run cp-a 'cp -a "$src" "$out"' ''

echo
printf '%s\n' "${rows[@]}" | awk '
    { name[NR]=$1; size[NR]=$2; cap[NR]=$3; app[NR]=$4; cm[NR]=$5; am[NR]=$6
      $1=$2=$3=$4=$5=$6=""; same[NR]=substr($0, 7)
      if (name[NR] == "tar-zstd") { ts=size[NR]; tc=cap[NR] }
      if (name[NR] == "cp-a") { cp=cap[NR] } }
    END {
        printf "| %-13s | %8s | %8s | %9s | %7s | %8s | %8s | %9s | %9s | %s |\n", "tool", "size MiB", "size/tar", "capture s", "cap/tar", "apply s", "app/cp-a", "cap peak MiB", "app peak MiB", "applied tree"
        printf "| %-13s | %8s | %8s | %9s | %7s | %8s | %8s | %9s | %9s | %s |\n", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"
        for (i = 1; i <= NR; i++) {
            if (app[i] == "-")
                printf "| %-13s | %8s | %8s | %9.2f | %7.2f | %8s | %8s | %9.0f | %9s | %s |\n", name[i], "-", "-", cap[i], cap[i]/tc, "-", "-", cm[i]/1024, "-", same[i]
            else
                printf "| %-13s | %8.1f | %8.3f | %9.2f | %7.2f | %8.2f | %8.2f | %9.0f | %9.0f | %s |\n", name[i], size[i]/1048576, size[i]/ts, cap[i], cap[i]/tc, app[i], app[i]/cp, cm[i]/1024, am[i]/1024, same[i]
        }
    }'
echo
echo "cp-a: 'capture s' is the copy's time; app/cp-a divides each apply by it."
