#!/usr/bin/env bash
# Build the fuzz targets and run each for SECONDS (default 60) with libFuzzer's
# -max_total_time. Usage: fuzz/run.sh [SECONDS] [TARGET...]
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags
# (AddressSanitizer, sanitizer coverage). Needs cargo-fuzz (`cargo install cargo-fuzz`) and
# a C++ compiler (libfuzzer-sys builds libFuzzer). Corpora grow in fuzz/corpus/TARGET
# (git-ignored) and are seeded from fuzz/seeds/, examples/, tests/fixtures/sequences/ and the
# fenced YAML/XML blocks of docs/*.md. Crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(parse_sequence conditions_and_vars cmtrace envfile partition_table image_reader fat_volume run_state trust_files)
fi
export RUSTC_BOOTSTRAP=1
# Step around bugs already reported (fuzz_targets/known.rs); FUZZ_SKIP_KNOWN=0 to hit them.
export FUZZ_SKIP_KNOWN=${FUZZ_SKIP_KNOWN:-1}
unset CARGO_TARGET_DIR # cargo-fuzz builds into fuzz/target
# Targets that write scratch files (fat_volume, run_state, envfile, partition_table) write them
# in memory when /dev/shm is there: their fsyncs cost nothing, so more inputs run per second.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi

command -v cargo-fuzz >/dev/null || {
    echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
}

# Seeds.
seed() { # seed TARGET FILE...
    mkdir -p "fuzz/corpus/$1"
    local t=$1
    shift
    for f in "$@"; do
        [ -f "$f" ] && cp "$f" "fuzz/corpus/$t/seed-$(echo "$f" | tr '/' '_')"
    done
    return 0
}
shopt -s nullglob globstar
seed parse_sequence fuzz/seeds/parse_sequence/* examples/*.yaml examples/*.xml \
    tests/fixtures/sequences/**/*.yaml tests/fixtures/sequences/**/*.yml \
    tests/fixtures/sequences/**/*.xml
# Fenced ```yaml / ```xml blocks of the docs, one seed file each.
docseeds=$(mktemp -d)
trap 'rm -rf "$docseeds"' EXIT
for md in docs/*.md README.md; do
    awk -v out="$docseeds/$(basename "$md")" '
        /^```(yaml|xml)/ { n++; f = out "-" n; inblock = 1; next }
        /^```/ { inblock = 0; next }
        inblock { print > f }' "$md"
done
seed parse_sequence "$docseeds"/*
seed cmtrace fuzz/seeds/cmtrace/*
seed envfile fuzz/seeds/envfile/*
seed partition_table fuzz/seeds/partition_table/*
seed image_reader fuzz/seeds/image_reader/*
seed fat_volume fuzz/seeds/fat_volume/*
seed run_state fuzz/seeds/run_state/*
seed trust_files fuzz/seeds/trust_files/*
# Inputs that once crashed a target stay in its corpus: libFuzzer runs every one of them first.
for t in "${TARGETS[@]}"; do
    seed "$t" fuzz/regressions/"$t"/*
done
mkdir -p fuzz/corpus/conditions_and_vars

cargo fuzz build -O
bin=fuzz/target/x86_64-unknown-linux-gnu/release
status=0
for t in "${TARGETS[@]}"; do
    echo "== $t (${SECONDS_PER_TARGET}s)"
    log="fuzz/target/$t.log"
    mkdir -p "fuzz/artifacts/$t"
    marker=$(mktemp)
    # Fork mode with -ignore_crashes: one crash does not end the run, every distinct input
    # that crashes is kept. -rss_limit_mb: the machine is shared; -timeout: a slow input is
    # a finding too.
    cargo fuzz run -O "$t" -- -max_total_time="$SECONDS_PER_TARGET" -fork=1 \
        -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1 || true
    rm -f "${TMPDIR:-/tmp}"/tsforge-fuzz-env-* # envfile's scratch files, one per forked child
    execs=$(grep -Eo '^#[0-9]+:' "$log" | tail -1 | tr -dc 0-9)
    new=$(find "fuzz/artifacts/$t" -type f -newer "$marker" | sort)
    rm -f "$marker"
    echo "   ${execs:-?} executions, corpus $(ls "fuzz/corpus/$t" | wc -l) inputs," \
        "$(echo -n "$new" | grep -c . || true) new crashing inputs"
    if [ -n "$new" ]; then
        status=1
        # Triage: run each input again and group by where it panicked and why.
        for f in $new; do
            out=$("$bin/$t" "$f" 2>&1 || true)
            grep -A1 -m1 'panicked at' <<<"$out" | sed -E 's/thread .* panicked at/at/' |
                tr '\n' ' ' | cut -c1-110 || true
            echo
        done | grep . | sort | uniq -c | sort -rn | sed 's/^/   /' || true
        echo "   e.g. $(echo "$new" | head -1)   (repro: $bin/$t FILE)"
    fi
done
exit $status
