#!/usr/bin/env bash
# Streaming an image package from a distribution point over HTTP vs applying the same image
# from a local file, both through an Apply Data Image step of `tsforge run`. See README.md.
#
#   bench/content/run.sh [SIZE_MB] [ROUNDS]   (default 300 MiB tree, 3 rounds; needs nginx)
#
# The distribution point is served by Debian's nginx on loopback. Prints each round's seconds
# and the ratio HTTP / local (goal: under 1.10), best of ROUNDS each. Times end when the runner
# exits (the page cache flushed before each run, not timed: the disk is the same for both).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
size_mb=${1:-300}
rounds=${2:-3}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "run.sh: nginx is missing (scripts/setup.sh installs it)" >&2; exit 2; }
cargo build -q --release --manifest-path "$root/Cargo.toml" -p tsforge
tsforge=${CARGO_TARGET_DIR:-$root/target}/release/tsforge

work=$(mktemp -d "${TMPDIR:-/tmp}/tsforge-bench-content.XXXXXX")
chmod 755 "$work"
cleanup() {
    [ -f "$work/nginx.pid" ] && "$nginx" -p "$work" -c "$work/nginx.conf" -s stop 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export SOURCE_DATE_EPOCH=1700000000
python3 "$root/bench/image/gen-tree.py" "$work/tree" "$size_mb"
"$tsforge" capture "$work/tree" "$work/base.tsimg" >/dev/null
"$tsforge" package build "$work/base.tsimg" --id IMG00001 --out "$work/dp" >/dev/null
chmod -R a+rX "$work/dp"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat > "$work/nginx.conf" <<CONF
$user
daemon on;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 512; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
    server { listen 127.0.0.1:$port; root $work/dp; }
}
CONF
mkdir -p "$work/tmp"
"$nginx" -p "$work" -c "$work/nginx.conf" -e "$work/nginx-error.log"
url=http://127.0.0.1:$port
python3 - "$url/tsforge-dp.json" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).read(); break
    except Exception:
        time.sleep(0.1)
PY

cat > "$work/local.yaml" <<Y
steps:
  - name: Apply from a local file
    type: apply-data-image
    properties: {ImagePath: "$work/base.tsimg", Destination: "$work/out"}
Y
cat > "$work/http.yaml" <<Y
steps:
  - name: Apply from the distribution point
    type: apply-data-image
    properties: {ImagePackageID: IMG00001, Destination: "$work/out"}
Y
now() { date +%s.%N; }
one() { # one NAME ARGS...
    rm -rf "$work/out" "$work/state"; sync
    local t0 t1; t0=$(now)
    "$tsforge" run "$work/$1.yaml" --state-dir "$work/state" --no-fsync "${@:2}" >/dev/null 2>"$work/err" \
        || { cat "$work/err" "$work/state/smsts.log" >&2; exit 2; }
    t1=$(now)
    awk "BEGIN{print $t1 - $t0}"
}
echo "image: $(( $(stat -c %s "$work/base.tsimg") >> 20 )) MiB ($size_mb MiB tree); $(nproc) cores; $rounds rounds"
best_l=999999; best_h=999999
for r in $(seq "$rounds"); do
    l=$(one local); h=$(one http --content "$url")
    echo "round $r: local $l s, http $h s"
    best_l=$(awk "BEGIN{print ($l < $best_l) ? $l : $best_l}")
    best_h=$(awk "BEGIN{print ($h < $best_h) ? $h : $best_h}")
done
awk "BEGIN{printf \"best: local %.2f s, http %.2f s, http/local %.3f\n\", $best_l, $best_h, $best_h / $best_l}"
