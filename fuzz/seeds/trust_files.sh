#!/usr/bin/env bash
# Seeds for the trust_files fuzz target (first byte: the reader): media.toml, tsforge/manifest
# and tsforge/boot-regions of a signed USB medium, a package manifest and a distribution
# point index, a key / signature / message triple. Run from the repository root after
# `cargo build` (needs the linux template's tools: scripts/setup.sh).
set -euo pipefail
out=$(dirname "$0")/trust_files
mkdir -p "$out"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
bin=${TSFORGE:-target/debug/tsforge}
export SOURCE_DATE_EPOCH=1700000000 MTOOLS_SKIP_CHECK=1
"$bin" keygen -o "$t/k" >/dev/null
"$bin" package build examples/lab-image --id LAB00001 --out "$t/dp" --sign "$t/k.key" >/dev/null
"$bin" build dir --template linux --sequence examples/lab-deploy.yaml --sign "$t/k.key" \
    --force -o "$t/m" >/dev/null 2>&1
put() { { printf "\\x$(printf %02x "$1")"; cat "$2"; } >"$out/$3"; }
put 0 "$t/m/tsforge/media.toml" media-toml
put 1 "$t/m/tsforge/manifest" manifest
put 3 "$t/dp/LAB00001/tsforge-package.json" package
put 4 "$t/dp/tsforge-dp.json" dp-index
{ printf '\x05'; cat "$t/k.pub"; printf '\0'; cat "$t/m/tsforge/manifest.sig"; printf '\0'; cat "$t/m/tsforge/manifest"; } >"$out/signature"
